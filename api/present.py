"""Rows → the JSON shapes of COMPAT.md (camelCase names, integer ids, ISO timestamps)."""

from __future__ import annotations

import datetime as dt
from typing import Any


def _iso(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def company(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"], "name": row["name"], "email": row.get("email"), "phone": row.get("phone"),
        "document": row.get("document"), "status": row.get("status"), "dueDate": _iso(row.get("due_date")),
        "createdAt": _iso(row.get("created_at")), "updatedAt": _iso(row.get("updated_at")),
    }


def user(row: dict[str, Any]) -> dict[str, Any]:
    shown: dict[str, Any] = {
        "id": row["id"], "name": row["name"], "email": row["email"], "profile": row["profile"],
        "companyId": row["company_id"], "super": row["super"], "allTicket": row["all_ticket"],
        "online": row.get("online", False), "whatsappId": row.get("whatsapp_id"),
        "queues": row.get("queues") or [],
        "createdAt": _iso(row.get("created_at")), "updatedAt": _iso(row.get("updated_at")),
    }
    if "company" in row:
        shown["company"] = row["company"]
    return shown


def setting(row: dict[str, Any]) -> dict[str, Any]:
    return {"key": row["key"], "value": row["value"], "createdAt": _iso(row.get("created_at")),
            "updatedAt": _iso(row.get("updated_at"))}


def page(name: str, items: list[dict[str, Any]], count: int, limit: int, offset: int) -> dict[str, Any]:
    return {name: items, "count": count, "hasMore": offset + len(items) < count}
