"""A real webhook receiver for the tests: an HTTP/1.1 server (h11 on trio sockets) on a loopback port.

It records every request (headers, body, when), verifies nothing itself (the tests verify with the
`standardwebhooks` library, as a receiver would), answers `status` (a list of answers to give first, then
200), and can be stopped (connections refused, as a dead receiver) and started again on the same port.
"""

from __future__ import annotations

import json
import socket
from typing import Any

import attrs
import h11
import trio

from tests.ports import free_port


@attrs.frozen
class Received:
    headers: dict[str, str]
    body: bytes
    at: float  # trio.current_time()

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@attrs.define
class Answer:
    status: int = 200
    headers: list[tuple[str, str]] = attrs.Factory(list)
    delay: float = 0.0  # seconds before answering (a slow receiver)


class Receiver:
    def __init__(self) -> None:
        # a port only this test process hands out: the receiver is stopped and started again on it, and an
        # ephemeral one may meanwhile go to another process (another pytest-xdist worker)
        self.port = free_port()
        self.received: list[Received] = []  # answered 2xx
        self.refused: list[Received] = []  # answered otherwise
        self.answers: list[Answer] = []  # given first, one per request; then `default`
        self.default = Answer()
        self._scope: trio.CancelScope | None = None
        self._changed = trio.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def start(self, nursery: trio.Nursery) -> None:
        await nursery.start(self._serve)

    def stop(self) -> None:
        """Close the listener and every connection: posts to it are refused until `start` again."""
        if self._scope is not None:
            self._scope.cancel()
            self._scope = None

    async def wait_for(self, predicate: Any) -> None:
        while not predicate(self.received):
            self._changed = trio.Event()
            await self._changed.wait()

    async def _serve(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with trio.CancelScope() as scope:
            self._scope = scope
            listener = trio.socket.socket()
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            await listener.bind(("127.0.0.1", self.port))
            listener.listen(64)
            listeners = [trio.SocketListener(listener)]
            async with trio.open_nursery() as nursery:
                await nursery.start(trio.serve_listeners, self._handle, listeners)
                task_status.started()

    async def _handle(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        async with stream:
            while True:
                request: h11.Request | None = None
                body = b""
                while True:
                    event = conn.next_event()
                    if event is h11.NEED_DATA:
                        data = await stream.receive_some(65536)
                        conn.receive_data(data)
                        if not data and request is None:
                            return
                        continue
                    if isinstance(event, h11.Request):
                        request = event
                    elif isinstance(event, h11.Data):
                        body += event.data
                    elif isinstance(event, h11.EndOfMessage):
                        break
                    elif isinstance(event, h11.ConnectionClosed):
                        return
                assert request is not None
                answer = self.answers.pop(0) if self.answers else self.default
                if answer.delay:
                    await trio.sleep(answer.delay)
                headers = {name.decode().lower(): value.decode() for name, value in request.headers}
                if 200 <= answer.status < 300:  # recorded as received only when answered as taken
                    self.received.append(Received(headers, body, trio.current_time()))
                else:
                    self.refused.append(Received(headers, body, trio.current_time()))
                self._changed.set()
                text = b'{"ok":true}' if answer.status < 300 else b'{"error":"busy"}'
                reply = h11.Response(status_code=answer.status, headers=[
                    ("content-type", "application/json"), ("content-length", str(len(text))), *answer.headers])
                await stream.send_all(conn.send(reply) + conn.send(h11.Data(data=text)) + conn.send(h11.EndOfMessage()))
                if conn.our_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
