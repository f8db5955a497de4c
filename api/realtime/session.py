"""One Engine.IO session: its transport state, its bounded outgoing queue, its heartbeat.

    handshake ─▶ POLLING ──probe on a websocket──▶ upgrading ──`5`──▶ WEBSOCKET
                 (GETs take the queue, POSTs deliver)   (the GET is     (one writer task
                                                        answered `6`)   drains the queue)
    any state ──close(reason)──▶ closed: the queue is dropped, a pending GET gets `1`

The session does no I/O itself: the HTTP and websocket routes (`routes.py`) move its packets, so
this state machine is tested without a network. Producers never wait: `send_nowait` queues a
group of packets at once or, when the queue is over its bound, closes the session as lagging —
the client reconnects and refetches, nobody else is slowed down (STYLE rule 7). Client messages
go into a bounded channel that the Socket.IO layer reads (`sockets.Connection`); a client faster
than its handlers waits on its own POST or websocket read.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable, Mapping, Sequence

import attrs
import trio

from api.realtime import eio
from api.realtime.config import RealtimeConfig
from api.realtime.eio import Packet, PacketType, ProtocolError

log = logging.getLogger("zapgate.realtime")

POLLING = "polling"
WEBSOCKET = "websocket"


class EngineError(Exception):
    """A request Engine.IO refuses, with engine.io's error code and message (the route answers 400).

    `retry_after` (seconds) goes out as the `Retry-After` header of a refusal for being over a limit.
    """

    def __init__(self, code: int, message: str, status: int = 400, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.retry_after = retry_after


def transport_unknown() -> EngineError:
    return EngineError(0, "Transport unknown")


def session_unknown() -> EngineError:
    return EngineError(1, "Session ID unknown")


def bad_handshake_method() -> EngineError:
    return EngineError(2, "Bad handshake method")


def bad_request() -> EngineError:
    return EngineError(3, "Bad request")


def unsupported_version() -> EngineError:
    return EngineError(5, "Unsupported protocol version")


@attrs.frozen
class Handshake:
    """What the client's first request said: its query string (`token`, `userId`…), headers, address."""

    query: Mapping[str, str]
    headers: Mapping[str, str]
    remote_addr: str | None
    transport: str


class EngineSession:
    def __init__(self, sid: str, config: RealtimeConfig, handshake: Handshake) -> None:
        self.sid = sid
        self.config = config
        self.handshake = handshake
        self.transport = handshake.transport
        # pending (no namespace has accepted it yet) until `authenticated`; counted under `client` meanwhile
        self.client = ""
        self.vouched = False  # `client` is a user the handshake's credentials named, not an address
        self.authenticated = False
        self.upgrading = False
        self.close_reason: str | None = None
        self._queue: collections.deque[Packet] = collections.deque()
        self._queued_bytes = 0
        self._changed = trio.lowlevel.ParkingLot()
        self._closed = trio.Event()
        self._noop_owed = False  # the poll in flight must end (upgrade under way): answer it with `6`
        self._polling = False
        self._posting = False
        self._pong = trio.Event()
        self._sink: Callable[[Sequence[Packet]], bool] | None = None
        self._on_close: list[Callable[[], None]] = []
        self.inbound_send, self.inbound_receive = trio.open_memory_channel[str | bytes](config.inbound_messages)

    # --- life ---

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    def when_closed(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call `callback` (synchronously, once) when the session closes, at once if it is closed.

        Returns the function that takes the callback back (a websocket that ends before its session).
        """
        if self.closed:
            callback()
            return lambda: None
        self._on_close.append(callback)
        return lambda: self._on_close.remove(callback) if callback in self._on_close else None

    def close(self, reason: str) -> None:
        """Close now (idempotent): drop what is queued, answer a waiting GET with `1`, stop reading."""
        if self.closed:
            return
        self.close_reason = reason
        self._queue.clear()
        self._queued_bytes = 0
        self._closed.set()
        self.inbound_send.close()
        self._changed.unpark_all()
        for callback in self._on_close:
            callback()
        self._on_close.clear()
        log.debug("realtime session closed", extra={"fields": {"sid": self.sid, "reason": reason}})

    # --- outgoing ---

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def poll_pending(self) -> bool:
        """A polling GET is waiting on this session."""
        return self._polling

    def send_nowait(self, packets: Sequence[Packet]) -> bool:
        """Queue `packets` together, or close the session as lagging when they do not fit. Never waits."""
        if self.closed:
            return False
        if self._sink is not None:
            return self._sink(packets)
        weight = sum(packet.size for packet in packets)
        if (len(self._queue) + len(packets) > self.config.outgoing_packets
                or self._queued_bytes + weight > self.config.outgoing_bytes):
            log.info("realtime client lagging: disconnected",
                     extra={"fields": {"sid": self.sid, "queued": len(self._queue)}})
            self.close("lagged")
            return False
        self._queue.extend(packets)
        self._queued_bytes += weight
        self._changed.unpark_all()
        return True

    def attach_sink(self, sink: Callable[[Sequence[Packet]], bool]) -> None:
        """From now on outgoing packets go straight to `sink` (a direct websocket), starting with the queued ones.

        The sink writes or buffers them without waiting and returns False after closing this session
        itself (lagging, or the transport broke).
        """
        queued = self._take_all()
        self._sink = sink
        if queued:
            sink(queued)

    def _take_all(self) -> list[Packet]:
        packets = list(self._queue)
        self._queue.clear()
        self._queued_bytes = 0
        return packets

    async def poll(self) -> list[Packet]:
        """A polling GET: wait until there is something to say, then take all of it.

        A second GET while one waits is a protocol violation (engine.io: "overlap from client"):
        it gets 400 and the session is closed, which answers the first with `1`.
        """
        if self.closed:
            return [eio.CLOSE]
        if self.transport != POLLING:
            raise bad_request()
        if self._polling:
            self.close("poll overlap")
            raise bad_request()
        self._polling = True
        try:
            while not (self._queue or self._noop_owed or self.closed):
                await self._changed.park()
            if self.closed:
                return [eio.CLOSE]
            if self.transport != POLLING or not self._queue:  # upgraded meanwhile, or the probe's noop
                self._noop_owed = False
                return [eio.NOOP]
            self._noop_owed = False
            return self._take_all()
        finally:
            self._polling = False

    async def wait_outgoing(self) -> list[Packet]:
        """For the websocket writer: the queued packets once there are some; [] once closed."""
        while not (self._queue or self.closed):
            await self._changed.park()
        return [] if self.closed else self._take_all()

    # --- incoming ---

    async def post(self, body: str) -> None:
        """A polling POST's payload. Waits while the Socket.IO layer is behind (bounded inbound channel)."""
        if self.closed:
            raise session_unknown()
        if self.transport != POLLING:
            raise bad_request()
        if self._posting:
            self.close("post overlap")
            raise bad_request()
        self._posting = True
        try:
            try:
                packets = eio.decode_payload(body)
            except ProtocolError:
                self.close("parse error")
                raise
            await self.deliver(packets)
        finally:
            self._posting = False

    async def deliver(self, packets: Sequence[Packet]) -> None:
        """Client packets: control ones take effect at once, messages go to the Socket.IO layer.

        Raises ProtocolError (after closing the session) for a packet a client may not send here.
        """
        for packet in packets:
            if self.closed:
                return
            kind = packet.type
            if kind is PacketType.MESSAGE:
                try:
                    await self.inbound_send.send(packet.data)
                except (trio.ClosedResourceError, trio.BrokenResourceError):
                    return  # closed while we waited
            elif kind is PacketType.PONG:
                self._pong.set()
            elif kind is PacketType.CLOSE:
                self.close("client close")
            elif kind is PacketType.NOOP:
                pass
            else:  # OPEN, UPGRADE, and PING (in protocol 4 only the server pings)
                self.close("parse error")
                raise ProtocolError(f"a client may not send {kind.name} here")

    # --- upgrade from polling to websocket ---

    def begin_upgrade(self) -> None:
        """A websocket arrived with this sid: allowed once, from polling."""
        if self.closed:
            raise session_unknown()
        if self.transport != POLLING or self.upgrading:
            raise bad_request()
        self.upgrading = True

    def probe_answered(self) -> None:
        """`3probe` went out on the websocket: end the GET in flight so the client can pause polling."""
        if self.upgrading:
            self._noop_owed = True
            self._changed.unpark_all()

    def complete_upgrade(self) -> None:
        """`5` arrived on the websocket: from now on the websocket carries everything."""
        if self.closed:
            raise session_unknown()
        if not self.upgrading:
            raise bad_request()
        self.upgrading = False
        self.transport = WEBSOCKET
        self._noop_owed = True
        self._changed.unpark_all()

    def abort_upgrade(self) -> None:
        if self.upgrading:
            self.upgrading = False
            self._noop_owed = False

    # --- heartbeat ---

    async def run_heartbeat(self) -> None:
        """Ping every `ping_interval`; no pong within `ping_timeout` closes the session."""
        while not self.closed:
            await trio.sleep(self.config.ping_interval)
            self._pong = trio.Event()
            if not self.send_nowait([eio.PING]):
                return
            with trio.move_on_after(self.config.ping_timeout):
                await self._pong.wait()
                continue
            self.close("ping timeout")
            return
