"""zapgate's listening socket: hypercorn serves HTTP, a claimer may take a connection for itself first.

    accept ─▶ sniff the first bytes ─┬─ a claimer wants it (the realtime websocket) ─▶ claimer.handle(stream)
                                     └─ anything else ─▶ hypercorn's TCPServer, the sniffed bytes replayed

Why: a websocket carried through ASGI costs a dozen awaits, a lock and a channel hop per frame
(Quart → hypercorn's WSStream → h11 → TCPServer); fan-out to thousands of sockets needs the frame
written once, straight to the socket (`api/realtime/direct.py`). HTTP stays hypercorn's, unchanged.

This mirrors `hypercorn.trio.run.worker_serve` (lifespan, worker context, graceful drain) around
its TCPServer, because hypercorn offers no hook between accept and the protocol; it uses hypercorn
internals, hence the pinned minor version in pyproject.toml. No TLS here: zapgate is served behind
a reverse proxy for that (README).

The keep-alive timeout and the stop are the front's own (`Connections`), not hypercorn's: a stop is
quick whatever the number of idle keep-alive connections — idle ones end at once, a request in flight
finishes (within `graceful_timeout`) and its connection ends after the response.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Awaitable, Callable, Iterator, Sequence
from functools import partial
from typing import Any, Protocol

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.events import Closed, Event, Updated
from hypercorn.statsd import StatsdLogger
from hypercorn.trio.lifespan import Lifespan
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState
from hypercorn.utils import repr_socket_addr, wrap_app

log = logging.getLogger("zapgate.front")

NO, MORE, YES = "no", "more", "yes"
SNIFF_LIMIT = 16 * 1024  # bytes read before giving up on a claim and handing the connection to hypercorn
# seconds a request whose head was arriving when the stop began gets to finish sending it
HEAD_GRACE = 0.5
IDLE, READING, BUSY, ENDED = "idle", "reading", "busy", "ended"  # a connection's state (`TrackedStream`)


class Claimer(Protocol):
    def wants(self, head: bytes) -> str:
        """YES (take it), NO (hypercorn's), or MORE (read more first) for the bytes received so far."""
        ...

    async def handle(self, stream: trio.SocketStream, head: bytes) -> None:
        """Serve the connection (whose first bytes were `head`) until done."""
        ...

    def stop(self) -> None:
        """The server is shutting down: end the connections being served soon (they may say goodbye)."""
        ...


class Connections:
    """The front's HTTP connections, each idle or with a request in flight: what a quick, graceful stop needs.

    A request is in flight from its first byte until its response is complete. At the stop, idle
    connections end at once (including one that connected and has sent nothing); a request whose
    head was still arriving gets `HEAD_GRACE` to finish it (nothing of it has reached the app yet, so a
    client that slow only finds the connection closed, as if it had come a moment later); a request in
    flight runs to its end (the server's deadline is `graceful_timeout`), its response says
    `Connection: close` if it starts after the stop, and its connection ends after the response. Bytes
    of a new request that cross the stop on the wire meet a closed connection: the keep-alive race
    every HTTP/1.1 server has, which clients answer by retrying (RFC 9112 §9.3.1).

    Why not hypercorn's own stop (`context.terminated`, as `worker_serve` sets it): hypercorn acts
    when a response completes — re-arming its keep-alive timer, which also ends an idle connection at
    a stop, or closing the connection if the server is stopping — from the request's own task, inside
    the app's last `send`, and quart-trio cancels that task as soon as the response is out. So those
    actions were mostly lost: an idle keep-alive connection was never timed out, and every one kept a
    stop waiting for all of `graceful_timeout` (measured: 5.05 s instead of 0.06 s with
    GRACEFUL_TIMEOUT=5). When they did happen, a stop ended a connection whose request head was still
    arriving, and one whose next request came before the response was complete waited out the whole
    `graceful_timeout` (its reader waits for a recycling that a stop never does). Here the state is
    noted before hypercorn acts (`TrackingTCPServer`), every read runs under a deadline that follows
    it (`TrackedStream._deadline`), and a connection whose read ran out, whose peer closed it or that
    hypercorn is done with has hypercorn's remaining work on it cancelled (`TrackedStream.serving`:
    its keep-alive timer, a reader waiting for a recycling) and its socket closed.
    """

    def __init__(self, keep_alive_timeout: float | None) -> None:
        self.keep_alive_timeout = keep_alive_timeout if keep_alive_timeout is not None else math.inf
        self.stopped_at: float | None = None
        self._open: set[TrackedStream] = set()

    @contextlib.contextmanager
    def track(self, stream: trio.SocketStream) -> Iterator[TrackedStream]:
        """`stream` as a TrackedStream, counted while the block runs; the block is its `serving` scope."""
        tracked = TrackedStream(stream, self)
        self._open.add(tracked)
        try:
            with tracked.serving:
                yield tracked
        finally:
            self._open.discard(tracked)

    @property
    def stopping(self) -> bool:
        return self.stopped_at is not None

    def stop(self, config: HypercornConfig) -> None:
        """End the idle connections now; the others when their request is over (or its head late)."""
        # hypercorn's own setting for "this response is the connection's last": from now on, every one
        config.keep_alive_max_requests = 0
        self.stopped_at = trio.current_time()
        for tracked in list(self._open):
            tracked.refresh()


class TrackedStream(trio.abc.HalfCloseableStream):
    """One accepted connection as hypercorn (and the sniffing before it) reads it, with its request state.

        idle ──first bytes──▶ reading ──hypercorn has the head──▶ busy ──response complete──▶ idle
        any ──read ran out, peer closed, or hypercorn is done with it──▶ ended

    "Has the head" and "response complete" are hypercorn's `Updated` events, "done" its `Closed`,
    seen by `TrackingTCPServer`. A read is given up at its deadline: for an idle connection the
    keep-alive timeout, or at once after the stop; for one whose head is arriving, `HEAD_GRACE` after
    the stop; never while busy. Reads are the place because hypercorn reads only when it has nothing
    left to do (a request already received, pipelined, is handled first). Ended, `serving` (the scope
    the connection is served in) is cancelled. The first read gives back bytes already read from the
    socket (`replay`: the sniffed head).
    """

    def __init__(self, stream: trio.SocketStream, connections: Connections) -> None:
        self._stream = stream
        self._connections = connections
        self._prefix = b""
        self.socket = stream.socket  # TCPServer reads the peer and local addresses here
        self.state = IDLE
        self._idle_since = trio.current_time()
        self._read: trio.CancelScope | None = None  # the read under way, whose deadline follows the state
        self.serving = trio.CancelScope()

    def replay(self, prefix: bytes) -> None:
        """The next read returns `prefix` (bytes read before hypercorn took over) first."""
        self._prefix = prefix

    def request_started(self) -> None:
        self._become(BUSY)

    def request_finished(self) -> None:
        self._idle_since = trio.current_time()
        self._become(IDLE)

    def ending(self) -> None:
        self._become(ENDED)
        self.serving.cancel()

    def refresh(self) -> None:
        if self._read is not None:
            self._read.deadline = self._deadline()

    def _become(self, state: str) -> None:
        self.state = state
        self.refresh()

    def _deadline(self) -> float:
        stopped_at = self._connections.stopped_at
        if self.state == BUSY:
            return math.inf
        if self.state == READING:
            return math.inf if stopped_at is None else stopped_at + HEAD_GRACE
        if self.state == IDLE and stopped_at is None:
            return self._idle_since + self._connections.keep_alive_timeout
        return -math.inf  # idle at the stop

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._prefix:
            data, self._prefix = self._prefix, b""
            await trio.lowlevel.checkpoint()
            return data
        with trio.CancelScope(deadline=self._deadline()) as self._read:
            try:
                data = await self._stream.receive_some(max_bytes)
            finally:
                self._read = None
            if not data:
                self.ending()  # the peer closed it
            elif self.state == IDLE:
                self._become(READING)  # a request's first bytes
            return data
        self.ending()
        raise trio.ClosedResourceError("the server ended this connection (idle, or stopping)")

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        await self._stream.send_eof()

    async def aclose(self) -> None:
        await self._stream.aclose()


class TrackingTCPServer(TCPServer):
    """hypercorn's TCPServer, telling its TrackedStream when a request starts and ends.

    Touches hypercorn internals (0.18): `protocol_send` is the callback through which the HTTP
    protocol reports `Updated(idle=False)` (a request's head is parsed and handed to the app),
    `Updated(idle=True)` (the response is complete and the connection recycled for the next request)
    and `Closed` (the protocol is done with the connection: after a last response, or a broken
    request). The state is noted before hypercorn's own handling, which may be cancelled with the
    app's task (see `Connections`).
    """

    stream: TrackedStream  # type: ignore[assignment]

    async def protocol_send(self, event: Event) -> None:
        if isinstance(event, Updated):
            if event.idle:
                self.stream.request_finished()
            else:
                self.stream.request_started()
        elif isinstance(event, Closed):
            self.stream.ending()
        await super().protocol_send(event)


async def serve(app: Any, config: HypercornConfig, *, claimers: Sequence[Claimer] = (),
                shutdown_trigger: Callable[[], Awaitable[Any]],
                task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve `app` on `config.bind` like `hypercorn.trio.serve`, offering each new connection to `claimers`.

    Returns after `shutdown_trigger` returns and in-flight work has drained (at most `graceful_timeout`);
    idle connections end at once (`Connections`; at the stop `config.keep_alive_max_requests` becomes 0).
    """
    config.set_statsd_logger_class(StatsdLogger)
    app = wrap_app(app, config.wsgi_max_body_size, "asgi")
    lifespan_state: dict[str, Any] = {}
    lifespan = Lifespan(app, config, lifespan_state)
    context = WorkerContext(None)
    sockets = config.create_sockets()
    if sockets.secure_sockets or sockets.quic_sockets:
        raise ValueError("zapgate's front serves plain HTTP: terminate TLS at a reverse proxy")
    listeners = []
    binds = []
    for sock in sockets.insecure_sockets:
        sock.listen(config.backlog)
        listeners.append(trio.SocketListener(trio.socket.from_stdlib_socket(sock)))
        binds.append(f"http://{repr_socket_addr(sock.family, sock.getsockname())}")

    connections = Connections(config.keep_alive_timeout)

    async def connection(stream: trio.SocketStream) -> None:
        head: bytes | None = b""
        claimer: Claimer | None = None
        with connections.track(stream) as tracked:
            if claimers:
                head = None  # nothing (or no whole request head) within the keep-alive timeout: closed
                patience = config.keep_alive_timeout if math.isfinite(config.keep_alive_timeout or math.inf) else 30
                with trio.move_on_after(patience):
                    head, claimer = await _sniff(tracked, claimers)
            if head is not None and claimer is None:
                tracked.replay(head)
                await TrackingTCPServer(app, config, context, ConnectionState(lifespan_state.copy()), tracked).run()
        if claimer is None or connections.stopping:  # hypercorn's (done), nobody's, or claimed during the stop
            await trio.aclose_forcefully(stream)  # (a websocket's client then reconnects elsewhere)
            return
        try:
            await claimer.handle(stream, head)
        except Exception:  # a bug on one connection's path ends that connection, never the server
            log.exception("connection handler failed", extra={"fields": {"claimer": type(claimer).__name__}})
        finally:
            await trio.aclose_forcefully(stream)

    async with trio.open_nursery() as lifespan_nursery:
        await lifespan_nursery.start(lifespan.handle_lifespan)
        await lifespan.wait_for_startup()
        async with trio.open_nursery() as server_nursery:
            async with trio.open_nursery() as accepting:
                for listener in listeners:
                    accepting.start_soon(partial(trio.serve_listeners, connection, [listener],
                                                 handler_nursery=server_nursery))
                task_status.started(binds)
                await shutdown_trigger()
                accepting.cancel_scope.cancel()
            for listener in listeners:
                await listener.aclose()
            for claimer in claimers:
                claimer.stop()  # claimed connections say goodbye
            # not hypercorn's own stop (`context.terminated`): it would end a connection whose request head
            # is still arriving, and keep one whose next request came early until the deadline (Connections)
            connections.stop(config)  # idle connections end now, the others after their response
            server_nursery.cancel_scope.deadline = trio.current_time() + config.graceful_timeout
        await lifespan.wait_for_shutdown()
        lifespan_nursery.cancel_scope.cancel()


async def _sniff(stream: TrackedStream, claimers: Sequence[Claimer]) -> tuple[bytes | None, Claimer | None]:
    """The bytes first read and the claimer that wants the connection (None: hypercorn's).

    (None, None) when the client went away before sending anything.
    """
    head = b""
    candidates = list(claimers)
    while candidates:
        try:
            chunk = await stream.receive_some(SNIFF_LIMIT)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return None, None
        if not chunk:
            return (head or None), None
        head += chunk
        waiting = []
        for claimer in candidates:
            verdict = claimer.wants(head)
            if verdict == YES:
                return head, claimer
            if verdict == MORE and len(head) < SNIFF_LIMIT:
                waiting.append(claimer)
        candidates = waiting
    return head, None
