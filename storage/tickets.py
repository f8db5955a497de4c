"""Tickets as agents work them: who may see what, a ticket opened with its messages, a conversation started
by an agent, the status machine (accept, transfer, close, reopen) with its `ticket_events`, and deletion.

The filtered lists are in `storage/ticket_lists.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import psycopg

from storage.db import Database, Row
from storage.errors import Conflict, NotFound, StorageError

STATUSES = ("pending", "open", "closed")
ACTIVE = ("pending", "open")

# ─── errors ─────────────────────────────────────────────────────────────────────────────

class InvalidTransition(StorageError):
    """The requested change makes no sense for the ticket's status."""


class TicketConflict(Conflict):
    """The ticket changed under the caller in a way that makes their request wrong (they acted on what they
    saw before): nothing is written. Says who has the ticket now, and in what status."""

    code = "ERR_TICKET_CHANGED"

    def __init__(self, message: str, ticket: Row) -> None:
        super().__init__(message)
        self.ticket_id: int | None = ticket.get("id")
        self.status: str = ticket["status"]
        self.user_id: int | None = ticket["user_id"]
        self.user_name: str | None = ticket.get("user_name")


class TicketTaken(TicketConflict):
    """An accept of a ticket that another user took meanwhile (it is open, and theirs)."""

    code = "ERR_TICKET_ALREADY_ACCEPTED"

    def __init__(self, ticket: Row) -> None:
        super().__init__(f"this ticket was already accepted by {_who(ticket)}", ticket)


class TicketClosedMeanwhile(TicketConflict):
    """A transfer of a ticket that was closed meanwhile (a transfer never reopens a ticket)."""

    code = "ERR_TICKET_CLOSED_MEANWHILE"

    def __init__(self, ticket: Row) -> None:
        super().__init__(f"this ticket was closed by {_who(ticket)} meanwhile; reopen it first", ticket)


def _who(ticket: Row) -> str:
    return ticket.get("user_name") or (f"user {ticket['user_id']}" if ticket["user_id"] is not None else "somebody")


class OtherActiveTicket(Conflict):
    """The contact already has an active (pending or open) ticket on that connection."""

    def __init__(self, ticket_id: int) -> None:
        super().__init__(f"the contact already has an active ticket ({ticket_id}) on this connection",
                         "tickets_one_active_key")
        self.ticket_id = ticket_id


# ─── who sees what ──────────────────────────────────────────────────────────────────────

@attrs.frozen
class Viewer:
    """A caller as the ticket rules see them. Admins see every ticket of their company; a user sees the
    tickets of their queues, queue-less ones when `all_ticket` is enabled, and those assigned to them."""

    user_id: int
    company_id: int
    is_admin: bool
    all_ticket: bool = False
    queue_ids: tuple[int, ...] = ()

    def can_see(self, ticket: Row) -> bool:
        if self.is_admin:
            return True
        queue_id = ticket["queue_id"]
        return (ticket["user_id"] == self.user_id or (queue_id is not None and queue_id in self.queue_ids)
                or (queue_id is None and self.all_ticket))


def read_viewer(conn: psycopg.Connection[Row], q: Any, company_id: int, user_id: int, is_admin: bool) -> Viewer:
    """The caller's Viewer, read on `conn` (inside a worker thread's unit of work)."""
    if is_admin:
        return Viewer(user_id, company_id, True)
    row = conn.execute(q.ticket_viewer, {"user_id": user_id, "company_id": company_id}).fetchone()
    if row is None:  # deleted meanwhile: their own tickets at most (there are none left)
        return Viewer(user_id, company_id, False)
    return Viewer(user_id, company_id, False, row["all_ticket"] == "enable", tuple(row["queue_ids"]))


async def load_viewer(db: Database, company_id: int, user_id: int, is_admin: bool) -> Viewer:
    if is_admin:
        return Viewer(user_id, company_id, True)
    return await db.run(lambda conn: read_viewer(conn, db.q, company_id, user_id, is_admin))


async def show_visible(db: Database, viewer: Viewer, ticket_id: int) -> Row:
    """The ticket (ticket_show view) if the viewer may see it; NotFound otherwise, as for another
    company's ticket."""
    row = await db.fetch_one(db.q.ticket_show, {"id": ticket_id, "company_id": viewer.company_id})
    if row is None or not viewer.can_see(row):
        raise NotFound(f"ticket {ticket_id}")
    return row


# ─── a ticket opened: its messages ──────────────────────────────────────────────────────

@attrs.frozen
class OpenedTicket:
    """GET /messages/:ticketId's reads: the ticket (the ticket_show columns the route needs, with `json`),
    a page of its messages as JSON text (chronological), and what reading it changed."""

    ticket: Row
    messages: str
    shown: int  # messages in the page
    count: int  # messages of the ticket
    more: bool  # older messages remain
    oldest_id: int | None  # the page's oldest message (where the next page ends: ticketz's `nextId`)
    read_changed: bool  # its unread count went to 0 (an `updateUnread` to announce)
    read_wids: tuple[str, ...]  # the WhatsApp ids of the messages just read (for the read receipts)


def page_params(ticket: Row, *, limit: int, offset: int, base_url: str, before_id: int | None = None,
                before_at: Any = None) -> dict[str, Any]:
    """The parameters of messages_page_json for a ticket as ticket_show_json reads it (with its contact)."""
    contact = ticket["contact"]
    return {"ticket_id": ticket["id"], "company_id": ticket["company_id"], "limit": limit, "offset": offset,
            "base_url": base_url, "before_id": before_id, "before_at": before_at, "contact_id": contact["id"],
            "contact_name": contact["name"], "contact_number": contact["number"], "contact_lid": contact["lid"],
            "contact_is_group": contact["isGroup"]}


async def open_ticket_messages(db: Database, company_id: int, user_id: int, is_admin: bool, ticket_id: int, *,
                               limit: int, offset: int, base_url: str, before_id: int | None = None) -> OpenedTicket:
    """The ticket if the caller may see it (NotFound otherwise, as for another company's), a page of its
    messages (older than message `before_id` when given: NotFound unless it is one of the ticket's), and —
    on the first page — the ticket read: one worker thread, one connection in autocommit, one statement
    each (the page is read before it is marked read, as it was shown)."""
    q = db.q

    def work(conn: psycopg.Connection[Row]) -> OpenedTicket:
        viewer = read_viewer(conn, q, company_id, user_id, is_admin)
        ticket = conn.execute(q.ticket_show_json, {"id": ticket_id, "company_id": company_id}).fetchone()
        if ticket is None or not viewer.can_see(ticket):
            raise NotFound(f"ticket {ticket_id}")
        before_at = None
        if before_id is not None:
            cursor = conn.execute(q.message_cursor, {"id": before_id, "ticket_id": ticket_id,
                                                     "company_id": company_id}).fetchone()
            if cursor is None:
                raise NotFound(f"message {before_id} in ticket {ticket_id}")
            before_at = cursor["created_at"]
        page = conn.execute(q.messages_page_json, page_params(ticket, limit=limit, offset=offset, base_url=base_url,
                                                              before_id=before_id, before_at=before_at)).fetchone()
        assert page is not None
        changed, wids = False, ()
        if offset == 0 and before_id is None:
            read = conn.execute(q.ticket_read, {"id": ticket_id, "company_id": company_id}).fetchone()
            assert read is not None
            changed, wids = read["changed"], tuple(read["wids"])
        return OpenedTicket(ticket, page["messages"], page["shown"], page["count"], page["more"], page["oldest_id"],
                            changed, wids)

    return await db.read(work)


# ─── changes ────────────────────────────────────────────────────────────────────────────

@attrs.frozen
class TicketChange:
    """What `PUT /tickets/:id` asks for; user and queue change only when their `set_` flag is on
    (None then means "nobody" / "no queue")."""

    status: str | None = None
    set_user: bool = False
    user_id: int | None = None
    set_queue: bool = False
    queue_id: int | None = None
    transfer: bool = False  # the request says it is a transfer (the Gold lineage's `isTransfered: true`)

    def takes(self, caller_id: int) -> bool:
        """The caller takes the ticket for themselves: an accept (or a reopen), as every stock frontend sends
        it — status open, for the caller (`userId` theirs, or none), not marked as a transfer. The
        community/ticketz transfer to oneself is the same request and counts as one."""
        return (self.status == "open" and not self.transfer
                and (not self.set_user or self.user_id is None or self.user_id == caller_id))

    def moves_to_another(self, caller_id: int) -> bool:
        """A transfer: marked as one, or the ticket given to another user (no stock frontend reopens a
        ticket for someone else)."""
        return self.transfer or (self.set_user and self.user_id is not None and self.user_id != caller_id)


@attrs.frozen
class Plan:
    status: str
    user_id: int | None
    queue_id: int | None
    events: tuple[str, ...]  # ticket_events kinds, in order

    def changes(self, ticket: Row) -> bool:
        return (self.status, self.user_id, self.queue_id) != (ticket["status"], ticket["user_id"], ticket["queue_id"])


def plan_change(ticket: Row, change: TicketChange, caller_id: int) -> Plan:
    """The status machine. pending→open accepts (taken by the caller unless a user is named); →closed
    closes; closed→pending|open reopens (open: taken by the caller unless named); a changed queue or user
    otherwise is a transfer (open→pending gives the ticket back to its queue: a transfer too).

    Requests made on a ticket that changed since the caller saw it, where the request tells (`ticket` is
    the row as it is now): taking a ticket that another user has open is TicketTaken (the stock accept
    carries no previous state, but it always means "pending → mine"; taking one's own again changes
    nothing); a transfer of a closed ticket is TicketClosedMeanwhile. A close ("closed", no previous
    state), a return to the queue and a transfer of an open ticket cannot be told from deliberate ones
    (admins close and move other users' tickets): they apply to the ticket as it is."""
    old = ticket["status"]
    if change.takes(caller_id) and old == "open" and ticket["user_id"] not in (None, caller_id):
        raise TicketTaken(ticket)
    if old == "closed" and change.status in ACTIVE and change.moves_to_another(caller_id):
        raise TicketClosedMeanwhile(ticket)
    new = change.status or old
    if new not in STATUSES:
        raise InvalidTransition(f"status must be one of {', '.join(STATUSES)}")
    user_id = change.user_id if change.set_user else ticket["user_id"]
    queue_id = change.queue_id if change.set_queue else ticket["queue_id"]
    events: list[str] = []
    if old == "closed" and new == "closed":
        if change.status == "closed":  # closing a closed ticket (the stock close names the closer): a no-op
            user_id = ticket["user_id"]
        if (user_id, queue_id) != (ticket["user_id"], ticket["queue_id"]):
            raise InvalidTransition("a closed ticket cannot be transferred; reopen it first")
        return Plan(new, user_id, queue_id, ())
    assigns = False  # the status change itself decides the user: no transfer event for it
    if old == "pending" and new == "open":
        events.append("accepted")
        assigns = True
    elif old == "closed":
        events.append("reopened")
        assigns = True
    elif new == "closed":
        events.append("closed")
        assigns = True
    if new == "open" and user_id is None:
        if not assigns and change.set_user:
            raise InvalidTransition("an open ticket needs a user; set status pending to give it back to its queue")
        user_id = caller_id
    moved = queue_id != ticket["queue_id"] or (not assigns and user_id != ticket["user_id"]) or \
        (old == "open" and new == "pending")
    if moved:  # a transfer comes before a close (it happened first), after an accept or a reopen
        events.insert(0 if new == "closed" else len(events), "transferred")
    return Plan(new, user_id, queue_id, tuple(events))


def _check_targets(conn: psycopg.Connection[Row], q: Any, company_id: int, user_id: int | None,
                   queue_id: int | None) -> None:
    if user_id is not None and conn.execute(q.ticket_user_exists, {"id": user_id,
                                                                   "company_id": company_id}).fetchone() is None:
        raise NotFound(f"user {user_id}")
    if queue_id is not None and conn.execute(q.ticket_queue_exists, {"id": queue_id,
                                                                     "company_id": company_id}).fetchone() is None:
        raise NotFound(f"queue {queue_id}")


async def check_targets(db: Database, company_id: int, user_id: int | None, queue_id: int | None) -> None:
    """NotFound unless the user and the queue (each when not None) belong to the company."""
    if user_id is not None or queue_id is not None:
        await db.run(lambda conn: _check_targets(conn, db.q, company_id, user_id, queue_id))


def _record(conn: psycopg.Connection[Row], q: Any, ticket: Row, kinds: Sequence[str]) -> None:
    """ticket_events rows: each carries the ticket's user, queue and connection after the change."""
    for kind in kinds:
        conn.execute(q.ticket_event_insert, {"company_id": ticket["company_id"], "ticket_id": ticket["id"],
                                             "kind": kind, "user_id": ticket["user_id"],
                                             "queue_id": ticket["queue_id"], "whatsapp_id": ticket["whatsapp_id"]})


@attrs.frozen
class Changed:
    ticket: Row  # the tickets row after the change
    events: tuple[str, ...]
    wrote: bool = True  # False: the ticket already was as asked; nothing written, nothing to announce


CHANGE_ATTEMPTS = 5  # plans of one change, each on the ticket as another change just left it


async def change_ticket(db: Database, company_id: int, ticket_id: int, change: TicketChange,
                        caller_id: int) -> Changed:
    """Apply a change, with its events, in one transaction: planned on the ticket as it is, written only if
    it is still so (ticket_set_assignment: the check and the write are one statement, no lock is held
    between them); a ticket changed in between is planned again. Run it inside the conversation's
    TicketActor (which announces the result) — though nothing here relies on it. Raises NotFound (ticket,
    user or queue), InvalidTransition, OtherActiveTicket (a reopen while the contact has another active
    ticket), TicketTaken / TicketClosedMeanwhile (see plan_change)."""
    q = db.q

    def work(conn: psycopg.Connection[Row]) -> Changed:
        for _ in range(CHANGE_ATTEMPTS):
            ticket = conn.execute(q.ticket_for_change, {"id": ticket_id, "company_id": company_id}).fetchone()
            if ticket is None:
                raise NotFound(f"ticket {ticket_id}")
            plan = plan_change(ticket, change, caller_id)
            if not plan.changes(ticket):
                return Changed(ticket, (), wrote=False)
            _check_targets(conn, q, company_id, plan.user_id if plan.user_id != ticket["user_id"] else None,
                           plan.queue_id if plan.queue_id != ticket["queue_id"] else None)
            if ticket["status"] == "closed" and plan.status in ACTIVE:
                other = conn.execute(q.ticket_other_active, {**_key(ticket), "id": ticket_id}).fetchone()
                if other is not None:
                    raise OtherActiveTicket(other["id"])
            updated = conn.execute(q.ticket_set_assignment, {
                "id": ticket_id, "company_id": company_id, "status": plan.status, "user_id": plan.user_id,
                "queue_id": plan.queue_id, "from_status": ticket["status"], "from_user_id": ticket["user_id"],
                "from_queue_id": ticket["queue_id"]}).fetchone()
            if updated is not None:
                _record(conn, q, updated, plan.events)
                return Changed(updated, plan.events)
        raise TicketConflict("this ticket keeps changing; try again", ticket)

    return await db.run(work)


def _key(ticket: Row) -> dict[str, Any]:
    return {"company_id": ticket["company_id"], "contact_id": ticket["contact_id"],
            "whatsapp_id": ticket["whatsapp_id"]}


async def open_ticket(db: Database, company_id: int, *, contact: Row, whatsapp_id: int, status: str,
                      user_id: int | None, queue_id: int | None) -> Row:
    """A ticket an agent starts with a contact; OtherActiveTicket when the contact already has an active
    one on that connection. Events: `created`, and `accepted` when it starts open."""
    if status not in ACTIVE:
        raise InvalidTransition("a new ticket is open or pending")
    q = db.q

    def work(conn: psycopg.Connection[Row]) -> Row:
        _check_targets(conn, q, company_id, user_id, queue_id)
        key = {"company_id": company_id, "contact_id": contact["id"], "whatsapp_id": whatsapp_id}
        row = conn.execute(q.ticket_insert_by_agent, {**key, "status": status, "user_id": user_id,
                                                      "queue_id": queue_id,
                                                      "is_group": contact["is_group"]}).fetchone()
        if row is None:
            other = conn.execute(q.ticket_other_active, {**key, "id": 0}).fetchone()
            raise OtherActiveTicket(other["id"] if other else 0)
        _record(conn, q, row, ("created", "accepted") if status == "open" else ("created",))
        return row

    return await db.run(work)


async def default_whatsapp(db: Database, company_id: int) -> int | None:
    """As the family: the default connection if it is connected, else a connected one (the oldest); with none
    connected, the default or the only one (its messages wait in the outbox). None when there is no choice."""
    rows = await db.fetch_all(db.q.ticket_default_whatsapp, {"company_id": company_id})
    if rows and (rows[0]["connected"] or rows[0]["is_default"] or len(rows) == 1):
        return rows[0]["id"]
    return None


async def delete_ticket(db: Database, company_id: int, ticket_id: int) -> None:
    if await db.fetch_one(db.q.ticket_delete, {"id": ticket_id, "company_id": company_id}) is None:
        raise NotFound(f"ticket {ticket_id}")
