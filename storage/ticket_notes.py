"""Ticket notes (`/ticket-notes`): what agents write about a conversation for each other, never sent.

A note belongs to a ticket and its contact, and to its author (none once that user is deleted). Who may see
it is who may see its ticket (storage/tickets.py `Viewer`); the lists apply that rule in SQL, and `show`
answers the ticket's queue, agent and status (`ticket_queue_id`, `ticket_user_id`, `ticket_status`) for the
caller to apply it. Rows are `ticket_notes_shown`'s: the note with `user`, `contact` and `ticket` as JSON.
Every statement is scoped by company.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg

from storage.db import Database, Row
from storage.errors import NotFound
from storage.sql import load_queries
from storage.tickets import Viewer

Q = load_queries(Path(__file__).with_name("ticket_notes.sql"))

MAX_LIST = 1000  # GET /ticket-notes/list answers at most this many (newest first)


def _seen_by(viewer: Viewer) -> dict[str, Any]:
    return {"company_id": viewer.company_id, "user_id": viewer.user_id, "is_admin": viewer.is_admin,
            "queue_ids": list(viewer.queue_ids), "all_ticket": viewer.all_ticket}


def visible(viewer: Viewer, note: Row) -> bool:
    """Whether the viewer may see the note: whether they may see its ticket."""
    return viewer.can_see({"queue_id": note["ticket_queue_id"], "user_id": note["ticket_user_id"]})


async def create(db: Database, company_id: int, *, ticket_id: int, contact_id: int, user_id: int,
                 note: str) -> Row:
    """A new note on the ticket (of its contact), as shown."""

    def work(conn: psycopg.Connection[Row]) -> Row:
        made = conn.execute(Q.ticket_note_insert, {"company_id": company_id, "ticket_id": ticket_id,
                                                   "contact_id": contact_id, "user_id": user_id,
                                                   "note": note}).fetchone()
        assert made is not None
        row = conn.execute(Q.ticket_note_show, {"id": made["id"], "company_id": company_id}).fetchone()
        assert row is not None
        return row

    return await db.run(work)


async def show(db: Database, company_id: int, note_id: int) -> Row:
    row = await db.fetch_one(Q.ticket_note_show, {"id": note_id, "company_id": company_id})
    if row is None:
        raise NotFound(f"ticket note {note_id}")
    return row


async def list_for(db: Database, viewer: Viewer, *, ticket_id: int | None, contact_id: int | None) -> list[Row]:
    """The notes of a ticket, of a contact's tickets, or both filters at once, that the viewer may see,
    newest first."""
    return await db.fetch_all(Q.ticket_note_list, {**_seen_by(viewer), "ticket_id": ticket_id,
                                                   "contact_id": contact_id, "limit": MAX_LIST})


async def list_page(db: Database, viewer: Viewer, *, search: str | None, limit: int,
                    offset: int) -> tuple[list[Row], int]:
    """A page of the company's notes that the viewer may see, newest first, and the count of all that match."""
    params = {**_seen_by(viewer), "search": search, "limit": limit, "offset": offset}
    rows = await db.fetch_all(Q.ticket_note_page, params)
    if rows:
        return rows, rows[0]["total"]
    return rows, (await db.fetch_value(Q.ticket_note_count, params) if offset else 0)  # a page past the end


async def update(db: Database, company_id: int, note_id: int, note: str) -> Row:
    """Change the text; the note as shown."""

    def work(conn: psycopg.Connection[Row]) -> Row:
        if conn.execute(Q.ticket_note_update, {"id": note_id, "company_id": company_id,
                                               "note": note}).fetchone() is None:
            raise NotFound(f"ticket note {note_id}")
        row = conn.execute(Q.ticket_note_show, {"id": note_id, "company_id": company_id}).fetchone()
        assert row is not None
        return row

    return await db.run(work)


async def delete(db: Database, company_id: int, note_id: int) -> None:
    if await db.fetch_one(Q.ticket_note_delete, {"id": note_id, "company_id": company_id}) is None:
        raise NotFound(f"ticket note {note_id}")
