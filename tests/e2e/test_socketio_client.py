"""The realtime server over a real network: hypercorn on a free loopback port, real clients.

- the stock npm `socket.io-client` v4 (tests/e2e/realtime/client.mjs): polling then upgrade,
  websocket only and polling only; auth and query tokens, acks, emits, rooms, binary, refusals;
- raw Engine.IO over httpx and trio-websocket for what a well-behaved client never does: malformed
  packets, unknown sids, overlapping polls, oversized payloads, silence (ping timeout) and lagging.

The namespace handler here is a toy (namespace `/tenant-1`, token "good"); zapgate's own policy
(company namespaces, JWTs, rooms) is tested where it is written.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve
from quart_trio import QuartTrio
from trio_websocket import ConnectionClosed, ConnectionRejected, WebSocketConnection, open_websocket_url

from api.realtime import ConnectRefused, RealtimeConfig, RealtimeServer, Socket
from api.realtime.direct import DirectWebsockets
from gateway import front

CLIENT_DIR = Path(__file__).parent / "realtime"
NAMESPACE = "/tenant-1"
RS = "\x1e"


def _ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


# --- the toy application on top of the server's API ---

class ToyHandler:
    """Accepts `/tenant-1` with token "good" (auth payload or `token` query, `Bearer ` optional)."""

    def __init__(self, server: RealtimeServer) -> None:
        self.server = server
        self.disconnects: list[tuple[str, str]] = []

    async def connect(self, socket: Socket, auth: Mapping[str, Any], query: Mapping[str, str]) -> Any:
        if socket.namespace != NAMESPACE:
            raise ConnectRefused("Invalid namespace")
        token = auth.get("token") or query.get("token", "").removeprefix("Bearer ")
        if token != "good":
            raise ConnectRefused("invalid token", {"reason": "token"})
        for name, handler in (("whoami", self.whoami), ("echo", self.echo), ("binary", self.binary),
                              ("join", self.join), ("shout", self.shout), ("kick-me", self.kick),
                              ("boom", self.boom)):
            socket.on(name, handler)
        socket.emit("welcome", {"namespace": socket.namespace})  # before the connect completes: buffered
        return {"auth": auth.get("token"), "query": query.get("token")}

    def disconnected(self, socket: Socket, reason: str) -> None:
        self.disconnects.append((socket.sid, reason))

    async def whoami(self, socket: Socket) -> dict[str, Any]:
        return {**socket.context, "transport": socket.transport}

    async def echo(self, socket: Socket, *args: Any) -> tuple[Any, ...]:
        return args

    async def binary(self, socket: Socket, blob: bytes, label: str) -> bytes:
        socket.emit("binary-back", {"label": label, "blob": blob[::-1]})
        return blob[::-1]

    async def join(self, socket: Socket, room: str) -> list[str]:
        socket.join(room)
        return sorted(socket.rooms)

    async def shout(self, socket: Socket, room: str, payload: Any) -> int:
        return self.server.emit_to_room(socket.namespace, room, "room-event", payload)

    async def kick(self, socket: Socket) -> None:
        self.server.close_socket(socket)

    async def boom(self, socket: Socket) -> None:
        raise RuntimeError("a handler bug")

    def reasons(self) -> list[str]:
        return [reason for _, reason in self.disconnects]


@attrs.define
class Served:
    url: str
    server: RealtimeServer
    handler: ToyHandler
    direct: DirectWebsockets | None = None  # the direct websocket transport, when served through the front
    stop: trio.Event | None = None  # set: the front shuts down gracefully

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://")


async def serve_realtime(nursery: trio.Nursery, config: RealtimeConfig | None = None,
                         app: QuartTrio | None = None) -> Served:
    """The realtime server mounted on `app` (a bare QuartTrio app by default), on a free loopback port."""
    server = RealtimeServer(config or RealtimeConfig())
    handler = ToyHandler(server)
    server.register_namespace_handler(handler)
    await nursery.start(server.run)
    app = app if app is not None else QuartTrio("realtime-e2e")
    app.register_blueprint(server.blueprint())
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    hc = HypercornConfig()
    hc.bind = [f"fd://{os.dup(sock.fileno())}"]  # hypercorn owns (and closes) the duplicate
    hc.accesslog = None
    hc.graceful_timeout = 1
    direct, stop = None, None
    if WEBSOCKETS["via"] == "direct":  # zapgate's front: websockets on their direct transport
        direct, stop = DirectWebsockets(server), trio.Event()
        await nursery.start(partial(front.serve, app, hc, claimers=[direct], shutdown_trigger=stop.wait))
    else:  # plain hypercorn: websockets through ASGI and the blueprint's route
        await nursery.start(partial(hypercorn_serve, app, hc))
    sock.close()
    return Served(f"http://127.0.0.1:{port}", server, handler, direct, stop)


WEBSOCKETS = {"via": "direct"}


@pytest.fixture(params=["direct", "asgi"], autouse=True)
def websockets_via(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every test here runs against both websocket transports: the direct one and the ASGI route."""
    WEBSOCKETS["via"] = request.param
    yield request.param
    WEBSOCKETS["via"] = "direct"


# --- raw Engine.IO helpers ---

EIO = {"EIO": "4", "transport": "polling"}


async def handshake(client: httpx.AsyncClient, **query: str) -> dict[str, Any]:
    response = await client.get("/socket.io/", params={**EIO, **query})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text.startswith("0")
    return json.loads(response.text[1:])


async def poll(client: httpx.AsyncClient, sid: str) -> list[str]:
    response = await client.get("/socket.io/", params={**EIO, "sid": sid})
    assert response.status_code == 200, response.text
    return response.text.split(RS)


async def post(client: httpx.AsyncClient, sid: str, *packets: str) -> httpx.Response:
    return await client.post("/socket.io/", params={**EIO, "sid": sid}, content=RS.join(packets).encode(),
                             headers={"Content-Type": "text/plain;charset=UTF-8"})


async def polling_socket(client: httpx.AsyncClient) -> tuple[str, str]:
    """A polling session connected to /tenant-1: (engine sid, socket sid)."""
    sid = (await handshake(client))["sid"]
    assert (await post(client, sid, f'40{NAMESPACE},{{"token":"good"}}')).text == "ok"
    packets = await poll(client, sid)
    assert packets[0].startswith(f"40{NAMESPACE},")
    assert packets[1] == f'42{NAMESPACE},["welcome",{{"namespace":"{NAMESPACE}"}}]'
    return sid, json.loads(packets[0].split(",", 1)[1])["sid"]


def refusal(response: httpx.Response) -> tuple[int, dict[str, Any]]:
    return response.status_code, response.json()


async def ws_open(ws: WebSocketConnection) -> dict[str, Any]:
    opening = await ws.get_message()
    assert opening.startswith("0")
    return json.loads(opening[1:])


async def ws_connect_namespace(ws: WebSocketConnection) -> str:
    await ws.send_message(f'40{NAMESPACE},{{"token":"good"}}')
    connected = await ws.get_message()
    assert connected.startswith(f"40{NAMESPACE},"), connected
    assert (await ws.get_message()).startswith(f'42{NAMESPACE},["welcome"')
    return json.loads(connected.split(",", 1)[1])["sid"]


async def wait_until(predicate: Any, interval: float = 0.01) -> None:
    """Until the server reaches a state the test observes from outside (callers bound it with fail_after)."""
    while not predicate():
        await trio.sleep(interval)


# --- the real socket.io-client ---

@pytest.fixture(scope="module")
def node() -> str:
    """`node`, with the client's node_modules installed; skipped without node unless CI=true."""
    executable = shutil.which("node")
    if executable is None:
        if _ci():
            pytest.fail("node must be on PATH when CI=true")
        pytest.skip("node is not on PATH")
    # One install at a time: pytest-xdist workers each reach this fixture; the first installs, the others wait
    # for it and find node_modules there (two `npm ci` in one directory break each other).
    with open(Path(tempfile.gettempdir()) / "zapgate-test-npm.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (CLIENT_DIR / "node_modules" / "socket.io-client").is_dir():
            npm = shutil.which("npm")
            if npm is None:
                pytest.fail("npm is needed to install socket.io-client")
            command = [npm, "ci" if (CLIENT_DIR / "package-lock.json").exists() else "install", "--no-audit",
                       "--no-fund"]
            subprocess.run(command, cwd=CLIENT_DIR, check=True, timeout=300, capture_output=True)
    return executable


async def test_stock_socketio_client(nursery: trio.Nursery, node: str) -> None:
    with trio.fail_after(60):
        served = await serve_realtime(nursery, RealtimeConfig(ping_interval=1, ping_timeout=1))
        result = await trio.run_process([node, str(CLIENT_DIR / "client.mjs"), served.url], capture_stdout=True,
                                        capture_stderr=True, check=False)
        lines = [json.loads(line) for line in result.stdout.decode().splitlines() if line.strip()]
        assert result.returncode == 0, (lines, result.stderr.decode())
        steps = {(line.get("client"), line["step"]): line for line in lines}

        assert steps[("default", "engine-open")]["transport"] == "polling"  # stock defaults: polling first …
        assert steps[("default", "upgraded")]["transport"] == "websocket"  # … then the upgrade
        assert steps[("websocket", "engine-open")]["transport"] == "websocket"
        assert steps[("websocket", "connect")]["transport"] == "websocket"
        assert steps[("polling", "connect")]["transport"] == "polling"
        for client, transport in (("default", "websocket"), ("websocket", "websocket"), ("polling", "polling")):
            assert steps[(client, "welcome")]["data"] == {"namespace": NAMESPACE}
            assert steps[(client, "whoami")]["data"] == {"auth": "good", "query": "Bearer good",
                                                         "transport": transport}
            assert steps[(client, "echo")]["data"] == ["olá ✓", {"n": 1}, [1, 2]]
            assert steps[(client, "binary")]["ack"] == "ff030201"
            assert steps[(client, "binary")]["pushed"] == {"label": "label", "blob": "ff030201"}
            assert steps[(client, "join")]["data"] == ["room-shared"]
            assert steps[(client, "room-event")]["data"] == {"hello": "room"}
        assert steps[("polling", "shout")]["delivered"] == 3
        assert steps[("websocket", "kicked")]["reason"] == "io server disconnect"
        assert steps[("bad-token", "connect_error")] == {
            "client": "bad-token", "step": "connect_error", "message": "invalid token", "data": {"reason": "token"}}
        assert steps[("bad-token-ws", "connect_error")]["message"] == "invalid token"
        assert steps[("unknown-namespace", "connect_error")]["message"] == "Invalid namespace"
        assert "server namespace disconnect" in served.handler.reasons()
        # the node process is gone: every session ends (closed by the client, or by the ping timeout)
        await wait_until(lambda: served.server.stats()["sessions"] == 0)
        assert served.server.stats()["sockets"] == 0 and served.server.stats()["rooms"] == 0


# --- Engine.IO over HTTP ---

async def test_handshake_and_refusals(nursery: trio.Nursery) -> None:
    with trio.fail_after(20):
        served = await serve_realtime(nursery, RealtimeConfig(ping_interval=3, ping_timeout=2, max_payload=5000))
        async with httpx.AsyncClient(base_url=served.url, timeout=10) as client:
            opened = await handshake(client, token="Bearer good")
            assert opened == {"sid": opened["sid"], "upgrades": ["websocket"], "pingInterval": 3000,
                              "pingTimeout": 2000, "maxPayload": 5000}
            unknown = {"code": 1, "message": "Session ID unknown"}
            assert refusal(await client.get("/socket.io/", params={**EIO, "sid": "nope"})) == (400, unknown)
            assert refusal(await post(client, "nope", "40")) == (400, unknown)
            assert refusal(await client.get("/socket.io/", params={"EIO": "3", "transport": "polling"})) == (
                400, {"code": 5, "message": "Unsupported protocol version"})
            assert refusal(await client.get("/socket.io/", params={"EIO": "4", "transport": "carrier-pigeon"})) == (
                400, {"code": 0, "message": "Transport unknown"})
            assert refusal(await client.post("/socket.io/", params=EIO, content=b"40")) == (
                400, {"code": 2, "message": "Bad handshake method"})
            assert refusal(await client.get("/socket.io/", params={"EIO": "4", "transport": "websocket"})) == (
                400, {"code": 3, "message": "Bad request"})
            with pytest.raises(ConnectionRejected) as rejected:
                async with open_websocket_url(f"{served.ws_url}/socket.io/?EIO=4&transport=websocket&sid=nope"):
                    pass
            assert rejected.value.status_code == 400
            assert json.loads(rejected.value.body) == unknown


async def test_polling_connect_event_ack_and_close(nursery: trio.Nursery) -> None:
    with trio.fail_after(20):
        served = await serve_realtime(nursery)
        async with httpx.AsyncClient(base_url=served.url, timeout=10) as client:
            sid, socket_sid = await polling_socket(client)
            assert served.server.socket(NAMESPACE, socket_sid) is not None
            # two events in one POST; the acks come back in order in one poll
            response = await post(client, sid, f'42{NAMESPACE},7["echo","a",1]', f'42{NAMESPACE},8["whoami"]')
            assert response.text == "ok"
            packets = await poll(client, sid)
            if len(packets) == 1:
                packets += await poll(client, sid)
            assert packets[0] == f'43{NAMESPACE},7["a",1]'
            assert packets[1].startswith(f"43{NAMESPACE},8")
            assert json.loads(packets[1].removeprefix(f"43{NAMESPACE},8")) == [
                {"auth": "good", "query": None, "transport": "polling"}]
            # a failing handler is logged; the session goes on
            assert (await post(client, sid, f'42{NAMESPACE},9["boom"]', f'42{NAMESPACE},10["echo"]')).text == "ok"
            assert await poll(client, sid) == [f"43{NAMESPACE},10[]"]
            # events for a namespace the client never connected are ignored
            assert (await post(client, sid, '42/other,1["echo"]')).text == "ok"
            # leaving the namespace, then closing the session
            assert (await post(client, sid, f"41{NAMESPACE},")).text == "ok"
            await wait_until(lambda: served.handler.reasons() == ["client namespace disconnect"])
            assert (await post(client, sid, "1")).text == "ok"
            await wait_until(lambda: served.server.session(sid) is None)
            assert refusal(await client.get("/socket.io/", params={**EIO, "sid": sid}))[0] == 400


async def test_second_poll_gets_400_and_ends_the_session(nursery: trio.Nursery) -> None:
    with trio.fail_after(20):
        served = await serve_realtime(nursery)
        async with httpx.AsyncClient(base_url=served.url, timeout=10) as client:
            sid, _ = await polling_socket(client)
            first: list[list[str]] = []

            async def first_poll() -> None:
                first.append(await poll(client, sid))

            nursery.start_soon(first_poll)
            await wait_until(lambda: served.server.session(sid).poll_pending)  # type: ignore[union-attr]
            assert refusal(await client.get("/socket.io/", params={**EIO, "sid": sid})) == (
                400, {"code": 3, "message": "Bad request"})
            await wait_until(lambda: bool(first))
            assert first == [["1"]]
            await wait_until(lambda: served.server.session(sid) is None)
            assert served.handler.reasons() == ["poll overlap"]


async def test_malformed_packets_close_the_session(nursery: trio.Nursery) -> None:
    with trio.fail_after(20):
        served = await serve_realtime(nursery)
        async with httpx.AsyncClient(base_url=served.url, timeout=10) as client:
            cases = [
                ("x", 400),  # not an Engine.IO packet
                ("bnot-base64!", 400),  # binary message with broken base64
                ("2", 400),  # a ping from the client: protocol 4 pings from the server only
                (f"42{NAMESPACE},{{not json", 200),  # good Engine.IO, bad Socket.IO: the POST is fine, the session not
                (f'42{NAMESPACE},{{"event":"not an array"}}', 200),
                (f'451-{NAMESPACE},["binary",{{"_placeholder":true,"num":3}},"x"]' + RS + "bAQID", 200),
                ("499-" + NAMESPACE + ',["x"]', 200),  # more attachments than allowed
            ]
            for body, status in cases:
                sid, _ = await polling_socket(client)
                response = await post(client, sid, body)
                assert response.status_code == status, (body, response.text)
                if status == 400:
                    assert response.json() == {"code": 3, "message": "Bad request"}
                await wait_until(lambda sid=sid: served.server.session(sid) is None)
            assert served.handler.reasons() == ["parse error"] * len(cases)
            # undecodable bytes
            sid, _ = await polling_socket(client)
            response = await client.post("/socket.io/", params={**EIO, "sid": sid}, content=b"4\xff\xfe")
            assert response.status_code == 400


async def test_max_payload(nursery: trio.Nursery) -> None:
    with trio.fail_after(20):
        served = await serve_realtime(nursery, RealtimeConfig(max_payload=1000))
        async with httpx.AsyncClient(base_url=served.url, timeout=10) as client:
            sid, _ = await polling_socket(client)
            big = f'42{NAMESPACE},["echo","{"x" * 1000}"]'
            response = await post(client, sid, big)
            assert response.status_code == 413
            await wait_until(lambda: served.server.session(sid) is None)
        async with open_websocket_url(f"{served.ws_url}/socket.io/?EIO=4&transport=websocket") as ws:
            await ws_open(ws)
            await ws_connect_namespace(ws)
            await ws.send_message(big)
            with pytest.raises(ConnectionClosed):
                while True:
                    await ws.get_message()
        assert served.handler.reasons() == ["payload too large", "payload too large"]


# --- websocket ---

async def test_websocket_only_session_and_malformed_frame(nursery: trio.Nursery) -> None:
    with trio.fail_after(20):
        served = await serve_realtime(nursery)
        async with open_websocket_url(f"{served.ws_url}/socket.io/?EIO=4&transport=websocket") as ws:
            opened = await ws_open(ws)
            assert opened["upgrades"] == []
            await ws_connect_namespace(ws)
            await ws.send_message(f'42{NAMESPACE},1["echo",{{"k":"v"}}]')
            assert await ws.get_message() == f'43{NAMESPACE},1[{{"k":"v"}}]'
            # binary event: the text packet, then the attachment as a binary frame; binary ack back
            await ws.send_message(f'451-{NAMESPACE},2["binary",{{"_placeholder":true,"num":0}},"l"]')
            await ws.send_message(b"\x01\x02")
            pushed = [await ws.get_message() for _ in range(4)]
            assert pushed == [f'451-{NAMESPACE},["binary-back",{{"label":"l","blob":{{"_placeholder":true,"num":0}}}}]',
                              b"\x02\x01", f'461-{NAMESPACE},2[{{"_placeholder":true,"num":0}}]', b"\x02\x01"]
            await ws.send_message("9garbage")
            with pytest.raises(ConnectionClosed):
                while True:
                    await ws.get_message()
        assert served.handler.reasons() == ["parse error"]


async def test_upgrade_from_polling(nursery: trio.Nursery) -> None:
    with trio.fail_after(20):
        served = await serve_realtime(nursery)
        async with httpx.AsyncClient(base_url=served.url, timeout=10) as client:
            sid, _ = await polling_socket(client)
            pending: list[list[str]] = []

            async def pending_poll() -> None:
                pending.append(await poll(client, sid))

            nursery.start_soon(pending_poll)
            await wait_until(lambda: served.server.session(sid).poll_pending)  # type: ignore[union-attr]
            url = f"{served.ws_url}/socket.io/?EIO=4&transport=websocket&sid={sid}"
            async with open_websocket_url(url) as ws:
                await ws.send_message("2probe")
                assert await ws.get_message() == "3probe"
                await wait_until(lambda: bool(pending))
                assert pending == [["6"]]  # the poll in flight is ended so the client can pause
                # a second websocket for the same session while upgrading: refused
                with pytest.raises(ConnectionRejected):
                    async with open_websocket_url(url):
                        pass
                await ws.send_message("5")
                await ws.send_message(f'42{NAMESPACE},3["echo","over ws"]')
                assert await ws.get_message() == f'43{NAMESPACE},3["over ws"]'
                assert refusal(await client.get("/socket.io/", params={**EIO, "sid": sid})) == (
                    400, {"code": 3, "message": "Bad request"})
                assert served.server.sockets(NAMESPACE)[0].transport == "websocket"
            await wait_until(lambda: served.server.session(sid) is None)
            assert served.handler.reasons() == ["transport close"]


async def test_failed_probe_keeps_polling(nursery: trio.Nursery) -> None:
    with trio.fail_after(20):
        served = await serve_realtime(nursery, RealtimeConfig(upgrade_timeout=0.3))
        async with httpx.AsyncClient(base_url=served.url, timeout=10) as client:
            sid, _ = await polling_socket(client)
            url = f"{served.ws_url}/socket.io/?EIO=4&transport=websocket&sid={sid}"
            async with open_websocket_url(url) as ws:
                await ws.send_message("2probe")
                assert await ws.get_message() == "3probe"
                with pytest.raises(ConnectionClosed):  # no `5` within upgrade_timeout: the websocket is dropped
                    await ws.get_message()
            assert (await post(client, sid, f'42{NAMESPACE},4["echo"]')).text == "ok"
            assert await poll(client, sid) == [f"43{NAMESPACE},4[]"]


# --- heartbeat and backpressure ---

async def test_ping_timeout_closes_a_silent_client(nursery: trio.Nursery) -> None:
    with trio.fail_after(20):
        served = await serve_realtime(nursery, RealtimeConfig(ping_interval=0.2, ping_timeout=0.3))
        async with open_websocket_url(f"{served.ws_url}/socket.io/?EIO=4&transport=websocket") as lively, \
                open_websocket_url(f"{served.ws_url}/socket.io/?EIO=4&transport=websocket") as silent:
            for ws in (lively, silent):
                await ws_open(ws)
            lively_sid = await ws_connect_namespace(lively)
            pongs = 0

            async def answer_pings() -> None:
                nonlocal pongs
                while True:
                    assert await lively.get_message() == "2"
                    await lively.send_message("3")
                    pongs += 1

            async with trio.open_nursery() as responder:
                responder.start_soon(answer_pings)
                await ws_connect_namespace(silent)
                received: list[str] = []
                with pytest.raises(ConnectionClosed):
                    while True:
                        received.append(await silent.get_message())
                assert received == ["2", "1"]  # one unanswered ping, then goodbye
                await trio.sleep(1.5)  # several intervals: answering pings keeps a client alive
                responder.cancel_scope.cancel()
            assert pongs >= 5
            assert served.server.socket(NAMESPACE, lively_sid) is not None
        assert served.handler.reasons()[0] == "ping timeout"
        async with httpx.AsyncClient(base_url=served.url, timeout=10) as client:  # a polling client that stops polling
            sid, _ = await polling_socket(client)
            await wait_until(lambda: served.server.session(sid) is None)
            assert served.handler.reasons()[-1] == "ping timeout"


async def test_lagging_sockets_are_disconnected_others_keep_receiving(nursery: trio.Nursery) -> None:
    with trio.fail_after(30):
        config = RealtimeConfig(outgoing_packets=32, outgoing_bytes=512 * 1024, ping_interval=30, ping_timeout=30)
        served = await serve_realtime(nursery, config)
        server = served.server
        async with httpx.AsyncClient(base_url=served.url, timeout=10) as client, \
                open_websocket_url(f"{served.ws_url}/socket.io/?EIO=4&transport=websocket") as reader, \
                open_websocket_url(f"{served.ws_url}/socket.io/?EIO=4&transport=websocket",
                                   message_queue_size=0, disconnect_timeout=1) as stalled:
            # a polling client that never polls, a websocket client that never reads, one that keeps up
            poll_sid, poll_socket = await polling_socket(client)
            for ws in (reader, stalled):
                await ws_open(ws)
            reader_sid = await ws_connect_namespace(reader)
            stalled_sid = await ws_connect_namespace(stalled)
            for sid in (poll_socket, reader_sid, stalled_sid):
                server.socket(NAMESPACE, sid).join("news")  # type: ignore[union-attr]
            blob = "x" * 32 * 1024
            received = 0
            sent = 0

            async def read_all() -> None:
                nonlocal received
                while True:
                    message = await reader.get_message()
                    assert json.loads(message.split(",", 1)[1]) == ["news", received, blob]
                    received += 1

            async with trio.open_nursery() as readers:
                readers.start_soon(read_all)
                while server.socket(NAMESPACE, stalled_sid) is not None:
                    assert sent < 2000, "the stalled websocket was never cut off"
                    assert server.emit_to_room(NAMESPACE, "news", "news", sent, blob) >= 1
                    sent += 1
                    await trio.sleep(0.002)
                for _ in range(10):
                    server.emit_to_room(NAMESPACE, "news", "news", sent, blob)
                    sent += 1
                await wait_until(lambda: received == sent)
                readers.cancel_scope.cancel()
            assert server.session(poll_sid) is None
            assert server.socket(NAMESPACE, reader_sid) is not None
            assert sorted(served.handler.reasons()) == ["lagged", "lagged"]
            assert server.stats()["closed"]["lagged"] == 2
            # the polling laggard is told its session is gone, and reconnects
            assert refusal(await client.get("/socket.io/", params={**EIO, "sid": poll_sid}))[0] == 400


# --- inside zapgate's app: auth gate and CORS ---

async def test_mounted_on_the_zapgate_app_preflight_and_cors(nursery: trio.Nursery, tmp_path: Path) -> None:
    from api.app import Deps, create_app
    from gateway.config import Config

    config = Config(frontend_urls=("http://frontend.test",), data_dir=tmp_path, jwt_secret="s" * 40,
                    jwt_refresh_secret="r" * 40)
    fields = {field.name: None for field in attrs.fields(Deps) if field.default is attrs.NOTHING}
    app = create_app(Deps(**{**fields, "config": config}))
    with trio.fail_after(20):
        served = await serve_realtime(nursery, app=app)
        origin = {"Origin": "http://frontend.test"}
        async with httpx.AsyncClient(base_url=served.url, timeout=10) as client:
            preflight = await client.options("/socket.io/", params=EIO, headers={
                **origin, "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type"})
            assert preflight.status_code == 204
            assert preflight.headers["access-control-allow-origin"] == "http://frontend.test"
            assert preflight.headers["access-control-allow-credentials"] == "true"
            assert "POST" in preflight.headers["access-control-allow-methods"]
            opened = await client.get("/socket.io/", params=EIO, headers=origin)  # no token: the route is public
            assert opened.status_code == 200 and opened.text.startswith("0")
            assert opened.headers["access-control-allow-origin"] == "http://frontend.test"
            assert opened.headers["access-control-allow-credentials"] == "true"
            sid = json.loads(opened.text[1:])["sid"]
            assert (await post(client, sid, f'40{NAMESPACE},{{"token":"good"}}')).text == "ok"
            assert (await poll(client, sid))[0].startswith(f"40{NAMESPACE},")
            foreign = await client.get("/socket.io/", params=EIO, headers={"Origin": "http://evil.test"})
            assert "access-control-allow-origin" not in foreign.headers
        async with open_websocket_url(f"{served.ws_url}/socket.io/?EIO=4&transport=websocket") as ws:
            await ws_open(ws)
            await ws_connect_namespace(ws)
