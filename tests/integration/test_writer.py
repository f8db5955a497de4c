"""The group-commit writer against a real PostgreSQL: batching, durability before waking, failure isolation."""

from __future__ import annotations

import threading

import trio
import trio.testing

from storage.db import Database, open_pool
from storage.errors import Conflict, Unavailable
from storage.writer import Batched, GroupCommitWriter


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


# ─── batched writes: one executemany per SQL and flush ──────────────────────────────────

INSERT_COMPANY = ("INSERT INTO companies (name) VALUES (%(name)s) ON CONFLICT ((lower(name))) DO NOTHING "
                  "RETURNING id, name, txid_current() AS tx")


async def run_in_one_flush(writer: GroupCommitWriter, calls: list) -> None:
    """Queue every call's write before the writer starts, so that one flush takes them all."""
    async with trio.open_nursery() as outer:
        async with trio.open_nursery() as callers:
            for call in calls:
                callers.start_soon(call)
            await trio.testing.wait_all_tasks_blocked()  # all of them queued, waiting for their result
            await outer.start(writer.run)
        outer.cancel_scope.cancel()


async def test_batched_and_plain_writes_share_one_transaction_and_each_caller_gets_its_own_row(
        database_url: str) -> None:
    db = await open_db(database_url)
    await db.execute("INSERT INTO companies (name) VALUES ('taken')")
    writer = GroupCommitWriter(db)
    results: dict[str, object] = {}

    def after(conn, row):  # runs in the same transaction; here, the row the statement did not return
        if row is not None:
            return row
        found = conn.execute("SELECT id, name, txid_current() AS tx FROM companies WHERE name = 'taken'").fetchone()
        return {**found, "already": True}

    def batched(name: str):
        async def call() -> None:
            results[name] = await writer.submit(Batched(INSERT_COMPANY, {"name": name}, after))
        return call

    def plain(name: str):
        async def call() -> None:
            def write(conn):
                return conn.execute("INSERT INTO companies (name) VALUES (%s) RETURNING id, name, txid_current() AS tx",
                                    (name,)).fetchone()
            results[name] = await writer.submit(write)
        return call

    def bare(name: str):  # no finish: the caller gets the row itself
        async def call() -> None:
            results[name] = await writer.submit(Batched("SELECT %(name)s::text AS name, txid_current() AS tx",
                                                        {"name": name}))
        return call

    try:
        with trio.fail_after(30):
            calls = [batched(f"b{i}") for i in range(150)] + [plain(f"p{i}") for i in range(20)]
            calls += [batched("taken"), bare("echo")]
            await run_in_one_flush(writer, calls)
        assert writer.flushes == 1 and writer.writes == 172 and writer.batched_writes == 152
        assert len({row["tx"] for row in results.values()}) == 1  # one transaction for all
        for i in range(150):
            assert results[f"b{i}"]["name"] == f"b{i}"
        for i in range(20):
            assert results[f"p{i}"]["name"] == f"p{i}"
        assert results["taken"]["already"] is True and results["taken"]["name"] == "taken"
        assert results["echo"]["name"] == "echo"
        committed = {row["name"]: row["id"] for row in await db.fetch_all("SELECT name, id FROM companies")}
        assert all(committed[name] == row["id"] for name, row in results.items() if name != "echo")
    finally:
        await db.aclose()


async def test_a_failing_batched_write_fails_alone(database_url: str) -> None:
    db = await open_db(database_url)
    writer = GroupCommitWriter(db)
    results: dict[str, object] = {}
    plain_insert = "INSERT INTO companies (name) VALUES (%(name)s) RETURNING id, name"

    def explode(conn, row):
        raise ValueError(f"finish refused {row['name']}")

    def batched(key: str, name: str, finish=None):
        async def call() -> None:
            try:
                results[key] = await writer.submit(Batched(plain_insert, {"name": name}, finish))
            except (Conflict, ValueError) as error:
                results[key] = error
        return call

    try:
        with trio.fail_after(30):
            calls = [batched(f"c{i}", f"c{i}") for i in range(50)]
            calls += [batched("dup1", "dup"), batched("dup2", "dup"), batched("bad", "refused", explode)]
            await run_in_one_flush(writer, calls)
        conflicts = [key for key, result in results.items() if isinstance(result, Conflict)]
        assert len(conflicts) == 1 and conflicts[0] in ("dup1", "dup2")  # the second 'dup' violates the name
        assert isinstance(results["bad"], ValueError)
        names = {row["name"] for row in await db.fetch_all("SELECT name FROM companies")}
        assert {f"c{i}" for i in range(50)} | {"dup"} <= names
        assert "refused" not in names  # its statement rolled back with its finish
        assert all(results[f"c{i}"]["name"] == f"c{i}" for i in range(50))
    finally:
        await db.aclose()


async def test_a_full_queue_makes_submitters_wait_and_a_queued_write_is_not_cancelled(database_url: str) -> None:
    db = await open_db(database_url)
    writer = GroupCommitWriter(db, max_batch=3, queue_size=2)
    results: dict[int, int] = {}
    try:
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                # submitters first, writer later: all but two wait for room in the queue
                async def write(index: int) -> None:
                    def insert(conn):
                        return conn.execute("INSERT INTO companies (name) VALUES (%s) RETURNING id",
                                            (f"q{index}",)).fetchone()["id"]

                    results[index] = await writer.submit(insert)

                async with trio.open_nursery() as writers:
                    for index in range(20):
                        writers.start_soon(write, index)
                    await trio.testing.wait_all_tasks_blocked()
                    await nursery.start(writer.run)
                assert len(results) == 20 and len(set(results.values())) == 20
                assert writer.largest_batch <= 3

                # a caller cancelled after its write was queued still gets its committed result
                outcome_of: dict[str, object] = {}

                # the write waits in its thread until the cancel has been delivered: the caller is
                # certainly parked in submit when it is cancelled
                started, release = threading.Event(), threading.Event()

                def late(conn):  # type: ignore[no-untyped-def]
                    started.set()
                    assert release.wait(10)
                    return conn.execute("INSERT INTO companies (name) VALUES ('late') RETURNING id").fetchone()["id"]

                async def cancelled_caller(scope_box: list[trio.CancelScope]) -> None:
                    with trio.CancelScope() as scope:
                        scope_box.append(scope)
                        outcome_of["id"] = await writer.submit(late)
                    outcome_of["cancelled"] = scope.cancelled_caught

                box: list[trio.CancelScope] = []
                async with trio.open_nursery() as callers:
                    callers.start_soon(cancelled_caller, box)
                    await trio.to_thread.run_sync(started.wait, 10)
                    box[0].cancel()
                    await trio.testing.wait_all_tasks_blocked()
                    assert "id" not in outcome_of  # still waiting for its commit, not cancelled out
                    release.set()
                assert isinstance(outcome_of["id"], int) and outcome_of["cancelled"] is False
                nursery.cancel_scope.cancel()
        assert await db.fetch_value("SELECT count(*) FROM companies WHERE name = 'late'") == 1
    finally:
        await db.aclose()


async def test_a_stopped_writer_answers_every_queued_write_and_drain_flushes_them(database_url: str) -> None:
    """Shutdown: drain() runs what is queued; a writer cancelled with writes queued answers them (no hang)."""
    db = await open_db(database_url)
    try:
        with trio.fail_after(30):
            # drain: queued before the writer runs, all committed, then submits are refused
            writer = GroupCommitWriter(db, max_batch=5)
            got: list[int] = []

            def insert(name: str):  # type: ignore[no-untyped-def]
                return lambda conn: conn.execute("INSERT INTO companies (name) VALUES (%s) RETURNING id",
                                                 (name,)).fetchone()["id"]

            async with trio.open_nursery() as nursery:
                async with trio.open_nursery() as callers:
                    for index in range(12):
                        callers.start_soon(lambda i=index: _append(got, writer.submit(insert(f"d{i}"))))
                    await trio.testing.wait_all_tasks_blocked()
                    await nursery.start(writer.run)
                    await writer.drain()
                assert len(got) == 12
                try:
                    await writer.submit(insert("after"))
                except Unavailable:
                    pass
                else:
                    raise AssertionError("a drained writer took a write")
                nursery.cancel_scope.cancel()
            assert await db.fetch_value("SELECT count(*) FROM companies WHERE name LIKE 'd%'") == 12

            # cancelled with writes queued behind a flush in progress: every caller gets Unavailable
            writer = GroupCommitWriter(db, max_batch=1)
            started, release = threading.Event(), threading.Event()

            def slow(conn):  # type: ignore[no-untyped-def]
                started.set()
                assert release.wait(10)
                return 0

            answers: list[object] = []

            async def submit(write) -> None:  # type: ignore[no-untyped-def]
                try:
                    answers.append(await writer.submit(write))
                except Unavailable as error:
                    answers.append(error)

            async with trio.open_nursery() as nursery:
                await nursery.start(writer.run)
                async with trio.open_nursery() as callers:
                    callers.start_soon(submit, slow)
                    await trio.to_thread.run_sync(started.wait, 10)
                    for index in range(5):
                        callers.start_soon(submit, insert(f"q{index}"))
                    await trio.testing.wait_all_tasks_blocked()
                    nursery.cancel_scope.cancel()  # the writer stops: its flush finishes (shielded)...
                    release.set()
            assert answers.count(0) == 1  # ...and the 5 queued behind it are answered, not left parked
            assert sum(isinstance(answer, Unavailable) for answer in answers) == 5
    finally:
        await db.aclose()


async def test_an_unreachable_database_fails_the_whole_flush_at_once(database_url: str) -> None:
    """A flush that cannot reach the database is not retried write by write (each would wait for the pool)."""
    db = await open_db(database_url)
    writer = GroupCommitWriter(db, max_batch=50)
    calls = 0

    def unreachable(conn):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        raise Unavailable("connection refused")

    answers: list[object] = []

    async def submit() -> None:
        try:
            await writer.submit(unreachable)
        except Unavailable as error:
            answers.append(error)

    try:
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                async with trio.open_nursery() as callers:
                    for _ in range(10):
                        callers.start_soon(submit)
                    await trio.testing.wait_all_tasks_blocked()
                    await nursery.start(writer.run)
                nursery.cancel_scope.cancel()
        assert len(answers) == 10 and writer.flushes == 1
        assert calls == 1  # the first write's failure ended the transaction; nobody ran alone
    finally:
        await db.aclose()


async def _append(into: list[int], awaitable) -> None:  # type: ignore[no-untyped-def]
    into.append(await awaitable)
