"""Conversations: the writes of the intake (run by the group-commit writer) and the reads of tickets
and messages as the API shows them.

The intake is a write a TicketActor submits to the group-commit writer, which runs many of them in one
transaction: `intake_write` gives the batched form (a group commit's are one statement, `intake_many`) when the
actor already holds the contact and an active ticket, else the full `intake` (contact, ticket, message, counters).
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Iterable, Mapping
from functools import partial
from typing import Any

import attrs
import psycopg
from psycopg.rows import tuple_row

from storage.db import Database, Row
from storage.errors import NotFound
from storage.writer import Batched, Write, execute_many

ACTIVE = ("pending", "open")
# The ticket's columns that `message_intake_active` returns (as ticket_*) for the actor's cached ticket.
TICKET_COUNTERS = ("status", "unread_messages", "last_message", "last_message_at", "updated_at", "queue_id", "user_id")


@attrs.frozen
class ContactIdentity:
    """Who a conversation is with: phone number and/or LID (digits only), or a group."""

    number: str = ""
    lid: str | None = None
    name: str = ""
    is_group: bool = False


@attrs.frozen
class IncomingRow:
    """One message to store (inbound, or sent by us from another device)."""

    wid: str
    from_me: bool
    body: str
    media_type: str
    at: dt.datetime
    media_url: str | None = None
    media_name: str | None = None
    media_mimetype: str | None = None
    quoted_wid: str | None = None
    participant: str | None = None
    ack: int = 0  # the family's scale (gateway.whatsapp.transport.Ack): 0 a contact's message, 2 ours sent elsewhere
    latitude: float | None = None  # a location's coordinates (its body holds its name or address)
    longitude: float | None = None


@attrs.frozen
class Intake:
    contact: Row
    contact_changed: bool
    ticket: Row
    ticket_created: bool
    message: Row | None  # None: a duplicate (already stored)


def upsert_contact(conn: psycopg.Connection[Row], q: Any, company_id: int, who: ContactIdentity) -> tuple[Row, bool]:
    """Find or create the contact by number and LID (both kept); (row, created or changed)."""
    params = {"company_id": company_id, "name": who.name[:255], "number": who.number, "lid": who.lid,
              "is_group": who.is_group}
    if who.lid:
        known = conn.execute(q.contact_by_lid, params).fetchone()
        if known is not None:
            if who.number and not known["number"]:
                updated = conn.execute(q.contact_set_number, {**params, "id": known["id"]}).fetchone()
                if updated is not None:
                    return updated, True
            if not who.number or known["number"] == who.number:
                return known, False
    if who.number:
        row = conn.execute(q.contact_upsert_by_number, params).fetchone()
    else:
        row = conn.execute(q.contact_upsert_by_lid, params).fetchone()
    assert row is not None
    return row, bool(row["inserted"] or row["touched"])


@attrs.frozen
class Reuse:
    """When a contact with no active ticket writes, a closed ticket that takes the message instead of a new
    one (the ticket actor decides from the company's settings): one waiting for its rating answer (the
    message may be one: short, a number, `!`), or one closed less than `reopen_minutes` ago (the setting
    autoReopenTimeout: reopened, pending, for its queue)."""
    rating_answer: bool = False
    reopen_minutes: int = 0


RATING_WAIT = """
SELECT * FROM tickets
WHERE company_id = %(company_id)s AND contact_id = %(contact_id)s AND whatsapp_id = %(whatsapp_id)s
  AND status = 'closed' AND rating_at IS NOT NULL
ORDER BY rating_at DESC LIMIT 1
"""
NO_ACTIVE = """
SELECT NOT EXISTS (SELECT 1 FROM tickets WHERE company_id = %(company_id)s AND contact_id = %(contact_id)s
                   AND whatsapp_id = %(whatsapp_id)s AND status IN ('pending', 'open')) AS none
"""
REOPEN_RECENT = """
UPDATE tickets SET status = 'pending', user_id = NULL, chatbot = false, queue_option_id = NULL, updated_at = now()
WHERE id = (SELECT id FROM tickets
            WHERE company_id = %(company_id)s AND contact_id = %(contact_id)s AND whatsapp_id = %(whatsapp_id)s
              AND status = 'closed' AND updated_at >= now() - make_interval(mins => %(minutes)s)
            ORDER BY updated_at DESC LIMIT 1)
RETURNING *
"""


def reuse_closed(conn: psycopg.Connection[Row], q: Any, company_id: int, whatsapp_id: int, contact: Row,
                 reuse: Reuse) -> tuple[Row, str] | None:
    """The closed ticket a message goes to instead of a new one (see Reuse), and why: "rating" (left
    closed: the routing step reads the answer) or "reopened"; None: none applies, or an active ticket exists."""
    if contact["is_group"] or not (reuse.rating_answer or reuse.reopen_minutes > 0):
        return None
    key = {"company_id": company_id, "contact_id": contact["id"], "whatsapp_id": whatsapp_id}
    none_active = conn.execute(NO_ACTIVE, key).fetchone()
    if none_active is None or not none_active["none"]:
        return None
    if reuse.rating_answer:
        waiting = conn.execute(RATING_WAIT, key).fetchone()
        if waiting is not None:
            return waiting, "rating"
    if reuse.reopen_minutes > 0:
        reopened = conn.execute(REOPEN_RECENT, {**key, "minutes": reuse.reopen_minutes}).fetchone()
        if reopened is not None:
            conn.execute(q.ticket_event_insert, {"company_id": company_id, "ticket_id": reopened["id"],
                                                 "kind": "reopened", "user_id": None,
                                                 "queue_id": reopened["queue_id"], "whatsapp_id": whatsapp_id})
            return reopened, "reopened"
    return None


def find_or_create_ticket(conn: psycopg.Connection[Row], q: Any, company_id: int, whatsapp_id: int,
                          contact: Row, at: dt.datetime) -> tuple[Row, bool]:
    row = conn.execute(q.ticket_find_or_create, {"company_id": company_id, "contact_id": contact["id"],
                                                 "whatsapp_id": whatsapp_id, "is_group": contact["is_group"],
                                                 "at": at}).fetchone()
    assert row is not None
    if row["inserted"]:
        conn.execute(q.ticket_event_insert, {"company_id": company_id, "ticket_id": row["id"], "kind": "created",
                                             "user_id": None, "queue_id": None, "whatsapp_id": whatsapp_id})
    return row, bool(row["inserted"])


def last_message_text(row: IncomingRow) -> str:
    if row.body:
        return row.body[:255]
    return {"image": "📷 Image", "video": "🎥 Video", "audio": "🎵 Audio", "ptt": "🎤 Voice message",
            "document": f"📄 {row.media_name or 'Document'}", "sticker": "Sticker", "location": "📍 Location",
            "vcard": "👤 Contact"}.get(row.media_type, "")


def needs_contact_upsert(contact: Row | None, who: ContactIdentity) -> bool:
    """Whether the intake must find, create or rename the contact (a push name an agent has not overridden)."""
    return contact is None or bool(who.name and who.name != contact["name"] and not contact["name_set_by_agent"])


def is_active(ticket: Row | None) -> bool:
    return ticket is not None and ticket["status"] in ACTIVE


def _message_params(company_id: int, whatsapp_id: int, ticket_id: int, contact_id: int,
                    message: IncomingRow) -> dict[str, Any]:
    return {
        "company_id": company_id, "whatsapp_id": whatsapp_id, "ticket_id": ticket_id, "contact_id": contact_id,
        "wid": message.wid, "from_me": message.from_me, "body": message.body, "media_type": message.media_type,
        "media_url": message.media_url, "media_name": message.media_name, "media_mimetype": message.media_mimetype,
        "ack": message.ack, "status": "sent" if message.from_me else "received", "quoted_wid": message.quoted_wid,
        "participant": message.participant, "wa_timestamp": message.at, "read": message.from_me,
        "sent_by_user_id": None, "latitude": message.latitude, "longitude": message.longitude,
    }


def _counters_params(ticket_id: int, message: IncomingRow) -> dict[str, Any]:
    return {"id": ticket_id, "unread": 0 if message.from_me else 1, "last_message": last_message_text(message),
            "at": message.at}


def intake(conn: psycopg.Connection[Row], q: Any, *, company_id: int, whatsapp_id: int,
           who: ContactIdentity, contact: Row | None, ticket: Row | None, message: IncomingRow,
           reuse: Reuse | None = None) -> Intake:
    """Store one incoming message: contact, ticket (find or create — or a closed one, see Reuse), the message
    (once), the ticket's counters."""
    contact_changed = False
    if needs_contact_upsert(contact, who):
        contact, contact_changed = upsert_contact(conn, q, company_id, who)
    assert contact is not None
    created = False
    if ticket is None or not is_active(ticket):
        reused = reuse_closed(conn, q, company_id, whatsapp_id, contact, reuse) \
            if reuse is not None and not message.from_me else None
        if reused is not None and reused[1] == "rating":
            ticket = reused[0]
            stored = conn.execute(q.message_insert, _message_params(company_id, whatsapp_id, ticket["id"],
                                                                    contact["id"], message)).fetchone()
            return Intake(contact, contact_changed, ticket, False, stored)  # stays closed: routing reads it
        if reused is not None:
            ticket = reused[0]
        else:
            ticket, created = find_or_create_ticket(conn, q, company_id, whatsapp_id, contact, message.at)
    stored = conn.execute(q.message_insert, _message_params(company_id, whatsapp_id, ticket["id"], contact["id"],
                                                            message)).fetchone()
    if stored is None:
        return Intake(contact, contact_changed, ticket, created, None)
    updated = conn.execute(q.ticket_after_message, _counters_params(ticket["id"], message)).fetchone()
    if updated is None:  # closed meanwhile (by an agent on another node): the message opens a new ticket
        ticket, created = find_or_create_ticket(conn, q, company_id, whatsapp_id, contact, message.at)
        conn.execute("UPDATE messages SET ticket_id = %(t)s WHERE id = %(m)s", {"t": ticket["id"], "m": stored["id"]})
        updated = conn.execute(q.ticket_after_message, _counters_params(ticket["id"], message)).fetchone()
        assert updated is not None
    return Intake(contact, contact_changed, updated, created, stored)


def intake_write(q: Any, *, company_id: int, whatsapp_id: int, who: ContactIdentity, contact: Row | None,
                 ticket: Row | None, message: IncomingRow, reuse: Reuse | None = None) -> Batched[Intake] | Write:
    """The group-commit write that does `intake`, as one batched statement when it can.

    When the actor holds the contact (no change to make) and an active ticket — nearly every message of
    a conversation — the message and the ticket's counters are one batched write, which the writer runs
    together with the other actors' as one statement (`intake_many`, `message_intake_batch`). When it
    stores nothing, the same transaction tells a duplicate (nothing to do) from a ticket closed meanwhile
    (the message opens a new ticket, through `intake`).
    """
    def slow(conn: psycopg.Connection[Row]) -> Intake:
        return intake(conn, q, company_id=company_id, whatsapp_id=whatsapp_id, who=who, contact=contact,
                      ticket=ticket, message=message, reuse=reuse)

    if ticket is None or contact is None or not is_active(ticket) or needs_contact_upsert(contact, who):
        return slow
    known_contact, known_ticket = contact, ticket
    params = {**_message_params(company_id, whatsapp_id, ticket["id"], contact["id"], message),
              "unread": 0 if message.from_me else 1, "last_message": last_message_text(message)}

    def finish(conn: psycopg.Connection[Row], row: Row | None) -> Intake:
        if row is not None:
            changed = {name: row.pop(f"ticket_{name}") for name in TICKET_COUNTERS}
            return Intake(known_contact, False, {**known_ticket, **changed}, False, row)
        if conn.execute(q.message_exists, {"whatsapp_id": whatsapp_id, "wid": message.wid}).fetchone():
            return Intake(known_contact, False, known_ticket, False, None)  # stored already
        # the ticket was closed (or deleted) behind the actor's back: the message opens a new one
        return intake(conn, q, company_id=company_id, whatsapp_id=whatsapp_id, who=who, contact=known_contact,
                      ticket=None, message=message, reuse=reuse)

    return Batched(q.message_intake_active, params, finish, many=partial(intake_many, q))


BATCH_COLUMNS = ("company_id", "whatsapp_id", "ticket_id", "contact_id", "wid", "from_me", "body", "media_type",
                 "media_url", "media_name", "media_mimetype", "ack", "status", "quoted_wid", "participant",
                 "wa_timestamp", "read", "sent_by_user_id", "unread", "last_message", "latitude", "longitude")


def intake_many(q: Any, conn: psycopg.Connection[Row], params: list[Mapping[str, Any]]) -> list[Row | None]:
    """A group commit's fast-path intakes as one set-based statement (`message_intake_batch`); a row each.

    Parameters as arrays (one statement, one plan, the rows inserted and the tickets updated together)
    instead of an executemany of `message_intake_active` (a statement per message): the database does
    about half the work per message. Should two writes name the same WhatsApp message — never from the
    actors, one write in flight per chat — the statement per message keeps them apart.
    """
    if len({(p["whatsapp_id"], p["wid"]) for p in params}) < len(params) or any(p["wid"] is None for p in params):
        return execute_many(conn, q.message_intake_active, params)
    arrays = {column: [p[column] for p in params] for column in BATCH_COLUMNS}
    with conn.cursor(row_factory=tuple_row) as cursor:
        cursor.execute(q.message_intake_batch, arrays)
        names = [sys.intern(column.name) for column in cursor.description or ()]
        rows: list[Row | None] = [None] * len(params)
        for values in cursor.fetchall():
            row = dict(zip(names, values, strict=True))
            rows[row.pop("n") - 1] = row
    return rows


# ─── changes from WhatsApp ──────────────────────────────────────────────────────────────

def chat_scope(company_id: int, whatsapp_id: int, chat: str, *, also: Iterable[str | None] = ()) -> dict[str, Any]:
    """The parameters that keep a change arriving from WhatsApp (message_react, message_edit, message_revoke,
    message_ack) to the messages of one chat: the chat's contact, by the number or LID of the chat's JID
    and of `also` (other JIDs of the same contact, e.g. the sender's phone and LID); a group by its id."""
    numbers: list[str] = []
    lids: list[str] = []
    is_group = chat.endswith("@g.us")
    for jid in (chat, *(() if is_group else also)):
        user, _, server = (jid or "").partition("@")
        user = user.split(":", 1)[0].split(".", 1)[0]
        if user:
            (lids if server == "lid" else numbers).append(user)
    return {"company_id": company_id, "whatsapp_id": whatsapp_id, "is_group": is_group, "numbers": numbers,
            "lids": lids}


# ─── reads ──────────────────────────────────────────────────────────────────────────────

async def show_ticket(db: Database, company_id: int, ticket_id: int) -> Row:
    row = await db.fetch_one(db.q.ticket_show, {"id": ticket_id, "company_id": company_id})
    if row is None:
        raise NotFound(f"ticket {ticket_id}")
    return row


async def ticket_id_by_uuid(db: Database, company_id: int, uuid: str) -> int:
    row = await db.fetch_one(db.q.ticket_by_uuid, {"uuid": uuid, "company_id": company_id})
    if row is None:
        raise NotFound(f"ticket {uuid}")
    return row["id"]


async def show_message(db: Database, company_id: int, message_id: int) -> Row:
    row = await db.fetch_one(db.q.message_show, {"id": message_id, "company_id": company_id})
    if row is None:
        raise NotFound(f"message {message_id}")
    return row


async def messages_page(db: Database, company_id: int, ticket_id: int, *, limit: int,
                        offset: int) -> tuple[list[Row], int]:
    params = {"ticket_id": ticket_id, "company_id": company_id, "limit": limit, "offset": offset}
    rows, count = await db.run(lambda conn: (conn.execute(db.q.messages_page, params).fetchall(),
                                             conn.execute(db.q.messages_count, params).fetchone()))
    return rows, count["n"] if count else 0
