"""Shared fixtures: a PostgreSQL server, a migrated template database, a fresh database per test.

The server is DATABASE_URL's when set, else an embedded one (pgserver) in a temporary directory.
Each integration test gets its own database, cloned from a migrated template (fast: no DDL per test).
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from storage import migrate

TEMPLATE_PREFIX = "zapgate_tpl_"
TEST_DB_PREFIX = "zapgate_t_"


def _admin_conn(url: str) -> psycopg.Connection:
    return psycopg.connect(url, autocommit=True)


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """A maintenance URL of the server the tests create their databases on."""
    url = os.environ.get("DATABASE_URL", "").strip()
    if url:
        yield url
        return
    data_dir = Path(tempfile.mkdtemp(prefix="zapgate-test-pg-"))
    from gateway.embedded import embedded_postgres

    with embedded_postgres(data_dir, database="zapgate_maintenance") as embedded_url:
        yield embedded_url


@pytest.fixture(scope="session")
def template_database(pg_server_url: str) -> Iterator[str]:
    """The name of a database migrated to the current schema, used as the template of each test's database."""
    name = f"{TEMPLATE_PREFIX}{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with _admin_conn(pg_server_url) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    with _admin_conn(make_conninfo(pg_server_url, dbname=name)) as conn:
        migrate.migrate(conn)
    yield name
    with _admin_conn(pg_server_url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _new_database(pg_server_url: str, template: str) -> str:
    name = f"{TEST_DB_PREFIX}{uuid.uuid4().hex[:12]}"
    with _admin_conn(pg_server_url) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return name


@pytest.fixture
def database_url(pg_server_url: str, template_database: str) -> Iterator[str]:
    """A fresh, migrated database for one test (dropped afterwards)."""
    name = _new_database(pg_server_url, template_database)
    yield make_conninfo(pg_server_url, dbname=name)
    with _admin_conn(pg_server_url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def empty_database_url(pg_server_url: str) -> Iterator[str]:
    """A fresh database with no schema at all (for migration tests)."""
    name = f"{TEST_DB_PREFIX}{uuid.uuid4().hex[:12]}"
    with _admin_conn(pg_server_url) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield make_conninfo(pg_server_url, dbname=name)
    with _admin_conn(pg_server_url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def url_of(conninfo: str) -> str:
    """A postgresql:// URL for a conninfo (what DATABASE_URL must look like for a subprocess)."""
    params = conninfo_to_dict(conninfo)
    host = params.get("host", "")
    user = params.get("user", "postgres")
    password = params.get("password") or ""
    auth = f"{user}:{password}" if password else user
    dbname = params.get("dbname", "postgres")
    if host.startswith("/"):
        from urllib.parse import quote

        port = f"&port={params['port']}" if params.get("port") else ""
        return f"postgresql://{auth}@/{dbname}?host={quote(host, safe='')}{port}"
    return f"postgresql://{auth}@{host or 'localhost'}:{params.get('port', 5432)}/{dbname}"


def redis_url_or_skip() -> str:
    """REDIS_URL, or skip the test — unless CI is set, where Redis is mandatory."""
    url = os.environ.get("REDIS_URL", "").strip()
    if url:
        return url
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail("REDIS_URL must be set when CI=true")
    pytest.skip("no REDIS_URL configured")
