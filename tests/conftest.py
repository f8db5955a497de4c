"""Shared fixtures: a PostgreSQL server, a migrated template database, a fresh database per test.

The server is DATABASE_URL's when set, else an embedded one (pgserver) in a temporary directory.
Each integration test gets its own database, cloned from a migrated template (fast: no DDL per test).

Under pytest-xdist every worker is its own pytest session: it migrates its own template (named after its
worker id and pid, ~2 s once per worker) and clones its tests' databases from it, so workers share nothing
but the server. Database names carry the pid of the process that made them: a session first drops the
ones a dead process left behind (a run killed before its teardown), never those of a live one.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from storage import migrate

TEMPLATE_PREFIX = "zapgate_tpl_"
TEST_DB_PREFIX = "zapgate_t_"
_OWNED_NAME = re.compile(rf"^(?:{TEMPLATE_PREFIX}(?:gw\d+_|master_)?|{TEST_DB_PREFIX})(\d+)_[0-9a-f]+$")


# Tests that take long by design (real-clock waits, tens of restarts, property searches), slowest first. They
# start the run, so that under pytest-xdist they run beside the short ones instead of last and alone (the run
# would then last as long as the last one started). A node-id prefix each; a renamed test only loses its place.
SLOW_FIRST = (
    "tests/e2e/test_faults.py",  # 20 stops and 10 kills under load (~2.5 min)
    "tests/e2e/test_schedules_restart.py::test_a_recurring_schedule_sends_its_count_on_the_real_clock_and_stops",
    "tests/e2e/test_routing_restart.py::test_a_timer_due_while_down_fires_once_after_start",
    "tests/integration/test_bench_smoke.py",  # every benchmark at its tiny size, in its own process
    "tests/e2e/test_campaign_restart.py",
    "tests/e2e/test_routing_restart.py",
    "tests/e2e/test_schedules_restart.py",
    "tests/integration/test_actor_faults.py::test_stops_and_crashes_while_messages_arrive_lose_nothing_and_answer",
    "tests/unit/test_hours.py::test_property_next_open_is_open_and_nothing_before_it_is",
    "tests/integration/test_imports.py::test_import_of_a_large_csv_and_xlsx_and_export_round_trip",
    "tests/e2e/test_serve.py::test_first_start_on_embedded_postgres_prints_a_working_admin_login",
    "tests/e2e/test_restart.py",
    "tests/e2e/test_scale_out.py",
    "tests/e2e/test_cli.py::test_create_company_and_user_then_log_in",
    "tests/integration/test_realtime_limits.py::test_an_anonymous_flood_from_one_address_keeps_no_logged_in_user_out",
    "tests/integration/test_db_outage.py::test_a_30s_database_outage_under_traffic",
    "tests/integration/test_contacts.py::test_import_of_50_000_contacts",
    "tests/integration/test_whatsapp_access.py::test_other_company_connections_are_not_found",
    "tests/integration/test_auth.py::test_unknown_email_takes_as_long_as_a_wrong_password",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        return next((n for n, prefix in enumerate(SLOW_FIRST) if item.nodeid.startswith(prefix)), len(SLOW_FIRST))

    items.sort(key=rank)  # stable: the rest keep their order


def _admin_conn(url: str) -> psycopg.Connection:
    return psycopg.connect(url, autocommit=True)


SHARED_EMBEDDED_URL = "ZAPGATE_TEST_EMBEDDED_URL"  # the xdist controller's embedded server, for its workers


def pytest_configure(config: pytest.Config) -> None:
    """Without DATABASE_URL, a parallel run's workers share one embedded PostgreSQL that the controller starts
    (and stops at its end) instead of starting one each; its URL reaches them through the environment."""
    if hasattr(config, "workerinput") or os.environ.get("DATABASE_URL", "").strip():
        return
    if not config.getoption("numprocesses", default=None):
        return  # a serial run: the session fixture starts it, as before
    from gateway.embedded import embedded_postgres

    stack = contextlib.ExitStack()
    data_dir = Path(tempfile.mkdtemp(prefix="zapgate-test-pg-"))
    os.environ[SHARED_EMBEDDED_URL] = stack.enter_context(embedded_postgres(data_dir, database="zapgate_maintenance"))
    config.add_cleanup(stack.close)


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """A maintenance URL of the server the tests create their databases on."""
    url = os.environ.get("DATABASE_URL", "").strip() or os.environ.get(SHARED_EMBEDDED_URL, "")
    if url:
        yield url
        return
    data_dir = Path(tempfile.mkdtemp(prefix="zapgate-test-pg-"))
    from gateway.embedded import embedded_postgres

    with embedded_postgres(data_dir, database="zapgate_maintenance") as embedded_url:
        yield embedded_url


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _drop_orphans(conn: psycopg.Connection) -> None:
    """Drop the test databases whose creating process is gone (a run killed before its teardown)."""
    names = [row[0] for row in conn.execute(
        "SELECT datname FROM pg_database WHERE datname LIKE 'zapgate\\_t%' AND NOT datistemplate").fetchall()]
    for name in names:
        match = _OWNED_NAME.match(name)
        if match and not _pid_alive(int(match.group(1))):
            with contextlib.suppress(psycopg.Error):  # another session may be dropping it too
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def template_database(pg_server_url: str) -> Iterator[str]:
    """The name of a database migrated to the current schema, used as the template of each test's database
    (one per pytest-xdist worker)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "master")
    name = f"{TEMPLATE_PREFIX}{worker}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with _admin_conn(pg_server_url) as conn:
        _drop_orphans(conn)
        conn.execute(f'CREATE DATABASE "{name}"')
    with _admin_conn(make_conninfo(pg_server_url, dbname=name)) as conn:
        migrate.migrate(conn)
    yield name
    with _admin_conn(pg_server_url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _test_database_name() -> str:
    return f"{TEST_DB_PREFIX}{os.getpid()}_{uuid.uuid4().hex[:12]}"


def _new_database(pg_server_url: str, template: str) -> str:
    name = _test_database_name()
    with _admin_conn(pg_server_url) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return name


class _Databases:
    """Test databases off the tests' critical path: one thread clones the next test's database while the
    current test runs, and drops the finished ones (a clone and a drop are ~0.5 s of waiting per test).

    Jobs run in order, so at most one spare database exists; a clone that failed fails the test that
    takes it. Every database it made is dropped by `close`, at the end of the session."""

    def __init__(self, server_url: str, template: str) -> None:
        self._server_url, self._template = server_url, template
        self._jobs: queue.SimpleQueue[tuple[str, str] | None] = queue.SimpleQueue()
        self._ready: queue.SimpleQueue[str | BaseException] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name="test-databases", daemon=True)
        self._thread.start()
        self._jobs.put(("clone", ""))

    def take(self) -> str:
        """A fresh database cloned from the template (the spare one; the next is cloned meanwhile)."""
        result = self._ready.get(timeout=300)
        self._jobs.put(("clone", ""))
        if isinstance(result, BaseException):
            raise result
        return result

    def drop(self, name: str) -> None:
        self._jobs.put(("drop", name))

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join(300)
        with _admin_conn(self._server_url) as conn:
            while not self._ready.empty():
                spare = self._ready.get()
                if isinstance(spare, str):
                    conn.execute(f'DROP DATABASE IF EXISTS "{spare}" WITH (FORCE)')

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            kind, name = job
            try:
                if kind == "clone":
                    self._ready.put(_new_database(self._server_url, self._template))
                else:
                    with _admin_conn(self._server_url) as conn:
                        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            except Exception as error:  # handed to the test that takes the clone
                if kind == "clone":
                    self._ready.put(error)
                # a failed drop leaves a database the next session's _drop_orphans removes


@pytest.fixture(scope="session")
def _databases(pg_server_url: str, template_database: str) -> Iterator[_Databases]:
    databases = _Databases(pg_server_url, template_database)
    yield databases
    databases.close()


@pytest.fixture
def database_url(pg_server_url: str, _databases: _Databases) -> Iterator[str]:
    """A fresh, migrated database for one test (dropped afterwards)."""
    name = _databases.take()
    yield make_conninfo(pg_server_url, dbname=name)
    _databases.drop(name)


@pytest.fixture
def empty_database_url(pg_server_url: str) -> Iterator[str]:
    """A fresh database with no schema at all (for migration tests)."""
    name = _test_database_name()
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
