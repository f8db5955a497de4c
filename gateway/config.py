"""Configuration from the environment (and an optional `.env`), validated once at start.

The original Whaticket names are accepted (`DB_HOST`…, `REDIS_HOST`…, `JWT_SECRET`). Secrets never
have a built-in default: when `JWT_SECRET`/`JWT_REFRESH_SECRET` are unset they are generated once
and kept, mode 0600, in the data directory.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote

import attrs

ENV_FILE = ".env"

_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "m": 1024**2, "mb": 1024**2, "g": 1024**3, "gb": 1024**3}


class ConfigError(Exception):
    """A configuration variable has an unusable value; `variable` names it."""

    def __init__(self, variable: str, message: str) -> None:
        super().__init__(f"{variable}: {message}")
        self.variable = variable


@attrs.frozen
class Config:
    port: int = 8080
    host: str = "0.0.0.0"
    database_url: str | None = None
    redis_url: str | None = None
    jwt_secret: str = ""
    jwt_refresh_secret: str = ""
    access_token_ttl: int = 15 * 60
    expired_token_status: int = 403
    refresh_reuse_grace: float = 10.0
    refresh_token_ttl: int = 7 * 24 * 3600
    frontend_urls: tuple[str, ...] = ()
    backend_url: str = ""
    upload_max_size: int = 50 * 1024 * 1024
    json_max_size: int = 1024 * 1024
    data_dir: Path = Path("data")
    sandbox: bool = True
    admin_email: str = "admin@zapgate.local"
    admin_password: str | None = None
    log_level: str = "INFO"
    log_format: str = "auto"  # auto | json | text
    graceful_timeout: float = 10.0
    db_pool_min: int = 2
    db_pool_max: int = 10
    db_statement_timeout_ms: int = 30_000
    bcrypt_rounds: int = 10
    login_max_failures: int = 5
    login_max_failures_per_ip: int = 30
    login_window: int = 15 * 60
    # subscriptions (README "Plans, subscriptions and signup")
    signup_trial_days: int = 3  # a company created by the public signup is let in for this many days
    signup_max_per_ip: int = 5  # signups from one address per hour
    invoice_days_ahead: int = 20  # an invoice is created this many days before the company's due date
    secure_cookies: bool = False
    trusted_proxies: int = 0
    sandbox_qr_interval: float = 20.0
    sandbox_latency: float = 0.0  # seconds the simulated network takes per send (a slow network, for trials)
    # the sandbox keeps across restarts what zapgate sent (PostgreSQL) and what it has not delivered (DATA_DIR)
    sandbox_journal: bool = True
    # the channel of a connection created without one (the family's frontends never send it)
    default_channel: str = "whatsapp"
    session_max_qr_codes: int = 6
    session_reconnect_initial: float = 1.0
    session_reconnect_max: float = 60.0
    realtime_ping_interval: float = 25.0
    realtime_ping_timeout: float = 20.0
    realtime_max_payload: int = 1_000_000
    realtime_connect_timeout: float = 10.0  # a session no namespace accepted by then is closed
    realtime_pending_per_client: int = 50  # such sessions at once per address (IPv6: /64) or token's user
    realtime_max_pending: int = 2_000  # anonymous such sessions at once, all addresses
    realtime_join_rate: float = 5.0  # join events per second and socket, after a burst of …
    realtime_join_burst: int = 20
    presence_grace: float = 30.0  # a user stays online this long after their last socket closed
    # outbound webhooks (README "Webhooks"; actors/webhooks.py)
    webhook_allow_private: bool = False  # on: URLs may resolve to loopback, link-local and private addresses
    webhook_timeout: float = 10.0  # one POST, in all
    webhook_retry_for: float = 24 * 3600.0  # a delivery is retried until it is this old, then failed
    webhook_disable_after: float = 24 * 3600.0  # an endpoint failing this long with no success is disabled
    webhook_backoff_initial: float = 5.0  # the first retry's delay (doubling, jittered)
    webhook_backoff_max: float = 3600.0
    webhook_max_in_flight: int = 4  # attempts at once per endpoint
    webhook_poll_interval: float = 1.0  # seconds between looks for due deliveries
    # operations (README "Metrics", "Error tracking")
    metrics_token: str | None = None  # /metrics wants `Authorization: Bearer <it>` when set
    sentry_dsn: str | None = None  # unhandled errors are reported to this Sentry (or compatible) project
    sentry_environment: str = "production"
    # test-only: the sandbox's "crash" fault (a session crashing as a bug would); never on in production
    sandbox_crash_faults: bool = False

    @property
    def embedded_db(self) -> bool:
        return self.database_url is None


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 0, maximum: int | None = None) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(name, f"expected an integer, got {raw!r}") from None
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise ConfigError(name, f"must be {bound}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(name, f"expected a number of seconds, got {raw!r}") from None
    if value < 0:
        raise ConfigError(name, f"must be >= 0, got {raw}")
    return value


def _positive(env: Mapping[str, str], name: str, default: float) -> float:
    value = _float(env, name, default)
    if value <= 0:
        raise ConfigError(name, "must be greater than 0")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on", "enabled"):
        return True
    if raw in ("0", "false", "no", "off", "disabled"):
        return False
    raise ConfigError(name, f"expected on/off (true/false), got {raw!r}")


def _size(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    match = re.fullmatch(r"(\d+)\s*([kmg]?b?)", raw)
    if not match:
        raise ConfigError(name, f"expected a size such as 52428800, 50mb or 512kb, got {raw!r}")
    value = int(match.group(1)) * _SIZE_UNITS[match.group(2)]
    if value <= 0:
        raise ConfigError(name, "must be greater than 0")
    return value


def _database_url(env: Mapping[str, str]) -> str | None:
    url = env.get("DATABASE_URL", "").strip()
    if url:
        if not url.startswith(("postgres://", "postgresql://")):
            raise ConfigError("DATABASE_URL", "expected a postgresql:// URL")
        return url
    host = env.get("DB_HOST", "").strip()
    if not host:
        return None
    port = _int(env, "DB_PORT", 5432, minimum=1, maximum=65535)
    user = quote(env.get("DB_USER", "postgres").strip() or "postgres", safe="")
    password = env.get("DB_PASS", "")
    name = quote(env.get("DB_NAME", "zapgate").strip() or "zapgate", safe="")
    auth = f"{user}:{quote(password, safe='')}" if password else user
    return f"postgresql://{auth}@{host}:{port}/{name}"


def _redis_url(env: Mapping[str, str]) -> str | None:
    url = env.get("REDIS_URL", "").strip()
    if url:
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError("REDIS_URL", "expected a redis:// URL")
        return url
    host = env.get("REDIS_HOST", "").strip()
    if not host:
        return None
    port = _int(env, "REDIS_PORT", 6379, minimum=1, maximum=65535)
    password = env.get("REDIS_PASSWORD", "")
    auth = f":{quote(password, safe='')}@" if password else ""
    return f"redis://{auth}{host}:{port}/0"


def _secret(env: Mapping[str, str], name: str, data_dir: Path, *, generate: bool) -> str:
    """The secret from the environment, or the one kept in the data dir (created on first use)."""
    value = env.get(name, "").strip()
    if value:
        if len(value) < 16:
            raise ConfigError(name, "is too short: use at least 16 characters (32 random bytes recommended)")
        return value
    path = data_dir / "secrets" / name.lower()
    if path.exists():
        return path.read_text().strip()
    if not generate:
        return ""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    value = secrets.token_urlsafe(48)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process won the race: use its secret
        return path.read_text().strip()
    with os.fdopen(fd, "w") as file:
        file.write(value + "\n")
    return value


def _expired_status(env: Mapping[str, str]) -> int:
    # 403 by default, as the family's backends answer (their frontends refresh on 403, log out on 401).
    status = _int(env, "AUTH_EXPIRED_STATUS", 403, minimum=401, maximum=403)
    if status not in (401, 403):
        raise ConfigError("AUTH_EXPIRED_STATUS", f"expected 401 or 403, got {status}")
    return status


def read_env_file(path: Path) -> dict[str, str]:
    """The variables of a `.env` file (missing file: none)."""
    if not path.is_file():
        return {}
    from dotenv import dotenv_values

    return {key: value for key, value in dotenv_values(path).items() if value is not None}


def load_config(environ: Mapping[str, str] | None = None, *, env_file: Path | None = None,
                generate_secrets: bool = True) -> Config:
    """Build the configuration; the process environment wins over the `.env` file.

    Raises ConfigError naming the first bad variable.
    """
    env: dict[str, str] = dict(read_env_file(env_file if env_file is not None else Path(ENV_FILE)))
    env.update(os.environ if environ is None else environ)

    data_dir = Path(env.get("ZAPGATE_DATA_DIR", "").strip() or "data")
    try:
        if generate_secrets:
            data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError("ZAPGATE_DATA_DIR", f"cannot create {str(data_dir)!r}: {error.strerror}") from None

    log_level = (env.get("LOG_LEVEL", "").strip() or "info").upper()
    if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ConfigError("LOG_LEVEL", f"expected debug, info, warning or error, got {log_level.lower()!r}")
    log_format = (env.get("LOG_FORMAT", "").strip() or "auto").lower()
    if log_format not in ("auto", "json", "text"):
        raise ConfigError("LOG_FORMAT", f"expected auto, json or text, got {log_format!r}")

    frontend = tuple(
        origin.strip().rstrip("/") for origin in env.get("FRONTEND_URL", "").split(",") if origin.strip()
    )
    for origin in frontend:
        if not re.match(r"^https?://[^/\s]+$", origin):
            raise ConfigError("FRONTEND_URL", f"expected origins like https://app.example.com, got {origin!r}")

    admin_email = env.get("ADMIN_EMAIL", "").strip().lower() or "admin@zapgate.local"
    if "@" not in admin_email:
        raise ConfigError("ADMIN_EMAIL", f"not an email address: {admin_email!r}")
    admin_password = env.get("ADMIN_PASSWORD") or None
    if admin_password is not None and len(admin_password) < 8:
        raise ConfigError("ADMIN_PASSWORD", "must have at least 8 characters")

    pool_max = _int(env, "DB_POOL_MAX", 10, minimum=1, maximum=500)
    port = _int(env, "PORT", 8080, minimum=0, maximum=65535)
    return Config(
        port=port,
        host=env.get("HOST", "").strip() or "0.0.0.0",
        database_url=_database_url(env),
        redis_url=_redis_url(env),
        jwt_secret=_secret(env, "JWT_SECRET", data_dir, generate=generate_secrets),
        jwt_refresh_secret=_secret(env, "JWT_REFRESH_SECRET", data_dir, generate=generate_secrets),
        access_token_ttl=_int(env, "ACCESS_TOKEN_TTL", 15 * 60, minimum=10),
        refresh_token_ttl=_int(env, "REFRESH_TOKEN_TTL", 7 * 24 * 3600, minimum=60),
        expired_token_status=_expired_status(env),
        refresh_reuse_grace=_float(env, "REFRESH_REUSE_GRACE", 10.0),
        frontend_urls=frontend,
        backend_url=(env.get("BACKEND_URL", "").strip().rstrip("/") or f"http://localhost:{port}"),
        upload_max_size=_size(env, "UPLOAD_MAX_SIZE", 50 * 1024 * 1024),
        json_max_size=_size(env, "JSON_MAX_SIZE", 1024 * 1024),
        data_dir=data_dir,
        sandbox=_bool(env, "ZAPGATE_SANDBOX", True),
        admin_email=admin_email,
        admin_password=admin_password,
        log_level=log_level,
        log_format=log_format,
        graceful_timeout=_float(env, "GRACEFUL_TIMEOUT", 10.0),
        db_pool_min=min(_int(env, "DB_POOL_MIN", 2, minimum=0), pool_max),
        db_pool_max=pool_max,
        db_statement_timeout_ms=_int(env, "DB_STATEMENT_TIMEOUT_MS", 30_000, minimum=0),
        bcrypt_rounds=_int(env, "BCRYPT_ROUNDS", 10, minimum=4, maximum=16),
        login_max_failures=_int(env, "LOGIN_MAX_FAILURES", 5, minimum=1),
        login_max_failures_per_ip=_int(env, "LOGIN_MAX_FAILURES_PER_IP", 30, minimum=1),
        login_window=_int(env, "LOGIN_WINDOW", 15 * 60, minimum=1),
        signup_trial_days=_int(env, "SIGNUP_TRIAL_DAYS", 3, maximum=3650),
        signup_max_per_ip=_int(env, "SIGNUP_MAX_PER_IP", 5, minimum=1),
        invoice_days_ahead=_int(env, "INVOICE_DAYS_AHEAD", 20, maximum=365),
        trusted_proxies=_int(env, "TRUSTED_PROXIES", 0, maximum=10),
        sandbox_qr_interval=_float(env, "SANDBOX_QR_INTERVAL", 20.0),
        sandbox_latency=_float(env, "SANDBOX_LATENCY", 0.0),
        sandbox_journal=_bool(env, "SANDBOX_JOURNAL", True),
        default_channel=_default_channel(env),
        session_max_qr_codes=_int(env, "SESSION_MAX_QR_CODES", 6, minimum=1, maximum=100),
        session_reconnect_initial=_float(env, "SESSION_RECONNECT_INITIAL", 1.0),
        session_reconnect_max=_float(env, "SESSION_RECONNECT_MAX", 60.0),
        realtime_ping_interval=_float(env, "REALTIME_PING_INTERVAL", 25.0),
        realtime_ping_timeout=_float(env, "REALTIME_PING_TIMEOUT", 20.0),
        realtime_max_payload=_size(env, "REALTIME_MAX_PAYLOAD", 1_000_000),
        realtime_connect_timeout=_positive(env, "REALTIME_CONNECT_TIMEOUT", 10.0),
        realtime_pending_per_client=_int(env, "REALTIME_PENDING_PER_CLIENT", 50, minimum=1),
        realtime_max_pending=_int(env, "REALTIME_MAX_PENDING", 2_000, minimum=1),
        realtime_join_rate=_positive(env, "REALTIME_JOIN_RATE", 5.0),
        realtime_join_burst=_int(env, "REALTIME_JOIN_BURST", 20, minimum=1),
        presence_grace=_float(env, "PRESENCE_GRACE", 30.0),
        webhook_allow_private=_bool(env, "WEBHOOK_ALLOW_PRIVATE", False),
        webhook_timeout=_positive(env, "WEBHOOK_TIMEOUT", 10.0),
        webhook_retry_for=_positive(env, "WEBHOOK_RETRY_FOR", 24 * 3600.0),
        webhook_disable_after=_positive(env, "WEBHOOK_DISABLE_AFTER", 24 * 3600.0),
        webhook_backoff_initial=_positive(env, "WEBHOOK_BACKOFF_INITIAL", 5.0),
        webhook_backoff_max=_positive(env, "WEBHOOK_BACKOFF_MAX", 3600.0),
        webhook_max_in_flight=_int(env, "WEBHOOK_MAX_IN_FLIGHT", 4, minimum=1, maximum=100),
        webhook_poll_interval=_positive(env, "WEBHOOK_POLL_INTERVAL", 1.0),
        metrics_token=env.get("METRICS_TOKEN", "").strip() or None,
        sentry_dsn=_sentry_dsn(env),
        sentry_environment=env.get("SENTRY_ENVIRONMENT", "").strip() or "production",
        sandbox_crash_faults=_bool(env, "SANDBOX_CRASH_FAULTS", False),
        secure_cookies=_bool(env, "SECURE_COOKIES", frontend[0].startswith("https://") if frontend else False),
    )


def _sentry_dsn(env: Mapping[str, str]) -> str | None:
    dsn = env.get("SENTRY_DSN", "").strip()
    if not dsn:
        return None
    if not re.match(r"^https?://[^@/\s]+@[^/\s]+/\S*\d$", dsn):
        raise ConfigError("SENTRY_DSN", "expected a DSN like https://<key>@<host>/<project id>")
    return dsn


def _default_channel(env: Mapping[str, str]) -> str:
    channel = env.get("DEFAULT_CHANNEL", "").strip().lower() or "whatsapp"
    if channel not in ("whatsapp", "sandbox"):
        raise ConfigError("DEFAULT_CHANNEL", f"expected whatsapp or sandbox, got {channel!r}")
    if channel == "sandbox" and not _bool(env, "ZAPGATE_SANDBOX", True):
        raise ConfigError("DEFAULT_CHANNEL", "sandbox needs ZAPGATE_SANDBOX=on")
    return channel
