"""Durable timers on PostgreSQL (issue 12, point 1): storage/timers.py and the Scheduler together.

Each handler here completes the timers it is given the way an owner does (`timers.complete_many` in a
transaction) and counts what it saw; the assertions count deliveries and completions, never time.
"""

from __future__ import annotations

import collections
import datetime as dt
import random
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Any

import attrs
import psycopg
import pytest
import trio
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from actors.scheduler import Scheduler
from storage import timers
from storage.db import Database, open_pool
from storage.timers import Timer
from tests.faultproxy import FaultProxy
from tests.integration.conftest import Api, Server

TIMEOUT = 60


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def later(seconds: float) -> dt.datetime:
    return now() + dt.timedelta(seconds=seconds)


async def open_db(url: str, **options: Any) -> Database:
    options = {"min_size": 1, "max_size": 4, "statement_timeout_ms": 10_000, **options}
    return Database(await trio.to_thread.run_sync(partial(open_pool, url, **options)))


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = await open_db(database_url)
    yield database
    await database.aclose()


@pytest.fixture
async def company(db: Database) -> int:
    return await db.fetch_value("INSERT INTO companies (name) VALUES ('Timers') RETURNING id")


def sql(url: str, query: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(query, params)
        return cursor.fetchall() if cursor.description else []


def states(url: str) -> dict[str, int]:
    return dict(sql(url, "SELECT state, count(*) FROM timers GROUP BY state"))


async def schedule(db: Database, company: int, key: str, due_at: dt.datetime, payload: dict[str, Any] | None = None,
                   kind: str = "test") -> Timer:
    return await db.run(lambda conn: timers.schedule(conn, company_id=company, kind=kind, key=key, due_at=due_at,
                                                     payload=payload))


class Completer:
    """A handler as an owner writes one: completes the batch in one transaction; counts deliveries and effects."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.delivered: collections.Counter[str] = collections.Counter()
        self.effects: list[Timer] = []  # the timers whose completion committed (their effect would have)
        self.early = 0

    async def __call__(self, batch: list[Timer]) -> None:
        fired_at = now()
        self.early += sum(timer.due_at > fired_at for timer in batch)
        self.delivered.update(timer.key for timer in batch)
        done = await self.db.run(lambda conn: timers.complete_many(conn, batch))
        self.effects.extend(timer for timer in batch if timer.id in done)


async def until(check: Callable[[], Any]) -> None:
    """Wait (bounded by the test's fail_after) until `check()` is truthy."""
    while not check():
        await trio.sleep(0.02)


async def asleep(scheduler: Scheduler) -> None:
    """Until the scheduler has looked at the table once and sleeps for its next timer."""
    await until(lambda: scheduler.sleeping_until is not None)


async def test_timers_fire_once_each_at_their_time(db: Database, company: int, database_url: str) -> None:
    for key, seconds in (("soon", 0.2), ("next", 0.5), ("tomorrow", 86_400)):
        await schedule(db, company, key, later(seconds), {"key": key})
    handler = Completer(db)
    scheduler = Scheduler(db)
    scheduler.register("test", handler)
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            await nursery.start(scheduler.run)
            await until(lambda: len(handler.effects) == 2)
            await asleep(scheduler)  # asleep again: for tomorrow
            nursery.cancel_scope.cancel()
    assert handler.delivered == {"soon": 1, "next": 1} and handler.early == 0
    assert [timer.payload for timer in handler.effects] == [{"key": "soon"}, {"key": "next"}]
    assert states(database_url) == {"done": 2, "pending": 1}
    assert sql(database_url, "SELECT count(*) FROM timers WHERE state = 'done' AND done_at IS NULL") == [(0,)]
    assert scheduler.stats()["fired"] == 2


async def test_a_reschedule_by_key_moves_the_timer_and_beats_a_claim_being_handled(
        db: Database, company: int, database_url: str) -> None:
    first = await schedule(db, company, "moved", later(86_400), {"v": 1})
    moved = await schedule(db, company, "moved", later(0.2), {"v": 2})
    assert moved.id == first.id and moved.generation == first.generation + 1

    holding: list[Timer] = []
    held = trio.Event()
    completer = Completer(db)

    async def handler(batch: list[Timer]) -> None:
        for timer in batch:
            if timer.key == "held" and timer.generation == 1:  # an owner still busy with it
                holding.append(timer)
                held.set()
        await completer([timer for timer in batch if timer not in holding])

    scheduler = Scheduler(db)
    scheduler.register("test", handler)
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            await nursery.start(scheduler.run)
            await until(lambda: completer.delivered["moved"] == 1)
            await schedule(db, company, "held", later(0), {"v": 1})
            scheduler.nudge()
            await held.wait()
            again = await schedule(db, company, "held", later(0.2), {"v": 2})  # while its owner holds the claim
            scheduler.nudge(again.due_at)
            assert await db.run(lambda conn: timers.complete(conn, holding[0])) is False  # the owner's effect: not done
            await until(lambda: completer.delivered["held"] == 1)
            nursery.cancel_scope.cancel()
    assert [(t.key, t.generation, t.payload) for t in completer.effects] == [("moved", 2, {"v": 2}),
                                                                            ("held", 2, {"v": 2})]
    assert states(database_url) == {"done": 2}  # one row per key, each done once


async def test_cancel_by_key_deletes_the_live_timer(db: Database, company: int, database_url: str) -> None:
    await schedule(db, company, "gone", later(0.2))
    await schedule(db, company, "marker", later(0.5))
    cancel = partial(timers.cancel, company_id=company, kind="test", key="gone")
    assert await db.run(cancel) is True
    assert await db.run(cancel) is False  # nothing left to cancel
    other = await db.fetch_value("INSERT INTO companies (name) VALUES ('Other') RETURNING id")
    assert await db.run(partial(timers.cancel, company_id=other, kind="test", key="marker")) is False  # not its own

    handler = Completer(db)
    scheduler = Scheduler(db)
    scheduler.register("test", handler)
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            await nursery.start(scheduler.run)
            await until(lambda: handler.delivered["marker"] == 1)  # later than the cancelled one was due
            nursery.cancel_scope.cancel()
    assert handler.delivered == {"marker": 1}
    assert sql(database_url, "SELECT key, state FROM timers") == [("marker", "done")]

    # a timer cancelled while its owner holds the claim does not complete
    claimed = await schedule(db, company, "claimed", later(0))
    (claim,) = await db.run(lambda conn: timers.claim_due(conn, now=now(), limit=10))
    assert claim.id == claimed.id
    assert await db.run(partial(timers.cancel, company_id=company, kind="test", key="claimed")) is True
    assert await db.run(lambda conn: timers.complete(conn, claim)) is False


async def test_a_nudge_wakes_a_sleeping_scheduler(db: Database, company: int) -> None:
    await schedule(db, company, "far", later(3600))
    handler = Completer(db)
    scheduler = Scheduler(db, max_sleep=3600)  # no safety net within the test's time: only the nudge can wake it
    scheduler.register("test", handler)
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            await nursery.start(scheduler.run)
            await asleep(scheduler)
            near = await schedule(db, company, "near", later(0.3))
            scheduler.nudge(near.due_at)
            await until(lambda: handler.delivered["near"] == 1)
            nursery.cancel_scope.cancel()
    assert handler.delivered == {"near": 1} and scheduler.wakeups == 1


async def test_two_schedulers_on_one_database_never_fire_a_timer_twice(
        database_url: str, db: Database, company: int) -> None:
    count = 1000
    second_db = await open_db(database_url)
    handlers = [Completer(db), Completer(second_db)]
    schedulers = [Scheduler(db, batch=25), Scheduler(second_db, batch=25)]
    try:
        with trio.fail_after(TIMEOUT):
            async with trio.open_nursery() as nursery:
                for scheduler, handler in zip(schedulers, handlers, strict=True):
                    scheduler.register("test", handler)
                    await nursery.start(scheduler.run)
                for scheduler in schedulers:
                    await asleep(scheduler)  # past their start (which releases claims: one node's assumption)

                def many(conn: psycopg.Connection[Any]) -> None:
                    start = now()
                    for index in range(count):
                        timers.schedule(conn, company_id=company, kind="test", key=f"t{index}",
                                        due_at=start + dt.timedelta(milliseconds=index % 200))

                await db.run(many)
                for scheduler in schedulers:
                    scheduler.nudge()
                await until(lambda: sum(len(h.effects) for h in handlers) == count)
                nursery.cancel_scope.cancel()
    finally:
        await second_db.aclose()
    delivered = handlers[0].delivered + handlers[1].delivered
    assert len(delivered) == count and max(delivered.values()) == 1  # each timer delivered once, by one of them
    assert states(database_url) == {"done": count}


async def test_timers_due_while_zapgate_was_down_fire_once_after_start(
        db: Database, company: int, database_url: str) -> None:
    for index in range(20):
        await schedule(db, company, f"missed{index}", now() - dt.timedelta(minutes=5))
    for index in range(5):  # claimed by a process that was killed before it completed them
        await schedule(db, company, f"inflight{index}", now() - dt.timedelta(minutes=1))
    sql(database_url, "UPDATE timers SET state = 'claimed', claimed_at = now() - interval '50 seconds', attempts = 1"
                      " WHERE key LIKE 'inflight%%'")
    handler = Completer(db)
    scheduler = Scheduler(db)
    scheduler.register("test", handler)
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            await nursery.start(scheduler.run)
            await until(lambda: len(handler.effects) == 25)
            await asleep(scheduler)  # nothing more to do
            nursery.cancel_scope.cancel()
    assert len(handler.delivered) == 25 and set(handler.delivered.values()) == {1}
    assert states(database_url) == {"done": 25}
    assert scheduler.released_at_start == 5


async def test_a_crashing_handler_is_retried_then_the_timer_fails(
        db: Database, company: int, database_url: str) -> None:
    calls = 0

    async def broken(batch: list[Timer]) -> None:
        nonlocal calls
        calls += 1
        raise ValueError("the owner has a bug")

    await schedule(db, company, "poison", later(0))
    handler = Completer(db)
    await schedule(db, company, "fine", later(0), kind="other")
    scheduler = Scheduler(db, max_attempts=3, retry_initial=0.05, retry_max=0.2)
    scheduler.register("test", broken)
    scheduler.register("other", handler)
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            await nursery.start(scheduler.run)
            await until(lambda: states(database_url).get("failed") == 1)
            nursery.cancel_scope.cancel()
    assert calls == 3 and handler.delivered == {"fine": 1}  # the other kind is unaffected
    ((state, attempts, error, done_at),) = sql(
        database_url, "SELECT state, attempts, last_error, done_at FROM timers WHERE key = 'poison'")
    assert state == "failed" and attempts == 3 and "the owner has a bug" in error and done_at is not None
    assert scheduler.stats()["handler_errors"] == 3 and scheduler.stats()["failed"] == 1


async def test_the_scheduler_rides_out_a_database_outage(
        nursery: trio.Nursery, database_url: str, db: Database, company: int) -> None:
    params = conninfo_to_dict(database_url)
    proxy = FaultProxy(str(params.get("host") or "127.0.0.1"), int(params.get("port") or 5432))
    await nursery.start(proxy.run)
    proxied = await open_db(make_conninfo(database_url, host=proxy.host, port=str(proxy.port)), timeout=3.0)
    handler = Completer(proxied)
    scheduler = Scheduler(proxied, db_retry_initial=0.1, db_retry_max=0.5)
    scheduler.register("test", handler)
    try:
        with trio.fail_after(TIMEOUT):
            async with trio.open_nursery() as inner:
                await inner.start(scheduler.run)
                await asleep(scheduler)
                await proxy.cut()
                due = await schedule(db, company, "during", later(0.2))  # past the proxy: the server is up
                scheduler.nudge(due.due_at)
                await until(lambda: scheduler.database_waits >= 3)  # it finds the database away, again and again
                assert handler.delivered == {} and scheduler.stats()["running"]
                await proxy.restore()
                await until(lambda: len(handler.effects) == 1)
                inner.cancel_scope.cancel()
    finally:
        await proxied.aclose()
    assert handler.delivered == {"during": 1}
    assert states(database_url) == {"done": 1}
    assert scheduler.stats()["last_error"]


async def test_cancelling_the_scheduler_mid_claim_leaves_no_stuck_claims(
        db: Database, company: int, database_url: str) -> None:
    count = 3000

    def many(conn: psycopg.Connection[Any]) -> None:
        due = now() - dt.timedelta(seconds=1)
        for index in range(count):
            timers.schedule(conn, company_id=company, kind="test", key=f"t{index}", due_at=due)

    await db.run(many)
    handler = Completer(db)
    rng = random.Random(7)
    with trio.fail_after(TIMEOUT):
        for _ in range(6):  # stopped at arbitrary points: claiming, in a handler, completing
            scheduler = Scheduler(db, batch=100)
            scheduler.register("test", handler)
            async with trio.open_nursery() as nursery:
                await nursery.start(scheduler.run)
                await trio.sleep(rng.uniform(0.01, 0.08))
                nursery.cancel_scope.cancel()
            assert states(database_url).get("claimed", 0) == 0  # handed back on the way out
        scheduler = Scheduler(db, batch=100)
        scheduler.register("test", handler)
        async with trio.open_nursery() as nursery:
            await nursery.start(scheduler.run)
            await until(lambda: len(handler.effects) == count)
            await asleep(scheduler)
            nursery.cancel_scope.cancel()
    assert len({timer.id for timer in handler.effects}) == count  # each effect committed once
    assert states(database_url) == {"done": count}


async def test_a_completion_counts_once_and_only_for_its_company_and_generation(db: Database, company: int) -> None:
    other = await db.fetch_value("INSERT INTO companies (name) VALUES ('Other') RETURNING id")
    for key in ("a", "b", "c"):
        await schedule(db, company, key, later(0))
    claims = await db.run(lambda conn: timers.claim_due(conn, now=now(), limit=10))
    assert [t.key for t in claims] == ["a", "b", "c"] and {t.attempts for t in claims} == {1}
    forged = [attrs.evolve(claims[0], company_id=other), attrs.evolve(claims[1], generation=claims[1].generation + 1)]
    assert await db.run(lambda conn: timers.complete_many(conn, forged)) == set()
    assert await db.run(lambda conn: timers.complete(conn, forged[0])) is False
    assert await db.run(lambda conn: timers.complete_many(conn, claims)) == {t.id for t in claims}
    assert await db.run(lambda conn: timers.complete_many(conn, claims)) == set()  # once
    assert await db.run(lambda conn: timers.complete(conn, claims[2])) is False


async def test_finished_timers_are_pruned_after_a_week(db: Database, company: int, database_url: str) -> None:
    for key in ("old-done", "old-failed", "new-done", "live"):
        await schedule(db, company, key, later(0))
    sql(database_url, "UPDATE timers SET state = 'done', done_at = now() - interval '8 days' WHERE key = 'old-done'")
    sql(database_url, "UPDATE timers SET state = 'failed', done_at = now() - interval '8 days', last_error = 'x'"
                      " WHERE key = 'old-failed'")
    sql(database_url, "UPDATE timers SET state = 'done', done_at = now() - interval '1 day' WHERE key = 'new-done'")
    assert await timers.prune_finished(db) == 2
    assert sorted(key for (key,) in sql(database_url, "SELECT key FROM timers")) == ["live", "new-done"]


async def test_the_app_runs_the_scheduler_and_reports_it(server: Server, api: Api) -> None:
    scheduler = server.deps.scheduler
    assert scheduler is not None and server.deps.tickets.scheduler is scheduler
    response = await api.client.get("/health")
    assert response.status_code == 200
    stats = response.json()["scheduler"]
    assert stats["running"] is True and stats["failed"] == 0
