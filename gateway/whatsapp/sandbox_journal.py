"""The sandbox's journal: what WhatsApp's servers would keep across a restart of zapgate, in SQLite.

WhatsApp keeps a device's inbound messages (and receipts) until the device acknowledges them, the
messages the device sent, and who is who (phone ↔ LID). So the sandbox keeps, per connection id:
the events not yet settled (queued or delivered; `pending`), the outbox (`outbox`, what
``GET /sandbox/:id/outbox`` lists, and the ids that make a send idempotent), a logout or ban the
device has not heard of yet (`lines`), and, network-wide, the phone ↔ LID pairs (`lids`). A paired
device needs nothing here: it reconnects through the device saved on its connection row.

Durability: WAL with ``synchronous=NORMAL`` — a commit is in the WAL file when it returns (no
fsync), so it survives a kill -9 of the process; a power loss may lose the last commits, which is
out of scope for a simulator. ``locking_mode=EXCLUSIVE``: one process owns the file (a second
process on the same data dir gets `JournalBusy` and runs its sandbox in memory); it also saves the
shared-memory index, so a commit costs ~15 µs. Media bytes are not journaled (they stay in memory):
after a restart, the media of a message still pending cannot be downloaded.

Writes are staged by the network and made durable by `commit()`; `settle()` only notes the event's
sequence number, and the notes are deleted in one statement with the next commit or by `flush()`
(at most every `SETTLE_FLUSH_INTERVAL` seconds or `SETTLE_FLUSH_BATCH` notes): a settle lost to a
crash only means one more redelivery, which intake absorbs. Everything runs on the trio thread
(plain sync calls; no thread may touch a journal).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from gateway.whatsapp.sandbox_state import SandboxError, _Ending
from gateway.whatsapp.transport import Ack, InboundMessage, MediaRef, MessageKind, Receipt

logger = logging.getLogger("zapgate.sandbox")

SETTLE_FLUSH_INTERVAL = 0.05  # seconds a settle may wait before its row is deleted
SETTLE_FLUSH_BATCH = 1_000  # ... or this many settles waiting

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pending (
    seq INTEGER PRIMARY KEY,
    connection_id INTEGER NOT NULL,
    event TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS pending_connection ON pending (connection_id);
CREATE TABLE IF NOT EXISTS outbox (
    connection_id INTEGER NOT NULL,
    id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    entry TEXT NOT NULL,
    PRIMARY KEY (connection_id, id)
);
CREATE TABLE IF NOT EXISTS lids (
    phone TEXT PRIMARY KEY,
    lid TEXT NOT NULL,
    seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS lines (
    connection_id INTEGER PRIMARY KEY,
    pending_unlink TEXT
);
"""

Settle = Callable[[], None]


class JournalBusy(Exception):
    """Another process holds the journal file."""


def _journal_error(exc: sqlite3.Error) -> SandboxError:
    return SandboxError("ERR_SANDBOX_JOURNAL", f"the sandbox journal cannot be written: {exc}")


@attrs.define
class Loaded:
    """What a journal held when it was opened (each list in its original order)."""

    pending: dict[int, list[tuple[int, InboundMessage | Receipt]]] = attrs.Factory(dict)  # cid → [(seq, event)]
    outbox: dict[int, list[dict[str, Any]]] = attrs.Factory(dict)  # cid → entries
    lids: list[tuple[str, str]] = attrs.Factory(list)  # (phone digits, LID JID), oldest first
    unlinks: dict[int, _Ending] = attrs.Factory(dict)
    last_seq: int = 0


class SandboxJournal:
    """One SQLite file (see the module docstring). `open` it, `load` it once, then stage and commit."""

    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        self._db = connection
        self.path = path
        self._settled: list[tuple[int]] = []
        self._last_flush = time.monotonic()

    @classmethod
    def open(cls, path: Path) -> SandboxJournal:
        """Open (or create) the journal at `path`; JournalBusy if another process holds it."""
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, isolation_level=None, timeout=0.5)
        try:
            db.execute("PRAGMA locking_mode=EXCLUSIVE")  # before WAL: no shared-memory index
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
            db.execute("BEGIN IMMEDIATE")  # takes the exclusive lock now (kept until close)
            db.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            db.close()
            if "locked" in str(exc) or "busy" in str(exc):
                raise JournalBusy(f"{path} is in use by another process") from None
            raise
        return cls(db, path)

    def load(self, settle_for: Callable[[int, int], Settle]) -> Loaded:
        """Everything the journal holds; events get their settle callback from `settle_for(cid, seq)`."""
        loaded = Loaded()
        seqs = [0]
        for seq, cid, text in self._db.execute("SELECT seq, connection_id, event FROM pending ORDER BY seq"):
            event = decode_event(text, settle_for(cid, seq))
            if event is not None:
                loaded.pending.setdefault(cid, []).append((seq, event))
            seqs.append(seq)
        for cid, seq, text in self._db.execute("SELECT connection_id, seq, entry FROM outbox ORDER BY seq"):
            loaded.outbox.setdefault(cid, []).append(json.loads(text))
            seqs.append(seq)
        for phone, lid, seq in self._db.execute("SELECT phone, lid, seq FROM lids ORDER BY seq"):
            loaded.lids.append((phone, lid))
            seqs.append(seq)
        for cid, text in self._db.execute("SELECT connection_id, pending_unlink FROM lines"):
            if text:
                loaded.unlinks[cid] = _Ending(**json.loads(text))
        loaded.last_seq = max(seqs)
        return loaded

    # ─── staging (made durable by commit; SandboxError if the file cannot be written) ─────

    def _execute(self, sql: str, params: tuple[Any, ...]) -> None:
        try:
            if not self._db.in_transaction:
                self._db.execute("BEGIN")
            self._db.execute(sql, params)
        except sqlite3.Error as exc:
            self.rollback()
            raise _journal_error(exc) from None

    def put_event(self, connection_id: int, seq: int, event: InboundMessage | Receipt) -> None:
        self._execute("INSERT OR REPLACE INTO pending (seq, connection_id, event) VALUES (?, ?, ?)",
                      (seq, connection_id, encode_event(event)))

    def put_sent(self, connection_id: int, seq: int, entry: dict[str, Any]) -> None:
        self._execute("INSERT OR REPLACE INTO outbox (connection_id, id, seq, entry) VALUES (?, ?, ?, ?)",
                      (connection_id, entry["id"], seq, json.dumps(entry)))

    def update_sent(self, connection_id: int, entry: dict[str, Any]) -> None:
        self._execute("UPDATE outbox SET entry = ? WHERE connection_id = ? AND id = ?",
                      (json.dumps(entry), connection_id, entry["id"]))

    def drop_sent(self, connection_id: int, message_id: str) -> None:
        self._execute("DELETE FROM outbox WHERE connection_id = ? AND id = ?", (connection_id, message_id))

    def put_lid(self, phone: str, lid: str, seq: int) -> None:
        self._execute("INSERT OR REPLACE INTO lids (phone, lid, seq) VALUES (?, ?, ?)", (phone, lid, seq))

    def drop_lid(self, phone: str) -> None:
        self._execute("DELETE FROM lids WHERE phone = ?", (phone,))

    def set_unlink(self, connection_id: int, ending: _Ending | None) -> None:
        if ending is None:
            self._execute("DELETE FROM lines WHERE connection_id = ?", (connection_id,))
        else:
            self._execute("INSERT OR REPLACE INTO lines (connection_id, pending_unlink) VALUES (?, ?)",
                          (connection_id, json.dumps(attrs.asdict(ending))))

    def forget(self, connection_id: int) -> None:
        for table in ("pending", "outbox", "lines"):
            self._execute(f"DELETE FROM {table} WHERE connection_id = ?", (connection_id,))

    def commit(self) -> None:
        """Make everything staged durable (and delete the settled events); SandboxError if it cannot."""
        try:
            if self._settled:
                if not self._db.in_transaction:
                    self._db.execute("BEGIN")
                self._db.executemany("DELETE FROM pending WHERE seq = ?", self._settled)
                self._settled = []
                self._last_flush = time.monotonic()
            if self._db.in_transaction:
                self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            self.rollback()
            raise _journal_error(exc) from None

    def rollback(self) -> None:
        try:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
        except sqlite3.Error:
            logger.exception("sandbox journal: rollback failed")

    # ─── settling ───────────────────────────────────────────────────────────────────────

    def settle(self, seq: int) -> None:
        """The event `seq` is settled: its row goes with the next commit or flush (see the docstring)."""
        self._settled.append((seq,))
        if len(self._settled) >= SETTLE_FLUSH_BATCH or time.monotonic() - self._last_flush >= SETTLE_FLUSH_INTERVAL:
            self.flush()

    @property
    def settles_waiting(self) -> bool:
        return bool(self._settled)

    def flush_due(self) -> float:
        """When (time.monotonic) the waiting settles should be flushed; inf if none wait."""
        return self._last_flush + SETTLE_FLUSH_INTERVAL if self._settled else float("inf")

    def flush(self) -> None:
        """Delete the settled events now (failures are logged: the events are only redelivered)."""
        try:
            self.commit()
        except SandboxError:
            logger.exception("sandbox journal: settled events could not be deleted (they will be redelivered)")

    def close(self) -> None:
        self.flush()
        self._db.close()


# ─── events as JSON ─────────────────────────────────────────────────────────────────────

_MESSAGE_FIELDS = tuple(field.name for field in attrs.fields(InboundMessage) if field.name != "settle")


def _default(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, MediaRef):
        return {"kind": value.kind.value, "mimetype": value.mimetype, "filename": value.filename,
                "size": value.size, "key": value.key}
    raise TypeError(f"cannot journal {type(value).__name__}")


def encode_event(event: InboundMessage | Receipt) -> str:
    if isinstance(event, InboundMessage):
        data: dict[str, Any] = {name: getattr(event, name) for name in _MESSAGE_FIELDS}
        data["type"] = "message"
    else:
        data = {"type": "receipt", "chat": event.chat, "ids": list(event.ids), "ack": int(event.ack),
                "timestamp": event.timestamp, "sender": event.sender}
    return json.dumps(data, default=_default)


def decode_event(text: str, settle: Settle) -> InboundMessage | Receipt | None:
    """The event journaled as `text` (None, logged, if it cannot be read: a journal from another version)."""
    try:
        data = json.loads(text)
        kind = data.pop("type")
        data["timestamp"] = dt.datetime.fromisoformat(data["timestamp"])
        if kind == "receipt":
            return Receipt(data["chat"], tuple(data["ids"]), Ack(data["ack"]), data["timestamp"],
                           data.get("sender"), settle=settle)
        data["kind"] = MessageKind(data["kind"])
        if data.get("media") is not None:
            media = data["media"]
            data["media"] = MediaRef(MessageKind(media["kind"]), media["mimetype"], media.get("filename"),
                                     media.get("size"), media.get("key", ""))
        return InboundMessage(**data, settle=settle)
    except (ValueError, KeyError, TypeError) as exc:
        logger.warning("sandbox journal: an event cannot be read (%s); skipped", exc)
        return None
