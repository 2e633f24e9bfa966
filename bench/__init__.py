"""`make bench`: Switchboard's benchmarks, each a ratio against a baseline measured in the same run.

Run with `python -m bench [--quick] [--only NAME ...]`. Prints one JSON object per line and rewrites
docs/benchmarks.md. DATABASE_URL and CELERY_BROKER_URL choose the services (default: the local
PostgreSQL and Redis).
"""
