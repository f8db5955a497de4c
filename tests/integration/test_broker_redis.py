"""The Redis bridge between processes: two brokers with their own bridges (two "nodes") in one trio run.

Every test uses its own channel, so parallel runs on one Redis do not see each other. The outage test
runs a private `redis-server` it can kill and restart.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
import trio
import trio.lowlevel

from gateway.broker import Broker, Event, Subscription
from gateway.redis_bridge import RedisBridge
from tests.conftest import redis_url_or_skip
from tests.ports import free_port

pytestmark = [pytest.mark.trio, pytest.mark.redis]

TIMEOUT = 10


@pytest.fixture
def redis_url() -> str:
    return redis_url_or_skip()


@pytest.fixture
def channel() -> str:
    return f"zapgate:test:{uuid.uuid4().hex}"


async def start_node(nursery: trio.Nursery, url: str, channel: str, **options: float) -> tuple[Broker, RedisBridge]:
    broker = Broker()
    bridge = RedisBridge(broker, url, channel=channel, reconnect_initial=0.05, reconnect_max=0.3, **options)
    await nursery.start(bridge.run)
    return broker, bridge


async def wait_until(condition: Callable[[], bool]) -> None:
    while not condition():
        await trio.sleep(0.02)


def names(events: list[Event]) -> list[str]:
    return [event.name for event in events]


async def receive_until(subscription: Subscription, name: str) -> list[Event]:
    """Everything the subscription gets up to and including the event called `name`."""
    events = []
    while True:
        event = await subscription.receive()
        events.append(event)
        if event.name == name:
            return events


async def test_an_event_reaches_each_node_exactly_once(redis_url: str, channel: str, nursery: trio.Nursery) -> None:
    with trio.fail_after(TIMEOUT):
        a, bridge_a = await start_node(nursery, redis_url, channel)
        b, bridge_b = await start_node(nursery, redis_url, channel)
        assert bridge_a.node_id != bridge_b.node_id
        assert bridge_a.stats()["connected"] and bridge_b.stats()["connected"]
        with a.subscribe(7) as on_a, b.subscribe(7) as on_b, b.subscribe(None) as all_on_b, \
                b.subscribe(8) as other_company_on_b:
            a.publish(7, "x", {"action": "create", "id": 1})
            assert names(await receive_until(on_b, "x")) == ["x"]
            assert names(await receive_until(all_on_b, "x")) == ["x"]
            # B answers only after it got X, so Redis carries A's X before B's marker: when A has the
            # marker, A's listener has seen its own X come back from Redis, and must not have delivered it
            b.publish(7, "marker", {})
            assert names(await receive_until(on_a, "marker")) == ["x", "marker"]
            assert names(await receive_until(on_b, "marker")) == ["marker"]
            assert names(await receive_until(all_on_b, "marker")) == ["marker"]
            # and once more round the loop, so B has seen its own marker come back too
            a.publish(7, "final", {})
            await receive_until(on_b, "final")
            assert names(await receive_until(on_a, "final")) == ["final"]
            assert on_a.receive_nowait() is None and on_b.receive_nowait() is None
            assert other_company_on_b.receive_nowait() is None
        # a batch is counted when its pipeline's reply is back in trio, which may be after the receiver had it
        await wait_until(lambda: (bridge_a.stats()["published_remote"], bridge_b.stats()["published_remote"]) == (2, 1))
        assert bridge_a.stats()["received_remote"] == 1 and bridge_b.stats()["received_remote"] == 2
        assert bridge_a.stats()["dropped"] == bridge_b.stats()["dropped"] == 0
        assert a.stats()["redis"]["connected"] is True


async def test_many_events_keep_each_publishers_order(redis_url: str, channel: str, nursery: trio.Nursery) -> None:
    count = 2_000
    with trio.fail_after(TIMEOUT):
        a, bridge_a = await start_node(nursery, redis_url, channel)
        b, bridge_b = await start_node(nursery, redis_url, channel)
        with a.subscribe(1, maxsize=3 * count) as on_a, b.subscribe(1, maxsize=3 * count) as on_b:
            for i in range(count):  # interleaved publishers, in bursts without a checkpoint
                a.publish(1, "from-a", {"i": i})
                b.publish(1, "from-b", {"i": i})
                if i % 100 == 99:
                    await trio.lowlevel.checkpoint()
            for subscription in (on_a, on_b):
                seen: dict[str, list[int]] = {"from-a": [], "from-b": []}
                while len(seen["from-a"]) + len(seen["from-b"]) < 2 * count:
                    event = await subscription.receive()
                    seen[event.name].append(event.payload["i"])
                assert seen == {"from-a": list(range(count)), "from-b": list(range(count))}
        assert bridge_a.stats()["dropped"] == bridge_b.stats()["dropped"] == 0
        assert bridge_a.stats()["received_remote"] == bridge_b.stats()["received_remote"] == count


async def test_foreign_messages_on_the_channel_are_ignored(redis_url: str, channel: str,
                                                           nursery: trio.Nursery) -> None:
    import redis

    with trio.fail_after(TIMEOUT):
        a, bridge_a = await start_node(nursery, redis_url, channel)
        b, _ = await start_node(nursery, redis_url, channel)
        with a.subscribe(1) as on_a:
            with redis.Redis.from_url(redis_url) as client:
                client.publish(channel, b"hello, not msgpack \xff")
            b.publish(1, "after", {})
            assert names(await receive_until(on_a, "after")) == ["after"]
        assert bridge_a.stats()["malformed"] == 1


# ── losing Redis ──

class PrivateRedis:
    """A redis-server of the test's own, on a fixed port, that the test can kill and start again."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.process: trio.Process | None = None

    async def start(self) -> None:
        self.process = await trio.lowlevel.open_process(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while True:
            try:
                stream = await trio.open_tcp_stream("127.0.0.1", self.port)
            except OSError:
                assert self.process.poll() is None, "redis-server exited at start"
                await trio.sleep(0.02)
            else:
                await stream.aclose()
                return

    async def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            await self.process.wait()
            self.process = None


@pytest.fixture
async def private_redis(redis_url: str) -> AsyncIterator[PrivateRedis]:
    if shutil.which("redis-server") is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("redis-server must be installed when CI=true")
        pytest.skip("redis-server is not installed")
    server = PrivateRedis(free_port())
    try:
        yield server
    finally:
        with trio.CancelScope(shield=True):
            await server.kill()


async def test_losing_redis_keeps_local_delivery_and_recovers(private_redis: PrivateRedis, channel: str,
                                                              nursery: trio.Nursery, caplog) -> None:
    caplog.set_level(logging.INFO, logger="zapgate.broker")
    with trio.fail_after(20):
        await private_redis.start()
        a, bridge_a = await start_node(nursery, private_redis.url, channel)
        b, bridge_b = await start_node(nursery, private_redis.url, channel)
        with a.subscribe(1) as on_a, b.subscribe(1) as on_b:
            a.publish(1, "before", {})
            assert names(await receive_until(on_b, "before")) == ["before"]
            assert names(await receive_until(on_a, "before")) == ["before"]

            await private_redis.kill()
            await wait_until(lambda: not bridge_a.stats()["connected"] and not bridge_b.stats()["connected"])
            for i in range(20):  # local delivery goes on; nothing waits for Redis
                a.publish(1, "during", {"i": i})
            assert [on_a.receive_nowait() for _ in range(20)] == [Event(1, "during", {"i": i}) for i in range(20)]
            assert bridge_a.stats()["dropped"] == 20  # not queued for a late replay
            await trio.sleep(1.0)  # several reconnect attempts fail meanwhile

            await private_redis.start()
            await wait_until(lambda: bridge_a.stats()["connected"] and bridge_b.stats()["connected"])
            a.publish(1, "after-a", {})
            b.publish(1, "after-b", {})
            # each node: its own event at once, the other's through Redis; nothing from the outage, no repeats
            assert names(await receive_until(on_b, "after-a")) == ["after-b", "after-a"]
            assert names(await receive_until(on_a, "after-b")) == ["after-a", "after-b"]
            b.publish(1, "last", {})
            await receive_until(on_a, "last")
            await receive_until(on_b, "last")
            assert on_a.receive_nowait() is None and on_b.receive_nowait() is None
        assert bridge_a.stats()["reconnects"] == bridge_b.stats()["reconnects"] == 1

    lost = [r for r in caplog.records if r.message.startswith("Redis unreachable")]
    back = [r for r in caplog.records if r.message.startswith("Redis is back")]
    assert len(lost) == 2 and len(back) == 2  # once per node, not once per event or per failed attempt


async def test_starting_without_redis_degrades_then_connects(private_redis: PrivateRedis, channel: str,
                                                             nursery: trio.Nursery) -> None:
    with trio.fail_after(TIMEOUT):
        a, bridge_a = await start_node(nursery, private_redis.url, channel)  # nothing listens yet
        assert not bridge_a.stats()["connected"]
        with a.subscribe(1) as on_a:
            a.publish(1, "local", {})
            assert names([on_a.receive_nowait()]) == ["local"]
        await private_redis.start()
        b, _ = await start_node(nursery, private_redis.url, channel)
        await wait_until(lambda: bridge_a.stats()["connected"])
        with b.subscribe(1) as on_b:
            a.publish(1, "remote", {})
            assert names(await receive_until(on_b, "remote")) == ["remote"]


# ── stopping ──

@pytest.mark.parametrize("reachable", [True, False], ids=["connected", "redis-down"])
async def test_cancelled_bridge_returns_promptly_and_leaves_no_thread(redis_url: str, channel: str,
                                                                      reachable: bool) -> None:
    url = redis_url if reachable else f"redis://127.0.0.1:{free_port()}/0"
    threads_before = set(threading.enumerate())
    count_before = threading.active_count()
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            a, bridge = await start_node(nursery, url, channel)
            assert bridge.stats()["connected"] is reachable
            assert threading.active_count() == count_before + 2
            with a.subscribe(1) as on_a:
                for i in range(500):  # batches in flight while it stops
                    a.publish(1, "e", {"i": i})
                await trio.sleep(0.05)
                assert on_a.receive_nowait() is not None
            started = time.monotonic()
            nursery.cancel_scope.cancel()
        elapsed = time.monotonic() - started
    assert elapsed < 2.0
    assert set(threading.enumerate()) - threads_before == set()
    assert threading.active_count() <= count_before
    assert "redis" not in a.stats()  # detached
    a.publish(1, "after", {})  # and publishing still works, locally
