"""Companies (tenants). Creating one also creates its first admin and its default settings."""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from storage import settings
from storage.db import Database, Row
from storage.errors import NotFound


async def create_company(db: Database, *, name: str, email: str | None = None, phone: str | None = None,
                         document: str | None = None, status: bool = True, due_date: dt.date | None = None,
                         plan_id: int | None = None, recurrence: str | None = None,
                         admin: dict[str, Any] | None = None) -> tuple[Row, int | None]:
    """Create a company (and, when `admin` is given — name, email, password_hash — its first admin).

    Without `plan_id` it gets the default plan. One transaction: a duplicate admin email leaves no company
    behind. Returns (company with its `plan`, admin id).
    """
    q = db.q

    def work(conn: psycopg.Connection[Row]) -> tuple[Row, int | None]:
        inserted = conn.execute(q.company_insert, {"name": name, "email": email, "phone": phone,
                                                   "document": document, "status": status, "due_date": due_date,
                                                   "plan_id": plan_id, "recurrence": recurrence}).fetchone()
        assert inserted is not None
        company = conn.execute(q.company_get, {"id": inserted["id"]}).fetchone()
        assert company is not None
        settings.seed(conn, company["id"], q)
        admin_id = None
        if admin is not None:
            row = conn.execute(q.user_insert, {
                "company_id": company["id"], "name": admin["name"], "email": admin["email"],
                "password_hash": admin["password_hash"], "profile": "admin",
                "super": admin.get("super", False), "all_ticket": "enable", "whatsapp_id": None,
            }).fetchone()
            assert row is not None
            admin_id = row["id"]
        return company, admin_id

    return await db.run(work)


async def get_company(db: Database, company_id: int) -> Row:
    row = await db.fetch_one(db.q.company_get, {"id": company_id})
    if row is None:
        raise NotFound(f"company {company_id}")
    return row


async def list_companies(db: Database, *, search: str | None, limit: int, offset: int) -> tuple[list[Row], int]:
    params = {"search": search, "limit": limit, "offset": offset}
    rows = await db.fetch_all(db.q.company_list, params)
    if rows:
        return rows, rows[0]["total"]
    return rows, (await db.fetch_value(db.q.company_count_search, params) if offset else 0)  # a page past the end


async def update_company(db: Database, company_id: int, fields: dict[str, Any]) -> Row:
    params = {key: fields.get(key) for key in ("name", "email", "phone", "document", "status", "due_date",
                                               "plan_id", "recurrence")}
    params.update(id=company_id, set_due_date="due_date" in fields)
    if await db.fetch_one(db.q.company_update, params) is None:
        raise NotFound(f"company {company_id}")
    return await get_company(db, company_id)


async def set_schedules(db: Database, company_id: int, schedules: list[dict[str, Any]] | dict[str, Any]) -> Row:
    """The company's business hours (api/schedules.py checked them); the company as get_company reads it."""
    if await db.fetch_one(db.q.company_set_schedules, {"id": company_id, "schedules": Jsonb(schedules)}) is None:
        raise NotFound(f"company {company_id}")
    return await get_company(db, company_id)


async def list_all_companies(db: Database) -> list[Row]:
    """Every company with its plan and stored settings (the SaaS Companies screen's one list)."""
    return await db.fetch_all(db.q.company_list_all)


async def delete_company(db: Database, company_id: int) -> None:
    if await db.execute(db.q.company_delete, {"id": company_id}) == 0:
        raise NotFound(f"company {company_id}")


async def count_companies(db: Database) -> int:
    return await db.fetch_value(db.q.company_count)
