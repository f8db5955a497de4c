"""The Scheduler's loop under trio's autojump clock, over an in-memory stand-in of the timers table.

Sleeps until the next due timer (no polling), wakes on a nudge, retries a failing handler with backoff,
releases claims past their lease, rides out the database being away, hands its claims back when stopped.
The SQL itself is tested against PostgreSQL in tests/integration/test_timers.py.
"""

from __future__ import annotations

import collections
import datetime as dt
import itertools
import random
from collections.abc import Sequence
from typing import Any

import attrs
import pytest
import trio

from actors.scheduler import Scheduler
from storage.errors import Unavailable
from storage.timers import Timer, Upcoming

pytestmark = pytest.mark.trio

EPOCH = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)


def clock() -> dt.datetime:
    """The wall clock, driven by trio's (autojump) clock."""
    return EPOCH + dt.timedelta(seconds=trio.current_time())


def at(seconds: float) -> dt.datetime:
    return EPOCH + dt.timedelta(seconds=seconds)


@attrs.define
class Row:
    id: int
    kind: str
    key: str
    due_at: dt.datetime
    payload: dict[str, Any]
    state: str = "pending"
    generation: int = 1
    attempts: int = 0
    claimed_at: dt.datetime | None = None
    last_error: str | None = None

    def timer(self) -> Timer:
        return Timer(self.id, 1, self.kind, self.key, self.due_at, dict(self.payload), self.generation, self.attempts)


class FakeStore:
    """storage/timers.py's semantics in memory (one company); `down` makes every call raise Unavailable."""

    def __init__(self) -> None:
        self.rows: dict[int, Row] = {}
        self.ids = itertools.count(1)
        self.down = False
        self.calls: collections.Counter[str] = collections.Counter()
        self.on_next_due: Any = None  # called inside next_due, before its answer (a commit racing the query)

    # the owners' side (sync, as inside a transaction)
    def schedule(self, kind: str, key: str, due_at: dt.datetime, payload: dict[str, Any] | None = None) -> Timer:
        for row in self.rows.values():
            if (row.kind, row.key) == (kind, key) and row.state in ("pending", "claimed"):
                row.due_at, row.payload, row.state = due_at, payload or {}, "pending"
                row.generation += 1
                row.attempts, row.claimed_at = 0, None
                return row.timer()
        row = Row(next(self.ids), kind, key, due_at, payload or {})
        self.rows[row.id] = row
        return row.timer()

    def complete(self, timer: Timer) -> bool:
        row = self.rows.get(timer.id)
        if row is None or row.state != "claimed" or row.generation != timer.generation:
            return False
        row.state = "done"
        return True

    def states(self) -> collections.Counter[str]:
        return collections.Counter(row.state for row in self.rows.values())

    async def _call(self, name: str) -> None:
        await trio.lowlevel.checkpoint()
        self.calls[name] += 1
        if self.down:
            raise Unavailable("connection refused")

    # the scheduler's side
    async def claim_due(self, *, now: dt.datetime, limit: int, kinds: Sequence[str]) -> list[Timer]:
        await self._call("claim_due")
        due = sorted((r for r in self.rows.values() if r.state == "pending" and r.due_at <= now and r.kind in kinds),
                     key=lambda r: (r.due_at, r.id))[:limit]
        for row in due:
            row.state, row.claimed_at, row.attempts = "claimed", now, row.attempts + 1
        return [row.timer() for row in due]

    async def next_due(self, *, kinds: Sequence[str]) -> Upcoming:
        pending = [r.due_at for r in self.rows.values() if r.state == "pending" and r.kind in kinds]
        claims = [r.claimed_at for r in self.rows.values() if r.state == "claimed" and r.claimed_at is not None]
        answer = Upcoming(min(pending, default=None), min(claims, default=None))  # the query's snapshot
        await self._call("next_due")
        if self.on_next_due is not None:
            self.on_next_due()
        return answer

    def _still_claimed(self, batch: Sequence[Timer]) -> list[Row]:
        rows = [self.rows.get(t.id) for t in batch]
        return [r for r, t in zip(rows, batch, strict=True)
                if r is not None and r.state == "claimed" and r.generation == t.generation]

    async def release(self, batch: Sequence[Timer], *, now: dt.datetime, counted: bool, error: str | None,
                      max_attempts: int, backoff_initial: float, backoff_max: float) -> dict[str, int]:
        await self._call("release")
        result = {"pending": 0, "failed": 0}
        for row in self._still_claimed(batch):
            row.claimed_at = None
            row.last_error = error or row.last_error
            if counted and row.attempts >= max_attempts:
                row.state = "failed"
            else:
                row.state = "pending"
                if counted:
                    row.due_at = now + dt.timedelta(seconds=min(backoff_max, backoff_initial * 2 ** (row.attempts - 1)))
                else:
                    row.attempts -= 1
            result[row.state] += 1
        return result

    async def release_stale(self, *, before: dt.datetime | None, max_attempts: int | None,
                            error: str | None) -> dict[str, int]:
        await self._call("release_stale")
        result = {"pending": 0, "failed": 0}
        for row in self.rows.values():
            if row.state == "claimed" and (before is None or (row.claimed_at and row.claimed_at <= before)):
                row.state = "failed" if max_attempts is not None and row.attempts >= max_attempts else "pending"
                row.claimed_at, row.last_error = None, error or row.last_error
                result[row.state] += 1
        return result

    async def fail(self, batch: Sequence[Timer], error: str) -> None:
        await self._call("fail")
        for row in self._still_claimed(batch):
            row.state, row.last_error = "failed", error

    async def count_pending(self) -> int:
        await self._call("count_pending")
        return sum(row.state == "pending" for row in self.rows.values())

    async def release_on_stop(self, batch: Sequence[Timer]) -> None:
        await self._call("release_on_stop")
        for row in self._still_claimed(batch):
            row.state, row.claimed_at, row.attempts = "pending", None, row.attempts - 1


def scheduler(store: FakeStore, **options: Any) -> Scheduler:
    return Scheduler(None, store=store, clock=clock, rng=random.Random(1), **options)  # type: ignore[arg-type]


class Recorder:
    """A handler that completes what it is given and notes when."""

    def __init__(self, store: FakeStore) -> None:
        self.store = store
        self.fired: list[tuple[str, float]] = []

    async def __call__(self, batch: list[Timer]) -> None:
        await trio.lowlevel.checkpoint()
        for timer in batch:
            if self.store.complete(timer):
                self.fired.append((timer.key, trio.current_time()))


async def test_it_sleeps_until_the_next_timer_and_fires_each_once_at_its_time(autojump_clock) -> None:
    store = FakeStore()
    for key, due in (("a", 100.0), ("b", 250.0), ("c", 250.0), ("d", 1000.0)):
        store.schedule("k", key, at(due))
    handler = Recorder(store)
    sched = scheduler(store)
    sched.register("k", handler)
    async with trio.open_nursery() as nursery:
        await nursery.start(sched.run)
        await trio.sleep(2000)
        nursery.cancel_scope.cancel()
    assert [key for key, _ in handler.fired] == ["a", "b", "c", "d"]
    assert [when for _, when in handler.fired] == [100.0, 250.0, 250.0, 1000.0]  # never early, not late
    assert store.states() == {"done": 4}
    # woken by its timers (and MAX_SLEEP's safety net, 2000 s / 300 s), not by a poll
    assert store.calls["next_due"] <= 3 + 2000 / 300 + 1
    assert sched.stats()["fired"] == 4


async def test_a_nudge_moves_a_long_sleep_forward_without_a_query(autojump_clock) -> None:
    store = FakeStore()
    store.schedule("k", "far", at(3000))
    handler = Recorder(store)
    sched = scheduler(store, max_sleep=10_000)
    sched.register("k", handler)
    async with trio.open_nursery() as nursery:
        await nursery.start(sched.run)
        await trio.sleep(10)
        assert sched.stats()["sleeping_until"] is not None  # asleep until the far timer
        queries = store.calls["next_due"]
        store.schedule("k", "near", at(50))
        sched.nudge(at(50))
        sched.nudge(at(2000))  # a later one does not push the wake-up back
        await trio.sleep(35)
        assert store.calls["next_due"] == queries  # still asleep: the nudge moved the deadline, no query
        await trio.sleep(10)
        assert handler.fired == [("near", 50.0)]  # at 50, not at 3000
        await trio.sleep(3000)
        nursery.cancel_scope.cancel()
    assert handler.fired == [("near", 50.0), ("far", 3000.0)]
    assert sched.wakeups == 1


async def test_a_nudge_while_it_looks_is_not_lost(autojump_clock) -> None:
    """A timer committed while the next-due query runs (the query did not see it): its nudge still counts."""
    store = FakeStore()
    handler = Recorder(store)
    sched = scheduler(store, max_sleep=10_000)
    sched.register("k", handler)

    def commit_during_query() -> None:
        store.on_next_due = None
        store.schedule("k", "raced", at(20))
        sched.nudge(at(20))

    store.on_next_due = commit_during_query
    async with trio.open_nursery() as nursery:
        await nursery.start(sched.run)
        await trio.sleep(100)
        nursery.cancel_scope.cancel()
    assert handler.fired == [("raced", 20.0)]


async def test_a_reschedule_while_its_handler_holds_it_wins(autojump_clock) -> None:
    store = FakeStore()
    held: list[Timer] = []
    handled = trio.Event()

    async def slow(batch: list[Timer]) -> None:  # takes the timers, completes them later (an actor's mailbox)
        held.extend(batch)
        handled.set()

    sched = scheduler(store)
    sched.register("k", slow)
    store.schedule("k", "x", at(10), {"v": 1})
    async with trio.open_nursery() as nursery:
        await nursery.start(sched.run)
        await handled.wait()
        store.schedule("k", "x", at(60), {"v": 2})  # moved while its owner holds the claim
        sched.nudge(at(60))
        assert store.complete(held[0]) is False  # the owner's completion loses: its effect is not done
        await trio.sleep(100)
        assert len(held) == 2 and held[1].payload == {"v": 2} and held[1].generation == 2
        assert store.complete(held[1]) is True
        nursery.cancel_scope.cancel()
    assert store.states() == {"done": 1}


async def test_a_failing_handler_is_retried_with_backoff_then_the_timer_fails(autojump_clock, caplog) -> None:
    store = FakeStore()
    calls: list[float] = []

    async def broken(batch: list[Timer]) -> None:
        calls.append(trio.current_time())
        raise RuntimeError("handler bug")

    sched = scheduler(store, max_attempts=3, retry_initial=10, retry_max=100)
    sched.register("k", broken)
    store.schedule("k", "x", at(5))
    async with trio.open_nursery() as nursery:
        await nursery.start(sched.run)
        await trio.sleep(1000)
        nursery.cancel_scope.cancel()
    assert calls == [5.0, 15.0, 35.0]  # 10 s, then 20 s later
    (row,) = store.rows.values()
    assert row.state == "failed" and "handler bug" in (row.last_error or "")
    assert sched.stats()["handler_errors"] == 3 and sched.stats()["failed"] == 1 and sched.stats()["retried"] == 2
    assert "a timer handler failed" in caplog.text


async def test_a_claim_nobody_completes_goes_back_after_its_lease(autojump_clock) -> None:
    store = FakeStore()
    deliveries: list[tuple[int, float]] = []

    async def forgetful(batch: list[Timer]) -> None:
        deliveries.extend((t.attempts, trio.current_time()) for t in batch)
        if len(deliveries) >= 2:
            for timer in batch:
                store.complete(timer)

    sched = scheduler(store, lease=60)
    sched.register("k", forgetful)
    store.schedule("k", "x", at(1))
    async with trio.open_nursery() as nursery:
        await nursery.start(sched.run)
        await trio.sleep(500)
        nursery.cancel_scope.cancel()
    assert deliveries == [(1, 1.0), (2, 61.0)]  # woken by the lease's end, not a poll
    assert store.states() == {"done": 1} and sched.released_stale == 1


async def test_only_registered_kinds_are_claimed_and_registering_wakes_it(autojump_clock) -> None:
    store = FakeStore()
    store.schedule("later", "x", at(5))
    sched = scheduler(store, max_sleep=10_000)
    handler = Recorder(store)
    async with trio.open_nursery() as nursery:
        await nursery.start(sched.run)
        await trio.sleep(100)
        assert store.states() == {"pending": 1}  # nobody handles it yet: it waits, not failed
        sched.register("later", handler)
        await trio.sleep(1)
        nursery.cancel_scope.cancel()
    assert handler.fired == [("x", 100.0)]
    with pytest.raises(ValueError):
        sched.register("later", handler)


async def test_claims_of_a_previous_process_are_released_at_start(autojump_clock) -> None:
    store = FakeStore()
    store.schedule("k", "x", at(0))
    store.rows[1].state, store.rows[1].claimed_at, store.rows[1].attempts = "claimed", at(0), 1  # killed mid-claim
    handler = Recorder(store)
    sched = scheduler(store)
    sched.register("k", handler)
    await trio.sleep(50)
    async with trio.open_nursery() as nursery:
        await nursery.start(sched.run)
        await trio.sleep(1)
        nursery.cancel_scope.cancel()
    assert handler.fired == [("x", 50.0)] and sched.released_at_start == 1


async def test_it_waits_out_the_database_and_fires_after(autojump_clock, caplog) -> None:
    store = FakeStore()
    handler = Recorder(store)
    sched = scheduler(store, db_retry_initial=1, db_retry_max=8)
    sched.register("k", handler)
    store.schedule("k", "x", at(30))
    async with trio.open_nursery() as nursery:
        await nursery.start(sched.run)
        await trio.sleep(10)
        store.down = True
        sched.nudge()  # something to do: it finds the database away
        await trio.sleep(100)  # the timer comes due during the outage
        assert handler.fired == [] and sched.stats()["running"]
        waits = sched.database_waits
        assert 10 <= waits <= 100 / 1 + 1  # backing off (capped at 8 s), never a tight loop, never a crash
        store.down = False
        await trio.sleep(10)
        nursery.cancel_scope.cancel()
    assert [key for key, _ in handler.fired] == ["x"]
    assert caplog.text.count("timers wait for the database") <= 3  # the first failure, then every tenth


async def test_a_handler_that_meets_the_outage_spends_no_attempt(autojump_clock) -> None:
    store = FakeStore()
    calls = 0

    async def completes(batch: list[Timer]) -> None:
        nonlocal calls
        calls += 1
        await trio.lowlevel.checkpoint()
        if calls == 1:
            store.down = True  # the database goes away while the handler works
            raise Unavailable("connection refused")
        for timer in batch:
            store.complete(timer)

    sched = scheduler(store, max_attempts=1, db_retry_initial=1, db_retry_max=2)
    sched.register("k", completes)
    store.schedule("k", "x", at(5))
    async with trio.open_nursery() as nursery:
        await nursery.start(sched.run)
        await trio.sleep(30)
        assert store.states() == {"claimed": 1} and sched.stats()["owed_releases"] == 1  # handed back later
        store.down = False
        await trio.sleep(30)
        nursery.cancel_scope.cancel()
    assert store.states() == {"done": 1}  # not failed, though max_attempts is 1: the outage was no attempt
    assert calls == 2 and sched.stats()["owed_releases"] == 0


async def test_a_cancelled_scheduler_hands_back_the_claims_no_handler_took(autojump_clock) -> None:
    store = FakeStore()
    for index in range(5):
        store.schedule("slow", f"s{index}", at(1))
        store.schedule("fast", f"f{index}", at(1))
    blocked = trio.Event()

    async def stuck(batch: list[Timer]) -> None:
        blocked.set()
        await trio.sleep_forever()

    sched = scheduler(store)
    sched.register("fast", stuck)
    sched.register("slow", stuck)
    async with trio.open_nursery() as nursery:
        await nursery.start(sched.run)
        await blocked.wait()
        assert store.states()["claimed"] == 10
        nursery.cancel_scope.cancel()
    assert store.states() == {"pending": 10}  # the kind in its handler and the one not reached yet
    assert all(row.attempts == 0 for row in store.rows.values())  # a stop is not an attempt
    assert not sched.stats()["running"]
