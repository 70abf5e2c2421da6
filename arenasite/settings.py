"""Settings, read from the environment (see README "Configuration" and .env.example)."""

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from .env import env_bool, env_int, env_json_list, env_list, env_str, load_env_file

BASE_DIR = Path(__file__).resolve().parent.parent
load_env_file(BASE_DIR / ".env")
VAR_DIR = Path(env_str("ARENA_VAR_DIR", str(BASE_DIR / "var"))).resolve()

DEBUG = env_bool("DEBUG", False)
ARENA_STRICT = env_bool("ARENA_STRICT", False)

SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY must be set when DEBUG is off (set DEBUG=1 for local development)"
        )
    SECRET_KEY = "insecure-local-development-key-do-not-use-in-production"

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS")
if not ALLOWED_HOSTS:
    if not DEBUG:
        raise ImproperlyConfigured(
            "ALLOWED_HOSTS must be set when DEBUG is off, e.g. ALLOWED_HOSTS=arena.example.org"
        )
    ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]", "testserver"]
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "django_htmx",
    "template_partials",
    "arena",
    "ratings",
    "judging",
    "ops",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "arenasite.urls"
WSGI_APPLICATION = "arenasite.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "builtins": ["template_partials.templatetags.partials"],
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "arena.roles.roles_context",
            ],
        },
    },
]

# Database: DATABASE_URL (postgres://user@host:5432/name) or a SQLite file under var/.
DATABASE_URL = env_str("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'db.sqlite3'}"
try:
    _db = dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60, minimum=0))
except ValueError as exc:
    raise ImproperlyConfigured(f"DATABASE_URL={DATABASE_URL!r} is not a database URL: {exc}") from None
if _db["ENGINE"] == "django.db.backends.sqlite3":
    # A file (not memory) so that worker processes started by tests see the test database.
    _db["TEST"] = {"NAME": str(VAR_DIR / f"test-db-{os.getpid()}.sqlite3")}
    _db["OPTIONS"] = {"timeout": 30, "transaction_mode": "IMMEDIATE"}
    _db["CONN_MAX_AGE"] = 0
else:
    _db["CONN_HEALTH_CHECKS"] = True
DATABASES = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media"))).resolve()
MEDIA_URL = "/media/"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# Uploads of model outputs.
ARENA_UPLOAD_MAX_BYTES = env_int("ARENA_UPLOAD_MAX_BYTES", 2 * 1024**3, minimum=1)
ARENA_UPLOAD_MAX_UNCOMPRESSED_BYTES = env_int("ARENA_UPLOAD_MAX_UNCOMPRESSED_BYTES", 8 * 1024**3, minimum=1)
ARENA_UPLOAD_MAX_ENTRIES = env_int("ARENA_UPLOAD_MAX_ENTRIES", 50_000, minimum=1)
ARENA_MAX_IMAGE_PIXELS = env_int("ARENA_MAX_IMAGE_PIXELS", 40_000_000, minimum=1)
ARENA_UPLOAD_MAX_ROWS = env_int("ARENA_UPLOAD_MAX_ROWS", 200_000, minimum=1)
ARENA_MAX_METADATA_BYTES = env_int("ARENA_MAX_METADATA_BYTES", 16 * 1024, minimum=2)
ARENA_UPLOAD_DIR = VAR_DIR / "uploads"
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024**2
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024**2
FILE_UPLOAD_TEMP_DIR = None

# Voting.
ARENA_ASSIGNMENT_TTL_SECONDS = env_int("ARENA_ASSIGNMENT_TTL_SECONDS", 30 * 60, minimum=10)
# Crowd annotators created per client address per hour (Prolific links); 0 disables the limit.
ARENA_CROWD_SIGNUPS_PER_HOUR = env_int("ARENA_CROWD_SIGNUPS_PER_HOUR", 30, minimum=0)
# Where the client address is read: REMOTE_ADDR, or a header a trusted proxy sets (e.g. HTTP_X_REAL_IP).
ARENA_CLIENT_IP_HEADER = env_str("ARENA_CLIENT_IP_HEADER", "REMOTE_ADDR")

# Accounts: failed sign-ins (login form, /api/token/) allowed per user name and per client
# address within the window before 429; API token lifetime (0: tokens never expire).
ARENA_AUTH_MAX_FAILURES = env_int("ARENA_AUTH_MAX_FAILURES", 10, minimum=1)
ARENA_AUTH_FAILURE_WINDOW_SECONDS = env_int("ARENA_AUTH_FAILURE_WINDOW_SECONDS", 15 * 60, minimum=1)
ARENA_TOKEN_TTL_HOURS = env_int("ARENA_TOKEN_TTL_HOURS", 24 * 30, minimum=0)

# Ratings.
ARENA_RECOMPUTE_DEBOUNCE_SECONDS = env_int("ARENA_RECOMPUTE_DEBOUNCE_SECONDS", 5, minimum=0)
# The online Elo runs at most this often per criterion: votes in the window are applied together,
# so under load a vote rarely has to ask for a run (README "How it stays current").
ARENA_ELO_DEBOUNCE_SECONDS = env_int("ARENA_ELO_DEBOUNCE_SECONDS", 1, minimum=0)
ARENA_BOOTSTRAP_ROUNDS = env_int("ARENA_BOOTSTRAP_ROUNDS", 1000, minimum=10)

# Derived state catches up on its own (README "How it stays current"): a request older than
# ARENA_DERIVATION_STALE_SECONDS with no live run is queued again, and a run whose heartbeat is
# that old is taken over. Every default worker sweeps every ARENA_SWEEP_SECONDS.
ARENA_DERIVATION_STALE_SECONDS = env_int("ARENA_DERIVATION_STALE_SECONDS", 30, minimum=2)
ARENA_SWEEP_SECONDS = env_int("ARENA_SWEEP_SECONDS", 10, minimum=1)

# Judging (models load lazily in the GPU worker; see README "Model weights").
ARENA_CLIP_MODEL = env_str("ARENA_CLIP_MODEL", "ViT-B-32")
ARENA_CLIP_PRETRAINED = env_str("ARENA_CLIP_PRETRAINED", "laion2b_s34b_b79k")
ARENA_CLIP_MODEL_CONFIG = env_str("ARENA_CLIP_MODEL_CONFIG", "")
ARENA_VQA_MODEL = env_str("ARENA_VQA_MODEL", "Qwen/Qwen2-VL-2B-Instruct")
ARENA_FID_WEIGHTS = env_str("ARENA_FID_WEIGHTS", "")
ARENA_DEVICE = env_str("ARENA_DEVICE", "auto")
if ARENA_DEVICE not in {"auto", "cpu", "cuda"} and not ARENA_DEVICE.startswith("cuda:"):
    raise ImproperlyConfigured(f"ARENA_DEVICE={ARENA_DEVICE!r} must be auto, cpu, cuda or cuda:N")
ARENA_ONNX_PROVIDER = env_str("ARENA_ONNX_PROVIDER", "CPUExecutionProvider")
ARENA_KID_SUBSET_SIZE = env_int("ARENA_KID_SUBSET_SIZE", 1000, minimum=2)
# Scorers run on new uploads: clip, vqa, fid need weights (GPU queue); ocr, nsfw, quality
# ship with their packages or need none (CPU queue).
ARENA_SCORERS = env_list("ARENA_SCORERS", ["clip", "ocr", "nsfw", "quality"])
ARENA_SCORE_BATCH_SIZE = env_int("ARENA_SCORE_BATCH_SIZE", 0, minimum=0)  # 0: each scorer's declared batch size

# MLLM judges (README "MLLM judges"): named judges as a JSON list, plus one default judge from
# ARENA_JUDGE_URL (an OpenAI-compatible endpoint) or ARENA_JUDGE_MODEL alone (transformers, in
# the GPU worker). Checked when read (judging.judge_conf), naming the setting at fault.
ARENA_JUDGES = env_json_list("ARENA_JUDGES")
ARENA_JUDGE_NAME = env_str("ARENA_JUDGE_NAME", "judge")
ARENA_JUDGE_MODEL = env_str("ARENA_JUDGE_MODEL", "")
ARENA_JUDGE_URL = env_str("ARENA_JUDGE_URL", "")
ARENA_JUDGE_API_KEY = env_str("ARENA_JUDGE_API_KEY", "")
ARENA_JUDGE_CONCURRENCY = env_int("ARENA_JUDGE_CONCURRENCY", 4, minimum=1)
ARENA_JUDGE_TIMEOUT = env_int("ARENA_JUDGE_TIMEOUT", 120, minimum=1)
ARENA_JUDGE_RETRIES = env_int("ARENA_JUDGE_RETRIES", 3, minimum=0)
ARENA_JUDGE_MAX_TOKENS = env_int("ARENA_JUDGE_MAX_TOKENS", 512, minimum=1)

# Celery: Redis via CELERY_BROKER_URL, or a filesystem broker under var/ that needs no server.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL") or "filesystem://"
if CELERY_BROKER_URL == "filesystem://":
    _broker_dir = VAR_DIR / "broker"
    for _sub in ("queue", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
else:
    # An unacknowledged message (its worker was killed) is delivered again after this long. It
    # must exceed every countdown a task is queued with (the recompute debounce, retry backoff).
    ARENA_VISIBILITY_TIMEOUT_SECONDS = env_int("ARENA_VISIBILITY_TIMEOUT_SECONDS", 300, minimum=10)
    _debounce = max(ARENA_RECOMPUTE_DEBOUNCE_SECONDS, ARENA_ELO_DEBOUNCE_SECONDS)
    if ARENA_VISIBILITY_TIMEOUT_SECONDS <= _debounce + 60:
        raise ImproperlyConfigured(
            f"ARENA_VISIBILITY_TIMEOUT_SECONDS={ARENA_VISIBILITY_TIMEOUT_SECONDS} must exceed "
            f"ARENA_RECOMPUTE_DEBOUNCE_SECONDS and ARENA_ELO_DEBOUNCE_SECONDS + 60 (the longest countdown a task is queued with)"
        )
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": ARENA_VISIBILITY_TIMEOUT_SECONDS,
        "socket_connect_timeout": 2,
        "socket_timeout": 10,
    }
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_DEFAULT_QUEUE = env_str("ARENA_DEFAULT_QUEUE", "default")
ARENA_GPU_QUEUE = env_str("ARENA_GPU_QUEUE", "gpu")
ARENA_CPU_QUEUE = env_str("ARENA_CPU_QUEUE", "cpu")
# Judging tasks default to the GPU queue; jobs of scorers that declare needs_gpu=False are
# sent to ARENA_CPU_QUEUE explicitly (judging.services.scorer_queue).
CELERY_TASK_ROUTES = {"judging.*": {"queue": ARENA_GPU_QUEUE}}
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None  # a worker waits for the broker to come back, however long
# A web process gives up publishing quickly when the broker is down: the vote is committed, and
# the state row it marked "requested" is queued again by the next vote, page view or sweep.
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "arena.authentication.ExpiringTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "arena.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "EXCEPTION_HANDLER": "arena.accounts.api_exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Image Arena API",
    "DESCRIPTION": "Uploads of model outputs, voting, leaderboards and exports.",
    "VERSION": "1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The API page loads Swagger UI from our own static files (vendored), never from a CDN.
    "SWAGGER_UI_DIST": STATIC_URL + "vendor/swagger-ui",
    "SWAGGER_UI_FAVICON_HREF": STATIC_URL + "favicon.svg",
}

if not DEBUG:
    SECURE_CONTENT_TYPE_NOSNIFF = True
    SESSION_COOKIE_SECURE = env_bool("ARENA_HTTPS", True)
    CSRF_COOKIE_SECURE = env_bool("ARENA_HTTPS", True)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.server": {"level": "WARNING"}},
}

for _d in (VAR_DIR, MEDIA_ROOT, ARENA_UPLOAD_DIR, STATIC_ROOT):
    _d.mkdir(parents=True, exist_ok=True)
