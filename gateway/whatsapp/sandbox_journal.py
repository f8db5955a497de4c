"""The sandbox's journal: what WhatsApp's servers would keep across a restart of zapgate, in SQLite.

WhatsApp keeps a device's inbound messages (and receipts) until the device acknowledges them, the
messages the device sent, and who is who (phone ↔ LID). Here the sandbox keeps, per connection id:
the events not yet settled (queued or delivered; `pending`), a logout or ban the device has not heard
of yet (`lines`), and, network-wide, the phone ↔ LID pairs (`lids`). A paired device needs nothing
here: it reconnects through the device saved on its connection row. What the device sent is not
here but in the network's outbox store (``sandbox_outbox.py``: zapgate's PostgreSQL), the one record
tests count sends by; journals written before schema version 15 held it in `outbox`, which the network
moves there once (`old_outbox`, `drop_old_outbox`).

Why these stay in a file of the data dir: they are the traffic of the simulated phones (every inbound
message is an INSERT here and a DELETE when settled, ~15 µs each on the trio thread, against a round
trip to PostgreSQL on a worker thread), nobody outside the process reads them, and they belong to the
process that runs the connections (the file is held by one process, `JournalBusy` for another).

Durability: WAL with ``synchronous=NORMAL`` — a commit is in the WAL file when it returns (no
fsync), so it survives a kill -9 of the process; a power loss may lose the last commits, which is
out of scope for a simulator. ``locking_mode=EXCLUSIVE``: one process owns the file (a second
process on the same data dir gets `JournalBusy` and runs its sandbox in memory); it also saves the
shared-memory index, so a commit costs ~15 µs. Media bytes are not journaled (they stay in memory):
after a restart, the media of a message still pending cannot be downloaded.

Writes are staged by the network and made durable by `commit()`; an event alone (the common case,
`inbound`) is one autocommitted INSERT. `settle()` only notes the event's sequence number; the notes
are deleted in one statement at most every `SETTLE_FLUSH_INTERVAL` seconds or `SETTLE_FLUSH_BATCH`
notes (with a commit that is due anyway, by `settle` itself, or by `flush()` from the delivery loop):
a settle lost to a crash only means one more redelivery, which intake absorbs. Everything runs on
the trio thread (plain sync calls; no thread may touch a journal).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import operator
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from gateway.whatsapp.sandbox_state import ACK_BY_NAME, ACK_NAMES, SandboxError, _Ending
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
    old_outbox: dict[int, list[dict[str, Any]]] = attrs.Factory(dict)  # cid → entries (before version 15)
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
        if self._has_old_outbox():
            for cid, seq, text in self._db.execute("SELECT connection_id, seq, entry FROM outbox ORDER BY seq"):
                loaded.old_outbox.setdefault(cid, []).append(json.loads(text))
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

    def _execute(self, sql: str, params: tuple[Any, ...], *, alone: bool = False) -> None:
        """Stage a statement (`alone` and nothing staged: it commits by itself, durable when this returns)."""
        try:
            if not self._db.in_transaction and not alone:
                self._db.execute("BEGIN")
            self._db.execute(sql, params)
        except sqlite3.Error as exc:
            self.rollback()
            raise _journal_error(exc) from None

    def put_event(self, connection_id: int, seq: int, event: InboundMessage | Receipt) -> None:
        self._execute("INSERT OR REPLACE INTO pending (seq, connection_id, event) VALUES (?, ?, ?)",
                      (seq, connection_id, encode_event(event)))

    def add_event(self, connection_id: int, seq: int, event: InboundMessage | Receipt) -> None:
        """`put_event` and `commit`: the event is durable when this returns (one statement when alone)."""
        self._execute("INSERT INTO pending (seq, connection_id, event) VALUES (?, ?, ?)",
                      (seq, connection_id, encode_event(event)), alone=True)
        self.commit()

    def _has_old_outbox(self) -> bool:
        return self._db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'outbox'").fetchone() \
            is not None

    def drop_old_outbox(self) -> None:
        """The outbox of a journal written before version 15 has moved to the outbox store."""
        if self._has_old_outbox():
            self._execute("DROP TABLE outbox", ())

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
        for table in ("pending", "lines"):
            self._execute(f"DELETE FROM {table} WHERE connection_id = ?", (connection_id,))
        if self._has_old_outbox():
            self._execute("DELETE FROM outbox WHERE connection_id = ?", (connection_id,))

    def commit(self, *, flush: bool = False) -> None:
        """Make everything staged durable (with the settled events' deletion when due, or `flush`);
        SandboxError if it cannot."""
        try:
            if self._settled and (flush or self._flush_due()):
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
        """The event `seq` is settled: its row goes when a flush is due (see the module docstring)."""
        self._settled.append((seq,))
        if self._flush_due():
            self.flush()

    def _flush_due(self) -> bool:
        return len(self._settled) >= SETTLE_FLUSH_BATCH or time.monotonic() - self._last_flush >= SETTLE_FLUSH_INTERVAL

    @property
    def settles_waiting(self) -> bool:
        return bool(self._settled)

    def flush(self) -> None:
        """Delete the settled events now (failures are logged: the events are only redelivered)."""
        try:
            self.commit(flush=True)
        except SandboxError:
            logger.exception("sandbox journal: settled events could not be deleted (they will be redelivered)")

    def close(self) -> None:
        self.flush()
        self._db.close()


# ─── events as JSON ─────────────────────────────────────────────────────────────────────
# A message is a JSON array of its fields in a fixed order (the C encoder's fast path: ~3 µs), a
# receipt an object; the first element / the "type" says which.

_MESSAGE = "m1"
_MESSAGE_FIELDS = tuple(field.name for field in attrs.fields(InboundMessage) if field.name != "settle")
_TIMESTAMP = _MESSAGE_FIELDS.index("timestamp")
_MEDIA = _MESSAGE_FIELDS.index("media")
_message_values = operator.attrgetter(*_MESSAGE_FIELDS)


def encode_event(event: InboundMessage | Receipt) -> str:
    if isinstance(event, InboundMessage):
        values: list[Any] = [_MESSAGE, *_message_values(event)]
        values[1 + _TIMESTAMP] = event.timestamp.isoformat()
        media = event.media
        if media is not None:
            values[1 + _MEDIA] = [media.kind.value, media.mimetype, media.filename, media.size, media.key]
        return json.dumps(values)
    return json.dumps({"type": "receipt", "chat": event.chat, "ids": list(event.ids), "ack": ACK_NAMES[event.ack],
                       "timestamp": event.timestamp.isoformat(), "sender": event.sender})


# Journals written before schema version 9 hold a receipt's ack as a number of the scale zapgate used then
# (2 delivered, 3 read, 4 played); read on today's scale they would each be one step short.
_ACKS_BEFORE_VERSION_9 = {2: Ack.DELIVERED, 3: Ack.READ, 4: Ack.PLAYED}


def _receipt_ack(value: Any) -> Ack:
    if isinstance(value, str):
        return ACK_BY_NAME[value]
    if isinstance(value, int) and not isinstance(value, bool) and value in _ACKS_BEFORE_VERSION_9:
        return _ACKS_BEFORE_VERSION_9[value]
    raise ValueError(f"not a receipt's ack: {value!r}")


def decode_event(text: str, settle: Settle) -> InboundMessage | Receipt | None:
    """The event journaled as `text` (None, logged, if it cannot be read: a journal from another version)."""
    try:
        data = json.loads(text)
        if isinstance(data, dict) and data.get("type") == "receipt":
            return Receipt(data["chat"], tuple(data["ids"]), _receipt_ack(data["ack"]),
                           dt.datetime.fromisoformat(data["timestamp"]), data.get("sender"), settle=settle)
        if not isinstance(data, list) or data[0] != _MESSAGE or len(data) != 1 + len(_MESSAGE_FIELDS):
            raise ValueError("not a journaled message")
        fields = dict(zip(_MESSAGE_FIELDS, data[1:], strict=True))
        fields["timestamp"] = dt.datetime.fromisoformat(fields["timestamp"])
        fields["kind"] = MessageKind(fields["kind"])
        if fields["media"] is not None:
            kind, mimetype, filename, size, key = fields["media"]
            fields["media"] = MediaRef(MessageKind(kind), mimetype, filename, size, key)
        return InboundMessage(**fields, settle=settle)
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        logger.warning("sandbox journal: an event cannot be read (%s); skipped", exc)
        return None
