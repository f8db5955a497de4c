"""One connection to the sandbox network: `SandboxTransport`, the Transport protocol (``transport.py``).

`run` connects as the connection's `_Run` (showing QR codes, a fresh one every ``qr_interval``, or a
pairing code until the network's `pair`), then hands the session the events delivered before and
not settled since (in their order), then the queued messages and receipts in order; each stays
unsettled until the consumer calls its `settle`. The commands (`send`, `download`, `mark_read`,
`set_presence`, `is_on_whatsapp`, `request_pairing_code`, `logout`) act on the network's state for the
connection (`is_on_whatsapp` answers from its registry: control `registry`); `send` answers once the
message is in the network's outbox, and a send with an id accepted already
answers the first `Sent` again (counted there as a duplicate). They raise the transport's errors:
``NotConnected``, ``SendFailed``, ``TransportError``.
"""

from __future__ import annotations

import base64
import datetime as dt
import math
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import trio

from gateway.whatsapp.sandbox_journal import SETTLE_FLUSH_INTERVAL
from gateway.whatsapp.sandbox_messages import _DEFAULT_MIMETYPES, MESSAGE_ID, _now, phone_digits
from gateway.whatsapp.sandbox_outbox import TargetChange
from gateway.whatsapp.sandbox_parts import NetworkParts
from gateway.whatsapp.sandbox_state import SandboxError, _Ending, _Line, _Run
from gateway.whatsapp.transport import (
    Command,
    Connected,
    DeleteForEveryone,
    EditMessage,
    Event,
    InjectedCrash,
    LoggedOut,
    MediaRef,
    MessageKind,
    NotConnected,
    OnWhatsApp,
    PairingCode,
    Presence,
    QrCode,
    SendFailed,
    SendMedia,
    SendReaction,
    SendText,
    Sent,
    TransportError,
)

PRESENCE_MAX = 1_000  # chats whose presence we remember per connection

_SEND_JID = re.compile(r"[0-9]+(?:-[0-9]+)?@(?:s\.whatsapp\.net|g\.us|lid)|[A-Za-z0-9._\-]+@(?:broadcast|newsletter)")

DeviceCallback = Callable[[dict[str, Any] | None], Awaitable[None]]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class SandboxTransport:
    """One connection to the sandbox network (the Transport protocol)."""

    def __init__(self, network: NetworkParts, connection_id: int, device: dict[str, Any] | None,
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
        if line.crashes > 0:  # fault "crash" (test-only): this run crashes the session at once
            line.crashes -= 1
            raise InjectedCrash(f"sandbox: injected crash of connection {self._connection_id}")
        if line.run is not None:  # WhatsApp keeps one connection per device: the newer one wins
            line.run.stop(_Ending("lost", "sandbox: connection replaced by another session"))
        conn = self._run = line.run = _Run(line, events)
        task_status.started()
        try:
            pending = line.pending_unlink
            self._network._set_unlink(line, None)
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
        if ending.kind == "crash":
            raise InjectedCrash(ending.reason)
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
        """Hand the session what it has not settled: first the events delivered before (in their
        order), then the queued messages and receipts, in order. An event becomes unsettled before it
        is handed over, so a run that ends in the middle delivers it again next time.

        Receipts whose delay has passed join the queue first (`send` only schedules them), so one
        loop serves both: nothing here ever blocks a sender, and a slow session delays receipts
        the way it delays messages. Settles waiting to leave the journal are flushed within
        SETTLE_FLUSH_INTERVAL when nothing else writes it."""
        line = conn.line
        network = self._network
        for seq in sorted(line.unsettled):
            event = line.unsettled.get(seq)
            if event is not None:  # not settled in the meantime
                await self._emit(conn, event)
                line.delivered(seq, event)
        flush_at = math.inf
        while True:
            await network._release_due(line)
            if line.queue:
                seq, event = line.take()
                await self._emit(conn, event)
                line.delivered(seq, event)
                continue
            if network._settles_waiting():
                if trio.current_time() >= flush_at:
                    network._flush_settled()
                    flush_at = math.inf
                elif flush_at == math.inf:
                    flush_at = trio.current_time() + SETTLE_FLUSH_INTERVAL
            else:
                flush_at = math.inf
            wake_at = min(line.scheduled[0][0] if line.scheduled else math.inf, flush_at,
                          line.retry_at if line.receipts_to_reschedule else math.inf)
            if wake_at == math.inf:  # nothing timed: no cancel scope (this wait comes once per message or so)
                await line.changed.wait()
            else:
                with trio.move_on_at(wake_at):
                    await line.changed.wait()

    async def _unlinked(self, conn: _Run, ending: _Ending) -> None:
        line = conn.line
        self._network._set_unlink(line, ending)  # cancelled half-way, the next run says it again
        await self._emit(conn, LoggedOut(ending.reason, banned=ending.banned))
        await self._on_device_change(None)
        self._device = None
        line.device = None
        if line.pending_unlink is ending:
            self._network._set_unlink(line, None)

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
        conn = self._connected()  # still connected after the latency?
        network = self._network
        message_id, now = network._new_id(ours=True), _now()
        if isinstance(command, SendText | SendMedia) and command.id is not None:  # chosen by the sender
            if not isinstance(command.id, str) or not MESSAGE_ID.fullmatch(command.id):
                raise SendFailed(f"sandbox: invalid message id {command.id!r}")
            message_id = command.id
        entry: dict[str, Any] = {
            "id": message_id, "to": command.to, "kind": None, "body": None, "caption": None, "filename": None,
            "mimetype": None, "size": None, "quotedId": None, "ack": "sent", "timestamp": now.isoformat(),
            "target_id": None, "emoji": None, "error": None,
        }
        content = isinstance(command, SendText | SendMedia)
        error = None
        target: TargetChange | None = None
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
                target = TargetChange(command.target_id, react=True, reaction=command.emoji or None)
            case EditMessage():
                entry.update(kind=MessageKind.EDIT.value, target_id=command.target_id, body=command.body)
                target = TargetChange(command.target_id, edit=True, body=command.body)
            case DeleteForEveryone():
                entry.update(kind=MessageKind.REVOKE.value, target_id=command.target_id)
                target = TargetChange(command.target_id, revoke=True)
            case _:
                raise TypeError(f"not a transport command: {command!r}")
        if error is None and not _SEND_JID.fullmatch(command.to):
            error = f"invalid recipient {command.to!r}"
        injected = error is None and line.send_failures > 0
        if injected:
            line.send_failures -= 1
            error = line.send_failure_reason
        if error is not None:
            entry.update(ack="failed", error=error)
        try:  # in the outbox (committed) before anyone hears of it
            first = await network._outbox.accept(line.connection_id, entry, target=target if error is None else None)
        except BaseException as exc:
            if injected:
                line.send_failures += 1  # not used up: this send never got to WhatsApp
            if isinstance(exc, SandboxError):
                raise TransportError(f"sandbox: {exc.message}") from None
            raise
        if first is not None:  # accepted before under this id: WhatsApp keeps one (the outbox counted this one)
            if injected:
                line.send_failures += 1  # this send did not fail after all
            return Sent(first["id"], dt.datetime.fromisoformat(first["timestamp"]))
        if error is not None:
            raise SendFailed(error)
        if content:
            network._schedule_receipts(line, message_id)
        if line.answer_delay > 0:  # WhatsApp has it; its answer is on its way
            await trio.sleep(line.answer_delay)
            if self._run is not conn or not conn.connected:
                raise NotConnected("sandbox: the connection dropped before WhatsApp answered")
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

    async def is_on_whatsapp(self, numbers: Sequence[str]) -> list[OnWhatsApp]:
        """Every phone number has an account, except those the connection's registry lists (control
        `registry`: numbers, and prefixes of numbers); what is not a phone number has none."""
        line = self._connected().line
        await self._sleep_latency(line)
        self._connected()
        line.number_checks += 1
        line.numbers_checked += len(numbers)
        line.largest_number_check = max(line.largest_number_check, len(numbers))
        answers = []
        for number in numbers:
            digits = phone_digits(number) if isinstance(number, str) else None
            exists = digits is not None and digits not in line.not_on_whatsapp \
                and not digits.startswith(line.not_on_whatsapp_prefixes)
            answers.append(OnWhatsApp(number, exists, f"{digits}@s.whatsapp.net" if exists else None))
        return answers

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
