"""Presence's bookkeeping under a virtual clock (autojump): in-memory stand-ins for the database, the
broker and the realtime server's rooms. What the integration tests cannot time: a socket that counted and
was never accepted, a connection that flaps within the grace, a database that is away."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import trio

from api.presence import Presence
from gateway.broker import Broker
from storage.errors import Unavailable

pytestmark = pytest.mark.trio
GRACE = 30.0
COMPANY, USER = 1, 7


class FakeDb:
    """`execute` and `fetch_one` of the two queries Presence uses; `down` makes them raise Unavailable."""

    q = SimpleNamespace(user_set_online="user_set_online", user_show="user_show")

    def __init__(self) -> None:
        self.down = False
        self.writes: list[tuple[float, bool]] = []

    async def execute(self, sql: str, params: dict[str, Any]) -> int:
        await trio.lowlevel.checkpoint()
        if self.down:
            raise Unavailable("connection refused")
        self.writes.append((trio.current_time(), params["online"]))
        return 1

    async def fetch_one(self, sql: str, params: dict[str, Any]) -> dict[str, Any]:
        await trio.lowlevel.checkpoint()
        return {"id": params["id"], "name": "Ana", "email": "ana@x.test", "profile": "user",
                "company_id": params["company_id"], "super": False, "all_ticket": "disable"}


class FakeServer:
    """The realtime server's rooms: `user:{id}` of a namespace holds that user's sockets."""

    def __init__(self) -> None:
        self.rooms: dict[tuple[str, str], list[Any]] = {}

    def room_sockets(self, namespace: str, room: str) -> list[Any]:
        return list(self.rooms.get((namespace, room), ()))

    def open(self, namespace: str = f"/{COMPANY}") -> object:
        socket = object()
        self.rooms.setdefault((namespace, f"user:{USER}"), []).append(socket)
        return socket

    def close(self, socket: object) -> None:
        for members in self.rooms.values():
            if socket in members:
                members.remove(socket)


async def started(nursery: trio.Nursery) -> tuple[Presence, FakeDb, FakeServer, list[Any]]:
    db, server, broker = FakeDb(), FakeServer(), Broker()
    presence = Presence(db, broker, server, grace=GRACE)  # type: ignore[arg-type]
    announced: list[Any] = []

    async def listen() -> None:
        with broker.subscribe(None) as events:
            async for event in events:
                if event.name == "userOnlineChange":
                    announced.append(event.payload["online"])

    nursery.start_soon(listen)
    await nursery.start(presence.run)
    return presence, db, server, announced


async def test_a_socket_that_counted_but_never_stayed_leaves_its_user_offline_after_the_grace(
        nursery: trio.Nursery, autojump_clock: trio.abc.Clock) -> None:
    presence, db, _server, announced = await started(nursery)
    presence.connected(COMPANY, USER)  # the handler accepted it; the server then refused it (no room left)
    await trio.sleep(1)
    assert [online for _, online in db.writes] == [True] and announced == [True]
    await trio.sleep(GRACE + 10)
    assert [online for _, online in db.writes] == [True, False] and announced == [True, False]


async def test_a_flapping_connection_within_the_grace_writes_nothing_more(
        nursery: trio.Nursery, autojump_clock: trio.abc.Clock) -> None:
    presence, db, server, announced = await started(nursery)
    socket = server.open()
    presence.connected(COMPANY, USER)
    await trio.sleep(1)
    for _ in range(20):  # reloads, token refreshes, blips: each socket closes and another opens
        server.close(socket)
        presence.disconnected(COMPANY, USER)
        await trio.sleep(GRACE / 3)
        socket = server.open("/")
        presence.connected(COMPANY, USER)
    await trio.sleep(5 * GRACE)
    assert [online for _, online in db.writes] == [True] and announced == [True]
    server.close(socket)
    presence.disconnected(COMPANY, USER)
    closed_at = trio.current_time()
    await trio.sleep(2 * GRACE)
    assert [online for _, online in db.writes] == [True, False] and announced == [True, False]
    assert db.writes[-1][0] - closed_at >= GRACE


async def test_a_database_away_delays_the_write_and_it_converges_on_the_latest_state(
        nursery: trio.Nursery, autojump_clock: trio.abc.Clock) -> None:
    presence, db, server, announced = await started(nursery)
    db.down = True
    socket = server.open()
    presence.connected(COMPANY, USER)
    await trio.sleep(10)
    server.close(socket)
    presence.disconnected(COMPANY, USER)
    await trio.sleep(GRACE + 10)  # online, then offline, all while the database was away
    assert db.writes == [] and announced == []
    db.down = False
    await trio.sleep(5)
    # the state it came back to: offline, and the database was never told otherwise (nothing to undo)
    assert [online for _, online in db.writes] == [] and announced == []
    assert presence.stats()["online"] == 0
