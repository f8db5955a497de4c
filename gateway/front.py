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
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any, Protocol

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.statsd import StatsdLogger
from hypercorn.trio.lifespan import Lifespan
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState
from hypercorn.utils import repr_socket_addr, wrap_app

log = logging.getLogger("zapgate.front")

NO, MORE, YES = "no", "more", "yes"
SNIFF_LIMIT = 16 * 1024  # bytes read before giving up on a claim and handing the connection to hypercorn


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


class ReplayStream(trio.abc.HalfCloseableStream):
    """A socket stream whose first receive gives back bytes already read from it (hypercorn reads from here)."""

    def __init__(self, stream: trio.SocketStream, prefix: bytes) -> None:
        self._stream = stream
        self._prefix = prefix
        self.socket = stream.socket  # TCPServer reads the peer and local addresses here

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._prefix:
            data, self._prefix = self._prefix, b""
            await trio.lowlevel.checkpoint()
            return data
        return await self._stream.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        await self._stream.send_eof()

    async def aclose(self) -> None:
        await self._stream.aclose()


async def serve(app: Any, config: HypercornConfig, *, claimers: Sequence[Claimer] = (),
                shutdown_trigger: Callable[[], Awaitable[Any]],
                task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve `app` on `config.bind` like `hypercorn.trio.serve`, offering each new connection to `claimers`.

    Returns after `shutdown_trigger` returns and in-flight work has drained (at most `graceful_timeout`).
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

    async def connection(stream: trio.SocketStream) -> None:
        head: bytes | None = b""
        claimer: Claimer | None = None
        if claimers:
            head = None  # nothing (or no whole request head) within the keep-alive timeout: closed
            patience = config.keep_alive_timeout if math.isfinite(config.keep_alive_timeout or math.inf) else 30
            with trio.move_on_after(patience):
                head, claimer = await _sniff(stream, claimers)
            if head is None:
                await trio.aclose_forcefully(stream)
                return
        if claimer is None:
            await TCPServer(app, config, context, ConnectionState(lifespan_state.copy()),
                            ReplayStream(stream, head) if head else stream).run()
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
            await context.terminated.set()  # hypercorn's: idle keep-alive connections close
            server_nursery.cancel_scope.deadline = trio.current_time() + config.graceful_timeout
        await lifespan.wait_for_shutdown()
        lifespan_nursery.cancel_scope.cancel()


async def _sniff(stream: trio.SocketStream, claimers: Sequence[Claimer]) -> tuple[bytes | None, Claimer | None]:
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
