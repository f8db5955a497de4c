"""Tags of a company and their place on tickets and contacts (`/tags`, `/ticket-tags`, the kanban).

A tag is the company's: every statement is scoped by company, and ticket_tags / contact_tags hold the
company in both foreign keys, so another company's tag can never be attached, whatever the id.

Kanban tags (`kanban`) are the board's lanes; a ticket is in one lane at most: putting a kanban tag on it
takes off its other kanban tags in the same statement (`add_ticket_tag`), so a card moved between lanes is
never seen in two, nor in none.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import psycopg

from storage.db import Database, Row
from storage.errors import Conflict, NotFound

MAX_ALL = 5000  # GET /tags/list answers at most this many tags (a picker; companies have tens)


async def list_tags(db: Database, company_id: int, *, search: str | None, limit: int,
                    offset: int) -> tuple[list[Row], int]:
    """A page of tags (with `tickets_count`, `contacts_count`) and the count of all that match; `search` is a
    LIKE pattern matched without accents or case."""
    params = {"company_id": company_id, "search": search, "limit": limit, "offset": offset}
    rows = await db.fetch_all(db.q.tag_page, params)
    if rows:
        return rows, rows[0]["total"]
    return rows, (await db.fetch_value(db.q.tag_count, params) if offset else 0)  # a page past the end


async def all_tags(db: Database, company_id: int, *, search: str | None = None, kanban_only: bool = False) -> list[Row]:
    """Every tag of the company by name (the pickers), or only the kanban ones (the board's lanes)."""
    return await db.fetch_all(db.q.tag_all, {"company_id": company_id, "search": search,
                                             "kanban_only": kanban_only, "limit": MAX_ALL})


async def show_tag(db: Database, company_id: int, tag_id: int) -> Row:
    row = await db.fetch_one(db.q.tag_show, {"id": tag_id, "company_id": company_id})
    if row is None:
        raise NotFound(f"tag {tag_id}")
    return row


@attrs.frozen
class Created:
    row: Row
    created: bool  # False: the company had this tag already (same name, and the colour and kanban asked)


async def create_tag(db: Database, company_id: int, *, name: str, color: str | None, kanban: bool | None,
                     default_color: str) -> Created:
    """A new tag, or the existing one of that name (any case) when what was asked of it matches: ticketz
    finds or creates (its chat page's tag box creates whatever name is typed, an existing one included). A
    name taken by a tag of another colour or kanban flag is a Conflict on `tags_company_name_key`."""
    q = db.q

    def work(conn: psycopg.Connection[Row]) -> Created:
        row = conn.execute(q.tag_insert_new, {"company_id": company_id, "name": name,
                                              "color": color or default_color, "kanban": bool(kanban)}).fetchone()
        if row is not None:
            return Created(row, True)
        existing = conn.execute(q.tag_by_name, {"company_id": company_id, "name": name}).fetchone()
        if existing is None:  # deleted in between: the caller may try again
            raise Conflict(f"tag {name!r} changed meanwhile", "tags_company_name_key")
        if (color is not None and color.lower() != existing["color"].lower()) or (
                kanban is not None and kanban != existing["kanban"]):
            raise Conflict(f"tag {name!r} exists", "tags_company_name_key")
        shown = conn.execute(q.tag_show, {"id": existing["id"], "company_id": company_id}).fetchone()
        assert shown is not None
        return Created(shown, False)

    return await db.run(work)


async def update_tag(db: Database, company_id: int, tag_id: int, fields: dict[str, Any]) -> Row:
    """Change `name`, `color`, `kanban` (those given); a name taken by another tag is a Conflict."""
    row = await db.fetch_one(db.q.tag_update, {"id": tag_id, "company_id": company_id, "name": fields.get("name"),
                                               "color": fields.get("color"), "kanban": fields.get("kanban")})
    if row is None:
        raise NotFound(f"tag {tag_id}")
    return row


async def delete_tag(db: Database, company_id: int, tag_id: int) -> None:
    """Remove a tag; the tickets and contacts carrying it lose it (foreign keys)."""
    if await db.execute(db.q.tag_delete, {"id": tag_id, "company_id": company_id}) == 0:
        raise NotFound(f"tag {tag_id}")


def _check_found(found: int, tag_ids: Sequence[int]) -> None:
    if found != len(set(tag_ids)):
        raise NotFound("tag")  # a tag of another company, or none at all: the transaction rolls back


async def set_ticket_tags(db: Database, company_id: int, ticket_id: int, tag_ids: Sequence[int]) -> None:
    """The ticket's tags become exactly `tag_ids`, all of the company or nothing changes (NotFound)."""
    await _set_tags(db, company_id, "ticket", ticket_id, tag_ids)


async def set_contact_tags(db: Database, company_id: int, contact_id: int, tag_ids: Sequence[int]) -> None:
    """The contact's tags become exactly `tag_ids`, all of the company or nothing changes (NotFound)."""
    await _set_tags(db, company_id, "contact", contact_id, tag_ids)


async def _set_tags(db: Database, company_id: int, owner: str, owner_id: int, tag_ids: Sequence[int]) -> None:
    """One transaction: lock the ticket or contact (`owner`), replace its set, roll back unless every tag is the
    company's (queries `{owner}_lock` and `{owner}_tags_set`)."""
    q = db.q
    params = {"company_id": company_id, f"{owner}_id": owner_id}

    def work(conn: psycopg.Connection[Row]) -> None:
        if conn.execute(getattr(q, f"{owner}_lock"), params).fetchone() is None:
            raise NotFound(f"{owner} {owner_id}")
        row = conn.execute(getattr(q, f"{owner}_tags_set"), {**params, "tag_ids": list(tag_ids)}).fetchone()
        assert row is not None
        _check_found(row["found"], tag_ids)

    await db.run(work)


@attrs.frozen
class Added:
    added: bool  # False: the ticket had the tag already
    removed: tuple[int, ...]  # the kanban tags it replaced (the lane the card left)


async def add_ticket_tag(db: Database, company_id: int, ticket_id: int, tag_id: int) -> Added:
    """Put a tag on a ticket, in one statement; a kanban tag replaces the ticket's other kanban tags.
    NotFound (nothing written) when the tag is not the company's.

    The ticket's row is locked first, by a statement of its own: the swap's statement then starts once any
    other change of the ticket's tags has committed, and its snapshot sees that change's new lane (in one
    statement with the lock, two simultaneous moves would each miss the other's insert and leave the card
    in two lanes)."""
    q = db.q

    def work(conn: psycopg.Connection[Row]) -> Added:
        if conn.execute(q.ticket_lock, {"ticket_id": ticket_id, "company_id": company_id}).fetchone() is None:
            raise NotFound(f"ticket {ticket_id}")
        row = conn.execute(q.ticket_tag_add, {"company_id": company_id, "ticket_id": ticket_id,
                                              "tag_id": tag_id}).fetchone()
        assert row is not None
        if row["found"] == 0:
            raise NotFound(f"tag {tag_id}")
        return Added(row["added"] > 0, tuple(row["removed"]))

    return await db.run(work)


async def remove_ticket_tag(db: Database, company_id: int, ticket_id: int, tag_id: int) -> bool:
    """Take a tag off a ticket (NotFound when the tag is not the company's); whether it had it."""
    q = db.q

    def work(conn: psycopg.Connection[Row]) -> bool:
        if conn.execute(q.tag_show, {"id": tag_id, "company_id": company_id}).fetchone() is None:
            raise NotFound(f"tag {tag_id}")
        return conn.execute(q.ticket_tag_remove, {"company_id": company_id, "ticket_id": ticket_id,
                                                  "tag_id": tag_id}).rowcount > 0

    return await db.run(work)


async def clear_ticket_tags(db: Database, company_id: int, ticket_id: int) -> int:
    """Take every tag off a ticket; how many it had."""
    return await db.execute(db.q.ticket_tags_clear, {"company_id": company_id, "ticket_id": ticket_id})
