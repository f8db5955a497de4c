"""The Scheduler: fires durable timers (DESIGN §7b "Every wait is a durable timer"; storage/timers.py).

It sleeps until the next due timer — one query for the earliest pending `due_at` — and no longer: a
`nudge(due_at)` after a commit that scheduled an earlier timer moves its wake-up forward (no query), a
plain `nudge()` makes it look again. `MAX_SLEEP` (5 minutes) is only a safety net. Awake, it claims the
due timers in batches (`FOR UPDATE SKIP LOCKED`: pending → claimed, `attempts` + 1) and hands each batch,
by kind, to the handler registered for that kind. A handler must complete each timer it is given, now or
later (`timers.complete` in the transaction of the timer's effect; e.g. the ticket kind hands each to a
ticket actor's mailbox and returns), and must return promptly: batches are handed over one at a time.

What can go wrong, and what happens then:

- A handler raises: logged; its timers go back to pending after a backoff (`retry_initial` seconds,
  doubling per attempt, at most `retry_max`), and fail (`last_error`) once they have had `max_attempts`.
  A handler that raised because the database was away does not spend an attempt.
- A claim nobody completes within `lease` (5 minutes) goes back to pending (or fails after
  `max_attempts`): the scheduler wakes up for the oldest claim's lease as it does for the next due timer.
- Only kinds with a registered handler are claimed: a timer of a kind this process does not know (a
  handler registered later, by an actor still starting, or a newer release's kind) waits, pending.
  Registering a kind wakes the scheduler.
- The database is away (`storage.errors.DB_AWAY`): the scheduler waits it out with backoff, never
  crashes; claims it could not hand back are handed back once the database answers.
- Cancelled (shutdown, or a restart by its supervisor): the claims it holds that no handler took are handed
  back (bounded, shielded); whatever else is left is released at the next start.

**One node.** At start every claim in the table is released at once: it was made by a previous process
(killed, or stopped mid-batch), so a timer due or in flight while zapgate was down fires once after the
start. This assumes one zapgate process per database; several nodes (a later issue) need claims that say
which node made them. Two schedulers on one database still never deliver one claim twice at the same time
(SKIP LOCKED), and `timers.complete` makes an effect commit once whatever the number of deliveries.

Times: the scheduler compares `due_at` with `clock()` (the application's wall clock, UTC); its sleeps are
trio sleeps of the difference, so a timer is never fired early by more than the clocks' drift over one
sleep (at most `MAX_SLEEP`).
"""

from __future__ import annotations

import datetime as dt
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any, Protocol

import attrs
import trio

from storage import timers
from storage.db import Database
from storage.errors import StorageError, db_away
from storage.timers import Timer, Upcoming

log = logging.getLogger("zapgate.scheduler")

BATCH = 500  # timers claimed (and handed over) per transaction
LEASE = 300.0  # seconds a claim may stay uncompleted before it goes back to pending
MAX_SLEEP = 300.0  # the longest sleep, with no timer due sooner (a safety net, not a poll)
MAX_ATTEMPTS = 5  # claims of one timer (one generation) whose handler raised, before it fails
RETRY_INITIAL = 5.0  # seconds before a timer whose handler raised is due again, doubling per attempt...
RETRY_MAX = 300.0  # ... up to this
DB_RETRY_INITIAL = 0.5  # seconds before looking again while the database is away, doubling...
DB_RETRY_MAX = 10.0  # ... up to this
LOCKED_PAUSE = 0.05  # due timers that another transaction holds: look again after this long
COUNT_EVERY = 10.0  # seconds between counts of the pending timers (the health figure)
STOP_RELEASE_TIMEOUT = 2.0  # seconds a stopping scheduler spends handing its claims back

Handler = Callable[[list[Timer]], Awaitable[None]]
Clock = Callable[[], dt.datetime]


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Store(Protocol):
    """The statements the scheduler runs (each its own transaction); `TimerStore` over PostgreSQL."""

    async def claim_due(self, *, now: dt.datetime, limit: int, kinds: Sequence[str]) -> list[Timer]: ...

    async def next_due(self, *, kinds: Sequence[str]) -> Upcoming: ...

    async def release(self, batch: Sequence[Timer], *, now: dt.datetime, counted: bool, error: str | None,
                      max_attempts: int, backoff_initial: float, backoff_max: float) -> dict[str, int]: ...

    async def release_stale(self, *, before: dt.datetime | None, max_attempts: int | None,
                            error: str | None) -> dict[str, int]: ...

    async def fail(self, batch: Sequence[Timer], error: str) -> None: ...

    async def count_pending(self) -> int: ...

    async def release_on_stop(self, batch: Sequence[Timer]) -> None: ...


@attrs.frozen
class TimerStore:
    """`Store` over the database: storage/timers.py's functions on worker threads."""

    db: Database

    async def claim_due(self, *, now: dt.datetime, limit: int, kinds: Sequence[str]) -> list[Timer]:
        return await self.db.run(partial(timers.claim_due, now=now, limit=limit, kinds=kinds))

    async def next_due(self, *, kinds: Sequence[str]) -> Upcoming:
        return await self.db.read(partial(timers.next_due, kinds=kinds))

    async def release(self, batch: Sequence[Timer], *, now: dt.datetime, counted: bool, error: str | None,
                      max_attempts: int, backoff_initial: float, backoff_max: float) -> dict[str, int]:
        return await self.db.run(partial(timers.release, timers=batch, now=now, counted=counted, error=error,
                                         max_attempts=max_attempts, backoff_initial=backoff_initial,
                                         backoff_max=backoff_max))

    async def release_stale(self, *, before: dt.datetime | None, max_attempts: int | None,
                            error: str | None) -> dict[str, int]:
        return await self.db.run(partial(timers.release_stale, before=before, max_attempts=max_attempts,
                                         error=error))

    async def fail(self, batch: Sequence[Timer], error: str) -> None:
        def work(conn: Any) -> None:
            for timer in batch:
                timers.fail(conn, timer, error)

        await self.db.run(work)

    async def count_pending(self) -> int:
        return await self.db.read(timers.count_pending)

    async def release_on_stop(self, batch: Sequence[Timer]) -> None:
        """Hand claims back, uncounted, on a thread abandoned if the caller stops waiting (shutdown)."""

        def work() -> None:
            with self.db.connection() as conn, conn.transaction():
                timers.release(conn, batch, now=utc_now(), counted=False)

        await trio.to_thread.run_sync(work, abandon_on_cancel=True)


@attrs.define
class _Release:
    """Claims to hand back that the database could not take yet."""

    batch: list[Timer]
    counted: bool
    error: str | None


class Scheduler:
    """An actor: `await nursery.start(scheduler.run)` hands back the scheduler; then `register` handlers
    (before or after the start) and `nudge` it after committing a timer."""

    def __init__(self, db: Database, *, store: Store | None = None, clock: Clock = utc_now, batch: int = BATCH,
                 lease: float = LEASE, max_sleep: float = MAX_SLEEP, max_attempts: int = MAX_ATTEMPTS,
                 retry_initial: float = RETRY_INITIAL, retry_max: float = RETRY_MAX,
                 db_retry_initial: float = DB_RETRY_INITIAL, db_retry_max: float = DB_RETRY_MAX,
                 rng: random.Random | None = None) -> None:
        if batch < 1 or lease <= 0 or max_sleep <= 0 or max_attempts < 1:
            raise ValueError("need batch >= 1, lease > 0, max_sleep > 0 and max_attempts >= 1")
        self.db = db
        self.store: Store = store if store is not None else TimerStore(db)
        self.clock = clock
        self.batch = batch
        self.lease = lease
        self.max_sleep = max_sleep
        self.max_attempts = max_attempts
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.db_retry_initial = db_retry_initial
        self.db_retry_max = db_retry_max
        self.rng = rng or random.Random()
        self._handlers: dict[str, Handler] = {}
        self._running = False
        self._released_left_claims = False
        self._held: list[Timer] = []  # claimed, not yet taken by a handler
        self._to_release: list[_Release] = []  # claims to hand back once the database answers
        self._sleep: trio.CancelScope | None = None  # while sleeping for the next timer
        self._look_again = False  # nudged while awake: look again before sleeping
        self._nudged_due: dt.datetime | None = None  # the earliest due_at nudged while awake
        self._oldest_claim_at: dt.datetime | None = None
        self._count_at = -float("inf")  # trio time of the next count of the pending timers
        self._db_failures = 0  # consecutive, while the database is away
        # figures for /health
        self.next_due_at: dt.datetime | None = None
        self.sleeping_until: dt.datetime | None = None
        self.backlog: int | None = None  # pending timers, counted at most every COUNT_EVERY seconds
        self.backlog_at: dt.datetime | None = None
        self.fired = 0  # timers handed to their handlers
        self.claims = 0  # claim statements that returned timers
        self.retried = 0  # timers back to pending after their handler raised
        self.failed = 0  # timers given up (attempts spent, or no handler)
        self.handler_errors = 0
        self.released_stale = 0  # claims past their lease, released
        self.released_at_start = 0  # claims of a previous process, released at start
        self.nudges = 0
        self.wakeups = 0  # sleeps ended early by a nudge
        self.database_waits = 0  # cycles cut short by the database being away
        self.last_error: str | None = None

    # ─── the owners' side ─────────────────────────────────────────────────────────────

    def register(self, kind: str, handler: Handler) -> None:
        """Hand the due timers of `kind` to `handler` from now on (one handler per kind)."""
        if kind in self._handlers:
            raise ValueError(f"timer kind {kind!r} already has a handler")
        self._handlers[kind] = handler
        self.nudge()  # its timers may be due already

    def nudge(self, due_at: dt.datetime | None = None) -> None:
        """A timer due at `due_at` was committed (None: something changed, look again): wake up earlier if
        it is due before the current sleep ends. Sync, cheap (no query); call it after the commit."""
        self.nudges += 1
        sleep = self._sleep
        if sleep is None:  # awake: remembered for the sleep it computes next
            if due_at is None:
                self._look_again = True
            elif self._nudged_due is None or due_at < self._nudged_due:
                self._nudged_due = due_at
            return
        if due_at is None:
            self.wakeups += 1
            sleep.cancel()
            return
        deadline = trio.current_time() + max(0.0, (due_at - self.clock()).total_seconds())
        if deadline < sleep.deadline:
            self.wakeups += 1
            sleep.deadline = deadline
            self.sleeping_until = due_at

    # ─── the actor ────────────────────────────────────────────────────────────────────

    async def run(self, *, task_status: trio.TaskStatus[Scheduler] = trio.TASK_STATUS_IGNORED) -> None:
        if self._running:
            raise RuntimeError("the scheduler is already running")
        self._running = True
        self._released_left_claims = False
        task_status.started(self)
        try:
            while True:
                try:
                    await self._cycle()
                except Exception as error:
                    if not db_away(error):
                        raise
                    await self._wait_for_database(error)
        finally:
            self._running = False
            self._sleep = None
            self.sleeping_until = None
            await self._release_on_stop()

    async def _cycle(self) -> None:
        """Hand back what is owed, claim and dispatch what is due, then sleep until the next timer."""
        await self._flush_releases()
        if not self._released_left_claims:
            released = await self.store.release_stale(before=None, max_attempts=None, error=None)
            self._released_left_claims = True
            self.released_at_start += released["pending"]
            if released["pending"]:
                log.info("released the claims of a previous process", extra={"fields": released})
        await self._expire_leases()
        kinds = sorted(self._handlers)
        claimed_at: dt.datetime | None = None
        claimed = 0
        while kinds:
            claimed_at = self.clock()
            batch = await self.store.claim_due(now=claimed_at, limit=self.batch, kinds=kinds)
            self._held = list(batch)  # no checkpoint since the claim returned: a cancel finds them here
            if not batch:
                break
            self.claims += 1
            claimed += len(batch)
            await self._dispatch(batch)
            if len(batch) < self.batch:
                break
        self._look_again, self._nudged_due = False, None  # what is committed from here on, the query sees
        upcoming = await self.store.next_due(kinds=kinds)
        if self._db_failures:
            log.info("timers: the database answers again", extra={"fields": {"failures": self._db_failures}})
            self._db_failures = 0
        self.next_due_at, self._oldest_claim_at = upcoming.next_due_at, upcoming.oldest_claim_at
        if trio.current_time() >= self._count_at:
            self._count_at = trio.current_time() + COUNT_EVERY
            self.backlog, self.backlog_at = await self.store.count_pending(), self.clock()
        await self._sleep_until_due(upcoming, claimed_at, claimed)

    async def _sleep_until_due(self, upcoming: Upcoming, claimed_at: dt.datetime | None, claimed: int) -> None:
        now = self.clock()
        wake = [now + dt.timedelta(seconds=self.max_sleep)]
        if upcoming.next_due_at is not None:
            if claimed == 0 and claimed_at is not None and upcoming.next_due_at <= claimed_at:
                # due when we claimed, yet not claimed: another transaction holds it (a claim, a reschedule)
                wake.append(now + dt.timedelta(seconds=LOCKED_PAUSE))
            else:
                wake.append(upcoming.next_due_at)
        if upcoming.oldest_claim_at is not None:
            wake.append(upcoming.oldest_claim_at + dt.timedelta(seconds=self.lease))
        if self._nudged_due is not None:
            wake.append(self._nudged_due)
        if self._look_again:
            wake.append(now)
        until = min(wake)
        delay = (until - now).total_seconds()
        if delay <= 0:
            await trio.lowlevel.checkpoint()
            return
        self.sleeping_until = until
        with trio.CancelScope(deadline=trio.current_time() + delay) as sleep:
            self._sleep = sleep
            try:
                await trio.sleep_forever()
            finally:
                self._sleep = None
                self.sleeping_until = None

    async def _dispatch(self, batch: list[Timer]) -> None:
        by_kind: dict[str, list[Timer]] = {}
        for timer in batch:
            by_kind.setdefault(timer.kind, []).append(timer)
        for kind, group in by_kind.items():
            handler = self._handlers.get(kind)
            if handler is None:  # claimed only by registered kinds: a handler that went away
                await self._give_up(group, f"no handler for timer kind {kind!r}")
            else:
                try:
                    await handler(group)
                except Exception as error:
                    self.handler_errors += 1
                    self.last_error = _describe(error)
                    if db_away(error):  # not the timer's fault: no attempt spent, handed back once it answers
                        log.warning("a timer handler found the database away; its timers are handed back",
                                    extra={"fields": {"kind": kind, "timers": len(group), "reason": self.last_error}})
                        self._to_release.append(_Release(group, counted=False, error=None))
                    else:
                        log.error("a timer handler failed; its timers are retried after a backoff", exc_info=error,
                                  extra={"fields": {"kind": kind, "timers": len(group)}})
                        await self._release(_Release(group, counted=True, error=f"{kind}: {self.last_error}"))
                else:
                    self.fired += len(group)
            taken = {timer.id for timer in group}
            self._held = [timer for timer in self._held if timer.id not in taken]

    async def _give_up(self, group: list[Timer], reason: str) -> None:
        log.error("timers given up", extra={"fields": {"timers": len(group), "reason": reason}})
        try:
            await self.store.fail(group, reason)
        except Exception as error:
            if not db_away(error):
                raise
            return  # still claimed: the lease hands them back
        self.failed += len(group)

    async def _release(self, release: _Release) -> None:
        """Hand claims back now; while the database is away, once it answers."""
        try:
            await self._release_now(release)
        except Exception as error:
            if not db_away(error):
                raise
            self._to_release.append(release)

    async def _release_now(self, release: _Release) -> None:
        result = await self.store.release(release.batch, now=self.clock(), counted=release.counted,
                                          error=release.error, max_attempts=self.max_attempts,
                                          backoff_initial=self.retry_initial, backoff_max=self.retry_max)
        if release.counted:
            self.retried += result["pending"]
            self.failed += result["failed"]
            if result["failed"]:
                log.error("timers failed after their last attempt",
                          extra={"fields": {"timers": result["failed"], "reason": release.error}})

    async def _flush_releases(self) -> None:
        """The claims owed since the database was away; raises while it still is (they stay owed)."""
        while self._to_release:
            await self._release_now(self._to_release[0])
            self._to_release.pop(0)

    async def _expire_leases(self) -> None:
        oldest = self._oldest_claim_at
        if oldest is None or oldest + dt.timedelta(seconds=self.lease) > self.clock():
            return
        released = await self.store.release_stale(
            before=self.clock() - dt.timedelta(seconds=self.lease), max_attempts=self.max_attempts,
            error=f"not completed within the lease of {self.lease:g}s")
        self._oldest_claim_at = None
        self.released_stale += released["pending"]
        self.failed += released["failed"]
        if released["pending"] or released["failed"]:
            log.warning("timer claims past their lease released", extra={"fields": released})

    async def _wait_for_database(self, error: BaseException) -> None:
        self.database_waits += 1
        self.last_error = _describe(error)
        delay = min(self.db_retry_max, self.db_retry_initial * 2 ** min(self._db_failures, 30))
        delay *= self.rng.uniform(0.8, 1.2)
        self._db_failures += 1
        if self._db_failures == 1 or self._db_failures % 10 == 0:
            log.warning("timers wait for the database", extra={"fields": {
                "reason": self.last_error, "retry_in": round(delay, 2), "attempt": self._db_failures}})
        await trio.sleep(delay)

    async def _release_on_stop(self) -> None:
        batch = [*self._held, *(timer for release in self._to_release for timer in release.batch)]
        self._held, self._to_release = [], []
        if not batch:
            return
        with trio.CancelScope(shield=True, deadline=trio.current_time() + STOP_RELEASE_TIMEOUT) as scope:
            try:
                await self.store.release_on_stop(batch)
            except StorageError as error:
                log.warning("stopping: claims not handed back (released at the next start)",
                            extra={"fields": {"timers": len(batch), "reason": _describe(error)}})
        if scope.cancelled_caught:
            log.warning("stopping: handing claims back took too long (released at the next start)",
                        extra={"fields": {"timers": len(batch)}})

    def stats(self) -> dict[str, Any]:
        """For /health: cheap (no query); `backlog` is the pending timers' count, at most COUNT_EVERY s old."""
        return {
            "running": self._running,
            "kinds": sorted(self._handlers),
            "backlog": self.backlog,
            "backlog_at": _iso(self.backlog_at),
            "next_due_at": _iso(self.next_due_at),
            "sleeping_until": _iso(self.sleeping_until),
            "fired": self.fired,
            "retried": self.retried,
            "failed": self.failed,
            "handler_errors": self.handler_errors,
            "released_stale": self.released_stale,
            "released_at_start": self.released_at_start,
            "database_waits": self.database_waits,
            "owed_releases": sum(len(release.batch) for release in self._to_release),
            "last_error": self.last_error,
        }


def _iso(when: dt.datetime | None) -> str | None:
    return None if when is None else when.isoformat(timespec="milliseconds")


def _describe(error: BaseException) -> str:
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:300]
