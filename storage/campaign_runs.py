"""Campaign rows, as the campaign actors change them (migration 0020; actors/campaigns.py).

Every function runs inside the caller's transaction and is scoped by company. The claim (`claim`) is the
heart of "exactly once": it checks the campaign is still running and not paused — holding the campaign row
FOR SHARE, so a cancel's UPDATE waits for the claim or the claim sees the cancel — moves queued shippings to
`sending` and writes each one's outbox row in the same transaction.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

import psycopg

from storage.db import Row

START_KIND = "campaign.start"
RESUME_KIND = "campaign.resume"
VARIANTS = ("message1", "message2", "message3", "message4", "message5")
CONNECTION_DOWN = "connection down"


def key(campaign_id: int) -> str:
    return f"campaign:{campaign_id}"


def wid_of(campaign_id: int, number: str, attempt: int = 1) -> str:
    """The WhatsApp id a campaign's message to `number` goes out with: "3EB0" + 18 hex digits, as whatsmeow's
    ids look, derived from (campaign, number) — a resend after a crash is the same message. A restarted failed
    send reuses its outbox row (`retry_message`), so its id too; only when that row is gone (deleted with its
    ticket) does a later attempt take a new id (`attempt` > 1), the first one's row having been removed."""
    seed = f"campaign:{campaign_id}:{number}" + (f":{attempt}" if attempt > 1 else "")
    return "3EB0" + hashlib.sha256(seed.encode()).hexdigest()[:18].upper()


def variant_numbers(campaign: Row) -> list[int]:
    """The variants a campaign rotates: the non-empty message1..5 (1 alone when all are empty: a file)."""
    found = [index for index, name in enumerate(VARIANTS, 1) if (campaign.get(name) or "").strip()]
    return found or [1]


def lock(conn: psycopg.Connection[Row], company_id: int, campaign_id: int, *, share: bool = False) -> Row | None:
    mode = "FOR SHARE" if share else "FOR UPDATE"
    return conn.execute(f"SELECT * FROM campaigns WHERE id = %(id)s AND company_id = %(company_id)s {mode}",
                        {"id": campaign_id, "company_id": company_id}).fetchone()


def read(conn: psycopg.Connection[Row], company_id: int, campaign_id: int) -> Row | None:
    return conn.execute("SELECT * FROM campaigns WHERE id = %(id)s AND company_id = %(company_id)s",
                        {"id": campaign_id, "company_id": company_id}).fetchone()


def runnable(conn: psycopg.Connection[Row]) -> list[Row]:
    """Every company's campaigns to look at when the supervisor starts (a system scan, as the scheduler's):
    running ones (paused by a user: not) and scheduled ones."""
    return conn.execute(
        "SELECT id, company_id, status, scheduled_at, paused_at, pause_reason FROM campaigns "
        "WHERE status IN ('PROGRAMADA', 'EM_ANDAMENTO') ORDER BY id").fetchall()


def settings(conn: psycopg.Connection[Row], company_id: int) -> dict[str, str]:
    rows = conn.execute("SELECT key, value FROM campaign_settings WHERE company_id = %(company_id)s",
                        {"company_id": company_id}).fetchall()
    return {row["key"]: row["value"] for row in rows}


AUDIENCE = """
WITH audience AS (
    SELECT i.number, i.name, i.id AS item_id, NULL::bigint AS contact_id, i.id AS ord,
           i.is_whatsapp_valid IS FALSE AS no_whatsapp
    FROM contact_list_items i
    WHERE %(list_id)s::bigint IS NOT NULL AND i.company_id = %(company_id)s AND i.contact_list_id = %(list_id)s
    UNION ALL
    SELECT c.number, c.name, NULL, c.id, c.id, false
    FROM contacts c
    WHERE %(list_id)s::bigint IS NULL AND %(tag_id)s::bigint IS NOT NULL
      AND c.company_id = %(company_id)s AND c.number <> '' AND NOT c.is_group
      AND (EXISTS (SELECT 1 FROM contact_tags ct WHERE ct.contact_id = c.id AND ct.tag_id = %(tag_id)s
                                                 AND ct.company_id = %(company_id)s)
           OR EXISTS (SELECT 1 FROM ticket_tags tt JOIN tickets t ON t.id = tt.ticket_id
                      WHERE t.contact_id = c.id AND tt.tag_id = %(tag_id)s AND tt.company_id = %(company_id)s))
), unique_numbers AS (
    SELECT DISTINCT ON (number) number, name, item_id, contact_id, ord, no_whatsapp FROM audience
    WHERE number <> '' ORDER BY number, ord
), ranked AS (
    SELECT u.*, row_number() OVER (ORDER BY ord, number) AS rn,
           (EXISTS (SELECT 1 FROM campaign_opt_outs o WHERE o.company_id = %(company_id)s AND o.number = u.number)
            OR EXISTS (SELECT 1 FROM contacts c WHERE c.company_id = %(company_id)s AND c.number = u.number
                                                AND c.opted_out_at IS NOT NULL)) AS opted_out
    FROM unique_numbers u
)
INSERT INTO campaign_shippings (company_id, campaign_id, number, name, contact_list_item_id, contact_id, variant,
                                state, error, confirmation, confirmation_message)
SELECT %(company_id)s, %(campaign_id)s, r.number, left(coalesce(r.name, ''), 255), r.item_id, r.contact_id,
       v.variant,
       CASE WHEN r.opted_out OR r.no_whatsapp THEN 'skipped' ELSE 'queued' END,
       CASE WHEN r.opted_out THEN 'opted out' WHEN r.no_whatsapp THEN 'no WhatsApp' END,
       %(confirmation)s, (%(confirmations)s::text[])[v.variant]
FROM ranked r
CROSS JOIN LATERAL (SELECT (%(variants)s::int[])[((r.rn - 1) %% %(count)s) + 1] AS variant) v
ORDER BY r.rn
ON CONFLICT (campaign_id, number) DO NOTHING
"""


def begin(conn: psycopg.Connection[Row], company_id: int, campaign_id: int,
          now: dt.datetime) -> tuple[Row | None, bool]:
    """Start a campaign that is due (PROGRAMADA) or set to run (EM_ANDAMENTO) and has no shippings yet: one
    transaction makes it EM_ANDAMENTO with `started_at` and writes a shipping per audience number. The
    campaign after it, and whether it changed."""
    campaign = lock(conn, company_id, campaign_id)
    if campaign is None or campaign["status"] not in ("PROGRAMADA", "EM_ANDAMENTO"):
        return campaign, False
    if campaign["started_at"] is not None:
        if campaign["status"] == "EM_ANDAMENTO":
            return campaign, False
        # a PROGRAMADA one that already ran (edited back): its shippings stay, it runs again
    variants = variant_numbers(campaign)
    confirmations = [campaign[f"confirmation_message{index}"] or "" for index in range(1, 6)]
    conn.execute(AUDIENCE, {"company_id": company_id, "campaign_id": campaign_id,
                            "list_id": campaign["contact_list_id"],
                            "tag_id": campaign["tag_id"] if campaign["contact_list_id"] is None else None,
                            "variants": variants, "count": len(variants), "confirmation": campaign["confirmation"],
                            "confirmations": confirmations})
    row = conn.execute(
        "UPDATE campaigns SET status = 'EM_ANDAMENTO', started_at = coalesce(started_at, %(now)s), "
        "completed_at = NULL, updated_at = now() WHERE id = %(id)s AND company_id = %(company_id)s RETURNING *",
        {"now": now, "id": campaign_id, "company_id": company_id}).fetchone()
    return row, True


CLAIM = """
UPDATE campaign_shippings s SET state = 'sending', attempts = s.attempts + 1, updated_at = now()
WHERE s.id IN (SELECT id FROM campaign_shippings
               WHERE campaign_id = %(campaign_id)s AND company_id = %(company_id)s AND state = 'queued'
               ORDER BY id LIMIT %(limit)s FOR UPDATE SKIP LOCKED)
RETURNING s.*
"""

CONTACT_UPSERT = """
INSERT INTO contacts (company_id, name, number) VALUES (%(company_id)s, %(name)s, %(number)s)
ON CONFLICT (company_id, number) WHERE number <> '' DO UPDATE SET number = EXCLUDED.number
RETURNING id, name, number, email, lid, is_group, opted_out_at
"""

ACTIVE_TICKET = """
SELECT id FROM tickets
WHERE company_id = %(company_id)s AND contact_id = %(contact_id)s AND whatsapp_id = %(whatsapp_id)s
  AND status IN ('pending', 'open')
ORDER BY id DESC LIMIT 1
"""

CLOSED_TICKET = """
SELECT id FROM tickets
WHERE company_id = %(company_id)s AND contact_id = %(contact_id)s AND whatsapp_id = %(whatsapp_id)s
  AND status = 'closed'
ORDER BY id DESC LIMIT 1
"""

TICKET_INSERT = """
INSERT INTO tickets (company_id, contact_id, whatsapp_id, status, is_group)
VALUES (%(company_id)s, %(contact_id)s, %(whatsapp_id)s, 'closed', false)
RETURNING id, company_id, contact_id, whatsapp_id, user_id, queue_id
"""

EVENT_INSERT = """
INSERT INTO ticket_events (company_id, ticket_id, kind, user_id, queue_id, whatsapp_id)
VALUES (%(company_id)s, %(ticket_id)s, %(kind)s, NULL, NULL, %(whatsapp_id)s)
"""

SHIPPING_SENDING = """
UPDATE campaign_shippings SET wid = %(wid)s, message_id = %(message_id)s, contact_id = %(contact_id)s,
                              message = %(message)s, updated_at = now()
WHERE id = %(id)s AND company_id = %(company_id)s
"""

SEND_DAY = """
INSERT INTO connection_send_days (company_id, whatsapp_id, day, sent) VALUES (%(company_id)s, %(whatsapp_id)s,
                                                                             %(day)s, %(count)s)
ON CONFLICT (whatsapp_id, day) DO UPDATE SET sent = connection_send_days.sent + EXCLUDED.sent
"""


def ticket_for(conn: psycopg.Connection[Row], company_id: int, contact_id: int, whatsapp_id: int) -> int:
    """The ticket a campaign message goes into: the contact's active one on the connection, else its last
    closed one, else a new closed one (in nobody's list — as the family keeps campaign sends out of the
    tickets — but in the contact's history; the contact's answer reopens it as any message does)."""
    params = {"company_id": company_id, "contact_id": contact_id, "whatsapp_id": whatsapp_id}
    found = conn.execute(ACTIVE_TICKET, params).fetchone() or conn.execute(CLOSED_TICKET, params).fetchone()
    if found is not None:
        return int(found["id"])
    row = conn.execute(TICKET_INSERT, params).fetchone()
    assert row is not None
    for kind in ("created", "closed"):
        conn.execute(EVENT_INSERT, {**params, "ticket_id": row["id"], "kind": kind})
    return int(row["id"])


def claim(conn: psycopg.Connection[Row], company_id: int, campaign_id: int,
          limit: int) -> tuple[Row | None, list[Row]]:
    """The campaign (held FOR SHARE) and up to `limit` of its queued shippings moved to `sending`; none when
    it is not running, or paused."""
    campaign = lock(conn, company_id, campaign_id, share=True)
    if campaign is None or campaign["status"] != "EM_ANDAMENTO" or campaign["paused_at"] is not None:
        return campaign, []
    rows = conn.execute(CLAIM, {"campaign_id": campaign_id, "company_id": company_id, "limit": limit}).fetchall()
    return campaign, sorted(rows, key=lambda row: row["id"])


def contact_for(conn: psycopg.Connection[Row], company_id: int, number: str, name: str) -> Row:
    row = conn.execute(CONTACT_UPSERT, {"company_id": company_id, "number": number, "name": name or number}
                       ).fetchone()
    assert row is not None
    return row


def mark_sending(conn: psycopg.Connection[Row], company_id: int, shipping_id: int, *, wid: str, message_id: int,
                 contact_id: int, message: str) -> None:
    conn.execute(SHIPPING_SENDING, {"id": shipping_id, "company_id": company_id, "wid": wid,
                                    "message_id": message_id, "contact_id": contact_id, "message": message})


# ── the batch's statements (actors/campaigns.py `_claim_work`): a claimed batch costs a few statements, not a few
# per contact ──

CONTACTS_UPSERT = """
INSERT INTO contacts (company_id, name, number)
SELECT %(company_id)s, n.name, n.number FROM unnest(%(numbers)s::text[], %(names)s::text[]) AS n(number, name)
ON CONFLICT (company_id, number) WHERE number <> '' DO UPDATE SET number = EXCLUDED.number
RETURNING id, name, number, email, lid, is_group, opted_out_at
"""

# as `ticket_for`: the contact's active ticket on the connection, else its last closed one
TICKETS_OF = """
SELECT DISTINCT ON (contact_id) contact_id, id FROM tickets
WHERE company_id = %(company_id)s AND whatsapp_id = %(whatsapp_id)s AND contact_id = ANY(%(contact_ids)s::bigint[])
  AND status IN ('pending', 'open', 'closed')
ORDER BY contact_id, (status IN ('pending', 'open')) DESC, id DESC
"""

TICKETS_INSERT = """
WITH made AS (
    INSERT INTO tickets (company_id, contact_id, whatsapp_id, status, is_group)
    SELECT %(company_id)s, c.id, %(whatsapp_id)s, 'closed', false FROM unnest(%(contact_ids)s::bigint[]) AS c(id)
    RETURNING id, contact_id
), events AS (
    INSERT INTO ticket_events (company_id, ticket_id, kind, user_id, queue_id, whatsapp_id)
    SELECT %(company_id)s, made.id, k.kind, NULL, NULL, %(whatsapp_id)s
    FROM made CROSS JOIN (VALUES (1, 'created'), (2, 'closed')) AS k(ord, kind)
    ORDER BY made.id, k.ord
)
SELECT id, contact_id FROM made
"""

CUSTOM_FIELDS_OF = """
SELECT contact_id, name, value FROM contact_custom_fields
WHERE company_id = %(company_id)s AND contact_id = ANY(%(contact_ids)s::bigint[])
"""

SENDS_INSERT = """
WITH made AS (
    INSERT INTO messages (company_id, whatsapp_id, ticket_id, contact_id, wid, from_me, body, media_type, media_url,
                          media_name, media_mimetype, ack, status, read, sent_by, sent_by_user_id)
    SELECT %(company_id)s, %(whatsapp_id)s, s.ticket_id, s.contact_id, s.wid, true, s.body, %(media_type)s,
           %(media_url)s, %(media_name)s, %(media_mimetype)s, 1, 'pending', true, 'campaign', NULL
    FROM unnest(%(ticket_ids)s::bigint[], %(contact_ids)s::bigint[], %(wids)s::text[], %(bodies)s::text[])
         WITH ORDINALITY AS s(ticket_id, contact_id, wid, body, ord)
    ORDER BY s.ord
    RETURNING *
), touched AS (
    UPDATE tickets t SET last_message = left(coalesce(nullif(made.body, ''), %(media_name)s, ''), 255),
                         last_message_at = now(), updated_at = now()
    FROM made WHERE t.id = made.ticket_id AND t.company_id = %(company_id)s
      AND (made.body <> '' OR %(media_name)s::text IS NOT NULL)
)
SELECT * FROM made
"""

SHIPPINGS_SENDING = """
UPDATE campaign_shippings s SET wid = v.wid, message_id = v.message_id, contact_id = v.contact_id,
                                message = v.message, updated_at = now()
FROM unnest(%(ids)s::bigint[], %(wids)s::text[], %(message_ids)s::bigint[], %(contact_ids)s::bigint[],
            %(messages)s::text[]) AS v(id, wid, message_id, contact_id, message)
WHERE s.id = v.id AND s.company_id = %(company_id)s
"""


def contacts_for(conn: psycopg.Connection[Row], company_id: int, people: list[tuple[str, str]]) -> dict[str, Row]:
    """The contacts of (number, name) pairs (distinct numbers), created when missing: number → contact."""
    if not people:
        return {}
    found = conn.execute(CONTACTS_UPSERT, {"company_id": company_id, "numbers": [number for number, _ in people],
                                           "names": [name or number for number, name in people]}).fetchall()
    return {row["number"]: row for row in found}


def tickets_for(conn: psycopg.Connection[Row], company_id: int, whatsapp_id: int,
                contact_ids: list[int]) -> dict[int, int]:
    """`ticket_for` for many contacts: contact id → the ticket its campaign message goes into."""
    if not contact_ids:
        return {}
    params = {"company_id": company_id, "whatsapp_id": whatsapp_id, "contact_ids": contact_ids}
    found = {row["contact_id"]: int(row["id"]) for row in conn.execute(TICKETS_OF, params).fetchall()}
    missing = [contact_id for contact_id in contact_ids if contact_id not in found]
    if missing:
        made = conn.execute(TICKETS_INSERT, {**params, "contact_ids": missing}).fetchall()
        found.update({row["contact_id"]: int(row["id"]) for row in made})
    return found


def custom_fields_of(conn: psycopg.Connection[Row], company_id: int,
                     contact_ids: list[int]) -> dict[int, dict[str, str]]:
    """Contact id → its custom fields (name → value), for the contacts that have some."""
    fields: dict[int, dict[str, str]] = {}
    if contact_ids:
        for row in conn.execute(CUSTOM_FIELDS_OF, {"company_id": company_id, "contact_ids": contact_ids}):
            fields.setdefault(row["contact_id"], {})[row["name"]] = row["value"]
    return fields


def insert_sends(conn: psycopg.Connection[Row], company_id: int, whatsapp_id: int,
                 sends: list[tuple[int, int, str, str]], media: tuple[str, str, str, str] | None) -> list[Row]:
    """The outbox rows of (ticket id, contact id, wid, body), pending, in that order (`routing.insert_send` for
    many: each ticket's last message set too); `media` as there."""
    if not sends:
        return []
    url, name, mimetype, kind = media if media else (None, None, None, "chat")
    return conn.execute(SENDS_INSERT, {
        "company_id": company_id, "whatsapp_id": whatsapp_id, "ticket_ids": [send[0] for send in sends],
        "contact_ids": [send[1] for send in sends], "wids": [send[2] for send in sends],
        "bodies": [send[3] for send in sends], "media_type": kind, "media_url": url, "media_name": name,
        "media_mimetype": mimetype}).fetchall()


def mark_sending_many(conn: psycopg.Connection[Row], company_id: int,
                      marks: list[tuple[int, str, int, int, str]]) -> None:
    """`mark_sending` for many: (shipping id, wid, message id, contact id, message)."""
    if marks:
        conn.execute(SHIPPINGS_SENDING, {
            "company_id": company_id, "ids": [mark[0] for mark in marks], "wids": [mark[1] for mark in marks],
            "message_ids": [mark[2] for mark in marks], "contact_ids": [mark[3] for mark in marks],
            "messages": [mark[4] for mark in marks]})


def skip_many(conn: psycopg.Connection[Row], company_id: int, shipping_ids: list[int], reason: str) -> None:
    if shipping_ids:
        conn.execute("UPDATE campaign_shippings SET state = 'skipped', error = %(error)s, updated_at = now() "
                     "WHERE id = ANY(%(ids)s::bigint[]) AND company_id = %(company_id)s",
                     {"ids": shipping_ids, "company_id": company_id, "error": reason[:500]})


# The batch after WhatsApp answered: one statement for the sends it took (as `outbox_sent`: a receipt that came
# first, 3 or more, stays) and one for those it refused (as `outbox_failed`).
SENT_MANY = """
UPDATE messages m SET wid = v.wid, status = 'sent', ack = greatest(m.ack, 2), wa_timestamp = v.at, error = NULL,
                      updated_at = now()
FROM unnest(%(ids)s::bigint[], %(wids)s::text[], %(ats)s::timestamptz[]) AS v(id, wid, at)
WHERE m.id = v.id AND m.company_id = %(company_id)s
RETURNING m.*
"""

FAILED_MANY = """
UPDATE messages m SET status = 'failed', ack = -1, error = v.error, updated_at = now()
FROM unnest(%(ids)s::bigint[], %(errors)s::text[]) AS v(id, error)
WHERE m.id = v.id AND m.company_id = %(company_id)s
RETURNING m.*
"""


def record_answers(conn: psycopg.Connection[Row], company_id: int, sent: list[tuple[int, str, dt.datetime]],
                   failed: list[tuple[int, str]]) -> list[Row]:
    """WhatsApp's answers for a batch of outbox rows: (id, its wid, when) taken, (id, reason) refused; the rows
    after."""
    changed: list[Row] = []
    if sent:
        changed += conn.execute(SENT_MANY, {"company_id": company_id, "ids": [one[0] for one in sent],
                                            "wids": [one[1] for one in sent], "ats": [one[2] for one in sent]}
                                ).fetchall()
    if failed:
        changed += conn.execute(FAILED_MANY, {"company_id": company_id, "ids": [one[0] for one in failed],
                                              "errors": [one[1][:500] for one in failed]}).fetchall()
    return changed


def still_pending(conn: psycopg.Connection[Row], company_id: int, message_ids: list[int]) -> set[int]:
    """Which of these outbox rows are still to send (a cancel fails those it finds pending)."""
    found = conn.execute("SELECT id FROM messages WHERE id = ANY(%(ids)s::bigint[]) AND company_id = %(company_id)s "
                         "AND status = 'pending'", {"ids": message_ids, "company_id": company_id}).fetchall()
    return {row["id"] for row in found}


SHOWN_MESSAGES = """
SELECT m.*, q.wid AS quoted_wid, q.body AS quoted_body, q.from_me AS quoted_from_me, q.media_type AS quoted_media_type,
       q.media_url AS quoted_media_url, q.media_name AS quoted_media_name, q.media_mimetype AS quoted_media_mimetype,
       q.latitude AS quoted_latitude, q.longitude AS quoted_longitude, q.participant AS quoted_participant,
       coalesce(q.wa_timestamp, q.created_at) AS quoted_at
FROM messages m LEFT JOIN messages q ON q.id = m.quoted_msg_id
WHERE m.id = ANY(%(ids)s::bigint[]) AND m.company_id = %(company_id)s
"""


def shown(conn: psycopg.Connection[Row], company_id: int, message_ids: list[int],
          ticket_ids: list[int]) -> tuple[dict[int, Row], dict[int, Row]]:
    """The messages as `message_show` shows them and their tickets as `ticket_show` does, by id: what the batch's
    announcements are made of, in two statements."""
    messages = {row["id"]: row for row in conn.execute(SHOWN_MESSAGES, {"ids": message_ids,
                                                                        "company_id": company_id})}
    tickets = {row["id"]: row for row in conn.execute(
        "SELECT * FROM tickets_shown WHERE id = ANY(%(ids)s::bigint[]) AND company_id = %(company_id)s",
        {"ids": ticket_ids, "company_id": company_id})}
    return messages, tickets


def retry_message(conn: psycopg.Connection[Row], company_id: int, message_id: int, body: str) -> Row | None:
    """A restarted shipping's failed outbox row, pending again (same id, same ticket); None when it is gone
    (or not failed)."""
    return conn.execute(
        "UPDATE messages SET status = 'pending', ack = 1, error = NULL, body = %(body)s, updated_at = now() "
        "WHERE id = %(id)s AND company_id = %(company_id)s AND status = 'failed' RETURNING *",
        {"id": message_id, "company_id": company_id, "body": body}).fetchone()


def skip(conn: psycopg.Connection[Row], company_id: int, shipping_id: int, reason: str) -> None:
    conn.execute("UPDATE campaign_shippings SET state = 'skipped', error = %(error)s, updated_at = now() "
                 "WHERE id = %(id)s AND company_id = %(company_id)s",
                 {"id": shipping_id, "company_id": company_id, "error": reason[:500]})


def count_send(conn: psycopg.Connection[Row], company_id: int, whatsapp_id: int, day: dt.date, count: int) -> None:
    if count:
        conn.execute(SEND_DAY, {"company_id": company_id, "whatsapp_id": whatsapp_id, "day": day, "count": count})


def send_day(conn: psycopg.Connection[Row], company_id: int, whatsapp_id: int, day: dt.date) -> tuple[int, int]:
    """(sends of the connection on `day`, which day of its sending `day` is: 1 for its first)."""
    row = conn.execute(
        "SELECT coalesce((SELECT sent FROM connection_send_days WHERE whatsapp_id = %(w)s AND day = %(day)s "
        "AND company_id = %(c)s), 0) AS sent, (SELECT min(day) FROM connection_send_days WHERE whatsapp_id = %(w)s "
        "AND company_id = %(c)s) AS first", {"w": whatsapp_id, "c": company_id, "day": day}).fetchone()
    assert row is not None
    first = row["first"] or day
    return int(row["sent"]), (day - first).days + 1


# WhatsApp's answer for the outbox rows, onto the shippings: sent once the row is (ack ≥ 2 after
# outbox_sent), failed with the reason when the send failed; a message deleted with its ticket: failed.
SETTLE = """
WITH done AS (
    SELECT s.id, m.status AS message_status, m.error AS message_error, m.wa_timestamp, m.id IS NULL AS gone
    FROM campaign_shippings s LEFT JOIN messages m ON m.id = s.message_id AND m.company_id = s.company_id
    WHERE s.campaign_id = %(campaign_id)s AND s.company_id = %(company_id)s AND s.state = 'sending'
      AND s.message_id IS NOT NULL AND (m.id IS NULL OR m.status IN ('sent', 'failed'))
    FOR UPDATE OF s
)
UPDATE campaign_shippings s
SET state = CASE WHEN d.message_status = 'sent' THEN 'sent' ELSE 'failed' END,
    sent_at = CASE WHEN d.message_status = 'sent' THEN coalesce(d.wa_timestamp, now()) END,
    error = CASE WHEN d.gone THEN 'the message was deleted'
                 WHEN d.message_status = 'failed' THEN left(coalesce(d.message_error, 'send failed'), 500) END,
    updated_at = now()
FROM done d WHERE s.id = d.id
RETURNING s.id, s.state, s.error
"""


def settle(conn: psycopg.Connection[Row], company_id: int, campaign_id: int) -> list[Row]:
    rows = conn.execute(SETTLE, {"campaign_id": campaign_id, "company_id": company_id}).fetchall()
    return sorted(rows, key=lambda row: row["id"])


def sending(conn: psycopg.Connection[Row], company_id: int, campaign_id: int) -> list[Row]:
    """Shippings claimed and not yet answered, with their ticket (to hand their sends over again)."""
    return conn.execute(
        "SELECT s.id, s.number, s.message_id, m.ticket_id, m.status AS message_status FROM campaign_shippings s "
        "JOIN messages m ON m.id = s.message_id AND m.company_id = s.company_id "
        "WHERE s.campaign_id = %(campaign_id)s AND s.company_id = %(company_id)s AND s.state = 'sending' "
        "ORDER BY s.id", {"campaign_id": campaign_id, "company_id": company_id}).fetchall()


def release_unwritten(conn: psycopg.Connection[Row], company_id: int, campaign_id: int) -> int:
    """Shippings left `sending` without an outbox row (cannot happen: both are one transaction; a guard)."""
    return conn.execute(
        "UPDATE campaign_shippings SET state = 'queued', updated_at = now() WHERE campaign_id = %(campaign_id)s "
        "AND company_id = %(company_id)s AND state = 'sending' AND message_id IS NULL",
        {"campaign_id": campaign_id, "company_id": company_id}).rowcount


COUNTS = """
SELECT count(*)::int AS total,
       count(*) FILTER (WHERE s.state = 'queued')::int AS queued,
       count(*) FILTER (WHERE s.state = 'sending')::int AS sending,
       count(*) FILTER (WHERE s.state = 'sent')::int AS sent,
       count(*) FILTER (WHERE s.state = 'failed')::int AS failed,
       count(*) FILTER (WHERE s.state = 'skipped')::int AS skipped,
       count(*) FILTER (WHERE m.ack >= 3)::int AS delivered,
       count(*) FILTER (WHERE m.ack >= 4)::int AS read
FROM campaign_shippings s LEFT JOIN messages m ON m.id = s.message_id AND m.company_id = s.company_id
WHERE s.campaign_id = %(campaign_id)s AND s.company_id = %(company_id)s
"""


def counts(conn: psycopg.Connection[Row], company_id: int, campaign_id: int) -> dict[str, int]:
    row = conn.execute(COUNTS, {"campaign_id": campaign_id, "company_id": company_id}).fetchone()
    return dict(row) if row else {}


def finish(conn: psycopg.Connection[Row], company_id: int, campaign_id: int, now: dt.datetime) -> Row | None:
    """FINALIZADA with `completed_at`, if it is running and no shipping is queued or sending; else None."""
    return conn.execute(
        "UPDATE campaigns c SET status = 'FINALIZADA', completed_at = %(now)s, paused_at = NULL, "
        "pause_reason = NULL, updated_at = now() WHERE c.id = %(id)s AND c.company_id = %(company_id)s "
        "AND c.status = 'EM_ANDAMENTO' AND NOT EXISTS (SELECT 1 FROM campaign_shippings s WHERE s.campaign_id = c.id "
        "AND s.state IN ('queued', 'sending')) RETURNING *",
        {"now": now, "id": campaign_id, "company_id": company_id}).fetchone()


def pause(conn: psycopg.Connection[Row], company_id: int, campaign_id: int, reason: str,
          now: dt.datetime) -> Row | None:
    """Pause a running campaign that is not paused yet (the row after), else None."""
    return conn.execute(
        "UPDATE campaigns SET paused_at = %(now)s, pause_reason = %(reason)s, updated_at = now() "
        "WHERE id = %(id)s AND company_id = %(company_id)s AND status = 'EM_ANDAMENTO' AND paused_at IS NULL "
        "RETURNING *", {"now": now, "reason": reason[:500], "id": campaign_id, "company_id": company_id}).fetchone()


def resume(conn: psycopg.Connection[Row], company_id: int, campaign_id: int,
           reason: str | None = None) -> Row | None:
    """Clear a pause (only one of `reason` when given); the row after, else None."""
    return conn.execute(
        "UPDATE campaigns SET paused_at = NULL, pause_reason = NULL, updated_at = now() "
        "WHERE id = %(id)s AND company_id = %(company_id)s AND paused_at IS NOT NULL "
        "AND (%(reason)s::text IS NULL OR pause_reason = %(reason)s) RETURNING *",
        {"id": campaign_id, "company_id": company_id, "reason": reason}).fetchone()


def cancel(conn: psycopg.Connection[Row], company_id: int, campaign_id: int) -> Row | None:
    """Cancel (for the API's `POST /campaigns/:id/cancel`): CANCELADA; the shippings not reached skipped
    ('cancelled'); those claimed whose outbox row is still pending failed with it ('cancelled'), so no send
    starts after this commits. Its timers go. The row after, or None when it is not cancellable."""
    row = conn.execute(
        "UPDATE campaigns SET status = 'CANCELADA', updated_at = now() WHERE id = %(id)s "
        "AND company_id = %(company_id)s AND status IN ('INATIVA', 'PROGRAMADA', 'EM_ANDAMENTO') RETURNING *",
        {"id": campaign_id, "company_id": company_id}).fetchone()
    if row is None:
        return None
    stop_sending(conn, company_id, campaign_id)
    return row


def stop_sending(conn: psycopg.Connection[Row], company_id: int, campaign_id: int) -> None:
    """A cancel's effects beside its status (in its transaction): the shippings not reached skipped
    ('cancelled'), those claimed whose outbox row is still pending failed with it, its timers gone."""
    params = {"campaign_id": campaign_id, "company_id": company_id}
    conn.execute("UPDATE messages m SET status = 'failed', ack = -1, error = 'campaign cancelled', updated_at = now() "
                 "FROM campaign_shippings s WHERE s.campaign_id = %(campaign_id)s AND s.company_id = %(company_id)s "
                 "AND s.state = 'sending' AND m.id = s.message_id AND m.company_id = s.company_id "
                 "AND m.status = 'pending'", params)
    conn.execute("UPDATE campaign_shippings SET state = 'skipped', error = 'cancelled', updated_at = now() "
                 "WHERE campaign_id = %(campaign_id)s AND company_id = %(company_id)s AND state = 'queued'", params)
    conn.execute("DELETE FROM timers WHERE company_id = %(company_id)s AND key = %(key)s "
                 "AND kind IN ('campaign.start', 'campaign.resume') AND state IN ('pending', 'claimed')",
                 {**params, "key": key(campaign_id)})


def requeue_unreached(conn: psycopg.Connection[Row], company_id: int, campaign_id: int) -> int:
    """The contacts a restart sends to: failed sends and those a cancel skipped, queued again (how many)."""
    params = {"campaign_id": campaign_id, "company_id": company_id}
    return conn.execute("UPDATE campaign_shippings SET state = 'queued', error = NULL, updated_at = now() "
                        "WHERE campaign_id = %(campaign_id)s AND company_id = %(company_id)s "
                        "AND (state = 'failed' OR (state = 'skipped' AND error = 'cancelled'))", params).rowcount


def restart(conn: psycopg.Connection[Row], company_id: int, campaign_id: int) -> Row | None:
    """Restart (for the API's `POST /campaigns/:id/restart`): only the contacts not reached — failed sends and
    those a cancel skipped — queued again; EM_ANDAMENTO, unpaused. Opted-out and sent ones stay."""
    params = {"campaign_id": campaign_id, "company_id": company_id}
    requeue_unreached(conn, company_id, campaign_id)
    return conn.execute(
        "UPDATE campaigns SET status = 'EM_ANDAMENTO', paused_at = NULL, pause_reason = NULL, completed_at = NULL, "
        "updated_at = now() WHERE id = %(campaign_id)s AND company_id = %(company_id)s "
        "AND status IN ('EM_ANDAMENTO', 'CANCELADA', 'FINALIZADA') RETURNING *", params).fetchone()


def connection_of(conn: psycopg.Connection[Row], company_id: int, whatsapp_id: int | None) -> Row | None:
    if whatsapp_id is None:
        return None
    return conn.execute("SELECT id, name FROM whatsapps WHERE id = %(id)s AND company_id = %(company_id)s",
                        {"id": whatsapp_id, "company_id": company_id}).fetchone()


def zone_and_hours(conn: psycopg.Connection[Row], company_id: int) -> tuple[str | None, Any]:
    row = conn.execute(
        "SELECT (SELECT value FROM settings WHERE company_id = %(c)s AND key = 'timezone') AS timezone, "
        "(SELECT schedules FROM companies WHERE id = %(c)s) AS hours", {"c": company_id}).fetchone()
    return (row["timezone"], row["hours"]) if row else (None, [])


def payload_of(campaign_id: int) -> dict[str, Any]:
    return {"campaign_id": campaign_id}
