"""Settings for every environment, read once from the process environment (and `.env` when present).

Every variable is listed with a comment in `.env.example`; the README has the same table.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()
if (BASE_DIR / ".env").is_file():
    # Real environment variables win over the file, so `make run` and CI can override it.
    environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)

if DEBUG:
    SECRET_KEY = env("SECRET_KEY", default="django-insecure-local-development-only")
else:
    SECRET_KEY = env("SECRET_KEY")  # no default outside DEBUG: refuse to start without one

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"] if DEBUG else [])
# Where Meta and chatbot platforms reach this site, for commands that print a URL (no request to ask).
PUBLIC_URL = env.str("PUBLIC_URL", default="").rstrip("/")
FILTERS_EMPTY_CHOICE_LABEL = "Any"  # django-filter's default is a row of dashes
# A request waiting for its reply (wait, chat completions) is woken through Redis when the worker records the
# outcome; off, it polls the database every 20 ms (kept so that make bench measures one against the other).
API_WAIT_WAKEUP = env.bool("API_WAIT_WAKEUP", default=True)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "axes",
    "django_filters",
    "simple_history",
    "connectors",
    "conversations",
]

MIDDLEWARE = [
    # Outermost: whatever fails below, an answer under /api/ is JSON (config/errors.py).
    "config.errors.ApiErrorsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Serves /static/ from the web process itself (after collectstatic), so no separate file server is needed.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # A NUL in the address, the query string or a form is a 400 before any view or query sees it.
    "config.errors.RefuseUnstorableInputMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "config.dashboard_middleware.PrivatePagesMiddleware",  # no cache keeps a logged-in page
    "config.dashboard_middleware.MessageMiddleware",  # these three: pages only, not /api/v1/
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "config.dashboard_middleware.CSPMiddleware",
    "config.dashboard_middleware.HistoryRequestMiddleware",
    # A malformed admin filter or action is a 400, not a 500 (config/adminguard.py).
    "config.adminguard.AdminBadInputMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                # The count of conversations waiting for a person, in the navigation bar.
                "conversations.support.views.context",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
# Keep connections between requests and tasks: a new PostgreSQL connection per task costs more than the
# rest of the task's database work. Health checks drop a connection the server closed.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=300)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and env.bool("DATABASE_POOL", default=True):
    # A pool per process (psycopg_pool): a threaded worker's hundreds of calls in flight share a few
    # connections, each borrowed for the milliseconds of database work around a provider call.
    DATABASES["default"]["CONN_MAX_AGE"] = 0  # the pool keeps the connections; Django refuses both
    DATABASES["default"]["ENGINE"] = "config.postgresql"  # Django's, with a cheaper health check
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 2,
        "max_size": env.int("DATABASE_POOL_MAX_SIZE", default=20),
        # How long a request or a task waits for a connection: past it, a database that is down answers a
        # 503 (config/errors.py) instead of holding the request.
        "timeout": env.float("DATABASE_POOL_TIMEOUT", default=5.0),
    }
if DATABASES["default"]["ENGINE"] in ("django.db.backends.postgresql", "config.postgresql"):
    # The worker's two statements per call (conversations/store/worker.py) are prepared once per connection and
    # then only executed; Django's own queries are never prepared. PgBouncer before 1.21 in transaction
    # mode cannot follow prepared statements: set DATABASE_PREPARED_STATEMENTS=false behind one.
    DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = (
        0 if env.bool("DATABASE_PREPARED_STATEMENTS", default=True) else None
    )
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web process and the worker write to the same file: WAL lets readers and one writer
    # overlap, IMMEDIATE takes the write lock up front instead of failing mid-transaction.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"init_command": "PRAGMA journal_mode=WAL;", "transaction_mode": "IMMEDIATE", "timeout": 20}
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
AUTHENTICATION_BACKENDS = [
    # django-axes first: it refuses a login after repeated failures before the password is checked.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("LOGIN_LOCKOUT_MINUTES", default=15))
# Lock the username from the address it was guessed from, so an attacker cannot lock staff out everywhere.
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_RESET_ON_SUCCESS = True
AXES_IPWARE_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)
AXES_USERNAME_CALLABLE = "config.accounts.axes_username"  # cut to its column (config/accounts.py)
AXES_VERBOSE = False  # no "AXES: BEGIN" line from every process at start; lockouts are still logged

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "conversations:test_send"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Compressed copies, long-cached; no manifest, so pages render before collectstatic has run too.
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# --- Secrets at rest -------------------------------------------------------------------------
# Comma-separated Fernet keys: the first encrypts, all of them decrypt (so a key can be rotated).
FIELD_ENCRYPTION_KEY = env.list("FIELD_ENCRYPTION_KEY", default=[])
if not FIELD_ENCRYPTION_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "FIELD_ENCRYPTION_KEY is not set. Generate one with "
            '`python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"`.'
        )
    # Local development only: a key derived from SECRET_KEY, stable across restarts.
    FIELD_ENCRYPTION_KEY = [base64.urlsafe_b64encode(hashlib.sha256(SECRET_KEY.encode()).digest()).decode()]

# --- Providers -------------------------------------------------------------------------------
# Hosts a connection may reach over plain http (the sandbox, a local Ollama). Everything else is https.
ALLOWED_PROVIDER_HOSTS = env.list("ALLOWED_PROVIDER_HOSTS", default=["127.0.0.1", "localhost"] if DEBUG else [])
SANDBOX_PORT = env.int("SANDBOX_PORT", default=8765)

# --- Celery ----------------------------------------------------------------------------------
# Unset, a command run beside `make run` uses the private Redis that make run started (its socket in .run/),
# so its tasks reach make run's worker; otherwise the usual local Redis.
_MAKE_RUN_REDIS = BASE_DIR / ".run" / "redis.sock"
CELERY_BROKER_URL = env(
    "CELERY_BROKER_URL",
    default=f"redis+socket://{_MAKE_RUN_REDIS}" if _MAKE_RUN_REDIS.exists() else "redis://127.0.0.1:6379/0",
)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True


def broker_transport(url: str) -> str | None:
    """kombu's Redis transport with one client per channel (config/broker.py) for a redis:// URL; kombu's
    own for anything else (rediss:// turns TLS on only under its own name, redis+socket://, sentinel://)."""
    return "config.broker:Transport" if urlsplit(url).scheme == "redis" else None


CELERY_BROKER_TRANSPORT = broker_transport(CELERY_BROKER_URL)  # settings that change the URL call it again
# A call's broker message is only a doorbell: the call row is the record and the sweeper rings again when a
# message is lost, so config/broker.py keeps no copy of it in Redis while it runs.
# Socket timeouts: kombu's default is none, so a Redis that hangs (stopped, or behind a half-open load
# balancer) would block every publish, and every request that publishes, for good.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "untracked_tasks": ["conversations.execute_call", "conversations.deliver_outbound"],
    "socket_timeout": 3,
    "socket_connect_timeout": 2,
}
# With the broker away, a publish gives up after one quick retry instead of blocking a request: the row it
# rings for is committed, and the sweeper publishes it again (conversations/queue.py).
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}
# The database row is the record of a call, not a Celery result.
CELERY_TASK_IGNORE_RESULT = True
# A task is acknowledged after it ran. If its worker dies mid-task, kombu's copy in Redis brings a callback or
# a WhatsApp send back after the visibility timeout (an hour), and the sweeper brings a call back.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# A call due now is rung through a Redis list the workers block on, not a Celery message (conversations/doorbell.py).
CALL_DOORBELL = env.bool("CALL_DOORBELL", default=True)

# --- HTTP security ---------------------------------------------------------------------------
# Outside DEBUG the site is served over https only. Behind a TLS-terminating proxy, set
# TRUSTED_PROXY_COUNT=1 so the proxy's X-Forwarded-Proto header is believed.
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = not DEBUG
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=True)
if env.int("TRUSTED_PROXY_COUNT", default=0):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
# Scripts and styles only from our own static files (htmx is vendored): model output that slips past
# escaping still cannot run.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
        "base-uri": ["'none'"],
        "object-src": ["'none'"],
    }
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "filters": {"expected_answers": {"()": "config.logfilters.ExpectedAnswers"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    "loggers": {
        "urllib3": {"level": "WARNING"},
        # A 403, or a provider's 502/503 passed on, is logged at INFO without a traceback (config/logfilters.py).
        "django.request": {"filters": ["expected_answers"]},
        "django.security": {"filters": ["expected_answers"]},
        # A logger's filters do not reach its children's records: this one needs its own.
        "django.security.DisallowedHost": {"filters": ["expected_answers"]},
    },
}

# Longest customer message accepted, in bytes of UTF-8.
MAX_CUSTOMER_MESSAGE_BYTES = env.int("MAX_CUSTOMER_MESSAGE_BYTES", default=32 * 1024)
# Largest JSON body the API reads (a chat-completions request carries its whole history).
API_MAX_BODY_BYTES = env.int("API_MAX_BODY_BYTES", default=1024 * 1024)
# Largest body Django reads at all: Meta sends WhatsApp webhooks of up to 3 MB, and a webhook refused for
# its size would be delivered again for days.
DATA_UPLOAD_MAX_MEMORY_SIZE = max(env.int("MAX_REQUEST_BODY_BYTES", default=3_500_000), API_MAX_BODY_BYTES)

# --- Delivery --------------------------------------------------------------------------------
# Retries of transient failures (429, 5xx, timeouts, network): Celery's exponential backoff with
# full jitter, starting from this many seconds and capped; a longer Retry-After wins.
CALL_RETRY_BACKOFF_SECONDS = env.float("CALL_RETRY_BACKOFF_SECONDS", default=1.0)
CALL_RETRY_BACKOFF_MAX_SECONDS = env.float("CALL_RETRY_BACKOFF_MAX_SECONDS", default=60.0)
# The sweeper queues again a call still queued this long after it was due (its broker message was lost),
# and a call running longer than its connection's timeout plus this grace (its worker died).
CALL_SWEEP_INTERVAL_SECONDS = env.float("CALL_SWEEP_INTERVAL_SECONDS", default=30.0)
CALL_QUEUED_STALE_SECONDS = env.float("CALL_QUEUED_STALE_SECONDS", default=120.0)
# ...and this long after it was due even while the queue still holds other messages (a worker killed
# outright loses the messages it held, and a busy queue might never be empty).
CALL_QUEUED_LOST_SECONDS = env.float("CALL_QUEUED_LOST_SECONDS", default=900.0)
CALL_RUNNING_GRACE_SECONDS = env.float("CALL_RUNNING_GRACE_SECONDS", default=60.0)
CELERY_BEAT_SCHEDULE = {
    "sweep-stuck-calls": {"task": "conversations.sweep_calls", "schedule": CALL_SWEEP_INTERVAL_SECONDS},
}
# The outbox (callbacks, WhatsApp replies): tries in all, backoff from this many seconds (doubling, each
# wait between half its ceiling and all of it, capped), and how long a worker waits for the database to
# record a message it has already sent. 20 tries from 2 s capped at an hour keep trying for 4.6 to 9 hours:
# a platform's deploy or an afternoon's outage loses no callback.
OUTBOX_MAX_TRIES = env.int("OUTBOX_MAX_TRIES", default=20)
OUTBOX_RETRY_BACKOFF_SECONDS = env.float("OUTBOX_RETRY_BACKOFF_SECONDS", default=2.0)
OUTBOX_RETRY_BACKOFF_MAX_SECONDS = env.float("OUTBOX_RETRY_BACKOFF_MAX_SECONDS", default=3600.0)
OUTBOX_RECORD_PATIENCE_SECONDS = env.float("OUTBOX_RECORD_PATIENCE_SECONDS", default=60.0)
# How much of a conversation is sent with each new customer message.
CONVERSATION_HISTORY_MESSAGES = env.int("CONVERSATION_HISTORY_MESSAGES", default=20)
CONVERSATION_HISTORY_TOKENS = env.int("CONVERSATION_HISTORY_TOKENS", default=4000)
# The API: the longest `wait` a client may ask for, and how long the chat-completions endpoint holds on.
API_MAX_WAIT_SECONDS = env.float("API_MAX_WAIT_SECONDS", default=30.0)
API_CHAT_WAIT_SECONDS = env.float("API_CHAT_WAIT_SECONDS", default=120.0)
# Connection rate limits live in this Redis (default: the broker's). A call whose slot is further away than
# RATE_LIMIT_MAX_WAIT_SECONDS goes back to the queue instead of holding a worker thread.
RATE_LIMIT_REDIS_URL = env("RATE_LIMIT_REDIS_URL", default=CELERY_BROKER_URL)
RATE_LIMIT_MAX_WAIT_SECONDS = env.float("RATE_LIMIT_MAX_WAIT_SECONDS", default=10.0)
# The circuit breaker of a connection with a fallback (connectors/circuit.py), in the same Redis: after
# CIRCUIT_FAILURES transient failures in a row its calls go straight to the fallback for
# CIRCUIT_COOLDOWN_SECONDS, then one call tries it again.
CIRCUIT_FAILURES = env.int("CIRCUIT_FAILURES", default=5)
CIRCUIT_COOLDOWN_SECONDS = env.int("CIRCUIT_COOLDOWN_SECONDS", default=30)
