"""Webhooks of a company (`/webhooks`) and their deliveries: the outbox the delivery actor posts from.

Delivery rows are not written here: the triggers of migration 0023 write them in the transaction of each
change (a message stored, an ack, a ticket's status…), whatever code path commits it. This module keeps
the endpoints (every statement scoped by company), and gives the delivery actor (actors/webhooks.py) its
`DeliveryStore`: claim the due rows (a lease each), record an attempt's outcome, prune old rows.
"""

from __future__ import annotations

import base64
import secrets
from pathlib import Path
from typing import Any

import attrs
import psycopg

from storage.db import Database, Row
from storage.errors import NotFound
from storage.sql import load_queries

Q = load_queries(Path(__file__).with_name("webhooks.sql"))

SECRET_PREFIX = "whsec_"  # the Standard Webhooks secret format: whsec_ + base64 of the key
SECRET_BYTES = 32
EVENTS = ("message.created", "message.updated", "ticket.created", "ticket.updated", "contact.updated",
          "session.status", "campaign.updated", "campaign.progress", "schedule.updated")
TEST_EVENT = "webhook.test"
EXCERPT = 1000  # characters of a response body kept on the delivery
DEFER = 5.0  # seconds at least that a delivery waiting behind its conversation's first is left unread by claims
DEFER_SCAN = 2_000  # due rows of an endpoint a claim looks at for deferring, at most


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


# ─── endpoints ──────────────────────────────────────────────────────────────────────────

async def list_webhooks(db: Database, company_id: int, *, limit: int, offset: int) -> tuple[list[Row], int]:
    params = {"company_id": company_id, "limit": limit, "offset": offset}
    rows = await db.fetch_all(Q.webhook_page, params)
    if rows:
        return rows, rows[0]["total"]
    return rows, (await db.fetch_value(Q.webhook_count, params) if offset else 0)


async def show_webhook(db: Database, company_id: int, webhook_id: int) -> Row:
    row = await db.fetch_one(Q.webhook_show, {"id": webhook_id, "company_id": company_id})
    if row is None:
        raise NotFound(f"webhook {webhook_id}")
    return row


async def create_webhook(db: Database, company_id: int, *, url: str, events: list[str], enabled: bool,
                         description: str) -> Row:
    row = await db.fetch_one(Q.webhook_insert, {"company_id": company_id, "url": url, "events": events,
                                                "enabled": enabled, "description": description,
                                                "secret": new_secret()})
    assert row is not None
    return row


async def update_webhook(db: Database, company_id: int, webhook_id: int, fields: dict[str, Any]) -> Row:
    params = {"id": webhook_id, "company_id": company_id, "url": None, "events": None, "description": None,
              "enabled": None, **fields}
    row = await db.fetch_one(Q.webhook_update, params)
    if row is None:
        raise NotFound(f"webhook {webhook_id}")
    return row


async def rotate_secret(db: Database, company_id: int, webhook_id: int) -> Row:
    row = await db.fetch_one(Q.webhook_set_secret, {"id": webhook_id, "company_id": company_id,
                                                    "secret": new_secret()})
    if row is None:
        raise NotFound(f"webhook {webhook_id}")
    return row


async def delete_webhook(db: Database, company_id: int, webhook_id: int) -> None:
    """The endpoint and its deliveries (pending ones are never posted)."""
    if await db.fetch_one(Q.webhook_delete, {"id": webhook_id, "company_id": company_id}) is None:
        raise NotFound(f"webhook {webhook_id}")


async def test_delivery(db: Database, company_id: int, webhook_id: int) -> Row:
    row = await db.fetch_one(Q.delivery_test, {"id": webhook_id, "company_id": company_id})
    if row is None:
        raise NotFound(f"webhook {webhook_id}")
    return row


async def deliveries_page(db: Database, company_id: int, webhook_id: int, *, status: str | None, limit: int,
                          offset: int) -> tuple[list[Row], int]:
    params = {"company_id": company_id, "webhook_id": webhook_id, "status": status, "limit": limit,
              "offset": offset}
    rows = await db.fetch_all(Q.delivery_page, params)
    if rows:
        return rows, rows[0]["total"]
    return rows, (await db.fetch_value(Q.delivery_count, params) if offset else 0)


# ─── the delivery actor's store ─────────────────────────────────────────────────────────

@attrs.frozen
class Claimed:
    """One attempt to make: the delivery and where it goes (read when claimed: a rotated secret signs the next)."""

    id: int
    uid: str
    company_id: int
    webhook_id: int
    event: str
    payload: Any
    attempts: int  # including this one
    age: float  # seconds since the change, when claimed
    url: str
    secret: str
    order_key: str | None = None  # 'ticket:ID': the deliveries of one key go out one after another

    @property
    def message_id(self) -> str:
        """The `webhook-id` header: the same on every attempt of this delivery."""
        return f"msg_{self.uid.replace('-', '')}"


@attrs.frozen
class Outcome:
    """What one attempt came to: `delivered`, else retried after `delay` seconds or given up (`give_up`)."""

    delivered: bool
    code: int | None = None
    response: str | None = None
    error: str | None = None
    delay: float = 0.0
    give_up: bool = False


@attrs.frozen
class Disabled:
    webhook_id: int
    company_id: int
    reason: str


class DeliveryStore:
    """The rows the delivery actor works from (PostgreSQL); tests of the actor use an in-memory one."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def claim(self, *, limit: int, per_endpoint: int, full: list[int], room: dict[int, int],
                    lease: float) -> list[Claimed]:
        """Up to `limit` due deliveries, at most `room[webhook]` (default: `per_endpoint`) of each endpoint, none
        of the endpoints in `full`; each leased for `lease` seconds and its attempt counted."""

        def work(conn: psycopg.Connection[Row]) -> list[Claimed]:
            conn.execute(Q.delivery_defer_followers, {"defer": DEFER, "limit": DEFER_SCAN, "full": full})
            rows = conn.execute(Q.delivery_candidates, {"limit": limit, "full": full,
                                                        "per_endpoint": per_endpoint}).fetchall()
            taken: list[Row] = []
            left = dict(room)
            for row in rows:
                free = left.get(row["webhook_id"], per_endpoint)
                if free <= 0:
                    continue
                left[row["webhook_id"]] = free - 1
                taken.append(row)
            if taken:
                conn.execute(Q.delivery_lease, {"ids": [row["id"] for row in taken], "lease": lease})
            return [Claimed(id=row["id"], uid=str(row["uid"]), company_id=row["company_id"],
                            webhook_id=row["webhook_id"], event=row["event"], payload=row["payload"],
                            attempts=row["attempts"] + 1, age=row["age"], url=row["url"], secret=row["secret"],
                            order_key=row["order_key"])
                    for row in taken]

        return await self.db.run(work)

    async def record(self, delivery: Claimed, outcome: Outcome, *, disable_after: float) -> Disabled | None:
        """The attempt's outcome on its row and on its endpoint's failing streak; the endpoint when this
        attempt disabled it."""
        response = outcome.response[:EXCERPT] if outcome.response else outcome.response
        error = outcome.error[:EXCERPT] if outcome.error else outcome.error

        def work(conn: psycopg.Connection[Row]) -> Disabled | None:
            if (outcome.delivered or outcome.give_up) and delivery.order_key is not None:
                conn.execute(Q.delivery_release_followers, {"webhook_id": delivery.webhook_id,
                                                            "order_key": delivery.order_key})
            if outcome.delivered:
                conn.execute(Q.delivery_succeeded, {"id": delivery.id, "code": outcome.code, "response": response})
                conn.execute(Q.webhook_succeeded, {"id": delivery.webhook_id})
                return None
            conn.execute(Q.delivery_retry, {"id": delivery.id, "code": outcome.code, "response": response,
                                            "error": error, "delay": outcome.delay, "give_up": outcome.give_up})
            reason = (f"disabled after failing for {disable_after:g} s; last attempt: "
                      f"{error or f'HTTP {outcome.code}'}")[:EXCERPT]
            row = conn.execute(Q.webhook_failed, {"id": delivery.webhook_id, "disable_after": disable_after,
                                                  "reason": reason}).fetchone()
            if row is not None and not row["enabled"]:
                return Disabled(row["id"], row["company_id"], row["disabled_reason"])
            return None

        return await self.db.run(work)

    async def prune(self, *, keep: float, limit: int = 5_000) -> int:
        return await self.db.execute(Q.deliveries_prune, {"keep": keep, "limit": limit})
