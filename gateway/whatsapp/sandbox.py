"""The sandbox: a simulated WhatsApp network inside the process (DESIGN.md §6).

One :class:`SandboxNetwork` per process (built by the composition root) plays the part of WhatsApp's
servers and of every phone: it hands out :class:`SandboxTransport`\\ s (the Transport protocol of
``transport.py``, one per connection id) and is driven by sync *control* calls — scan a QR
(``pair``), a contact writes (``inbound``), the contact's phone acknowledges (``ack``), something
breaks (``fault``) — from tests, benchmarks and, over HTTP, developers building frontends.

It behaves like WhatsApp wherever our code could tell the difference:

- ids look like WhatsApp's ("3EB0" + 16 hex for what we send, 32 hex for what phones send),
  timestamps are aware UTC with whole seconds, chats are JIDs (``5511…@s.whatsapp.net``,
  ``…@lid``, ``…@g.us``); every phone contact has a stable LID;
- messages written while our side is offline wait on the "server" and arrive, in order, at the next
  connect (receipts too); a message leaves that queue only once ``events.send`` has returned, so a
  disconnect in the middle delivers it again — and ``fault("disconnect", redeliver=N)`` also
  repeats the last N delivered messages, as WhatsApp does after reconnects;
- sends get receipts (delivered, then read) after ``ack_delays``, never blocking ``send``.

Time: timers (QR refresh, receipts, latency) use the trio clock, so tests run them on
``autojump_clock``; message timestamps use the wall clock. Everything is plain trio state, changed
only from trio tasks (no threads, no locks), and every structure is bounded (see the constants).

Control calls raise :class:`SandboxError` (with an ``ERR_SANDBOX_…`` code) when they cannot apply.
Transport commands raise the transport's errors: ``NotConnected``, ``SendFailed``, ``TransportError``.
"""

from __future__ import annotations

import base64
import binascii
import collections
import datetime as dt
import heapq
import itertools
import logging
import math
import random
import re
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import attrs
import trio

from gateway.whatsapp.transport import (
    Ack,
    Command,
    Connected,
    DeleteForEveryone,
    EditMessage,
    Event,
    InboundMessage,
    LoggedOut,
    MediaRef,
    MessageKind,
    NotConnected,
    PairingCode,
    Presence,
    QrCode,
    Receipt,
    SendFailed,
    SendMedia,
    SendReaction,
    SendText,
    Sent,
    TransportError,
)

logger = logging.getLogger("zapgate.sandbox")

OUTBOX_MAX = 10_000  # sent messages kept per connection (oldest dropped)
QUEUE_MAX = 100_000  # events waiting for a connection (inbound beyond it: ERR_SANDBOX_QUEUE_FULL)
DELIVERED_HISTORY = 1_000  # delivered inbound messages kept for `redeliver`
SCHEDULED_MAX = 20_000  # receipts waiting for their delay (beyond it a send gets no automatic receipts)
MEDIA_MAX_ITEMS = 1_000  # inbound media kept per connection for `download` (oldest expire)
MEDIA_MAX_BYTES = 256 * 1024 * 1024  # ... and their total size
MEDIA_MAX_BYTES_EACH = 100 * 1024 * 1024
READ_BY_US_MAX = 1_000  # mark_read calls remembered per connection
PRESENCE_MAX = 1_000  # chats whose presence we remember per connection
LID_MAX = 100_000  # phone ↔ LID pairs the network remembers

LOGOUT_REASON = "logged out from the phone"
BAN_REASON = "banned by WhatsApp"
SEND_FAILURE_REASON = "sandbox: injected send failure"
DEFAULT_NUMBER_PREFIX = "5511"
FAULTS = ("disconnect", "logout", "ban", "send_failure", "latency")

# WhatsApp's pairing-code alphabet (no 0, I, O, U).
_PAIRING_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTVWXYZ"

_MEDIA_KINDS: dict[str, MessageKind] = {
    "image": MessageKind.IMAGE,
    "video": MessageKind.VIDEO,
    "audio": MessageKind.AUDIO,
    "ptt": MessageKind.VOICE,
    "document": MessageKind.DOCUMENT,
    "sticker": MessageKind.STICKER,
}
_DEFAULT_MIMETYPES: dict[MessageKind, str] = {
    MessageKind.IMAGE: "image/jpeg",
    MessageKind.VIDEO: "video/mp4",
    MessageKind.AUDIO: "audio/mpeg",
    MessageKind.VOICE: "audio/ogg; codecs=opus",
    MessageKind.DOCUMENT: "application/pdf",
    MessageKind.STICKER: "image/webp",
}
_ACK_NAMES: dict[Ack, str] = {
    Ack.FAILED: "failed",
    Ack.PENDING: "pending",
    Ack.SENT: "sent",
    Ack.DELIVERED: "delivered",
    Ack.READ: "read",
    Ack.PLAYED: "played",
}
_ACK_BY_NAME = {name: ack for ack, name in _ACK_NAMES.items()}
_CONTROL_ACKS = ("delivered", "read", "played")

_PHONE_CHARS = re.compile(r"[0-9\s+\-().]+")
_USER_JID = re.compile(r"([0-9]+)(?::[0-9]+)?@(s\.whatsapp\.net|c\.us|lid)")
_GROUP_ID = re.compile(r"([0-9]+(?:-[0-9]+)?)(?:@g\.us)?")
_SEND_JID = re.compile(r"[0-9]+(?:-[0-9]+)?@(?:s\.whatsapp\.net|g\.us|lid)|[A-Za-z0-9._\-]+@(?:broadcast|newsletter)")
_MESSAGE_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")

DeviceCallback = Callable[[dict[str, Any] | None], Awaitable[None]]


class SandboxError(Exception):
    """A control call that cannot apply (e.g. ``pair`` while no QR is shown)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# ─── helpers ────────────────────────────────────────────────────────────────────────────

def _now() -> dt.datetime:
    """WhatsApp's clock: aware UTC, whole seconds."""
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def phone_digits(value: str) -> str | None:
    """A phone number as WhatsApp's user part ("+55 (11) 99999-0000" → "5511999990000"), or None.

    Accepts a formatted number or a user JID (``@s.whatsapp.net``, or the legacy ``@c.us``)."""
    text = value.strip()
    match = _USER_JID.fullmatch(text)
    if match:
        digits = match.group(1) if match.group(2) != "lid" else ""
    elif _PHONE_CHARS.fullmatch(text):
        digits = re.sub(r"\D", "", text)
    else:
        digits = ""
    return digits if 7 <= len(digits) <= 15 else None


def _lid_jid(value: str) -> str | None:
    """"123456789@lid" or "123456789" → "123456789@lid"; None if it is not a LID."""
    text = value.strip()
    match = _USER_JID.fullmatch(text)
    if match:
        return f"{match.group(1)}@lid" if match.group(2) == "lid" else None
    return f"{text}@lid" if text.isdigit() and 1 <= len(text) <= 20 else None


class _Signal:
    """Wake every task waiting for "something changed" (no value, no memory: check, then wait)."""

    def __init__(self) -> None:
        self._lot = trio.lowlevel.ParkingLot()

    def notify(self) -> None:
        self._lot.unpark_all()

    async def wait(self) -> None:
        await self._lot.park()


@attrs.frozen
class _Ending:
    """Why a run stops: the connection was lost, the device was unlinked (phone/ban), or we logged out."""

    kind: Literal["lost", "unlinked", "logout"]
    reason: str = ""
    banned: bool = False


@attrs.define(eq=False)
class _Run:
    """One `SandboxTransport.run`: the connection as WhatsApp's server sees it."""

    line: _Line
    events: trio.MemorySendChannel[Event]
    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    wake: _Signal = attrs.field(factory=_Signal)
    connected: bool = False
    waiting_for_scan: bool = False
    qr: str | None = None
    qr_index: int = 0
    pairing_phone: str | None = None  # digits given to request_pairing_code
    pairing_code: str | None = None
    code_to_emit: str | None = None
    paired: dict[str, Any] | None = None  # set by pair(): the device to persist
    ending: _Ending | None = None

    def stop(self, ending: _Ending) -> None:
        if self.ending is None:
            self.ending = ending
        self.connected = False
        self.scope.cancel()


@attrs.define(eq=False)
class _Line:
    """Everything the network knows about one connection id (outlives its runs)."""

    connection_id: int
    device: dict[str, Any] | None = None
    run: _Run | None = None
    queue: collections.deque[InboundMessage | Receipt] = attrs.field(factory=collections.deque)
    pending_inbound: int = 0
    changed: _Signal = attrs.field(factory=_Signal)  # the queue or the scheduled receipts changed
    delivered: collections.deque[InboundMessage] = attrs.field(
        factory=lambda: collections.deque(maxlen=DELIVERED_HISTORY))
    delivered_total: int = 0
    outbox: collections.OrderedDict[str, dict[str, Any]] = attrs.field(factory=collections.OrderedDict)
    scheduled: list[tuple[float, int, str, Ack]] = attrs.field(factory=list)  # heap: (due, seq, id, ack)
    media: collections.OrderedDict[str, bytes] = attrs.field(factory=collections.OrderedDict)
    media_bytes: int = 0
    read_by_us: collections.deque[dict[str, Any]] = attrs.field(
        factory=lambda: collections.deque(maxlen=READ_BY_US_MAX))
    presence: collections.OrderedDict[str, str] = attrs.field(factory=collections.OrderedDict)
    extra_latency: float = 0.0
    send_failures: int = 0
    send_failure_reason: str = SEND_FAILURE_REASON
    pending_unlink: _Ending | None = None

    def enqueue(self, event: InboundMessage | Receipt) -> bool:
        if len(self.queue) >= QUEUE_MAX:
            return False
        self.queue.append(event)
        if isinstance(event, InboundMessage):
            self.pending_inbound += 1
        self.changed.notify()
        return True

    def taken(self, event: InboundMessage | Receipt) -> None:
        """The session took `event`: it leaves the queue (found by identity, normally at the head)."""
        for index, queued in enumerate(self.queue):
            if queued is event:
                del self.queue[index]
                break
        else:
            return
        if isinstance(event, InboundMessage):
            self.pending_inbound -= 1
            self.delivered.append(event)
            self.delivered_total += 1

    def requeue_delivered(self, count: int) -> int:
        """Put the last `count` delivered messages back at the head of the queue, in their order."""
        count = min(count, len(self.delivered))
        again = [self.delivered.pop() for _ in range(count)]  # newest first
        self.queue.extendleft(again)  # extendleft reverses: oldest ends up first
        self.pending_inbound += count
        if count:
            self.changed.notify()
        return count

    def keep_media(self, key: str, data: bytes) -> None:
        self.media[key] = data
        self.media_bytes += len(data)
        while len(self.media) > MEDIA_MAX_ITEMS or self.media_bytes > MEDIA_MAX_BYTES:
            _, dropped = self.media.popitem(last=False)
            self.media_bytes -= len(dropped)

    def record(self, entry: dict[str, Any]) -> None:
        self.outbox[entry["id"]] = entry
        while len(self.outbox) > OUTBOX_MAX:
            self.outbox.popitem(last=False)


# ─── the network ────────────────────────────────────────────────────────────────────────

class SandboxNetwork:
    """The simulated WhatsApp: one per process; connections are keyed by connection id."""

    def __init__(self, *, qr_interval: float = 20.0,
                 ack_delays: tuple[float | None, float | None] = (0.5, 1.5),
                 latency: float = 0.0, rng: random.Random | None = None) -> None:
        if qr_interval <= 0:
            raise ValueError("qr_interval must be positive")
        if latency < 0 or any(d is not None and d < 0 for d in ack_delays):
            raise ValueError("latency and ack delays must not be negative")
        self._qr_interval = qr_interval
        self._ack_delays = ack_delays
        self._latency = latency
        self._rng = rng or random.Random()
        self._lines: dict[int, _Line] = {}
        self._seq = itertools.count()
        self._lids: collections.OrderedDict[str, str] = collections.OrderedDict()  # phone digits → LID JID
        self._phones: dict[str, str] = {}  # LID JID → phone digits

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
        """A contact writes to the connection; returns the message id. Queued until the connection takes it."""
        line = self._line(connection_id)
        if len(line.queue) >= QUEUE_MAX:
            raise SandboxError("ERR_SANDBOX_QUEUE_FULL",
                               f"connection {connection_id} has {QUEUE_MAX} events waiting; connect it first")
        message = self._build_inbound(line, sender=sender, name=name, lid=lid, id=id, body=body, media=media,
                                      quoted_id=quoted_id, timestamp=timestamp, group=group, reaction=reaction,
                                      edit=edit, revoke=revoke, location=location, vcard=vcard)
        line.enqueue(message)
        await trio.lowlevel.checkpoint()
        return message.id

    def outbox(self, connection_id: int) -> list[dict[str, Any]]:
        """What was sent through the connection, oldest first (copies)."""
        line = self._lines.get(connection_id)
        return [dict(entry) for entry in line.outbox.values()] if line is not None else []

    def ack(self, connection_id: int, message_id: str, ack: str) -> None:
        """The recipient's phone acknowledges a sent message: a Receipt for the connection, now."""
        if ack not in _CONTROL_ACKS:
            raise SandboxError("ERR_SANDBOX_BAD_ACK", f"ack must be one of {', '.join(_CONTROL_ACKS)}")
        line = self._lines.get(connection_id)
        entry = line.outbox.get(message_id) if line is not None else None
        if line is None or entry is None:
            raise SandboxError("ERR_SANDBOX_UNKNOWN_MESSAGE",
                               f"connection {connection_id} sent no message {message_id!r}")
        if entry["ack"] == "failed":
            raise SandboxError("ERR_SANDBOX_MESSAGE_FAILED", f"message {message_id!r} was never sent")
        if len(line.queue) >= QUEUE_MAX:
            raise SandboxError("ERR_SANDBOX_QUEUE_FULL", f"connection {connection_id} has {QUEUE_MAX} events waiting")
        self._acknowledge(line, entry, _ACK_BY_NAME[ack], force=True)

    def fault(self, connection_id: int, kind: str, **params: Any) -> None:
        """Break something: "disconnect" (redeliver=0), "logout" / "ban" (reason), "send_failure"
        (count=1, reason), "latency" (seconds)."""
        if kind not in FAULTS:
            raise SandboxError("ERR_SANDBOX_UNKNOWN_FAULT", f"fault must be one of {', '.join(FAULTS)}")
        allowed = {"disconnect": {"redeliver"}, "logout": {"reason"}, "ban": {"reason"},
                   "send_failure": {"count", "reason"}, "latency": {"seconds"}}[kind]
        if unknown := set(params) - allowed:
            raise SandboxError("ERR_SANDBOX_BAD_FAULT", f"{kind} takes no {', '.join(sorted(unknown))}")
        if kind == "disconnect":
            redeliver = _int_param(params, "redeliver", 0)
            line = self._lines.get(connection_id)
            conn = line.run if line is not None else None
            if line is None or conn is None:
                raise SandboxError("ERR_SANDBOX_NOT_RUNNING", f"connection {connection_id} is not connected")
            conn.stop(_Ending("lost", "sandbox: connection lost"))
            line.requeue_delivered(redeliver)
        elif kind in ("logout", "ban"):
            reason = _str_param(params, "reason", LOGOUT_REASON if kind == "logout" else BAN_REASON)
            ending = _Ending("unlinked", reason, banned=kind == "ban")
            line = self._line(connection_id)
            if line.run is None:
                line.pending_unlink = ending  # the stored device learns it at its next run
            elif line.device is None:
                raise SandboxError("ERR_SANDBOX_NOT_PAIRED", f"connection {connection_id} is not paired")
            else:
                line.run.stop(ending)
        elif kind == "send_failure":
            line = self._line(connection_id)
            line.send_failures = _int_param(params, "count", 1)
            line.send_failure_reason = _str_param(params, "reason", SEND_FAILURE_REASON)
        else:
            seconds = params.get("seconds", 0.0)
            if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 <= seconds < math.inf:
                raise SandboxError("ERR_SANDBOX_BAD_FAULT", "seconds must be a number >= 0")
            self._line(connection_id).extra_latency = float(seconds)

    def state(self, connection_id: int) -> dict[str, Any]:
        """What the network knows about the connection (a snapshot; unknown ids look unpaired)."""
        line = self._lines.get(connection_id) or _Line(connection_id)
        conn = line.run
        device = line.device
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
            "pendingInbound": line.pending_inbound,
            "pendingReceipts": len(line.queue) - line.pending_inbound,
            "delivered": line.delivered_total,
            "sent": len(line.outbox),
            "latency": self._latency + line.extra_latency,
            "sendFailures": line.send_failures,
            "pendingLogout": line.pending_unlink is not None,
            "readByUs": [dict(entry) for entry in line.read_by_us],
            "presence": dict(line.presence),
        }

    def forget(self, connection_id: int) -> None:
        """The connection was deleted: drop everything about it (a running transport fails)."""
        line = self._lines.pop(connection_id, None)
        if line is not None and line.run is not None:
            line.run.stop(_Ending("lost", "sandbox: connection deleted"))

    # ─── internals ──────────────────────────────────────────────────────────────────────

    def _line(self, connection_id: int) -> _Line:
        line = self._lines.get(connection_id)
        if line is None:
            line = self._lines[connection_id] = _Line(connection_id)
        return line

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
        old = self._lids.pop(phone, None)
        if old is not None:
            self._phones.pop(old, None)
        self._lids[phone] = lid
        self._phones[lid] = phone
        while len(self._lids) > LID_MAX:
            _, dropped = self._lids.popitem(last=False)
            self._phones.pop(dropped, None)

    def _build_inbound(self, line: _Line, *, sender: str, name: str | None, lid: str | None, id: str | None,
                       body: str, media: dict[str, Any] | None, quoted_id: str | None,
                       timestamp: dt.datetime | None, group: dict[str, Any] | None,
                       reaction: dict[str, Any] | None, edit: dict[str, Any] | None,
                       revoke: dict[str, Any] | None, location: dict[str, Any] | None,
                       vcard: str | None) -> InboundMessage:
        if not isinstance(sender, str):
            raise SandboxError("ERR_SANDBOX_BAD_SENDER", "sender must be a phone number or a LID")
        for field, value in (("body", body), ("name", name), ("quoted_id", quoted_id), ("vcard", vcard)):
            if value is not None and not isinstance(value, str):
                raise SandboxError("ERR_SANDBOX_BAD_MESSAGE", f"{field} must be a string")
        # who writes
        phone = phone_digits(sender)
        if phone is not None:
            sender_jid = f"{phone}@s.whatsapp.net"
            if lid is not None:
                sender_lid = _lid_jid(lid)
                if sender_lid is None:
                    raise SandboxError("ERR_SANDBOX_BAD_SENDER", f"not a LID: {lid!r}")
                self._link_lid(phone, sender_lid)
            else:
                sender_lid = self._lid_of(phone)
        else:
            sender_lid = _lid_jid(sender) if "@" in sender else None
            if sender_lid is None:
                raise SandboxError("ERR_SANDBOX_BAD_SENDER",
                                   f"sender must be a phone number (7-15 digits) or an '@lid' id, not {sender!r}")
            sender_jid = sender_lid
            phone = self._phones.get(sender_lid)
        # where
        if group is not None:
            group_id = group.get("id") if isinstance(group, dict) else None
            match = _GROUP_ID.fullmatch(group_id.strip()) if isinstance(group_id, str) else None
            if match is None:
                raise SandboxError("ERR_SANDBOX_BAD_GROUP", "group.id must be a group JID ('…@g.us') or its digits")
            group_name = str(group.get("name") or "") or None
            chat = f"{match.group(1)}@g.us"
            participant: str | None = sender_jid
        else:
            chat, participant, group_name = sender_jid, None, None
        # when, which id
        if timestamp is None:
            when = _now()
        elif not isinstance(timestamp, dt.datetime) or timestamp.tzinfo is None:
            raise SandboxError("ERR_SANDBOX_BAD_TIMESTAMP", "timestamp must be an aware datetime")
        else:
            when = timestamp.astimezone(dt.UTC).replace(microsecond=0)
        if id is None:
            message_id = self._new_id(ours=False)
        elif isinstance(id, str) and _MESSAGE_ID.fullmatch(id):
            message_id = id
        else:
            raise SandboxError("ERR_SANDBOX_BAD_ID", "id must be 1-128 letters, digits or ._:-")
        # what
        fields: dict[str, Any] = {"kind": MessageKind.TEXT, "body": body or ""}
        given = [k for k, v in (("media", media), ("reaction", reaction), ("edit", edit), ("revoke", revoke),
                                ("location", location), ("vcard", vcard)) if v is not None]
        if len(given) > 1:
            raise SandboxError("ERR_SANDBOX_BAD_MESSAGE", f"a message has one of media/reaction/edit/revoke/"
                               f"location/vcard, not {' and '.join(given)}")
        if media is not None:
            fields.update(self._inbound_media(line, media, body))
        elif reaction is not None:
            emoji = reaction.get("emoji", "") if isinstance(reaction, dict) else None
            if not isinstance(emoji, str):
                raise SandboxError("ERR_SANDBOX_BAD_MESSAGE", "reaction.emoji must be a string ('' removes it)")
            fields.update(kind=MessageKind.REACTION, body="", target_id=_target(reaction, "reaction"), reaction=emoji)
        elif edit is not None:
            new_body = edit.get("body") if isinstance(edit, dict) else None
            if not isinstance(new_body, str):
                raise SandboxError("ERR_SANDBOX_BAD_MESSAGE", "edit.body must be a string")
            fields.update(kind=MessageKind.EDIT, body=new_body, target_id=_target(edit, "edit"))
        elif revoke is not None:
            fields.update(kind=MessageKind.REVOKE, body="", target_id=_target(revoke, "revoke"))
        elif location is not None:
            try:
                latitude, longitude = float(location["latitude"]), float(location["longitude"])
            except (KeyError, TypeError, ValueError):
                raise SandboxError("ERR_SANDBOX_BAD_MESSAGE", "location needs numeric latitude and longitude") from None
            if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
                raise SandboxError("ERR_SANDBOX_BAD_MESSAGE", "location is off the globe")
            fields.update(kind=MessageKind.LOCATION, latitude=latitude, longitude=longitude,
                          body=body or str(location.get("name") or ""))
        elif vcard is not None:
            fields.update(kind=MessageKind.CONTACT, vcard=vcard)
        return InboundMessage(
            id=message_id, chat=chat, sender=sender_jid, timestamp=when, quoted_id=quoted_id,
            push_name=name or "", sender_lid=sender_lid, sender_phone=f"{phone}@s.whatsapp.net" if phone else None,
            is_group=group is not None, group_name=group_name, participant=participant, **fields)

    def _inbound_media(self, line: _Line, media: dict[str, Any], body: str) -> dict[str, Any]:
        kind_name = media.get("kind") if isinstance(media, dict) else None
        kind = _MEDIA_KINDS.get(kind_name) if isinstance(kind_name, str) else None
        if kind is None:
            raise SandboxError("ERR_SANDBOX_BAD_MEDIA", f"media.kind must be one of {', '.join(_MEDIA_KINDS)}")
        if media.get("data") is not None:
            data = media["data"]
            if not isinstance(data, bytes | bytearray):
                raise SandboxError("ERR_SANDBOX_BAD_MEDIA", "media.data must be bytes")
            data = bytes(data)
        elif media.get("base64") is not None:
            try:
                data = base64.b64decode(media["base64"], validate=True)
            except (binascii.Error, ValueError, TypeError):
                raise SandboxError("ERR_SANDBOX_BAD_MEDIA", "media.base64 is not base64") from None
        else:
            data = self._rng.randbytes(256)  # WhatsApp media is never empty
        if not data:
            raise SandboxError("ERR_SANDBOX_BAD_MEDIA", "media is empty")
        if len(data) > MEDIA_MAX_BYTES_EACH:
            raise SandboxError("ERR_SANDBOX_MEDIA_TOO_LARGE", f"media is larger than {MEDIA_MAX_BYTES_EACH} bytes")
        mimetype = str(media.get("mimetype") or _DEFAULT_MIMETYPES[kind])
        filename = media.get("filename") or ("document.pdf" if kind is MessageKind.DOCUMENT else None)
        filename = str(filename) if filename is not None else None
        key = f"sandbox/{line.connection_id}/{self._rng.getrandbits(96):024x}"
        line.keep_media(key, data)
        return {"kind": kind, "body": body or str(media.get("caption") or ""),
                "media": MediaRef(kind, mimetype, filename, len(data), key)}

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

    def _release_due(self, line: _Line) -> None:
        now = trio.current_time()
        while line.scheduled and line.scheduled[0][0] <= now:
            _, _, message_id, ack = heapq.heappop(line.scheduled)
            entry = line.outbox.get(message_id)
            if entry is not None:
                self._acknowledge(line, entry, ack, force=False)

    def _acknowledge(self, line: _Line, entry: dict[str, Any], ack: Ack, *, force: bool) -> None:
        """The recipient acknowledged `entry`: update the outbox, queue the Receipt for the connection."""
        current = _ACK_BY_NAME[entry["ack"]]
        if current is Ack.FAILED or (current >= ack and not force):
            return
        if ack > current:
            entry["ack"] = _ACK_NAMES[ack]
        if not line.enqueue(Receipt(entry["to"], (entry["id"],), ack, _now())):
            logger.warning("sandbox: event queue full; receipt for %s dropped", entry["id"],
                           extra={"fields": {"connection_id": line.connection_id}})


def _target(params: dict[str, Any], what: str) -> str:
    target = params.get("targetId") if isinstance(params, dict) else None
    if not isinstance(target, str) or not target:
        raise SandboxError("ERR_SANDBOX_BAD_MESSAGE", f"{what}.targetId is required")
    return target


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


# ─── the transport ──────────────────────────────────────────────────────────────────────

class SandboxTransport:
    """One connection to the sandbox network (the Transport protocol)."""

    def __init__(self, network: SandboxNetwork, connection_id: int, device: dict[str, Any] | None,
                 on_device_change: DeviceCallback) -> None:
        self._network = network
        self._connection_id = connection_id
        self._device = device
        self._on_device_change = on_device_change
        self._run: _Run | None = None

    @property
    def connection_id(self) -> int:
        return self._connection_id

    async def run(self, events: trio.MemorySendChannel[Event], *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        line = self._network._line(self._connection_id)
        if line.run is not None:  # WhatsApp keeps one connection per device: the newer one wins
            line.run.stop(_Ending("lost", "sandbox: connection replaced by another session"))
        conn = self._run = line.run = _Run(line, events)
        task_status.started()
        try:
            pending, line.pending_unlink = line.pending_unlink, None
            if pending is not None and self._device is not None:
                conn.ending = pending  # unlinked while we were away
            else:
                line.device = self._device
                with conn.scope:
                    await self._connect(conn)
                    await self._deliver(conn)
        finally:
            conn.connected = False
            conn.waiting_for_scan = False
            if line.run is conn:
                line.run = None
            if self._run is conn:
                self._run = None
        ending = conn.ending
        assert ending is not None  # the body only ends through conn.stop()
        if ending.kind == "lost":
            raise TransportError(ending.reason)
        if ending.kind == "unlinked":
            await self._unlinked(conn, ending)

    async def _connect(self, conn: _Run) -> None:
        if self._device is None:
            device = await self._pair(conn)
            await self._on_device_change(dict(device))  # persisted before anyone hears of it
            self._device = device
            conn.line.device = device
        await self._sleep_latency(conn.line)
        conn.connected = True
        await conn.events.send(Connected(self._device["jid"], self._device.get("pushName") or ""))

    async def _pair(self, conn: _Run) -> dict[str, Any]:
        """Show QR codes (a fresh one every qr_interval) or a pairing code until `pair()`."""
        rng = self._network._rng
        keys = ",".join(_b64(rng.randbytes(32)) for _ in range(3))  # noise key, identity key, adv secret
        conn.waiting_for_scan = True
        next_qr = trio.current_time()
        try:
            while conn.paired is None:
                if conn.code_to_emit is not None:
                    code, conn.code_to_emit = conn.code_to_emit, None
                    await self._emit(conn, PairingCode(code))
                    continue
                if conn.pairing_code is None and trio.current_time() >= next_qr:
                    conn.qr_index += 1
                    conn.qr = f"2@{_b64(rng.randbytes(60))},{keys}"
                    await self._emit(conn, QrCode(conn.qr, conn.qr_index))
                    next_qr = trio.current_time() + self._network._qr_interval
                    continue
                with trio.move_on_at(next_qr if conn.pairing_code is None else math.inf):
                    await conn.wake.wait()
            return conn.paired
        finally:
            conn.waiting_for_scan = False
            conn.qr = None

    async def _deliver(self, conn: _Run) -> None:
        """Hand queued messages and receipts to the session, in order; each leaves the queue once taken.

        Receipts whose delay has passed join the queue first (`send` only schedules them), so one
        loop serves both: nothing here ever blocks a sender, and a slow session delays receipts
        the way it delays messages."""
        line = conn.line
        while True:
            self._network._release_due(line)
            if line.queue:
                event = line.queue[0]
                await self._emit(conn, event)
                line.taken(event)
                continue
            with trio.move_on_at(line.scheduled[0][0] if line.scheduled else math.inf):
                await line.changed.wait()

    async def _unlinked(self, conn: _Run, ending: _Ending) -> None:
        line = conn.line
        line.pending_unlink = ending  # cancelled half-way, the next run says it again
        await self._emit(conn, LoggedOut(ending.reason, banned=ending.banned))
        await self._on_device_change(None)
        self._device = None
        line.device = None
        if line.pending_unlink is ending:
            line.pending_unlink = None

    async def _sleep_latency(self, line: _Line) -> None:
        delay = self._network._latency_of(line)
        if delay > 0:
            await trio.sleep(delay)

    async def _emit(self, conn: _Run, event: Event) -> None:
        await self._sleep_latency(conn.line)
        await conn.events.send(event)

    def _connected(self) -> _Run:
        conn = self._run
        if conn is None or not conn.connected:
            raise NotConnected("sandbox: not connected")
        return conn

    # ─── commands ───────────────────────────────────────────────────────────────────────

    async def send(self, command: Command) -> Sent:
        line = self._connected().line
        await self._sleep_latency(line)
        self._connected()  # still connected after the latency?
        network = self._network
        message_id, now = network._new_id(ours=True), _now()
        entry: dict[str, Any] = {
            "id": message_id, "to": command.to, "kind": None, "body": None, "caption": None, "filename": None,
            "mimetype": None, "size": None, "quotedId": None, "ack": "sent", "timestamp": now.isoformat(),
            "target_id": None, "emoji": None, "reaction": None, "deleted": False, "edited": False, "error": None,
        }
        content = isinstance(command, SendText | SendMedia)
        error = None
        match command:
            case SendText():
                entry.update(kind=MessageKind.TEXT.value, body=command.body, quotedId=command.quoted_id)
            case SendMedia():
                entry.update(kind=command.kind.value, body=command.caption, caption=command.caption,
                             filename=command.filename, mimetype=command.mimetype, size=len(command.data),
                             quotedId=command.quoted_id)
                if command.kind not in _DEFAULT_MIMETYPES:
                    error = f"cannot send {command.kind.value} as media"
                elif not command.data:
                    error = "media is empty"
            case SendReaction():
                entry.update(kind=MessageKind.REACTION.value, target_id=command.target_id, emoji=command.emoji)
            case EditMessage():
                entry.update(kind=MessageKind.EDIT.value, target_id=command.target_id, body=command.body)
            case DeleteForEveryone():
                entry.update(kind=MessageKind.REVOKE.value, target_id=command.target_id)
            case _:
                raise TypeError(f"not a transport command: {command!r}")
        if error is None and not _SEND_JID.fullmatch(command.to):
            error = f"invalid recipient {command.to!r}"
        if error is None and line.send_failures > 0:
            line.send_failures -= 1
            error = line.send_failure_reason
        if error is not None:
            entry.update(ack="failed", error=error)
            line.record(entry)
            raise SendFailed(error)
        line.record(entry)
        target = line.outbox.get(entry["target_id"]) if entry["target_id"] else None
        if target is not None:
            if isinstance(command, EditMessage):
                target.update(body=command.body, edited=True)
            elif isinstance(command, DeleteForEveryone):
                target.update(deleted=True)
            elif isinstance(command, SendReaction):
                target.update(reaction=command.emoji or None)
        if content:
            network._schedule_receipts(line, message_id)
        return Sent(message_id, now)

    async def download(self, media: MediaRef) -> bytes:
        await trio.lowlevel.checkpoint()
        line = self._network._lines.get(self._connection_id)
        data = line.media.get(media.key) if line is not None else None
        if data is None:
            raise SendFailed("sandbox: media not found (expired or never existed)")
        return data

    async def mark_read(self, chat: str, ids: tuple[str, ...], sender: str | None = None) -> None:
        conn = self._connected()
        await trio.lowlevel.checkpoint()
        conn.line.read_by_us.append({"chat": chat, "ids": list(ids), "sender": sender, "timestamp": _now().isoformat()})

    async def set_presence(self, chat: str, presence: Presence) -> None:
        conn = self._connected()
        await trio.lowlevel.checkpoint()
        line = conn.line
        line.presence.pop(chat, None)
        line.presence[chat] = Presence(presence).value
        while len(line.presence) > PRESENCE_MAX:
            line.presence.popitem(last=False)

    async def request_pairing_code(self, phone: str) -> str:
        await trio.lowlevel.checkpoint()
        conn = self._run
        if conn is None or conn.ending is not None:
            raise NotConnected("sandbox: not connected")
        if not conn.waiting_for_scan or conn.paired is not None:
            raise SendFailed("sandbox: already paired")
        digits = phone_digits(phone)
        if digits is None:
            raise SendFailed(f"sandbox: invalid phone number {phone!r}")
        code = self._network._new_pairing_code()
        conn.pairing_phone, conn.pairing_code, conn.code_to_emit = digits, code, code
        conn.wake.notify()
        return code

    async def logout(self) -> None:
        """Unlink this device (our side): the device store is cleared and `run` returns."""
        conn = self._run
        if self._device is not None:
            await self._on_device_change(None)
            self._device = None
            line = self._network._lines.get(self._connection_id)
            if line is not None:
                line.device = None
        else:
            await trio.lowlevel.checkpoint()
        if conn is not None:
            conn.stop(_Ending("logout"))
