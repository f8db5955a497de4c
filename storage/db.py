"""PostgreSQL from trio: psycopg's blocking pool on worker threads, bounded by a CapacityLimiter.

Every database call is a plain sync function of a connection, run on a worker thread: inside one
transaction (`Database.run`), or statement by statement in autocommit (`Database.read`: one statement
is its own transaction, without the BEGIN and COMMIT round trips). Cursors, pipelines and COPY are
created and closed inside that function; nothing thread-bound leaks out. psycopg errors become
`storage.errors` here.

**Outages.** Every connection taken through `Database.connection` tells `Database.health` how it went:
an `Unavailable` marks the database down (since when, why; counted for metrics), anything the server
answered marks it up again. The first loss of a connection in an outage drains the pool, so that no
connection the server closed is handed out after it is back; the pool reconnects by itself (with
backoff, at most `RECONNECT_TIMEOUT` per attempt series, then again on demand) and checks each idle
connection on the way out for a close it missed (`check_idle_connection`, nearly free). While the
database is down, callers wait at most `DOWN_CONNECTION_WAIT` for a connection instead of the pool's
full timeout: the workers retry on their own schedule (STYLE 7a), the API answers 503 quickly.
`probe` asks the database without queueing behind that work (readiness, watchers).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import select
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import trio
from psycopg_pool import ConnectionPool

from storage.errors import StorageError, Unavailable, map_errors
from storage.sql import Queries, load_queries

log = logging.getLogger("zapgate.db")

T = TypeVar("T")
Params = Mapping[str, Any] | Sequence[Any] | None
Row = dict[str, Any]

QUERIES_FILE = Path(__file__).with_name("queries.sql")

DOWN_CONNECTION_WAIT = 1.0  # seconds a caller waits for a connection while the database is down
PROBE_CONNECTION_WAIT = 2.0  # ... and a probe, always
RECONNECT_TIMEOUT = 10.0  # the pool's reconnection attempts for one connection (1, 2, 4 s apart), then on demand


class DatabaseHealth:
    """What the process has seen of the database: up, or down since when and why, and counters for metrics.

    Marked from the worker threads (every connection taken through `Database.connection`), read from trio:
    a lock guards the changes; reading the state is a plain attribute read.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self.down_since: float | None = None  # wall-clock seconds; None while up
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.recovered_at: float | None = None
        self.outages = 0  # times it went from up to down
        self.unavailable_errors = 0  # Unavailable errors seen (every failed connection or statement)

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def mark_down(self, error: BaseException) -> bool:
        """An `Unavailable` was raised; True when this starts an outage."""
        now = self._clock()
        with self._lock:
            self.unavailable_errors += 1
            self.last_error = (str(error) or type(error).__name__).strip()[:300]
            self.last_error_at = now
            if self.down_since is not None:
                return False
            self.down_since = now
            self.outages += 1
        log.warning("database unavailable", extra={"fields": {"reason": self.last_error}})
        return True

    def mark_up(self) -> bool:
        """The database answered; True when this ends an outage."""
        if self.down_since is None:  # the common case, without the lock
            return False
        now = self._clock()
        with self._lock:
            since, self.down_since = self.down_since, None
            if since is None:
                return False
            self.recovered_at = now
        log.warning("database available again", extra={"fields": {"down_seconds": round(now - since, 1)}})
        return True

    def snapshot(self) -> dict[str, Any]:
        """For /health (and a future metrics endpoint)."""
        since, now = self.down_since, self._clock()
        return {
            "status": "down" if since is not None else "up",
            "downSince": _iso(since),
            "downSeconds": round(now - since, 1) if since is not None else None,
            "lastError": self.last_error,
            "lastErrorAt": _iso(self.last_error_at),
            "recoveredAt": _iso(self.recovered_at),
            "outages": self.outages,
            "unavailableErrors": self.unavailable_errors,
        }


def _iso(seconds: float | None) -> str | None:
    return None if seconds is None else dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat(timespec="seconds")


class Database:
    """The pool, the thread bridge and the named queries. Built by the composition root."""

    def __init__(self, pool: ConnectionPool, *, queries: Queries | None = None) -> None:
        self.pool = pool
        self.limiter = trio.CapacityLimiter(pool.max_size)
        self.q = queries if queries is not None else load_queries(QUERIES_FILE)
        self.health = DatabaseHealth()

    @contextlib.contextmanager
    def connection(self, *, wait: float | None = None) -> Iterator[psycopg.Connection[Row]]:
        """A pool connection, for a sync function on a worker thread; psycopg errors become `storage.errors`.

        How it went marks `health`: `Unavailable` down (the first lost connection of an outage drains the
        pool), anything the server answered (a result, or an error of the statement) up. `wait` caps the
        wait for a connection (default: the pool's timeout, or `DOWN_CONNECTION_WAIT` while down).
        """
        if wait is None and self.health.down:
            wait = DOWN_CONNECTION_WAIT
        try:
            with map_errors(), self.pool.connection(timeout=wait) as conn:
                yield conn
        except Unavailable as error:
            if self.health.mark_down(error) and _connection_lost(error):
                self.pool.drain()  # its other idle connections are most likely closed too
            raise
        except StorageError:
            self.health.mark_up()  # the server answered (a constraint, a timeout): it is there
            raise
        self.health.mark_up()

    async def run(self, fn: Callable[[psycopg.Connection[Row]], T]) -> T:
        """Run `fn(conn)` on a worker thread inside one transaction; commit if it returns."""

        def work() -> T:
            with self.connection() as conn, conn.transaction():
                return fn(conn)

        return await trio.to_thread.run_sync(work, limiter=self.limiter)

    async def read(self, fn: Callable[[psycopg.Connection[Row]], T]) -> T:
        """Run `fn(conn)` on a worker thread in autocommit: each statement is its own transaction.

        For work whose statements need not see one snapshot: a single statement, or reads whose later
        statements only depend on what the earlier ones returned. (The pool's connections are in autocommit
        mode; `statement_timeout` is a session setting, so it holds here too.)
        """

        def work() -> T:
            with self.connection() as conn:
                return fn(conn)

        return await trio.to_thread.run_sync(work, limiter=self.limiter)

    async def probe(self, fn: Callable[[psycopg.Connection[Row]], T] | None = None) -> T | None:
        """Ask the database something small (by default `SELECT 1`), not queued behind other work.

        For readiness checks and watchers: it runs on a thread of its own (not the limiter's: it must
        answer while every worker waits for a connection), waits at most `PROBE_CONNECTION_WAIT` for a
        connection, marks `health` like any call, and is abandoned when the caller stops waiting.
        """

        def work() -> T | None:
            with self.connection(wait=PROBE_CONNECTION_WAIT) as conn:
                if fn is None:
                    conn.execute("SELECT 1")
                    return None
                return fn(conn)

        return await trio.to_thread.run_sync(work, abandon_on_cancel=True)

    # One statement is atomic by itself: no BEGIN / COMMIT around it.

    async def fetch_one(self, sql: str, params: Params = None) -> Row | None:
        return await self.read(lambda conn: conn.execute(sql, params).fetchone())

    async def fetch_all(self, sql: str, params: Params = None) -> list[Row]:
        return await self.read(lambda conn: conn.execute(sql, params).fetchall())

    async def fetch_value(self, sql: str, params: Params = None) -> Any:
        row = await self.fetch_one(sql, params)
        return None if row is None else next(iter(row.values()))

    async def execute(self, sql: str, params: Params = None) -> int:
        """Run one statement; the number of rows it touched."""
        return await self.read(lambda conn: conn.execute(sql, params).rowcount)

    async def ping(self) -> bool:
        try:
            await self.probe()
        except StorageError as error:
            log.warning("database ping failed", extra={"fields": {"reason": str(error)[:200]}})
            return False
        return True

    async def aclose(self) -> None:
        await trio.to_thread.run_sync(self.pool.close)


def interned_dict_row(cursor: psycopg.Cursor[Any]) -> Callable[[Sequence[Any]], dict[str, Any]]:
    """Like psycopg's dict_row, but every row of every query shares one string per column name: actors
    keep thousands of cached rows, and the names would otherwise be copied into each."""
    description = cursor.description
    if description is None:
        return lambda values: {}
    names = [sys.intern(column.name) for column in description]
    return lambda values: dict(zip(names, values, strict=True))


def _connection_lost(error: Unavailable) -> bool:
    """A connection failed or broke (the server is away), as opposed to the pool being busy or closed."""
    return isinstance(error.__cause__, psycopg.OperationalError | psycopg.InterfaceError)


def check_idle_connection(conn: psycopg.Connection[Any]) -> None:
    """The pool's check of each connection it hands out; nearly free (one poll of its socket).

    An idle connection has nothing to read, unless the server closed it meanwhile (its FATAL message and
    the EOF wait there) or sent a notice: only then is it asked with a round trip, which raises if it is
    broken (and the pool replaces it).
    """
    if conn.closed:
        raise psycopg.OperationalError("the connection is closed")
    poller = select.poll()  # not select(): the process may hold more than FD_SETSIZE sockets
    poller.register(conn.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
    if poller.poll(0):
        conn.execute("")


def _checker(pool_of: Callable[[], ConnectionPool]) -> Callable[[psycopg.Connection[Any]], None]:
    """`check_idle_connection`, draining the pool when it finds a broken connection: the server closed the
    others too, most likely, and the pool would otherwise try them one by one, a growing pause apart."""

    def check(conn: psycopg.Connection[Any]) -> None:
        try:
            check_idle_connection(conn)
        except psycopg.Error:
            pool_of().drain()
            raise

    return check


def open_pool(url: str, *, min_size: int, max_size: int, statement_timeout_ms: int,
              application_name: str = "zapgate", timeout: float = 10.0,
              reconnect_timeout: float = RECONNECT_TIMEOUT) -> ConnectionPool:
    """A started pool whose connections return dict rows and carry `statement_timeout`.

    After an outage it recovers by itself: connections the server closed are found by the check on the
    way out (or fail once and are replaced), lost ones are reconnected with backoff for `reconnect_timeout`
    seconds, then whenever a caller waits for one.

    Blocking: call it on a worker thread (or before the event loop starts).
    """
    options = f"-c statement_timeout={statement_timeout_ms} -c idle_in_transaction_session_timeout=60000"
    pool: ConnectionPool = ConnectionPool(
        url,
        min_size=min_size,
        max_size=max_size,
        kwargs={"row_factory": interned_dict_row, "options": options, "application_name": application_name,
                "autocommit": True},
        timeout=timeout,
        open=False,
        name="zapgate",
        check=_checker(lambda: pool),
        reconnect_timeout=reconnect_timeout,
        reconnect_failed=_reconnect_failed,
    )
    with map_errors():
        pool.open(wait=min_size > 0, timeout=timeout)
    return pool


def _reconnect_failed(pool: ConnectionPool) -> None:
    log.info("the pool stopped reconnecting a connection; it reconnects when one is needed",
             extra={"fields": {"pool": pool.name}})


async def open_database(url: str, *, min_size: int = 2, max_size: int = 10,
                        statement_timeout_ms: int = 30_000) -> Database:
    pool = await trio.to_thread.run_sync(
        lambda: open_pool(url, min_size=min_size, max_size=max_size, statement_timeout_ms=statement_timeout_ms)
    )
    return Database(pool)
