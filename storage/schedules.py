"""Scheduled messages (`/schedules`; schema version 18, `schedules`): rows, and their durable timers.

A schedule's wait is a timer of kind `schedule`, key `schedule:<id>` (storage/timers.py): created, moved or
cancelled in the same transaction as the row's change, so a row that says AGENDADA always has its timer and
a deleted schedule never fires. The send itself (actors/schedules.py) completes the timer, writes the outbox
row and the schedule's new state in one transaction, with the functions at the end of this module.

Every statement is scoped by company; a contact, connection or schedule of another company is NotFound.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import attrs
import psycopg

from storage import timers
from storage.db import Database, Row
from storage.errors import NotFound, StorageError
from storage.sql import load_queries

Q = load_queries(Path(__file__).with_name("schedules.sql"))

KIND = "schedule"  # the timers' kind
MAX_ACTIVE = 10_000  # schedules waiting (PENDENTE or AGENDADA) per company


class TooManySchedules(StorageError):
    """The company has MAX_ACTIVE schedules waiting already."""


@attrs.frozen
class Armed:
    row: Row
    due_at: dt.datetime | None  # the timer set (nudge the scheduler after the commit), None: none set


@attrs.frozen
class MediaChanged:
    row: Row
    replaced: str | None  # the file it had before, to remove once committed


def key(schedule_id: int) -> str:
    return f"schedule:{schedule_id}"


def arm(conn: psycopg.Connection[Row], row: Row, send_at: dt.datetime, nominal_at: dt.datetime) -> Row:
    """Set (or move) the schedule's timer for `send_at` and mark it AGENDADA."""
    timers.schedule(conn, company_id=row["company_id"], kind=KIND, key=key(row["id"]), due_at=send_at,
                    payload={"schedule_id": row["id"]})
    armed = conn.execute(Q.schedule_armed, {"id": row["id"], "company_id": row["company_id"], "send_at": send_at,
                                            "nominal_at": nominal_at}).fetchone()
    assert armed is not None
    return armed


def disarm(conn: psycopg.Connection[Row], company_id: int, schedule_id: int) -> None:
    timers.cancel(conn, company_id=company_id, kind=KIND, key=key(schedule_id))


# ─── the API's side ─────────────────────────────────────────────────────────────────────

async def list_schedules(db: Database, company_id: int, *, contact_id: int | None, user_id: int | None,
                         search: str | None, limit: int, offset: int) -> tuple[list[Row], int]:
    params = {"company_id": company_id, "contact_id": contact_id, "user_id": user_id, "search": search,
              "limit": limit, "offset": offset}
    rows = await db.fetch_all(Q.schedule_page, params)
    if rows:
        return rows, rows[0]["total"]
    return rows, (await db.fetch_value(Q.schedule_count, params) if offset else 0)


async def show_schedule(db: Database, company_id: int, schedule_id: int) -> Row:
    row = await db.fetch_one(Q.schedule_show, {"id": schedule_id, "company_id": company_id})
    if row is None:
        raise NotFound(f"schedule {schedule_id}")
    return row


async def calendar(db: Database, company_id: int) -> tuple[str | None, Any]:
    """The company's zone (setting `timezone`, None when unset) and business hours, as stored."""
    row = await db.fetch_one(Q.schedule_calendar, {"company_id": company_id})
    return (row["timezone"], row["hours"]) if row else (None, [])


def _check_targets(conn: psycopg.Connection[Row], company_id: int, contact_id: int | None,
                   whatsapp_id: int | None) -> None:
    if contact_id is not None and conn.execute(Q.schedule_contact, {"id": contact_id, "company_id": company_id}
                                               ).fetchone() is None:
        raise NotFound(f"contact {contact_id}")
    if whatsapp_id is not None and conn.execute(Q.schedule_whatsapp, {"id": whatsapp_id, "company_id": company_id}
                                                ).fetchone() is None:
        raise NotFound(f"whatsapp {whatsapp_id}")


def default_whatsapp(conn: psycopg.Connection[Row], company_id: int, contact_id: int) -> int | None:
    """The company's default connection, else the contact's last ticket's, else the oldest; None: none."""
    row = conn.execute(Q.schedule_default_whatsapp, {"company_id": company_id, "contact_id": contact_id}).fetchone()
    return None if row is None else row["id"]


async def create_schedule(db: Database, company_id: int, fields: dict[str, Any], send_at: dt.datetime,
                          nominal_at: dt.datetime) -> Armed:
    """Insert the schedule and set its timer, in one transaction. `fields` are columns (contact_id, user_id,
    whatsapp_id, body, …, anchor_at); a missing whatsapp_id is resolved (default_whatsapp) and stored. NotFound
    for a contact or connection of another company; TooManySchedules past MAX_ACTIVE."""

    def work(conn: psycopg.Connection[Row]) -> Armed:
        _check_targets(conn, company_id, fields["contact_id"], fields.get("whatsapp_id"))
        active = conn.execute(Q.schedule_active_count, {"company_id": company_id}).fetchone()
        if active is not None and active["active"] >= MAX_ACTIVE:
            raise TooManySchedules(f"a company has at most {MAX_ACTIVE} schedules waiting")
        whatsapp_id = fields.get("whatsapp_id") or default_whatsapp(conn, company_id, fields["contact_id"])
        row = conn.execute(Q.schedule_insert, {
            "company_id": company_id, "whatsapp_id": whatsapp_id, "send_at": send_at, "nominal_at": nominal_at,
            "media_path": None, "media_name": None, **{k: v for k, v in fields.items() if k != "whatsapp_id"}}
        ).fetchone()
        assert row is not None
        return Armed(arm(conn, row, send_at, nominal_at), send_at)

    return await db.run(work)


async def update_schedule(db: Database, company_id: int, schedule_id: int, fields: dict[str, Any],
                          rearm: tuple[dt.datetime, dt.datetime] | None, restart: bool) -> Armed:
    """Change the given columns; `rearm` (send_at, nominal_at) moves the timer there and makes it AGENDADA
    (`restart`: the series starts over: no sends counted). NotFound for another company's ids."""

    def work(conn: psycopg.Connection[Row]) -> Armed:
        existing = conn.execute(Q.schedule_lock, {"id": schedule_id, "company_id": company_id}).fetchone()
        if existing is None:
            raise NotFound(f"schedule {schedule_id}")
        _check_targets(conn, company_id, fields.get("contact_id"), fields.get("whatsapp_id"))
        changes = dict(fields)
        if restart:
            changes.update({"sent_count": 0, "sent_at": None})
        row = existing
        if changes:
            assignments = ", ".join(f"{name} = %({name})s" for name in changes)  # names: the API's columns
            row = conn.execute(f"UPDATE schedules SET {assignments}, updated_at = now() "
                               "WHERE id = %(_id)s AND company_id = %(_company_id)s RETURNING *",
                               {**changes, "_id": schedule_id, "_company_id": company_id}).fetchone()
        if rearm is None:
            return Armed(row, None)
        return Armed(arm(conn, row, *rearm), rearm[0])

    return await db.run(work)


async def delete_schedule(db: Database, company_id: int, schedule_id: int) -> Row:
    """Delete the schedule and its timer; the row it was (its media to remove once committed)."""

    def work(conn: psycopg.Connection[Row]) -> Row:
        row = conn.execute(Q.schedule_delete, {"id": schedule_id, "company_id": company_id}).fetchone()
        if row is None:
            raise NotFound(f"schedule {schedule_id}")
        disarm(conn, company_id, schedule_id)
        return row

    return await db.run(work)


async def set_media(db: Database, company_id: int, schedule_id: int, url: str | None, name: str | None
                    ) -> MediaChanged:
    row = await db.fetch_one(Q.schedule_set_media, {"id": schedule_id, "company_id": company_id,
                                                    "media_path": url, "media_name": name})
    if row is None:
        raise NotFound(f"schedule {schedule_id}")
    replaced = row.pop("replaced")
    return MediaChanged(row, replaced if replaced and replaced != url else None)


# ─── the sender's side (inside its transaction) ─────────────────────────────────────────

def lock(conn: psycopg.Connection[Row], company_id: int, schedule_id: int) -> Row | None:
    return conn.execute(Q.schedule_lock, {"id": schedule_id, "company_id": company_id}).fetchone()


def contact(conn: psycopg.Connection[Row], company_id: int, contact_id: int) -> Row | None:
    return conn.execute(Q.schedule_contact, {"id": contact_id, "company_id": company_id}).fetchone()


def connection(conn: psycopg.Connection[Row], company_id: int, whatsapp_id: int) -> Row | None:
    return conn.execute(Q.schedule_whatsapp, {"id": whatsapp_id, "company_id": company_id}).fetchone()


def user_name(conn: psycopg.Connection[Row], company_id: int, user_id: int | None) -> str:
    if user_id is None:
        return ""
    row = conn.execute(Q.schedule_user_name, {"id": user_id, "company_id": company_id}).fetchone()
    return row["name"] if row else ""


def calendar_in(conn: psycopg.Connection[Row], company_id: int) -> tuple[str | None, Any]:
    row = conn.execute(Q.schedule_calendar, {"company_id": company_id}).fetchone()
    return (row["timezone"], row["hours"]) if row else (None, [])


def ticket_for(conn: psycopg.Connection[Row], schedule: Row, contact_row: Row, whatsapp_id: int) -> int:
    """The ticket the message goes into: the contact's active one on the connection; else a new one, open for
    the schedule's user (openTicket), pending (saveMessage: as the family's echo of a saved message makes
    one), or closed (neither: in nobody's list, but the send is in the contact's history)."""
    params = {"company_id": schedule["company_id"], "contact_id": schedule["contact_id"], "whatsapp_id": whatsapp_id}
    found = conn.execute(Q.schedule_active_ticket, params).fetchone()
    if found is not None:
        return int(found["id"])
    status = "open" if schedule["open_ticket"] and schedule["user_id"] is not None else \
        "pending" if schedule["save_message"] or schedule["open_ticket"] else "closed"
    row = conn.execute(Q.schedule_ticket_insert, {**params, "status": status, "is_group": contact_row["is_group"],
                                                  "user_id": schedule["user_id"] if status == "open" else None}
                       ).fetchone()
    assert row is not None
    if row["inserted"]:
        kinds = ("created", "accepted") if status == "open" else ("created", "closed") if status == "closed" \
            else ("created",)
        for kind in kinds:
            conn.execute(Q.schedule_ticket_event, {"company_id": row["company_id"], "ticket_id": row["id"],
                                                   "kind": kind, "user_id": row["user_id"],
                                                   "queue_id": row["queue_id"], "whatsapp_id": row["whatsapp_id"]})
    return int(row["id"])


def mark_sent(conn: psycopg.Connection[Row], schedule: Row, *, ticket_id: int, whatsapp_id: int, sent_at: dt.datetime,
              send_at: dt.datetime, nominal_at: dt.datetime) -> Row:
    row = conn.execute(Q.schedule_sent, {"id": schedule["id"], "company_id": schedule["company_id"],
                                         "ticket_id": ticket_id, "whatsapp_id": whatsapp_id, "sent_at": sent_at,
                                         "send_at": send_at, "nominal_at": nominal_at}).fetchone()
    assert row is not None
    return row


def mark_failed(conn: psycopg.Connection[Row], company_id: int, schedule_id: int, error: str) -> Row | None:
    return conn.execute(Q.schedule_failed, {"id": schedule_id, "company_id": company_id,
                                            "error": error[:1000]}).fetchone()


async def rearmed(db: Database, company_id: int, schedule_id: int, send_at: dt.datetime) -> bool:
    """A recurring schedule announced ENVIADA: AGENDADA again for its next occurrence (if still so)."""
    row = await db.fetch_one(Q.schedule_rearmed, {"id": schedule_id, "company_id": company_id, "send_at": send_at})
    return row is not None
