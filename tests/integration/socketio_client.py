"""A small Socket.IO client over Engine.IO long-polling (httpx), for tests that drive zapgate's
realtime server as a frontend would: connect to a company namespace, emit with acks, collect events.

    async with polling_socket(nursery, server.url, "/1", token) as socket:
        assert await socket.emit("joinTickets", "pending") == []
        event = await socket.wait_event("company-1-ticket", lambda payload: payload["action"] == "update")

One task per client polls without pause and keeps the events and acks in order; pings are answered.
"""

from __future__ import annotations

import contextlib
import itertools
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import trio

RS = "\x1e"
EIO = {"EIO": "4", "transport": "polling"}


class SocketRefused(Exception):
    """The handshake or the namespace connect was refused; `status` and `body` say how."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body


class PollingSocket:
    def __init__(self, client: httpx.AsyncClient, namespace: str) -> None:
        self.client = client
        self.namespace = namespace
        self._prefix = "" if namespace == "/" else f"{namespace},"  # the root namespace goes unnamed
        self.sid = ""
        self.socket_sid = ""
        self.events: list[tuple[str, Any]] = []
        self.disconnected = False
        self._acks: dict[int, list[Any]] = {}
        self._ids = itertools.count()
        self._changed = trio.Event()
        self._connect_answer: str | None = None

    async def open(self, nursery: trio.Nursery, token: str | None, *, token_in: str = "query") -> None:
        """Handshake (`token` in the query string or in the connect's auth payload), then connect."""
        query = {**EIO, **({"token": token} if token and token_in == "query" else {})}
        response = await self.client.get("/socket.io/", params=query)
        if response.status_code != 200:
            raise SocketRefused(response.status_code, response.json())
        self.sid = json.loads(response.text[1:])["sid"]
        nursery.start_soon(self._pump)
        auth = json.dumps({"token": token}) if token and token_in == "auth" else ""
        await self._post(f"40{self._prefix}{auth}")
        while self._connect_answer is None:
            await self._wait()
        body = json.loads(self._connect_answer[1 + len(self._prefix):])
        if not self._connect_answer.startswith("0"):
            raise SocketRefused(200, body)
        self.socket_sid = body["sid"]

    async def emit(self, event: str, *args: Any) -> list[Any]:
        """Emit with an ack request; the ack's arguments."""
        ack_id = next(self._ids)
        await self._post(f"42{self._prefix}{ack_id}{json.dumps([event, *args])}")
        while ack_id not in self._acks:
            await self._wait()
        return self._acks.pop(ack_id)

    async def wait_event(self, name: str, predicate: Callable[[Any], bool] = lambda _: True) -> Any:
        """The first event `name` whose payload satisfies `predicate` (callers bound the wait)."""
        while True:
            for event, payload in self.events:
                if event == name and predicate(payload):
                    return payload
            if self.disconnected:
                raise AssertionError(f"disconnected before {name}: {self.events}")
            await self._wait()

    async def wait_disconnected(self) -> None:
        """Until the server ends this socket (callers bound the wait)."""
        while not self.disconnected:
            await self._wait()

    def received(self, name: str) -> list[Any]:
        return [payload for event, payload in self.events if event == name]

    async def close(self) -> None:
        if self.sid and not self.disconnected:
            with contextlib.suppress(httpx.HTTPError, AssertionError):
                await self._post("1")

    # --- the wire ---

    async def _wait(self) -> None:
        self._changed = trio.Event()
        await self._changed.wait()

    async def _post(self, *packets: str) -> None:
        response = await self.client.post("/socket.io/", params={**EIO, "sid": self.sid},
                                          content=RS.join(packets).encode(),
                                          headers={"Content-Type": "text/plain;charset=UTF-8"})
        assert response.status_code == 200, response.text

    async def _pump(self) -> None:
        prefix = self._prefix
        while not self.disconnected:
            response = await self.client.get("/socket.io/", params={**EIO, "sid": self.sid})
            if response.status_code != 200:
                self.disconnected = True
                break
            for packet in response.text.split(RS):
                if packet == "2":
                    await self._post("3")
                elif packet == "1":
                    self.disconnected = True
                elif packet.startswith("4") and packet[1:].startswith(("0", "4")) and packet[2:].startswith(prefix):
                    self._connect_answer = packet[1:]  # 0/1,{"sid"} or 4/1,{"message"}
                elif packet.startswith("42" + prefix):
                    name, *args = json.loads(packet[2 + len(prefix):])
                    self.events.append((name, args[0] if len(args) == 1 else args))
                elif packet.startswith("43" + prefix):
                    body = packet[2 + len(prefix):]
                    split = body.index("[")
                    self._acks[int(body[:split])] = json.loads(body[split:])
                elif packet.startswith("41" + prefix):
                    self.disconnected = True
            self._changed.set()
        self._changed.set()


@contextlib.asynccontextmanager
async def polling_socket(base_url: str, namespace: str, token: str | None, *, token_in: str = "query",
                         local_address: str | None = None) -> AsyncIterator[PollingSocket]:
    """A connected socket (its client from `local_address`, e.g. "127.0.0.2", when given); closed after.

    Long polls wait as long as the server lets them: callers bound the whole with `trio.fail_after`.
    """
    transport = httpx.AsyncHTTPTransport(local_address=local_address) if local_address else None
    refused: SocketRefused | None = None
    async with httpx.AsyncClient(base_url=base_url, timeout=httpx.Timeout(30, read=None),
                                 transport=transport) as client, \
            trio.open_nursery() as nursery:
        socket = PollingSocket(client, namespace)
        try:
            await socket.open(nursery, token, token_in=token_in)
        except SocketRefused as error:  # raised after the nursery, not inside its exception group
            refused = error
            nursery.cancel_scope.cancel()
        else:
            try:
                yield socket
            finally:
                nursery.cancel_scope.cancel()
                with trio.move_on_after(2) as cleanup:
                    cleanup.shield = True
                    await socket.close()
    if refused is not None:
        raise refused
