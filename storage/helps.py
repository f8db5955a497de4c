"""Helps: the super admin's help videos, listed to the users of every company (`/helps`)."""

from __future__ import annotations

from typing import Any

from storage.db import Database, Row
from storage.errors import NotFound

FIELDS = ("title", "description", "video", "link")


async def create_help(db: Database, *, title: str, description: str = "", video: str = "", link: str = "") -> Row:
    row = await db.fetch_one(db.q.help_insert, {"title": title, "description": description, "video": video,
                                                "link": link})
    assert row is not None
    return row


async def get_help(db: Database, help_id: int) -> Row:
    row = await db.fetch_one(db.q.help_get, {"id": help_id})
    if row is None:
        raise NotFound(f"help {help_id}")
    return row


async def page_helps(db: Database, *, search: str | None, limit: int, offset: int) -> tuple[list[Row], int]:
    """A page, by title, and how many there are in all."""
    params = {"search": search, "limit": limit, "offset": offset}
    rows = await db.fetch_all(db.q.help_page, params)
    if rows:
        return rows, rows[0]["total"]
    return rows, (await db.fetch_value(db.q.help_count, params) if offset else 0)  # a page past the end


async def all_helps(db: Database, *, limit: int) -> list[Row]:
    return await db.fetch_all(db.q.help_all, {"limit": limit})


async def update_help(db: Database, help_id: int, fields: dict[str, Any]) -> Row:
    """Change the given fields; the others keep their values."""
    row = await db.fetch_one(db.q.help_update, {**{key: fields.get(key) for key in FIELDS}, "id": help_id})
    if row is None:
        raise NotFound(f"help {help_id}")
    return row


async def delete_help(db: Database, help_id: int) -> None:
    if await db.execute(db.q.help_delete, {"id": help_id}) == 0:
        raise NotFound(f"help {help_id}")
