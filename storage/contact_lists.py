"""Contact lists of a company (`/contact-lists`) and their items (`/contact-list-items`).

A list is the company's: every statement is scoped by company, and an item holds its company in the foreign
key to its list, so no id can put an item into another company's list. An item's number is unique within
its list (E.164 digits, as contacts'); `is_whatsapp_valid` is null until the number check has answered
(actors/number_check.py), and null again when the number changes.

Imports (storage/imports.py) write through `ItemsTarget`; the number check reads `unchecked` and writes
`set_valid`; exports read `export_slice` (keyset slices, each its own short statement).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import attrs
import psycopg

from storage import timers
from storage.db import Database, Row
from storage.errors import Conflict, NotFound
from storage.imports import ImportRow
from storage.sql import load_queries

Q = load_queries(Path(__file__).with_name("contact_lists.sql"))

MAX_ALL = 5_000  # GET /contact-lists/list and /contact-list-items/list answer at most this many
CHECK_KIND = "contact_list_check"  # the durable timer of a list's number check (actors/number_check.py)


def check_key(list_id: int) -> str:
    return f"contact-list:{list_id}"


# ─── lists ──────────────────────────────────────────────────────────────────────────────

async def list_lists(db: Database, company_id: int, *, search: str | None, limit: int,
                     offset: int) -> tuple[list[Row], int]:
    """A page of lists (each with `contacts_count`) and the count of all that match (`search`: ILIKE)."""
    params = {"company_id": company_id, "search": search, "limit": limit, "offset": offset}
    rows = await db.fetch_all(Q.list_page, params)
    if rows:
        return rows, rows[0]["total"]
    return rows, (await db.fetch_value(Q.list_count, params) if offset else 0)  # a page past the end


async def all_lists(db: Database, company_id: int) -> list[Row]:
    return await db.fetch_all(Q.list_all, {"company_id": company_id, "limit": MAX_ALL})


async def show_list(db: Database, company_id: int, list_id: int) -> Row:
    row = await db.fetch_one(Q.list_show, {"id": list_id, "company_id": company_id})
    if row is None:
        raise NotFound(f"contact list {list_id}")
    return row


async def create_list(db: Database, company_id: int, name: str) -> Row:
    row = await db.fetch_one(Q.list_insert, {"company_id": company_id, "name": name})
    assert row is not None
    return row


async def update_list(db: Database, company_id: int, list_id: int, name: str) -> Row:
    row = await db.fetch_one(Q.list_update, {"id": list_id, "company_id": company_id, "name": name})
    if row is None:
        raise NotFound(f"contact list {list_id}")
    return row


async def delete_list(db: Database, company_id: int, list_id: int) -> None:
    """The list, its items, and its number check (a timer left would find nothing: cancelled too)."""

    def work(conn: psycopg.Connection[Row]) -> None:
        if conn.execute(Q.list_delete, {"id": list_id, "company_id": company_id}).fetchone() is None:
            raise NotFound(f"contact list {list_id}")
        timers.cancel(conn, company_id=company_id, kind=CHECK_KIND, key=check_key(list_id))

    await db.run(work)


def lock_list(conn: psycopg.Connection[Row], company_id: int, list_id: int) -> None:
    """Inside an import's transaction: the list is the company's and stays until the import commits."""
    if conn.execute(Q.list_lock, {"id": list_id, "company_id": company_id}).fetchone() is None:
        raise NotFound(f"contact list {list_id}")


# ─── items ──────────────────────────────────────────────────────────────────────────────

async def list_items(db: Database, company_id: int, list_id: int, *, search: str | None,
                     number_search: str | None, limit: int, offset: int) -> tuple[list[Row], int]:
    params = {"company_id": company_id, "list_id": list_id, "search": search, "number_search": number_search,
              "limit": limit, "offset": offset}
    rows = await db.fetch_all(Q.item_page, params)
    if rows:
        return rows, rows[0]["total"]
    return rows, (await db.fetch_value(Q.item_count, params) if offset else 0)


async def all_items(db: Database, company_id: int, list_id: int | None) -> list[Row]:
    return await db.fetch_all(Q.item_all, {"company_id": company_id, "list_id": list_id, "limit": MAX_ALL})


async def show_item(db: Database, company_id: int, item_id: int) -> Row:
    row = await db.fetch_one(Q.item_show, {"id": item_id, "company_id": company_id})
    if row is None:
        raise NotFound(f"contact list item {item_id}")
    return row


def schedule_check(conn: psycopg.Connection[Row], company_id: int, list_id: int, due_at: dt.datetime) -> None:
    """(Re)start the list's number check at `due_at` (in the caller's transaction; nudge the scheduler after)."""
    timers.schedule(conn, company_id=company_id, kind=CHECK_KIND, key=check_key(list_id), due_at=due_at,
                    payload={"listId": list_id})


async def create_item(db: Database, company_id: int, list_id: int, *, name: str, number: str, email: str,
                      check_at: dt.datetime) -> Row:
    """A new item of the company's list `list_id` (NotFound otherwise); its number is checked from `check_at`.
    A number the list holds already: Conflict on `contact_list_items_contact_list_id_number_key`."""

    def work(conn: psycopg.Connection[Row]) -> Row:
        lock_list(conn, company_id, list_id)
        row = conn.execute(Q.item_insert, {"company_id": company_id, "list_id": list_id, "name": name,
                                           "number": number, "email": email}).fetchone()
        if row is None:
            raise Conflict(f"number {number} is in the list already", "contact_list_items_contact_list_id_number_key")
        schedule_check(conn, company_id, list_id, check_at)
        return row

    return await db.run(work)


async def update_item(db: Database, company_id: int, item_id: int, *, name: str | None, number: str | None,
                      email: str | None, check_at: dt.datetime) -> Row:
    """Change what is given (None keeps it); a new number is checked again from `check_at`. A number another
    item of the list holds: Conflict."""

    def work(conn: psycopg.Connection[Row]) -> Row:
        row = conn.execute(Q.item_update, {"id": item_id, "company_id": company_id, "name": name,
                                           "number": number, "email": email}).fetchone()
        if row is None:
            raise NotFound(f"contact list item {item_id}")
        if row["is_whatsapp_valid"] is None:
            schedule_check(conn, company_id, row["contact_list_id"], check_at)
        return row

    return await db.run(work)


async def delete_item(db: Database, company_id: int, item_id: int) -> Row:
    row = await db.fetch_one(Q.item_delete, {"id": item_id, "company_id": company_id})
    if row is None:
        raise NotFound(f"contact list item {item_id}")
    return row


async def recheck(db: Database, company_id: int, list_id: int, *, everything: bool, check_at: dt.datetime) -> int:
    """Start the list's number check (`everything`: its checked numbers too); how many numbers wait for it."""

    def work(conn: psycopg.Connection[Row]) -> int:
        lock_list(conn, company_id, list_id)
        if everything:
            conn.execute(Q.items_recheck, {"company_id": company_id, "list_id": list_id})
        waiting = conn.execute(Q.items_unchecked_count, {"company_id": company_id, "list_id": list_id}).fetchone()
        assert waiting is not None
        if waiting["n"]:
            schedule_check(conn, company_id, list_id, check_at)
        return waiting["n"]

    return await db.run(work)


@attrs.frozen
class ItemsTarget:
    """Where an import of a list writes (storage/imports.py `Target`)."""

    company_id: int
    list_id: int
    custom_fields: bool = False

    def merge(self, conn: psycopg.Connection[Row], rows: Sequence[ImportRow]) -> tuple[int, int]:
        counts = conn.execute(Q.item_merge, {
            "company_id": self.company_id, "list_id": self.list_id, "numbers": [row.number for row in rows],
            "names": [row.name for row in rows], "emails": [row.email for row in rows]}).fetchone()
        assert counts is not None
        return counts["created"], counts["merged"]


def export_slice(conn: psycopg.Connection[Row], company_id: int, list_id: int, *, after: int,
                 limit: int) -> list[Row]:
    return conn.execute(Q.item_export, {"company_id": company_id, "list_id": list_id, "after": after,
                                        "limit": limit}).fetchall()


# ─── the number check (actors/number_check.py) ──────────────────────────────────────────

def unchecked(conn: psycopg.Connection[Row], company_id: int, list_id: int, limit: int) -> list[Row]:
    return conn.execute(Q.items_unchecked, {"company_id": company_id, "list_id": list_id, "limit": limit}).fetchall()


def set_valid(conn: psycopg.Connection[Row], company_id: int, answers: Sequence[tuple[int, str, bool]]) -> list[Row]:
    """Store (item id, number checked, on WhatsApp) answers; the items changed (an item whose number changed
    meanwhile keeps waiting for its own check)."""
    if not answers:
        return []
    return conn.execute(Q.items_set_valid, {"company_id": company_id, "ids": [a[0] for a in answers],
                                            "numbers": [a[1] for a in answers],
                                            "valid": [a[2] for a in answers]}).fetchall()


def company_connections(conn: psycopg.Connection[Row], company_id: int) -> list[int]:
    return [row["id"] for row in conn.execute(Q.company_connections, {"company_id": company_id}).fetchall()]
