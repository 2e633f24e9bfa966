"""Benchmark settings: production-like (DEBUG off), fixed keys, the services named in the environment."""

import os

os.environ.setdefault("SECRET_KEY", "bench-secret-key-not-for-production")
os.environ.setdefault("FIELD_ENCRYPTION_KEY", "x4hv6Ta-qgsAmuZXmLcEc6wPlhHcpLjFeI_9Rd7UzNE=")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/switchboard_bench")
os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/14")

from .base import *  # noqa: E402, F403

ALLOWED_PROVIDER_HOSTS = ["127.0.0.1", "localhost"]
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
SECURE_SSL_REDIRECT = False
LOGGING = {"version": 1, "disable_existing_loggers": False, "root": {"level": "WARNING"}}
