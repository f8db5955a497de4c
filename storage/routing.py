"""The rows queue routing reads and writes (issue 12), inside the transaction of one routing step.

Every function takes the caller's connection: the ticket actor (actors/routing.py) locks the ticket, reads
what the decision needs, and writes what it decided — outbox rows, the ticket's fields, ratings, events,
timers — in one transaction, so a decision is applied whole or not at all. Every statement is scoped by
company.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import psycopg

from storage.db import Row
from storage.settings import DEFAULTS

TICKET_FOR_ROUTING = """
SELECT t.*, c.name AS contact_name, c.email AS contact_email, c.number AS contact_number,
       c.disable_bot AS contact_disable_bot, u.name AS user_name, coalesce(u.online, false) AS user_online,
       q.name AS queue_name
FROM tickets t
JOIN contacts c ON c.id = t.contact_id
LEFT JOIN users u ON u.id = t.user_id
LEFT JOIN queues q ON q.id = t.queue_id
WHERE t.id = %(id)s AND t.company_id = %(company_id)s
FOR UPDATE OF t
"""

CONNECTION = """
SELECT w.id, w.status, w.greeting_message, w.out_of_hours_message, w.transfer_message, w.max_use_bot_queues,
       w.expires_ticket, w.expires_inactive_message, w.rating_message, w.complation_message, w.farewell_message,
       w.schedules
FROM whatsapps w WHERE w.id = %(whatsapp_id)s AND w.company_id = %(company_id)s
"""

# The company's queues with their option trees (forwards may name a queue not on the connection); the
# connection's own first, in menu order.
QUEUES = """
SELECT q.id, q.name, q.greeting_message, q.out_of_hours_message, q.schedules, q.media_path, q.media_name,
       q.auto_assign, q.last_assigned_user_id, (wq.queue_id IS NOT NULL) AS on_connection,
       coalesce((SELECT json_agg(json_build_object(
                    'id', o.id, 'parent_id', o.parent_id, 'option', o.option, 'title', o.title, 'message', o.message,
                    'forward_queue_id', o.forward_queue_id, 'exit_chatbot', o.exit_chatbot,
                    'media_path', o.media_path, 'media_name', o.media_name) ORDER BY o.id)
                 FROM queue_options o WHERE o.queue_id = q.id AND o.company_id = q.company_id), '[]') AS options
FROM queues q
LEFT JOIN whatsapp_queues wq ON wq.queue_id = q.id AND wq.whatsapp_id = %(whatsapp_id)s
WHERE q.company_id = %(company_id)s
ORDER BY (wq.queue_id IS NULL), q.order_queue NULLS LAST, q.id
"""

COMPANY_SCHEDULES = "SELECT schedules FROM companies WHERE id = %(company_id)s"

SETTINGS = "SELECT key, value FROM settings WHERE company_id = %(company_id)s AND key = ANY(%(keys)s)"

CUSTOM_FIELDS = ("SELECT name, value FROM contact_custom_fields "
                 "WHERE contact_id = %(contact_id)s AND company_id = %(company_id)s")

OUTBOX_INSERT = """
INSERT INTO messages (company_id, whatsapp_id, ticket_id, contact_id, wid, from_me, body, media_type, media_url,
                      media_name, media_mimetype, ack, status, read, sent_by, sent_by_user_id)
VALUES (%(company_id)s, %(whatsapp_id)s, %(ticket_id)s, %(contact_id)s, %(wid)s, true, %(body)s, %(media_type)s,
        %(media_url)s, %(media_name)s, %(media_mimetype)s, 1, 'pending', true, %(sent_by)s, %(user_id)s)
RETURNING *
"""

EVENT_INSERT = """
INSERT INTO ticket_events (company_id, ticket_id, kind, user_id, queue_id, whatsapp_id)
VALUES (%(company_id)s, %(ticket_id)s, %(kind)s, %(user_id)s, %(queue_id)s, %(whatsapp_id)s)
"""

# The agents who may get a queue's ticket: its users, whether they are online, how many open tickets they
# have now, and their limit.
CANDIDATES = """
SELECT u.id, u.name, u.online, u.max_tickets,
       (SELECT count(*) FROM tickets t WHERE t.company_id = u.company_id AND t.user_id = u.id
                                         AND t.status IN ('open', 'pending'))::int AS active
FROM user_queues uq JOIN users u ON u.id = uq.user_id
WHERE uq.queue_id = %(queue_id)s AND uq.company_id = %(company_id)s
ORDER BY u.id
"""

RATING_INSERT = """
INSERT INTO user_ratings (company_id, ticket_id, user_id, rate)
VALUES (%(company_id)s, %(ticket_id)s, %(user_id)s, %(rate)s)
RETURNING *
"""

LAST_CONTACT_MESSAGE = """
SELECT max(created_at) AS at FROM messages
WHERE ticket_id = %(ticket_id)s AND company_id = %(company_id)s AND NOT from_me
"""

# The columns a routing step may set on a ticket.
TICKET_FIELDS = frozenset({"queue_id", "user_id", "status", "chatbot", "queue_option_id", "bot_retries",
                           "routed_message_id", "ooh_until", "rating_at", "assigned_by_bot_at"})


@attrs.frozen
class Setup:
    connection: Row
    queues: list[Row]
    company_schedules: Any
    settings: Mapping[str, str]


def lock_ticket(conn: psycopg.Connection[Row], company_id: int, ticket_id: int) -> Row | None:
    """The ticket, locked for this transaction, with its contact's and agent's names."""
    return conn.execute(TICKET_FOR_ROUTING, {"id": ticket_id, "company_id": company_id}).fetchone()


def read_settings(conn: psycopg.Connection[Row], company_id: int, keys: Sequence[str]) -> dict[str, str]:
    rows = conn.execute(SETTINGS, {"company_id": company_id, "keys": list(keys)}).fetchall()
    stored = {row["key"]: row["value"] for row in rows}
    return {key: stored.get(key, DEFAULTS.get(key, "")) for key in keys}


def load_setup(conn: psycopg.Connection[Row], company_id: int, whatsapp_id: int,
               setting_keys: Sequence[str]) -> Setup | None:
    params = {"company_id": company_id, "whatsapp_id": whatsapp_id}
    connection = conn.execute(CONNECTION, params).fetchone()
    if connection is None:
        return None
    queues = conn.execute(QUEUES, params).fetchall()
    company = conn.execute(COMPANY_SCHEDULES, params).fetchone()
    return Setup(connection, queues, company["schedules"] if company else [],
                 read_settings(conn, company_id, setting_keys))


def custom_fields(conn: psycopg.Connection[Row], company_id: int, contact_id: int) -> dict[str, str]:
    rows = conn.execute(CUSTOM_FIELDS, {"company_id": company_id, "contact_id": contact_id}).fetchall()
    return {row["name"]: row["value"] for row in rows}


def insert_send(conn: psycopg.Connection[Row], ticket: Row, *, wid: str, body: str,
                media: tuple[str, str, str, str] | None = None, sent_by: str = "system",
                user_id: int | None = None) -> Row:
    """An automated message into the outbox (pending, under the id WhatsApp will get); `media` is
    (url as stored, file name, mimetype, kind); `user_id` the agent it is sent for (a schedule's author)."""
    url, name, mimetype, kind = media if media else (None, None, None, "chat")
    row = conn.execute(OUTBOX_INSERT, {
        "company_id": ticket["company_id"], "whatsapp_id": ticket["whatsapp_id"], "ticket_id": ticket["id"],
        "contact_id": ticket["contact_id"], "wid": wid, "body": body, "media_type": kind, "media_url": url,
        "media_name": name, "media_mimetype": mimetype, "sent_by": sent_by, "user_id": user_id}).fetchone()
    assert row is not None
    if body or name:
        conn.execute("UPDATE tickets SET last_message = %(last)s, last_message_at = now(), updated_at = now() "
                     "WHERE id = %(id)s AND company_id = %(company_id)s",
                     {"last": (body or name or "")[:255], "id": ticket["id"], "company_id": ticket["company_id"]})
    return row


def update_ticket(conn: psycopg.Connection[Row], ticket: Row, fields: Mapping[str, Any]) -> Row:
    """Set routing's fields on the (locked) ticket; the row after. Unknown names are a programming error."""
    unknown = set(fields) - TICKET_FIELDS
    if unknown:
        raise ValueError(f"not a routing field: {', '.join(sorted(unknown))}")
    if not fields:
        return ticket
    assignments = ", ".join(f"{name} = %({name})s" for name in fields)
    row = conn.execute(f"UPDATE tickets SET {assignments}, updated_at = now() "  # names checked above
                       "WHERE id = %(_id)s AND company_id = %(_company_id)s RETURNING *",
                       {**fields, "_id": ticket["id"], "_company_id": ticket["company_id"]}).fetchone()
    assert row is not None
    return {**ticket, **row}


def record_event(conn: psycopg.Connection[Row], ticket: Row, kind: str) -> None:
    conn.execute(EVENT_INSERT, {"company_id": ticket["company_id"], "ticket_id": ticket["id"], "kind": kind,
                                "user_id": ticket["user_id"], "queue_id": ticket["queue_id"],
                                "whatsapp_id": ticket["whatsapp_id"]})


def candidates(conn: psycopg.Connection[Row], company_id: int, queue_id: int) -> list[Row]:
    return conn.execute(CANDIDATES, {"company_id": company_id, "queue_id": queue_id}).fetchall()


def set_round_robin_cursor(conn: psycopg.Connection[Row], company_id: int, queue_id: int, user_id: int) -> None:
    conn.execute("UPDATE queues SET last_assigned_user_id = %(user_id)s WHERE id = %(id)s AND company_id = %(c)s",
                 {"user_id": user_id, "id": queue_id, "c": company_id})


def insert_rating(conn: psycopg.Connection[Row], ticket: Row, rate: int) -> Row:
    row = conn.execute(RATING_INSERT, {"company_id": ticket["company_id"], "ticket_id": ticket["id"],
                                       "user_id": ticket["user_id"], "rate": rate}).fetchone()
    assert row is not None
    return row


def last_contact_message_at(conn: psycopg.Connection[Row], ticket: Row) -> dt.datetime | None:
    row = conn.execute(LAST_CONTACT_MESSAGE, {"ticket_id": ticket["id"], "company_id": ticket["company_id"]}).fetchone()
    return row["at"] if row else None
