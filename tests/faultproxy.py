"""A TCP proxy for fault injection in tests: put it between zapgate and PostgreSQL, then cut the line.

    proxy = FaultProxy("127.0.0.1", 5432)
    port = await nursery.start(proxy.run)     # listens on a free loopback port
    ...                                       # point the app at 127.0.0.1:port
    await proxy.cut()       # every open connection is reset, new ones are refused (the server is "down")
    await proxy.restore()   # accepts again, on the same port

The target may also be a Unix socket (a `target_host` starting with "/" is PostgreSQL's socket
directory, as in a conninfo). The machine's PostgreSQL is never touched (other tests share it).
A cut resets both sides of every proxied connection (SO_LINGER 0), so the client sees what it sees
when the server goes away, and the server ends those backends. Plain trio; runs in the test's nursery.
"""

from __future__ import annotations

import socket
import struct
from typing import Any

import attrs
import trio

from tests.ports import free_port

CHUNK = 65_536


@attrs.define(eq=False)
class _Pipe:
    scope: trio.CancelScope
    streams: list[Any] = attrs.field(factory=list)  # trio.SocketStream


class FaultProxy:
    def __init__(self, target_host: str, target_port: int, *, host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.host = host
        # Not bind(0)'s: the proxy listens again on its port after a cut, and an ephemeral port may have gone
        # to another process (another pytest-xdist worker) meanwhile. A loopback port only we hand out.
        self.port = free_port() if host == "127.0.0.1" else 0
        self.accepted = 0  # connections accepted, all time
        self.cuts = 0
        self._nursery: trio.Nursery | None = None
        self._listening: trio.CancelScope | None = None
        self._closed = trio.Event()
        self._pipes: set[_Pipe] = set()

    @property
    def down(self) -> bool:
        return self._listening is None

    @property
    def open_connections(self) -> int:
        return len(self._pipes)

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await self._listen()
            task_status.started(self.port)
            await trio.sleep_forever()

    async def cut(self) -> None:
        """Reset every proxied connection and refuse new ones, until `restore`."""
        self.cuts += 1
        if self._listening is not None:
            self._listening.cancel()
            self._listening = None
            await self._closed.wait()  # the listening socket is closed: connects are refused from here on
        for pipe in list(self._pipes):
            for stream in pipe.streams:
                _reset_on_close(stream)
            pipe.scope.cancel()
        while self._pipes:
            await trio.sleep(0.01)

    async def restore(self) -> None:
        """Accept connections again (on the same port)."""
        if self._listening is None:
            await self._listen()

    async def _listen(self) -> None:
        assert self._nursery is not None
        sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        await sock.bind((self.host, self.port))
        sock.listen(128)
        self.port = sock.getsockname()[1]
        self._closed = trio.Event()
        self._listening = trio.CancelScope()
        self._nursery.start_soon(self._accept, trio.SocketListener(sock), self._listening, self._closed)

    async def _accept(self, listener: trio.SocketListener, scope: trio.CancelScope, closed: trio.Event) -> None:
        try:
            with scope:
                while True:
                    client = await listener.accept()
                    self.accepted += 1
                    assert self._nursery is not None
                    self._nursery.start_soon(self._pipe, client)
        finally:
            listener.socket.close()
            closed.set()

    async def _pipe(self, client: trio.SocketStream) -> None:
        pipe = _Pipe(trio.CancelScope(), [client])
        self._pipes.add(pipe)
        try:
            with pipe.scope:
                server = await self._connect()
                pipe.streams.append(server)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_copy, client, server, nursery.cancel_scope)
                    nursery.start_soon(_copy, server, client, nursery.cancel_scope)
        except OSError:
            pass  # the server refused or reset: the client sees its side closed
        finally:
            self._pipes.discard(pipe)
            for stream in pipe.streams:
                stream.socket.close()


    async def _connect(self) -> Any:
        host, port = self.target
        if host.startswith("/"):
            return await trio.open_unix_socket(f"{host}/.s.PGSQL.{port}")
        return await trio.open_tcp_stream(host, port)


async def _copy(source: Any, sink: Any, both: trio.CancelScope) -> None:
    try:
        while data := await source.receive_some(CHUNK):
            await sink.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass
    both.cancel()  # one side ended: end the other (closing it passes the end on)


def _reset_on_close(stream: Any) -> None:
    """Closing the socket sends a reset rather than a FIN (what a crashed or unplugged server looks like)."""
    try:
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
