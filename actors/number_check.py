"""The number check: which numbers of a contact list have a WhatsApp account (`isWhatsappValid`).

A list's check is a durable timer (kind `contact_list_check`, key `contact-list:<id>`, storage/contact_lists.py)
scheduled by an import, by an item's creation or new number, and by `POST /contact-lists/:id/check`. Its
state is in the rows: the items whose `is_whatsapp_valid` is null are the numbers still to check. Each firing
is one step, run by this actor one at a time:

1. take the next `batch` (50) numbers of the list still unchecked; none left: the check is done;
2. ask a connected WhatsApp connection of the company (the default one first) through its session
   (`SessionHandle.is_on_whatsapp`: one call for the batch, beside the session's sends);
3. in one transaction: complete the timer (only if it is still the one that fired: a rescheduled or
   cancelled check drops the step), store the answers, and schedule the next step `pause` seconds later.

So the calls to WhatsApp are paced (one batch per `pause` per list; WhatsApp limits these queries) and a
restart resumes where the rows say, once (a step whose answers were stored is not asked again). Without a
connected connection the step waits `retry` seconds and tries again, at most `retries` times, then the check
stops until something starts it again (the numbers stay unchecked: null). A transport that cannot check
(`NotSupported`) stops it at once. Answers are announced as ticketz's `company-{id}-ContactListItem` updates.

The scheduler hands due timers over with `_due` (it must return promptly): they wait in a bounded mailbox;
when it is full, `_due` raises and the scheduler hands them out again after its backoff.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from typing import Any

import trio

from actors.session import SessionEnded, SessionHandle, SessionManager
from gateway.broker import Broker
from gateway.whatsapp import transport as wa
from storage import contact_lists, timers
from storage.db import Database, Row
from storage.errors import DB_AWAY
from storage.timers import Timer

log = logging.getLogger("zapgate.number_check")

KIND = contact_lists.CHECK_KIND
BATCH = 50  # numbers asked about in one call
PAUSE = 2.0  # seconds between two calls for one list
RETRY = 60.0  # seconds before trying again when the company has no connected connection
RETRIES = 10  # ... at most this many times in a row
MAILBOX = 256  # due steps waiting for their turn


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class NumberChecker:
    """An actor: `await nursery.start(checker.run)` registers its timer kind with the scheduler and runs the
    steps. Built by the composition root."""

    def __init__(self, db: Database, sessions: SessionManager, broker: Broker, scheduler: Any, *,
                 batch: int = BATCH, pause: float = PAUSE, retry: float = RETRY, retries: int = RETRIES,
                 clock: Callable[[], dt.datetime] = utc_now,
                 present: Callable[[Row], dict[str, Any]] = dict) -> None:
        self.db = db
        self.sessions = sessions
        self.broker = broker
        self.scheduler = scheduler
        self.batch = batch
        self.pause = pause
        self.retry = retry
        self.retries = retries
        self.clock = clock
        self.present = present
        self._mailbox: trio.MemorySendChannel[Timer] | None = None
        self._registered = False
        # figures for /health
        self.steps = 0
        self.numbers_checked = 0
        self.waits = 0  # steps put off: no connected connection, or the session did not answer
        self.last_error: str | None = None

    async def run(self, *, task_status: trio.TaskStatus[NumberChecker] = trio.TASK_STATUS_IGNORED) -> None:
        send, receive = trio.open_memory_channel[Timer](MAILBOX)
        async with send, receive:
            self._mailbox = send
            if not self._registered:  # once per process: a restart of this actor keeps the registration
                self.scheduler.register(KIND, self._due)
                self._registered = True
            try:
                task_status.started(self)
                async for timer in receive:
                    await self._step(timer)
            finally:
                self._mailbox = None

    async def _due(self, batch: list[Timer]) -> None:
        """The scheduler's handler: queue the steps (a full mailbox, or no actor running: raise, they come
        again after the scheduler's backoff; a step queued twice completes once)."""
        await trio.lowlevel.checkpoint()
        mailbox = self._mailbox
        if mailbox is None:
            raise RuntimeError("the number check is not running")
        for timer in batch:
            try:
                mailbox.send_nowait(timer)
            except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
                raise RuntimeError(f"the number check has {MAILBOX} steps waiting") from None

    def mailbox(self) -> dict[str, int]:
        """Steps waiting in its mailbox now (the runtime view)."""
        mailbox = self._mailbox
        return {"depth": mailbox.statistics().current_buffer_used if mailbox is not None else 0, "size": MAILBOX}

    def stats(self) -> dict[str, Any]:
        return {"steps": self.steps, "numbersChecked": self.numbers_checked, "waits": self.waits,
                "lastError": self.last_error}

    # ── one step ──

    async def _step(self, timer: Timer) -> None:
        self.steps += 1
        list_id = timer.payload.get("listId")
        if not isinstance(list_id, int):
            await self._finish(timer, "the timer names no list")
            return
        try:
            items = await self.db.read(lambda conn: contact_lists.unchecked(conn, timer.company_id, list_id,
                                                                             self.batch))
            if not items:
                await self._finish(timer, None)
                return
            connection_ids = await self.db.read(lambda conn: contact_lists.company_connections(conn,
                                                                                               timer.company_id))
        except DB_AWAY as error:
            await self._later(timer, f"the database is away: {error}", count=False)
            return
        handle = self._connected(connection_ids)
        if handle is None:
            await self._later(timer, "no connected WhatsApp connection")
            return
        try:
            answers = await handle.is_on_whatsapp([item["number"] for item in items])
        except wa.NotSupported as error:
            await self._finish(timer, f"connection {handle.whatsapp_id} cannot check numbers: {error}")
            return
        except (wa.TransportError, SessionEnded) as error:
            await self._later(timer, f"connection {handle.whatsapp_id}: {error}")
            return
        valid = {answer.number: answer.exists for answer in answers}
        results = [(item["id"], item["number"], bool(valid.get(item["number"], False))) for item in items]
        try:
            changed = await self._store(timer, list_id, results)
        except DB_AWAY as error:
            await self._later(timer, f"the database is away: {error}", count=False)
            return
        if changed is None:
            return  # the check was rescheduled or cancelled meanwhile: that timer does the work
        self.numbers_checked += len(results)
        for row in changed:
            self.broker.publish(timer.company_id, f"company-{timer.company_id}-ContactListItem",
                                {"action": "update", "record": self.present(row)})

    def _connected(self, connection_ids: Sequence[int]) -> SessionHandle | None:
        for connection_id in connection_ids:
            handle = self.sessions.lookup(connection_id)
            if handle is not None and handle.status == "CONNECTED":
                return handle
        return None

    async def _store(self, timer: Timer, list_id: int, results: list[tuple[int, str, bool]]) -> list[Row] | None:
        """The answers and the next step, if the timer is still the one that fired (else None, nothing)."""
        due_at = self.clock() + dt.timedelta(seconds=self.pause)

        def work(conn: Any) -> list[Row] | None:
            if not timers.complete(conn, timer):
                return None
            changed = contact_lists.set_valid(conn, timer.company_id, results)
            contact_lists.schedule_check(conn, timer.company_id, list_id, due_at)
            return changed

        changed = await self.db.run(work)
        if changed is not None:
            self.scheduler.nudge(due_at)
        return changed

    async def _later(self, timer: Timer, reason: str, *, count: bool = True) -> None:
        """Put the step off by `retry` seconds (after `retries` waits in a row, stop the check)."""
        self.waits += 1
        self.last_error = reason
        waits = int(timer.payload.get("waits", 0)) + (1 if count else 0)
        if waits > self.retries:
            await self._finish(timer, f"given up after {self.retries} tries: {reason}")
            return
        due_at = self.clock() + dt.timedelta(seconds=self.retry)
        list_id = timer.payload.get("listId")

        def work(conn: Any) -> bool:
            if not timers.complete(conn, timer):
                return False
            timers.schedule(conn, company_id=timer.company_id, kind=KIND, key=timer.key, due_at=due_at,
                            payload={"listId": list_id, "waits": waits})
            return True

        try:
            if await self.db.run(work):
                self.scheduler.nudge(due_at)
        except DB_AWAY:
            pass  # the claim's lease runs out and the scheduler hands the step out again
        log.info("number check put off", extra={"fields": {"company_id": timer.company_id, "list_id": list_id,
                                                           "reason": reason, "waits": waits}})

    async def _finish(self, timer: Timer, problem: str | None) -> None:
        if problem is not None:
            self.last_error = problem
            log.warning("number check stopped", extra={"fields": {"company_id": timer.company_id,
                                                                   "key": timer.key, "reason": problem}})
        try:
            await self.db.run(lambda conn: timers.complete(conn, timer))
        except DB_AWAY:
            pass  # handed out again after the claim's lease
