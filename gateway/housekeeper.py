"""The Housekeeper: periodic clean-up, and an eye on the database.

Two loops, both riding out a database that is away (STYLE 7a): a storage error is logged in one line
and the work is tried again after a short backoff (doubling, capped, jittered) — never a crash, so the
root supervisor's restart budget stays for bugs.

- Every `period` (an hour): purge expired and revoked logins; and, when given `prune_timers`, delete the
  durable timers done or failed more than a week ago (storage/timers.py).
- Every `sweep_period` (a day), when given an `invoice_sweep`: create the invoices of the companies whose
  due date is near (storage/invoices.py; idempotent, so a restart that runs it again adds nothing).
- Every `watch_period` (`watch_period_down` while the database is marked down): probe the database
  (`Database.probe`, `SELECT 1`), so that `Database.health` (and `/health`, `/ready`) notices an outage
  and its end even when no other traffic does, and the pool finds the connections the server closed.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from storage import users
from storage.db import Database
from storage.errors import StorageError

log = logging.getLogger("zapgate.housekeeper")

HOUSEKEEPING_PERIOD = 3600.0
SWEEP_PERIOD = 86400.0  # the invoice sweep: daily
WATCH_PERIOD = 15.0  # seconds between probes while the database is up
WATCH_PERIOD_DOWN = 2.0  # ... and while it is down
RETRY_INITIAL = 1.0  # a failed purge is tried again after this long, doubling...
RETRY_MAX = 60.0  # ... up to this


class Housekeeper:
    """Periodic clean-up and the database watch. Start with `await nursery.start(housekeeper.run)`."""

    def __init__(self, db: Database, period: float = HOUSEKEEPING_PERIOD, *,
                 purge: Callable[[Database], Awaitable[int]] = users.purge_logins,
                 watch_period: float = WATCH_PERIOD, watch_period_down: float = WATCH_PERIOD_DOWN,
                 invoice_sweep: Callable[[Database], Awaitable[int]] | None = None,
                 sweep_period: float = SWEEP_PERIOD,
                 prune_timers: Callable[[Database], Awaitable[int]] | None = None,
                 rng: random.Random | None = None) -> None:
        self.db = db
        self.period = period
        self.purge = purge
        self.watch_period = watch_period
        self.watch_period_down = watch_period_down
        self.invoice_sweep = invoice_sweep
        self.sweep_period = sweep_period
        self.prune_timers = prune_timers
        self.rng = rng or random.Random()
        self.purge_failures = 0  # failed purges (each retried)
        self.sweep_failures = 0  # failed invoice sweeps (each retried)
        self.timers_failures = 0  # failed prunes of finished timers (each retried)

    async def run(self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._periodic, self.purge, self.period, "purge", "purged old logins",
                               "purging old logins failed; retrying")
            if self.invoice_sweep is not None:
                nursery.start_soon(self._periodic, self.invoice_sweep, self.sweep_period, "sweep",
                                   "created invoices", "creating invoices failed; retrying")
            if self.prune_timers is not None:
                nursery.start_soon(self._periodic, self.prune_timers, self.period, "timers", "pruned finished timers",
                                   "pruning finished timers failed; retrying")
            nursery.start_soon(self._watch_database)
            task_status.started(None)

    async def _periodic(self, work: Callable[[Database], Awaitable[int]], period: float, name: str, done: str,
                        failed: str) -> None:
        """Run `work` every `period`; a storage error is logged in one line and retried after a backoff."""
        failures = 0
        while True:
            try:
                count = await work(self.db)
            except StorageError as error:
                reason = _describe(error)
            else:
                failures = 0
                if count:
                    log.info(done, extra={"fields": {"count": count}})
                await trio.sleep(period)
                continue
            setattr(self, f"{name}_failures", getattr(self, f"{name}_failures") + 1)
            delay = self._retry_delay(failures)
            failures += 1
            log.warning(failed, extra={"fields": {"reason": reason, "retry_in": round(delay, 1), "attempt": failures}})
            await trio.sleep(delay)

    async def _watch_database(self) -> None:
        while True:
            await trio.sleep(self.watch_period_down if self.db.health.down else self.watch_period)
            try:
                await self.db.probe()  # marks db.health either way; the outage itself is logged there
            except StorageError:
                pass

    def _retry_delay(self, failures: int) -> float:
        return min(RETRY_MAX, RETRY_INITIAL * 2 ** min(failures, 30)) * self.rng.uniform(0.8, 1.2)


def _describe(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__
