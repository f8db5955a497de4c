"""SessionActor and SessionManager with in-memory stand-ins for storage and transport (autojump clock)."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio

from actors.session import SessionActor, SessionEnded, SessionManager, SessionPolicy
from gateway.broker import Broker
from gateway.whatsapp import transport as wa

pytestmark = pytest.mark.trio


class FakeStore:
    def __init__(self, *ids: int, status: str = "DISCONNECTED") -> None:
        self.rows = {i: {"id": i, "company_id": 1, "channel": "sandbox", "status": status, "session_data": None,
                         "retries": 0, "last_disconnect_reason": None, "qrcode": ""} for i in ids}
        self.history: dict[int, list[tuple[float, str]]] = {i: [] for i in ids}

    async def load(self, whatsapp_id: int) -> dict[str, Any] | None:
        await trio.lowlevel.checkpoint()
        row = self.rows.get(whatsapp_id)
        return dict(row) if row else None

    async def set_status(self, whatsapp_id: int, status: str, *, disconnect_reason: str | None = None,
                         **fields: Any) -> dict[str, Any]:
        await trio.lowlevel.checkpoint()
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
        await trio.lowlevel.checkpoint()
        self.rows[whatsapp_id]["session_data"] = device

    async def to_restore(self) -> list[dict[str, Any]]:
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

    async def download(self, media): return b""
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
