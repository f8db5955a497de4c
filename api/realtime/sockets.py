"""The Socket.IO layer: namespace sockets, their event handlers, and the per-session dispatcher.

A `Connection` reads one Engine.IO session's client messages in order and turns them into
namespace connects, events and disconnects. What a namespace means (who may connect, which
rooms exist, what an event does) is not decided here: the `NamespaceHandler` registered on the
server accepts or refuses each connect and puts event handlers on the socket it accepts.

Event handlers of one session run one after another, in the order the client sent the events;
a handler that raises is logged and the session goes on (bad input never kills an actor).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

import trio

from api.realtime import sio
from api.realtime.eio import Packet as EnginePacket
from api.realtime.eio import ProtocolError
from api.realtime.session import EngineSession, Handshake
from api.realtime.sio import PacketType

if TYPE_CHECKING:
    from api.realtime.server import RealtimeServer

log = logging.getLogger("zapgate.realtime")

EventHandler = Callable[..., Awaitable[Any]]
"""`async def handler(socket, *args) -> ack`: None acks with no arguments, a tuple with several."""

RESERVED_EVENTS = frozenset({"connect", "connect_error", "disconnect", "disconnecting", "newListener",
                             "removeListener"})


class ConnectRefused(Exception):
    """Raised (or returned) by a namespace handler: the client gets `connect_error` with this message."""

    def __init__(self, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data


class TooManyRooms(Exception):
    """A socket tried to join more rooms than `RealtimeConfig.max_rooms_per_socket`."""


class NamespaceHandler(Protocol):
    async def connect(self, socket: Socket, auth: Mapping[str, Any], query: Mapping[str, str]) -> Any:
        """Decide on a connect to `socket.namespace`.

        Accept: return the socket's context (kept as `socket.context`); the handler may register event
        handlers (`socket.on`), join rooms and emit before returning. Refuse: raise (or return)
        `ConnectRefused(message)`. `auth` is the client's auth payload ({} when none), `query` the
        handshake's query string (`socket.handshake` has the headers and address).
        """
        ...

    def disconnected(self, socket: Socket, reason: str) -> None:
        """An accepted socket is gone (client left, server closed it, session ended). Must not block."""
        ...

    # Optional: `def identify(self, handshake: Handshake) -> str | None`, called (synchronously, so it
    # must be cheap) for every handshake. A name for the client when the handshake carries credentials
    # the handler trusts (a token in the query string): its pending sessions are then counted under that
    # name instead of its address, apart from the anonymous ones. None: anonymous.


def new_sid() -> str:
    return secrets.token_urlsafe(15)


class Socket:
    """One client's connection to one namespace."""

    def __init__(self, server: RealtimeServer, connection: Connection, namespace: str) -> None:
        self.sid = new_sid()
        self.namespace = namespace
        self.context: Any = None
        self.connected = False
        self._server = server
        self._connection = connection
        self._handlers: dict[str, EventHandler] = {}
        self._rooms: set[str] = set()
        self._early: list[list[EnginePacket]] | None = []  # emitted while the connect is being decided
        self._ended = False

    def __repr__(self) -> str:
        return f"<Socket {self.namespace} {self.sid} {'connected' if self.connected else 'not connected'}>"

    @property
    def session(self) -> EngineSession:
        return self._connection.session

    @property
    def handshake(self) -> Handshake:
        return self._connection.session.handshake

    @property
    def transport(self) -> str:
        return self._connection.session.transport

    @property
    def rooms(self) -> frozenset[str]:
        return frozenset(self._rooms)

    def on(self, event: str, handler: EventHandler) -> None:
        """Handle the client's `event`: `await handler(socket, *args)`; its return value is the ack."""
        self._handlers[event] = handler

    def emit(self, event: str, *args: Any) -> bool:
        """Send `event` to this client; never waits. False when it could not be queued (gone, or lagging:
        then the client is disconnected)."""
        if event in RESERVED_EVENTS:
            raise ValueError(f"{event!r} is a reserved event name")
        return self._send(sio.encode(sio.event(self.namespace, event, args)))

    def join(self, room: str) -> None:
        if not self._ended:
            self._server._join(self, room)

    def leave(self, room: str) -> None:
        self._server._leave(self, room)

    def disconnect(self, reason: str = "server namespace disconnect") -> None:
        """Disconnect from this namespace; the client gets a DISCONNECT (no automatic reconnect)."""
        self._end(reason, tell_client=True)

    # --- internals ---

    def _send(self, packets: list[EnginePacket]) -> bool:
        if self._early is not None:
            if len(self._early) >= self._server.config.early_packets:
                return False
            self._early.append(packets)
            return True
        if not self.connected:
            return False
        return self._connection.session.send_nowait(packets)

    def _accepted(self) -> None:
        early, self._early = self._early or [], None
        self.connected = True
        self._server._authenticate(self._connection.session)
        self._server._register(self)
        self._connection.session.send_nowait(
            sio.encode(sio.Packet(PacketType.CONNECT, self.namespace, {"sid": self.sid})))
        for packets in early:
            if not self._connection.session.send_nowait(packets):
                break

    def _end(self, reason: str, *, tell_client: bool) -> None:
        if self._ended:
            return
        self._ended = True
        was_connected = self.connected
        self.connected = False
        self._early = None
        if tell_client and was_connected:
            self._connection.session.send_nowait(sio.encode(sio.Packet(PacketType.DISCONNECT, self.namespace)))
        self._server._forget(self)
        self._connection._forget(self)
        if was_connected:
            self._server._notify_disconnected(self, reason)


class Connection:
    """The Socket.IO side of one Engine.IO session: a dispatcher task over its client messages."""

    def __init__(self, server: RealtimeServer, session: EngineSession) -> None:
        self.server = server
        self.session = session
        self.sockets: dict[str, Socket] = {}
        self._decoder = sio.Decoder(server.config.max_attachments)

    async def run(self) -> None:
        async with self.session.inbound_receive:
            async for data in self.session.inbound_receive:
                try:
                    packet = self._decoder.feed(data)
                except ProtocolError as error:
                    log.info("realtime client sent a bad packet",
                             extra={"fields": {"sid": self.session.sid, "error": str(error)}})
                    self.session.close("parse error")
                    return
                if packet is not None:
                    await self._handle(packet)

    async def run_connect_timeout(self) -> None:
        """A session still pending (no namespace accepted it) after `connect_timeout` is closed."""
        await trio.sleep(self.server.config.connect_timeout)
        if not self.session.authenticated:
            self.session.close("connect timeout")

    def end(self, reason: str) -> None:
        """The session is over: every socket ends with its reason."""
        for socket in list(self.sockets.values()):
            socket._end(reason, tell_client=False)

    def _forget(self, socket: Socket) -> None:
        if self.sockets.get(socket.namespace) is socket:
            del self.sockets[socket.namespace]

    def _send(self, packet: sio.Packet) -> None:
        self.session.send_nowait(sio.encode(packet))

    async def _handle(self, packet: sio.Packet) -> None:
        if packet.type is PacketType.CONNECT:
            await self._connect(packet.namespace, packet.data or {})
            return
        socket = self.sockets.get(packet.namespace)
        if socket is None or not socket.connected:
            return  # e.g. an event racing a server-side disconnect: nothing to do
        if packet.type is PacketType.DISCONNECT:
            socket._end("client namespace disconnect", tell_client=False)
        elif packet.type in (PacketType.EVENT, PacketType.BINARY_EVENT):
            await self._event(socket, packet)
        # ACK / BINARY_ACK: the server asks for no acks, so there is nothing to resolve

    async def _connect(self, namespace: str, auth: dict[str, Any]) -> None:
        if namespace in self.sockets:
            self._refuse(namespace, "Already connected to this namespace")
            return
        handler = self.server._handler
        if handler is None:
            self._refuse(namespace, "Invalid namespace")
            return
        if len(self.sockets) >= self.server.config.max_namespaces:
            self._refuse(namespace, "Too many namespaces")
            return
        if not self.server.may_authenticate(self.session):
            self._refuse(namespace, "Server full")
            return
        socket = Socket(self.server, self, namespace)
        self.sockets[namespace] = socket
        try:
            context = await handler.connect(socket, auth, self.session.handshake.query)
        except ConnectRefused as refused:
            context = refused
        except Exception:
            log.exception("namespace handler failed", extra={"fields": {"namespace": namespace}})
            context = ConnectRefused("Internal server error")
        if not isinstance(context, ConnectRefused) and not self.server.may_authenticate(self.session):
            context = ConnectRefused("Server full")  # others were accepted while the handler decided
        if isinstance(context, ConnectRefused):
            socket._end("refused", tell_client=False)
            self._refuse(namespace, context.message, context.data)
            return
        if socket._ended or self.session.closed:
            return
        socket.context = context
        socket._accepted()

    def _refuse(self, namespace: str, message: str, data: Any = None) -> None:
        body: dict[str, Any] = {"message": message}
        if data is not None:
            body["data"] = data
        self._send(sio.Packet(PacketType.CONNECT_ERROR, namespace, body))

    async def _event(self, socket: Socket, packet: sio.Packet) -> None:
        name, *args = packet.data
        handler = socket._handlers.get(name)
        if handler is None:
            return
        try:
            result = await handler(socket, *args)
        except Exception:
            log.exception("realtime event handler failed",
                          extra={"fields": {"namespace": socket.namespace, "event": name}})
            return
        if packet.id is None or not socket.connected:
            return
        ack_args = [] if result is None else list(result) if isinstance(result, tuple) else [result]
        try:
            packets = sio.encode(sio.Packet(PacketType.ACK, socket.namespace, ack_args, packet.id))
        except (TypeError, ValueError):
            log.exception("realtime ack not serialisable", extra={"fields": {"event": name}})
            return
        socket._send(packets)
