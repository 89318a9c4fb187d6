"""Settings, all from the environment (a `.env` file is read when present).

`.env.example` lists every variable. No secret has a default: any process refuses to start
without them, whatever `ENVIRONMENT` says, except the test suite, which generates its own.
"""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from urllib.parse import unquote

import environ
from django.core.exceptions import ImproperlyConfigured
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.retry import Retry

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
if (BASE_DIR / ".env").is_file():
    environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

ENVIRONMENT = env.str("ENVIRONMENT", default="development")
if ENVIRONMENT not in {"development", "test", "production"}:
    raise ImproperlyConfigured("ENVIRONMENT must be development, test or production")
IS_PRODUCTION = ENVIRONMENT == "production"
if ENVIRONMENT == "test":
    # Every test process, and every server the tests start, lives on the suite's set day
    # (SUITE_CLOCK), never on the wall clock's: see tradingplatform/testclock.py.
    from tradingplatform.testclock import suite_clock_apply

    suite_clock_apply()

# Secrets. None has a default: the repository holds no usable secret. `make run` generates each on
# first start and keeps it under `.data/`; the test suite generates fresh ones per run (below); any
# other process refuses to start without them, whatever ENVIRONMENT says (the check at the end).
SECRET_NAMES = ("SECRET_KEY", "JWT_SECRET", "FERNET_KEYS", "ADMIN_API_KEY")
SECRET_MIN_LENGTH = 32
if ENVIRONMENT == "test":
    import base64 as _base64
    import os as _os
    import secrets as _secrets

    # Fresh, unpredictable secrets for this test run, exported so that the daphne and Celery
    # processes the tests start share them.
    _generated = {
        "SECRET_KEY": _secrets.token_urlsafe(48),
        "JWT_SECRET": _secrets.token_urlsafe(48),
        "FERNET_KEYS": _base64.urlsafe_b64encode(_secrets.token_bytes(32)).decode(),
        "ADMIN_API_KEY": _secrets.token_urlsafe(32),
    }
    for _name, _value in _generated.items():
        if not _os.environ.get(_name) and not (_name == "FERNET_KEYS" and _os.environ.get("ENCRYPTION_KEY")):
            _os.environ[_name] = _value

SECRET_KEY = env.str("SECRET_KEY", default="")
JWT_SECRET = env.str("JWT_SECRET", default="")
# FERNET_KEYS (comma-separated, newest first) supersedes the single ENCRYPTION_KEY: the first key
# encrypts, every key decrypts. It encrypts broker credentials and TOTP seeds at rest
# (`python manage.py rotate_broker_credentials` re-encrypts both under the first key).
FERNET_KEYS = [key for key in env.list("FERNET_KEYS", default=[]) if key] or (
    [env.str("ENCRYPTION_KEY")] if env.str("ENCRYPTION_KEY", default="") else []
)
ADMIN_API_KEY = env.str("ADMIN_API_KEY", default="")

DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CORS_ALLOWED_ORIGINS = env.list("CORS_ORIGINS", default=[])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
PORT = env.int("PORT", default=8000)

USE_MOCK_BROKER = env.bool("USE_MOCK_BROKER", default=True)
AUTONOMOUS_ENABLED = env.bool("AUTONOMOUS_ENABLED", default=False)
AUTO_CREATE_TABLES = env.bool("AUTO_CREATE_TABLES", default=not IS_PRODUCTION)
# Annual rate used to discount option values (Black-76); a decimal, 0.04 is 4 %.
RISK_FREE_RATE = env.float("RISK_FREE_RATE", default=0.04)
# Operator ceilings on the risk limits an owner may set (names and units in risk.limits). Every
# one has a platform default, so that no owner (or stolen owner token) can switch the governor off
# with an absurd limit; an operator may lower or raise them, never remove them (empty = default).
# A stored limit above a ceiling lowered later reads as the ceiling.
RISK_CEILING_DEFAULTS = {
    "RISK_CEILING_MAX_NET_DELTA": "500",
    "RISK_CEILING_MAX_ORDER_CONTRACTS": "500",
    "RISK_CEILING_MAX_LEG_CONTRACTS": "250",
    "RISK_CEILING_MAX_DAILY_LOSS": "1000000",
    "RISK_CEILING_MAX_OPEN_LEGS": "100",
    "RISK_CEILING_MAX_SPREAD_PCT": "1.0",
    "RISK_CEILING_MAX_QUOTE_AGE_SECONDS": "300",
    "RISK_CEILING_BREAKER_LOSS_COUNT": "20",
    "RISK_CEILING_BREAKER_LOSS_THRESHOLD": "100000",
    "RISK_CEILING_MAX_ORDERS_PER_MINUTE": "120",
}
for _name, _default in RISK_CEILING_DEFAULTS.items():
    globals()[_name] = env.str(_name, default="") or _default
PHILLIP_BASE_URL = env.str("PHILLIP_BASE_URL", default="https://api.phillipcapital.example/v1")
# Broker endpoints an owner's credentials may name (Phillip base_url, IBKR host[:port]): `host`,
# `host:port` or `*.domain`; PHILLIP_BASE_URL's host is always allowed, loopback outside production.
BROKER_ALLOWED_HOSTS = env.list("BROKER_ALLOWED_HOSTS", default=[])
# Interactive Brokers: calls go to the session process (manage.py ibkr_sessions) over Redis; each
# call's whole life is bounded by IBKR_CALL_DEADLINE_SECONDS (no retry while the client lock is held).
IBKR_SESSION_PROCESS = env.bool("IBKR_SESSION_PROCESS", default=True)
IBKR_CALL_DEADLINE_SECONDS = env.float("IBKR_CALL_DEADLINE_SECONDS", default=15.0)
IBKR_SESSIONS_SCAN_SECONDS = env.float("IBKR_SESSIONS_SCAN_SECONDS", default=30.0)
IBKR_SESSIONS_REDIS_PREFIX = env.str("IBKR_SESSIONS_REDIS_PREFIX", default=f"tp:{ENVIRONMENT}:ibkr")

SHARED_APPS = [
    "django_tenants",
    "daphne",
    # Two-factor authentication (TOTP devices, recovery codes): before tenants, whose admin module
    # takes their console pages down (a device's secret never shows there; resets go through
    # tenants.mfa, audited).
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "tenants",
    "audit",
    "stream",  # the live stream's outbox (tradingplatform.events)
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "tenants.console_apps.OperatorAdminConfig",  # django.contrib.admin; its site: tenants.console
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_simplejwt.token_blacklist",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "corsheaders",
    "channels",
    "django_celery_beat",
    "desk",
]
TENANT_APPS = [
    "django.contrib.contenttypes",
    "brokers",
    "risk",
    "agents",
]
INSTALLED_APPS = SHARED_APPS + [app for app in TENANT_APPS if app not in SHARED_APPS]

TENANT_MODEL = "tenants.Client"
TENANT_DOMAIN_MODEL = "tenants.Domain"
DATABASE_ROUTERS = ("django_tenants.routers.TenantSyncRouter",)
# New clients are cloned from this migrated template schema instead of replaying migrations.
TENANT_BASE_SCHEMA = "tenant_template"
TENANT_CREATION_FAKES_MIGRATIONS = True
# Set search_path when the tenant changes, not before every cursor (a round trip per query).
TENANT_LIMIT_SET_CALLS = True

MIDDLEWARE = [
    "tradingplatform.logging.RequestContextMiddleware",
    "tradingplatform.middleware.RejectNulBytesMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    # Every lock wait and statement of a request is bounded (a client busy answers 503, retry).
    "tradingplatform.tasking.RequestDatabaseWaitsBoundedMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",  # request.user.is_verified(): the session's second factor
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "desk.middleware.ContentSecurityPolicyMiddleware",
    # Last, so that its process_exception sees a view's error first: a dependency down is a 503.
    "tradingplatform.outages.DependencyUnavailableMiddleware",
]
# The Retry-After of a 503 for a dependency that is down (tradingplatform.outages).
OUTAGE_RETRY_AFTER_SECONDS = env.int("OUTAGE_RETRY_AFTER_SECONDS", default=5)

ROOT_URLCONF = "tradingplatform.urls"
ASGI_APPLICATION = "tradingplatform.asgi.application"

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
            ],
        },
    },
]

DATABASE_URL = env.str("DATABASE_URL", default="postgres://postgres@127.0.0.1:5432/tradingplatform")
DATABASES = {"default": env.db_url_config(DATABASE_URL)}
DATABASES["default"]["ENGINE"] = "django_tenants.postgresql_backend"
# A unix socket directory arrives percent-encoded in the URL host (postgres://user@%2Fpath/db).
DATABASES["default"]["HOST"] = unquote(DATABASES["default"].get("HOST") or "")
# Persistent connections leak under ASGI (one per worker thread, never closed).
DATABASES["default"]["CONN_MAX_AGE"] = 0
DATABASES["default"]["TEST"] = {"NAME": env.str("TEST_DATABASE_NAME", default="test_tradingplatform")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")
# Redis commands that meet a dead connection (Redis restarted) are sent once more on a new one;
# anything else fails at once (redis-py 8 would otherwise retry 10 times with backoff, ~4 s).
# The channel layer's asyncio client needs the asyncio Retry (the other one does not retry it).
REDIS_RETRY = Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))
REDIS_ASYNC_RETRY = AsyncRetry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": f"tp:{ENVIRONMENT}",
        # Fail fast when Redis is down (its callers fall back or answer 503) and drop a dead
        # connection when it returns.
        "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2, "health_check_interval": 10,
                    "retry": REDIS_RETRY},
    },
    # The login throttle's counts while Redis is down (tenants.throttle_store).
    "login_throttle": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "login_throttle_cache"},
}
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        # redis-py 8 reads with a 5 s socket timeout by default, which cuts the layer's blocking
        # 5 s BZPOPMIN and kills every idle websocket consumer; a little above it keeps a dead
        # Redis detectable (redis/redis-py#4091, django/channels_redis#422).
        # A pooled connection that died with a restarted Redis is retried once on a fresh one
        # (without it the first websockets after Redis returned failed), and idle ones are
        # checked before use.
        "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 10, "health_check_interval": 10,
                              "retry": REDIS_ASYNC_RETRY}],
                   "prefix": f"tp:{ENVIRONMENT}:channels"},
    }
}

# The Celery broker: Redis unless CELERY_BROKER_URL names another (amqp://... for RabbitMQ; docs/deploy.md).
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL)
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Delivery guarantees (docs/runbooks/stalled-cycles.md has the table): tasks that are safe to run
# again are acknowledged after they ran and requeued when their pool process dies
# (`reject_on_worker_lost`, set per task); the fan-out tasks are acknowledged on receipt (the next
# beat tick does them again). A message taken by a worker whose main process died comes back after
# the Redis visibility timeout, sized to the longest task's hard time limit plus the scheduler's
# look-ahead (an ETA'd cycle is held unacknowledged until it starts); every worker looks for such
# messages every 10 s (kombu's default sweep is every 100 s: ten 10 s ticks, one scanning).
CELERY_TASK_REJECT_ON_WORKER_LOST = False
CELERY_TASK_SOFT_TIME_LIMIT = 60
CELERY_TASK_TIME_LIMIT = 90
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT_SECONDS", default=360),
    "unacked_restore_interval": 10,
    "unacked_restore_throttle": 1,
}
# Every task's database waits are bounded (tradingplatform/tasking.py): a lock not granted within
# TASK_LOCK_TIMEOUT_SECONDS (a row, a table, a client's advisory lock) ends the task's work for
# that client as "client busy"; no statement runs longer than TASK_STATEMENT_TIMEOUT_SECONDS,
# which is below every task's soft time limit, so a time limit never leaves a query behind.
TASK_LOCK_TIMEOUT_SECONDS = env.float("TASK_LOCK_TIMEOUT_SECONDS", default=5.0)
TASK_STATEMENT_TIMEOUT_SECONDS = env.float("TASK_STATEMENT_TIMEOUT_SECONDS", default=30.0)
# A web request waits at most WEB_LOCK_TIMEOUT_SECONDS for a lock (a client's book held by a cycle,
# a sync or an order) and WEB_STATEMENT_TIMEOUT_SECONDS for a statement, then answers 503 "busy"
# with Retry-After: the server's worker threads are few. Halts are not bounded: they wait.
WEB_LOCK_TIMEOUT_SECONDS = env.float("WEB_LOCK_TIMEOUT_SECONDS", default=10.0)
WEB_STATEMENT_TIMEOUT_SECONDS = env.float("WEB_STATEMENT_TIMEOUT_SECONDS", default=30.0)
# Seconds between scheduled book syncs of every client (fills, positions, breaker, live greeks).
BOOK_SYNC_SECONDS = env.float("BOOK_SYNC_SECONDS", default=60.0)
# How long a broker's listing of a future's option chain is kept (in the cache, per client, broker
# and future: brokers.services.option_chains_list) before a book sync lists it at the broker again;
# the quotes are asked at every sync. 0: list at every sync.
OPTION_CHAIN_CACHE_SECONDS = env.int("OPTION_CHAIN_CACHE_SECONDS", default=3600)
# Seconds between the scheduler's looks at which agents are due a cycle (each agent's own interval
# is its `cycle_interval_seconds` parameter). Each look queues the cycles whose slot starts before
# the next look, to start at their slot's start (an ETA), so the tick bounds no delay.
AGENT_SCHEDULER_TICK_SECONDS = env.float("AGENT_SCHEDULER_TICK_SECONDS", default=5.0)
# A cycle still `running` this long after it started lost its worker (a killed process): the
# reaper (every AGENT_CYCLE_REAP_SECONDS) ends it as abandoned. Above the cycle's hard time limit.
AGENT_CYCLE_ABANDONED_AFTER_SECONDS = env.float("AGENT_CYCLE_ABANDONED_AFTER_SECONDS", default=300.0)
AGENT_CYCLE_REAP_SECONDS = env.float("AGENT_CYCLE_REAP_SECONDS", default=60.0)
# The history of each book's net greeks and P&L (one point per underlying at every book sync):
# points older than BOOK_HISTORY_COMPACT_AFTER_HOURS keep only the last of each
# BOOK_HISTORY_COMPACT_STEP_MINUTES, points older than BOOK_HISTORY_RETENTION_DAYS are dropped;
# the compaction runs every BOOK_HISTORY_COMPACT_SECONDS (beat).
BOOK_HISTORY_RETENTION_DAYS = env.int("BOOK_HISTORY_RETENTION_DAYS", default=90)
BOOK_HISTORY_COMPACT_AFTER_HOURS = env.int("BOOK_HISTORY_COMPACT_AFTER_HOURS", default=24)
BOOK_HISTORY_COMPACT_STEP_MINUTES = env.int("BOOK_HISTORY_COMPACT_STEP_MINUTES", default=5)
BOOK_HISTORY_COMPACT_SECONDS = env.float("BOOK_HISTORY_COMPACT_SECONDS", default=3600.0)
# The options' two-sided quotes stored at every book sync (risk.models.OptionQuotePoint, what the
# minimum-variance delta's coefficients are estimated from): the same compaction keeps one sync per
# 30 minutes of those older than BOOK_HISTORY_COMPACT_AFTER_HOURS and drops them after
# OPTION_HISTORY_DAYS.
OPTION_HISTORY_DAYS = env.int("OPTION_HISTORY_DAYS", default=30)
# The live stream's outbox (tradingplatform.events): events whose fan-out failed (Redis down) are
# sent by the relay every STREAM_RELAY_SECONDS; events are kept STREAM_RETENTION_HOURS for replays
# (`?since=`), pruned every STREAM_PRUNE_SECONDS.
STREAM_RELAY_SECONDS = env.float("STREAM_RELAY_SECONDS", default=5.0)
STREAM_RETENTION_HOURS = env.int("STREAM_RETENTION_HOURS", default=72)
STREAM_PRUNE_SECONDS = env.float("STREAM_PRUNE_SECONDS", default=3600.0)
CELERY_BEAT_SCHEDULE = {
    "relay-stream-events": {"task": "stream.events_relay", "schedule": STREAM_RELAY_SECONDS},
    "prune-stream-events": {"task": "stream.events_prune", "schedule": STREAM_PRUNE_SECONDS},
    "sync-every-book": {"task": "risk.books_sync_all", "schedule": BOOK_SYNC_SECONDS},
    "compact-book-history": {"task": "risk.book_history_compact_all", "schedule": BOOK_HISTORY_COMPACT_SECONDS},
    "schedule-agent-cycles": {"task": "agents.cycles_schedule", "schedule": AGENT_SCHEDULER_TICK_SECONDS},
    "reap-abandoned-cycles": {"task": "agents.cycles_reap", "schedule": AGENT_CYCLE_REAP_SECONDS},
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework_simplejwt.authentication.JWTAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["tradingplatform.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "tradingplatform.api.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=env.int("JWT_ACCESS_MINUTES", default=15)),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=env.int("JWT_REFRESH_DAYS", default=1)),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "UPDATE_LAST_LOGIN": True,
    # Every token carries a digest of its user's password hash; a password change (by the user or
    # an operator) makes every earlier access and refresh token fail at once.
    "CHECK_REVOKE_TOKEN": True,
    "REVOKE_TOKEN_CLAIM": "hash_password",
    "ALGORITHM": "HS256",
    "SIGNING_KEY": JWT_SECRET,
    "AUTH_HEADER_TYPES": ("Bearer",),
}

# A refresh token rotates, but never past this many hours after the login that began the chain:
# a stolen refresh token dies with its session.
JWT_SESSION_MAX_HOURS = env.int("JWT_SESSION_MAX_HOURS", default=24)
# How often an open websocket re-checks its token and access (expiry, membership, role, user
# deactivated, password changed): it is closed 4401/4404 at most this many seconds after.
WS_REAUTH_SECONDS = env.float("WS_REAUTH_SECONDS", default=2.0)

# Login throttle, shared by the API and the operator console (tenants.services.login_*).
# A username failing LOGIN_FAILURE_LIMIT times from one address must then wait, at that address
# only, LOGIN_DELAY_BASE_SECONDS, doubling with each further failure up to LOGIN_DELAY_MAX_SECONDS:
# the attacker slows down, the victim elsewhere and colleagues at the same address do not. One
# address failing LOGIN_ADDRESS_FAILURE_LIMIT times (any usernames) waits out the window.
# Failures are remembered for LOGIN_FAILURE_WINDOW_SECONDS after the last one.
LOGIN_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
LOGIN_FAILURE_WINDOW_SECONDS = env.int("LOGIN_FAILURE_WINDOW_SECONDS", default=900)
LOGIN_DELAY_BASE_SECONDS = env.int("LOGIN_DELAY_BASE_SECONDS", default=30)
LOGIN_DELAY_MAX_SECONDS = env.int("LOGIN_DELAY_MAX_SECONDS", default=900)
LOGIN_ADDRESS_FAILURE_LIMIT = env.int("LOGIN_ADDRESS_FAILURE_LIMIT", default=100)
# Two-factor authentication (TOTP, django-otp; tenants.mfa). Optional per user, mandatory per
# client when its owner says so, and for staff (console and operator API) when
# MFA_REQUIRED_FOR_STAFF, which production turns on.
MFA_REQUIRED_FOR_STAFF = env.bool("MFA_REQUIRED_FOR_STAFF", default=IS_PRODUCTION)
# How long the second step of a login may follow the password (the signed mfa_token's lifetime).
MFA_LOGIN_TOKEN_SECONDS = env.int("MFA_LOGIN_TOKEN_SECONDS", default=300)
OTP_TOTP_ISSUER = env.str("OTP_ISSUER", default="Trading platform")
# Each wrong code makes the device wait 1, 2, 4, ... s before it checks another (on top of the
# login throttle, which counts wrong codes as failures).
OTP_TOTP_THROTTLE_FACTOR = 1
OTP_STATIC_THROTTLE_FACTOR = 1

# Reverse proxies (addresses or CIDR networks) whose X-Forwarded-For is believed, for throttling
# and the audit's addresses; empty: the socket address always (tradingplatform.network).
TRUSTED_PROXIES = env.list("TRUSTED_PROXIES", default=[])

SPECTACULAR_SETTINGS = {
    "TITLE": "Trading platform API",
    "DESCRIPTION": "Multi-tenant delta-neutral futures-options trading agents.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
WHITENOISE_USE_FINDERS = not IS_PRODUCTION

LOGIN_URL = "/login"  # the desk's login page (the console keeps its own at /admin/login/)
SESSION_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"
if IS_PRODUCTION:
    # Behind TLS: cookies never travel in clear, browsers remember to use HTTPS (HSTS, a year, with
    # subdomains), and the API's schema and Swagger UI are for logged-in users only.
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31_536_000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)  # usually the proxy's job
    SPECTACULAR_SETTINGS["SERVE_PERMISSIONS"] = ["rest_framework.permissions.IsAuthenticated"]

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_context": {"()": "tradingplatform.logging.RequestContextFilter"}},
    "formatters": {"json": {"()": "tradingplatform.logging.JsonFormatter"}},
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
            "formatter": "json",
            "filters": ["request_context"],
        }
    },
    "root": {"handlers": ["stdout"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "ib_async": {"level": "WARNING"},
        "daphne": {"level": "WARNING"},
        # The openai SDK's HTTP client logs every request at INFO; the chat's own log says enough.
        "httpx2": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},
    },
}


# SHA-256 of secrets once published in this repository as development defaults: refused anywhere.
_PUBLISHED_SECRET_HASHES = frozenset({
    "2d282d4325496f8a24e7ac27f75b9eedcb400c0d48e8be1d823e6f53d4c5da42",  # SECRET_KEY
    "e1683f4fe7e9edf37dabee6e5b28945abe8d87daf0648dd406df77e79043a52f",  # JWT_SECRET
    "27b83f7588c3e00753d4fb2247b79b3da2b27c0c0d5c439f4117d7ef0817ed1f",  # ENCRYPTION_KEY
})


def _published(value: str) -> bool:
    import hashlib

    return hashlib.sha256(value.encode()).hexdigest() in _PUBLISHED_SECRET_HASHES


def secrets_problems() -> list[str]:
    """What is wrong with this process's secrets, one line per secret ([] when all are good)."""
    values = {"SECRET_KEY": [SECRET_KEY], "JWT_SECRET": [JWT_SECRET], "FERNET_KEYS": FERNET_KEYS,
              "ADMIN_API_KEY": [ADMIN_API_KEY]}
    problems = []
    for name, keys in values.items():
        if not keys or not all(keys):
            problems.append(f"{name} is not set")
        elif any(len(key) < SECRET_MIN_LENGTH for key in keys):
            problems.append(f"{name} is shorter than {SECRET_MIN_LENGTH} characters")
        elif any(_published(key) for key in keys):
            problems.append(f"{name} is a value once published in the repository")
    return problems


if _problems := secrets_problems():
    raise ImproperlyConfigured(
        "Refusing to start without its secrets: " + "; ".join(_problems)
        + ". Generate them (README, 'Secrets'); `make run` does it for you under .data/."
    )
if IS_PRODUCTION and DEBUG:
    raise ImproperlyConfigured("ENVIRONMENT=production refuses DEBUG=true")

# The agent's chat may use any OpenAI-compatible chat-completions endpoint (unset: deterministic
# intents only). The key is a secret: never logged, stored or returned.
LLM_BASE_URL = env.str("LLM_BASE_URL", default="")
LLM_MODEL = env.str("LLM_MODEL", default="")
LLM_API_KEY = env.str("LLM_API_KEY", default="")
LLM_TIMEOUT_SECONDS = env.float("LLM_TIMEOUT_SECONDS", default=20)  # the whole turn, tool rounds included
LLM_MAX_TOOL_ROUNDS = env.int("LLM_MAX_TOOL_ROUNDS", default=4)
LLM_MAX_TOKENS = env.int("LLM_MAX_TOKENS", default=600)  # per completion
