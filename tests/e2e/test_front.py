"""gateway/front.py and the direct websocket transport over raw sockets: what the stock clients never do.

The whole Engine.IO/Socket.IO behaviour of the direct transport is covered by test_socketio_client.py
(every test there runs against both transports); here: the hand-off between the front and hypercorn,
handshakes that must be refused, frames split anywhere, and the goodbye at shutdown.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
from functools import partial

import h11
import httpx
import trio
from quart import jsonify, request
from trio_websocket import open_websocket_url

from gateway import front
from tests.e2e.test_socketio_client import (
    NAMESPACE,
    serve_realtime,
    wait_until,
    ws_connect_namespace,
    ws_open,
)
from tests.e2e.test_stop import HttpClient, wait_eof

KEY = base64.b64encode(os.urandom(16)).decode()


def upgrade_request(target: str, **headers: str) -> bytes:
    fields = {"Host": "127.0.0.1", "Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Key": KEY,
              "Sec-WebSocket-Version": "13", **{name.replace("_", "-"): value for name, value in headers.items()}}
    return (f"GET {target} HTTP/1.1\r\n" + "".join(f"{name}: {value}\r\n" for name, value in fields.items() if value)
            + "\r\n").encode()


def client_frame(text: str) -> bytes:
    """A masked text frame, as a client must send it."""
    payload = text.encode()
    mask = os.urandom(4)
    masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    assert len(payload) < 126
    return struct.pack("!BB", 0x81, 0x80 | len(payload)) + mask + masked


async def read_response_head(stream: trio.SocketStream) -> tuple[int, bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some(4096)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), head, rest


def next_frame(buffer: bytes) -> tuple[int, bytes, bytes] | None:
    """(opcode, payload, rest) of the first whole server frame in `buffer`, or None."""
    if len(buffer) < 2:
        return None
    assert not buffer[1] & 0x80, "a server frame must not be masked"
    size, offset = buffer[1] & 0x7F, 2
    if size == 126:
        if len(buffer) < 4:
            return None
        size, offset = struct.unpack("!H", buffer[2:4])[0], 4
    elif size == 127:
        if len(buffer) < 10:
            return None
        size, offset = struct.unpack("!Q", buffer[2:10])[0], 10
    if len(buffer) < offset + size:
        return None
    return buffer[0] & 0x0F, buffer[offset:offset + size], buffer[offset + size:]


async def read_frames(stream: trio.SocketStream, buffer: bytes, count: int) -> tuple[list[tuple[int, bytes]], bytes]:
    """`count` server frames (opcode, payload) and what was read beyond them."""
    frames = []
    while len(frames) < count:
        parsed = next_frame(buffer)
        if parsed is None:
            chunk = await stream.receive_some(65536)
            assert chunk, "connection closed"
            buffer += chunk
            continue
        opcode, payload, buffer = parsed
        frames.append((opcode, payload))
    return frames, buffer


async def test_handshake_split_into_single_bytes_and_frames_split_anywhere(nursery: trio.Nursery) -> None:
    with trio.fail_after(20):
        served = await serve_realtime(nursery)
        port = int(served.url.rsplit(":", 1)[1])
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        for byte in upgrade_request("/socket.io/?EIO=4&transport=websocket"):
            await stream.send_all(bytes([byte]))
        status, head, rest = await read_response_head(stream)
        assert status == 101
        expected = base64.b64encode(hashlib.sha1(KEY.encode() + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
        assert b"sec-websocket-accept: " + expected in head
        ((opcode, payload), ), rest = await read_frames(stream, rest, 1)
        assert opcode == 1 and payload.startswith(b'0{"sid":')
        connect = client_frame(f'40{NAMESPACE},{{"token":"good"}}')
        for cut in (1, 3, 7):  # the namespace connect, cut into pieces at odd places
            await stream.send_all(connect[:cut])
            await trio.sleep(0.01)
            connect = connect[cut:]
        await stream.send_all(connect)
        ((_, connected), (_, welcome)), rest = await read_frames(stream, rest, 2)
        assert connected.startswith(f"40{NAMESPACE},".encode())
        assert welcome.startswith(f'42{NAMESPACE},["welcome"'.encode())
        assert served.direct is not None and served.direct.stats() == {"open": 1, "carried": 1}
        socket = served.server.sockets(NAMESPACE)[0]
        socket.emit("news", {"n": 1})
        ((opcode, payload), ), rest = await read_frames(stream, rest, 1)
        assert json.loads(payload.decode().split(",", 1)[1]) == ["news", {"n": 1}]
        await stream.aclose()
        await wait_until(lambda: not served.server.sockets(NAMESPACE))
        assert served.handler.reasons() == ["transport close"]
        await wait_until(lambda: served.direct.stats()["open"] == 0)


async def test_refused_handshakes(nursery: trio.Nursery) -> None:
    with trio.fail_after(20):
        served = await serve_realtime(nursery)
        port = int(served.url.rsplit(":", 1)[1])

        async def answer(raw: bytes) -> tuple[int, bytes, bytes]:
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                await stream.send_all(raw)
                status, head, rest = await read_response_head(stream)
                while chunk := await stream.receive_some(4096):  # the server closes after a refusal
                    rest += chunk
                return status, head, rest

        status, _, body = await answer(upgrade_request("/socket.io/?EIO=4&transport=websocket", Sec_WebSocket_Key=""))
        assert status == 400 and json.loads(body) == {"code": 3, "message": "Bad request"}
        status, _, body = await answer(upgrade_request("/socket.io/?EIO=4&transport=websocket",
                                                       Sec_WebSocket_Key="c2hvcnQ="))
        assert status == 400
        status, head, _ = await answer(upgrade_request("/socket.io/?EIO=4&transport=websocket",
                                                       Sec_WebSocket_Version="8"))
        assert status == 426 and b"sec-websocket-version: 13" in head.lower()
        status, _, body = await answer(upgrade_request("/socket.io/?EIO=3&transport=websocket"))
        assert status == 400 and json.loads(body) == {"code": 5, "message": "Unsupported protocol version"}
        status, _, body = await answer(upgrade_request("/socket.io/?EIO=4&transport=websocket&sid=nope"))
        assert status == 400 and json.loads(body) == {"code": 1, "message": "Session ID unknown"}
        status, _, body = await answer(upgrade_request("/socket.io/?EIO=4&transport=smoke-signals"))
        assert status == 400 and json.loads(body) == {"code": 0, "message": "Transport unknown"}
        status, _, _ = await answer(b"GET /socket.io/?EIO=4 HTTP/1.1\r\nUpgrade: websocket\r\nHost\r\n\r\n")
        assert status == 400  # a malformed head
        assert served.direct is not None and served.direct.stats()["carried"] == 0
        assert not served.server.stats()["sessions"]


async def test_everything_else_reaches_hypercorn_unchanged(nursery: trio.Nursery) -> None:
    from quart_trio import QuartTrio

    app = QuartTrio("front-e2e")

    @app.route("/socket.io/elsewhere")
    async def elsewhere() -> str:
        return "not the realtime path"

    @app.route("/echo", methods=["POST"])
    async def echo():  # type: ignore[no-untyped-def]
        return jsonify({"size": len(await request.get_data()), "header": len(request.headers.get("X-Big", ""))})

    with trio.fail_after(20):
        served = await serve_realtime(nursery, app=app)
        async with httpx.AsyncClient(base_url=served.url) as client:
            response = await client.get("/socket.io/elsewhere")
            assert (response.status_code, response.text) == (200, "not the realtime path")
            body = os.urandom(300_000)  # far past what the front sniffs
            response = await client.post("/echo", content=body, headers={"X-Big": "y" * 20_000})
            assert response.json() == {"size": 300_000, "header": 20_000}
            # keep-alive: the same connection serves another request after the replayed one
            response = await client.post("/echo", content=b"abc")
            assert response.json() == {"size": 3, "header": 0}
            # polling Engine.IO requests on the realtime path stay with the HTTP routes
            response = await client.get("/socket.io/", params={"EIO": "4", "transport": "polling"})
            assert response.status_code == 200 and response.text.startswith('0{"sid":')
        assert served.direct is not None and served.direct.stats()["carried"] == 0


async def test_shutdown_says_goodbye_on_direct_websockets(nursery: trio.Nursery) -> None:
    with trio.fail_after(20):
        served = await serve_realtime(nursery)
        assert served.stop is not None
        async with open_websocket_url(f"{served.ws_url}/socket.io/?EIO=4&transport=websocket") as ws:
            await ws_open(ws)
            await ws_connect_namespace(ws)
            served.stop.set()
            assert await ws.get_message() == "1"  # Engine.IO close, then the websocket closes normally
            await wait_until(lambda: ws.closed is not None)
            assert ws.closed.code == 1000
        assert served.handler.reasons() == ["server shutting down"]


async def test_keep_alive_timeout_ends_an_idle_connection_never_a_request(nursery: trio.Nursery) -> None:
    """hypercorn re-arms its keep-alive timer in the request's task, which quart-trio cancels once the
    response is out: without the front's own (front.Connections), a connection idle after its first
    request stayed open for ever."""
    from hypercorn.config import Config as HypercornConfig
    from quart_trio import QuartTrio

    app = QuartTrio("keep-alive")

    @app.route("/slow")
    async def slow() -> str:
        await trio.sleep(1.0)  # longer than the keep-alive timeout: a request in flight is not idle
        return "done"

    hc = HypercornConfig()
    hc.bind = ["127.0.0.1:0"]
    hc.accesslog = None
    hc.keep_alive_timeout = 0.4
    with trio.fail_after(20):
        (url,) = await nursery.start(partial(front.serve, app, hc, shutdown_trigger=trio.sleep_forever))
        client = await HttpClient.open(int(url.rsplit(":", 1)[1]))
        assert await client.get("/slow") == (200, b"done")
        began = trio.current_time()
        assert await wait_eof(client.stream) == b""
        assert 0.3 < trio.current_time() - began < 2



async def test_a_request_that_came_early_is_served_at_a_stop_then_the_connection_ends(
        nursery: trio.Nursery) -> None:
    """The client's next request arrived while the response was under way (pipelined, or sent the moment
    the response's last byte arrived). It is in flight (its bytes are in), so it is served, with
    `Connection: close`, and the connection ends; with hypercorn's own stop, its reader waited for a
    recycling that a stop never does, and the stop took all of `graceful_timeout`."""
    from hypercorn.config import Config as HypercornConfig
    from quart_trio import QuartTrio

    app = QuartTrio("pipelined")

    @app.route("/stream")
    async def stream():  # type: ignore[no-untyped-def]
        async def body():  # type: ignore[no-untyped-def]
            yield b"do"
            await trio.sleep(0.5)
            yield b"ne"
        return body(), 200

    hc = HypercornConfig()
    hc.bind = ["127.0.0.1:0"]
    hc.accesslog = None
    hc.graceful_timeout = 10
    stop, stopped = trio.Event(), trio.Event()

    async def serve(task_status: trio.TaskStatus[list[str]]) -> None:
        try:
            await front.serve(app, hc, shutdown_trigger=stop.wait, task_status=task_status)
        finally:
            stopped.set()

    with trio.fail_after(20):
        (url,) = await nursery.start(serve)
        client = await HttpClient.open(int(url.rsplit(":", 1)[1]))
        await client.send_head("GET", "/stream")
        await client.stream.send_all(client.h11.send(h11.EndOfMessage())
                                     + b"GET /stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        while not isinstance(event := client.h11.next_event(), h11.Response):  # under way before the stop
            assert event is h11.NEED_DATA
            client.h11.receive_data(await client.stream.receive_some(65536))
        stop.set()
        with trio.fail_after(3):  # not `graceful_timeout`
            _, body = await client.response()
            assert (event.status_code, body, client.keep_alive) == (200, b"done", True)  # started before the stop
            # the request sent above, told to h11 (not sent again) so that it reads the answer
            client.h11.send(h11.Request(method="GET", target="/stream", headers=[("Host", "127.0.0.1")]))
            client.h11.send(h11.EndOfMessage())
            assert await client.response() == (200, b"done")
            assert not client.keep_alive  # started after the stop: `Connection: close`
            assert await wait_eof(client.stream) == b""
            await stopped.wait()


def masked(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    """A client frame of any opcode (masked, as a client's must be); payloads under 126 bytes."""
    mask = os.urandom(4)
    assert len(payload) < 126
    return (struct.pack("!BB", (0x80 if fin else 0) | opcode, 0x80 | len(payload)) + mask
            + bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload)))


async def test_fragmented_messages_pings_and_the_close_handshake(nursery: trio.Nursery) -> None:
    with trio.fail_after(20):
        served = await serve_realtime(nursery)
        port = int(served.url.rsplit(":", 1)[1])
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(upgrade_request("/socket.io/?EIO=4&transport=websocket"))
        status, _, rest = await read_response_head(stream)
        assert status == 101
        _, rest = await read_frames(stream, rest, 1)  # the open packet
        connect = f'40{NAMESPACE},{{"token":"good"}}'.encode()
        # one message in three frames (text, continuation, continuation), a ping in between
        await stream.send_all(masked(0x1, connect[:5], fin=False) + masked(0x9, b"hi")
                              + masked(0x0, connect[5:12], fin=False) + masked(0x0, connect[12:]))
        frames, rest = await read_frames(stream, rest, 3)
        assert frames[0] == (0xA, b"hi")  # the pong, with the ping's payload
        assert frames[1][1].startswith(f"40{NAMESPACE},".encode())
        assert frames[2][1].startswith(f'42{NAMESPACE},["welcome"'.encode())
        # the client closes: the server answers with its close frame and ends the connection
        await stream.send_all(masked(0x8, struct.pack("!H", 1000)))
        ((opcode, payload), ), rest = await read_frames(stream, rest, 1)
        assert opcode == 0x8 and struct.unpack("!H", payload[:2])[0] == 1000
        assert await stream.receive_some(100) == b""
        await wait_until(lambda: served.handler.reasons() == ["transport close"])
        await stream.aclose()


async def test_a_message_over_max_payload_closes_the_session(nursery: trio.Nursery) -> None:
    from api.realtime import RealtimeConfig

    with trio.fail_after(20):
        served = await serve_realtime(nursery, RealtimeConfig(max_payload=64))
        async with open_websocket_url(f"{served.ws_url}/socket.io/?EIO=4&transport=websocket") as ws:
            await ws_open(ws)
            await ws.send_message("4" + "x" * 100)  # past max_payload, in one message
            await wait_until(lambda: ws.closed is not None)
        assert served.server.stats()["closed"] == {"payload too large": 1}
