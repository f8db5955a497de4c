"""WhatsApp connections: the rows behind `/whatsapp` and the state the session actors keep on them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from storage import plans
from storage.db import Database, Row
from storage.errors import NotFound

EDITABLE = ("name", "is_default", "greeting_message", "farewell_message", "complation_message",
            "out_of_hours_message", "token", "rating_message", "transfer_message", "expires_ticket",
            "expires_inactive_message", "max_use_bot_queues", "time_use_bot_queues", "schedules")
TEXTS = ("greeting_message", "farewell_message", "complation_message", "out_of_hours_message", "rating_message",
         "transfer_message", "expires_inactive_message")
NUMBERS = {"expires_ticket": 0, "max_use_bot_queues": 3, "time_use_bot_queues": 0}  # their defaults


def _set_queues(conn: psycopg.Connection[Row], q: Any, company_id: int, whatsapp_id: int,
                queue_ids: Sequence[int]) -> None:
    conn.execute(q.whatsapp_queues_clear, {"whatsapp_id": whatsapp_id, "company_id": company_id})
    if queue_ids:
        added = conn.execute(q.whatsapp_queues_add, {"company_id": company_id, "whatsapp_id": whatsapp_id,
                                                     "queue_ids": list(queue_ids)}).rowcount
        if added != len(set(queue_ids)):
            raise NotFound("queue")


def _show(conn: psycopg.Connection[Row], q: Any, company_id: int, whatsapp_id: int) -> Row:
    row = conn.execute(q.whatsapp_show, {"id": whatsapp_id, "company_id": company_id}).fetchone()
    if row is None:
        raise NotFound(f"connection {whatsapp_id}")
    return row


async def create_whatsapp(db: Database, company_id: int, fields: dict[str, Any]) -> Row:
    """Create a connection; refused (`plans.LimitReached`) when the company has as many as its plan allows
    (or its `connectionLimit`, when the super admin set one), counted in the same transaction."""
    q = db.q

    def work(conn: psycopg.Connection[Row]) -> Row:
        plans.check_limit(conn, q, company_id, "connections")
        params = {key: fields.get(key) for key in EDITABLE}
        params.update(company_id=company_id, channel=fields.get("channel", "whatsapp"),
                      is_default=bool(fields.get("is_default")))
        for text in TEXTS:
            params[text] = params[text] or ""
        for number, default in NUMBERS.items():
            params[number] = default if params[number] is None else params[number]
        params["schedules"] = Jsonb(params["schedules"] or [])
        if params["is_default"]:
            # clear the old default first: the partial unique index allows one per company
            conn.execute(q.whatsapp_clear_default, {"company_id": company_id, "id": 0})
        row = conn.execute(q.whatsapp_insert, params).fetchone()
        assert row is not None
        _set_queues(conn, q, company_id, row["id"], fields.get("queue_ids", ()))
        return _show(conn, q, company_id, row["id"])

    return await db.run(work)


async def show_whatsapp(db: Database, company_id: int, whatsapp_id: int) -> Row:
    return await db.run(lambda conn: _show(conn, db.q, company_id, whatsapp_id))


async def list_whatsapps(db: Database, company_id: int) -> list[Row]:
    return await db.fetch_all(db.q.whatsapp_list, {"company_id": company_id})


async def update_whatsapp(db: Database, company_id: int, whatsapp_id: int, fields: dict[str, Any]) -> Row:
    q = db.q

    def work(conn: psycopg.Connection[Row]) -> Row:
        params = {key: fields.get(key) for key in EDITABLE}
        params.update(id=whatsapp_id, company_id=company_id)
        if params["schedules"] is not None:
            params["schedules"] = Jsonb(params["schedules"])
        if params["is_default"]:
            # clear the old default first: the partial unique index allows one per company
            conn.execute(q.whatsapp_clear_default, {"company_id": company_id, "id": whatsapp_id})
        if conn.execute(q.whatsapp_update, params).fetchone() is None:
            raise NotFound(f"connection {whatsapp_id}")
        if "queue_ids" in fields:
            _set_queues(conn, q, company_id, whatsapp_id, fields["queue_ids"])
        return _show(conn, q, company_id, whatsapp_id)

    return await db.run(work)


async def delete_whatsapp(db: Database, company_id: int, whatsapp_id: int) -> None:
    if await db.execute(db.q.whatsapp_delete, {"id": whatsapp_id, "company_id": company_id}) == 0:
        raise NotFound(f"connection {whatsapp_id}")


# ─── what the session actors use ────────────────────────────────────────────────────────

class SessionStore:
    """The storage a SessionActor needs (unit tests use an in-memory stand-in with the same methods)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def load(self, whatsapp_id: int) -> Row | None:
        return await self.db.fetch_one(self.db.q.whatsapp_by_id, {"id": whatsapp_id})

    async def set_status(self, whatsapp_id: int, status: str, *, qrcode: str | None = None,
                         retries: int | None = None, number: str | None = None,
                         disconnect_reason: str | None = None, pairing_code: str | None = None,
                         set_pairing_code: bool = False) -> Row:
        """Update the connection's session fields; the connection as the API shows it."""
        q = self.db.q

        def work(conn: psycopg.Connection[Row]) -> Row:
            row = conn.execute(q.whatsapp_set_status, {
                "id": whatsapp_id, "status": status, "qrcode": qrcode, "retries": retries, "number": number,
                "disconnect_reason": disconnect_reason, "pairing_code": pairing_code,
                "set_pairing_code": set_pairing_code,
            }).fetchone()
            if row is None:
                raise NotFound(f"connection {whatsapp_id}")
            return _show(conn, q, row["company_id"], whatsapp_id)

        return await self.db.run(work)

    async def save_device(self, whatsapp_id: int, device: dict[str, Any] | None) -> None:
        await self.db.execute(self.db.q.whatsapp_set_device,
                              {"id": whatsapp_id, "device": Jsonb(device) if device is not None else None})

    async def to_restore(self) -> list[Row]:
        return await self.db.fetch_all(self.db.q.whatsapps_to_restore)
