"""Session actors: one SessionActor per WhatsApp connection, under the SessionSupervisor.

A SessionActor owns its connection's state. It runs its transport (neonize or sandbox), turns the
transport's events into status changes kept on the connection row and published as
`company-{id}-whatsappSession`, hands inbound messages to the inbound sink (the ticket router),
and serves commands (send, logout) from its mailbox.

    OPENING ─▶ qrcode (QR codes, capped: TIMEOUT) ─▶ CONNECTED
       ▲  │        └─▶ PAIRING (pairing code) ─────────┘     │
       │  └─ network loss / transport error: reconnect with backoff and jitter (OPENING, retries)
       └─ DISCONNECTED: logged out or banned (device cleared), or given up after the failure budget

Transport failures are handled here (backoff, a budget per session), so one failing connection never
disturbs the others; an exception in the actor's own code goes to the supervisor, which restarts
this session only (transient children).

The database being away is neither (STYLE 7a): it never crashes the session and never counts against
its failure budget, which is for the network. The connection row is loaded again after a backoff; a
status or device that cannot be written is kept (the latest wins) and written by `_write_deferred` once
the database answers, while the session goes on serving its connection; an inbound event the sink
could not take for that reason is offered again after a backoff (the transport waits meanwhile: the
network keeps what it has not handed over).

Sends are served one at a time, in order, on the command loop; media downloads and read receipts run
beside it (at most `SIDE_COMMANDS` of each at once), so a slow download never holds up a send, nor
a read receipt; so do number checks (`is_on_whatsapp`), one at a time.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import attrs
import trio

from gateway.broker import Broker
from gateway.registry import Registry, registered
from gateway.supervisor import ChildSpec, RestartPolicy, Supervisor, SupervisorHandle
from gateway.whatsapp import transport as wa
from storage.errors import DB_AWAY, NotFound, db_away

log = logging.getLogger("zapgate.session")

COMMAND_MAILBOX = 64
ASK_TIMEOUT = 120.0  # seconds a command (send, download…) may take before its caller gives up on it
SESSION_RESTART_BUDGET = (5, 60.0)  # a session's own restarts per seconds (bugs); past it, it is given up
EVENT_MAILBOX = 256
SIDE_COMMANDS = 4  # downloads (and, apart, read receipts) run at once, beside the sends
SIDE_COMMANDS_WAITING = 64  # ... and waiting for their turn; beyond it they are refused at once

@attrs.frozen
class SessionPolicy:
    """Timing and limits of a session (configuration, not state)."""

    max_qr_codes: int = 6  # unanswered QR codes before TIMEOUT (whatsmeow itself gives up after 6)
    reconnect_initial: float = 1.0
    reconnect_max: float = 60.0
    reconnect_factor: float = 2.0
    failure_budget: int = 8  # failed attempts within failure_window before giving up
    failure_window: float = 600.0
    stable_after: float = 60.0  # connected this long: the backoff starts over
    db_retry_initial: float = 0.5  # the database is away: first retry after this long (jittered)
    db_retry_max: float = 10.0  # ... doubling up to this


class Store(Protocol):
    async def load(self, whatsapp_id: int) -> dict[str, Any] | None: ...

    async def set_status(self, whatsapp_id: int, status: str, **fields: Any) -> dict[str, Any]: ...

    async def save_device(self, whatsapp_id: int, device: dict[str, Any] | None) -> None: ...


TransportFactory = Callable[[dict[str, Any], Callable[[dict[str, Any] | None], Awaitable[None]]], wa.Transport]
InboundSink = Callable[[int, int, wa.Event], Awaitable[None]]  # (company_id, whatsapp_id, event)
Presenter = Callable[[dict[str, Any]], dict[str, Any]]


async def ignore_inbound(company_id: int, whatsapp_id: int, event: wa.Event) -> None:
    """The inbound sink until the conversations layer provides one."""
    log.debug("inbound event not routed", extra={"fields": {"whatsapp_id": whatsapp_id, "event": type(event).__name__}})


# ─── commands (mailbox messages) ────────────────────────────────────────────────────────

@attrs.frozen
class Send:
    command: wa.Command
    reply: trio.MemorySendChannel[Any]


@attrs.frozen
class Logout:
    reply: trio.MemorySendChannel[Any]


@attrs.frozen
class RequestPairingCode:
    phone: str
    reply: trio.MemorySendChannel[Any]


@attrs.frozen
class Download:
    media: wa.MediaRef
    reply: trio.MemorySendChannel[Any]


@attrs.frozen
class MarkRead:
    chat: str
    ids: tuple[str, ...]
    sender: str | None
    reply: trio.MemorySendChannel[Any]


@attrs.frozen
class CheckNumbers:
    numbers: tuple[str, ...]
    reply: trio.MemorySendChannel[Any]


class SessionEnded(Exception):
    """The session stopped before it could answer."""


class SessionTimeout(SessionEnded):
    """The session did not answer within ASK_TIMEOUT (a transport that hangs): the command's fate is unknown."""


@attrs.define
class SessionHandle:
    """What others hold of a running session: its mailbox, its status, and a way to stop it."""

    whatsapp_id: int
    company_id: int
    _mailbox: trio.MemorySendChannel[Any]
    _cancel_scope: trio.CancelScope
    _actor: SessionActor
    _ended: trio.Event = attrs.field(factory=trio.Event)

    async def wait_ended(self) -> None:
        await self._ended.wait()

    @property
    def status(self) -> str:
        return self._actor.status

    @property
    def writes_due(self) -> bool:
        """Its status waits for the database to be written."""
        return self._actor.writes_due

    @property
    def mailbox_depth(self) -> int:
        """Commands waiting in its mailbox (of COMMAND_MAILBOX)."""
        return self._mailbox.statistics().current_buffer_used

    async def _ask(self, make: Callable[[trio.MemorySendChannel[Any]], Any]) -> Any:
        """Send a command and wait for its answer, at most ASK_TIMEOUT (every request to an actor has a bound)."""
        reply_send, reply_receive = trio.open_memory_channel[Any](1)
        with trio.move_on_after(ASK_TIMEOUT):
            try:
                await self._mailbox.send(make(reply_send))
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                raise SessionEnded(f"session {self.whatsapp_id} is not running") from None
            async with reply_receive:
                try:
                    outcome = await reply_receive.receive()
                except trio.EndOfChannel:
                    raise SessionEnded(f"session {self.whatsapp_id} stopped") from None
            if isinstance(outcome, BaseException):
                raise outcome
            return outcome
        raise SessionTimeout(f"session {self.whatsapp_id} did not answer within {ASK_TIMEOUT:g}s")

    async def send(self, command: wa.Command) -> wa.Sent:
        """Send through WhatsApp; raises NotConnected, SendFailed or SessionEnded."""
        return await self._ask(lambda reply: Send(command, reply))

    async def logout(self) -> None:
        await self._ask(Logout)

    async def download(self, media: wa.MediaRef) -> bytes:
        return await self._ask(lambda reply: Download(media, reply))

    async def mark_read(self, chat: str, ids: tuple[str, ...], sender: str | None = None) -> None:
        await self._ask(lambda reply: MarkRead(chat, ids, sender, reply))

    async def request_pairing_code(self, phone: str) -> str:
        return await self._ask(lambda reply: RequestPairingCode(phone, reply))

    async def is_on_whatsapp(self, numbers: Sequence[str]) -> list[wa.OnWhatsApp]:
        """Which numbers have a WhatsApp account (the transport's `is_on_whatsapp`; the caller paces it)."""
        return await self._ask(lambda reply: CheckNumbers(tuple(numbers), reply))

    def cancel(self) -> None:
        self._cancel_scope.cancel()


class _Outcome(Exception):
    """How one connection attempt ended, when it did not fail."""

    def __init__(self, kind: str, reason: str = "") -> None:
        super().__init__(kind)
        self.kind = kind  # "logged_out" | "timeout" | "ended"
        self.reason = reason


class SessionActor:
    """One WhatsApp connection. Start with `await nursery.start(actor.run)`; get a SessionHandle."""

    def __init__(self, whatsapp_id: int, company_id: int, *, store: Store, broker: Broker,
                 transport_factory: TransportFactory, inbound: InboundSink = ignore_inbound,
                 present: Presenter = dict, registry: Registry[int, SessionHandle] | None = None,
                 policy: SessionPolicy | None = None, rng: random.Random | None = None) -> None:
        self.whatsapp_id = whatsapp_id
        self.company_id = company_id
        self.store = store
        self.broker = broker
        self.transport_factory = transport_factory
        self.inbound = inbound
        self.present = present
        self.registry = registry
        self.policy = policy or SessionPolicy()
        self.rng = rng or random.Random()
        self.status = "OPENING"
        self._transport: wa.Transport | None = None
        self._connected = False
        self._was_connected = False  # the current (or last) attempt got connected
        self._failures: list[float] = []
        self._logged_out = False
        self._device: dict[str, Any] | None = None
        self._row: dict[str, Any] | None = None  # the connection as last loaded
        # Writes the database could not take, written by _write_deferred once it answers (the latest wins).
        self._due_status: _DueStatus | None = None
        self._due_device: _DueDevice | None = None
        self._deferred = trio.Event()  # set while something is due
        self._written = trio.Event()  # set once nothing is due
        self._written.set()
        self._side_commands = 0  # downloads and read receipts running or waiting

    @property
    def writes_due(self) -> bool:
        """A status or device change waits for the database."""
        return self._due_status is not None or self._due_device is not None

    # ── lifecycle ──

    async def run(self, *, task_status: trio.TaskStatus[SessionHandle] = trio.TASK_STATUS_IGNORED) -> None:
        mailbox_send, mailbox_receive = trio.open_memory_channel[Any](COMMAND_MAILBOX)
        with trio.CancelScope() as scope:
            handle = SessionHandle(self.whatsapp_id, self.company_id, mailbox_send, scope, self)
            async with mailbox_send, mailbox_receive:
                try:
                    if self.registry is not None:
                        async with registered(self.registry, self.whatsapp_id, handle):
                            task_status.started(handle)
                            await self._run(mailbox_receive)
                    else:
                        task_status.started(handle)
                        await self._run(mailbox_receive)
                finally:
                    handle._ended.set()
                    mailbox_send.close()
                    while True:  # commands that will never be served: answer them
                        try:
                            command = mailbox_receive.receive_nowait()
                        except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                            break
                        _answer(command, SessionEnded(f"session {self.whatsapp_id} has stopped"))

    async def _run(self, mailbox: trio.MemoryReceiveChannel[Any]) -> None:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._write_deferred)
                await self._run_attempts(mailbox)
                if self.writes_due:  # the session has ended, its last status waits for the database
                    log.info("session ended; its status is written when the database is back",
                             extra={"fields": {"whatsapp_id": self.whatsapp_id}})
                    serving = trio.CancelScope()
                    nursery.start_soon(self._serve_commands_until, mailbox, serving)
                    await self._wait_written()
                    serving.cancel()
                nursery.cancel_scope.cancel()
        except* NotFound:
            # the connection was deleted under us: nothing left to keep connected
            log.info("connection deleted: session ends", extra={"fields": {"whatsapp_id": self.whatsapp_id}})
        finally:
            if self.writes_due:
                log.info("session stopped before the database took its last status",
                         extra={"fields": {"whatsapp_id": self.whatsapp_id, "status": self.status}})

    async def _serve_commands_until(self, mailbox: trio.MemoryReceiveChannel[Any], scope: trio.CancelScope) -> None:
        with scope:
            await self._command_loop(mailbox)

    async def _run_attempts(self, mailbox: trio.MemoryReceiveChannel[Any]) -> None:
        attempt = 0
        db_failures = 0
        while True:
            started = trio.current_time()
            outcome: _Outcome | None = None
            failure: Exception | None = None
            try:
                await self._attempt(mailbox, attempt)
            except _Outcome as ended:
                outcome = ended
            except NotFound:
                raise
            except Exception as error:  # a transport failure: retry this session only
                if isinstance(error, BaseExceptionGroup) and error.subgroup(NotFound) is not None:
                    raise NotFound(f"connection {self.whatsapp_id}") from error
                if wa.injected_crash(error):
                    raise  # a stand-in for a bug (the sandbox's test-only "crash" fault): the supervisor's to restart
                failure = error
            # No awaits above this line: a write failing inside an `except` would replace the error it handles.
            if outcome is not None:
                await self._finish(outcome)
                return
            assert failure is not None
            self._connected = False
            reason = _describe(failure)
            if db_away(failure):
                # the database, not WhatsApp: no failure counted, no status to write (it could not be written)
                log.warning("connection attempt stopped: the database is away",
                            extra={"fields": {"whatsapp_id": self.whatsapp_id, "reason": reason}})
                await self._serve_commands_for(mailbox, self._db_delay(db_failures))
                db_failures += 1
                continue
            db_failures = 0
            log.warning("connection attempt failed", exc_info=not isinstance(failure, wa.TransportError),
                        extra={"fields": {"whatsapp_id": self.whatsapp_id, "reason": reason, "attempt": attempt}})
            now = trio.current_time()
            if now - started >= self.policy.stable_after and self._was_connected:
                attempt = 0  # it had been up for a while: start the backoff over
            self._failures = [t for t in self._failures if t > now - self.policy.failure_window] + [now]
            if len(self._failures) > self.policy.failure_budget:
                await self._set_status("DISCONNECTED", qrcode="", disconnect_reason=(
                    f"gave up after {len(self._failures)} failed attempts in "
                    f"{int(self.policy.failure_window)}s: {reason}"))
                return
            attempt += 1
            delay = self._backoff(attempt)
            await self._set_status("OPENING", qrcode="", retries=attempt, disconnect_reason=reason)
            await self._serve_commands_for(mailbox, delay)

    def _backoff(self, attempt: int) -> float:
        base = min(self.policy.reconnect_max,
                   self.policy.reconnect_initial * self.policy.reconnect_factor ** max(0, attempt - 1))
        return min(self.policy.reconnect_max, base * self.rng.uniform(0.8, 1.2))

    def _db_delay(self, failures: int) -> float:
        """How long to wait before asking the database again after `failures` failures in a row (0: the first)."""
        base = self.policy.db_retry_initial * 2 ** min(failures, 30)
        return min(self.policy.db_retry_max, base) * self.rng.uniform(0.8, 1.2)

    async def _serve_commands_for(self, mailbox: trio.MemoryReceiveChannel[Any], seconds: float) -> None:
        """Answer commands (with NotConnected) while waiting to reconnect."""
        with trio.move_on_after(seconds):
            await self._command_loop(mailbox)

    async def _load(self, mailbox: trio.MemoryReceiveChannel[Any]) -> dict[str, Any] | None:
        """The connection's row. While the database is away: the one loaded before (a reconnect need not
        wait for the database), else asked again after a backoff (commands answered meanwhile)."""
        failures = 0
        while True:
            try:
                self._row = await self.store.load(self.whatsapp_id)
                return self._row
            except DB_AWAY as error:
                reason = _describe(error)
            if self._row is not None:
                log.info("reconnecting with the connection as loaded before: the database is away",
                         extra={"fields": {"whatsapp_id": self.whatsapp_id, "reason": reason}})
                return {**self._row, "session_data": self._device}
            if failures == 0:
                log.warning("cannot load the connection: the database is away; retrying",
                            extra={"fields": {"whatsapp_id": self.whatsapp_id, "reason": reason}})
            await self._serve_commands_for(mailbox, self._db_delay(failures))
            failures += 1

    async def _attempt(self, mailbox: trio.MemoryReceiveChannel[Any], attempt: int) -> None:
        self._was_connected = False
        row = await self._load(mailbox)
        if row is None:
            raise _Outcome("ended", "the connection was deleted")
        await self._set_status("OPENING", retries=attempt)
        self._device = row.get("session_data")
        transport = self.transport_factory(row, self._device_changed)
        self._transport = transport
        events_send, events_receive = trio.open_memory_channel[wa.Event](EVENT_MAILBOX)
        self._logged_out = False
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(self._run_transport, transport, events_send)
                nursery.start_soon(self._command_loop, mailbox)
                await self._event_loop(events_receive)  # returns when the transport's run ends
                nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            timeout, group_rest = group.split(wa.PairingTimeout)
            if timeout is not None and group_rest is None:
                raise _Outcome("timeout", str(_first(timeout))) from None
            outcome, rest = group.split(_Outcome)
            cancelled = rest is not None and rest.split(Exception)[1] is not None
            if outcome is None or cancelled:
                raise  # a failure (retried by _run), or a cancellation to let through
            raise _first(outcome) from None
        finally:
            self._transport = None
            self._connected = False
        if self._logged_out:
            raise _Outcome("logged_out", "logged out from zapgate")
        raise _Outcome("ended", "the transport stopped")

    async def _run_transport(self, transport: wa.Transport, events_send: trio.MemorySendChannel[wa.Event], *,
                             task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with events_send:
            await transport.run(events_send, task_status=task_status)

    async def _finish(self, outcome: _Outcome) -> None:
        if outcome.kind == "timeout":
            await self._set_status("TIMEOUT", qrcode="", disconnect_reason=outcome.reason)
        elif outcome.kind == "logged_out":
            await self._save_device(None, wait=False)
            await self._set_status("DISCONNECTED", qrcode="", retries=0, disconnect_reason=outcome.reason)
        else:
            await self._set_status("DISCONNECTED", qrcode="", disconnect_reason=outcome.reason or None)
        log.info("session ended", extra={"fields": {"whatsapp_id": self.whatsapp_id, "why": outcome.kind,
                                                    "reason": outcome.reason}})

    # ── the two loops of a live attempt ──

    async def _event_loop(self, events: trio.MemoryReceiveChannel[wa.Event]) -> None:
        async with events:
            async for event in events:
                await self._on_event(event)

    async def _on_event(self, event: wa.Event) -> None:
        if isinstance(event, wa.QrCode):
            if event.index > self.policy.max_qr_codes:
                raise _Outcome("timeout", f"no scan after {self.policy.max_qr_codes} QR codes")
            await self._set_status("qrcode", qrcode=event.code)
        elif isinstance(event, wa.PairingCode):
            await self._set_status("PAIRING", pairing_code=event.code, set_pairing_code=True)
        elif isinstance(event, wa.Connected):
            self._connected = self._was_connected = True
            self._failures.clear()
            if (self._device or {}).get("jid") != event.jid:
                # remember which device this is: a restart reconnects it without a new QR
                await self._save_device({**(self._device or {}), "jid": event.jid}, wait=False)
            await self._set_status("CONNECTED", qrcode="", retries=0, number=_number_of(event.jid),
                                   pairing_code=None, set_pairing_code=True)
            await self._to_inbound(event)  # e.g. send what waited in the outbox
        elif isinstance(event, wa.Disconnected):
            raise wa.TransportError(event.reason)
        elif isinstance(event, wa.LoggedOut):
            raise _Outcome("logged_out", event.reason)
        else:  # InboundMessage, Receipt, ContactUpdate: the conversations layer's business
            await self._to_inbound(event)

    async def _to_inbound(self, event: wa.Event) -> None:
        """Hand `event` to the inbound sink; while the database is away, again after a backoff.

        The event loop waits meanwhile, and so does the transport (backpressure): the network keeps
        what the session has not taken. Commands (sends) go on, on their own loop.
        """
        failures = 0
        while True:
            try:
                await self.inbound(self.company_id, self.whatsapp_id, event)
                return
            except Exception as error:
                if not db_away(error):
                    raise
                reason = _describe(error)
            if failures == 0:
                log.warning("inbound event waits: the database is away",
                            extra={"fields": {"whatsapp_id": self.whatsapp_id, "event": type(event).__name__,
                                              "reason": reason}})
            await trio.sleep(self._db_delay(failures))
            failures += 1

    async def _command_loop(self, mailbox: trio.MemoryReceiveChannel[Any]) -> None:
        limiters = {Download: trio.CapacityLimiter(SIDE_COMMANDS), MarkRead: trio.CapacityLimiter(SIDE_COMMANDS),
                    CheckNumbers: trio.CapacityLimiter(1)}
        async with trio.open_nursery() as side:
            async for command in mailbox:
                if isinstance(command, Download | MarkRead | CheckNumbers):
                    # beside the loop: a slow download must not hold up the sends queued behind it
                    if self._side_commands >= SIDE_COMMANDS_WAITING:
                        _answer(command, wa.TransportError(
                            f"connection {self.whatsapp_id} has {SIDE_COMMANDS_WAITING} downloads waiting"))
                        continue
                    self._side_commands += 1
                    side.start_soon(self._side_command, command, limiters[type(command)])
                else:
                    # one at a time, in order: WhatsApp keeps the order of what one session sends
                    await self._on_command(command)

    async def _side_command(self, command: Download | MarkRead | CheckNumbers,
                            limiter: trio.CapacityLimiter) -> None:
        try:
            async with limiter:
                await self._on_command(command)  # answers, also when cancelled
        finally:
            self._side_commands -= 1
            # cancelled while waiting for its turn (the connection dropped): answered here (a no-op otherwise)
            _answer(command, wa.NotConnected(f"connection {self.whatsapp_id} dropped before it could answer"))

    async def _on_command(self, command: Any) -> None:
        transport = self._transport
        result: Any = wa.NotConnected(f"connection {self.whatsapp_id} dropped before it could answer")
        try:
            if isinstance(command, Send):
                if transport is None or not self._connected:
                    raise wa.NotConnected(f"connection {self.whatsapp_id} is {self.status}")
                result: Any = await transport.send(command.command)
            elif isinstance(command, Download | MarkRead | CheckNumbers):
                if transport is None or not self._connected:
                    raise wa.NotConnected(f"connection {self.whatsapp_id} is {self.status}")
                if isinstance(command, Download):
                    result = await transport.download(command.media)
                elif isinstance(command, CheckNumbers):
                    result = await transport.is_on_whatsapp(command.numbers)
                else:
                    result = await transport.mark_read(command.chat, command.ids, command.sender)
            elif isinstance(command, Logout):
                if transport is None:
                    raise wa.NotConnected(f"connection {self.whatsapp_id} is {self.status}")
                result = await transport.logout()
                self._logged_out = True
            elif isinstance(command, RequestPairingCode):
                if transport is None:
                    raise wa.NotConnected(f"connection {self.whatsapp_id} is {self.status}")
                result = await transport.request_pairing_code(command.phone)
            else:
                raise TypeError(f"unknown command {command!r}")
        except Exception as error:  # answered to the caller; the session goes on
            result = error
        finally:
            _answer(command, result)  # also when cancelled: the caller must not wait forever

    # ── state ──

    async def _device_changed(self, device: dict[str, Any] | None) -> None:
        """The transport's callback: returns once the device is stored (waiting for the database if away)."""
        await self._save_device(device, wait=True)

    async def _save_device(self, device: dict[str, Any] | None, *, wait: bool) -> None:
        self._device = device
        if self._due_device is None:
            try:
                await self.store.save_device(self.whatsapp_id, device)
                return
            except DB_AWAY as error:
                self._note_deferred("device", error)
        self._due_device = _DueDevice(device)  # the latest wins
        self._defer()
        if wait:
            await self._wait_written()

    async def _set_status(self, status: str, **fields: Any) -> None:
        """Keep `status` (and its fields) on the connection row and publish it; while the database is away,
        it is written (and published) once the database is back, merged with what came after it."""
        self.status = status
        if self._due_status is None:
            try:
                row = await self.store.set_status(self.whatsapp_id, status, **fields)
            except DB_AWAY as error:
                self._note_deferred("status", error)
            else:
                self._publish(row)
                return
        self._due_status = _DueStatus(status, fields).after(self._due_status)
        self._defer()

    def _note_deferred(self, what: str, error: BaseException) -> None:
        if not self.writes_due:  # one line per outage, not per write
            log.warning("the database is away: the session's %s is written when it is back", what,
                        extra={"fields": {"whatsapp_id": self.whatsapp_id, "status": self.status,
                                          "reason": _describe(error)}})

    def _defer(self) -> None:
        if self._written.is_set():
            self._written = trio.Event()
        self._deferred.set()

    async def _wait_written(self) -> None:
        while self.writes_due:
            await self._written.wait()

    async def _write_deferred(self) -> None:
        """Runs as long as the actor: writes what the database could not take, once it answers again."""
        failures = 0
        while True:
            await self._deferred.wait()
            await trio.sleep(self._db_delay(failures))
            try:
                while self.writes_due:  # (another may have come while one was written)
                    await self._write_due()
            except DB_AWAY:
                failures += 1
                continue
            if failures:
                log.info("the database is back: the session's state is written",
                         extra={"fields": {"whatsapp_id": self.whatsapp_id, "status": self.status}})
            failures = 0
            self._deferred = trio.Event()
            self._written.set()

    async def _write_due(self) -> None:
        device = self._due_device
        if device is not None:
            await self.store.save_device(self.whatsapp_id, device.device)
            if self._due_device is device:  # (not replaced meanwhile: then that one is next)
                self._due_device = None
        status = self._due_status
        if status is not None:
            row = await self.store.set_status(self.whatsapp_id, status.status, **status.fields)
            if self._due_status is status:
                self._due_status = None
                self._publish(row)

    def _publish(self, row: dict[str, Any]) -> None:
        session = self.present(row)
        self.broker.publish(self.company_id, f"company-{self.company_id}-whatsappSession",
                            {"action": "update", "session": session})


@attrs.frozen
class _DueDevice:
    device: dict[str, Any] | None


@attrs.frozen
class _DueStatus:
    """A status write waiting for the database. Its fields follow `SessionStore.set_status`: None keeps
    the column as it is, and `pairing_code` applies only with `set_pairing_code`."""

    status: str
    fields: dict[str, Any]

    def after(self, earlier: _DueStatus | None) -> _DueStatus:
        """This write merged over one that was never written: one write doing what both would have done."""
        if earlier is None:
            return self
        fields = {**earlier.fields, **{key: value for key, value in self.fields.items() if value is not None}}
        if self.fields.get("set_pairing_code"):
            fields["pairing_code"] = self.fields.get("pairing_code")
        elif earlier.fields.get("set_pairing_code"):
            fields["pairing_code"] = earlier.fields.get("pairing_code")
        return _DueStatus(self.status, fields)


def _answer(command: Any, result: Any) -> None:
    try:
        command.reply.send_nowait(result)
    except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
        pass  # the caller gave up waiting


def _first(group: BaseExceptionGroup) -> BaseException:
    inner = group.exceptions[0]
    return _first(inner) if isinstance(inner, BaseExceptionGroup) else inner


def _number_of(jid: str) -> str:
    user = jid.split("@", 1)[0]
    return user.split(":", 1)[0].split(".", 1)[0]


def _describe(error: BaseException) -> str:
    if isinstance(error, BaseExceptionGroup):
        return "; ".join(_describe(inner) for inner in error.exceptions)
    text = str(error) or type(error).__name__
    return text[:500]


# ─── the supervisor of all sessions ─────────────────────────────────────────────────────

@attrs.define
class SessionManager:
    """Starts, stops and finds the session actors (all under one one_for_one Supervisor).

    Built by the composition root; `run` supervises until cancelled.
    """

    store: Any  # storage.whatsapps.SessionStore
    broker: Broker
    transport_factory: TransportFactory
    present: Presenter = dict
    inbound: InboundSink = ignore_inbound
    policy: SessionPolicy = attrs.field(factory=SessionPolicy)
    registry: Registry[int, SessionHandle] = attrs.field(factory=Registry)
    restore_on_start: bool = True
    _supervisor: SupervisorHandle | None = None
    _child_ids: dict[int, tuple[str, int, int]] = attrs.field(factory=dict)
    _companies: dict[int, int] = attrs.field(factory=dict)  # connection → company, of the children started
    _starts: int = 0

    async def run(self, *, task_status: trio.TaskStatus[SessionManager] = trio.TASK_STATUS_IGNORED) -> None:
        """Supervise the sessions until cancelled; first restart those that were connected."""
        supervisor = Supervisor("sessions", max_restarts=20, max_seconds=60, shutdown_timeout=8)
        async with trio.open_nursery() as nursery:
            self._supervisor = await nursery.start(supervisor.run)
            try:
                if self.restore_on_start:
                    await self.restore()
                task_status.started(self)
                await trio.sleep_forever()
            finally:
                self._supervisor = None
                self._child_ids.clear()
                self._companies.clear()

    def lookup(self, whatsapp_id: int) -> SessionHandle | None:
        return self.registry.lookup(whatsapp_id)

    async def start(self, whatsapp_id: int, company_id: int) -> SessionHandle:
        """Start the connection's session (the running one when it already runs)."""
        running = self.registry.lookup(whatsapp_id)
        if running is not None:
            return running
        assert self._supervisor is not None, "SessionManager.run is not running"
        actor = SessionActor(whatsapp_id, company_id, store=self.store, broker=self.broker,
                             transport_factory=self.transport_factory, inbound=self.inbound,
                             present=self.present, registry=self.registry, policy=self.policy)
        self._forget_child(whatsapp_id)
        self._starts += 1
        child_id = ("session", whatsapp_id, self._starts)  # unique: a stopping incarnation may linger
        self._child_ids[whatsapp_id] = child_id
        self._companies[whatsapp_id] = company_id
        # A budget of its own: one connection's crash loop never spends the others' (nor an outage common
        # to all: those are ridden out inside the session and never crash it).
        max_restarts, max_seconds = SESSION_RESTART_BUDGET
        return await self._supervisor.start_child(ChildSpec(child_id, actor.run, RestartPolicy.TRANSIENT,
                                                            shutdown=5.0, max_restarts=max_restarts,
                                                            max_seconds=max_seconds))

    async def stop(self, whatsapp_id: int) -> None:
        """Stop the session (it keeps its device: a start reconnects it) and wait until it has ended."""
        handle = self.registry.lookup(whatsapp_id)
        self._forget_child(whatsapp_id)
        if handle is not None:
            handle.cancel()
            with trio.move_on_after(10):
                await handle.wait_ended()

    async def stop_all(self) -> None:
        """Shutdown's first step: every session ends (intake stops); their rows keep their status, so the
        next start restores them. The caller bounds the wait."""
        handles = [handle for key in self.registry.keys() if (handle := self.registry.lookup(key)) is not None]
        for handle in handles:
            self._forget_child(handle.whatsapp_id)
            handle.cancel()
        for handle in handles:
            await handle.wait_ended()

    async def restart(self, whatsapp_id: int, company_id: int) -> SessionHandle:
        await self.stop(whatsapp_id)
        return await self.start(whatsapp_id, company_id)

    async def restore(self) -> int:
        """Start the sessions of every connection that was connected when the process stopped.

        While the database is away, asked again after a backoff (the start waits for it)."""
        failures = 0
        while True:
            try:
                rows = await self.store.to_restore()
                break
            except DB_AWAY as error:
                reason = _describe(error)
            log.warning("cannot restore the sessions yet: the database is away",
                        extra={"fields": {"reason": reason}})
            await trio.sleep(min(self.policy.db_retry_max, self.policy.db_retry_initial * 2 ** min(failures, 30)))
            failures += 1
        for row in rows:
            await self.start(row["id"], row["company_id"])
        if rows:
            log.info("sessions restored", extra={"fields": {"count": len(rows)}})
        return len(rows)

    def _forget_child(self, whatsapp_id: int) -> None:
        child_id = self._child_ids.pop(whatsapp_id, None)
        if self._supervisor is None or child_id is None:
            return
        try:
            self._supervisor.terminate_child(child_id)
        except KeyError:
            pass  # it had ended already

    def supervisor_stats(self) -> dict[str, Any]:
        """Its supervisor's counters (restarts, crash loops, children given up); {} while not running."""
        return self._supervisor.stats() if self._supervisor is not None else {}

    def describe(self) -> list[dict[str, Any]]:
        """Each supervised session now (the runtime view): its connection and company, status, supervision
        state, restarts, whether it crash-loops, and the commands waiting in its mailbox."""
        if self._supervisor is None:
            return []
        sessions = []
        for child in self._supervisor.describe_children():
            whatsapp_id = child.id[1] if isinstance(child.id, tuple) and len(child.id) == 3 else None
            handle = child.handle if isinstance(child.handle, SessionHandle) else None
            sessions.append({
                "whatsappId": whatsapp_id, "companyId": handle.company_id if handle else
                self._companies.get(whatsapp_id or 0), "status": handle.status if handle else None,
                "state": child.state.value, "restarts": child.restarts, "crashLooping": child.crash_looping,
                "mailbox": {"depth": handle.mailbox_depth if handle else 0, "size": COMMAND_MAILBOX}})
        return sessions

    def stats(self) -> dict[str, Any]:
        by_status: dict[str, int] = {}
        writes_due = 0
        for key in self.registry.keys():
            handle = self.registry.lookup(key)
            if handle is not None:
                by_status[handle.status] = by_status.get(handle.status, 0) + 1
                writes_due += handle.writes_due
        return {"running": len(self.registry), "by_status": by_status, "status_writes_waiting": writes_due,
                **({"supervisor": self._supervisor.stats()} if self._supervisor else {})}


