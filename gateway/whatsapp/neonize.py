"""The real WhatsApp transport: WhatsApp multi-device through neonize 0.5.2 (whatsmeow in Go).

This module is the glue between neonize's client and trio: the client, its thread, the callbacks
and the commands. What it uses lives beside it: `neonize_translate` (pure: neonize events → our
events, our commands → WhatsApp messages, JIDs) and `neonize_store` (whatsmeow's device store in
PostgreSQL: its DSN, and reading or clearing a device).

Threads. neonize's `NewClient.connect()` blocks its thread until the client is stopped, so every
`run` starts one dedicated `threading.Thread` (daemon, `neonize-<name>.<run>`) that calls it.
A dedicated thread rather than `trio.to_thread.run_sync(..., abandon_on_cancel=True)`: `run` must
be able to stop the client and *join* the thread within a bound, which an abandoned trio worker
thread does not allow (and trio's worker cache would keep the thread alive after the join).
neonize calls our callbacks on Go-owned threads; each callback translates the event with the pure
`translate_*` functions of `neonize_translate` and enters trio with
`trio.from_thread.run(..., trio_token=...)`, where it is an awaited send into the session's mailbox:
a full mailbox blocks the callback thread, and with it whatsmeow's event queue (backpressure, not
loss). A callback never raises into Go and never hangs once the transport stops: pending sends are
cancelled, later ones are dropped, and `trio.RunFinishedError`/`trio.Cancelled` (trio gone or
stopping) are caught.

Stopping (`run` cancelled or ended). Commands stop being accepted, pending callback sends are
cancelled, in-flight commands get a moment to finish, then `client.stop()` cancels the Go side and
the thread is joined; all within `STOP_DEADLINE` seconds. One case cannot be helped: stopped while
QR codes are being shown, neonize's Go call stays blocked in whatsmeow's QR loop (whatsmeow ends
that loop on a *remote* disconnect or when its codes run out, and a local stop stops the codes
without ending it). `run` still returns in time; the thread is left behind (a daemon, kept with its
client so Go never calls freed callbacks, logged as a warning). So a session should let whatsmeow
time the QR codes out (it stops after 6, and `run` then raises "not scanned in time") rather than
stop the transport while a code is shown.

Device store. whatsmeow keeps devices in PostgreSQL, in the `whatsmeow_*` tables of the database
given as `database_url` (see `neonize_store`). neonize picks the device like this: with `jid` it
loads that device (and *crashes the process* if the row does not exist, so `run` checks first and
reports `LoggedOut` instead); with `new_device=True` it pairs a new one; otherwise it resumes the
first device in the store, which is never what a multi-tenant gateway wants and is never used
here. After pairing, `device_jid` holds the device JID (`5511999990000:12@s.whatsapp.net`, with
the device number, as whatsmeow stores it); it is also what `Connected.jid` reports. The session
persists it and passes it back as `device_jid` so that a restart reconnects the same device.

Connection life. whatsmeow reconnects by itself after a dropped connection: `Disconnected` is
reported and `run` goes on (a later `Connected` says it is back). `run` returns after `LoggedOut`
(unlinked from the phone, banned, or `logout()`), and raises `TransportError` when the connection
fails in a way whatsmeow does not retry (network down at start, QR not scanned in time, stream
replaced by another client, client outdated); the session then retries with its own backoff.

Acknowledgement and message ids (issue 22; checked against neonize 0.5.2's Go side and the whatsmeow
it embeds, v0.0.0-20260921121126-35ae40906e74). whatsmeow acknowledges an inbound message with its
delivery receipt, which it sends *after* the event handlers return (from a goroutine; inline with
`Client.SynchronousAck`), and not at all if a handler registered with
`AddEventHandlerWithSuccessStatus` returns false — WhatsApp then redelivers it after a reconnect.
Incoming receipts and notifications get their `ack` node *before* the handlers run unless
`SynchronousAck` is set. But neonize's Go handler only puts the event on a Go channel (100 deep) that
another goroutine feeds to our Python callback, and neonize exposes neither `SynchronousAck`,
`EnableDecryptedEventBuffer` nor a success status: the receipt leaves as soon as neonize has queued
the event, before our callback runs. So these events carry no `settle` (nothing it did could reach
WhatsApp) and a window remains: a message is acknowledged to WhatsApp once neonize has queued it; a
crash or kill before the ticket actor's commit loses it (up to 100 in neonize's channel, the one in
our callback, the session's and the ticket actor's mailboxes, the writer's batch). Closing it needs
neonize to set `SynchronousAck` and `EnableDecryptedEventBuffer` (whatsmeow then keeps the decrypted
plaintext until the handler succeeds: without it the Signal session has moved on and a redelivered
message fails to decrypt, "old counter", and is dropped) and to call Python synchronously, returning
the handler's success to whatsmeow. Message ids: whatsmeow's `SendRequestExtra.ID` would send under
our id, but neonize's `send_message` passes only `AdditionalNodes` (its `SendRequestExtra` reaches
only `send_fb_message`, Messenger-style consumer-application messages): `SendText.id`/`SendMedia.id`
are not used, and `Sent.id` is the id whatsmeow generated. A send retried after a crash between
whatsmeow's send and the recording of its `Sent` reaches the contact twice.

Known limits of neonize 0.5.2 (not fixable here): its Go side keeps clients in unsynchronised maps,
so clients starting or stopping while others send are not strictly race-free in Go; whatsmeow's
history sync is not subscribed (old messages are not imported).
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import enum
import functools
import logging
import re
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import outcome
import psycopg
import trio
from neonize import client as neonize_client
from neonize._binder import gocode
from neonize.client import ChatSettingsStore, ContactStore, NewClient
from neonize.exc import NeonizeError
from neonize.proto import Neonize_pb2 as nz
from neonize.proto.waCompanionReg.WAWebProtobufsCompanionReg_pb2 import DeviceProps
from neonize.proto.waE2E import WAWebProtobufsE2E_pb2 as wa
from neonize.utils.enum import ChatPresence, ChatPresenceMedia, ClientName, ReceiptType
from neonize.utils.enum import Presence as NeonizePresence

from gateway.whatsapp.neonize_store import device_exists, forget_device, whatsmeow_dsn
from gateway.whatsapp.neonize_translate import (
    LOGIN_FAILURES,
    UPLOAD_TYPES,
    ConnectionChange,
    build_edit,
    build_media,
    build_reaction,
    build_revoke,
    build_text,
    parse_jid,
    to_datetime,
    translate_connection,
    translate_login_status,
    translate_message,
    translate_qr,
    translate_receipt,
)
from gateway.whatsapp.transport import (
    Command,
    Connected,
    DeleteForEveryone,
    Disconnected,
    EditMessage,
    Event,
    LoggedOut,
    MediaRef,
    NotConnected,
    OnWhatsApp,
    PairingCode,
    PairingTimeout,
    Presence,
    SendFailed,
    SendMedia,
    SendReaction,
    SendText,
    Sent,
    TransportError,
)

log = logging.getLogger("zapgate.whatsapp.neonize")

STOP_DEADLINE = 4.0  # seconds from "stop" to the client thread joined (run's cancellation stays under 5 s)
SETTLE_WAIT = 1.5  # at most this long, a stop waits for neonize to finish registering the client in Go
INFLIGHT_WAIT = 0.5  # at most this long, a stop waits for commands already inside a Go call
LOCAL_EVENTS = 8  # events raised by commands (PairingCode), forwarded by `run`; overflow is dropped
DEVICE_OS = "zapgate"  # how the linked device is named on the phone


# ─── the neonize client ─────────────────────────────────────────────────────────────────

class _DaemonThread(threading.Thread):
    """neonize's `connect()` makes the blocking Go call on a *non-daemon* thread of its own: one that
    never returns (a stop during the QR phase) would keep the process from exiting."""

    def __init__(self, *args: Any, daemon: bool | None = None, **kwargs: Any) -> None:
        super().__init__(*args, daemon=True, **kwargs)


class _Client(NewClient):
    """neonize's client, with our own Go-side id (neonize would use the phone number, shared by
    every run of one device) and its QR-loop status reported to us instead of printed."""

    def __init__(self, database: str, *, jid: nz.JID | None, uuid: str, new_device: bool,
                 props: DeviceProps, on_login_status: Callable[[str], None]) -> None:
        super().__init__(database, jid=jid, props=props, uuid=uuid, new_device=new_device)
        self._stop_finalizer.detach()
        self.uuid = uuid.encode()
        self.contact = ContactStore(self.uuid)
        self.chat_settings = ChatSettingsStore(self.uuid)
        self._stop_finalizer = weakref.finalize(self, NewClient._release_ffi, self.uuid, gocode)
        self._on_login_status = on_login_status
        neonize_client.Thread = _DaemonThread  # see _DaemonThread (idempotent)

    # neonize calls `self.__onLoginStatus` (name-mangled) from its QR loop; this overrides it.
    def _NewClient__onLoginStatus(self, uuid: int, status: int) -> None:
        try:
            self._on_login_status(ctypes.string_at(status).decode(errors="replace") if status else "")
        except Exception:
            log.exception("login status callback failed")


ClientFactory = Callable[..., Any]
"""`factory(database, *, jid, uuid, new_device, props, on_login_status)` → a neonize-like client (tests pass fakes)."""

_CONNECTION_EVENTS = (nz.PairStatus, nz.Connected, nz.KeepAliveTimeout, nz.KeepAliveRestored, nz.LoggedOut,
                      nz.StreamReplaced, nz.TemporaryBan, nz.ConnectFailure, nz.ClientOutdated, nz.Disconnected)
_LINGERING: set[tuple[Any, threading.Thread]] = set()  # clients whose Go call outlived their stop


def _keep_until_exit(client: Any, thread: threading.Thread) -> None:
    """Keep a client (and the ctypes callbacks Go still holds) alive until its thread exits."""
    for entry in list(_LINGERING):
        if not entry[1].is_alive():
            _LINGERING.discard(entry)
    _LINGERING.add((client, thread))


async def _in_thread(fn: Callable[[], Any], name: str) -> Any:
    """Run a blocking call on a fresh thread that exits right after (trio's worker cache would keep
    one around); if cancelled, the call is abandoned and finishes on its own."""
    token = trio.lowlevel.current_trio_token()
    done = trio.Event()
    box: list[outcome.Outcome[Any]] = []

    def target() -> None:
        box.append(outcome.capture(fn))
        with contextlib.suppress(trio.RunFinishedError):
            token.run_sync_soon(done.set)

    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    await done.wait()
    thread.join()
    return box[0].unwrap()


class _State(enum.Enum):
    STARTING = "starting"
    PAIRING = "pairing"  # a QR code is shown: the Go client exists and can pair by phone
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"  # whatsmeow is reconnecting
    CLOSED = "closed"


class _Connection:
    """One `run` of the transport: one neonize client, its thread, and the bridge into trio."""

    def __init__(self, transport: NeonizeTransport, events: trio.MemorySendChannel[Event], uuid: str) -> None:
        self.transport = transport
        self.events = events
        self.uuid = uuid
        self.token = trio.lowlevel.current_trio_token()
        self.state = _State.STARTING
        self.client: Any = None
        self.thread: threading.Thread | None = None
        self.me: nz.JID | None = None
        self.qr_index = 0
        self.closing = threading.Event()
        self.settled = threading.Event()  # neonize has registered the client in Go (or given up)
        self._calls = threading.Condition()
        self._inflight = 0
        self._scopes: set[trio.CancelScope] = set()
        self.local_send, self._local_recv = trio.open_memory_channel[Event](LOCAL_EVENTS)
        self.ended = trio.Event()
        self.ready = trio.Event()  # the Go client exists (a QR or connection event came), or the run ended
        self.outcome: ConnectionChange | None = None

    # ── from trio ──
    def finish(self, change: ConnectionChange) -> None:
        if self.outcome is None:
            self.outcome = change
            self.ended.set()
            self.ready.set()

    async def forward_local(self) -> None:
        async for event in self._local_recv:
            await self._send_event(event)

    async def _send_event(self, event: Event) -> None:
        if self.closing.is_set():
            return
        with trio.CancelScope() as scope:
            self._scopes.add(scope)
            try:
                await self.events.send(event)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self.finish(ConnectionChange(ends=True))  # nobody listens any more
            finally:
                self._scopes.discard(scope)

    def start(self, client: Any) -> None:
        self.client = client
        client.event.qr(self._on_qr)
        for event_type in _CONNECTION_EVENTS:
            client.event(event_type)(self._on_connection_event)
        client.event(nz.Message)(self._on_message)
        client.event(nz.Receipt)(self._on_receipt)
        self.thread = threading.Thread(target=self._thread_main, name=f"neonize-{self.uuid}", daemon=True)
        self.thread.start()

    async def shutdown(self) -> None:
        """Stop accepting, cancel pending deliveries, stop the client, join its thread (bounded)."""
        self.closing.set()
        self.state = _State.CLOSED
        self.ready.set()
        for scope in list(self._scopes):
            scope.cancel()
        self.local_send.close()
        if self.thread is None:
            return
        stopped = False
        with trio.move_on_after(STOP_DEADLINE + 0.5):
            stopped = await _in_thread(self._stop_and_join, name=f"neonize-stop-{self.uuid}")
        finalizer = getattr(self.client, "_stop_finalizer", None)
        if finalizer is not None:
            finalizer.detach()  # stopped explicitly; never again by the garbage collector
        if not stopped:
            _keep_until_exit(self.client, self.thread)
            log.warning("neonize client thread still running after stop (blocked in the QR loop); left behind",
                        extra={"fields": {"connection": self.uuid}})

    # ── on our stop thread ──
    def _stop_and_join(self) -> bool:
        assert self.thread is not None
        deadline = time.monotonic() + STOP_DEADLINE
        self.settled.wait(timeout=SETTLE_WAIT)
        with self._calls:
            self._calls.wait_for(lambda: self._inflight == 0, timeout=INFLIGHT_WAIT)
        while True:
            try:
                self.client.stop()
            except Exception:
                log.exception("neonize stop failed", extra={"fields": {"connection": self.uuid}})
            self.thread.join(timeout=max(0.0, min(0.25, deadline - time.monotonic())))
            if not self.thread.is_alive():
                return True
            if time.monotonic() >= deadline:
                return False

    # ── on worker threads (commands) ──
    def call(self, fn: Callable[[], Any], *states: _State) -> Any:
        """Run a Go call unless stopping: calling a stopped client dereferences nil in Go and kills the process."""
        with self._calls:
            if self.closing.is_set() or self.state not in states:
                raise NotConnected(f"WhatsApp connection is {self.state.value}")
            self._inflight += 1
        try:
            return fn()
        finally:
            with self._calls:
                self._inflight -= 1
                self._calls.notify_all()

    # ── on the client thread and Go's threads ──
    def _thread_main(self) -> None:
        error = None
        try:
            self.client.connect()
        except Exception as exc:
            error = f"cannot connect to WhatsApp: {exc or type(exc).__name__}"
        finally:
            self.settled.set()
        if not self.closing.is_set():
            self._finish_threadsafe(ConnectionChange(ends=True, error=error or "the WhatsApp client stopped"))

    def _deliver(self, event: Event) -> None:
        """Blocks while the mailbox is full; returns at once when stopping or when trio is gone."""
        if self.closing.is_set():
            return
        with contextlib.suppress(trio.RunFinishedError, trio.Cancelled):
            trio.from_thread.run(self._send_event, event, trio_token=self.token)

    def _finish_threadsafe(self, change: ConnectionChange) -> None:
        with contextlib.suppress(trio.RunFinishedError, trio.Cancelled):
            trio.from_thread.run_sync(self.finish, change, trio_token=self.token)

    def _mark_ready(self) -> None:
        self.settled.set()
        if not self.closing.is_set():
            with contextlib.suppress(trio.RunFinishedError, trio.Cancelled):
                trio.from_thread.run_sync(self.ready.set, trio_token=self.token)

    def _on_qr(self, client: Any, data: bytes) -> None:
        try:
            if self.state == _State.STARTING:
                self.state = _State.PAIRING
            self._mark_ready()
            self.qr_index += 1
            self._deliver(translate_qr(data, self.qr_index))
        except Exception:
            log.exception("QR callback failed", extra={"fields": {"connection": self.uuid}})

    def on_login_status(self, status: str) -> None:
        change = translate_login_status(status)
        if change.ends and not self.closing.is_set():
            self._finish_threadsafe(change)

    def _on_connection_event(self, client: Any, event: Any) -> None:
        try:
            if not self.ready.is_set():
                self._mark_ready()
            device = None
            if isinstance(event, nz.Connected | nz.KeepAliveRestored):
                device = client.get_me()
                self.me = device.JID if device.HasField("JID") else self.me
            change = translate_connection(event, device)
            if isinstance(change.event, Connected):
                self.state = _State.CONNECTED
                if change.event.jid:
                    self.transport._device_jid = change.event.jid
            elif isinstance(change.event, Disconnected):
                self.state = _State.DISCONNECTED
            elif isinstance(change.event, LoggedOut):
                self.state = _State.CLOSED
                if isinstance(event, nz.LoggedOut) or not change.event.banned:
                    self.transport._device_jid = None  # whatsmeow has deleted the device
            if change.event is not None:
                self._deliver(change.event)
            if change.ends and not self.closing.is_set():
                self._finish_threadsafe(change)
        except Exception:
            log.exception("connection event callback failed", extra={"fields": {"connection": self.uuid}})

    def _on_message(self, client: Any, event: nz.Message) -> None:
        try:
            self.settled.set()
            message = translate_message(event)
            if message is not None:
                self._deliver(message)
        except Exception:
            log.exception("message callback failed", extra={"fields": {"connection": self.uuid}})

    def _on_receipt(self, client: Any, event: nz.Receipt) -> None:
        try:
            receipt = translate_receipt(event)
            if receipt is not None:
                self._deliver(receipt)
        except Exception:
            log.exception("receipt callback failed", extra={"fields": {"connection": self.uuid}})


# ─── the transport ──────────────────────────────────────────────────────────────────────

class NeonizeTransport:
    """One WhatsApp connection through neonize (see the module docstring).

    `name` identifies the connection in logs and in neonize's Go registry (unique per process, e.g.
    the connection id); `database_url` is the PostgreSQL database that holds whatsmeow's device
    store (any form psycopg accepts); `device_jid` is the device to reconnect (None: pair a new one
    with QR codes or `request_pairing_code`).
    """

    def __init__(self, name: str, database_url: str, *, device_jid: str | None = None,
                 client_factory: ClientFactory | None = None) -> None:
        if device_jid is not None:
            parse_jid(device_jid)  # fail early on garbage
        self.name = name
        self._database_url = database_url
        self._device_jid = device_jid
        self._factory: ClientFactory = client_factory or _Client
        self._conn: _Connection | None = None
        self._runs = 0

    @property
    def device_jid(self) -> str | None:
        """The device this transport connects as: set after pairing, cleared when logged out."""
        return self._device_jid

    async def run(self, events: trio.MemorySendChannel[Event], *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        if self._conn is not None:
            raise RuntimeError(f"transport {self.name} is already running")
        try:
            dsn = whatsmeow_dsn(self._database_url)
        except ValueError as exc:
            raise TransportError(f"the database cannot hold the WhatsApp device store: {exc}") from None
        self._runs += 1
        conn = _Connection(self, events, uuid=f"{self.name}.{self._runs}")
        self._conn = conn
        task_status.started()
        try:
            change = await self._connect(conn, dsn)
        finally:
            self._conn = None
            with trio.CancelScope(shield=True):
                await conn.shutdown()
        if change.event is not None:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await events.send(change.event)
        if change.error is not None:
            if change.error == LOGIN_FAILURES["timeout"]:
                raise PairingTimeout(change.error)
            raise TransportError(change.error)

    async def _connect(self, conn: _Connection, dsn: str) -> ConnectionChange:
        jid = None
        if self._device_jid is not None:
            try:
                known = await _in_thread(functools.partial(device_exists, self._database_url, self._device_jid),
                                         name=f"neonize-check-{conn.uuid}")
            except psycopg.Error as exc:
                raise TransportError(f"cannot read the WhatsApp device store: {exc}") from None
            if not known:
                gone, self._device_jid = self._device_jid, None
                return ConnectionChange(LoggedOut(f"device {gone} is no longer in the device store"), ends=True)
            jid = parse_jid(self._device_jid)
        client = self._factory(dsn, jid=jid, uuid=conn.uuid, new_device=jid is None,
                               props=DeviceProps(os=DEVICE_OS, platformType=DeviceProps.CHROME),
                               on_login_status=conn.on_login_status)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(conn.forward_local)
            conn.start(client)
            await conn.ended.wait()
            nursery.cancel_scope.cancel()
        assert conn.outcome is not None
        return conn.outcome

    # ── commands ──
    def _current(self) -> _Connection:
        if self._conn is None:
            raise NotConnected("WhatsApp connection is not running")
        return self._conn

    async def _call(self, fn: Callable[[], Any], *states: _State) -> Any:
        conn = self._current()
        return await trio.to_thread.run_sync(conn.call, fn, *(states or (_State.CONNECTED,)))

    async def send(self, command: Command) -> Sent:
        """Send `command`; `SendText.id`/`SendMedia.id` cannot be honoured (see the module docstring):
        the `Sent.id` returned is whatsmeow's."""
        conn = self._current()
        response = await self._call(functools.partial(self._send_sync, conn, command))
        return Sent(id=response.ID, timestamp=to_datetime(response.Timestamp))

    @staticmethod
    def _send_sync(conn: _Connection, command: Command) -> nz.SendResponse:
        try:
            match command:
                case SendText():
                    message = build_text(command)
                case SendMedia():
                    kind = UPLOAD_TYPES.get(command.kind)
                    if kind is None:
                        raise SendFailed(f"cannot send media of kind {command.kind}")
                    message = build_media(command, conn.client.upload(command.data, kind))
                case SendReaction():
                    message = build_reaction(command)
                case EditMessage():
                    message = build_edit(command)
                case DeleteForEveryone():
                    if conn.me is None:
                        raise SendFailed("own JID unknown")
                    message = build_revoke(command, conn.me)
                case _:
                    raise SendFailed(f"unknown command {type(command).__name__}")
            return conn.client.send_message(parse_jid(command.to), message)
        except (NeonizeError, ValueError) as exc:
            raise SendFailed(str(exc) or type(exc).__name__) from None

    async def download(self, media: MediaRef) -> bytes:
        try:
            message = wa.Message.FromString(base64.b64decode(media.key, validate=True))
        except Exception:
            raise SendFailed("not a media reference of this transport") from None
        conn = self._current()
        try:
            return await self._call(functools.partial(conn.client.download_any, message))
        except NeonizeError as exc:
            raise SendFailed(f"download failed: {exc}") from None

    async def mark_read(self, chat: str, ids: tuple[str, ...], sender: str | None = None) -> None:
        conn = self._current()
        try:
            call = functools.partial(conn.client.mark_read, *ids, chat=parse_jid(chat),
                                     sender=parse_jid(sender or chat), receipt=ReceiptType.READ)
        except ValueError as exc:
            raise SendFailed(str(exc)) from None
        try:
            await self._call(call)
        except NeonizeError as exc:
            raise SendFailed(f"mark read failed: {exc}") from None

    async def set_presence(self, chat: str, presence: Presence) -> None:
        conn = self._current()
        client = conn.client
        match presence:
            case Presence.AVAILABLE | Presence.UNAVAILABLE:
                value = NeonizePresence.AVAILABLE if presence == Presence.AVAILABLE else NeonizePresence.UNAVAILABLE
                call = functools.partial(client.send_presence, value)
            case _:
                state = ChatPresence.CHAT_PRESENCE_PAUSED if presence == Presence.PAUSED else \
                    ChatPresence.CHAT_PRESENCE_COMPOSING
                media = ChatPresenceMedia.CHAT_PRESENCE_MEDIA_AUDIO if presence == Presence.RECORDING else \
                    ChatPresenceMedia.CHAT_PRESENCE_MEDIA_TEXT
                try:
                    call = functools.partial(client.send_chat_presence, parse_jid(chat), state, media)
                except ValueError as exc:
                    raise SendFailed(str(exc)) from None
        try:
            await self._call(call)
        except NeonizeError as exc:
            raise SendFailed(f"presence failed: {exc}") from None

    async def is_on_whatsapp(self, numbers: Sequence[str]) -> list[OnWhatsApp]:
        """whatsmeow's IsOnWhatsApp (one usync query for all of `numbers`); a number it does not answer for
        counts as without an account."""
        if not numbers:
            return []
        conn = self._current()
        asked = ["+" + re.sub(r"\D", "", number) for number in numbers]
        try:
            responses = await self._call(functools.partial(conn.client.is_on_whatsapp, *asked))
        except NeonizeError as exc:
            raise SendFailed(f"number check failed: {exc}") from None
        found: dict[str, OnWhatsApp] = {}
        for response in responses:
            digits = re.sub(r"\D", "", response.Query)
            jid = f"{response.JID.User}@{response.JID.Server}" if response.IsIn and response.JID.User else None
            found[digits] = OnWhatsApp(digits, bool(response.IsIn), jid)
        return [attrs.evolve(found[digits], number=number) if (digits := re.sub(r"\D", "", number)) in found
                else OnWhatsApp(number, False) for number in numbers]

    async def request_pairing_code(self, phone: str) -> str:
        """Pair by phone number instead of QR; waits for the pairing phase (the first QR code)."""
        digits = re.sub(r"\D", "", phone)
        if not digits:
            raise SendFailed(f"not a phone number: {phone!r}")
        conn = self._current()
        await conn.ready.wait()  # until the first QR code: before it, the Go client may not exist yet
        try:
            code = await self._call(functools.partial(conn.client.PairPhone, digits, True, ClientName.LINUX),
                                    _State.PAIRING)
        except NeonizeError as exc:
            raise SendFailed(f"pairing by phone failed: {exc}") from None
        with contextlib.suppress(trio.WouldBlock, trio.ClosedResourceError):
            conn.local_send.send_nowait(PairingCode(code))
        return code

    async def logout(self) -> None:
        conn = self._conn
        if conn is not None and conn.state == _State.CONNECTED:
            try:
                await self._call(conn.client.logout)
            except NeonizeError as exc:
                raise SendFailed(f"logout failed: {exc}") from None
        elif self._device_jid is not None:
            try:  # not connected: unlink locally (the phone drops the device once it notices)
                await trio.to_thread.run_sync(forget_device, self._database_url, self._device_jid)
            except psycopg.Error as exc:
                raise TransportError(f"cannot clear the WhatsApp device store: {exc}") from None
        self._device_jid = None
        if conn is not None:
            conn.finish(ConnectionChange(LoggedOut("logged out"), ends=True))
