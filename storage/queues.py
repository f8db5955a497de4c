"""Queues of a company: the departments tickets are routed to (`/queue`)."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from storage import plans
from storage.db import Database, Row
from storage.errors import NotFound

TEXTS = ("name", "color", "greeting_message", "out_of_hours_message")


async def list_queues(db: Database, company_id: int) -> list[Row]:
    """Every queue of the company, by `order_queue` (unset last), then name."""
    return await db.fetch_all(db.q.queue_list, {"company_id": company_id})


async def show_queue(db: Database, company_id: int, queue_id: int) -> Row:
    row = await db.fetch_one(db.q.queue_show, {"id": queue_id, "company_id": company_id})
    if row is None:
        raise NotFound(f"queue {queue_id}")
    return row


async def create_queue(db: Database, company_id: int, *, name: str, color: str, greeting_message: str = "",
                       out_of_hours_message: str = "", order_queue: int | None = None,
                       schedules: list[dict[str, Any]] | None = None) -> Row:
    """A new queue; a name already used in the company (case-insensitive) is a Conflict on
    `queues_company_name_key`, one beyond the plan's number a `plans.LimitReached`."""
    q = db.q
    params = {
        "company_id": company_id, "name": name, "color": color, "greeting_message": greeting_message,
        "out_of_hours_message": out_of_hours_message, "order_queue": order_queue,
        "schedules": Jsonb(schedules or []),
    }

    def work(conn: psycopg.Connection[Row]) -> Row:
        plans.check_limit(conn, q, company_id, "queues")
        row = conn.execute(q.queue_insert, params).fetchone()
        assert row is not None
        return row

    return await db.run(work)


async def update_queue(db: Database, company_id: int, queue_id: int, fields: dict[str, Any]) -> Row:
    """Change the given columns (`name`, `color`, `greeting_message`, `out_of_hours_message`, `order_queue`
    — which may be set to None —, `schedules`); the others keep their values."""
    params: dict[str, Any] = {key: fields.get(key) for key in TEXTS}
    schedules = fields.get("schedules")
    params.update(id=queue_id, company_id=company_id, schedules=None if schedules is None else Jsonb(schedules),
                  set_order_queue="order_queue" in fields, order_queue=fields.get("order_queue"))
    row = await db.fetch_one(db.q.queue_update, params)
    if row is None:
        raise NotFound(f"queue {queue_id}")
    return row


async def delete_queue(db: Database, company_id: int, queue_id: int) -> None:
    """Remove a queue; its tickets stay, without a queue (the foreign key sets their queue_id to null)."""
    if await db.execute(db.q.queue_delete, {"id": queue_id, "company_id": company_id}) == 0:
        raise NotFound(f"queue {queue_id}")
