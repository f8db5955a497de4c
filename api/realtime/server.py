"""`RealtimeServer`: the Engine.IO sessions, the Socket.IO namespaces and rooms, and fan-out to them.

    RealtimeServer.run                    (started by the composition root; owns the session tasks)
    └─ one task per Engine.IO session     heartbeat + Socket.IO dispatcher (sockets.Connection)
    HTTP/websocket routes (routes.py)     move packets between the network and the sessions

A session is *pending* from its handshake until a namespace accepts one of its sockets (the client
authenticated). Pending sessions are what an anonymous flood makes, so they are bounded apart from
the others: at most `max_pending_per_client` per client — its address (an IPv6 /64), or the user its
handshake's token names when the namespace handler vouches for it (`NamespaceHandler.identify`) —
at most `max_pending` anonymous ones in all, each closed if still pending after `connect_timeout`. A
refused handshake answers 429 (per client) or 503 (all full) with engine.io's `{"code", "message"}`
and `Retry-After`. Authenticated sessions count only against `max_sessions`, checked at the
namespace connect, so no number of anonymous handshakes keeps a logged-in user out.

Fan-out never blocks: `emit_to_room` encodes the event once and offers it to every member's
bounded queue; a member whose queue is full is disconnected as lagging (its client reconnects and
refetches) and the others receive the event as usual. Sessions, rooms and sockets are all bounded
through `RealtimeConfig`. The server knows nothing of companies or tokens: the `NamespaceHandler`
registered by the application decides who connects where and what their events do.
"""

from __future__ import annotations

import collections
import logging
import math
from typing import TYPE_CHECKING, Any

import trio

from api.realtime import sio
from api.realtime.config import RealtimeConfig
from api.realtime.limits import LimitLog, client_address
from api.realtime.session import EngineError, EngineSession, Handshake
from api.realtime.sockets import Connection, NamespaceHandler, Socket, TooManyRooms, new_sid

if TYPE_CHECKING:
    from quart import Blueprint

log = logging.getLogger("zapgate.realtime")


class RealtimeServer:
    def __init__(self, config: RealtimeConfig | None = None) -> None:
        self.config = config or RealtimeConfig()
        self._handler: NamespaceHandler | None = None
        self._nursery: trio.Nursery | None = None
        self._stopping = False
        self._sessions: dict[str, EngineSession] = {}
        self._namespaces: dict[str, dict[str, Socket]] = {}  # namespace → sid → connected socket
        self._rooms: dict[tuple[str, str], set[Socket]] = {}
        self._closed_by_reason: collections.Counter[str] = collections.Counter()  # a handful of fixed reasons
        self._pending: dict[str, int] = {}  # client → its pending sessions (keys only while above 0)
        self._anonymous = 0  # pending sessions counted by address (not vouched for)
        self._authenticated = 0
        self.refusals = LimitLog(log, "realtime handshakes refused: too many pending sessions")
        self.full = LimitLog(log, "realtime namespace connects refused: the server is full")

    # --- set-up ---

    def register_namespace_handler(self, handler: NamespaceHandler) -> None:
        """The handler that accepts or refuses every namespace connect (one per server)."""
        if self._handler is not None:
            raise RuntimeError("a namespace handler is already registered")
        self._handler = handler

    def blueprint(self) -> Blueprint:
        """The Quart blueprint serving `config.path` (polling and websocket) for this server."""
        from api.realtime.routes import realtime_blueprint

        return realtime_blueprint(self)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve sessions until cancelled; then every session is closed ("server shutting down")."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            try:
                task_status.started()
                await trio.sleep_forever()
            finally:
                self._nursery = None
                self.stop()

    def stop(self) -> None:
        """The server is shutting down: no new sessions; every session says goodbye and its client reconnects
        (elsewhere, if there is another node): a waiting poll is answered `1`, a websocket gets `1` and a
        close frame. The engine.io client takes either as "transport close", after which it reconnects."""
        self._stopping = True
        for session in list(self._sessions.values()):
            session.close("server shutting down")  # their transports say goodbye and return

    # --- for the rest of zapgate ---

    def emit_to_room(self, namespace: str, room: str, event: str, *args: Any) -> int:
        """Offer `event` to every connected socket in `room` of `namespace`; never waits.

        Returns how many sockets it was queued for; laggards are disconnected instead.
        """
        members = self._rooms.get((namespace, room))
        return self._fan_out(list(members), namespace, event, args) if members else 0

    def emit_to_namespace(self, namespace: str, event: str, *args: Any) -> int:
        """Offer `event` to every connected socket of `namespace`; never waits."""
        sockets = self._namespaces.get(namespace)
        return self._fan_out(list(sockets.values()), namespace, event, args) if sockets else 0

    def emit_to_sockets(self, sockets: list[Socket], namespace: str, event: str, *args: Any) -> int:
        """Offer `event` to these sockets of `namespace` (chosen by the caller), encoded once; never waits."""
        return self._fan_out(sockets, namespace, event, args) if sockets else 0

    def close_socket(self, socket: Socket, reason: str = "server namespace disconnect") -> None:
        """Disconnect `socket` from its namespace (e.g. its token expired); the client is told."""
        socket.disconnect(reason)

    def socket(self, namespace: str, sid: str) -> Socket | None:
        return self._namespaces.get(namespace, {}).get(sid)

    def namespaces(self) -> list[str]:
        """The namespaces that have connected sockets."""
        return list(self._namespaces)

    def sockets(self, namespace: str) -> list[Socket]:
        return list(self._namespaces.get(namespace, {}).values())

    def room_sockets(self, namespace: str, room: str) -> list[Socket]:
        """The connected sockets in `room` of `namespace`."""
        return list(self._rooms.get((namespace, room), ()))

    def stats(self) -> dict[str, Any]:
        return {"sessions": len(self._sessions), "sockets": sum(len(s) for s in self._namespaces.values()),
                "rooms": len(self._rooms), "closed": dict(self._closed_by_reason),
                "pending": {"sessions": len(self._sessions) - self._authenticated, "anonymous": self._anonymous,
                            "clients": len(self._pending), **self.refusals.stats()},
                "full": self.full.stats()}

    # --- for the routes ---

    def session(self, sid: str) -> EngineSession | None:
        return self._sessions.get(sid)

    def open_session(self, handshake: Handshake) -> EngineSession:
        """A new Engine.IO session (registered at once, so its sid is valid before this returns).

        Raises EngineError 429/503 when its client, or all anonymous clients, have too many pending sessions.
        """
        if self._nursery is None or self._stopping:
            raise EngineError(3, "Realtime server not running", status=503)
        config = self.config
        identify = getattr(self._handler, "identify", None)
        vouched_for = identify(handshake) if identify is not None else None
        client = vouched_for or client_address(handshake.remote_addr)
        retry_after = max(1, math.ceil(config.connect_timeout))
        if self._pending.get(client, 0) >= config.max_pending_per_client:
            self.refusals.hit(client, trio.current_time(), limit=config.max_pending_per_client)
            raise EngineError(4, "Too many pending connections from this client", status=429,
                              retry_after=retry_after)
        if vouched_for is None and self._anonymous >= config.max_pending:
            self.refusals.hit("all anonymous clients", trio.current_time(), limit=config.max_pending)
            raise EngineError(4, "Too many pending connections", status=503, retry_after=retry_after)
        sid = new_sid()
        session = EngineSession(sid, self.config, handshake)
        session.client, session.vouched = client, vouched_for is not None
        self._pending[client] = self._pending.get(client, 0) + 1
        self._anonymous += vouched_for is None
        self._sessions[sid] = session
        self._nursery.start_soon(self._run_session, session, Connection(self, session), name=f"realtime {sid}")
        return session

    def may_authenticate(self, session: EngineSession) -> bool:
        """Whether a namespace may accept a socket of `session`: False when it is pending and the server
        holds `max_sessions` authenticated sessions already (the connect is refused)."""
        if session.authenticated or self._authenticated < self.config.max_sessions:
            return True
        self.full.hit("all", trio.current_time(), limit=self.config.max_sessions)
        return False

    def _authenticate(self, session: EngineSession) -> None:
        """A namespace accepted a socket of `session`: it is no longer pending (once)."""
        if session.authenticated or session.closed:
            return
        self._end_pending(session)
        session.authenticated = True
        self._authenticated += 1

    def _end_pending(self, session: EngineSession) -> None:
        left = self._pending.get(session.client, 0) - 1
        if left > 0:
            self._pending[session.client] = left
        else:
            self._pending.pop(session.client, None)
        self._anonymous -= not session.vouched

    async def _run_session(self, session: EngineSession, connection: Connection) -> None:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(session.run_heartbeat)
                nursery.start_soon(connection.run)
                nursery.start_soon(connection.run_connect_timeout)
                await session.wait_closed()
                nursery.cancel_scope.cancel()
        except* Exception as group:  # a bug on this session's path ends this session, never the server
            log.error("realtime session crashed", exc_info=group, extra={"fields": {"sid": session.sid}})
            session.close("internal error")
        finally:
            session.close("server shutting down")  # no-op when it closed for a reason of its own
            connection.end(session.close_reason or "server shutting down")
            if self._sessions.get(session.sid) is session:
                del self._sessions[session.sid]
                if session.authenticated:
                    self._authenticated -= 1
                else:
                    self._end_pending(session)
            self._closed_by_reason[session.close_reason or "unknown"] += 1

    # --- for sockets ---

    def _fan_out(self, sockets: list[Socket], namespace: str, event: str, args: tuple[Any, ...]) -> int:
        packets = sio.encode(sio.event(namespace, event, args))
        delivered = 0
        for socket in sockets:
            if socket.connected and socket.session.send_nowait(packets):
                delivered += 1
        return delivered

    def _register(self, socket: Socket) -> None:
        self._namespaces.setdefault(socket.namespace, {})[socket.sid] = socket

    def _join(self, socket: Socket, room: str) -> None:
        if room in socket._rooms:
            return
        if len(socket._rooms) >= self.config.max_rooms_per_socket:
            raise TooManyRooms(f"a socket may join at most {self.config.max_rooms_per_socket} rooms")
        socket._rooms.add(room)
        self._rooms.setdefault((socket.namespace, room), set()).add(socket)

    def _leave(self, socket: Socket, room: str) -> None:
        if room not in socket._rooms:
            return
        socket._rooms.discard(room)
        key = (socket.namespace, room)
        members = self._rooms.get(key)
        if members is not None:
            members.discard(socket)
            if not members:
                del self._rooms[key]

    def _forget(self, socket: Socket) -> None:
        for room in list(socket._rooms):
            self._leave(socket, room)
        sockets = self._namespaces.get(socket.namespace)
        if sockets is not None and sockets.get(socket.sid) is socket:
            del sockets[socket.sid]
            if not sockets:
                del self._namespaces[socket.namespace]

    def _notify_disconnected(self, socket: Socket, reason: str) -> None:
        if self._handler is None:
            return
        try:
            self._handler.disconnected(socket, reason)
        except Exception:
            log.exception("namespace handler's disconnected() failed",
                          extra={"fields": {"namespace": socket.namespace}})
