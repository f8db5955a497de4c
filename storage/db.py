"""PostgreSQL from trio: psycopg's blocking pool on worker threads, bounded by a CapacityLimiter.

Every database call is a plain sync function of a connection, run on a worker thread: inside one
transaction (`Database.run`), or statement by statement in autocommit (`Database.read`: one statement
is its own transaction, without the BEGIN and COMMIT round trips). Cursors, pipelines and COPY are
created and closed inside that function; nothing thread-bound leaks out. psycopg errors become
`storage.errors` here.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import trio
from psycopg_pool import ConnectionPool

from storage.errors import map_errors
from storage.sql import Queries, load_queries

log = logging.getLogger("zapgate.db")

T = TypeVar("T")
Params = Mapping[str, Any] | Sequence[Any] | None
Row = dict[str, Any]

QUERIES_FILE = Path(__file__).with_name("queries.sql")


class Database:
    """The pool, the thread bridge and the named queries. Built by the composition root."""

    def __init__(self, pool: ConnectionPool, *, queries: Queries | None = None) -> None:
        self.pool = pool
        self.limiter = trio.CapacityLimiter(pool.max_size)
        self.q = queries if queries is not None else load_queries(QUERIES_FILE)

    async def run(self, fn: Callable[[psycopg.Connection[Row]], T]) -> T:
        """Run `fn(conn)` on a worker thread inside one transaction; commit if it returns."""

        def work() -> T:
            with map_errors(), self.pool.connection() as conn, conn.transaction():
                return fn(conn)

        return await trio.to_thread.run_sync(work, limiter=self.limiter)

    async def read(self, fn: Callable[[psycopg.Connection[Row]], T]) -> T:
        """Run `fn(conn)` on a worker thread in autocommit: each statement is its own transaction.

        For work whose statements need not see one snapshot: a single statement, or reads whose later
        statements only depend on what the earlier ones returned. (The pool's connections are in autocommit
        mode; `statement_timeout` is a session setting, so it holds here too.)
        """

        def work() -> T:
            with map_errors(), self.pool.connection() as conn:
                return fn(conn)

        return await trio.to_thread.run_sync(work, limiter=self.limiter)

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
            return await self.fetch_value("SELECT 1 AS ok") == 1
        except Exception:
            log.warning("database ping failed", exc_info=True)
            return False

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


def open_pool(url: str, *, min_size: int, max_size: int, statement_timeout_ms: int,
              application_name: str = "zapgate", timeout: float = 10.0) -> ConnectionPool:
    """A started pool whose connections return dict rows and carry `statement_timeout`.

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
    )
    with map_errors():
        pool.open(wait=min_size > 0, timeout=timeout)
    return pool


async def open_database(url: str, *, min_size: int = 2, max_size: int = 10,
                        statement_timeout_ms: int = 30_000) -> Database:
    pool = await trio.to_thread.run_sync(
        lambda: open_pool(url, min_size=min_size, max_size=max_size, statement_timeout_ms=statement_timeout_ms)
    )
    return Database(pool)
