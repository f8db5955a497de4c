"""The Socket.IO layer and the server's API without a network: a toy namespace handler on top of
`RealtimeServer`, driven through sessions' POST/poll entry points."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest
import trio
import trio.testing

from api.realtime import ConnectRefused, RealtimeConfig, RealtimeServer, Socket, TooManyRooms, eio
from api.realtime.session import POLLING, EngineError, EngineSession, Handshake

NS = "/acme"


class ToyHandler:
    """Namespace `/acme` for token "good"; `/slow` waits for `release` before accepting."""

    def __init__(self, server: RealtimeServer) -> None:
        self.server = server
        self.disconnects: list[tuple[Socket, str]] = []
        self.release = trio.Event()

    async def connect(self, socket: Socket, auth: Mapping[str, Any], query: Mapping[str, str]) -> Any:
        if socket.namespace == "/crash":
            raise RuntimeError("handler bug")
        if socket.namespace == "/slow":
            socket.join("lobby")
            await self.release.wait()
            return "slow"
        if socket.namespace != NS:
            return ConnectRefused("Invalid namespace")  # returning works like raising
        if auth.get("token", query.get("token")) != "good":
            raise ConnectRefused("invalid token", {"retry": False})
        socket.on("ack-none", self.ack_none)
        socket.on("ack-many", self.ack_many)
        socket.on("ack-one", self.ack_one)
        socket.on("ack-bad", self.ack_bad)
        socket.on("boom", self.boom)
        socket.on("join", self.join)
        socket.emit("hello", {"sid": socket.sid})
        return {"user": 1}

    def disconnected(self, socket: Socket, reason: str) -> None:
        self.disconnects.append((socket, reason))

    async def ack_none(self, socket: Socket) -> None:
        return None

    async def ack_many(self, socket: Socket, *args: Any) -> tuple[Any, ...]:
        return (len(args), *args)

    async def ack_one(self, socket: Socket, value: Any) -> Any:
        return [value]

    async def ack_bad(self, socket: Socket) -> Any:
        return {"not": object()}

    async def boom(self, socket: Socket) -> None:
        raise ValueError("bad input reached a handler")

    async def join(self, socket: Socket, room: str) -> list[str]:
        socket.join(room)
        return sorted(socket.rooms)

    def reasons(self) -> list[str]:
        return [reason for _, reason in self.disconnects]


@pytest.fixture
async def server(nursery: trio.Nursery) -> AsyncIterator[RealtimeServer]:
    server = RealtimeServer(RealtimeConfig(outgoing_packets=16, max_namespaces=3, max_rooms_per_socket=3,
                                           early_packets=2))
    server.register_namespace_handler(ToyHandler(server))
    await nursery.start(server.run)
    yield server


def handler_of(server: RealtimeServer) -> ToyHandler:
    assert isinstance(server._handler, ToyHandler)
    return server._handler


def open_session(server: RealtimeServer, **query: str) -> EngineSession:
    return server.open_session(Handshake(query=query, headers={}, remote_addr="127.0.0.1", transport=POLLING))


async def send(session: EngineSession, *packets: str) -> None:
    await session.post("\x1e".join("4" + packet for packet in packets))


async def receive(session: EngineSession) -> list[str | bytes]:
    """Everything the session has to say now (waits for the dispatcher to be done)."""
    await trio.testing.wait_all_tasks_blocked()
    if not session.queued:
        return []
    return [packet.data for packet in await session.poll()]


async def connected(server: RealtimeServer, **query: str) -> tuple[EngineSession, Socket]:
    session = open_session(server, **query)
    await send(session, f'0{NS},{{"token":"good"}}')
    first, hello = await receive(session)
    assert isinstance(first, str) and first.startswith(f"0{NS},")
    sid = json.loads(first.split(",", 1)[1])["sid"]
    assert hello == f'2{NS},["hello",{{"sid":"{sid}"}}]'  # emitted inside connect: after the CONNECT
    socket = server.socket(NS, sid)
    assert socket is not None and socket.connected
    return session, socket


async def test_connect_accepted_with_auth_or_query_token(server: RealtimeServer) -> None:
    _, socket = await connected(server)
    assert socket.context == {"user": 1}
    assert socket.namespace == NS and socket.transport == POLLING and socket.handshake.remote_addr == "127.0.0.1"
    session = open_session(server, token="good")
    await send(session, f"0{NS},")
    assert str((await receive(session))[0]).startswith(f"0{NS},")
    assert len(server.sockets(NS)) == 2


@pytest.mark.parametrize(("connect", "expected"), [
    (f'0{NS},{{"token":"bad"}}', {"message": "invalid token", "data": {"retry": False}}),
    ('0/elsewhere,{"token":"good"}', {"message": "Invalid namespace"}),
    ("0/crash,", {"message": "Internal server error"}),
])
async def test_connect_refused(server: RealtimeServer, connect: str, expected: dict[str, Any]) -> None:
    session = open_session(server)
    await send(session, connect)
    (refusal,) = await receive(session)
    namespace = connect[1:].split(",", 1)[0]
    assert refusal == f"4{namespace}," + json.dumps(expected, separators=(",", ":"))
    assert not session.closed and server.stats()["sockets"] == 0
    assert handler_of(server).disconnects == []  # never connected, so never disconnected


async def test_connect_limits(server: RealtimeServer) -> None:
    session, _ = await connected(server)
    await send(session, f'0{NS},{{"token":"good"}}')
    assert await receive(session) == [f'4{NS},{{"message":"Already connected to this namespace"}}']
    server._handler = None
    await send(session, '0/a,')
    assert await receive(session) == ['4/a,{"message":"Invalid namespace"}']


async def test_event_acks(server: RealtimeServer) -> None:
    session, _ = await connected(server)
    await send(session, f'2{NS},1["ack-none"]', f'2{NS},2["ack-many","a",{{"b":1}}]', f'2{NS},3["ack-one",null]',
               f'2{NS},["ack-one","no ack asked"]')
    assert await receive(session) == [f"3{NS},1[]", f'3{NS},2[2,"a",{{"b":1}}]', f"3{NS},3[[null]]"]


async def test_failing_handlers_and_unknown_events_leave_the_session_alone(server: RealtimeServer) -> None:
    session, socket = await connected(server)
    await send(session, f'2{NS},1["boom"]', f'2{NS},2["ack-bad"]', f'2{NS},3["nobody-listens"]',
               '2/not-connected,4["ack-none"]', f'3{NS},5["an ack we never asked for"]', f'2{NS},6["ack-none"]')
    assert await receive(session) == [f"3{NS},6[]"]
    assert socket.connected and not session.closed


async def test_binary_events_reach_handlers_as_bytes(server: RealtimeServer) -> None:
    session, _ = await connected(server)
    await session.post(f'451-{NS},7["ack-one",{{"_placeholder":true,"num":0}}]\x1ebAP8=')
    assert await receive(session) == [f'61-{NS},7[[{{"_placeholder":true,"num":0}}]]', b"\x00\xff"]


async def test_a_bad_socketio_packet_closes_the_session(server: RealtimeServer) -> None:
    session, socket = await connected(server)
    await send(session, f"2{NS},{{}}")
    await trio.testing.wait_all_tasks_blocked()
    assert session.close_reason == "parse error"
    assert not socket.connected and handler_of(server).reasons() == ["parse error"]
    assert server.session(session.sid) is None


async def test_rooms_and_fan_out(server: RealtimeServer) -> None:
    (first, alice), (second, bob) = await connected(server), await connected(server)
    await send(first, f'2{NS},1["join","ticket:1"]')
    assert await receive(first) == [f'3{NS},1[["ticket:1"]]']
    bob.join("ticket:1")
    bob.join("ticket:2")
    assert server.emit_to_room(NS, "ticket:1", "company-1-appMessage", {"action": "create"}) == 2
    assert server.emit_to_room(NS, "ticket:2", "x") == 1
    assert server.emit_to_room(NS, "nobody", "x") == 0
    assert server.emit_to_room("/other", "ticket:1", "x") == 0
    assert await receive(first) == [f'2{NS},["company-1-appMessage",{{"action":"create"}}]']
    assert await receive(second) == [f'2{NS},["company-1-appMessage",{{"action":"create"}}]', f'2{NS},["x"]']
    bob.leave("ticket:1")
    bob.leave("never-joined")
    assert server.emit_to_room(NS, "ticket:1", "y") == 1
    assert server.emit_to_namespace(NS, "everyone") == 2
    assert alice.rooms == frozenset({"ticket:1"}) and bob.rooms == frozenset({"ticket:2"})
    bob.join("r3")
    bob.join("r4")
    with pytest.raises(TooManyRooms):
        bob.join("r5")
    assert server.stats()["rooms"] == 4  # ticket:1, ticket:2, r3, r4


async def test_a_lagging_socket_is_disconnected_and_the_others_keep_receiving(server: RealtimeServer) -> None:
    (slow, laggard), (fast, keeper) = await connected(server), await connected(server)
    for socket in (laggard, keeper):
        socket.join("news")
    received: list[str | bytes] = []
    for n in range(40):  # the queue holds 16 packets; the fast client reads as they come
        assert server.emit_to_room(NS, "news", "n", n) == (2 if n < 16 else 1)
        received += await receive(fast)
    assert received == [f'2{NS},["n",{n}]' for n in range(40)]
    await trio.testing.wait_all_tasks_blocked()
    assert slow.close_reason == "lagged" and server.session(slow.sid) is None
    assert handler_of(server).disconnects == [(laggard, "lagged")]
    assert not laggard.emit("n", "late")
    assert server.stats()["closed"] == {"lagged": 1}


async def test_close_socket_tells_the_client_and_forgets_it(server: RealtimeServer) -> None:
    session, socket = await connected(server)
    socket.join("r")
    server.close_socket(socket, "token expired")
    assert await receive(session) == [f"1{NS},"]
    assert handler_of(server).disconnects == [(socket, "token expired")]
    assert server.socket(NS, socket.sid) is None and server.stats()["rooms"] == 0
    assert not socket.emit("x") and server.emit_to_room(NS, "r", "x") == 0
    server.close_socket(socket)  # twice: nothing more happens
    assert len(handler_of(server).disconnects) == 1
    assert not session.closed  # the connection stays, the client may connect again
    await send(session, f'0{NS},{{"token":"good"}}')
    assert str((await receive(session))[0]).startswith(f"0{NS},")


async def test_client_namespace_disconnect(server: RealtimeServer) -> None:
    session, _ = await connected(server)
    await send(session, f"1{NS},")
    await trio.testing.wait_all_tasks_blocked()
    assert handler_of(server).reasons() == ["client namespace disconnect"]
    assert server.sockets(NS) == [] and not session.closed


async def test_a_socket_being_connected_gets_no_room_events_yet(server: RealtimeServer) -> None:
    session = open_session(server)
    await send(session, "0/slow,")
    await trio.testing.wait_all_tasks_blocked()
    assert server.emit_to_room("/slow", "lobby", "too early") == 0
    handler_of(server).release.set()
    assert str((await receive(session))[0]).startswith("0/slow,")
    assert server.emit_to_room("/slow", "lobby", "now") == 1


async def test_emit_rules(server: RealtimeServer) -> None:
    session, socket = await connected(server)
    with pytest.raises(ValueError):
        socket.emit("disconnect")
    assert socket.emit("blob", b"\x01")
    assert await receive(session) == [f'51-{NS},["blob",{{"_placeholder":true,"num":0}}]', b"\x01"]
    with pytest.raises(RuntimeError):
        server.register_namespace_handler(ToyHandler(server))


async def test_session_end_disconnects_all_its_sockets(server: RealtimeServer) -> None:
    session, _ = await connected(server)
    await send(session, "0/slow,")
    handler_of(server).release.set()
    await receive(session)
    await session.post("1")
    await trio.testing.wait_all_tasks_blocked()
    assert sorted(handler_of(server).reasons()) == ["client close", "client close"]
    stats = server.stats()
    assert {key: stats[key] for key in ("sessions", "sockets", "rooms", "closed")} == {
        "sessions": 0, "sockets": 0, "rooms": 0, "closed": {"client close": 1}}
    assert stats["pending"]["sessions"] == stats["pending"]["anonymous"] == stats["pending"]["clients"] == 0


async def test_limits_on_sessions_and_namespaces(nursery: trio.Nursery) -> None:
    server = RealtimeServer(RealtimeConfig(max_sessions=1, max_namespaces=1))
    with pytest.raises(EngineError) as not_running:
        open_session(server)
    assert not_running.value.status == 503
    server.register_namespace_handler(ToyHandler(server))
    await nursery.start(server.run)
    session, waiting = open_session(server), open_session(server)  # pending sessions are not the cap's
    await send(session, f'0{NS},{{"token":"good"}}', '0/b,')
    packets = await receive(session)
    assert packets[-1] == '4/b,{"message":"Too many namespaces"}'
    await send(waiting, f'0{NS},{{"token":"good"}}')  # one authenticated session at most: this one waits
    assert await receive(waiting) == [f'4{NS},{{"message":"Server full"}}']
    assert server.stats()["full"] == {"refused": 1, "episodes": 1}
    session.close("client close")
    await trio.testing.wait_all_tasks_blocked()
    await send(waiting, f'0{NS},{{"token":"good"}}')  # room again
    first, _ = await receive(waiting)
    assert isinstance(first, str) and first.startswith(f"0{NS},")


async def test_connect_timeout(autojump_clock: trio.abc.Clock, nursery: trio.Nursery) -> None:
    server = RealtimeServer(RealtimeConfig(connect_timeout=45, ping_interval=1000, ping_timeout=1000))
    server.register_namespace_handler(ToyHandler(server))
    await nursery.start(server.run)
    idle, busy = open_session(server), open_session(server)
    await send(busy, f'0{NS},{{"token":"good"}}')
    await trio.sleep(46)
    assert idle.close_reason == "connect timeout"
    assert not busy.closed


async def test_server_shutdown_closes_every_session(nursery: trio.Nursery) -> None:
    server = RealtimeServer()
    handler = ToyHandler(server)
    server.register_namespace_handler(handler)
    async with trio.open_nursery() as inner:
        await inner.start(server.run)
        session, _ = await connected(server)
        inner.cancel_scope.cancel()
    assert session.close_reason == "server shutting down"
    assert handler.reasons() == ["server shutting down"]
    assert await session.poll() == [eio.CLOSE]  # a poll still in flight is told


async def test_stop_tells_every_session_at_once_and_takes_no_new_ones(server: RealtimeServer) -> None:
    """The front's stop: a waiting poll is answered the close packet now, not when the server is cancelled."""
    session, _ = await connected(server)
    answers: list[list[eio.Packet]] = []

    async def poll() -> None:
        answers.append(await session.poll())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(poll)
        await trio.testing.wait_all_tasks_blocked()
        server.stop()
    assert answers == [[eio.CLOSE]]
    await trio.testing.wait_all_tasks_blocked()  # the session's task tells the namespace handler
    assert handler_of(server).reasons() == ["server shutting down"]
    with pytest.raises(EngineError) as refused:
        open_session(server)
    assert refused.value.status == 503
