"""DashboardPush: the dashboard's counters pushed to the managers' sockets when they change (issue 17).

Every counted ticket event announces its company after its commit (`NOTIFY zapgate_dashboard '<company>'`,
the insert trigger of migration 0021: whoever wrote the event — an API request, a ticket actor, a campaign —
and only if it committed). This actor LISTENs on a connection of its own (a worker thread waits on it, one
`WAIT` at a time, so a cancel is honoured within `WAIT` seconds) and hands each company to a `Debouncer`,
which publishes ticketz's `counter` event at most once per `INTERVAL` per company: the first change at once,
the ones that follow within the interval once at its end. ticketz's dashboard answers `counter` by
re-reading `/dashboard/status`; the event reaches only the company's admins (api/live.py), as ticketz sends it.

Each node listens and publishes to its own sockets only (`Broker.publish_local`): the database tells every
node, so the Redis bridge would only duplicate it.

What can go wrong: the database goes away → the listener reconnects with backoff (`RETRY_INITIAL` doubling to
`RETRY_MAX`), logging once per outage; a change committed while it was not listening is not pushed (the next
one is; the screens re-read on their own when opened). Cancelled → the thread's wait ends within `WAIT` and
the connection is closed in it. The debouncer's state is a set and a dict per company: nothing queues up.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Callable
from typing import Any

import psycopg
import trio

log = logging.getLogger("zapgate.dashboard")

CHANNEL = "zapgate_dashboard"
INTERVAL = 1.0  # seconds: at most one push per company per interval
WAIT = 1.0  # seconds a listening thread waits before it returns (and a cancel is seen)
RETRY_INITIAL = 0.5
RETRY_MAX = 30.0


class Debouncer:
    """Calls `publish(company_id)` at most once per `interval` per company; a change is never dropped, only
    folded into the next call."""

    def __init__(self, publish: Callable[[int], None], *, interval: float = INTERVAL) -> None:
        self.publish = publish
        self.interval = interval
        self.pending: set[int] = set()
        self.last: dict[int, float] = {}
        self._wakeup = trio.Event()
        self.published = 0

    def mark(self, company_id: int) -> None:
        self.pending.add(company_id)
        self._wakeup.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            self._wakeup = trio.Event()
            now = trio.current_time()
            for company_id in sorted(self.pending):
                if now - self.last.get(company_id, -math.inf) >= self.interval:
                    self.pending.discard(company_id)
                    self.last[company_id] = now
                    self.published += 1
                    self.publish(company_id)
            # forget companies quiet for a while: the dict stays as small as the set of busy companies
            self.last = {c: at for c, at in self.last.items() if now - at < self.interval or c in self.pending}
            deadline = min((self.last[c] + self.interval for c in self.pending), default=math.inf)
            with trio.move_on_at(deadline):
                await self._wakeup.wait()


def _listen(url: str) -> psycopg.Connection[Any]:
    conn = psycopg.connect(url, autocommit=True, connect_timeout=10)
    conn.execute(f"LISTEN {CHANNEL}")
    return conn


def _wait(conn: psycopg.Connection[Any]) -> set[int]:
    """The companies announced within WAIT seconds (blocking; on a worker thread)."""
    seen: set[int] = set()
    for notice in conn.notifies(timeout=WAIT):
        if notice.payload.isdigit():
            seen.add(int(notice.payload))
    return seen


class DashboardPush:
    def __init__(self, url: str, publish_local: Callable[[int, str, dict[str, Any]], None], *,
                 interval: float = INTERVAL) -> None:
        self.url = url
        self.debouncer = Debouncer(self._publish, interval=interval)
        self._publish_local = publish_local
        self.reconnects = 0

    def _publish(self, company_id: int) -> None:
        # ticketz's Counter row shape, whose fields its dashboard does not read (it re-reads the summary)
        self._publish_local(company_id, "counter", {
            "companyId": company_id, "serie": "tickets",
            "timestamp": dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")})

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(self.debouncer.run)
            await nursery.start(self._listen_forever)
            task_status.started()

    async def _listen_forever(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        delay = RETRY_INITIAL
        while True:
            try:
                conn = await trio.to_thread.run_sync(_listen, self.url)
            except psycopg.Error as error:
                if delay == RETRY_INITIAL:
                    log.warning("dashboard push: cannot listen (%s); retrying", error)
                await trio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)
                continue
            delay = RETRY_INITIAL
            try:
                while True:
                    for company_id in await trio.to_thread.run_sync(_wait, conn):
                        self.debouncer.mark(company_id)
            except psycopg.Error as error:
                self.reconnects += 1
                log.warning("dashboard push: lost the listening connection (%s); reconnecting", error)
            finally:
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(conn.close)
