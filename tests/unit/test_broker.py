"""The in-process broker: per-company delivery, a publisher that never blocks, lagging subscribers cut off;
and the pure parts of the Redis bridge (message encoding, the drop-oldest outbox)."""

from __future__ import annotations

import datetime as dt
import logging

import msgpack
import pytest
import trio
import trio.testing

from gateway.broker import Broker, Event, Lagged
from gateway.redis_bridge import Outbox, RedisBridge, decode_event, encode_event

pytestmark = pytest.mark.trio


def drain(subscription) -> list[Event]:
    events = []
    while (event := subscription.receive_nowait()) is not None:
        events.append(event)
    return events


async def test_delivers_to_the_company_and_to_all_company_subscribers() -> None:
    broker = Broker()
    with broker.subscribe(1) as one, broker.subscribe(2) as two, broker.subscribe(None) as every:
        broker.publish(1, "company-1-ticket", {"action": "update", "id": 10})
        broker.publish(2, "company-2-contact", {"action": "delete", "id": 20})

        assert drain(one) == [Event(1, "company-1-ticket", {"action": "update", "id": 10})]
        assert drain(two) == [Event(2, "company-2-contact", {"action": "delete", "id": 20})]
        assert [e.company_id for e in drain(every)] == [1, 2]
        assert broker.stats() == {"subscribers": 3, "published": 2, "lagged": 0}


async def test_other_companies_get_nothing() -> None:
    broker = Broker()
    with broker.subscribe(2) as other:
        for i in range(10):
            broker.publish(1, "company-1-appMessage", {"i": i})
        assert other.receive_nowait() is None


async def test_receive_waits_for_the_next_event_and_iteration_yields_in_order() -> None:
    broker = Broker()
    got: list[int] = []
    with broker.subscribe(5) as subscription:
        async def consume() -> None:
            async for event in subscription:
                got.append(event.payload["i"])
                if len(got) == 3:
                    return

        async with trio.open_nursery() as nursery:
            nursery.start_soon(consume)
            await trio.testing.wait_all_tasks_blocked()
            for i in range(3):
                broker.publish(5, "company-5-ticket", {"i": i})
    assert got == [0, 1, 2]


async def test_publish_never_blocks_even_when_subscribers_are_full() -> None:
    broker = Broker(queue_size=4)
    with broker.subscribe(1) as stuck, broker.subscribe(None) as stuck_too:
        with trio.testing.assert_no_checkpoints():  # a plain function call: it cannot wait for anybody
            for i in range(10_000):
                broker.publish(1, "company-1-ticket", {"i": i})
        assert broker.published == 10_000
        with pytest.raises(Lagged):
            stuck.receive_nowait()
        with pytest.raises(Lagged):
            stuck_too.receive_nowait()


async def test_a_subscriber_that_stops_reading_is_cut_off_while_100_others_get_every_event(caplog) -> None:
    caplog.set_level(logging.WARNING, logger="zapgate.broker")
    broker = Broker(queue_size=64)
    total = 2_000
    received: list[list[int]] = [[] for _ in range(100)]

    async def reader(index: int, task_status=trio.TASK_STATUS_IGNORED) -> None:
        with broker.subscribe(None if index % 10 == 0 else 3) as subscription:
            task_status.started()
            async for event in subscription:
                received[index].append(event.payload["i"])
                if len(received[index]) == total:
                    return

    with broker.subscribe(3) as slow:
        async with trio.open_nursery() as nursery:
            for index in range(100):
                await nursery.start(reader, index)
            assert broker.subscriber_count() == 101
            for i in range(total):
                broker.publish(3, "company-3-appMessage", {"i": i})
                if i == 9:
                    assert [e.payload["i"] for e in drain(slow)] == list(range(10))  # then it stops reading
                if i % 16 == 15:
                    await trio.testing.wait_all_tasks_blocked()  # the readers keep up, the slow one does not

            with pytest.raises(Lagged):
                await slow.receive()
            with pytest.raises(Lagged):  # and it stays cut off
                slow.receive_nowait()

    assert all(got == list(range(total)) for got in received)
    assert broker.stats()["lagged"] == 1
    assert broker.subscriber_count() == 0
    assert [r.message for r in caplog.records] == ["subscriber lagged and was disconnected"]


async def test_a_cut_off_subscriber_is_woken_with_lagged() -> None:
    broker = Broker()
    with broker.subscribe(1, maxsize=2) as subscription:
        for i in range(3):
            broker.publish(1, "company-1-ticket", {"i": i})
        assert subscription.lagged and len(subscription) == 0
        with pytest.raises(Lagged):
            await subscription.receive()
        assert broker.subscriber_count() == 0


async def test_closing_a_subscription_removes_it() -> None:
    broker = Broker()
    with broker.subscribe(1) as subscription:
        assert broker.subscriber_count() == 1
    assert broker.subscriber_count() == 0
    broker.publish(1, "company-1-ticket", {})
    with pytest.raises(trio.EndOfChannel):
        subscription.receive_nowait()
    assert broker._by_company == {}


async def test_close_wakes_a_waiting_receiver_and_ends_iteration() -> None:
    broker = Broker()
    ended = trio.Event()
    with broker.subscribe(None) as subscription:
        async def consume() -> None:
            async for _ in subscription:
                pass
            ended.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(consume)
            await trio.testing.wait_all_tasks_blocked()
            subscription.close()
        assert ended.is_set()
        assert broker.subscriber_count() == 0


async def test_without_a_running_bridge_stats_have_no_redis_part() -> None:
    broker = Broker()
    RedisBridge(broker, "redis://127.0.0.1:1/0")  # constructed, not running: changes nothing
    broker.publish(1, "company-1-ticket", {})
    assert "redis" not in broker.stats()


# ── the Redis message and the outbox ──

async def test_redis_message_round_trip() -> None:
    event = Event(7, "company-7-ticket", {"action": "update", "ticket": {"id": 3, "tags": ["a"]}, 1: "int key"})
    data = encode_event("node-a", event)
    assert msgpack.unpackb(data, strict_map_key=False) == {"o": "node-a", "c": 7, "n": "company-7-ticket",
                                                            "p": event.payload}
    assert decode_event(data) == ("node-a", event)


async def test_dates_travel_as_iso_strings_and_unknown_objects_are_refused() -> None:
    when = dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.UTC)
    _, event = decode_event(encode_event("n", Event(1, "x", {"at": when, "day": dt.date(2024, 5, 1)})))
    assert event.payload == {"at": "2024-05-01T12:30:00+00:00", "day": "2024-05-01"}
    with pytest.raises(TypeError):
        encode_event("n", Event(1, "x", {"bad": object()}))


@pytest.mark.parametrize("data", [
    b"\xc1", b"not msgpack at all \xff", msgpack.packb([1, 2]), msgpack.packb({"o": "n", "c": 1, "n": "x"}),
    msgpack.packb({"o": "n", "c": "1", "n": "x", "p": {}}), msgpack.packb({"o": "n", "c": True, "n": "x", "p": {}}),
    msgpack.packb({"o": 5, "c": 1, "n": "x", "p": {}}),
])
async def test_foreign_messages_are_rejected(data: bytes) -> None:
    with pytest.raises(ValueError):
        decode_event(data)


async def test_outbox_drops_the_oldest_when_full_and_never_blocks() -> None:
    outbox = Outbox(3)
    with trio.testing.assert_no_checkpoints():
        for i in range(5):
            outbox.put_nowait(Event(1, "e", {"i": i}))
    assert outbox.dropped == 2 and len(outbox) == 3
    assert [e.payload["i"] for e in await outbox.get_batch(2)] == [2, 3]
    assert [e.payload["i"] for e in await outbox.get_batch(10)] == [4]
    assert len(outbox) == 0
