"""Per-company settings: key → text value, seeded with defaults when a company is created."""

from __future__ import annotations

from typing import Any

import psycopg

from storage.db import Database, Row

# The keys a company has, with their defaults (the original's names and values).
DEFAULTS: dict[str, str] = {
    "userRating": "disabled",
    "scheduleType": "disabled",
    "CheckMsgIsGroup": "enabled",  # "enabled": messages from groups are ignored
    "call": "disabled",
    "chatBotType": "text",
    "sendGreetingAccepted": "disabled",
    "sendMsgTransfTicket": "disabled",
    "sendGreetingMessageOneQueues": "disabled",
    "sendSignMessage": "enabled",
    "acceptCallWhatsapp": "disabled",
    "closeTicketApi": "disabled",
    "ticketInactivityMinutes": "0",
    "connectionLimit": "0",  # WhatsApp connections the company may have; 0: no limit (set by a super admin)
}

# Settings only a super admin may change (limits of a tenant).
SUPER_ONLY = frozenset({"connectionLimit"})


def seed(conn: psycopg.Connection[Any], company_id: int, q: Any) -> None:
    """Insert the default settings of a company (inside the caller's transaction)."""
    conn.execute(q.settings_seed, {"company_id": company_id, "keys": list(DEFAULTS),
                                   "values": list(DEFAULTS.values())})


async def list_settings(db: Database, company_id: int) -> list[Row]:
    return await db.fetch_all(db.q.settings_list, {"company_id": company_id})


async def set_setting(db: Database, company_id: int, key: str, value: str) -> Row:
    row = await db.fetch_one(db.q.setting_upsert, {"company_id": company_id, "key": key, "value": value})
    assert row is not None
    return row


async def get_int_setting(db: Database, company_id: int, key: str) -> int:
    value = await get_setting(db, company_id, key)
    return int(value) if value.strip().isdigit() else int(DEFAULTS.get(key, "0"))


async def get_setting(db: Database, company_id: int, key: str) -> str:
    value = await db.fetch_value(db.q.setting_get, {"company_id": company_id, "key": key})
    return DEFAULTS.get(key, "") if value is None else value
