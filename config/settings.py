"""Settings for Segment Portal, read from the environment.

Safe by default: DEBUG is off unless DJANGO_DEBUG=1 says otherwise (`make run`, `make test`
and the other development targets set it), and with DEBUG off DJANGO_SECRET_KEY must be set.
Development needs nothing else: SQLite under var/, tasks run in-process. Production sets
DJANGO_SECRET_KEY, DJANGO_ALLOWED_HOSTS, DATABASE_URL (PostgreSQL) and CELERY_BROKER_URL
(Redis); see docs/deployment.md.
"""

import datetime as dt
import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DJANGO_DEBUG", False)

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is off (the default). For "
            "development, set DJANGO_DEBUG=1 as `make run` does; see docs/deployment.md."
        )
    # Development only: never used when DEBUG is off (see the check above).
    SECRET_KEY = "dev-only-insecure-key-do-not-use-in-production"  # noqa: S105

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost" if DEBUG else "")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_filters",
    "django_tables2",
    "crispy_forms",
    "crispy_bootstrap5",
    "django_htmx",
    "django_celery_beat",
    "csp",
    "axes",
    # django-ninja's templates and static files: the API's docs page (/api/v1/docs) is served
    # with the Swagger UI it ships, not from a CDN (config/api.py).
    "ninja",
    "customers",
    "segments",
    "campaigns",
    "analytics",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "customers.portal.middleware.ContentSecurityPolicyMiddleware",  # django-csp's
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "customers.portal.middleware.CurrentMerchantMiddleware",
    "customers.portal.middleware.DatabaseBusyMiddleware",
    # Last, as django-axes requires: turns a locked-out sign-in into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"

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
                "customers.portal.context_processors.current_merchant",
            ],
        },
    },
]

WSGI_APPLICATION = "config.wsgi.application"

DATABASES = {
    "default": dj_database_url.config(
        env="DATABASE_URL",
        default=f"sqlite:///{BASE_DIR / 'var' / 'db.sqlite3'}",
        conn_max_age=int(os.environ.get("DATABASE_CONN_MAX_AGE", "60")),
    )
}
# SQLite, the embedded database, with several processes (web, worker, commands):
# - WAL, so readers never wait for the writer and the writer never waits for readers;
# - every transaction BEGIN IMMEDIATE: it takes the write lock when it starts, so a
#   second writer waits up to `timeout` seconds (the busy timeout) for the first to
#   finish. A deferred transaction that read first and then wanted to write failed at
#   once with "database is locked" whenever another write had committed in between (its
#   snapshot was stale, and SQLite does not wait in that case);
# - a write that still waits too long answers "busy, try again" and writes nothing
#   (customers.portal.middleware.DatabaseBusyMiddleware; import_data exits 75).
SQLITE_OPTIONS = {
    "timeout": int(os.environ.get("SQLITE_BUSY_TIMEOUT", "30")),
    "transaction_mode": "IMMEDIATE",
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"].setdefault("OPTIONS", {})
    DATABASES["default"]["OPTIONS"].update(SQLITE_OPTIONS)
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # PostgreSQL's JIT compiles any statement whose estimated cost passes 100,000, and the
    # estimates of a purchase's metrics upsert (a few grouped subqueries joined on one
    # customer) multiply to that: compiling took 480 ms of a 2 ms statement, and 3.2 of
    # 3.9 s of a score computation. Nothing here gains from it. Set before the `options`
    # the URL may carry, so an explicit `-c jit=on` there still wins.
    DATABASES["default"].setdefault("OPTIONS", {})
    DATABASES["default"]["OPTIONS"]["options"] = (
        "-c jit=off " + DATABASES["default"]["OPTIONS"].get("options", "")
    ).strip()
    # The API's hot reads (`customers.compiled`) run through server-side-binding cursors,
    # which psycopg prepares at once with this threshold; Django's own cursors bind on the
    # client and are never prepared. Off (None) for a pooler that cannot keep prepared
    # statements across transactions.
    if os.environ.get("DATABASE_PREPARED_STATEMENTS", "1") != "0":
        DATABASES["default"]["OPTIONS"].setdefault("prepare_threshold", 0)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Covering indexes (INCLUDE) are a PostgreSQL feature; on SQLite, the embedded database,
# Django builds the same indexes without the extra columns, which is all it needs there.
SILENCED_SYSTEM_CHECKS = ["models.W040"]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# Sign-in throttling (django-axes): 5 failed sign-ins lock the account (from any address) and
# the address (for any account) for 15 minutes; a success resets the count. Support unlocks
# in the admin (Users: "Unlock sign-in", or Access attempts) or with `manage.py axes_reset`.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = int(os.environ.get("DJANGO_LOGIN_FAILURE_LIMIT", "5"))
AXES_COOLOFF_TIME = dt.timedelta(minutes=int(os.environ.get("DJANGO_LOGIN_LOCKOUT_MINUTES", "15")))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "customers.portal.security.lockout_response"
AXES_CLIENT_IP_CALLABLE = "customers.portal.security.client_ip"
AXES_HTTP_RESPONSE_CODE = 429
#: Reverse proxies in front of the portal that append to X-Forwarded-For (0: none; the
#: client's address is REMOTE_ADDR).
PROXY_COUNT = int(os.environ.get("DJANGO_PROXY_COUNT", "0"))

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "customers:list"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "var" / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}

# Uploaded imports are read from a temporary file, never held whole in memory.
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
# Request bodies other than uploaded files: the largest the portal needs is the rule builder's
# (rule JSON of at most 256 KiB, the same values in its widgets, and the paste box). A larger
# body, or more fields, is refused with 400 before anything reads it.
DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024
DATA_UPLOAD_MAX_NUMBER_FIELDS = 10_000

# The rule builder's live count stops after this long (docs/segment-builder.md): no rule
# tree keeps the database busy for longer on one user's keystroke.
SEGMENT_LIVE_COUNT_TIMEOUT_MS = int(os.environ.get("SEGMENT_LIVE_COUNT_TIMEOUT_MS", "5000"))

# The cache: Redis when CACHE_URL is set (redis://host:6379/1), shared by every web process;
# otherwise each process keeps its own in memory. The API's rate limit counts in it, so with
# several web processes it is exact only on Redis (docs/deployment.md).
CACHE_URL = os.environ.get("CACHE_URL", "")
CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL}
        if CACHE_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}

# The JSON API's rate limit: requests a minute per token (docs/api.md, "Rate limits"); 0
# switches it off.
API_RATE_LIMIT = int(os.environ.get("API_RATE_LIMIT", "1200"))

# Content-Security-Policy (django-csp): scripts, styles, fonts and fetches from this site only.
# The portal has no inline script or style (static/js/portal.js does what pages need), and
# htmx is configured to evaluate no code (templates/base.html). Bootstrap's icons are data:
# SVG images.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

CRISPY_ALLOWED_TEMPLATE_PACKS = "bootstrap5"
CRISPY_TEMPLATE_PACK = "bootstrap5"
DJANGO_TABLES2_TEMPLATE = "django_tables2/bootstrap5.html"

# Celery: a Redis broker in production; without one, tasks run in-process.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "")
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND") or None
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1

# Campaign channels (docs/campaign-channels.md): where campaigns' emails, SMS and push
# notifications go. With nothing set, every channel writes JSON files under var/outbox.
# Email goes through Django's email framework; these are its SMTP settings.
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = int(os.environ.get("EMAIL_PORT", "25"))
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
if EMAIL_USE_TLS and EMAIL_USE_SSL:
    raise ImproperlyConfigured("Set EMAIL_USE_TLS (STARTTLS, port 587) or EMAIL_USE_SSL, not both.")
# Django's default is no timeout: one stuck server would hold a sender for ever.
EMAIL_TIMEOUT = int(os.environ.get("EMAIL_TIMEOUT", "30"))
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "webmaster@localhost")
# Empty: DEFAULT_FROM_EMAIL.
CAMPAIGN_FROM_EMAIL = os.environ.get("CAMPAIGN_FROM_EMAIL", "")
CAMPAIGN_OUTBOX_DIR = Path(os.environ.get("CAMPAIGN_OUTBOX_DIR", "") or BASE_DIR / "var" / "outbox")


def campaign_channels(environ: dict[str, str]) -> dict[str, dict]:
    """`CAMPAIGN_CHANNELS` from CAMPAIGN_<CHANNEL>_BACKEND (default file) and, for http,
    CAMPAIGN_<CHANNEL>_URL and _SECRET (checked when a campaign sends: campaigns.channels)."""
    backends = {
        "file": ("campaigns.channels.FileBackend", {"DIR": str(CAMPAIGN_OUTBOX_DIR)}),
        "console": ("campaigns.channels.ConsoleBackend", {}),
        "smtp": (
            "campaigns.channels.EmailBackend",
            {"EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend"},
        ),
    }
    channels = {}
    for channel, kinds in (
        ("email", ("file", "console", "smtp")),
        ("sms", ("file", "console", "http")),
        ("push", ("file", "console", "http")),
    ):
        env = f"CAMPAIGN_{channel.upper()}"
        kind = environ.get(f"{env}_BACKEND", "") or "file"
        if kind not in kinds:
            raise ImproperlyConfigured(f"{env}_BACKEND is {kind!r}: choose one of {kinds}.")
        if kind == "http":
            backend, options = (
                "campaigns.channels.HttpBackend",
                {
                    "URL": environ.get(f"{env}_URL", ""),
                    "SECRET": environ.get(f"{env}_SECRET", ""),
                },
            )
        else:
            backend, options = backends[kind]
        channels[channel] = {"BACKEND": backend, "OPTIONS": dict(options)}
    return channels


CAMPAIGN_CHANNELS = campaign_channels(dict(os.environ))
# A delivery left "sending" this long was interrupted (its worker died) and is requeued.
CAMPAIGN_DELIVERY_LEASE_SECONDS = int(os.environ.get("CAMPAIGN_DELIVERY_LEASE_SECONDS", "600"))

# Webhooks (docs/webhooks.md). Events per message at most (a large refresh is split into
# messages of this many), hours of retries before a message is given up, hours of failing
# before an endpoint is switched off, seconds per request. Loopback and private addresses
# are refused unless WEBHOOK_ALLOW_PRIVATE_HOSTS (on by default with DEBUG: tests, the demo).
WEBHOOK_BATCH_SIZE = int(os.environ.get("WEBHOOK_BATCH_SIZE", "1000"))
WEBHOOK_RETRY_HOURS = int(os.environ.get("WEBHOOK_RETRY_HOURS", "24"))
WEBHOOK_DISABLE_AFTER_HOURS = int(os.environ.get("WEBHOOK_DISABLE_AFTER_HOURS", "24"))
WEBHOOK_TIMEOUT = float(os.environ.get("WEBHOOK_TIMEOUT", "10"))
WEBHOOK_ALLOW_PRIVATE_HOSTS = env_bool("WEBHOOK_ALLOW_PRIVATE_HOSTS", DEBUG)

if not DEBUG:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = int(os.environ.get("DJANGO_HSTS_SECONDS", "31536000"))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("DJANGO_LOG_LEVEL", "INFO")},
}
