"""Test settings: the base settings with fixed keys and fast password hashing.

DATABASE_URL and CELERY_BROKER_URL still come from the environment, so `.ci/run` can point the whole
suite at PostgreSQL and Redis.
"""

import os

# base.py refuses to start without these outside DEBUG; tests run with DEBUG off, as production does.
os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production")
os.environ.setdefault("FIELD_ENCRYPTION_KEY", "x4hv6Ta-qgsAmuZXmLcEc6wPlhHcpLjFeI_9Rd7UzNE=")

from .base import *  # noqa: E402, F403
from .base import BASE_DIR, DATABASES, broker_transport, env  # noqa: E402

ALLOWED_PROVIDER_HOSTS = ["127.0.0.1", "localhost"]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

(BASE_DIR / ".run").mkdir(exist_ok=True)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not memory: the Celery worker that the end-to-end tests start must open the same database.
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / ".run" / "test.sqlite3")}

# A private Redis on a unix socket, started by the test suite itself (tests/conftest.py), unless the
# environment names a real one.
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default=f"redis+socket://{BASE_DIR / '.run' / 'test-redis.sock'}")
CELERY_BROKER_TRANSPORT = broker_transport(CELERY_BROKER_URL)

# Retries in tests wait tenths of a second, not seconds (a provider's Retry-After still wins).
CALL_RETRY_BACKOFF_SECONDS = env.float("CALL_RETRY_BACKOFF_SECONDS", default=0.05)
CALL_RETRY_BACKOFF_MAX_SECONDS = env.float("CALL_RETRY_BACKOFF_MAX_SECONDS", default=0.5)
OUTBOX_RETRY_BACKOFF_SECONDS = env.float("OUTBOX_RETRY_BACKOFF_SECONDS", default=0.05)
OUTBOX_RETRY_BACKOFF_MAX_SECONDS = env.float("OUTBOX_RETRY_BACKOFF_MAX_SECONDS", default=0.5)

# The test client and the live server speak plain http; production settings are checked by a test of
# `manage.py check --deploy` instead.
SECURE_SSL_REDIRECT = False
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = False
RATE_LIMIT_REDIS_URL = CELERY_BROKER_URL
