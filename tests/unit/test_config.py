from __future__ import annotations

import stat
from pathlib import Path

import pytest

from gateway.config import ConfigError, load_config


def config(tmp_path: Path, **env: str):
    return load_config({"ZAPGATE_DATA_DIR": str(tmp_path / "data"), **env}, env_file=tmp_path / ".env")


def test_defaults(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    assert cfg.port == 8080 and cfg.embedded_db and cfg.redis_url is None and cfg.sandbox
    assert cfg.upload_max_size == 50 * 1024 * 1024 and cfg.graceful_timeout == 10.0


def test_secrets_are_generated_once_private_and_distinct(tmp_path: Path) -> None:
    first = config(tmp_path)
    second = config(tmp_path)
    assert len(first.jwt_secret) >= 32 and first.jwt_secret != first.jwt_refresh_secret
    assert (first.jwt_secret, first.jwt_refresh_secret) == (second.jwt_secret, second.jwt_refresh_secret)
    for name in ("jwt_secret", "jwt_refresh_secret"):
        mode = stat.S_IMODE((tmp_path / "data" / "secrets" / name).stat().st_mode)
        assert mode == 0o600


def test_secret_from_environment_wins_and_must_be_long(tmp_path: Path) -> None:
    assert config(tmp_path, JWT_SECRET="s" * 40).jwt_secret == "s" * 40
    with pytest.raises(ConfigError) as error:
        config(tmp_path, JWT_SECRET="short")
    assert error.value.variable == "JWT_SECRET"


def test_original_db_and_redis_names(tmp_path: Path) -> None:
    cfg = config(tmp_path, DB_HOST="db.local", DB_PORT="5433", DB_USER="wt", DB_PASS="p@ss/word", DB_NAME="whaticket",
                 REDIS_HOST="cache", REDIS_PORT="6380")
    assert cfg.database_url == "postgresql://wt:p%40ss%2Fword@db.local:5433/whaticket"
    assert cfg.redis_url == "redis://cache:6380/0"
    assert not cfg.embedded_db
    assert config(tmp_path, DATABASE_URL="postgresql://u@h/d", DB_HOST="ignored").database_url == "postgresql://u@h/d"


@pytest.mark.parametrize(("variable", "value"), [
    ("PORT", "abc"), ("PORT", "-1"), ("PORT", "65536"), ("UPLOAD_MAX_SIZE", "big"), ("UPLOAD_MAX_SIZE", "0"),
    ("DATABASE_URL", "mysql://x"), ("REDIS_URL", "http://x"), ("LOG_LEVEL", "verbose"), ("ZAPGATE_SANDBOX", "perhaps"),
    ("FRONTEND_URL", "not a url"), ("ADMIN_EMAIL", "nobody"), ("ADMIN_PASSWORD", "short"), ("DB_PORT", "x"),
    ("GRACEFUL_TIMEOUT", "-3"), ("AUTH_EXPIRED_STATUS", "402"), ("BCRYPT_ROUNDS", "40"),
    ("DEFAULT_CHANNEL", "telegram"),
])
def test_bad_values_name_their_variable(tmp_path: Path, variable: str, value: str) -> None:
    env = {variable: value}
    if variable == "DB_PORT":
        env["DB_HOST"] = "db"
    with pytest.raises(ConfigError) as error:
        config(tmp_path, **env)
    assert error.value.variable == variable
    assert variable in str(error.value)


def test_sizes_booleans_and_origins(tmp_path: Path) -> None:
    cfg = config(tmp_path, UPLOAD_MAX_SIZE="20mb", ZAPGATE_SANDBOX="off",
                 FRONTEND_URL="https://app.example.com/, http://localhost:3000")
    assert cfg.upload_max_size == 20 * 1024 * 1024 and cfg.sandbox is False
    assert cfg.frontend_urls == ("https://app.example.com", "http://localhost:3000")
    assert cfg.secure_cookies is True


def test_dotenv_file_is_read_and_environment_wins(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("PORT=9000\nLOG_LEVEL=debug\n")
    cfg = config(tmp_path, LOG_LEVEL="warning")
    assert cfg.port == 9000 and cfg.log_level == "WARNING"


def test_default_channel(tmp_path: Path) -> None:
    assert config(tmp_path).default_channel == "whatsapp"
    assert config(tmp_path, DEFAULT_CHANNEL="Sandbox").default_channel == "sandbox"
    with pytest.raises(ConfigError, match="ZAPGATE_SANDBOX"):
        config(tmp_path, DEFAULT_CHANNEL="sandbox", ZAPGATE_SANDBOX="off")


def test_operations_variables(tmp_path: Path) -> None:
    loaded = config(tmp_path)
    assert loaded.metrics_token is None and loaded.sentry_dsn is None and loaded.sandbox_crash_faults is False
    loaded = config(tmp_path, METRICS_TOKEN=" scrape ", SENTRY_DSN="https://abc123@o1.ingest.sentry.io/4507",
                  SENTRY_ENVIRONMENT="staging", SANDBOX_CRASH_FAULTS="on")
    assert loaded.metrics_token == "scrape"
    assert loaded.sentry_dsn == "https://abc123@o1.ingest.sentry.io/4507" and loaded.sentry_environment == "staging"
    assert loaded.sandbox_crash_faults is True
    for bad in ("not a dsn", "https://sentry.io/42", "https://key@sentry.io/", "ftp://key@host/1"):
        with pytest.raises(ConfigError) as error:
            config(tmp_path, SENTRY_DSN=bad)
        assert error.value.variable == "SENTRY_DSN"
