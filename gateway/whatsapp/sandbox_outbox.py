"""The sandbox's outbox: what the simulated WhatsApp accepted from zapgate, one entry per message id.

WhatsApp's servers keep what they accepted and keep one message per id, so the outbox is the one record
of sends the sandbox has (the network keeps no copy of it): `SandboxNetwork` asks its `OutboxStore`
whether an id was sent (idempotent sends), what a message's ack is (receipts), and lists it
(``GET /sandbox/:id/outbox``). Two stores answer the same way:

- `DatabaseOutbox`: table ``sandbox_outbox`` of zapgate's PostgreSQL (``storage/sandbox_outbox.py``),
  what `zapgate serve` uses. A send is committed before it is answered, so it outlives a kill -9 of
  zapgate, and so does the idempotency of sends: a resend of an accepted id after a restart is
  counted (`duplicates`), not sent again. Its failures are `SandboxError` ``ERR_SANDBOX_OUTBOX``.
- `MemoryOutbox`: the same in memory (unit tests under trio's autojump clock, ``SANDBOX_JOURNAL=off``).

An entry is a dict: ``id, to, kind, body, caption, filename, mimetype, size, quotedId, ack`` (by name:
sent, delivered, read, played; failed for a send WhatsApp refused), ``timestamp`` (ISO 8601, UTC, whole
seconds), ``target_id, emoji`` (a reaction's, edit's or revoke's), ``reaction, deleted, edited`` (what
later commands did to it), ``error`` and the counters: ``attempts`` (sends that carried its id) and
``duplicates`` (those that repeated an id already accepted: answered with the first, not sent again).
A send that failed is replaced by a retry under its id. Each connection keeps its newest `OUTBOX_MAX`.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Protocol

import attrs
import trio

from gateway.whatsapp.sandbox_state import SandboxError
from storage import sandbox_outbox as rows
from storage.db import Database
from storage.errors import StorageError

OUTBOX_MAX = 10_000  # messages kept per connection (the oldest go)
PRUNE_EVERY = 500  # sends per connection between two trims of the table (it holds at most this many more)

NO_RECEIPTS = ("reaction", "edit", "revoke")  # kinds a recipient's phone sends no receipts for

Entry = dict[str, Any]


@attrs.frozen
class TargetChange:
    """What an edit, revoke or reaction does to the message it targets (if the outbox holds it)."""

    target_id: str
    edit: bool = False
    body: str | None = None  # an edit's new text
    revoke: bool = False
    react: bool = False
    reaction: str | None = None  # a reaction's emoji (None: removed)


@attrs.frozen
class Recorded:
    """What the outbox holds of a message, for its receipts."""

    to: str
    kind: str
    ack: str


class OutboxStore(Protocol):
    """Where a network keeps its outbox (see the module docstring). Each call is atomic: cancelled, it either
    did nothing or all; `SandboxError` when the store cannot answer."""

    durable: bool  # outlives the process

    async def accept(self, connection_id: int, entry: Entry, *, target: TargetChange | None = None) -> Entry | None:
        """Record a send (with the change it makes to its target); None, or the entry accepted under its id
        before (and not failed), which counts the send as a duplicate and changes nothing else."""
        ...

    async def entries(self, connection_id: int, *, message_id: str | None = None) -> list[Entry]:
        """The connection's outbox (or the entry of `message_id`), oldest first; copies."""
        ...

    async def count(self, connection_id: int) -> int: ...

    async def acks(self, connection_id: int, message_ids: Iterable[str]) -> dict[str, Recorded]:
        """Those of `message_ids` the outbox holds."""
        ...

    async def raise_acks(self, connection_id: int, acks: Mapping[str, str]) -> None:
        """Receipts were given: each message's ack goes up to the one named (never down, never from failed)."""
        ...

    async def awaiting_receipts(self, connection_id: int, limit: int) -> list[str]:
        """Ids of the newest `limit` messages not yet read that get receipts, oldest first."""
        ...

    async def forget(self, connection_id: int) -> None: ...

    async def restore(self, connection_id: int, entries: list[Entry]) -> None:
        """Entries kept elsewhere before (an old journal's), in order; ids held already are skipped."""
        ...


_ACK_ORDER = ("sent", "delivered", "read", "played")


class MemoryOutbox:
    """An `OutboxStore` in memory: gone with the process."""

    durable = False

    def __init__(self) -> None:
        self._boxes: dict[int, collections.OrderedDict[str, Entry]] = {}

    async def accept(self, connection_id: int, entry: Entry, *, target: TargetChange | None = None) -> Entry | None:
        await trio.lowlevel.checkpoint()  # like a database call: cancellable before, atomic after
        box = self._boxes.setdefault(connection_id, collections.OrderedDict())
        first = box.get(entry["id"])
        if first is not None and first["ack"] != "failed":
            first["attempts"] += 1
            first["duplicates"] += 1
            return dict(first)
        box.pop(entry["id"], None)
        box[entry["id"]] = {**entry, "reaction": None, "deleted": False, "edited": False,
                            "attempts": first["attempts"] + 1 if first else 1,
                            "duplicates": first["duplicates"] if first else 0}
        if target is not None and (changed := box.get(target.target_id)) is not None:
            if target.edit:
                changed.update(body=target.body, edited=True)
            if target.revoke:
                changed["deleted"] = True
            if target.react:
                changed["reaction"] = target.reaction
        while len(box) > OUTBOX_MAX:
            box.popitem(last=False)
        return None

    async def entries(self, connection_id: int, *, message_id: str | None = None) -> list[Entry]:
        await trio.lowlevel.checkpoint()
        box = self._boxes.get(connection_id, {})
        if message_id is not None:
            return [dict(box[message_id])] if message_id in box else []
        return [dict(entry) for entry in box.values()]

    async def count(self, connection_id: int) -> int:
        await trio.lowlevel.checkpoint()
        return len(self._boxes.get(connection_id, ()))

    async def acks(self, connection_id: int, message_ids: Iterable[str]) -> dict[str, Recorded]:
        await trio.lowlevel.checkpoint()
        box = self._boxes.get(connection_id, {})
        return {mid: Recorded(box[mid]["to"], box[mid]["kind"], box[mid]["ack"]) for mid in message_ids if mid in box}

    async def raise_acks(self, connection_id: int, acks: Mapping[str, str]) -> None:
        await trio.lowlevel.checkpoint()
        box = self._boxes.get(connection_id, {})
        for mid, ack in acks.items():
            entry = box.get(mid)
            if entry is not None and entry["ack"] != "failed" and \
                    _ACK_ORDER.index(ack) > _ACK_ORDER.index(entry["ack"]):
                entry["ack"] = ack

    async def awaiting_receipts(self, connection_id: int, limit: int) -> list[str]:
        await trio.lowlevel.checkpoint()
        waiting = [mid for mid, entry in self._boxes.get(connection_id, {}).items()
                   if entry["ack"] in ("sent", "delivered") and entry["kind"] not in NO_RECEIPTS]
        return waiting[-limit:] if limit > 0 else []

    async def forget(self, connection_id: int) -> None:
        await trio.lowlevel.checkpoint()
        self._boxes.pop(connection_id, None)

    async def restore(self, connection_id: int, entries: list[Entry]) -> None:
        await trio.lowlevel.checkpoint()
        box = self._boxes.setdefault(connection_id, collections.OrderedDict())
        for entry in entries:
            if entry["id"] not in box:
                box[entry["id"]] = {"attempts": 1, "duplicates": 0, **entry}


class DatabaseOutbox:
    """An `OutboxStore` in zapgate's PostgreSQL (table ``sandbox_outbox``)."""

    durable = True

    def __init__(self, db: Database) -> None:
        self._db = db
        self._since_trim: dict[int, int] = {}  # connection id → sends since its outbox was last trimmed

    async def accept(self, connection_id: int, entry: Entry, *, target: TargetChange | None = None) -> Entry | None:
        since = self._since_trim.get(connection_id, PRUNE_EVERY - 1) + 1  # the first send of a run trims
        change = None if target is None else {"target_id": target.target_id, "edit": target.edit,
                                              "body": target.body, "revoke": target.revoke,
                                              "react": target.react, "reaction": target.reaction}
        with _outbox_errors():
            first = await rows.accept(self._db, connection_id, _row_of(entry), target=change,
                                      keep=OUTBOX_MAX if since >= PRUNE_EVERY else None)
        self._since_trim[connection_id] = 0 if since >= PRUNE_EVERY else since
        return None if first is None else _entry_of(first)

    async def entries(self, connection_id: int, *, message_id: str | None = None) -> list[Entry]:
        with _outbox_errors():
            found = await rows.sent(self._db, connection_id, message_id=message_id, limit=OUTBOX_MAX)
        return [_entry_of(row) for row in found]

    async def count(self, connection_id: int) -> int:
        with _outbox_errors():
            return min(await rows.count(self._db, connection_id), OUTBOX_MAX)

    async def acks(self, connection_id: int, message_ids: Iterable[str]) -> dict[str, Recorded]:
        with _outbox_errors():
            found = await rows.acks(self._db, connection_id, list(message_ids))
        return {mid: Recorded(row["recipient"], row["kind"], row["ack"]) for mid, row in found.items()}

    async def raise_acks(self, connection_id: int, acks: Mapping[str, str]) -> None:
        with _outbox_errors():
            await rows.raise_acks(self._db, connection_id, acks)

    async def awaiting_receipts(self, connection_id: int, limit: int) -> list[str]:
        with _outbox_errors():
            return await rows.awaiting_receipts(self._db, connection_id, limit)

    async def forget(self, connection_id: int) -> None:
        with _outbox_errors():
            await rows.forget(self._db, connection_id)
        self._since_trim.pop(connection_id, None)

    async def restore(self, connection_id: int, entries: list[Entry]) -> None:
        full = [{"reaction": None, "deleted": False, "edited": False, **entry} for entry in entries]
        with _outbox_errors():
            await rows.restore(self._db, [{**_row_of(entry), "connection_id": connection_id,
                                           "reaction": entry["reaction"], "deleted": bool(entry["deleted"]),
                                           "edited": bool(entry["edited"])} for entry in full])


@contextlib.contextmanager
def _outbox_errors() -> Iterator[None]:
    """Storage errors become the sandbox's (STYLE 11: one place per boundary)."""
    try:
        yield
    except StorageError as error:
        raise SandboxError("ERR_SANDBOX_OUTBOX", f"the sandbox's outbox cannot be used: {error}") from None


def _row_of(entry: Entry) -> dict[str, Any]:
    return {"message_id": entry["id"], "recipient": entry["to"], "kind": entry["kind"], "body": entry["body"],
            "caption": entry["caption"], "filename": entry["filename"], "mimetype": entry["mimetype"],
            "size": entry["size"], "quoted_id": entry["quotedId"], "target_id": entry["target_id"],
            "emoji": entry["emoji"], "ack": entry["ack"], "error": entry["error"],
            "sent_at": dt.datetime.fromisoformat(entry["timestamp"])}


def _entry_of(row: Mapping[str, Any]) -> Entry:
    return {"id": row["message_id"], "to": row["recipient"], "kind": row["kind"], "body": row["body"],
            "caption": row["caption"], "filename": row["filename"], "mimetype": row["mimetype"], "size": row["size"],
            "quotedId": row["quoted_id"], "ack": row["ack"], "timestamp": row["sent_at"].astimezone(dt.UTC).isoformat(),
            "target_id": row["target_id"], "emoji": row["emoji"], "reaction": row["reaction"],
            "deleted": row["deleted"], "edited": row["edited"], "error": row["error"],
            "attempts": row["attempts"], "duplicates": row["duplicates"]}
