"""The sandbox: a simulated WhatsApp network inside the process (DESIGN.md §6).

One :class:`SandboxNetwork` per process (built by the composition root) plays the part of WhatsApp's
servers and of every phone: it hands out :class:`SandboxTransport`\\ s (the Transport protocol of
``transport.py``, one per connection id) and is driven by sync *control* calls — scan a QR
(``pair``), a contact writes (``inbound``), the contact's phone acknowledges (``ack``), something
breaks (``fault``), a number has no WhatsApp account (``registry``) — from tests, benchmarks and,
over HTTP, developers building frontends.

It behaves like WhatsApp wherever our code could tell the difference:

- ids look like WhatsApp's ("3EB0" + 16 hex for what we send, 32 hex for what phones send),
  timestamps are aware UTC with whole seconds, chats are JIDs (``5511…@s.whatsapp.net``,
  ``…@lid``, ``…@g.us``); every phone contact has a stable LID;
- messages written while our side is offline wait on the "server" and arrive, in order, at the next
  connect (receipts too). A delivered event is kept, *unsettled*, until the consumer calls its
  ``settle`` (``transport.settle(event)``, once it is committed): at every connect the unsettled
  events are delivered again first, in their original order, then the queue — so a crash or a
  disconnect anywhere before the commit loses nothing. ``fault("disconnect", redeliver=N)`` also
  repeats the last N delivered messages, settled or not, as WhatsApp does after reconnects. Queued
  plus unsettled events are bounded (``QUEUE_MAX``; beyond it ``inbound`` is refused);
- what zapgate sends is in the network's outbox (``sandbox_outbox.py``) before ``send`` answers, once
  per message id: a send carrying an ``id`` that was accepted already is not sent again (it answers
  the first ``Sent`` and is counted as a duplicate). Sends get receipts (delivered, then read) after
  ``ack_delays``, never blocking ``send``, once per message id;
- what WhatsApp's servers keep survives a restart or a kill -9 of zapgate: with an ``outbox`` store in
  PostgreSQL (``DatabaseOutbox``, what ``zapgate serve`` uses) the messages sent, and so the idempotency
  of sends and the receipts still due; with a ``journal`` (a SQLite file in the data dir,
  ``sandbox_journal.py``) the events not yet settled, the phone ↔ LID pairs and a logout the device
  has not heard of. ``inbound`` returns only once its message is in the journal. A paired device
  reconnects through the device saved on its connection row, as before. Without them everything lives
  in memory.

Time: timers (QR refresh, receipts, latency) use the trio clock, so tests run them on
``autojump_clock``; message timestamps use the wall clock. Everything is plain trio state, changed
only from trio tasks (no threads, no locks; ``settle`` too must be called on the trio thread), and
every structure is bounded (see the constants, here and in ``sandbox_state.py``).

Control calls raise :class:`SandboxError` (with an ``ERR_SANDBOX_…`` code) when they cannot apply.
Transport commands raise the transport's errors: ``NotConnected``, ``SendFailed``, ``TransportError``.

This module is the network and its control calls. Next to it: ``sandbox_state.py`` (what the network
keeps per connection and per run, and :class:`SandboxError`), ``sandbox_parts.py`` (what the transport
and the messages see of the network), ``sandbox_transport.py`` (:class:`SandboxTransport`, one
connection), ``sandbox_messages.py`` (WhatsApp's numbers, JIDs, ids and media, and building a
contact's message from ``inbound``'s arguments), ``sandbox_outbox.py`` (what was sent) and
``sandbox_journal.py`` (the file that outlives the process). None of them imports this one.
``SandboxError``, ``SandboxTransport`` and ``phone_digits`` are re-exported from here.
"""

from __future__ import annotations

import collections
import datetime as dt
import functools
import heapq
import itertools
import logging
import math
import random
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import trio

from gateway.whatsapp.sandbox_journal import JournalBusy, SandboxJournal
from gateway.whatsapp.sandbox_messages import _USER_JID, _now, build_inbound, phone_digits
from gateway.whatsapp.sandbox_outbox import Entry, MemoryOutbox, OutboxStore, Recorded
from gateway.whatsapp.sandbox_state import (
    ACK_BY_NAME,
    ACK_NAMES,
    NOT_ON_WHATSAPP_MAX,
    NOT_ON_WHATSAPP_PREFIXES_MAX,
    QUEUE_MAX,
    SEND_FAILURE_REASON,
    SandboxError,
    _Ending,
    _Line,
)
from gateway.whatsapp.sandbox_transport import DeviceCallback, SandboxTransport
from gateway.whatsapp.transport import Ack, Receipt

__all__ = ["SandboxError", "SandboxNetwork", "SandboxTransport", "phone_digits"]

logger = logging.getLogger("zapgate.sandbox")

SCHEDULED_MAX = 20_000  # receipts waiting for their delay (beyond it a send gets no automatic receipts)
LID_MAX = 100_000  # phone ↔ LID pairs the network remembers
STORE_RETRY = 1.0  # seconds before receipts the outbox could not be asked about are tried again

LOGOUT_REASON = "logged out from the phone"
BAN_REASON = "banned by WhatsApp"
DEFAULT_NUMBER_PREFIX = "5511"
FAULTS = ("disconnect", "logout", "ban", "send_failure", "latency", "slow_answer", "crash")

# WhatsApp's pairing-code alphabet (no 0, I, O, U).
_PAIRING_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTVWXYZ"

_CONTROL_ACKS = ("delivered", "read", "played")


class SandboxNetwork:
    """The simulated WhatsApp: one per process; connections are keyed by connection id."""

    def __init__(self, *, qr_interval: float = 20.0,
                 ack_delays: tuple[float | None, float | None] = (0.5, 1.5),
                 latency: float = 0.0, rng: random.Random | None = None,
                 journal: Path | str | None = None, outbox: OutboxStore | None = None,
                 crash_faults: bool = False) -> None:
        """`journal`: the file that keeps the events not settled, the LIDs and logouts across restarts;
        `outbox`: where what was sent is kept (None for either: memory only); `crash_faults`: the fault "crash"
        may be injected (tests of supervision; SANDBOX_CRASH_FAULTS, off by default).

        Another process holding the journal makes this one run in memory, its outbox too (logged)."""
        if qr_interval <= 0:
            raise ValueError("qr_interval must be positive")
        if latency < 0 or any(d is not None and d < 0 for d in ack_delays):
            raise ValueError("latency and ack delays must not be negative")
        self._qr_interval = qr_interval
        self.crash_faults = crash_faults
        self._ack_delays = ack_delays
        self._latency = latency
        self._rng = rng or random.Random()
        self._lines: dict[int, _Line] = {}
        self._seq = itertools.count()
        self._lids: collections.OrderedDict[str, str] = collections.OrderedDict()  # phone digits → LID JID
        self._phones: dict[str, str] = {}  # LID JID → phone digits
        self._event_seq = itertools.count(1)  # events and LIDs, in the order they happened
        self._journal: SandboxJournal | None = None
        self._outbox: OutboxStore = outbox if outbox is not None else MemoryOutbox()
        self._old_outbox: dict[int, list[Entry]] = {}  # an old journal's, for take_over_old_outbox
        if journal is not None:
            try:
                self._journal = SandboxJournal.open(Path(journal))
            except JournalBusy as exc:
                logger.warning("sandbox: %s; this process keeps the sandbox in memory only", exc)
                self._outbox = MemoryOutbox()  # the process holding the journal writes the outbox
            else:
                self._load(self._journal)

    @property
    def journal_path(self) -> Path | None:
        """The journal this network writes to (None: memory only)."""
        return self._journal.path if self._journal is not None else None

    @property
    def outbox_durable(self) -> bool:
        """What was sent outlives the process (the outbox is in PostgreSQL)."""
        return self._outbox.durable

    async def take_over_old_outbox(self) -> int:
        """A journal written before schema version 15 kept the outbox: its entries move to the outbox store
        (the one record of what was sent), then leave the journal; how many moved. Failures are logged
        (the journal keeps them for the next start)."""
        old, self._old_outbox = self._old_outbox, {}
        if not old:
            return 0
        try:
            for connection_id, entries in old.items():
                await self._outbox.restore(connection_id, entries)
        except SandboxError:
            logger.exception("sandbox: the journal's old outbox could not be moved; tried again at the next start")
            return 0
        if self._journal is not None:
            self._write(None, lambda journal: journal.drop_old_outbox())
        moved = sum(len(entries) for entries in old.values())
        logger.info("sandbox: %d sent messages moved from the journal to the outbox", moved)
        return moved

    def close(self) -> None:
        """Flush and close the journal (the network goes on in memory). Idempotent."""
        journal, self._journal = self._journal, None
        if journal is not None:
            journal.close()

    def transport(self, connection_id: int, device: dict[str, Any] | None,
                  on_device_change: DeviceCallback) -> SandboxTransport:
        """A transport for one connection; `device` is its persisted device state (None: not paired).

        A device without a user JID under "jid" (e.g. ``{}``) counts as not paired."""
        jid = device.get("jid") if isinstance(device, dict) else None
        if isinstance(jid, str) and _USER_JID.fullmatch(jid):
            device = {"jid": jid, "number": device.get("number") or jid.split("@")[0].split(":")[0],
                      "pushName": device.get("pushName") or ""}
        else:
            if device:
                logger.warning("sandbox: connection %s has a device without a usable jid; pairing again",
                               connection_id, extra={"fields": {"connection_id": connection_id}})
            device = None
        return SandboxTransport(self, connection_id, device, on_device_change)

    # ─── control ────────────────────────────────────────────────────────────────────────

    def pair(self, connection_id: int, number: str | None = None, *, push_name: str | None = None) -> dict[str, str]:
        """"Scan" the QR shown by the connection (or confirm its pairing code) from phone `number`."""
        line = self._lines.get(connection_id)
        conn = line.run if line is not None else None
        if (conn is None or not conn.waiting_for_scan or conn.paired is not None
                or (conn.qr is None and conn.pairing_code is None)):
            raise SandboxError("ERR_SANDBOX_NOT_WAITING_FOR_SCAN",
                               f"connection {connection_id} is not showing a QR code")
        if number is None:
            digits = conn.pairing_phone or self._new_number()
        else:
            digits = phone_digits(number)
            if digits is None:
                raise SandboxError("ERR_SANDBOX_BAD_NUMBER", f"not a phone number: {number!r}")
            if conn.pairing_phone is not None and digits != conn.pairing_phone:
                raise SandboxError("ERR_SANDBOX_WRONG_NUMBER",
                                   f"the pairing code was requested for {conn.pairing_phone}, not {digits}")
        jid = f"{digits}@s.whatsapp.net"
        conn.paired = {"jid": jid, "number": digits, "pushName": push_name or f"Sandbox {digits[-4:]}"}
        conn.wake.notify()
        return {"jid": jid, "number": digits}

    async def inbound(self, connection_id: int, *, sender: str, name: str | None = None, lid: str | None = None,
                      id: str | None = None, body: str = "", media: dict[str, Any] | None = None,
                      quoted_id: str | None = None, timestamp: dt.datetime | None = None,
                      group: dict[str, Any] | None = None, reaction: dict[str, Any] | None = None,
                      edit: dict[str, Any] | None = None, revoke: dict[str, Any] | None = None,
                      location: dict[str, Any] | None = None, vcard: str | None = None) -> str:
        """A contact writes to the connection; returns the message id once the network holds it (in the
        journal, if any). Queued until the connection takes it, kept until the consumer settles it."""
        line = self._line(connection_id)
        if line.held() >= QUEUE_MAX:
            raise SandboxError("ERR_SANDBOX_QUEUE_FULL",
                               f"connection {connection_id} holds {QUEUE_MAX} events not yet settled; "
                               "connect it (or let it catch up) first")
        seq = next(self._event_seq)
        message = build_inbound(self, line, sender=sender, name=name, lid=lid, id=id, body=body, media=media,
                                quoted_id=quoted_id, timestamp=timestamp, group=group, reaction=reaction,
                                edit=edit, revoke=revoke, location=location, vcard=vcard,
                                settle=functools.partial(self._settle, line, seq))
        if self._journal is not None:
            self._journal.add_event(connection_id, seq, message)  # with the LID it may have staged
        line.enqueue(seq, message)
        await trio.lowlevel.checkpoint()
        return message.id

    async def outbox(self, connection_id: int, *, message_id: str | None = None) -> list[Entry]:
        """What WhatsApp accepted from the connection, oldest first, once per message id (or the entry of
        `message_id`: [] or one), each with `attempts` and `duplicates` (see ``sandbox_outbox.py``)."""
        return await self._outbox.entries(connection_id, message_id=message_id)

    async def sent_count(self, connection_id: int) -> int:
        """How many messages the connection's outbox holds."""
        return await self._outbox.count(connection_id)

    async def ack(self, connection_id: int, message_id: str, ack: str) -> None:
        """The recipient's phone acknowledges a sent message: a Receipt for the connection, now."""
        if ack not in _CONTROL_ACKS:
            raise SandboxError("ERR_SANDBOX_BAD_ACK", f"ack must be one of {', '.join(_CONTROL_ACKS)}")
        known = await self._outbox.acks(connection_id, [message_id])
        recorded = known.get(message_id)
        if recorded is None:
            raise SandboxError("ERR_SANDBOX_UNKNOWN_MESSAGE",
                               f"connection {connection_id} sent no message {message_id!r}")
        if recorded.ack == "failed":
            raise SandboxError("ERR_SANDBOX_MESSAGE_FAILED", f"message {message_id!r} was never sent")
        line = self._line(connection_id)
        if line.held() >= QUEUE_MAX:
            raise SandboxError("ERR_SANDBOX_QUEUE_FULL", f"connection {connection_id} holds {QUEUE_MAX} events "
                               "not yet settled")
        await self._give_receipts(line, [(message_id, ACK_BY_NAME[ack])], known, force=True)

    def fault(self, connection_id: int, kind: str, **params: Any) -> None:
        """Break something: "disconnect" (redeliver=0), "logout" / "ban" (reason), "send_failure"
        (count=1, reason), "latency" (seconds), "slow_answer" (seconds: each send is accepted, in the
        outbox, at once, and answered that much later; a connection lost meanwhile leaves it unanswered),
        "crash" (count=1; only with `crash_faults`): the session crashes `count` times, as a bug in its code
        would (`InjectedCrash`) — the running connection at once, then each next run as it starts."""
        if kind not in FAULTS:
            raise SandboxError("ERR_SANDBOX_UNKNOWN_FAULT", f"fault must be one of {', '.join(FAULTS)}")
        allowed = {"disconnect": {"redeliver"}, "logout": {"reason"}, "ban": {"reason"},
                   "send_failure": {"count", "reason"}, "latency": {"seconds"}, "slow_answer": {"seconds"},
                   "crash": {"count"}}[kind]
        if unknown := set(params) - allowed:
            raise SandboxError("ERR_SANDBOX_BAD_FAULT", f"{kind} takes no {', '.join(sorted(unknown))}")
        if kind == "disconnect":
            redeliver = _int_param(params, "redeliver", 0)
            line = self._lines.get(connection_id)
            conn = line.run if line is not None else None
            if line is None or conn is None:
                raise SandboxError("ERR_SANDBOX_NOT_RUNNING", f"connection {connection_id} is not connected")
            conn.stop(_Ending("lost", "sandbox: connection lost"))
            again = line.requeue_delivered(redeliver)
            if again:
                self._write(line, lambda journal: [journal.put_event(connection_id, seq, event)
                                                   for seq, event in again])
        elif kind in ("logout", "ban"):
            reason = _str_param(params, "reason", LOGOUT_REASON if kind == "logout" else BAN_REASON)
            ending = _Ending("unlinked", reason, banned=kind == "ban")
            line = self._line(connection_id)
            if line.run is None:
                self._set_unlink(line, ending)  # the stored device learns it at its next run
            elif line.device is None:
                raise SandboxError("ERR_SANDBOX_NOT_PAIRED", f"connection {connection_id} is not paired")
            else:
                line.run.stop(ending)
        elif kind == "crash":
            if not self.crash_faults:
                raise SandboxError("ERR_SANDBOX_CRASH_DISABLED", "the crash fault needs SANDBOX_CRASH_FAULTS=on")
            count = _int_param(params, "count", 1)
            if count < 1:
                raise SandboxError("ERR_SANDBOX_BAD_FAULT", "count must be an integer >= 1")
            line = self._line(connection_id)
            line.crashes = count
            if line.run is not None:  # the running connection crashes now (one of `count`)
                line.crashes -= 1
                line.run.stop(_Ending("crash", f"sandbox: injected crash of connection {connection_id}"))
        elif kind == "send_failure":
            line = self._line(connection_id)
            line.send_failures = _int_param(params, "count", 1)
            line.send_failure_reason = _str_param(params, "reason", SEND_FAILURE_REASON)
        else:
            seconds = params.get("seconds", 0.0)
            if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 <= seconds < math.inf:
                raise SandboxError("ERR_SANDBOX_BAD_FAULT", "seconds must be a number >= 0")
            if kind == "latency":
                self._line(connection_id).extra_latency = float(seconds)
            else:  # WhatsApp takes each message at once, but its answer comes `seconds` later (or never)
                self._line(connection_id).answer_delay = float(seconds)

    def registry(self, connection_id: int, *, not_on_whatsapp: Sequence[str] = (),
                 prefixes: Sequence[str] = ()) -> dict[str, Any]:
        """Who has a WhatsApp account, as the connection's `is_on_whatsapp` sees it: every phone number but
        `not_on_whatsapp` and those starting with one of `prefixes` (digits; formatted numbers are reduced to
        their digits). Replaces what was set before; returns the registry as `state` shows it."""
        numbers = []
        for number in not_on_whatsapp:
            digits = phone_digits(number) if isinstance(number, str) else None
            if digits is None:
                raise SandboxError("ERR_SANDBOX_BAD_NUMBER", f"not a phone number: {number!r}")
            numbers.append(digits)
        starts = []
        for prefix in prefixes:
            if not isinstance(prefix, str) or not re.fullmatch(r"\+?[0-9]{1,15}", prefix.strip()):
                raise SandboxError("ERR_SANDBOX_BAD_NUMBER", f"not a number prefix (digits): {prefix!r}")
            starts.append(prefix.strip().lstrip("+"))
        if len(numbers) > NOT_ON_WHATSAPP_MAX or len(starts) > NOT_ON_WHATSAPP_PREFIXES_MAX:
            raise SandboxError("ERR_SANDBOX_BAD_NUMBER", f"at most {NOT_ON_WHATSAPP_MAX} numbers and "
                               f"{NOT_ON_WHATSAPP_PREFIXES_MAX} prefixes")
        line = self._line(connection_id)
        line.not_on_whatsapp = frozenset(numbers)
        line.not_on_whatsapp_prefixes = tuple(dict.fromkeys(starts))
        return _registry(line)

    def state(self, connection_id: int) -> dict[str, Any]:
        """What the network knows about the connection (a snapshot; unknown ids look unpaired)."""
        line = self._lines.get(connection_id) or _Line(connection_id)
        conn = line.run
        device = line.device
        messages, receipts = line.counts()
        return {
            "connectionId": connection_id,
            "paired": device is not None,
            "running": conn is not None,
            "connected": conn is not None and conn.connected,
            "jid": device["jid"] if device else None,
            "number": device["number"] if device else None,
            "pushName": device["pushName"] if device else None,
            "waitingForScan": conn is not None and conn.waiting_for_scan,
            "qr": conn.qr if conn is not None and conn.waiting_for_scan else None,
            "qrIndex": conn.qr_index if conn is not None else 0,
            "pairingCode": conn.pairing_code if conn is not None and conn.waiting_for_scan else None,
            "pendingInbound": messages,  # held by the network: queued, or delivered and not settled
            "pendingReceipts": receipts,
            "queued": len(line.queue),  # not delivered yet
            "unsettled": len(line.unsettled),  # delivered, not settled yet (delivered again at the next connect)
            "delivered": line.delivered_total,  # deliveries, redeliveries included
            "journaled": self._journal is not None,
            "outboxKept": self._outbox.durable,  # what was sent outlives the process
            "latency": self._latency + line.extra_latency,
            "slowAnswer": line.answer_delay,
            "sendFailures": line.send_failures,
            "pendingLogout": line.pending_unlink is not None,
            "readByUs": [dict(entry) for entry in line.read_by_us],
            "presence": dict(line.presence),
            "registry": _registry(line),
        }

    async def forget(self, connection_id: int) -> None:
        """The connection was deleted (or logged out): drop everything about it, its outbox too (a running
        transport fails). In PostgreSQL a deleted connection's outbox goes with its row anyway."""
        line = self._lines.pop(connection_id, None)
        if line is not None:
            line.forgotten = True
            if line.run is not None:
                line.run.stop(_Ending("lost", "sandbox: connection deleted"))
        if self._journal is not None:
            self._write(None, lambda journal: journal.forget(connection_id))
        try:
            await self._outbox.forget(connection_id)
        except SandboxError:
            logger.exception("sandbox: the outbox of connection %s could not be dropped", connection_id)

    # ─── internals ──────────────────────────────────────────────────────────────────────

    def _line(self, connection_id: int) -> _Line:
        line = self._lines.get(connection_id)
        if line is None:
            # an outbox that outlived an earlier process may hold messages whose receipts are still due
            line = self._lines[connection_id] = _Line(connection_id, receipts_to_reschedule=self._outbox.durable)
        return line

    def _load(self, journal: SandboxJournal) -> None:
        """Take over what the journal holds (a restarted process: the old network's state)."""
        loaded = journal.load(lambda cid, seq: functools.partial(self._settle, self._line(cid), seq))
        self._event_seq = itertools.count(loaded.last_seq + 1)
        for cid, events in loaded.pending.items():
            self._line(cid).queue.extend(events)
        self._old_outbox = loaded.old_outbox
        for cid, ending in loaded.unlinks.items():
            self._line(cid).pending_unlink = ending
        for phone, lid in loaded.lids:
            self._lids[phone] = lid
            self._phones[lid] = phone
        pending = sum(len(events) for events in loaded.pending.values())
        if pending:
            logger.info("sandbox: journal %s loaded: %d events pending", journal.path, pending)

    def _settle(self, line: _Line, seq: int) -> None:
        """An event's `settle`: the consumer committed it; the network forgets it (idempotent, cheap)."""
        if line.settle(seq) and self._journal is not None and not line.forgotten:
            idle = not self._journal.settles_waiting
            self._journal.settle(seq)
            if idle and self._journal.settles_waiting:
                line.changed.notify()  # the delivery loop flushes it in time if no other write does

    def _settles_waiting(self) -> bool:
        return self._journal is not None and self._journal.settles_waiting

    def _flush_settled(self) -> None:
        if self._journal is not None:
            self._journal.flush()

    def _write(self, line: _Line | None, write: Callable[[SandboxJournal], object]) -> None:
        """Journal a change nobody waits for (a failure is logged: memory goes on)."""
        if self._journal is None or (line is not None and line.forgotten):
            return
        try:
            write(self._journal)
            self._journal.commit()
        except SandboxError:
            logger.exception("sandbox: the journal cannot be written; the change lives in memory only")

    def _set_unlink(self, line: _Line, ending: _Ending | None) -> None:
        """Remember (or forget) a logout the device has not heard of yet."""
        if line.pending_unlink == ending:
            return
        line.pending_unlink = ending
        self._write(line, lambda journal: journal.set_unlink(line.connection_id, ending))

    async def _reschedule_receipts(self, line: _Line) -> None:
        """The first time a line delivers in this process, the receipts its outbox still misses (a restart:
        their timers were lost with the old process) are due again, each once. Tried again later if the
        outbox cannot answer."""
        try:
            waiting = await self._outbox.awaiting_receipts(line.connection_id, SCHEDULED_MAX // 2)
        except SandboxError as exc:
            logger.warning("sandbox: %s; its receipts are rescheduled later", exc.message,
                           extra={"fields": {"connection_id": line.connection_id}})
            line.retry_at = trio.current_time() + STORE_RETRY
            return
        line.receipts_to_reschedule = False
        line.retry_at = math.inf
        for message_id in waiting:
            self._schedule_receipts(line, message_id)

    def _latency_of(self, line: _Line) -> float:
        return self._latency + line.extra_latency

    def _new_number(self) -> str:
        return f"{DEFAULT_NUMBER_PREFIX}9{self._rng.randrange(10**8):08d}"

    def _new_id(self, *, ours: bool) -> str:
        """A message id as WhatsApp Web ("3EB0…", 20 chars) or a phone (32 hex) makes them."""
        if ours:
            return f"3EB0{self._rng.getrandbits(64):016X}"
        return f"{self._rng.getrandbits(128):032X}"

    def _new_pairing_code(self) -> str:
        code = "".join(self._rng.choice(_PAIRING_ALPHABET) for _ in range(8))
        return f"{code[:4]}-{code[4:]}"

    def _lid_of(self, phone: str) -> str:
        """The contact's stable LID (made up the first time the network sees the number)."""
        lid = self._lids.get(phone)
        if lid is None:
            lid = f"{self._rng.randrange(10**13, 10**15)}@lid"
            self._link_lid(phone, lid)
        return lid

    def _link_lid(self, phone: str, lid: str) -> None:
        """Staged in the journal: the inbound message that brought it commits it."""
        old = self._lids.pop(phone, None)
        if old is not None:
            self._phones.pop(old, None)
        self._lids[phone] = lid
        self._phones[lid] = phone
        if self._journal is not None and old != lid:
            self._journal.put_lid(phone, lid, next(self._event_seq))
        while len(self._lids) > LID_MAX:
            dropped_phone, dropped = self._lids.popitem(last=False)
            self._phones.pop(dropped, None)
            if self._journal is not None:
                self._journal.drop_lid(dropped_phone)

    def _schedule_receipts(self, line: _Line, message_id: str) -> None:
        delivered_after, read_after = self._ack_delays
        if delivered_after is None and read_after is None:
            return
        if len(line.scheduled) + 2 > SCHEDULED_MAX:
            logger.warning("sandbox: too many receipts waiting; message %s gets none", message_id,
                           extra={"fields": {"connection_id": line.connection_id}})
            return
        now = trio.current_time()
        if delivered_after is not None:
            heapq.heappush(line.scheduled, (now + delivered_after, next(self._seq), message_id, Ack.DELIVERED))
        if read_after is not None:
            due = now + (delivered_after or 0.0) + read_after
            heapq.heappush(line.scheduled, (due, next(self._seq), message_id, Ack.READ))
        line.changed.notify()

    async def _release_due(self, line: _Line) -> None:
        """The receipts whose delay has passed join the queue (and the rescheduling after a restart runs)."""
        now = trio.current_time()
        if line.receipts_to_reschedule and now >= line.retry_at:
            await self._reschedule_receipts(line)
        due = []
        while line.scheduled and line.scheduled[0][0] <= now:
            due.append(heapq.heappop(line.scheduled))
        if not due:
            return
        try:
            known = await self._outbox.acks(line.connection_id, {message_id for _, _, message_id, _ in due})
        except BaseException as exc:  # they stay due: now (cancelled), or a little later
            unanswered = isinstance(exc, SandboxError)
            for due_at, seq, message_id, ack in due:
                heapq.heappush(line.scheduled, (now + STORE_RETRY if unanswered else due_at, seq, message_id, ack))
            if not unanswered:
                raise
            logger.warning("sandbox: %s; %d receipts wait", exc, len(due),
                           extra={"fields": {"connection_id": line.connection_id}})
            return
        await self._give_receipts(line, [(message_id, ack) for _, _, message_id, ack in due], known, force=False)

    async def _give_receipts(self, line: _Line, wanted: list[tuple[str, Ack]], known: dict[str, Recorded], *,
                             force: bool) -> None:
        """The recipients acknowledged messages (`known`: what the outbox holds of them): a Receipt each for
        the connection, unless the message has that ack already (`force`: even then), and the outbox's
        acks raised. The receipts are journaled first: the outbox never says more than the connection was
        given (a crash between the two repeats a receipt after the restart, never loses one)."""
        raised: dict[str, Ack] = {}
        given: list[tuple[int, Receipt]] = []
        for message_id, ack in wanted:
            recorded = known.get(message_id)
            if recorded is None or recorded.ack == "failed":
                continue
            current = raised.get(message_id, ACK_BY_NAME[recorded.ack])
            if current >= ack and not force:
                continue
            if ack > current:
                raised[message_id] = ack
            if line.held() + len(given) >= QUEUE_MAX:
                logger.warning("sandbox: event queue full; receipt for %s dropped", message_id,
                               extra={"fields": {"connection_id": line.connection_id}})
                continue
            seq = next(self._event_seq)
            given.append((seq, Receipt(recorded.to, (message_id,), ack, _now(),
                                       settle=functools.partial(self._settle, line, seq))))
        if line.forgotten:
            return
        if given:
            self._write(line, lambda journal: [journal.put_event(line.connection_id, seq, receipt)
                                               for seq, receipt in given])
            for seq, receipt in given:
                line.enqueue(seq, receipt)
        if raised:
            with trio.CancelScope(shield=True):  # one statement: the receipts are out, the outbox must say so
                try:
                    await self._outbox.raise_acks(line.connection_id, {message_id: ACK_NAMES[ack]
                                                                       for message_id, ack in raised.items()})
                except SandboxError as exc:
                    logger.warning("sandbox: %s; acks not raised (their receipts may come again after a restart)",
                                   exc.message, extra={"fields": {"connection_id": line.connection_id}})


def _registry(line: _Line) -> dict[str, Any]:
    return {"notOnWhatsapp": sorted(line.not_on_whatsapp), "notOnWhatsappPrefixes": list(line.not_on_whatsapp_prefixes),
            "checks": line.number_checks, "numbersChecked": line.numbers_checked,
            "largestCheck": line.largest_number_check}


def _int_param(params: dict[str, Any], name: str, default: int) -> int:
    value = params.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SandboxError("ERR_SANDBOX_BAD_FAULT", f"{name} must be an integer >= 0")
    return value


def _str_param(params: dict[str, Any], name: str, default: str) -> str:
    value = params.get(name, default)
    if not isinstance(value, str) or not value:
        raise SandboxError("ERR_SANDBOX_BAD_FAULT", f"{name} must be a non-empty string")
    return value
