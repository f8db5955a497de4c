"""The internal chat: conversations between the users of one company (ticketz's `/chats`).

A chat has an owner, participants (`chat_users`, each with their count of unread messages) and
messages. Every query is scoped by company, and the tables' foreign keys pair company and id, so no
chat can hold another company's user. Writes that change several rows (a chat and its participants,
a message and the counters) are one transaction each.
"""

from __future__ import annotations

import uuid as uuid_module
from collections.abc import Sequence

import attrs
import psycopg

from storage.db import Database, Row
from storage.errors import NotFound


@attrs.frozen
class ChatAccess:
    """What the permission rules need to know of a chat: its id, its owner, whether the caller is in it."""

    id: int
    owner_id: int
    joined: bool


@attrs.frozen
class Deleted:
    """A chat that was deleted: who took part in it, and the media files its messages used."""

    participants: list[int]
    media_urls: list[str]


async def find_chat(db: Database, company_id: int, user_id: int, key: int | uuid_module.UUID) -> ChatAccess:
    """The company's chat with this id (an int) or uuid; NotFound when the company has none."""
    params = {"company_id": company_id, "user_id": user_id,
              "id": key if isinstance(key, int) else None, "uuid": key if isinstance(key, uuid_module.UUID) else None}
    row = await db.fetch_one(db.q.chat_access, params)
    if row is None:
        raise NotFound(f"chat {key}")
    return ChatAccess(id=row["id"], owner_id=row["owner_id"], joined=row["joined"])


async def show_chat(db: Database, company_id: int, chat_id: int) -> Row:
    row = await db.fetch_one(db.q.chat_show, {"id": chat_id, "company_id": company_id})
    if row is None:
        raise NotFound(f"chat {chat_id}")
    return row


async def page_chats(db: Database, company_id: int, user_id: int, *, limit: int,
                     offset: int) -> tuple[list[Row], int]:
    """A page of the chats the user takes part in, latest message first, and how many there are."""
    params = {"company_id": company_id, "user_id": user_id, "limit": limit, "offset": offset}
    rows = await db.fetch_all(db.q.chat_page, params)
    if rows:
        return rows, rows[0]["total"]
    return rows, (await db.fetch_value(db.q.chat_count, params) if offset else 0)  # a page past the end


def _check_users(conn: psycopg.Connection[Row], q: object, company_id: int, user_ids: set[int]) -> None:
    found = conn.execute(q.chat_company_users, {"company_id": company_id,  # type: ignore[attr-defined]
                                                "user_ids": sorted(user_ids)}).fetchall()
    if len(found) != len(user_ids):
        raise NotFound("user")  # another company's user, or nobody


async def create_chat(db: Database, company_id: int, owner_id: int, *, title: str, user_ids: Sequence[int]) -> Row:
    """A chat of the owner with these users (the owner takes part in it too); NotFound for a user that is
    not of the company (and nothing is written)."""
    q = db.q
    members = {owner_id, *user_ids}

    def work(conn: psycopg.Connection[Row]) -> Row:
        _check_users(conn, q, company_id, members)
        row = conn.execute(q.chat_insert, {"company_id": company_id, "owner_id": owner_id, "title": title}).fetchone()
        assert row is not None
        conn.execute(q.chat_users_add, {"company_id": company_id, "chat_id": row["id"], "user_ids": sorted(members)})
        shown = conn.execute(q.chat_show, {"id": row["id"], "company_id": company_id}).fetchone()
        assert shown is not None
        return shown

    return await db.run(work)


async def update_chat(db: Database, company_id: int, chat_id: int, *, title: str | None,
                      user_ids: Sequence[int] | None) -> tuple[Row, list[int]]:
    """Change the title and, when given, the participants (the owner always stays; those who stay keep
    their unread counts). The chat as it is now, and the users who left it."""
    q = db.q

    def work(conn: psycopg.Connection[Row]) -> tuple[Row, list[int]]:
        row = conn.execute(q.chat_update_title, {"id": chat_id, "company_id": company_id, "title": title}).fetchone()
        if row is None:
            raise NotFound(f"chat {chat_id}")
        left: list[int] = []
        if user_ids is not None:
            members = sorted({row["owner_id"], *user_ids})
            _check_users(conn, q, company_id, set(members))
            params = {"company_id": company_id, "chat_id": chat_id, "user_ids": members}
            left = sorted(r["user_id"] for r in conn.execute(q.chat_users_remove_others, params).fetchall())
            conn.execute(q.chat_users_add, params)
        shown = conn.execute(q.chat_show, {"id": chat_id, "company_id": company_id}).fetchone()
        assert shown is not None
        return shown, left

    return await db.run(work)


async def delete_chat(db: Database, company_id: int, chat_id: int) -> Deleted:
    q = db.q

    def work(conn: psycopg.Connection[Row]) -> Deleted:
        params = {"id": chat_id, "chat_id": chat_id, "company_id": company_id}
        participants = [r["user_id"] for r in conn.execute(q.chat_participants, params).fetchall()]
        media = [r["media_url"] for r in conn.execute(q.chat_media, params).fetchall()]
        if conn.execute(q.chat_delete, params).fetchone() is None:
            raise NotFound(f"chat {chat_id}")
        return Deleted(participants=participants, media_urls=media)

    return await db.run(work)


@attrs.frozen
class NewMessage:
    text: str
    media_url: str | None = None
    media_type: str | None = None
    media_name: str | None = None


async def add_messages(db: Database, company_id: int, chat_id: int, sender_id: int,
                       messages: Sequence[NewMessage]) -> tuple[list[Row], Row] | None:
    """Post messages in one transaction: the chat's last message and every participant's unread count
    follow. The new rows (each with its `sender`) and the chat as it is now; None when the sender
    does not take part in the chat (removed meanwhile), and nothing is written."""
    q = db.q

    def work(conn: psycopg.Connection[Row]) -> tuple[list[Row], Row] | None:
        base = {"company_id": company_id, "chat_id": chat_id, "sender_id": sender_id}
        last = messages[-1].media_name or messages[-1].text  # "<sender>: <this>" is the chat's last message
        if conn.execute(q.chat_touch, {**base, "text": last}).fetchone() is None:
            return None
        rows = []
        for message in messages:
            row = conn.execute(q.chat_message_insert, {**base, "message": message.text, "media_url": message.media_url,
                                                       "media_type": message.media_type,
                                                       "media_name": message.media_name}).fetchone()
            assert row is not None
            rows.append(row)
        conn.execute(q.chat_users_count_message, {**base, "count": len(rows)})
        shown = conn.execute(q.chat_show, {"id": chat_id, "company_id": company_id}).fetchone()
        assert shown is not None
        return rows, shown

    return await db.run(work)


async def mark_read(db: Database, company_id: int, chat_id: int, user_id: int) -> Row | None:
    """The user has read the chat (their unread count is 0); the chat as it is now, None if they are not in it."""
    q = db.q

    def work(conn: psycopg.Connection[Row]) -> Row | None:
        params = {"company_id": company_id, "chat_id": chat_id, "user_id": user_id}
        if conn.execute(q.chat_read, params).fetchone() is None:
            return None
        return conn.execute(q.chat_show, {"id": chat_id, "company_id": company_id}).fetchone()

    return await db.run(work)


async def page_messages(db: Database, company_id: int, chat_id: int, *, limit: int,
                        offset: int) -> tuple[list[Row], int]:
    """A page of the chat's messages, newest page first, each page oldest first; and how many there are."""
    params = {"company_id": company_id, "chat_id": chat_id, "limit": limit, "offset": offset}
    rows = await db.fetch_all(db.q.chat_message_page, params)
    count = rows[0]["total"] if rows else (await db.fetch_value(db.q.chat_message_count, params) if offset else 0)
    return rows[::-1], count
