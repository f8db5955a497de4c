"""Receipts in bulk: the acks of the conversations that have no actor running, a statement per batch.

Every message sent gets two or three receipts from WhatsApp (delivered, read, played). Handing each to its
conversation's actor — starting one for a chat nobody is talking in, as after a campaign — costs an actor start
and a round trip per receipt: a campaign's receipts cost four times what its sends do. The router
(actors/ticket.py `TicketRouter.inbound`) gives this batcher the receipts of chats without a live actor; those
of a live conversation still go to its actor, in order with what it does.

The batch is what arrived while the last one was written (at most BATCH): one `message_ack_many` statement per
connection (each id counts only for our message to that chat's contact, as `message_ack` does for one chat),
the changed messages announced with their tickets, then every receipt settled — never before its commit, so a
receipt not written (a crash, a stop) comes again from the network. Acks only move forward in the database, so
a receipt applied here while the chat's actor starts and applies a later one ends the same. A database outage
is waited out with backoff, the receipts held; past MAX_WAITING receipts waiting the sessions wait for room
(the network holds the rest).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import trio

from gateway.whatsapp import transport as wa
from storage import conversations
from storage.db import Database, Row
from storage.errors import DB_AWAY

log = logging.getLogger("zapgate.receipts")

BATCH = 1_000  # receipts written per batch, at most
MAX_WAITING = 20_000  # receipts waiting for their batch; past it the sessions wait for room
RETRY_INITIAL, RETRY_MAX = 0.2, 5.0

Waiting = tuple[int, int, wa.Receipt]  # (company id, connection id, the receipt)
PublishMessage = Callable[[str, int, Row, "Row | None"], None]


class ReceiptBatcher:
    """Writes receipts in batches (`put` from the router; `run` under the router's nursery)."""

    def __init__(self, db: Database, publish_message: PublishMessage, *, max_waiting: int = MAX_WAITING,
                 batch: int = BATCH, on_ack: Callable[[int, float], None] | None = None) -> None:
        self.db = db
        self.publish_message = publish_message
        self.on_ack = on_ack  # (ack, seconds since sent) of each receipt that moved one (metrics)
        self.max_waiting = max_waiting
        self.batch = batch
        self._waiting: list[Waiting] = []
        self._wake = trio.Event()
        self._room = trio.Event()
        # figures for /health
        self.batches = self.receipts = self.changed = self.foreign = self.db_waits = self.errors = 0

    async def put(self, company_id: int, whatsapp_id: int, event: wa.Receipt) -> None:
        """Queue a receipt (waits only while MAX_WAITING are queued)."""
        while len(self._waiting) >= self.max_waiting:
            if self._room.is_set():
                self._room = trio.Event()
            await self._room.wait()
        self._waiting.append((company_id, whatsapp_id, event))
        self._wake.set()

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    async def run(self, *, task_status: trio.TaskStatus[ReceiptBatcher] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started(self)
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            while self._waiting:
                taken, self._waiting = self._waiting[:self.batch], self._waiting[self.batch:]
                self._room.set()
                try:
                    await self._write(taken)
                except Exception:  # a bug, not the database: logged; the receipts stay unsettled (sent again)
                    self.errors += 1
                    log.exception("receipts not written", extra={"fields": {"receipts": len(taken)}})

    async def _write(self, taken: list[Waiting]) -> None:
        groups: dict[tuple[int, int], list[wa.Receipt]] = {}
        for company_id, whatsapp_id, event in taken:
            groups.setdefault((company_id, whatsapp_id), []).append(event)
        q = self.db.q

        def work(conn: Any) -> list[tuple[int, int, list[Row], dict[int, Row]]]:
            written = []
            for (company_id, whatsapp_id), events in groups.items():
                params: dict[str, Any] = {"company_id": company_id, "whatsapp_id": whatsapp_id, "wids": [],
                                          "acks": [], "numbers": [], "lids": [], "groups": []}
                for event in events:
                    scope = conversations.chat_scope(company_id, whatsapp_id, event.chat)
                    number = scope["numbers"][0] if scope["numbers"] else None
                    lid = scope["lids"][0] if scope["lids"] else None
                    for wid in event.ids:
                        params["wids"].append(wid)
                        params["acks"].append(int(event.ack))
                        params["numbers"].append(number)
                        params["lids"].append(lid)
                        params["groups"].append(scope["is_group"])
                rows = conn.execute(q.message_ack_many, params).fetchall()
                wanted = list({row["ticket_id"] for row in rows if row["id"] is not None})
                tickets = {ticket["id"]: ticket for ticket in conn.execute(
                    q.tickets_show, {"ids": wanted, "company_id": company_id})} if wanted else {}
                written.append((company_id, whatsapp_id, rows, tickets))
            return written

        delay = RETRY_INITIAL
        while True:
            try:
                written = await self.db.run(work)  # one commit, then the announcements
                break
            except DB_AWAY as error:
                self.db_waits += 1
                log.warning("receipts wait for the database", extra={"fields": {"reason": str(error)[:200],
                                                                                 "receipts": len(taken)}})
                await trio.sleep(delay)
                delay = min(RETRY_MAX, delay * 2)
        self.batches += 1
        self.receipts += len(taken)
        foreign = 0
        for company_id, whatsapp_id, rows, tickets in written:
            asked = sum(len(event.ids) for event in groups[(company_id, whatsapp_id)])
            foreign += asked - (rows[0]["matched"] if rows else 0)
            when = {(wid, int(event.ack)): event.timestamp for event in groups[(company_id, whatsapp_id)]
                    for wid in event.ids}
            for row in rows:
                if row["id"] is None:
                    continue  # ours, but its ack was already there (or further)
                self.changed += 1
                at = when.get((row["target"], row["ack"]))
                if self.on_ack is not None and at is not None:  # how long the contact's phone took
                    since = row.get("wa_timestamp") or row["created_at"]
                    self.on_ack(int(row["ack"]), max(0.0, (at - since).total_seconds()))
                shown = row
                if row.get("quoted_msg_id"):  # announced with what it quotes, as the actor does
                    shown = await conversations.show_message(self.db, company_id, row["id"])
                self.publish_message("update", company_id, shown, tickets.get(row["ticket_id"]))
        if foreign:
            self.foreign += foreign
            log.info("receipts ignored: not our messages of their chats", extra={"fields": {"ids": foreign}})
        for _, _, event in taken:
            wa.settle(event)

    def stats(self) -> dict[str, Any]:
        return {"waiting": len(self._waiting), "batches": self.batches, "receipts": self.receipts,
                "changed": self.changed, "foreign": self.foreign, "dbWaits": self.db_waits, "errors": self.errors}
