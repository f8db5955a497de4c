"""The sandbox's outbox: what the simulated WhatsApp accepted from zapgate, table `sandbox_outbox` (version 15).

Rows are keyed by connection id and WhatsApp message id: the sandbox is per installation and, like
WhatsApp, knows no companies (connection ids are unique across them). The API reaches these rows only
through `/sandbox/:id`, after finding the connection in the caller's company. The network's side of it
(entries as dicts, errors) is `gateway/whatsapp/sandbox_outbox.py`; tests count sends with `sent`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import psycopg

from storage.db import Database, Row

COLUMNS = ("recipient", "kind", "body", "caption", "filename", "mimetype", "size", "quoted_id", "target_id",
           "emoji", "ack", "error", "sent_at")  # what a send writes (sandbox_outbox_put)


async def accept(db: Database, connection_id: int, row: Mapping[str, Any], *,
                 target: Mapping[str, Any] | None = None, keep: int | None = None) -> Row | None:
    """Record a send (`row`: `message_id` and COLUMNS), committed when this returns; None, or the row
    accepted under its id before (not failed), which counts the send as a duplicate and changes nothing else.

    `target`: the change an edit, revoke or reaction makes to its message (sandbox_outbox_change_target's
    parameters but the connection's), applied with the send. `keep`: then drop all but the connection's
    newest `keep` messages. A new message alone is one statement (no transaction around it)."""
    q = db.q
    params = {"connection_id": connection_id, "message_id": row["message_id"], **{c: row[c] for c in COLUMNS}}

    def work(conn: psycopg.Connection[Row]) -> Row | None:
        while conn.execute(q.sandbox_outbox_put, params).fetchone() is None:  # held, not failed:
            first = conn.execute(q.sandbox_outbox_repeat, params).fetchone()
            if first is not None:  # (unless it went meanwhile: a connection's oldest are trimmed)
                return first
        if target is not None:
            conn.execute(q.sandbox_outbox_change_target, {**target, "connection_id": connection_id})
        if keep is not None:
            conn.execute(q.sandbox_outbox_prune, {"connection_id": connection_id, "offset": max(keep - 1, 0)})
        return None

    return await (db.run(work) if target is not None or keep is not None else db.read(work))


async def sent(db: Database, connection_id: int, *, message_id: str | None = None, limit: int = 10_000) -> list[Row]:
    """The connection's newest `limit` rows (or the one of `message_id`), oldest first: what WhatsApp
    accepted, each once, with `attempts` and `duplicates` counting the sends that carried its id."""
    return await db.fetch_all(db.q.sandbox_outbox_list, {"connection_id": connection_id, "message_id": message_id,
                                                         "limit": limit})


async def count(db: Database, connection_id: int) -> int:
    return int(await db.fetch_value(db.q.sandbox_outbox_count, {"connection_id": connection_id}))


async def acks(db: Database, connection_id: int, message_ids: Sequence[str]) -> dict[str, Row]:
    """`message_id` → its `recipient`, `kind` and `ack`, for those of `message_ids` the outbox holds."""
    rows = await db.fetch_all(db.q.sandbox_outbox_acks, {"connection_id": connection_id,
                                                         "message_ids": list(message_ids)})
    return {row["message_id"]: row for row in rows}


async def raise_acks(db: Database, connection_id: int, acks: Mapping[str, str]) -> None:
    """Each message's ack goes up to the one given (never down)."""
    if acks:
        await db.execute(db.q.sandbox_outbox_raise_acks, {"connection_id": connection_id,
                                                          "message_ids": list(acks), "acks": list(acks.values())})


async def awaiting_receipts(db: Database, connection_id: int, limit: int) -> list[str]:
    """Ids of the connection's newest `limit` messages not read yet, oldest first."""
    rows = await db.fetch_all(db.q.sandbox_outbox_awaiting_receipts, {"connection_id": connection_id, "limit": limit})
    return [row["message_id"] for row in reversed(rows)]


async def forget(db: Database, connection_id: int) -> None:
    await db.execute(db.q.sandbox_outbox_forget, {"connection_id": connection_id})


async def restore(db: Database, rows: Sequence[Mapping[str, Any]]) -> None:
    """Rows kept before version 15 (in the sandbox's journal), in their order; those of connections that
    are gone, or already here, are skipped. One transaction."""
    q = db.q

    def work(conn: psycopg.Connection[Row]) -> None:
        with conn.cursor() as cursor:
            cursor.executemany(q.sandbox_outbox_restore, [dict(row) for row in rows])

    if rows:
        await db.run(work)
