"""Campaigns of a company: their rows and status changes, their settings, their reports (issue 14).

The API writes a campaign and its status; the campaign core (actors/campaigns.py) runs it from these rows
and creates its shippings when it starts. Status changes here happen in one statement under the row's lock,
so one that races the core's own (a scheduled start, the end of a run) is seen whole by both:

- create: INATIVA, or PROGRAMADA when `scheduled_at` is given (ticketz's CreateService);
- update: only an INATIVA or PROGRAMADA campaign (status follows `scheduled_at`);
- delete: not while EM_ANDAMENTO (ticketz's rule);
- cancel: → CANCELADA (from INATIVA, PROGRAMADA, EM_ANDAMENTO; a cancelled one stays so);
- restart: → EM_ANDAMENTO (pause cleared), its failed shippings queued again: only the contacts not reached
  are sent. From INATIVA or PROGRAMADA it is "start now" (ticketz has no other);
- pause/resume: `paused_at`/`pause_reason` set/cleared on an EM_ANDAMENTO campaign (the status stays).

Settings are the family's key/value rows; each value is stored as JSON text, as ticketz's screen parses it.
Every statement is scoped by company.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import psycopg

from storage import campaign_runs
from storage.db import Database, Row
from storage.errors import NotFound
from storage.sql import load_queries

Q = load_queries(Path(__file__).with_name("campaigns.sql"))

MAX_ALL = 5_000  # GET /campaigns/list answers at most this many
STATUSES = ("INATIVA", "PROGRAMADA", "EM_ANDAMENTO", "CANCELADA", "FINALIZADA")
EDITABLE = ("INATIVA", "PROGRAMADA")
CANCELLABLE = ("INATIVA", "PROGRAMADA", "EM_ANDAMENTO")
SHIPPING_STATES = ("queued", "sending", "sent", "failed", "skipped")
SHIPPING_FILTERS = (*SHIPPING_STATES, "delivered", "read", "replied", "confirmed", "optedOut")
# The columns a create or an update may write (the API's names mapped in api/campaigns.py).
FIELDS = frozenset({"name", "whatsapp_id", "contact_list_id", "tag_id", "scheduled_at", "confirmation",
                    "media_path", "media_name",
                    *(f"message{n}" for n in range(1, 6)), *(f"confirmation_message{n}" for n in range(1, 6))})

# The settings and their defaults (shown by GET /campaign-settings until saved; the core reads `settings_in`).
SETTING_DEFAULTS: dict[str, Any] = {
    "messageInterval": 20,  # seconds: the random pause between two sends is up to this (ticketz's)
    "longerIntervalAfter": 20,  # sends: after this many, the longer pause (ticketz's)
    "greaterInterval": 60,  # seconds: the longer pause (ticketz's)
    "variables": [],  # [{key, value}]: {key} in a message becomes value (ticketz's)
    "dailyLimit": 1000,  # sends per connection per day (0: no cap)
    "warmupDays": 0,  # days a new number ramps up (0: no ramp)
    "warmupStart": 50,  # sends on a new number's first day, doubling each day up to dailyLimit
    "businessHoursOnly": False,  # send only while the company's business hours are open
    "breakerFailures": 10,  # consecutive send failures that pause the campaign
    "pacing": "on",  # "off": no intervals, cap or ramp (benchmarks, trusted numbers)
    "stopWords": "SAIR,PARAR,STOP",  # comma-separated: a contact answering one is opted out
    "optOutReply": "Você não receberá mais mensagens desta campanha.",  # answered once to an opt-out ("": none)
}


class NotEditable(Exception):
    """The campaign's status does not allow the change (the API answers 400)."""

    def __init__(self, message: str, status: str) -> None:
        super().__init__(message)
        self.status = status


# ─── reads ──────────────────────────────────────────────────────────────────────────────

async def list_campaigns(db: Database, company_id: int, *, search: str | None, limit: int,
                         offset: int) -> tuple[list[Row], int]:
    params = {"company_id": company_id, "search": search, "limit": limit, "offset": offset}
    rows = await db.fetch_all(Q.campaign_page, params)
    if rows:
        return rows, rows[0]["total"]
    return rows, (await db.fetch_value(Q.campaign_count, params) if offset else 0)


async def all_campaigns(db: Database, company_id: int) -> list[Row]:
    return await db.fetch_all(Q.campaign_all, {"company_id": company_id, "limit": MAX_ALL})


def show_in(conn: psycopg.Connection[Row], company_id: int, campaign_id: int) -> Row:
    """The campaign with its names and ticketz's report counts (`valids`, `delivered`,
    `confirmation_requested`, `confirmed`; and `shippings`, `sent`, `skipped`). For the core's events too."""
    row = conn.execute(Q.campaign_show, {"id": campaign_id, "company_id": company_id}).fetchone()
    if row is None:
        raise NotFound(f"campaign {campaign_id}")
    return row


async def show(db: Database, company_id: int, campaign_id: int) -> Row:
    return await db.read(lambda conn: show_in(conn, company_id, campaign_id))


async def references(db: Database, company_id: int, *, whatsapp_id: int | None, contact_list_id: int | None,
                     tag_id: int | None) -> str | None:
    """The first of the given ids that is not the company's ("whatsappId", …), or None."""

    def read(conn: psycopg.Connection[Row]) -> str | None:
        for name, query, value in (("whatsappId", Q.owns_whatsapp, whatsapp_id),
                                   ("contactListId", Q.owns_list, contact_list_id), ("tagId", Q.owns_tag, tag_id)):
            if value is not None and conn.execute(query, {"id": value, "company_id": company_id}).fetchone() is None:
                return name
        return None

    return await db.read(read)


# ─── writes ─────────────────────────────────────────────────────────────────────────────

def _check(fields: Mapping[str, Any]) -> None:
    unknown = set(fields) - FIELDS
    if unknown:
        raise ValueError(f"not a campaign field: {', '.join(sorted(unknown))}")


async def create(db: Database, company_id: int, fields: Mapping[str, Any], *, user_id: int | None) -> Row:
    _check(fields)
    columns = {**fields, "company_id": company_id, "created_by": user_id,
               "status": "PROGRAMADA" if fields.get("scheduled_at") is not None else "INATIVA"}
    names = ", ".join(columns)
    values = ", ".join(f"%({name})s" for name in columns)

    def work(conn: psycopg.Connection[Row]) -> Row:
        created = conn.execute(f"INSERT INTO campaigns ({names}) VALUES ({values}) RETURNING id", columns).fetchone()
        assert created is not None
        return show_in(conn, company_id, created["id"])

    return await db.run(work)


def _locked(conn: psycopg.Connection[Row], company_id: int, campaign_id: int) -> Row:
    row = conn.execute(Q.campaign_lock, {"id": campaign_id, "company_id": company_id}).fetchone()
    if row is None:
        raise NotFound(f"campaign {campaign_id}")
    return row


def _set(conn: psycopg.Connection[Row], company_id: int, campaign_id: int, fields: Mapping[str, Any]) -> None:
    assignments = ", ".join(f"{name} = %({name})s" for name in fields)
    conn.execute(f"UPDATE campaigns SET {assignments}, updated_at = now() "
                 "WHERE id = %(id)s AND company_id = %(company_id)s",
                 {**fields, "id": campaign_id, "company_id": company_id})


async def update(db: Database, company_id: int, campaign_id: int, fields: Mapping[str, Any]) -> Row:
    """Change an INATIVA or PROGRAMADA campaign (NotEditable otherwise); its status follows `scheduled_at`."""
    _check(fields)

    def work(conn: psycopg.Connection[Row]) -> Row:
        row = _locked(conn, company_id, campaign_id)
        if row["status"] not in EDITABLE:
            raise NotEditable("only an INATIVA or PROGRAMADA campaign can be changed", row["status"])
        merged = {**row, **fields}
        changes = {**fields, "status": "PROGRAMADA" if merged["scheduled_at"] is not None else "INATIVA"}
        _set(conn, company_id, campaign_id, changes)
        return show_in(conn, company_id, campaign_id)

    return await db.run(work)


async def delete(db: Database, company_id: int, campaign_id: int) -> str | None:
    """Delete the campaign and its shippings (not while EM_ANDAMENTO); its file's path, for removal."""

    def work(conn: psycopg.Connection[Row]) -> str | None:
        row = _locked(conn, company_id, campaign_id)
        if row["status"] == "EM_ANDAMENTO":
            raise NotEditable("a campaign in progress cannot be deleted: cancel it first", row["status"])
        deleted = conn.execute(Q.campaign_delete, {"id": campaign_id, "company_id": company_id}).fetchone()
        assert deleted is not None
        return deleted["media_path"]

    return await db.run(work)


async def cancel(db: Database, company_id: int, campaign_id: int, *, now: dt.datetime) -> Row:
    """→ CANCELADA. The core claims a shipping only while the campaign is EM_ANDAMENTO, under this row's lock:
    once this commits, no further send is claimed."""

    def work(conn: psycopg.Connection[Row]) -> Row:
        row = _locked(conn, company_id, campaign_id)
        if row["status"] == "FINALIZADA":
            raise NotEditable("the campaign is finished already", row["status"])
        if row["status"] in CANCELLABLE:
            _set(conn, company_id, campaign_id, {"status": "CANCELADA", "paused_at": None, "pause_reason": None})
            campaign_runs.stop_sending(conn, company_id, campaign_id)  # pending sends failed, timers gone
        return show_in(conn, company_id, campaign_id)

    return await db.run(work)


async def restart(db: Database, company_id: int, campaign_id: int, *, now: dt.datetime) -> tuple[Row, int]:
    """→ EM_ANDAMENTO with its failed shippings queued again (the row and how many were requeued). A campaign
    with no connection, audience or message cannot start (NotEditable)."""

    def work(conn: psycopg.Connection[Row]) -> tuple[Row, int]:
        row = _locked(conn, company_id, campaign_id)
        missing = ("whatsappId" if row["whatsapp_id"] is None
                   else "contactListId" if row["contact_list_id"] is None and row["tag_id"] is None
                   else "message1" if not any(row[f"message{n}"] for n in range(1, 6)) else None)
        if missing is not None:
            raise NotEditable(f"the campaign cannot start without {missing}", row["status"])
        requeued = campaign_runs.requeue_unreached(conn, company_id, campaign_id)
        _set(conn, company_id, campaign_id, {"status": "EM_ANDAMENTO", "paused_at": None, "pause_reason": None,
                                             "completed_at": None, "started_at": row["started_at"] or now})
        return show_in(conn, company_id, campaign_id), requeued

    return await db.run(work)


async def pause(db: Database, company_id: int, campaign_id: int, *, now: dt.datetime, reason: str) -> Row:
    """Pause an EM_ANDAMENTO campaign (a paused one keeps its first pause)."""

    def work(conn: psycopg.Connection[Row]) -> Row:
        row = _locked(conn, company_id, campaign_id)
        if row["status"] != "EM_ANDAMENTO":
            raise NotEditable("only a campaign in progress can be paused", row["status"])
        if row["paused_at"] is None:
            _set(conn, company_id, campaign_id, {"paused_at": now, "pause_reason": reason[:500]})
        return show_in(conn, company_id, campaign_id)

    return await db.run(work)


async def resume(db: Database, company_id: int, campaign_id: int) -> Row:
    def work(conn: psycopg.Connection[Row]) -> Row:
        row = _locked(conn, company_id, campaign_id)
        if row["status"] != "EM_ANDAMENTO":
            raise NotEditable("only a campaign in progress can be resumed", row["status"])
        if row["paused_at"] is not None:
            _set(conn, company_id, campaign_id, {"paused_at": None, "pause_reason": None})
        return show_in(conn, company_id, campaign_id)

    return await db.run(work)


@attrs.frozen
class MediaChanged:
    campaign_id: int
    replaced: str | None


async def set_media(db: Database, company_id: int, campaign_id: int, media_path: str | None,
                    media_name: str | None) -> MediaChanged:
    row = await db.fetch_one(Q.set_media, {"id": campaign_id, "company_id": company_id, "media_path": media_path,
                                           "media_name": media_name})
    if row is None:
        raise NotFound(f"campaign {campaign_id}")
    return MediaChanged(campaign_id=row["id"], replaced=row["replaced_media_path"])


# ─── reports ────────────────────────────────────────────────────────────────────────────

async def report(db: Database, company_id: int, campaign_id: int) -> tuple[Row, list[Row]]:
    """(counts, failures grouped by reason) of the campaign's shippings (NotFound for another company's)."""

    def read(conn: psycopg.Connection[Row]) -> tuple[Row, list[Row]]:
        _exists(conn, company_id, campaign_id)
        params = {"id": campaign_id, "company_id": company_id}
        counts = conn.execute(Q.report, params).fetchone()
        assert counts is not None
        return counts, conn.execute(Q.report_failures, params).fetchall()

    return await db.read(read)


def _exists(conn: psycopg.Connection[Row], company_id: int, campaign_id: int) -> None:
    if conn.execute("SELECT 1 FROM campaigns WHERE id = %(id)s AND company_id = %(company_id)s",
                    {"id": campaign_id, "company_id": company_id}).fetchone() is None:
        raise NotFound(f"campaign {campaign_id}")


def shippings_in(conn: psycopg.Connection[Row], company_id: int, campaign_id: int, *, state: str | None,
                 after: int = 0, limit: int, offset: int = 0) -> list[Row]:
    return conn.execute(Q.shipping_page, {"id": campaign_id, "company_id": company_id, "state": state,
                                          "after": after, "limit": limit, "offset": offset}).fetchall()


async def shippings(db: Database, company_id: int, campaign_id: int, *, state: str | None, limit: int,
                    offset: int) -> tuple[list[Row], int]:
    def read(conn: psycopg.Connection[Row]) -> tuple[list[Row], int]:
        _exists(conn, company_id, campaign_id)
        rows = shippings_in(conn, company_id, campaign_id, state=state, limit=limit, offset=offset)
        if rows or not offset:
            return rows, rows[0]["total"] if rows else 0
        return rows, len(shippings_in(conn, company_id, campaign_id, state=state, limit=10**9))

    return await db.read(read)


async def check_exists(db: Database, company_id: int, campaign_id: int) -> None:
    await db.read(lambda conn: _exists(conn, company_id, campaign_id))


# ─── settings ───────────────────────────────────────────────────────────────────────────

def settings_in(conn: psycopg.Connection[Row], company_id: int) -> dict[str, Any]:
    """The company's campaign settings, decoded, over their defaults (a value that is not JSON: as text)."""
    values = dict(SETTING_DEFAULTS)
    for row in conn.execute(Q.settings_all, {"company_id": company_id}).fetchall():
        try:
            values[row["key"]] = json.loads(row["value"])
        except ValueError:
            values[row["key"]] = row["value"]
    return values


async def settings_rows(db: Database, company_id: int) -> list[Row]:
    return await db.fetch_all(Q.settings_all, {"company_id": company_id})


async def save_settings(db: Database, company_id: int, values: Mapping[str, Any]) -> list[Row]:
    """Store each key's value as JSON text (one transaction); every row of the company after."""

    def work(conn: psycopg.Connection[Row]) -> list[Row]:
        for key, value in values.items():
            conn.execute(Q.setting_upsert, {"company_id": company_id, "key": key,
                                            "value": json.dumps(value, ensure_ascii=False)})
        return conn.execute(Q.settings_all, {"company_id": company_id}).fetchall()

    return await db.run(work)


# ─── replies (actors/campaign_replies.py, in the ticket actor's transaction) ────────────

def has_campaigns(conn: psycopg.Connection[Row], company_id: int) -> bool:
    row = conn.execute(Q.has_campaigns, {"company_id": company_id}).fetchone()
    return bool(row and row["yes"])


def reply_shippings(conn: psycopg.Connection[Row], company_id: int, contact_id: int, number: str,
                    since: dt.datetime) -> list[Row]:
    return conn.execute(Q.reply_shippings, {"company_id": company_id, "contact_id": contact_id, "number": number,
                                            "since": since}).fetchall()


def mark_replied(conn: psycopg.Connection[Row], company_id: int, ids: list[int], at: dt.datetime) -> int:
    if not ids:
        return 0
    return conn.execute(Q.mark_replied, {"company_id": company_id, "ids": ids, "at": at}).rowcount


def mark_confirmed(conn: psycopg.Connection[Row], company_id: int, shipping_id: int, at: dt.datetime) -> bool:
    return conn.execute(Q.mark_confirmed, {"company_id": company_id, "id": shipping_id, "at": at}).fetchone() \
        is not None


def opt_out(conn: psycopg.Connection[Row], company_id: int, *, contact_id: int, number: str, reason: str,
            at: dt.datetime) -> bool:
    """Opt the number out (contact flagged, queued shippings skipped); True the first time only."""
    first = conn.execute(Q.opt_out_insert, {"company_id": company_id, "number": number,
                                            "reason": reason[:255]}).fetchone() is not None
    conn.execute(Q.contact_opt_out, {"company_id": company_id, "contact_id": contact_id, "number": number, "at": at})
    conn.execute(Q.skip_opted_out, {"company_id": company_id, "number": number})
    return first


async def in_flight_messages(db: Database, company_id: int, campaign_id: int) -> set[int]:
    """The outbox rows of the campaign's shippings that were being sent (state 'sending'): what a cancel
    waits for before it answers."""
    rows = await db.fetch_all("SELECT message_id FROM campaign_shippings WHERE campaign_id = %(id)s "
                              "AND company_id = %(company_id)s AND state = 'sending' AND message_id IS NOT NULL",
                              {"id": campaign_id, "company_id": company_id})
    return {row["message_id"] for row in rows}
