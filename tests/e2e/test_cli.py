"""The `zapgate` command line: help, version, configuration errors, migrate, create-company/-user."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import url_of
from tests.e2e.conftest import ZAPGATE

SUBCOMMANDS = ["serve", "migrate", "create-company", "create-user", "version"]


def run(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "ZAPGATE_DATA_DIR": str(tmp_path / "data"), "BCRYPT_ROUNDS": "4", **env}
    return subprocess.run(ZAPGATE + args, env=full_env, cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          input="")


@pytest.mark.parametrize("command", [[], *([name] for name in SUBCOMMANDS)])
def test_help(command: list[str], tmp_path: Path) -> None:
    result = run([*command, "--help"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "usage: zapgate" in result.stdout


def test_version(tmp_path: Path) -> None:
    from gateway import __version__

    result = run(["version"], tmp_path)
    assert result.returncode == 0 and result.stdout.strip() == f"zapgate {__version__}"


@pytest.mark.parametrize(("variable", "value"), [
    ("PORT", "abc"), ("PORT", "70000"), ("UPLOAD_MAX_SIZE", "lots"), ("DATABASE_URL", "mysql://x"),
    ("LOG_LEVEL", "loud"), ("ZAPGATE_SANDBOX", "maybe"), ("JWT_SECRET", "short"), ("GRACEFUL_TIMEOUT", "soon"),
])
def test_bad_configuration_exits_2_with_one_line_naming_the_variable(variable: str, value: str,
                                                                      tmp_path: Path) -> None:
    result = run(["serve"], tmp_path, **{variable: value})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert variable in lines[0] and "Traceback" not in result.stderr


def test_bad_configuration_in_dotenv_file(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("PORT=eighty\n")
    result = run(["migrate"], tmp_path)
    assert result.returncode == 2 and "PORT" in result.stderr


def test_migrate_is_idempotent(tmp_path: Path, empty_database_url: str) -> None:
    url = url_of(empty_database_url)
    first = run(["migrate"], tmp_path, DATABASE_URL=url)
    assert first.returncode == 0, first.stderr
    assert "applied 0001_schema" in first.stdout
    second = run(["migrate"], tmp_path, DATABASE_URL=url)
    assert second.returncode == 0 and "up to date" in second.stdout


def test_create_company_and_user_then_log_in(tmp_path: Path, database_url: str, zapgate) -> None:
    env = {"DATABASE_URL": url_of(database_url), "ADMIN_PASSWORD": "first-admin-1"}
    created = run(["create-company", "Acme", "--email", "boss@acme.test", "--password", "boss-pass-1"], tmp_path,
                  **env)
    assert created.returncode == 0, created.stderr
    company_id = int(created.stdout.split()[1])
    duplicate = run(["create-company", "acme"], tmp_path, **env)
    assert duplicate.returncode == 1 and "already exists" in duplicate.stderr
    user = run(["create-user", "--company-id", str(company_id), "--name", "Ana", "--email", "ana@acme.test",
                "--password", "ana-pass-1"], tmp_path, **env)
    assert user.returncode == 0, user.stderr
    missing = run(["create-user", "--company-id", "999999", "--name", "X", "--email", "x@x.test",
                   "--password", "xx-pass-1"], tmp_path, **env)
    assert missing.returncode == 1 and "not found" in missing.stderr

    process = zapgate(["serve"], env)
    process.wait_healthy()
    for email, password, profile in (("boss@acme.test", "boss-pass-1", "admin"), ("ana@acme.test", "ana-pass-1",
                                                                                   "user")):
        login = httpx.post(process.url + "/auth/login", json={"email": email, "password": password}, timeout=10)
        assert login.status_code == 200, login.text
        assert login.json()["user"]["companyId"] == company_id
        assert login.json()["user"]["profile"] == profile
    assert sys.executable  # the same interpreter runs the subprocesses
