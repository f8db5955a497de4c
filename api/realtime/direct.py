"""Engine.IO's websocket transport on the raw connection: the fan-out fast path.

    gateway/front.py ──`GET {path}?…` + `Upgrade: websocket`──▶ DirectWebsockets.handle(stream)
        handshake (h11 parses, we answer 101)  ·  frames in: wsproto  ·  frames out: written by us

Every emit is encoded once into a finished websocket frame (`eio.websocket_frame`: a server's
frames are unmasked, so the bytes are the same for every client) and written straight to each
socket's file descriptor while its kernel buffer has room — no task switch, no lock, no per-socket
encoding. Only what the kernel does not take waits in a per-connection backlog that one writer
task drains; a backlog over `outgoing_bytes` closes the session as lagging, as the queued
transports do. Reading, the probe exchange of an upgrade from polling, heartbeats and closing
behave as in `routes.py` (the ASGI websocket route, which stays for servers without this front).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from http import HTTPStatus
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

import h11
import trio
from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import CloseConnection, Message, Ping, TextMessage
from wsproto.utilities import LocalProtocolError

from api.realtime import eio
from api.realtime.eio import Packet, PacketType, ProtocolError
from api.realtime.routes import SILENT_REASONS, websocket_session
from api.realtime.session import WEBSOCKET, EngineError, EngineSession, Handshake
from gateway.front import MORE, NO, SNIFF_LIMIT, YES

if TYPE_CHECKING:
    from api.realtime.server import RealtimeServer

log = logging.getLogger("zapgate.realtime")

WEBSOCKET_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
RECEIVE_SIZE = 64 * 1024
PROBE = eio.encode_text(Packet(PacketType.PING, eio.PROBE))
UPGRADE = eio.encode_text(Packet(PacketType.UPGRADE))


class DirectWebsockets:
    """Claims the realtime websocket requests from the front and carries their Engine.IO sessions."""

    def __init__(self, server: RealtimeServer, *, trusted_proxies: int = 0) -> None:
        self.server = server
        self.trusted_proxies = trusted_proxies
        self._prefix = b"GET " + server.config.path.encode("ascii")
        self._open: set[EngineSession] = set()  # the sessions of the websockets open now
        self.carried = 0  # websockets accepted since start

    # --- gateway.front.Claimer ---

    def wants(self, head: bytes) -> str:
        prefix = self._prefix
        if not (head.startswith(prefix) if len(head) >= len(prefix) else prefix.startswith(head)):
            return NO
        if len(head) > len(prefix) and head[len(prefix):len(prefix) + 1] not in (b"?", b" "):
            return NO  # another path under the realtime one
        end = head.find(b"\r\n\r\n")
        if end < 0:
            return MORE
        for line in head[:end].split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"upgrade" and b"websocket" in value.lower():
                return YES
        return NO  # a polling GET: the HTTP routes'

    async def handle(self, stream: trio.SocketStream, head: bytes) -> None:
        end = head.index(b"\r\n\r\n") + 4
        try:
            target, headers = _parse_request(head[:end])
        except h11.RemoteProtocolError:
            await _respond(stream, HTTPStatus.BAD_REQUEST, {"code": 3, "message": "Bad request"})
            return
        key = _websocket_key(headers)
        if key is None:
            await _respond(stream, HTTPStatus.BAD_REQUEST, {"code": 3, "message": "Bad request"})
            return
        if headers.get("sec-websocket-version") != "13":
            await _respond(stream, HTTPStatus.UPGRADE_REQUIRED, {"code": 3, "message": "Bad request"},
                           extra=b"sec-websocket-version: 13\r\n")
            return
        args: dict[str, str] = {}
        for name, value in parse_qsl(target.partition("?")[2], keep_blank_values=True):
            args.setdefault(name, value)
        try:
            session, upgrading = websocket_session(self.server, Handshake(
                query=args, headers=headers, remote_addr=self._client(stream, headers), transport=WEBSOCKET))
        except EngineError as error:
            retry = f"retry-after: {error.retry_after}\r\n".encode() if error.retry_after is not None else b""
            await _respond(stream, HTTPStatus(error.status), {"code": error.code, "message": error.message},
                           extra=retry)
            return
        self._open.add(session)
        self.carried += 1
        try:
            await self._carry(stream, head[end:], session, upgrading, key)
        finally:
            self._open.discard(session)

    def stop(self) -> None:
        """The server is shutting down: every websocket says goodbye (its client reconnects elsewhere)."""
        for session in list(self._open):
            session.close("server shutting down")

    def stats(self) -> dict[str, int]:
        return {"open": len(self._open), "carried": self.carried}

    # --- one websocket ---

    async def _carry(self, stream: trio.SocketStream, rest: bytes, session: EngineSession, upgrading: bool,
                     key: str) -> None:
        """One websocket: its task reads; writes happen in the emitters' tasks (a writer task only for a backlog).

        Tasks per websocket: this one, and the session's own (heartbeat, Socket.IO dispatch). The
        session's close — lagging, heartbeat, server stop, broken socket — cancels the read here.
        """
        config = self.server.config
        wire = Wire(stream, config.outgoing_bytes, on_broken=lambda: session.close("transport error"))
        connection = Connection(ConnectionType.SERVER, trailing_data=rest)
        reader = Reader(stream, connection, wire, config.max_payload)
        forget: Callable[[], None] = _nothing
        try:
            await stream.send_all(_accept(key))
            async with trio.open_nursery() as nursery:
                forget = session.when_closed(nursery.cancel_scope.cancel)
                wire.nursery = nursery
                if upgrading:
                    with trio.move_on_after(config.upgrade_timeout):
                        upgrading = not await _probe(session, reader, wire)
                    if upgrading or session.closed:
                        nursery.cancel_scope.cancel()
                        return  # polling goes on (or the session is gone); this websocket closes
                session.attach_sink(lambda packets: _write_packets(session, wire, packets))
                await _read(session, reader)
                nursery.cancel_scope.cancel()
            wire.nursery = None
            if session.close_reason not in SILENT_REASONS and not wire.broken:
                wire.write(eio.websocket_frame(eio.CLOSE))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            wire.broken = True
        finally:
            forget()
            wire.nursery = None
            if session.upgrading:
                session.abort_upgrade()
            elif session.transport == WEBSOCKET:
                session.close("transport close")  # the client went away, or we are done
            if not wire.broken:
                with trio.move_on_after(config.close_grace):
                    await wire.finish(connection)
            wire.broken = True  # nothing writes to this descriptor once the stream is closed

    def _client(self, stream: trio.SocketStream, headers: Mapping[str, str]) -> str | None:
        forwarded = headers.get("x-forwarded-for")
        if self.trusted_proxies and forwarded:
            hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
            if len(hops) >= self.trusted_proxies:
                return hops[-self.trusted_proxies]
        try:
            return str(stream.socket.getpeername()[0])
        except OSError:
            return None


class Wire:
    """The outgoing side of one websocket: write-through to the socket, a bounded backlog for the rest."""

    def __init__(self, stream: trio.SocketStream, limit: int, on_broken: Callable[[], None]) -> None:
        self._stream = stream
        self._fd = stream.socket.fileno()
        self._limit = limit
        self._on_broken = on_broken
        self._backlog: list[bytes] = []
        self._pending = 0  # bytes in the backlog and in the writer's hands
        self._more = trio.lowlevel.ParkingLot()
        self._writer = False  # the writer task runs (started at the first backlog)
        self.nursery: trio.Nursery | None = None  # where the writer task runs, while the websocket is carried
        self.broken = False
        self.lagging = False

    def _break(self) -> None:
        if not self.broken:
            self.broken = True
            self._more.unpark_all()
            self._on_broken()

    def _kept(self, data: bytes) -> None:
        self._backlog.append(data)
        self._pending += len(data)
        self._more.unpark_all()
        if not self._writer and self.nursery is not None:
            self._writer = True
            self.nursery.start_soon(self.run)

    def write(self, data: bytes) -> bool:
        """Send `data` now as far as the socket takes it, keep the rest; never waits.

        False when the connection is broken or the backlog would pass its limit (the caller closes).
        """
        if self.broken:
            return False
        if self._pending:
            if self._pending + len(data) > self._limit:
                self.lagging = True
                return False
            self._kept(data)
            return True
        try:
            sent = os.write(self._fd, data)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._break()
            return False
        if sent < len(data):
            self._kept(data[sent:])
        return True

    async def run(self) -> None:
        """The writer task: drain the backlog whenever there is one, until the connection breaks."""
        while not self.broken:
            while not self._backlog and not self.broken:
                await self._more.park()
            if not self.broken:
                await self._drain()

    async def _drain(self) -> None:
        data = b"".join(self._backlog)
        self._backlog.clear()
        done = False
        try:
            await self._stream.send_all(data)
            done = True
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            self._pending -= len(data)
            if not done:  # broken, or cancelled part-way through a frame: nothing more may be written
                self._break()

    async def finish(self, connection: Connection) -> None:
        """Send what is left and the websocket close frame (normal closure), then end our half."""
        try:
            if connection.state in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
                self.write(connection.send(CloseConnection(code=1000)))
            while self._backlog and not self.broken:
                await self._drain()
            if not self.broken:
                await self._stream.send_eof()
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.BusyResourceError, LocalProtocolError,
                OSError):
            self.broken = True


class Reader:
    """The incoming side: whole client messages, answering pings and the close handshake on the way."""

    def __init__(self, stream: trio.SocketStream, connection: Connection, wire: Wire, max_payload: int) -> None:
        self._stream = stream
        self._connection = connection
        self._wire = wire
        self._max_payload = max_payload
        self._parts: list[str | bytes] = []
        self._size = 0
        self._events = iter(())

    async def message(self) -> str | bytes | None:
        """The next whole message; None once the client has closed or gone. Raises ProtocolError."""
        connection = self._connection
        while True:
            for event in self._events:
                if isinstance(event, Message):
                    self._parts.append(event.data)
                    self._size += len(event.data)
                    if self._size > self._max_payload:
                        raise PayloadTooLarge()
                    if event.message_finished:
                        parts, self._parts, self._size = self._parts, [], 0
                        if isinstance(event, TextMessage):
                            return "".join(parts)  # type: ignore[arg-type]
                        return b"".join(parts)  # type: ignore[arg-type]
                elif isinstance(event, Ping):
                    self._wire.write(connection.send(event.response()))
                elif isinstance(event, CloseConnection):
                    if connection.state is ConnectionState.REMOTE_CLOSING:
                        self._wire.write(connection.send(event.response()))
                    if event.code not in (1000, 1001, 1005):
                        raise ProtocolError(f"websocket closed by the client with {event.code}: {event.reason}")
                    return None
            try:
                data = await self._stream.receive_some(RECEIVE_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return None
            if not data:
                return None
            connection.receive_data(data)
            self._events = iter(connection.events())


class PayloadTooLarge(ProtocolError):
    pass


def _nothing() -> None:
    pass


async def _probe(session: EngineSession, reader: Reader, wire: Wire) -> bool:
    """An upgrade from polling: `2probe` → `3probe`, then `5`. True once the websocket has taken over."""
    if await reader.message() != PROBE:
        return False
    wire.write(eio.websocket_frame(Packet(PacketType.PONG, eio.PROBE)))
    session.probe_answered()
    if await reader.message() != UPGRADE or session.closed:
        return False
    session.complete_upgrade()
    return True


async def _read(session: EngineSession, reader: Reader) -> None:
    while not session.closed:
        try:
            frame = await reader.message()
            if frame is None:
                session.close("transport close")
                return
            await session.deliver([eio.decode_frame(frame)])
        except PayloadTooLarge:
            session.close("payload too large")
            return
        except ProtocolError as error:
            log.info("realtime client sent a bad frame", extra={"fields": {"sid": session.sid, "error": str(error)}})
            session.close("parse error")
            return


def _write_packets(session: EngineSession, wire: Wire, packets: Sequence[Packet]) -> bool:
    """The session's sink: every packet's frame onto the wire; on failure the session closes (lagged/broken)."""
    try:
        data = b"".join(eio.websocket_frame(packet) for packet in packets)
    except (ValueError, UnicodeEncodeError) as error:
        log.error("realtime packet cannot be framed", extra={"fields": {"sid": session.sid, "error": str(error)}})
        session.close("internal error")
        return False
    if wire.write(data):
        return True
    if wire.lagging:
        log.info("realtime client lagging: disconnected", extra={"fields": {"sid": session.sid}})
    session.close("lagged" if wire.lagging else "transport error")
    return False


def _parse_request(head: bytes) -> tuple[str, dict[str, str]]:
    """The target and the headers (names in lower case) of a request head; raises h11.RemoteProtocolError."""
    parser = h11.Connection(h11.SERVER, max_incomplete_event_size=SNIFF_LIMIT)
    parser.receive_data(head)
    event = parser.next_event()
    if not isinstance(event, h11.Request) or event.method != b"GET":
        raise h11.RemoteProtocolError("not a GET request")
    headers: dict[str, str] = {}
    for name, value in event.headers:
        key, text = name.decode("latin-1"), value.decode("latin-1")
        if key == "x-forwarded-for" and key in headers:  # one list over every line, as ProxyFixMiddleware reads it
            text = f"{headers[key]}, {text}"
        headers[key] = text
    return event.target.decode("latin-1"), headers


def _websocket_key(headers: Mapping[str, str]) -> str | None:
    """The client's Sec-WebSocket-Key when the request is a well-formed websocket upgrade."""
    tokens = {token.strip().lower() for token in headers.get("connection", "").split(",")}
    if "upgrade" not in tokens or headers.get("upgrade", "").strip().lower() != "websocket":
        return None
    key = headers.get("sec-websocket-key", "").strip()
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            return None
    except ValueError:
        return None
    return key


def _accept(key: str) -> bytes:
    digest = base64.b64encode(hashlib.sha1(key.encode("ascii") + WEBSOCKET_GUID).digest())
    return (b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
            b"sec-websocket-accept: " + digest + b"\r\n\r\n")


async def _respond(stream: trio.SocketStream, status: HTTPStatus, body: dict[str, object], extra: bytes = b"") -> None:
    """A refusal before the upgrade, as engine.io answers it: JSON `{code, message}`; then the connection closes."""
    payload = json.dumps(body, separators=(",", ":")).encode()
    head = (f"HTTP/1.1 {status.value} {status.phrase}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(payload)}\r\nconnection: close\r\n").encode("ascii")
    try:
        with trio.move_on_after(5):
            await stream.send_all(head + extra + b"\r\n" + payload)
            await stream.send_eof()
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass
