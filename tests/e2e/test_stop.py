"""SIGTERM is quick whatever the clients hold open, and still lets the requests in flight finish.

The process is `zapgate serve` with GRACEFUL_TIMEOUT=10: were an idle keep-alive connection (or a
connection that has sent nothing, or half a request line) to hold the stop, it would take ten seconds;
it must take under two (an acceptance bound, not a benchmark). Realtime clients are told to go: a
websocket gets Engine.IO's close packet and a close frame, a waiting poll its close packet, and the
stock socket.io-client reports "transport close" — a reason it reconnects after (only "io server
disconnect" and "io client disconnect" stop its reconnection), so it reconnects elsewhere.
"""

from __future__ import annotations

import json
import signal
import time
from typing import Any

import h11
import httpx
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, connect_websocket_url

from tests.e2e.test_live import start_client
from tests.e2e.test_socketio_client import node  # noqa: F401 - the fixture installs the client

ADMIN = {"email": "admin@zapgate.local", "password": "stop-quickly-1"}
GRACEFUL_TIMEOUT = 10
QUICK = 2.0  # seconds: the stop when nothing is in flight, whatever is held open
IDLE_CONNECTIONS = 50
SILENT_CONNECTIONS = 3
# heads cut short: hypercorn's (a route), the realtime websocket's (still being sniffed), a POST's
HALF_REQUESTS = [b"GET /hea", b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1\r\n",
                 b"POST /auth/login HTTP/1.1\r\nHo"]
WEBSOCKETS = 10


def serve(zapgate, external_db_env):  # type: ignore[no-untyped-def]
    process = zapgate(["serve"], {**external_db_env, "ADMIN_PASSWORD": ADMIN["password"],
                                  "GRACEFUL_TIMEOUT": str(GRACEFUL_TIMEOUT)})
    process.wait_healthy()
    token = httpx.post(process.url + "/auth/login", json=ADMIN, timeout=10).json()["token"]
    return process, token


async def sigterm(process) -> tuple[int, float]:  # type: ignore[no-untyped-def]
    """SIGTERM, then the exit code and the seconds it took."""
    began = time.monotonic()
    process.proc.send_signal(signal.SIGTERM)
    code = await trio.to_thread.run_sync(process.proc.wait, GRACEFUL_TIMEOUT + 10)
    return code, time.monotonic() - began


class HttpClient:
    """One raw keep-alive connection, parsed with h11 as a client parses it."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.h11 = h11.Connection(h11.CLIENT)
        self.keep_alive = True

    @classmethod
    async def open(cls, port: int) -> HttpClient:
        return cls(await trio.open_tcp_stream("127.0.0.1", port))

    async def send_head(self, method: str, target: str, headers: list[tuple[str, str]] | None = None) -> None:
        await self.stream.send_all(self.h11.send(h11.Request(method=method, target=target,
                                                             headers=[("Host", "127.0.0.1"), *(headers or [])])))

    async def send_body(self, data: bytes, *, end: bool = False) -> None:
        await self.stream.send_all(self.h11.send(h11.Data(data=data))
                                   + (self.h11.send(h11.EndOfMessage()) if end else b""))

    async def response(self) -> tuple[int, bytes]:
        """The whole response (status, body); fails if the connection ends before it does.

        `keep_alive` then says whether the server lets the connection serve another request."""
        status, body = 0, b""
        while True:
            event = self.h11.next_event()
            if event is h11.NEED_DATA:
                self.h11.receive_data(await self.stream.receive_some(65536))
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                self.keep_alive = self.h11.their_state is h11.DONE  # MUST_CLOSE after `Connection: close`
                if self.keep_alive:
                    self.h11.start_next_cycle()
                return status, body
            else:
                raise AssertionError(f"the connection ended mid-response: {event!r}")

    async def get(self, target: str) -> tuple[int, bytes]:
        await self.send_head("GET", target)
        await self.stream.send_all(self.h11.send(h11.EndOfMessage()))
        return await self.response()


async def wait_eof(stream: trio.SocketStream) -> bytes:
    """What the server sent before ending the connection; raises BrokenResourceError on a reset."""
    received = b""
    while chunk := await stream.receive_some(65536):
        received += chunk
    return received


async def realtime_socket(nursery: trio.Nursery, port: int, token: str) -> WebSocketConnection:
    """A Socket.IO client over websocket, connected to company 1's namespace (as test_live's clients are)."""
    ws = await connect_websocket_url(nursery, f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket"
                                              f"&token={token}")
    assert (await ws.get_message()).startswith("0{")  # Engine.IO open
    await ws.send_message("40/1,")
    connected = await ws.get_message()
    assert connected.startswith("40/1,{"), connected
    return ws


async def goodbye(ws: WebSocketConnection) -> tuple[list[str], int | None]:
    """The messages the server sent until the websocket closed, and the close code (1006: no close frame)."""
    messages = []
    try:
        while True:
            messages.append(await ws.get_message())
    except ConnectionClosed as closed:
        return messages, closed.reason.code


async def test_sigterm_closes_idle_connections_and_websockets_at_once(zapgate, external_db_env) -> None:
    process, token = serve(zapgate, external_db_env)
    ended: dict[str, list[Any]] = {"idle": [], "silent": [], "half": [], "websocket": []}

    async def watch(kind: str, wait: Any, target: Any) -> None:
        try:
            ended[kind].append(await wait(target))
        except trio.BrokenResourceError as error:  # a reset
            ended[kind].append(error)

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:  # the websockets' tasks and the watchers
            idle = []
            for _ in range(IDLE_CONNECTIONS):
                client = await HttpClient.open(process.port)
                assert (await client.get("/health"))[0] == 200
                idle.append(client.stream)
            silent = [await trio.open_tcp_stream("127.0.0.1", process.port) for _ in range(SILENT_CONNECTIONS)]
            half = []
            for cut_short in HALF_REQUESTS:
                stream = await trio.open_tcp_stream("127.0.0.1", process.port)
                await stream.send_all(cut_short)
                half.append(stream)
            websockets = [await realtime_socket(nursery, process.port, token) for _ in range(WEBSOCKETS)]
            await trio.sleep(0.2)  # the server has read what each sent
            for kind, wait, targets in [("idle", wait_eof, idle), ("silent", wait_eof, silent),
                                        ("half", wait_eof, half), ("websocket", goodbye, websockets)]:
                for target in targets:
                    nursery.start_soon(watch, kind, wait, target)
            code, took = await sigterm(process)

    assert code == 0, process.output()[-3000:]
    assert took < QUICK, f"took {took:.2f} s to stop with GRACEFUL_TIMEOUT={GRACEFUL_TIMEOUT}"
    # every HTTP connection ended with a FIN and nothing after its response (no reset, no late 400)
    assert ended["idle"] == [b""] * IDLE_CONNECTIONS
    assert ended["silent"] == [b""] * SILENT_CONNECTIONS
    assert ended["half"] == [b""] * len(HALF_REQUESTS)
    # every websocket: Engine.IO's close packet, then a close frame (1000), not a dropped connection (1006)
    assert [(messages[-1:], close) for messages, close in ended["websocket"]] == [(["1"], 1000)] * WEBSOCKETS
    print(f"\nSIGTERM with {IDLE_CONNECTIONS} idle keep-alive connections, {SILENT_CONNECTIONS} silent ones, "
          f"{len(HALF_REQUESTS)} half requests and {WEBSOCKETS} websockets: exit 0 in {took:.2f} s")


async def test_a_request_in_flight_finishes_while_idle_connections_end_at_once(zapgate, external_db_env) -> None:
    process, _ = serve(zapgate, external_db_env)
    with trio.fail_after(60):
        idle = await HttpClient.open(process.port)
        assert (await idle.get("/health"))[0] == 200
        # an upload in flight: the login's head and half its body are in; the rest comes after SIGTERM
        body = json.dumps(ADMIN).encode()
        uploading = await HttpClient.open(process.port)
        assert (await uploading.get("/health"))[0] == 200 and uploading.keep_alive  # like a browser's
        await uploading.send_head("POST", "/auth/login", [("Content-Type", "application/json"),
                                                          ("Content-Length", str(len(body)))])
        await uploading.send_body(body[:10])
        # a request whose head is arriving at the stop: it has `HEAD_GRACE` (0.5 s) to finish it
        arriving = await HttpClient.open(process.port)
        head = arriving.h11.send(h11.Request(method="GET", target="/health", headers=[("Host", "127.0.0.1")]))
        head += arriving.h11.send(h11.EndOfMessage())
        await arriving.stream.send_all(head[:8])
        await trio.sleep(0.2)

        async with trio.open_nursery() as nursery:
            exited: list[tuple[int, float, float]] = []

            async def stop() -> None:
                exited.append((*await sigterm(process), time.monotonic()))

            nursery.start_soon(stop)
            # the idle connection ends while the upload is still in flight (it cannot end before we finish it)
            with trio.fail_after(QUICK):
                assert await wait_eof(idle.stream) == b""
            assert not exited and process.proc.poll() is None
            await arriving.stream.send_all(head[8:])
            assert (await arriving.response())[0] == 200 and not arriving.keep_alive
            assert await wait_eof(arriving.stream) == b""
            await trio.sleep(0.5)  # the upload is still welcome half a second into the stop
            await uploading.send_body(body[10:], end=True)
            status, answer = await uploading.response()
            # … and its connection ends after the response, which says so (`Connection: close`)
            assert not uploading.keep_alive
            assert await wait_eof(uploading.stream) == b""
            answered = time.monotonic()

    assert status == 200 and json.loads(answer)["token"], answer
    code, took, at = exited[0]
    assert code == 0, process.output()[-3000:]
    assert at - answered < QUICK, f"took {at - answered:.2f} s to exit once the upload was answered"
    print(f"\nSIGTERM with an upload in flight: exit 0 in {took:.2f} s, {at - answered:.2f} s after its answer")


async def test_stock_socketio_clients_are_told_to_reconnect(zapgate, external_db_env, node: str) -> None:  # noqa: F811
    process, token = serve(zapgate, external_db_env)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            clients = {transports: await start_client(nursery, node, process.url, "/1", token, transports=transports)
                       for transports in ("websocket", "polling", "default")}
            for client in clients.values():
                await client.wait_for(lambda line: line["step"] == "ready")
            # a raw Engine.IO polling session whose GET is waiting at the stop
            async with httpx.AsyncClient(base_url=process.url, timeout=10) as http:
                query = {"EIO": "4", "transport": "polling", "token": token}
                sid = json.loads((await http.get("/socket.io/", params=query)).text[1:])["sid"]
                assert (await http.post("/socket.io/", params={**query, "sid": sid}, content=b"40/1,")).text == "ok"
                assert (await http.get("/socket.io/", params={**query, "sid": sid})).text.startswith("40/1,")
                waiting: list[httpx.Response] = []

                async def poll() -> None:
                    waiting.append(await http.get("/socket.io/", params={**query, "sid": sid}))

                async with trio.open_nursery() as polling:
                    polling.start_soon(poll)
                    await trio.sleep(0.3)
                    code, took = await sigterm(process)
            for client in clients.values():
                await client.wait_for(lambda line: line["step"] == "disconnect")
                await client.close()

    assert code == 0, process.output()[-3000:]
    assert took < QUICK, f"took {took:.2f} s to stop with GRACEFUL_TIMEOUT={GRACEFUL_TIMEOUT}"
    assert waiting[0].status_code == 200 and waiting[0].text == "1"  # the waiting poll: Engine.IO close
    reasons = {transports: [line["reason"] for line in client.lines if line["step"] == "disconnect"]
               for transports, client in clients.items()}
    print(f"\nSIGTERM with three stock socket.io clients and a waiting poll: exit 0 in {took:.2f} s")
    assert reasons == {"websocket": ["transport close"], "polling": ["transport close"],
                       "default": ["transport close"]}
    assert {transports: client.lines[0]["transport"] for transports, client in clients.items()
            if transports != "default"} == {"websocket": "websocket", "polling": "polling"}
