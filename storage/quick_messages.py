"""Quick messages (`/quick-messages`): the texts agents keep for the chat's "/" shortcuts, each with an
optional file; and what the variables of an agent's message are made of.

A message is its author's; `is_global` (the SaaS lineage's `geral`) lists it to every colleague. Which ones a
caller lists is the API's rule (the setting `quickMessages`); here it is `everything` (every message of the
company) or not (the caller's own and the global ones). A shortcode is unique per author, in any case
(`quick_messages_user_shortcode_key`, a Conflict). Every statement is scoped by company.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs

from storage.db import Database, Row
from storage.errors import NotFound
from storage.sql import load_queries

Q = load_queries(Path(__file__).with_name("quick_messages.sql"))

MAX_LIST = 5000  # GET /quick-messages/list answers at most this many (the chat's shortcuts; users keep tens)


def _filters(company_id: int, *, user_id: int, everything: bool, owner: int | None,
             search: str | None) -> dict[str, Any]:
    return {"company_id": company_id, "user_id": user_id, "everything": everything, "owner": owner,
            "search": search}


async def list_page(db: Database, company_id: int, *, user_id: int, everything: bool, owner: int | None = None,
                    search: str | None = None, limit: int, offset: int) -> tuple[list[Row], int]:
    """A page of the messages the caller lists, by shortcode, and the count of all that match."""
    params = {**_filters(company_id, user_id=user_id, everything=everything, owner=owner, search=search),
              "limit": limit, "offset": offset}
    rows = await db.fetch_all(Q.quick_message_page, params)
    if rows:
        return rows, rows[0]["total"]
    return rows, (await db.fetch_value(Q.quick_message_count, params) if offset else 0)  # a page past the end


async def list_all(db: Database, company_id: int, *, user_id: int, everything: bool,
                   search: str | None = None) -> list[Row]:
    """Every message the caller lists, by shortcode (the chat's shortcuts)."""
    rows, _ = await list_page(db, company_id, user_id=user_id, everything=everything, search=search,
                              limit=MAX_LIST, offset=0)
    return rows


async def show(db: Database, company_id: int, message_id: int) -> Row:
    row = await db.fetch_one(Q.quick_message_show, {"id": message_id, "company_id": company_id})
    if row is None:
        raise NotFound(f"quick message {message_id}")
    return row


async def create(db: Database, company_id: int, user_id: int, *, shortcode: str, message: str,
                 is_global: bool) -> Row:
    """A new message of `user_id`; a shortcode they have already (any case) is a Conflict."""
    row = await db.fetch_one(Q.quick_message_insert, {"company_id": company_id, "user_id": user_id,
                                                      "shortcode": shortcode, "message": message,
                                                      "is_global": is_global})
    assert row is not None
    return row


async def update(db: Database, company_id: int, message_id: int, *, shortcode: str | None = None,
                 message: str | None = None, is_global: bool | None = None) -> Row:
    """Change the fields given; the author stays. A shortcode the author has on another message: Conflict."""
    row = await db.fetch_one(Q.quick_message_update, {"id": message_id, "company_id": company_id,
                                                      "shortcode": shortcode, "message": message,
                                                      "is_global": is_global})
    if row is None:
        raise NotFound(f"quick message {message_id}")
    return row


async def delete(db: Database, company_id: int, message_id: int) -> str | None:
    """Remove a message; its file's path (for removal once this is committed), if it had one."""
    row = await db.fetch_one(Q.quick_message_delete, {"id": message_id, "company_id": company_id})
    if row is None:
        raise NotFound(f"quick message {message_id}")
    return row["media_path"]


@attrs.frozen
class MediaChanged:
    row: Row
    replaced: str | None  # the file the message had before (to be removed), if any


async def set_media(db: Database, company_id: int, message_id: int, media_path: str | None,
                    media_name: str | None) -> MediaChanged:
    """The message's file (None: none); the one it replaces comes back for removal."""
    row = await db.fetch_one(Q.quick_message_set_media, {"id": message_id, "company_id": company_id,
                                                         "media_path": media_path, "media_name": media_name})
    if row is None:
        raise NotFound(f"quick message {message_id}")
    return MediaChanged(row=row, replaced=row["replaced_media_path"])


async def message_variables(db: Database, company_id: int, ticket_id: int, user_id: int | None) -> Row:
    """What the variables of a message sent in a ticket are made of: `contact_name`, `contact_email`,
    `contact_number`, `queue_name`, `user_name` (the sender's, else the ticket's agent's), `timezone` (the
    company's setting, null when unset) and `custom_fields` ({name: value} of the contact)."""
    row = await db.fetch_one(Q.message_variables, {"company_id": company_id, "ticket_id": ticket_id,
                                                   "user_id": user_id})
    if row is None:
        raise NotFound(f"ticket {ticket_id}")
    return row
