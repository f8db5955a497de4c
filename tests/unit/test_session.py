"""SessionActor and SessionManager with in-memory stand-ins for storage and transport (autojump clock)."""

from __future__ import annotations

import datetime as dt
import functools
import itertools
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio

from actors.session import SessionActor, SessionEnded, SessionManager, SessionPolicy, _DueStatus
from gateway.broker import Broker
from gateway.whatsapp import transport as wa
from storage.errors import Unavailable

pytestmark = pytest.mark.trio


class FakeStore:
    """The connection rows in memory; while `down`, every call raises Unavailable (as storage.db does)."""

    def __init__(self, *ids: int, status: str = "DISCONNECTED") -> None:
        self.rows = {i: {"id": i, "company_id": 1, "channel": "sandbox", "status": status, "session_data": None,
                         "retries": 0, "last_disconnect_reason": None, "qrcode": ""} for i in ids}
        self.history: dict[int, list[tuple[float, str]]] = {i: [] for i in ids}
        self.down = False
        self.refused = 0

    async def _call(self) -> None:
        await trio.lowlevel.checkpoint()
        if self.down:
            self.refused += 1
            raise Unavailable("connection refused: is the server running on host 127.0.0.1 port 5432?")

    async def load(self, whatsapp_id: int) -> dict[str, Any] | None:
        await self._call()
        row = self.rows.get(whatsapp_id)
        return dict(row) if row else None

    async def set_status(self, whatsapp_id: int, status: str, *, disconnect_reason: str | None = None,
                         **fields: Any) -> dict[str, Any]:
        await self._call()
        row = self.rows[whatsapp_id]
        row["status"] = status
        if disconnect_reason is not None:
            row["last_disconnect_reason"] = disconnect_reason
        for key in ("qrcode", "retries", "number"):
            if fields.get(key) is not None:
                row[key] = fields[key]
        self.history[whatsapp_id].append((trio.current_time(), status))
        return dict(row)

    async def save_device(self, whatsapp_id: int, device: dict[str, Any] | None) -> None:
        await self._call()
        self.rows[whatsapp_id]["session_data"] = device

    async def to_restore(self) -> list[dict[str, Any]]:
        await self._call()
        return [row for row in self.rows.values() if row["status"] in ("CONNECTED", "OPENING")]


Script = Callable[["FakeTransport", trio.MemorySendChannel[wa.Event]], Awaitable[None]]


class FakeTransport:
    """Runs `script` as its connection; records sends."""

    runs: dict[int, int] = {}

    def __init__(self, row: dict[str, Any], on_device: Callable[[dict | None], Awaitable[None]], script: Script):
        self.row = row
        self.on_device = on_device
        self.script = script
        self.sent: list[wa.Command] = []
        self.logged_out = trio.Event()
        FakeTransport.runs[row["id"]] = FakeTransport.runs.get(row["id"], 0) + 1

    async def run(self, events, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await self.script(self, events)

    async def send(self, command: wa.Command) -> wa.Sent:
        self.sent.append(command)
        return wa.Sent(f"ID{len(self.sent)}", dt.datetime.now(dt.UTC))

    async def download(self, media: wa.MediaRef) -> bytes:
        gate = self.row.get("download_gate")
        if gate is not None:
            await gate.wait()
        return b"media:" + media.key.encode()

    async def mark_read(self, chat, ids, sender=None): return None
    async def set_presence(self, chat, presence): return None

    async def request_pairing_code(self, phone: str) -> str:
        return "ABCD-EFGH"

    async def logout(self) -> None:
        await self.on_device(None)
        self.logged_out.set()


async def connect_and_stay(transport: FakeTransport, events) -> None:
    await events.send(wa.Connected("5511999990000@s.whatsapp.net", "Shop"))
    await transport.logged_out.wait()


async def always_fail(transport: FakeTransport, events) -> None:
    await trio.sleep(0.5)
    raise wa.TransportError("failed to dial whatsapp web websocket")


async def qr_forever(transport: FakeTransport, events) -> None:
    index = 0
    while True:
        index += 1
        await events.send(wa.QrCode(f"2@code{index}", index))
        await trio.sleep(20)


def factory(scripts: dict[int, Script]):
    def make(row, on_device):
        return FakeTransport(row, on_device, scripts[row["id"]])
    return make


def bounded(test: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """A deadline in (virtual) time: a test that hangs fails instead of spinning the autojump clock."""

    @functools.wraps(test)
    async def run(*args: Any, **kwargs: Any) -> None:
        with trio.fail_after(600):
            await test(*args, **kwargs)

    return run


def policy(**overrides: Any) -> SessionPolicy:
    values = {"max_qr_codes": 3, "reconnect_initial": 1.0, "reconnect_max": 30.0, "failure_budget": 4,
              "failure_window": 600.0}
    values.update(overrides)
    return SessionPolicy(**values)


async def test_connects_and_publishes_each_transition(autojump_clock) -> None:
    store, broker = FakeStore(1), Broker()
    actor = SessionActor(1, 1, store=store, broker=broker, transport_factory=factory({1: connect_and_stay}),
                         policy=policy())
    with broker.subscribe(1) as events:
        async with trio.open_nursery() as nursery:
            handle = await nursery.start(actor.run)
            await trio.sleep(1)
            assert handle.status == "CONNECTED"
            sent = await handle.send(wa.SendText("5511888@s.whatsapp.net", "hello"))
            assert sent.id == "ID1"
            handle.cancel()
        names = []
        while (event := events.receive_nowait()) is not None:
            names.append((event.name, event.payload["session"]["status"]))
    assert names == [("company-1-whatsappSession", "OPENING"), ("company-1-whatsappSession", "CONNECTED")]
    assert store.rows[1]["number"] == "5511999990000"


async def test_failing_transport_backs_off_then_gives_up_with_the_reason_while_others_work(autojump_clock) -> None:
    store, broker = FakeStore(1, 2), Broker()
    manager = SessionManager(store=store, broker=broker, transport_factory=factory({1: always_fail,
                                                                                   2: connect_and_stay}),
                             policy=policy(), restore_on_start=False)
    FakeTransport.runs = {}
    async with trio.open_nursery() as nursery:
        await nursery.start(manager.run)
        await manager.start(1, 1)
        healthy = await manager.start(2, 1)
        await trio.sleep(120)
        assert manager.lookup(1) is None  # gave up: the actor ended
        assert healthy.status == "CONNECTED" and manager.lookup(2) is healthy
        assert (await healthy.send(wa.SendText("x@s.whatsapp.net", "still here"))).id == "ID1"
        nursery.cancel_scope.cancel()

    assert FakeTransport.runs[1] == 5  # the first attempt and 4 retries (budget 4), no more
    assert FakeTransport.runs[2] == 1
    row = store.rows[1]
    assert row["status"] == "DISCONNECTED"
    assert "gave up after 5 failed attempts" in row["last_disconnect_reason"]
    assert "failed to dial" in row["last_disconnect_reason"]
    # Backoff: the OPENING retries come at growing intervals (1, 2, 4, 8 s ± 20 % jitter, plus the 0.5 s attempt)
    retries = [t for t, status in store.history[1] if status == "OPENING"]
    gaps = [b - a for a, b in zip(retries[1::2], retries[3::2], strict=False)]
    assert len(gaps) >= 3 and all(later > earlier for earlier, later in itertools.pairwise(gaps)), gaps


async def test_qr_codes_are_capped_then_timeout(autojump_clock) -> None:
    store, broker = FakeStore(1), Broker()
    actor = SessionActor(1, 1, store=store, broker=broker, transport_factory=factory({1: qr_forever}),
                         policy=policy(max_qr_codes=3))
    async with trio.open_nursery() as nursery:
        await nursery.start(actor.run)
    statuses = [status for _, status in store.history[1]]
    assert statuses == ["OPENING", "qrcode", "qrcode", "qrcode", "TIMEOUT"]
    assert store.rows[1]["last_disconnect_reason"] == "no scan after 3 QR codes"
    assert trio.current_time() >= 60  # three codes, 20 s apart


async def test_disconnect_event_reconnects_by_itself(autojump_clock) -> None:
    calls = {"n": 0}

    async def drop_once(transport: FakeTransport, events) -> None:
        calls["n"] += 1
        await events.send(wa.Connected("551100@s.whatsapp.net"))
        if calls["n"] == 1:
            await trio.sleep(5)
            await events.send(wa.Disconnected("stream error"))
        await transport.logged_out.wait()

    store, broker = FakeStore(1), Broker()
    actor = SessionActor(1, 1, store=store, broker=broker, transport_factory=factory({1: drop_once}),
                         policy=policy())
    async with trio.open_nursery() as nursery:
        handle = await nursery.start(actor.run)
        await trio.sleep(30)
        assert handle.status == "CONNECTED" and calls["n"] == 2
        handle.cancel()
    assert [s for _, s in store.history[1]] == ["OPENING", "CONNECTED", "OPENING", "OPENING", "CONNECTED"]
    assert store.rows[1]["last_disconnect_reason"] == "stream error"


async def test_logged_out_clears_the_device_and_ends(autojump_clock) -> None:
    async def kicked(transport: FakeTransport, events) -> None:
        await events.send(wa.Connected("551100@s.whatsapp.net"))
        await trio.sleep(3)
        await events.send(wa.LoggedOut("banned by WhatsApp", banned=True))
        await trio.sleep_forever()

    store, broker = FakeStore(1), Broker()
    store.rows[1]["session_data"] = {"jid": "551100@s.whatsapp.net"}
    actor = SessionActor(1, 1, store=store, broker=broker, transport_factory=factory({1: kicked}), policy=policy())
    async with trio.open_nursery() as nursery:
        await nursery.start(actor.run)
    assert store.rows[1]["status"] == "DISCONNECTED"
    assert store.rows[1]["session_data"] is None
    assert store.rows[1]["last_disconnect_reason"] == "banned by WhatsApp"


async def test_logout_command_and_commands_after_the_end(autojump_clock) -> None:
    store, broker = FakeStore(1), Broker()
    actor = SessionActor(1, 1, store=store, broker=broker, transport_factory=factory({1: connect_and_stay}),
                         policy=policy())
    async with trio.open_nursery() as nursery:
        handle = await nursery.start(actor.run)
        await trio.sleep(1)
        await handle.logout()
        await handle.wait_ended()
        with pytest.raises(SessionEnded):
            await handle.send(wa.SendText("x@s.whatsapp.net", "too late"))
    assert store.rows[1]["status"] == "DISCONNECTED"


async def test_send_while_reconnecting_is_refused_not_stuck(autojump_clock) -> None:
    store, broker = FakeStore(1), Broker()
    actor = SessionActor(1, 1, store=store, broker=broker, transport_factory=factory({1: always_fail}),
                         policy=policy(failure_budget=100))
    async with trio.open_nursery() as nursery:
        handle = await nursery.start(actor.run)
        await trio.sleep(2)
        with pytest.raises(wa.NotConnected):
            await handle.send(wa.SendText("x@s.whatsapp.net", "hi"))
        handle.cancel()


async def test_manager_restores_connected_sessions_and_stop_then_start(autojump_clock) -> None:
    store, broker = FakeStore(1, 2), Broker()
    store.rows[1]["status"] = "CONNECTED"
    manager = SessionManager(store=store, broker=broker, transport_factory=factory({1: connect_and_stay,
                                                                                   2: connect_and_stay}),
                             policy=policy())
    async with trio.open_nursery() as nursery:
        await nursery.start(manager.run)
        await trio.sleep(1)
        assert manager.lookup(1) is not None and manager.lookup(2) is None
        await manager.stop(1)
        assert manager.lookup(1) is None
        again = await manager.restart(1, 1)
        await trio.sleep(1)
        assert again.status == "CONNECTED" and manager.lookup(1) is again
        assert manager.stats()["running"] == 1
        nursery.cancel_scope.cancel()


async def test_transport_pairing_timeout_ends_in_timeout(autojump_clock) -> None:
    async def whatsmeow_gives_up(transport: FakeTransport, events) -> None:
        for index in range(1, 7):
            await events.send(wa.QrCode(f"2@c{index}", index))
            await trio.sleep(20)
        raise wa.PairingTimeout("the QR code was not scanned in time")

    store, broker = FakeStore(1), Broker()
    actor = SessionActor(1, 1, store=store, broker=broker, transport_factory=factory({1: whatsmeow_gives_up}),
                         policy=policy(max_qr_codes=6))
    async with trio.open_nursery() as nursery:
        await nursery.start(actor.run)
    assert store.rows[1]["status"] == "TIMEOUT"
    assert store.rows[1]["last_disconnect_reason"] == "the QR code was not scanned in time"
    assert [s for _, s in store.history[1]].count("OPENING") == 1  # not retried


# ─── the database away (issue 22, item 6) ───────────────────────────────────────────────

def inbound_message(index: int) -> wa.InboundMessage:
    return wa.InboundMessage(id=f"IN{index}", chat="5511777@s.whatsapp.net", sender="5511777@s.whatsapp.net",
                             kind=wa.MessageKind.TEXT, timestamp=dt.datetime.now(dt.UTC), body=f"m{index}")


@bounded
async def test_a_database_outage_with_a_network_blip_is_ridden_out(autojump_clock) -> None:
    """30 s without the database, a disconnect in the middle: no crash, no failure budget spent on the
    database, inbound events keep flowing, and the row ends CONNECTED once the database is back."""
    runs = {"n": 0}

    async def blip_then_talk(transport: FakeTransport, events) -> None:
        runs["n"] += 1
        await trio.sleep(2)
        await events.send(wa.Connected("5511999990000@s.whatsapp.net", "Shop"))
        if runs["n"] == 1:
            await trio.sleep(3)  # t≈5: the network blips, the database is away since t=3
            await events.send(wa.Disconnected("stream error"))
        for index in range(3):
            await trio.sleep(1)
            await events.send(inbound_message(index))
        await transport.logged_out.wait()

    received: list[wa.Event] = []

    async def sink(company_id: int, whatsapp_id: int, event: wa.Event) -> None:
        received.append(event)

    store, broker = FakeStore(1), Broker()
    manager = SessionManager(store=store, broker=broker, transport_factory=factory({1: blip_then_talk}),
                             inbound=sink, policy=policy(failure_budget=1), restore_on_start=False)
    with broker.subscribe(1) as published:
        async with trio.open_nursery() as nursery:
            await nursery.start(manager.run)
            handle = await manager.start(1, 1)
            await trio.sleep(3)
            assert store.rows[1]["status"] == "CONNECTED"
            store.down = True  # t=3 → t=33
            await trio.sleep(17)
            # t=20: the session reconnected by itself and serves its connection; the row could not follow
            assert manager.lookup(1) is handle and handle.status == "CONNECTED" and handle.writes_due
            assert runs["n"] == 2
            assert [e.id for e in received if isinstance(e, wa.InboundMessage)] == ["IN0", "IN1", "IN2"]
            assert (await handle.send(wa.SendText("5511777@s.whatsapp.net", "during the outage"))).id == "ID1"
            assert store.rows[1]["status"] == "CONNECTED" and store.rows[1]["retries"] == 0  # still the old row
            assert manager.stats()["status_writes_waiting"] == 1
            await trio.sleep(13)
            store.down = False  # t=33: 30 s without the database
            await trio.sleep(15)  # the retries back off to at most 10 s (± 20 %)
            assert not handle.writes_due and manager.lookup(1) is handle
            nursery.cancel_scope.cancel()
        statuses = []
        while (event := published.receive_nowait()) is not None:
            statuses.append(event.payload["session"]["status"])

    assert store.refused >= 3  # it kept asking during the outage
    row = store.rows[1]
    # the latest status won, merged with what the ones before it changed (the blip's reason)
    assert (row["status"], row["retries"], row["number"]) == ("CONNECTED", 0, "5511999990000")
    assert row["last_disconnect_reason"] == "stream error"
    assert statuses[-1] == "CONNECTED"
    assert store.history[1][-1][0] >= 33  # written after the database came back
    # one blip, within a budget of one: the database's refusals were not counted against it
    assert handle._actor._failures == []  # cleared by the reconnect; none from the database


@bounded
async def test_the_connection_row_is_loaded_again_until_the_database_answers(autojump_clock) -> None:
    store, broker = FakeStore(1), Broker()
    store.down = True
    FakeTransport.runs = {}
    actor = SessionActor(1, 1, store=store, broker=broker, transport_factory=factory({1: connect_and_stay}),
                         policy=policy(failure_budget=0))
    async with trio.open_nursery() as nursery:
        handle = await nursery.start(actor.run)
        await trio.sleep(20)
        assert FakeTransport.runs == {} and handle.status == "OPENING"
        with pytest.raises(wa.NotConnected):  # answered meanwhile, not stuck
            await handle.send(wa.SendText("x@s.whatsapp.net", "hi"))
        store.down = False
        await trio.sleep(12)
        assert handle.status == "CONNECTED" and store.rows[1]["status"] == "CONNECTED"
        handle.cancel()
    assert FakeTransport.runs == {1: 1} and store.refused >= 3


@bounded
async def test_an_inbound_event_the_sink_could_not_take_is_offered_again(autojump_clock) -> None:
    async def one_message(transport: FakeTransport, events) -> None:
        await events.send(wa.Connected("551100@s.whatsapp.net"))
        await events.send(inbound_message(1))
        await events.send(inbound_message(2))
        await transport.logged_out.wait()

    refusals = {"left": 3}
    taken: list[str] = []

    async def flaky_sink(company_id: int, whatsapp_id: int, event: wa.Event) -> None:
        if isinstance(event, wa.InboundMessage):
            if refusals["left"]:
                refusals["left"] -= 1
                raise ExceptionGroup("intake", [Unavailable("server closed the connection unexpectedly")])
            taken.append(event.id)

    store, broker = FakeStore(1), Broker()
    actor = SessionActor(1, 1, store=store, broker=broker, transport_factory=factory({1: one_message}),
                         inbound=flaky_sink, policy=policy(failure_budget=0))
    async with trio.open_nursery() as nursery:
        handle = await nursery.start(actor.run)
        await trio.sleep(30)
        assert taken == ["IN1", "IN2"]  # each once, in order
        assert handle.status == "CONNECTED" and actor._failures == []
        handle.cancel()


@bounded
async def test_a_session_that_ends_during_an_outage_writes_its_last_status_when_it_is_back(autojump_clock) -> None:
    async def kicked(transport: FakeTransport, events) -> None:
        await events.send(wa.Connected("551100@s.whatsapp.net"))
        await trio.sleep(5)
        await events.send(wa.LoggedOut("logged out from the phone"))
        await trio.sleep_forever()

    store, broker = FakeStore(1), Broker()
    actor = SessionActor(1, 1, store=store, broker=broker, transport_factory=factory({1: kicked}), policy=policy())
    async with trio.open_nursery() as nursery:
        handle = await nursery.start(actor.run)
        await trio.sleep(1)
        store.down = True
        await trio.sleep(20)
        assert handle.status == "DISCONNECTED" and store.rows[1]["status"] == "CONNECTED"
        with pytest.raises(wa.NotConnected):  # still answering while it waits
            await handle.send(wa.SendText("x@s.whatsapp.net", "hi"))
        store.down = False
        with trio.fail_after(15):
            await handle.wait_ended()
    assert store.rows[1]["status"] == "DISCONNECTED" and store.rows[1]["session_data"] is None
    assert store.rows[1]["last_disconnect_reason"] == "logged out from the phone"


async def test_a_status_merged_over_one_never_written_does_what_both_would_have() -> None:
    qr = _DueStatus("qrcode", {"qrcode": "2@abc", "retries": None})
    pairing = _DueStatus("PAIRING", {"pairing_code": "ABCD", "set_pairing_code": True}).after(qr)
    assert pairing == _DueStatus("PAIRING", {"qrcode": "2@abc", "retries": None, "pairing_code": "ABCD",
                                             "set_pairing_code": True})
    opening = _DueStatus("OPENING", {"qrcode": "", "retries": 2, "disconnect_reason": "blip"}).after(pairing)
    assert opening.fields["pairing_code"] == "ABCD" and opening.fields["qrcode"] == ""
    connected = _DueStatus("CONNECTED", {"qrcode": "", "retries": 0, "number": "5511",
                                         "pairing_code": None, "set_pairing_code": True}).after(opening)
    assert connected == _DueStatus("CONNECTED", {"qrcode": "", "retries": 0, "disconnect_reason": "blip",
                                                 "pairing_code": None, "set_pairing_code": True, "number": "5511"})


# ─── downloads beside the sends (issue 22, item 10) ─────────────────────────────────────

@bounded
async def test_a_slow_download_does_not_hold_up_sends(autojump_clock) -> None:
    store, broker = FakeStore(1), Broker()
    gate = trio.Event()
    store.rows[1]["download_gate"] = gate
    actor = SessionActor(1, 1, store=store, broker=broker, transport_factory=factory({1: connect_and_stay}),
                         policy=policy())
    downloaded: list[bytes] = []

    async def download(key: str) -> None:
        downloaded.append(await handle.download(wa.MediaRef(wa.MessageKind.IMAGE, "image/jpeg", key=key)))

    async with trio.open_nursery() as nursery:
        handle = await nursery.start(actor.run)
        await trio.sleep(1)
        for key in ("a", "b", "c", "d", "e", "f"):  # more than run at once
            nursery.start_soon(download, key)
        await trio.sleep(5)
        with trio.fail_after(1):
            sent = [await handle.send(wa.SendText("x@s.whatsapp.net", f"n{i}")) for i in range(3)]
            await handle.mark_read("x@s.whatsapp.net", ("IN1",))  # nor behind them
        assert [s.id for s in sent] == ["ID1", "ID2", "ID3"] and downloaded == []  # in order, downloads still held
        gate.set()
        await trio.sleep(1)
        assert sorted(downloaded) == [b"media:a", b"media:b", b"media:c", b"media:d", b"media:e", b"media:f"]
        handle.cancel()


@bounded
async def test_downloads_held_when_the_connection_drops_are_answered(autojump_clock) -> None:
    async def drop(transport: FakeTransport, events) -> None:
        await events.send(wa.Connected("551100@s.whatsapp.net"))
        await trio.sleep(5)
        raise wa.TransportError("connection reset")

    store, broker = FakeStore(1), Broker()
    store.rows[1]["download_gate"] = trio.Event()  # never opens
    actor = SessionActor(1, 1, store=store, broker=broker, transport_factory=factory({1: drop}),
                         policy=policy(failure_budget=100))
    errors: list[BaseException] = []

    async def download(key: str) -> None:
        try:
            await handle.download(wa.MediaRef(wa.MessageKind.IMAGE, "image/jpeg", key=key))
        except wa.NotConnected as error:
            errors.append(error)

    async with trio.open_nursery() as nursery:
        handle = await nursery.start(actor.run)
        await trio.sleep(1)
        for key in "abcdefgh":  # 4 running, 4 waiting for their turn
            nursery.start_soon(download, key)
        await trio.sleep(6)
        assert len(errors) == 8
        handle.cancel()
