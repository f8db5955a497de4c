"""Plans: what a company may have (users, connections, queues) and use (the features), and the check of
those limits inside the transaction that creates a user, a connection or a queue.

A limit of 0 is no limit. The default plan (`is_default`) is given to companies created without one and
cannot be deleted; a plan some company is on cannot be deleted either.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import attrs
import psycopg

from storage.db import Database, Row
from storage.errors import InvalidReference, NotFound

FEATURES = ("use_campaigns", "use_schedules", "use_internal_chat", "use_external_api", "use_kanban", "use_open_ai",
            "use_integrations")
FIELDS = ("name", "users", "connections", "queues", "value", "recurrence", "is_public", *FEATURES)
RECURRENCES = ("MENSAL", "BIMESTRAL", "TRIMESTRAL", "SEMESTRAL", "ANUAL")
# What each resource's limit is called in the plan, and the error the family answers when it is reached.
LIMITED = {"users": "company_users_count", "connections": "whatsapp_count", "queues": "company_queues_count"}


class LimitReached(Exception):
    """The company already has as many `resource`s as its plan allows."""

    def __init__(self, resource: str, limit: int) -> None:
        super().__init__(f"the company's plan allows at most {limit} {resource}")
        self.resource = resource
        self.limit = limit


def check_limit(conn: psycopg.Connection[Row], q: Any, company_id: int, resource: str) -> None:
    """Inside the caller's transaction, before its insert: lock the company's row and raise LimitReached when
    it already has its plan's number of `resource` (users, connections or queues). The lock is held until the
    caller commits, so the insert that follows is counted by the next creator."""
    caps = conn.execute(q.company_limits_lock, {"company_id": company_id}).fetchone()
    if caps is None:
        raise NotFound(f"company {company_id}")
    limit = caps[resource]
    if limit <= 0:
        return
    count = conn.execute(getattr(q, LIMITED[resource]), {"company_id": company_id}).fetchone()
    if count is not None and count["n"] >= limit:
        raise LimitReached(resource, limit)


@attrs.frozen
class Access:
    """What a company's requests are checked against (api/subscriptions.py)."""

    company_id: int
    active: bool
    due_date: dt.date | None
    grace_days: int
    features: frozenset[str]

    def expired(self, today: dt.date) -> bool:
        """Past its due date plus the grace (a company without a due date never expires)."""
        return self.due_date is not None and today > self.due_date + dt.timedelta(days=self.grace_days)


async def company_access(db: Database, company_id: int) -> Access | None:
    row = await db.fetch_one(db.q.company_access, {"id": company_id})
    if row is None:
        return None
    return Access(company_id=row["id"], active=row["status"], due_date=row["due_date"],
                  grace_days=row["grace_days"], features=frozenset(f for f in FEATURES if row[f]))


# ─── CRUD ───────────────────────────────────────────────────────────────────────────────

def _params(fields: dict[str, Any]) -> dict[str, Any]:
    return {key: fields.get(key) for key in FIELDS}


async def create_plan(db: Database, fields: dict[str, Any]) -> Row:
    params = {"users": 0, "connections": 0, "queues": 0, "value": Decimal(0), "recurrence": "MENSAL",
              "is_public": False, **{feature: True for feature in FEATURES}}
    params.update({key: value for key, value in fields.items() if value is not None})
    row = await db.fetch_one(db.q.plan_insert, params)
    assert row is not None
    return row


async def ensure_default_plan(db: Database) -> None:
    """Make sure a default plan exists (companies created without a plan get it)."""
    await db.execute(db.q.plan_ensure_default)


async def get_plan(db: Database, plan_id: int) -> Row:
    row = await db.fetch_one(db.q.plan_get, {"id": plan_id})
    if row is None:
        raise NotFound(f"plan {plan_id}")
    return row


async def list_plans(db: Database, *, search: str | None, limit: int, offset: int) -> tuple[list[Row], int]:
    params = {"search": search, "limit": limit, "offset": offset}
    rows = await db.fetch_all(db.q.plan_list, params)
    if rows:
        return rows, rows[0]["total"]
    return rows, (await db.fetch_value(db.q.plan_count_search, params) if offset else 0)


async def all_plans(db: Database, *, public_only: bool) -> list[Row]:
    return await db.fetch_all(db.q.plan_all, {"public_only": public_only})


async def update_plan(db: Database, plan_id: int, fields: dict[str, Any]) -> Row:
    row = await db.fetch_one(db.q.plan_update, {**_params(fields), "id": plan_id})
    if row is None:
        raise NotFound(f"plan {plan_id}")
    return row


class PlanInUse(Exception):
    """The plan is the default one, or some company is on it."""


async def delete_plan(db: Database, plan_id: int) -> None:
    plan = await get_plan(db, plan_id)
    if plan["is_default"]:
        raise PlanInUse("the default plan cannot be deleted (companies created without a plan get it)")
    try:
        deleted = await db.execute(db.q.plan_delete, {"id": plan_id})
    except InvalidReference:
        raise PlanInUse("companies are on this plan; move them to another first") from None
    if deleted == 0:
        raise NotFound(f"plan {plan_id}")

