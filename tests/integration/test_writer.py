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


async def test_batched_writes_share_one_executemany_each_caller_gets_its_row(database_url: str) -> None:
    from storage.writer import Batched

    db = await open_db(database_url)
    writer = GroupCommitWriter(db, max_batch=100)
    results: dict[int, object] = {}
    insert = "INSERT INTO companies (name) VALUES (%(name)s) RETURNING id, name"
    try:
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                await nursery.start(writer.run)

                async def batched(index: int) -> None:
                    name = "same" if index in (3, 4) else f"b{index}"  # the second 'same' violates the unique name
                    try:
                        results[index] = await writer.submit(Batched(insert, {"name": name}))
                    except Conflict as error:
                        results[index] = error

                async def plain(index: int) -> None:
                    results[1000 + index] = await writer.submit(
                        lambda conn: conn.execute("INSERT INTO companies (name) VALUES (%s) RETURNING id",
                                                  (f"p{index}",)).fetchone()["id"])

                async def finished(index: int) -> None:
                    results[2000 + index] = await writer.submit(Batched(
                        insert, {"name": f"f{index}"}, finish=lambda conn, row: ("done", row["name"])))

                async with trio.open_nursery() as writers:
                    for index in range(60):
                        writers.start_soon(batched, index)
                        writers.start_soon(plain, index)
                        writers.start_soon(finished, index)
                nursery.cancel_scope.cancel()
        for index in range(60):
            if index in (3, 4):
                continue
            assert results[index]["name"] == f"b{index}"  # its own row, not a neighbour's
            assert results[2000 + index] == ("done", f"f{index}")
            assert isinstance(results[1000 + index], int)
        assert sum(isinstance(results[i], Conflict) for i in (3, 4)) == 1
        assert await db.fetch_value("SELECT count(*) FROM companies") == 179
    finally:
        await db.aclose()
