"""The Engine.IO session state machine without a network: polling, upgrade, heartbeat, backpressure."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing

from api.realtime import eio
from api.realtime.config import RealtimeConfig
from api.realtime.eio import ProtocolError
from api.realtime.session import POLLING, WEBSOCKET, EngineError, EngineSession, Handshake


async def collect(results: list[list[eio.Packet]], fn: Callable[[], Awaitable[list[eio.Packet]]]) -> None:
    results.append(await fn())


def make_session(transport: str = POLLING, **limits: object) -> EngineSession:
    config = RealtimeConfig(**limits)  # type: ignore[arg-type]
    return EngineSession("sid1", config, Handshake(query={}, headers={}, remote_addr=None, transport=transport))


async def test_poll_waits_then_takes_everything_queued() -> None:
    session = make_session()
    results: list[list[eio.Packet]] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(collect, results, session.poll)
        await trio.testing.wait_all_tasks_blocked()
        assert session.poll_pending and results == []
        assert session.send_nowait([eio.message("a"), eio.message(b"b")])
        assert session.send_nowait([eio.message("c")])
    assert results == [[eio.message("a"), eio.message(b"b"), eio.message("c")]]
    assert session.queued == 0 and not session.poll_pending


async def test_second_poll_is_refused_and_closes_the_session() -> None:
    session = make_session()
    results: list[list[eio.Packet]] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(collect, results, session.poll)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(EngineError) as refused:
            await session.poll()
        assert (refused.value.code, refused.value.status) == (3, 400)
    assert results == [[eio.CLOSE]]
    assert session.closed and session.close_reason == "poll overlap"
    assert await session.poll() == [eio.CLOSE]


async def test_lagging_client_is_closed_instead_of_queueing_more() -> None:
    session = make_session(outgoing_packets=3, outgoing_bytes=100)
    assert session.send_nowait([eio.message("a"), eio.message("b")])
    assert not session.send_nowait([eio.message("c"), eio.message("d")])  # 4 > 3 packets: all or nothing
    assert session.closed and session.close_reason == "lagged" and session.queued == 0
    assert not session.send_nowait([eio.message("e")])

    by_weight = make_session(outgoing_packets=100, outgoing_bytes=100)
    assert by_weight.send_nowait([eio.message("x" * 90)])
    assert not by_weight.send_nowait([eio.message("x" * 20)])
    assert by_weight.close_reason == "lagged"


async def test_post_delivers_messages_and_acts_on_control_packets() -> None:
    session = make_session()
    await session.post("4hello\x1e3\x1ebAQI=\x1e6")
    assert session.inbound_receive.receive_nowait() == "hello"
    assert session.inbound_receive.receive_nowait() == b"\x01\x02"
    with pytest.raises(trio.WouldBlock):
        session.inbound_receive.receive_nowait()
    await session.post("1")
    assert session.closed and session.close_reason == "client close"
    with pytest.raises(EngineError) as gone:
        await session.post("4late")
    assert gone.value.code == 1


@pytest.mark.parametrize(("body", "reason"), [("x", "parse error"), ("2", "parse error"), ("0", "parse error"),
                                              ("5", "parse error"), ("4ok\x1e", "parse error")])
async def test_post_with_bad_packets_closes(body: str, reason: str) -> None:
    session = make_session()
    with pytest.raises(ProtocolError):
        await session.post(body)
    assert session.close_reason == reason


async def test_post_waits_while_the_inbound_channel_is_full() -> None:
    session = make_session(inbound_messages=1)
    done = trio.Event()

    async def post() -> None:
        await session.post("4one\x1e4two")
        done.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(post)
        await trio.testing.wait_all_tasks_blocked()
        assert not done.is_set()  # backpressure on the client's own POST, nobody else's
        assert session.inbound_receive.receive_nowait() == "one"
        assert await session.inbound_receive.receive() == "two"
    assert done.is_set()


async def test_close_releases_a_post_waiting_on_a_full_channel() -> None:
    session = make_session(inbound_messages=1)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(session.post, "4one\x1e4two")
        await trio.testing.wait_all_tasks_blocked()
        session.close("server shutting down")


async def test_polling_rules_on_a_websocket_session() -> None:
    session = make_session(WEBSOCKET)
    with pytest.raises(EngineError):
        await session.poll()
    with pytest.raises(EngineError):
        await session.post("4x")
    with pytest.raises(EngineError):
        session.begin_upgrade()


async def test_upgrade_answers_the_pending_poll_with_noop_then_moves_to_websocket() -> None:
    session = make_session()
    results: list[list[eio.Packet]] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(collect, results, session.poll)
        await trio.testing.wait_all_tasks_blocked()
        session.begin_upgrade()
        with pytest.raises(EngineError):  # one probe at a time
            session.begin_upgrade()
        session.probe_answered()
    assert results == [[eio.NOOP]]
    session.send_nowait([eio.message("queued during the upgrade")])
    session.complete_upgrade()
    assert session.transport == WEBSOCKET
    with pytest.raises(EngineError):
        await session.poll()
    assert await session.wait_outgoing() == [eio.message("queued during the upgrade")]


async def test_upgrade_completing_while_a_poll_waits_ends_it_with_noop() -> None:
    session = make_session()
    session.begin_upgrade()
    results: list[list[eio.Packet]] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(collect, results, session.poll)
        await trio.testing.wait_all_tasks_blocked()
        session.send_nowait([eio.message("for the websocket")])  # wakes the poll, which must not take it
        session.complete_upgrade()
    assert results == [[eio.NOOP]]
    assert await session.wait_outgoing() == [eio.message("for the websocket")]


async def test_aborted_upgrade_keeps_polling() -> None:
    session = make_session()
    session.begin_upgrade()
    session.probe_answered()
    session.abort_upgrade()
    assert session.transport == POLLING and not session.upgrading
    session.send_nowait([eio.message("still polling")])
    assert await session.poll() == [eio.message("still polling")]
    with pytest.raises(EngineError):
        session.complete_upgrade()
    session.begin_upgrade()  # a later probe may try again


async def test_wait_outgoing_returns_empty_once_closed() -> None:
    session = make_session(WEBSOCKET)
    async with trio.open_nursery() as nursery:
        results: list[list[eio.Packet]] = []
        nursery.start_soon(collect, results, session.wait_outgoing)
        await trio.testing.wait_all_tasks_blocked()
        session.close("server shutting down")
    assert results == [[]]


async def test_heartbeat_closes_a_client_that_does_not_answer(autojump_clock: trio.abc.Clock) -> None:
    session = make_session(ping_interval=25, ping_timeout=20)
    start = trio.current_time()
    await session.run_heartbeat()
    assert session.close_reason == "ping timeout"
    assert trio.current_time() - start == pytest.approx(45)


async def test_heartbeat_keeps_a_client_that_answers(autojump_clock: trio.abc.Clock) -> None:
    session = make_session(ping_interval=25, ping_timeout=20)

    async def client() -> None:
        for _ in range(5):
            assert await session.poll() == [eio.PING]
            await trio.sleep(15)  # late, but within the timeout
            await session.post("3")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(session.run_heartbeat)
        await client()
        assert not session.closed
        nursery.cancel_scope.cancel()


async def test_heartbeat_ping_on_a_full_queue_is_lagging(autojump_clock: trio.abc.Clock) -> None:
    session = make_session(outgoing_packets=1)
    session.send_nowait([eio.message("never read")])
    await session.run_heartbeat()
    assert session.close_reason == "lagged"


def test_close_callbacks_run_once_and_can_be_taken_back() -> None:
    session = make_session()
    calls: list[str] = []
    forget_a = session.when_closed(lambda: calls.append("a"))
    session.when_closed(lambda: calls.append("b"))
    forget_a()
    forget_a()  # taking it back twice is harmless
    for _ in range(100):  # a websocket that ends before its session takes its callback back: nothing piles up
        session.when_closed(lambda: calls.append("never"))()
    session.close("client close")
    session.close("again")
    assert calls == ["b"]
    session.when_closed(lambda: calls.append("late"))  # already closed: at once
    assert calls == ["b", "late"]


def test_a_sink_takes_queued_packets_then_every_send() -> None:
    session = make_session(WEBSOCKET)
    session.send_nowait([eio.PING])
    taken: list[eio.Packet] = []

    def sink(packets: object) -> bool:
        taken.extend(packets)  # type: ignore[arg-type]
        return len(taken) < 3

    session.attach_sink(sink)
    assert taken == [eio.PING] and session.queued == 0
    assert session.send_nowait([eio.NOOP]) is True
    assert session.send_nowait([eio.PONG]) is False  # the sink refused (it closes the session itself)
    assert taken == [eio.PING, eio.NOOP, eio.PONG]
