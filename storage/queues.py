"""Queues of a company: the departments tickets are routed to (`/queue`)."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from storage import plans
from storage.db import Database, Row
from storage.errors import NotFound
from storage.queue_options import MediaChanged, options_of_queues

TEXTS = ("name", "color", "greeting_message", "out_of_hours_message")


async def list_queues(db: Database, company_id: int) -> list[Row]:
    """Every queue of the company, by `order_queue` (unset last), then name."""
    return await db.fetch_all(db.q.queue_list, {"company_id": company_id})


async def show_queue(db: Database, company_id: int, queue_id: int) -> Row:
    row = await db.fetch_one(db.q.queue_show, {"id": queue_id, "company_id": company_id})
    if row is None:
        raise NotFound(f"queue {queue_id}")
    return row


async def with_options(db: Database, company_id: int, rows: list[Row]) -> list[Row]:
    """The queues, each with `options`: every option of its menu tree (by id; `parent_id` says where)."""
    by_queue = await options_of_queues(db, company_id, [row["id"] for row in rows])
    return [{**row, "options": by_queue.get(row["id"], [])} for row in rows]


async def create_queue(db: Database, company_id: int, *, name: str, color: str, greeting_message: str = "",
                       out_of_hours_message: str = "", order_queue: int | None = None,
                       schedules: list[dict[str, Any]] | dict[str, Any] | None = None,
                       auto_assign: str = "off") -> Row:
    """A new queue; a name already used in the company (case-insensitive) is a Conflict on
    `queues_company_name_key`, one beyond the plan's number a `plans.LimitReached`."""
    q = db.q
    params = {
        "company_id": company_id, "name": name, "color": color, "greeting_message": greeting_message,
        "out_of_hours_message": out_of_hours_message, "order_queue": order_queue,
        "schedules": Jsonb(schedules or []), "auto_assign": auto_assign,
    }

    def work(conn: psycopg.Connection[Row]) -> Row:
        plans.check_limit(conn, q, company_id, "queues")
        row = conn.execute(q.queue_insert, params).fetchone()
        assert row is not None
        return row

    return await db.run(work)


async def update_queue(db: Database, company_id: int, queue_id: int, fields: dict[str, Any]) -> Row:
    """Change the given columns (`name`, `color`, `greeting_message`, `out_of_hours_message`, `order_queue`
    — which may be set to None —, `schedules`, `auto_assign`); the others keep their values."""
    params: dict[str, Any] = {key: fields.get(key) for key in TEXTS}
    schedules = fields.get("schedules")
    params.update(id=queue_id, company_id=company_id, schedules=None if schedules is None else Jsonb(schedules),
                  set_order_queue="order_queue" in fields, order_queue=fields.get("order_queue"),
                  auto_assign=fields.get("auto_assign"))
    row = await db.fetch_one(db.q.queue_update, params)
    if row is None:
        raise NotFound(f"queue {queue_id}")
    return row


async def delete_queue(db: Database, company_id: int, queue_id: int) -> list[str]:
    """Remove a queue and its options; its tickets stay, without a queue (the foreign key sets their
    queue_id to null). The stored files the queue and its options had, to remove once committed."""
    row = await db.fetch_one(db.q.queue_delete, {"id": queue_id, "company_id": company_id})
    if row is None or not row["deleted"]:
        raise NotFound(f"queue {queue_id}")
    return [path for path in (row["media_path"], *row["option_media"]) if path]


async def set_media(db: Database, company_id: int, queue_id: int, media_path: str | None,
                    media_name: str | None) -> MediaChanged:
    """The queue's greeting file (None: none); the one it replaces comes back for removal."""
    row = await db.fetch_one(db.q.queue_set_media, {"id": queue_id, "company_id": company_id,
                                                    "media_path": media_path, "media_name": media_name})
    if row is None:
        raise NotFound(f"queue {queue_id}")
    return MediaChanged(row=row, replaced=row["replaced_media_path"])
