"""Queue options: the menu tree of a queue (`/queue-options`; schema version 14, `queue_options`).

An option belongs to one queue; a root has no parent, a sub-option's queue is its parent's. Every change
of a queue's tree first locks that queue's row (`queue_lock`, FOR NO KEY UPDATE: tickets referencing the
queue are not held up), so the limits below are checked against a tree nobody else is changing. The
limits keep a menu something a contact can answer over WhatsApp:

- `MAX_DEPTH` levels (a root is level 1);
- `MAX_CHILDREN` options under one parent (or roots in one queue);
- `MAX_PER_QUEUE` options in one queue.

Two siblings may share an `option` (what the contact types): ticketz's form renumbers the siblings after
a delete with concurrent saves, which pass through duplicates; the menu takes the first by id. Changes
that drop stored files return their paths (`/media/<token>/<name>`), for the caller to remove from disk
once the change is committed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import psycopg

from storage.db import Database, Row
from storage.errors import NotFound, StorageError

MAX_DEPTH = 10
MAX_CHILDREN = 50
MAX_PER_QUEUE = 1000
LIST_LIMIT = 5000
EDITABLE = ("queue_id", "parent_id", "title", "option", "message", "forward_queue_id", "exit_chatbot")


class OptionRefused(StorageError):
    """A change the tree cannot take (a limit, a parent of another queue, a cycle): a 400 naming `field`."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@attrs.frozen
class MediaChanged:
    row: Row  # the option (or queue) after the change
    replaced: str | None  # the file it had before, to remove once committed


# ─── reads ──────────────────────────────────────────────────────────────────────────────

async def list_options(db: Database, company_id: int, *, queue_id: int | None = None, parent_id: int | None = None,
                       roots: bool = False, option_id: int | None = None) -> list[Row]:
    """The company's options matching every filter given, by id (ticketz's order): `roots` the ones with
    no parent, `parent_id` the children of that option."""
    return await db.fetch_all(db.q.queue_option_list, {
        "company_id": company_id, "queue_id": queue_id, "parent_id": parent_id, "roots": roots, "id": option_id,
        "limit": LIST_LIMIT})


async def options_of_queues(db: Database, company_id: int, queue_ids: Sequence[int]) -> dict[int, list[Row]]:
    """Every option of these queues (the company's), by queue, each queue's by id."""
    by_queue: dict[int, list[Row]] = {queue_id: [] for queue_id in queue_ids}
    if not queue_ids:
        return by_queue
    for row in await db.fetch_all(db.q.queue_options_of_queues, {"company_id": company_id,
                                                                 "queue_ids": list(queue_ids)}):
        by_queue.setdefault(row["queue_id"], []).append(row)
    return by_queue


async def show_option(db: Database, company_id: int, option_id: int) -> Row:
    row = await db.fetch_one(db.q.queue_option_show, {"id": option_id, "company_id": company_id})
    if row is None:
        raise NotFound(f"queue option {option_id}")
    return row


# ─── the tree, inside a transaction ─────────────────────────────────────────────────────

def _show(conn: psycopg.Connection[Row], q: Any, company_id: int, option_id: int, what: str = "queue option") -> Row:
    row = conn.execute(q.queue_option_show, {"id": option_id, "company_id": company_id}).fetchone()
    if row is None:
        raise NotFound(f"{what} {option_id}")
    return row


def _lock_queues(conn: psycopg.Connection[Row], q: Any, company_id: int, queue_ids: set[int]) -> None:
    """Lock the queues whose trees change (in id order: two movers never wait on each other)."""
    for queue_id in sorted(queue_ids):
        if conn.execute(q.queue_lock, {"id": queue_id, "company_id": company_id}).fetchone() is None:
            raise NotFound(f"queue {queue_id}")


def _depth(conn: psycopg.Connection[Row], q: Any, company_id: int, option_id: int) -> int:
    """The level of an option (a root is 1)."""
    return int(conn.execute(q.queue_option_depth, {"id": option_id, "company_id": company_id}).fetchone()["depth"])


def _subtree(conn: psycopg.Connection[Row], q: Any, company_id: int, option_id: int) -> list[Row]:
    """The option and everything under it: `id`, `media_path`, `level` (0 for the option itself)."""
    return conn.execute(q.queue_option_subtree, {"id": option_id, "company_id": company_id}).fetchall()


def _check_room(conn: psycopg.Connection[Row], q: Any, company_id: int, queue_id: int, parent_id: int | None,
                *, adding: int, height: int) -> None:
    """Whether a subtree of `adding` options, `height` levels tall, fits under `parent_id` in `queue_id`."""
    level = _depth(conn, q, company_id, parent_id) if parent_id is not None else 0
    if level + height > MAX_DEPTH:
        raise OptionRefused("parentId", f"menus are at most {MAX_DEPTH} levels deep")
    counts = conn.execute(q.queue_option_counts, {"company_id": company_id, "queue_id": queue_id,
                                                  "parent_id": parent_id}).fetchone()
    if counts["siblings"] >= MAX_CHILDREN:
        where = "this option" if parent_id is not None else "a queue's first level"
        raise OptionRefused("parentId" if parent_id is not None else "queueId",
                            f"{where} has {MAX_CHILDREN} options already (the most a menu takes)")
    if counts["in_queue"] + adding > MAX_PER_QUEUE:
        raise OptionRefused("queueId", f"a queue has at most {MAX_PER_QUEUE} options")


def _check_forward(conn: psycopg.Connection[Row], q: Any, company_id: int, values: dict[str, Any]) -> None:
    if values["forward_queue_id"] is not None and values["exit_chatbot"]:
        raise OptionRefused("exitChatbot", "an option either forwards to a queue or exits the chatbot, not both")
    forward = values["forward_queue_id"]
    if forward is not None and conn.execute(q.queue_show, {"id": forward, "company_id": company_id}).fetchone() is None:
        raise NotFound(f"queue {forward}")


def _place(conn: psycopg.Connection[Row], q: Any, company_id: int, queue_id: int | None,
           parent_id: int | None) -> int:
    """The queue of an option placed under `parent_id` (with `queue_id` when given: it must be the parent's)."""
    if parent_id is None:
        if queue_id is None:
            raise OptionRefused("queueId", "is required for an option without a parent")
        return queue_id
    parent = _show(conn, q, company_id, parent_id, "parent option")
    if queue_id is not None and parent["queue_id"] != queue_id:
        raise OptionRefused("parentId", f"option {parent_id} belongs to another queue than {queue_id}")
    return int(parent["queue_id"])


async def create_option(db: Database, company_id: int, fields: dict[str, Any]) -> Row:
    """A new option; `fields` has `queue_id` and/or `parent_id` (the queue is the parent's when only the
    parent is given), `title`, `option`, `message`, `forward_queue_id`, `exit_chatbot`. A queue, parent or
    forward queue the company has not is a NotFound; what the tree cannot take, an OptionRefused."""
    q = db.q
    values = {"title": "", "option": "", "message": "", "forward_queue_id": None, "exit_chatbot": False,
              "queue_id": None, "parent_id": None, **{k: v for k, v in fields.items() if k in EDITABLE}}

    def work(conn: psycopg.Connection[Row]) -> Row:
        queue_id = _place(conn, q, company_id, values["queue_id"], values["parent_id"])
        _lock_queues(conn, q, company_id, {queue_id})
        queue_id = _place(conn, q, company_id, values["queue_id"], values["parent_id"])  # as it is, locked
        _check_room(conn, q, company_id, queue_id, values["parent_id"], adding=1, height=1)
        _check_forward(conn, q, company_id, values)
        row = conn.execute(q.queue_option_insert, {**values, "queue_id": queue_id, "company_id": company_id}).fetchone()
        assert row is not None
        return row

    return await db.run(work)


async def update_option(db: Database, company_id: int, option_id: int, changes: dict[str, Any]) -> Row:
    """Change the given fields (of EDITABLE). A new `parent_id` (None: a root) moves the option with
    everything under it, into its new parent's queue; a root moves to another queue's first level by a new
    `queue_id`. A sub-option's queue is its parent's: another one is refused, as is moving an option under
    itself."""
    q = db.q

    def work(conn: psycopg.Connection[Row]) -> Row:
        existing = _show(conn, q, company_id, option_id)
        values = {key: changes.get(key, existing[key]) for key in EDITABLE}
        if (values["parent_id"] is not None and "parent_id" not in changes
                and values["queue_id"] != existing["queue_id"]):
            raise OptionRefused("queueId", "a sub-option is in its parent's queue: move it with parentId")
        moved = values["parent_id"] != existing["parent_id"] or values["queue_id"] != existing["queue_id"]
        if not moved:
            _lock_queues(conn, q, company_id, {existing["queue_id"]})
        else:
            named = changes.get("queue_id") if values["parent_id"] is not None else values["queue_id"]
            target = _place(conn, q, company_id, named, values["parent_id"])
            _lock_queues(conn, q, company_id, {existing["queue_id"], target})
            target = _place(conn, q, company_id, named, values["parent_id"])  # as it is, locked
            values["queue_id"] = target
            subtree = _subtree(conn, q, company_id, option_id)
            if values["parent_id"] in {row["id"] for row in subtree}:
                raise OptionRefused("parentId", "an option cannot be moved under itself or one of its sub-options")
            adding = len(subtree) if target != existing["queue_id"] else 0
            _check_room(conn, q, company_id, target, values["parent_id"], adding=adding,
                        height=1 + max(row["level"] for row in subtree))
            if target != existing["queue_id"]:
                conn.execute(q.queue_options_set_queue, {"company_id": company_id, "queue_id": target,
                                                         "ids": [row["id"] for row in subtree]})
        _check_forward(conn, q, company_id, values)
        row = conn.execute(q.queue_option_update, {**values, "id": option_id, "company_id": company_id}).fetchone()
        assert row is not None
        return row

    return await db.run(work)


async def delete_option(db: Database, company_id: int, option_id: int) -> tuple[Row, list[str]]:
    """Delete an option and everything under it (the foreign key cascades); (the option, the stored
    files they had)."""
    q = db.q

    def work(conn: psycopg.Connection[Row]) -> tuple[Row, list[str]]:
        existing = _show(conn, q, company_id, option_id)
        _lock_queues(conn, q, company_id, {existing["queue_id"]})
        media = [row["media_path"] for row in _subtree(conn, q, company_id, option_id) if row["media_path"]]
        if conn.execute(q.queue_option_delete, {"id": option_id, "company_id": company_id}).rowcount == 0:
            raise NotFound(f"queue option {option_id}")
        return existing, media

    return await db.run(work)


async def set_option_media(db: Database, company_id: int, option_id: int, media_path: str | None,
                           media_name: str | None) -> MediaChanged:
    """The option's file (None: none); the one it replaces comes back for removal."""
    row = await db.fetch_one(db.q.queue_option_set_media, {"id": option_id, "company_id": company_id,
                                                           "media_path": media_path, "media_name": media_name})
    if row is None:
        raise NotFound(f"queue option {option_id}")
    return MediaChanged(row=row, replaced=row["replaced_media_path"])
