"""The group-commit writer against a real PostgreSQL: batching, durability before waking, failure isolation."""

from __future__ import annotations

import trio

from storage.db import Database, open_pool
from storage.errors import Conflict
from storage.writer import GroupCommitWriter


async def open_db(url: str) -> Database:
    return Database(await trio.to_thread.run_sync(lambda: open_pool(url, min_size=1, max_size=4,
                                                                    statement_timeout_ms=5000)))


async def test_many_writers_share_few_transactions_and_a_bad_write_fails_alone(database_url: str) -> None:
    db = await open_db(database_url)
    writer = GroupCommitWriter(db, max_batch=100)
    results: dict[int, object] = {}
    try:
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                await nursery.start(writer.run)

                async def write(index: int) -> None:
                    name = "dup" if index in (7, 8) else f"c{index}"  # the second 'dup' violates the unique name

                    def insert(conn):
                        return conn.execute("INSERT INTO companies (name) VALUES (%s) RETURNING id",
                                            (name,)).fetchone()["id"]

                    try:
                        results[index] = await writer.submit(insert)
                    except Conflict as error:
                        results[index] = error

                async with trio.open_nursery() as writers:
                    for index in range(200):
                        writers.start_soon(write, index)
                nursery.cancel_scope.cancel()
        failures = [i for i, r in results.items() if isinstance(r, Conflict)]
        assert len(failures) == 1 and failures[0] in (7, 8)
        assert await db.fetch_value("SELECT count(*) FROM companies") == 199
        assert writer.flushes < 200 and writer.largest_batch > 1  # grouped
        # every caller that got an id finds its row committed
        ids = [r for r in results.values() if isinstance(r, int)]
        assert await db.fetch_value("SELECT count(*) FROM companies WHERE id = ANY(%s)", (ids,)) == len(ids)
    finally:
        await db.aclose()
