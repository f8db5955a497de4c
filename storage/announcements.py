"""Announcements: the super admin's notices to the users of every company (`/announcements`).

Not a tenant's data: one list for the whole installation, as in the family. A notice with status
false is a draft, seen by super admins only (`everything`); the others see the active ones.
"""

from __future__ import annotations

from typing import Any

from storage.db import Database, Row
from storage.errors import NotFound


async def create_announcement(db: Database, *, company_id: int, title: str, text: str, priority: int = 3,
                              status: bool = True) -> Row:
    row = await db.fetch_one(db.q.announcement_insert, {"company_id": company_id, "title": title, "text": text,
                                                        "priority": priority, "status": status})
    assert row is not None
    return row


async def get_announcement(db: Database, announcement_id: int, *, everything: bool) -> Row:
    row = await db.fetch_one(db.q.announcement_get, {"id": announcement_id, "everything": everything})
    if row is None:
        raise NotFound(f"announcement {announcement_id}")
    return row


async def page_announcements(db: Database, *, everything: bool, search: str | None, limit: int,
                             offset: int) -> tuple[list[Row], int]:
    """A page, newest first, and how many there are in all."""
    params = {"everything": everything, "search": search, "limit": limit, "offset": offset}
    rows = await db.fetch_all(db.q.announcement_page, params)
    if rows:
        return rows, rows[0]["total"]
    return rows, (await db.fetch_value(db.q.announcement_count, params) if offset else 0)  # a page past the end


async def list_announcements(db: Database, *, everything: bool, company_id: int | None, limit: int) -> list[Row]:
    """The newest `limit`, each with its author's company `{id, name}`; only one company's when given."""
    return await db.fetch_all(db.q.announcement_list, {"everything": everything, "company_id": company_id,
                                                       "limit": limit})


async def update_announcement(db: Database, announcement_id: int, fields: dict[str, Any]) -> Row:
    """Change the given fields (`priority`, `title`, `text`, `status`); the others keep their values."""
    params = {key: fields.get(key) for key in ("priority", "title", "text", "status")}
    row = await db.fetch_one(db.q.announcement_update, {**params, "id": announcement_id})
    if row is None:
        raise NotFound(f"announcement {announcement_id}")
    return row


async def set_media(db: Database, announcement_id: int, media_path: str | None, media_name: str | None) -> Row:
    """Attach a public file (or none); the row carries `replaced_media_path`, the file it no longer uses."""
    row = await db.fetch_one(db.q.announcement_set_media, {"id": announcement_id, "media_path": media_path,
                                                           "media_name": media_name})
    if row is None:
        raise NotFound(f"announcement {announcement_id}")
    return row


async def delete_announcement(db: Database, announcement_id: int) -> str | None:
    """Remove it; the public file it used, if any (to be removed by the caller)."""
    row = await db.fetch_one(db.q.announcement_delete, {"id": announcement_id})
    if row is None:
        raise NotFound(f"announcement {announcement_id}")
    return row["media_path"]
