"""The sandbox WhatsApp network: pairing, inbound, offline queue and redelivery, sends and receipts, faults."""

from __future__ import annotations

import base64
import datetime as dt
import random
import re
from typing import Any

import pytest
import trio
import trio.testing

from gateway.whatsapp import sandbox, sandbox_outbox, sandbox_state
from gateway.whatsapp.sandbox import SandboxError, SandboxNetwork, SandboxTransport
from gateway.whatsapp.transport import (
    Ack,
    Connected,
    DeleteForEveryone,
    EditMessage,
    Event,
    InboundMessage,
    InjectedCrash,
    LoggedOut,
    MessageKind,
    NotConnected,
    PairingCode,
    Presence,
    QrCode,
    Receipt,
    SendFailed,
    SendMedia,
    SendReaction,
    SendText,
    Transport,
    TransportError,
    injected_crash,
    settle,
)

CID = 7
DEVICE = {"jid": "5511912345678@s.whatsapp.net", "number": "5511912345678", "pushName": "Loja"}
CUSTOMER = "5511988887777"
QR = re.compile(r"2@[A-Za-z0-9+/=]+(,[A-Za-z0-9+/=]+){3}")
OUR_ID = re.compile(r"3EB0[0-9A-F]{16}")
PHONE_ID = re.compile(r"[0-9A-F]{32}")


def network(**kwargs: Any) -> SandboxNetwork:
    return SandboxNetwork(rng=random.Random(1), **kwargs)


class Session:
    """Stands in for a SessionActor: the transport's event channel and the persisted device."""

    def __init__(self, net: SandboxNetwork, device: dict[str, Any] | None = None, *, cid: int = CID,
                 buffer: int = 100) -> None:
        self.net = net
        self.cid = cid
        self.device = device
        self.device_changes: list[dict[str, Any] | None] = []
        self.gate: trio.Event | None = None  # set: saving the device waits for it
        self.save_error: Exception | None = None  # set: saving the device fails with it
        self.scope = trio.CancelScope()
        self.transport = net.transport(cid, device, self._on_device_change)
        self.events, self.inbox = trio.open_memory_channel[Event](buffer)
        self.outcome: object = None
        self.done = trio.Event()

    async def _on_device_change(self, device: dict[str, Any] | None) -> None:
        self.device_changes.append(device)
        if self.save_error is not None:
            raise self.save_error
        if self.gate is not None:
            await self.gate.wait()
        self.device = device

    async def start(self, nursery: trio.Nursery) -> None:
        self.outcome, self.done, self.scope = None, trio.Event(), trio.CancelScope()
        await nursery.start(self._run)

    async def _run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            with self.scope:
                await self.transport.run(self.events, task_status=task_status)
                self.outcome = "returned"
        except (TransportError, OSError) as exc:
            self.outcome = exc
        finally:
            self.done.set()

    async def next(self) -> Event:
        with trio.fail_after(600):
            return await self.inbox.receive()

    async def ended(self) -> object:
        with trio.fail_after(600):
            await self.done.wait()
        return self.outcome

    def drain(self) -> list[Event]:
        out = []
        while True:
            try:
                out.append(self.inbox.receive_nowait())
            except trio.WouldBlock:
                return out

    async def connected(self, nursery: trio.Nursery) -> Connected:
        await self.start(nursery)
        event = await self.next()
        assert isinstance(event, Connected)
        return event


async def paired_session(nursery: trio.Nursery, net: SandboxNetwork, **kwargs: Any) -> Session:
    session = Session(net, dict(DEVICE), **kwargs)
    await session.connected(nursery)
    return session


def test_is_a_transport() -> None:
    transport = network().transport(CID, None, _ignore)
    assert isinstance(transport, SandboxTransport) and isinstance(transport, Transport)


async def test_a_device_without_a_jid_counts_as_not_paired(nursery, autojump_clock):
    net = network()
    session = Session(net, {})
    await session.start(nursery)
    assert isinstance(await session.next(), QrCode) and not net.state(CID)["paired"]


async def _ignore(device: dict[str, Any] | None) -> None:
    pass


# ─── pairing ────────────────────────────────────────────────────────────────────────────

async def test_qr_codes_refresh_every_interval_and_never_give_up(nursery, autojump_clock):
    net = network(qr_interval=20.0)
    session = Session(net)
    start = trio.current_time()
    await session.start(nursery)
    codes = []
    for index in range(1, 9):
        event = await session.next()
        assert isinstance(event, QrCode) and event.index == index
        assert QR.fullmatch(event.code)
        assert trio.current_time() - start == pytest.approx(20.0 * (index - 1))
        codes.append(event.code)
    assert len(set(codes)) == 8
    state = net.state(CID)
    assert state["waitingForScan"] and state["qrIndex"] == 8 and state["qr"] == codes[-1]
    assert not state["paired"] and not state["connected"] and session.outcome is None


async def test_pair_persists_device_before_connected(nursery, autojump_clock):
    net = network()
    session = Session(net)
    session.gate = trio.Event()
    await session.start(nursery)
    assert isinstance(await session.next(), QrCode)
    answer = net.pair(CID, "+55 (11) 98765-4321")
    assert answer == {"jid": "5511987654321@s.whatsapp.net", "number": "5511987654321"}
    await trio.testing.wait_all_tasks_blocked()
    assert session.device_changes == [{"jid": answer["jid"], "number": answer["number"], "pushName": "Sandbox 4321"}]
    assert session.drain() == []  # not connected while the device is being saved
    with pytest.raises(NotConnected):
        await session.transport.send(SendText(f"{CUSTOMER}@s.whatsapp.net", "too early"))
    session.gate.set()
    assert await session.next() == Connected(answer["jid"], "Sandbox 4321")
    state = net.state(CID)
    assert state["paired"] and state["connected"] and not state["waitingForScan"] and state["jid"] == answer["jid"]
    assert session.device == session.device_changes[0]


async def test_pair_generates_a_number_when_none_given(nursery, autojump_clock):
    net = network()
    session = Session(net)
    await session.start(nursery)
    await session.next()
    answer = net.pair(CID)
    assert re.fullmatch(r"55119\d{8}", answer["number"]) and answer["jid"] == f"{answer['number']}@s.whatsapp.net"
    assert isinstance(await session.next(), Connected)


async def test_pair_while_not_waiting_for_scan_is_refused(nursery, autojump_clock):
    net = network()
    with pytest.raises(SandboxError) as err:
        net.pair(CID)  # nothing running
    assert err.value.code == "ERR_SANDBOX_NOT_WAITING_FOR_SCAN"
    await paired_session(nursery, net)
    with pytest.raises(SandboxError) as err:
        net.pair(CID)  # already paired and connected
    assert err.value.code == "ERR_SANDBOX_NOT_WAITING_FOR_SCAN"


async def test_a_restarted_process_reconnects_with_the_persisted_device_without_qr(nursery, autojump_clock):
    first = Session(network())
    await first.start(nursery)
    await first.next()
    first.net.pair(CID, "5511912345678")
    await first.next()
    saved = first.device
    # a new process: a new network, the device comes from the database
    net = network()
    session = Session(net, saved)
    await session.start(nursery)
    assert await session.next() == Connected(saved["jid"], saved["pushName"])
    assert net.state(CID)["paired"] and net.state(CID)["qrIndex"] == 0 and session.device_changes == []


async def test_a_transport_reused_after_pairing_reconnects_without_qr(nursery, autojump_clock):
    net = network()
    session = Session(net)
    await session.start(nursery)
    await session.next()
    net.pair(CID)
    await session.next()
    net.fault(CID, "disconnect")
    assert isinstance(await session.ended(), TransportError)
    await session.start(nursery)
    assert isinstance(await session.next(), Connected)


async def test_pairing_code_flow(nursery, autojump_clock):
    net = network()
    session = Session(net)
    await session.start(nursery)
    assert isinstance(await session.next(), QrCode)
    code = await session.transport.request_pairing_code("+55 11 97777-6666")
    assert re.fullmatch(r"[1-9A-HJ-NP-TV-Z]{4}-[1-9A-HJ-NP-TV-Z]{4}", code)
    assert await session.next() == PairingCode(code)
    assert net.state(CID)["pairingCode"] == code
    await trio.sleep(200)
    assert session.drain() == []  # no QR refresh once a code is shown
    with pytest.raises(SandboxError) as err:
        net.pair(CID, "5511900001111")
    assert err.value.code == "ERR_SANDBOX_WRONG_NUMBER"
    assert net.pair(CID)["number"] == "5511977776666"
    assert await session.next() == Connected("5511977776666@s.whatsapp.net", "Sandbox 6666")
    with pytest.raises(SendFailed):
        await session.transport.request_pairing_code("5511977776666")


async def test_pairing_code_needs_a_running_transport_and_a_phone_number(nursery, autojump_clock):
    session = Session(network())
    with pytest.raises(NotConnected):
        await session.transport.request_pairing_code("5511977776666")
    await session.start(nursery)
    with pytest.raises(SendFailed):
        await session.transport.request_pairing_code("call me")


# ─── inbound ────────────────────────────────────────────────────────────────────────────

async def test_inbound_text_looks_like_whatsapp(nursery, autojump_clock):
    net = network()
    session = await paired_session(nursery, net)
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    message_id = await net.inbound(CID, sender="+55 (11) 98888-7777", name="Maria", body="oi", quoted_id="3EB0AA")
    message = await session.next()
    assert isinstance(message, InboundMessage) and message.id == message_id and PHONE_ID.fullmatch(message_id)
    assert message.chat == message.sender == f"{CUSTOMER}@s.whatsapp.net"
    assert message.sender_phone == f"{CUSTOMER}@s.whatsapp.net" and re.fullmatch(r"\d{14,15}@lid", message.sender_lid)
    assert message.kind is MessageKind.TEXT and message.body == "oi" and message.push_name == "Maria"
    assert message.quoted_id == "3EB0AA" and not message.from_me and not message.is_group and message.media is None
    assert message.timestamp.tzinfo is not None and message.timestamp.utcoffset() == dt.timedelta(0)
    assert message.timestamp.microsecond == 0 and message.timestamp >= before
    await net.inbound(CID, sender=f"{CUSTOMER}@s.whatsapp.net", body="de novo")
    again = await session.next()
    assert again.sender_lid == message.sender_lid  # a contact's LID is stable
    assert again.id != message.id


async def test_inbound_keeps_a_given_id_and_timestamp(nursery, autojump_clock):
    net = network()
    session = await paired_session(nursery, net)
    when = dt.datetime(2024, 5, 1, 9, 30, 15, 123456, tzinfo=dt.timezone(dt.timedelta(hours=-3)))
    await net.inbound(CID, sender=CUSTOMER, id="ABCDEF0123", timestamp=when)
    message = await session.next()
    assert message.id == "ABCDEF0123"
    assert message.timestamp == dt.datetime(2024, 5, 1, 12, 30, 15, tzinfo=dt.UTC)


@pytest.mark.parametrize(("kind", "expected", "mimetype"), [
    ("image", MessageKind.IMAGE, "image/jpeg"),
    ("video", MessageKind.VIDEO, "video/mp4"),
    ("audio", MessageKind.AUDIO, "audio/mpeg"),
    ("ptt", MessageKind.VOICE, "audio/ogg; codecs=opus"),
    ("document", MessageKind.DOCUMENT, "application/pdf"),
    ("sticker", MessageKind.STICKER, "image/webp"),
])
async def test_inbound_media_of_each_kind_downloads_its_bytes(nursery, autojump_clock, kind, expected, mimetype):
    net = network()
    session = await paired_session(nursery, net)
    data = bytes(range(256)) * 4
    await net.inbound(CID, sender=CUSTOMER, body="legenda", media={"kind": kind, "base64": base64.b64encode(data)
                                                                    .decode()})
    message = await session.next()
    assert message.kind is expected and message.body == "legenda"
    assert message.media.kind is expected and message.media.mimetype == mimetype and message.media.size == len(data)
    assert (message.media.filename is not None) == (kind == "document")
    assert await session.transport.download(message.media) == data


async def test_inbound_media_keeps_given_mimetype_and_filename(nursery, autojump_clock):
    net = network()
    session = await paired_session(nursery, net)
    await net.inbound(CID, sender=CUSTOMER, media={"kind": "document", "data": b"%PDF", "mimetype": "text/csv",
                                                   "filename": "pedido.csv"})
    message = await session.next()
    assert (message.media.mimetype, message.media.filename, message.media.size) == ("text/csv", "pedido.csv", 4)
    assert await session.transport.download(message.media) == b"%PDF"


async def test_download_of_unknown_media_fails(nursery, autojump_clock):
    net = network()
    session = await paired_session(nursery, net)
    await net.inbound(CID, sender=CUSTOMER, media={"kind": "image", "data": b"x"})
    message = await session.next()
    with pytest.raises(SendFailed):
        await session.transport.download(message.media.__class__(MessageKind.IMAGE, "image/jpeg", key="nope"))


async def test_inbound_in_a_group_from_a_lid_sender(nursery, autojump_clock):
    net = network()
    session = await paired_session(nursery, net)
    await net.inbound(CID, sender="123456789012345@lid", name="Ana", body="bom dia",
                      group={"id": "120363041234567890@g.us", "name": "Clientes VIP"})
    message = await session.next()
    assert message.chat == "120363041234567890@g.us" and message.is_group and message.group_name == "Clientes VIP"
    assert message.sender == message.participant == message.sender_lid == "123456789012345@lid"
    assert message.sender_phone is None and message.push_name == "Ana"
    await net.inbound(CID, sender=CUSTOMER, group={"id": "120363041234567890", "name": ""})
    message = await session.next()
    assert message.chat == "120363041234567890@g.us" and message.participant == f"{CUSTOMER}@s.whatsapp.net"
    assert message.group_name is None


async def test_a_lid_sender_known_by_its_phone_gets_the_phone(nursery, autojump_clock):
    net = network()
    session = await paired_session(nursery, net)
    await net.inbound(CID, sender=CUSTOMER, lid="99887766554433")
    first = await session.next()
    assert first.sender_lid == "99887766554433@lid"
    await net.inbound(CID, sender="99887766554433@lid")
    second = await session.next()
    assert second.chat == "99887766554433@lid" and second.sender_phone == f"{CUSTOMER}@s.whatsapp.net"


async def test_inbound_reaction_edit_and_revoke(nursery, autojump_clock):
    net = network()
    session = await paired_session(nursery, net)
    await net.inbound(CID, sender=CUSTOMER, reaction={"targetId": "3EB0X", "emoji": "👍"})
    await net.inbound(CID, sender=CUSTOMER, edit={"targetId": "AB12", "body": "corrigido"})
    await net.inbound(CID, sender=CUSTOMER, revoke={"targetId": "AB12"})
    reaction, edit, revoke = [await session.next() for _ in range(3)]
    assert (reaction.kind, reaction.target_id, reaction.reaction) == (MessageKind.REACTION, "3EB0X", "👍")
    assert (edit.kind, edit.target_id, edit.body) == (MessageKind.EDIT, "AB12", "corrigido")
    assert (revoke.kind, revoke.target_id) == (MessageKind.REVOKE, "AB12")


async def test_inbound_location_and_contact(nursery, autojump_clock):
    net = network()
    session = await paired_session(nursery, net)
    await net.inbound(CID, sender=CUSTOMER, location={"latitude": -23.55, "longitude": -46.63, "name": "Loja"})
    await net.inbound(CID, sender=CUSTOMER, vcard="BEGIN:VCARD\nEND:VCARD")
    location, contact = await session.next(), await session.next()
    assert (location.kind, location.latitude, location.longitude, location.body) == (
        MessageKind.LOCATION, -23.55, -46.63, "Loja")
    assert contact.kind is MessageKind.CONTACT and contact.vcard.startswith("BEGIN:VCARD")


@pytest.mark.parametrize(("kwargs", "code"), [
    ({"sender": "maria"}, "ERR_SANDBOX_BAD_SENDER"),
    ({"sender": "123"}, "ERR_SANDBOX_BAD_SENDER"),
    ({"sender": "abc@lid"}, "ERR_SANDBOX_BAD_SENDER"),
    ({"sender": CUSTOMER, "media": {"kind": "gif"}}, "ERR_SANDBOX_BAD_MEDIA"),
    ({"sender": CUSTOMER, "media": {"kind": "image", "base64": "***"}}, "ERR_SANDBOX_BAD_MEDIA"),
    ({"sender": CUSTOMER, "timestamp": dt.datetime(2024, 1, 1)}, "ERR_SANDBOX_BAD_TIMESTAMP"),
    ({"sender": CUSTOMER, "group": {"id": "clientes"}}, "ERR_SANDBOX_BAD_GROUP"),
    ({"sender": CUSTOMER, "id": "has space"}, "ERR_SANDBOX_BAD_ID"),
    ({"sender": CUSTOMER, "revoke": {}}, "ERR_SANDBOX_BAD_MESSAGE"),
    ({"sender": CUSTOMER, "media": {"kind": "image"}, "revoke": {"targetId": "X"}}, "ERR_SANDBOX_BAD_MESSAGE"),
    ({"sender": CUSTOMER, "location": {"latitude": 200, "longitude": 0}}, "ERR_SANDBOX_BAD_MESSAGE"),
])
async def test_bad_inbound_is_refused_and_nothing_is_queued(kwargs, code):
    net = network()
    with pytest.raises(SandboxError) as err:
        await net.inbound(CID, **kwargs)
    assert err.value.code == code
    assert net.state(CID)["pendingInbound"] == 0


# ─── offline queue and redelivery ───────────────────────────────────────────────────────

async def test_messages_sent_while_offline_arrive_in_order_after_connect(nursery, autojump_clock):
    net = network()
    ids = [await net.inbound(CID, sender=CUSTOMER, body=f"msg {n}") for n in range(5)]
    assert net.state(CID)["pendingInbound"] == 5
    session = Session(net, dict(DEVICE))
    await session.connected(nursery)
    messages = [await session.next() for _ in ids]
    assert [message.id for message in messages] == ids
    state = net.state(CID)
    assert state["pendingInbound"] == 5 and state["queued"] == 0 and state["unsettled"] == 5
    assert state["delivered"] == 5
    for message in messages:
        settle(message)
    assert net.state(CID)["pendingInbound"] == 0 and net.state(CID)["unsettled"] == 0


async def test_messages_sent_while_pairing_arrive_after_connected(nursery, autojump_clock):
    net = network()
    session = Session(net)
    await session.start(nursery)
    await session.next()
    message_id = await net.inbound(CID, sender=CUSTOMER, body="alguém aí?")
    await trio.sleep(5)
    assert session.drain() == []
    net.pair(CID)
    assert isinstance(await session.next(), Connected)
    assert (await session.next()).id == message_id


async def test_a_disconnect_mid_delivery_redelivers_the_message_not_taken(nursery, autojump_clock):
    net = network()
    session = Session(net, dict(DEVICE), buffer=0)  # every event waits for the session to take it
    await session.connected(nursery)
    first = await net.inbound(CID, sender=CUSTOMER, body="um")
    second = await net.inbound(CID, sender=CUSTOMER, body="dois")
    taken = await session.next()
    assert taken.id == first
    settle(taken)
    await trio.testing.wait_all_tasks_blocked()  # the transport is waiting to hand over "dois"
    net.fault(CID, "disconnect")
    outcome = await session.ended()
    assert isinstance(outcome, TransportError) and str(outcome) == "sandbox: connection lost"
    assert net.state(CID)["pendingInbound"] == 1 and not net.state(CID)["connected"] and net.state(CID)["paired"]
    await session.connected(nursery)
    assert (await session.next()).id == second
    await trio.testing.wait_all_tasks_blocked()
    assert session.drain() == []


async def test_disconnect_with_redeliver_repeats_the_last_messages(nursery, autojump_clock):
    net = network()
    session = await paired_session(nursery, net)
    ids = [await net.inbound(CID, sender=CUSTOMER, body=str(n)) for n in range(4)]
    messages = [await session.next() for _ in ids]
    assert [message.id for message in messages] == ids
    for message in messages:
        settle(message)
    net.fault(CID, "disconnect", redeliver=2)
    await session.ended()
    later = await net.inbound(CID, sender=CUSTOMER, body="depois")
    await session.connected(nursery)
    assert [(await session.next()).id for _ in range(3)] == [ids[2], ids[3], later]


async def test_disconnect_needs_a_running_transport():
    net = network()
    with pytest.raises(SandboxError) as err:
        net.fault(CID, "disconnect")
    assert err.value.code == "ERR_SANDBOX_NOT_RUNNING"


async def test_a_second_run_for_the_same_connection_replaces_the_first(nursery, autojump_clock):
    net = network()
    old = await paired_session(nursery, net)
    new = await paired_session(nursery, net)
    outcome = await old.ended()
    assert isinstance(outcome, TransportError) and "replaced" in str(outcome)
    await net.inbound(CID, sender=CUSTOMER)
    assert isinstance(await new.next(), InboundMessage)
    assert net.state(CID)["connected"]


async def test_the_event_queue_is_bounded(monkeypatch):
    monkeypatch.setattr(sandbox, "QUEUE_MAX", 3)  # the network refuses inbound beyond it
    monkeypatch.setattr(sandbox_state, "QUEUE_MAX", 3)  # the line queues no more than it
    net = network()
    for _ in range(3):
        await net.inbound(CID, sender=CUSTOMER)
    with pytest.raises(SandboxError) as err:
        await net.inbound(CID, sender=CUSTOMER)
    assert err.value.code == "ERR_SANDBOX_QUEUE_FULL" and net.state(CID)["pendingInbound"] == 3


# ─── keep until settled ─────────────────────────────────────────────────────────────────

async def test_delivered_messages_stay_until_settled_and_come_first_after_a_reconnect(nursery, autojump_clock):
    net = network()
    session = await paired_session(nursery, net)
    ids = [await net.inbound(CID, sender=CUSTOMER, body=f"msg {n}") for n in range(4)]
    delivered = [await session.next() for _ in ids]
    assert [message.id for message in delivered] == ids
    settle(delivered[1])  # committed; the others are not (yet)
    state = net.state(CID)
    assert (state["queued"], state["unsettled"], state["pendingInbound"]) == (0, 3, 3)
    net.fault(CID, "disconnect")
    await session.ended()
    later = await net.inbound(CID, sender=CUSTOMER, body="written while offline")
    await session.connected(nursery)
    again = [await session.next() for _ in range(4)]
    assert [message.id for message in again] == [ids[0], ids[2], ids[3], later]  # the unsettled first, in order
    for message in again:
        settle(message)
    await trio.testing.wait_all_tasks_blocked()
    assert session.drain() == []
    state = net.state(CID)
    assert (state["queued"], state["unsettled"], state["pendingInbound"], state["delivered"]) == (0, 0, 0, 8)


async def test_a_message_cut_off_mid_delivery_is_delivered_again_before_the_rest(nursery, autojump_clock):
    net = network()
    session = Session(net, dict(DEVICE), buffer=0)  # every event waits for the session to take it
    await session.connected(nursery)
    ids = [await net.inbound(CID, sender=CUSTOMER, body=str(n)) for n in range(3)]
    await trio.testing.wait_all_tasks_blocked()  # the transport is handing over the first one
    session.scope.cancel()  # the session stops (a crash) before taking it
    await session.ended()
    await session.connected(nursery)
    assert [(await session.next()).id for _ in ids] == ids


async def test_settle_is_idempotent_and_harmless_after_a_reconnect_or_a_forget(nursery, autojump_clock):
    net = network()
    session = await paired_session(nursery, net)
    first_id = await net.inbound(CID, sender=CUSTOMER, body="um")
    first = await session.next()
    net.fault(CID, "disconnect")
    await session.ended()
    await session.connected(nursery)
    redelivered = await session.next()
    assert redelivered.id == first_id == first.id
    settle(first)  # the first delivery's settle counts for the message, whichever delivery committed it
    settle(redelivered)
    settle(first)
    assert net.state(CID)["unsettled"] == 0 and net.state(CID)["pendingInbound"] == 0
    await net.inbound(CID, sender=CUSTOMER, body="dois")
    second = await session.next()
    await net.forget(CID)
    await session.ended()
    settle(second)  # the connection is gone: nothing to do, nothing breaks
    assert net.state(CID)["pendingInbound"] == 0


async def test_unsettled_messages_count_against_the_bound(nursery, autojump_clock, monkeypatch):
    monkeypatch.setattr(sandbox, "QUEUE_MAX", 3)
    net = network()
    session = await paired_session(nursery, net)
    for n in range(3):
        await net.inbound(CID, sender=CUSTOMER, body=str(n))
    taken = [await session.next() for _ in range(3)]
    assert net.state(CID)["queued"] == 0 and net.state(CID)["unsettled"] == 3
    with pytest.raises(SandboxError) as err:
        await net.inbound(CID, sender=CUSTOMER, body="one too many")
    assert err.value.code == "ERR_SANDBOX_QUEUE_FULL"
    settle(taken[0])
    await net.inbound(CID, sender=CUSTOMER, body="room again")
    assert (await session.next()).body == "room again"


async def test_receipts_are_kept_until_settled_too(nursery, autojump_clock):
    net = network(ack_delays=(0.5, None))
    session = await paired_session(nursery, net)
    sent = await session.transport.send(SendText(f"{CUSTOMER}@s.whatsapp.net", "olá"))
    receipt = await session.next()
    assert isinstance(receipt, Receipt) and receipt.ids == (sent.id,) and receipt.ack is Ack.DELIVERED
    assert net.state(CID)["pendingReceipts"] == 1
    net.fault(CID, "disconnect")
    await session.ended()
    await session.connected(nursery)
    again = await session.next()
    assert (again.ids, again.ack) == ((sent.id,), Ack.DELIVERED)
    settle(again)
    assert net.state(CID)["pendingReceipts"] == 0


# ─── idempotent sends ───────────────────────────────────────────────────────────────────

async def test_a_send_repeated_with_its_id_is_sent_once_and_answered_the_same(nursery, autojump_clock):
    net = network(ack_delays=(0.5, 1.5))
    session = await paired_session(nursery, net)
    to = f"{CUSTOMER}@s.whatsapp.net"
    first = await session.transport.send(SendText(to, "olá", id="3EB0AAAABBBBCCCCDDDD"))
    second = await session.transport.send(SendText(to, "olá, de novo", id="3EB0AAAABBBBCCCCDDDD"))
    assert first == second and first.id == "3EB0AAAABBBBCCCCDDDD"
    assert [entry["body"] for entry in await net.outbox(CID)] == ["olá"]  # the retry is not recorded
    media = await session.transport.send(SendMedia(to, MessageKind.IMAGE, b"\xff\xd8", "image/jpeg", id="3EB0MEDIA"))
    assert await session.transport.send(SendMedia(to, MessageKind.IMAGE, b"\xff\xd8", "image/jpeg",
                                                  id="3EB0MEDIA")) == media
    assert [entry["id"] for entry in await net.outbox(CID)] == ["3EB0AAAABBBBCCCCDDDD", "3EB0MEDIA"]
    await trio.sleep(10)
    receipts = [(event.ids, event.ack) for event in session.drain()]
    assert receipts.count((("3EB0AAAABBBBCCCCDDDD",), Ack.DELIVERED)) == 1  # receipts once per message id
    assert receipts.count((("3EB0AAAABBBBCCCCDDDD",), Ack.READ)) == 1 and len(receipts) == 4
    third = await session.transport.send(SendText(to, "sem id"))
    assert OUR_ID.fullmatch(third.id) and third.id not in (first.id, media.id)


async def test_a_send_that_failed_is_sent_when_retried_with_its_id(nursery, autojump_clock):
    net = network(ack_delays=(None, None))
    session = await paired_session(nursery, net)
    to = f"{CUSTOMER}@s.whatsapp.net"
    net.fault(CID, "send_failure", count=1)
    with pytest.raises(SendFailed):
        await session.transport.send(SendText(to, "olá", id="3EB0RETRY"))
    assert [entry["ack"] for entry in await net.outbox(CID)] == ["failed"]
    sent = await session.transport.send(SendText(to, "olá", id="3EB0RETRY"))
    assert sent.id == "3EB0RETRY"
    assert [(entry["id"], entry["ack"], entry["error"], entry["attempts"], entry["duplicates"])
            for entry in await net.outbox(CID)] == [("3EB0RETRY", "sent", None, 2, 0)]  # a retry, not a duplicate


async def test_a_send_with_a_malformed_id_fails(nursery, autojump_clock):
    net = network()
    session = await paired_session(nursery, net)
    with pytest.raises(SendFailed):
        await session.transport.send(SendText(f"{CUSTOMER}@s.whatsapp.net", "olá", id="no spaces allowed"))
    assert await net.outbox(CID) == []


# ─── sending, receipts ──────────────────────────────────────────────────────────────────

async def test_send_records_the_message_and_receipts_follow_after_the_delays(nursery, autojump_clock):
    net = network(ack_delays=(0.5, 1.5))
    session = await paired_session(nursery, net)
    to = f"{CUSTOMER}@s.whatsapp.net"
    start = trio.current_time()
    sent = await session.transport.send(SendText(to, "olá", quoted_id="ABC"))
    assert OUR_ID.fullmatch(sent.id) and sent.timestamp.tzinfo is not None and sent.timestamp.microsecond == 0
    [entry] = await net.outbox(CID)
    assert entry["id"] == sent.id and entry["to"] == to and entry["kind"] == "chat" and entry["body"] == "olá"
    assert entry["quotedId"] == "ABC" and entry["ack"] == "sent"
    assert dt.datetime.fromisoformat(entry["timestamp"]) == sent.timestamp
    delivered = await session.next()
    assert delivered.chat == to and delivered.ids == (sent.id,) and delivered.ack is Ack.DELIVERED
    assert trio.current_time() - start == pytest.approx(0.5)
    read = await session.next()
    assert read.ack is Ack.READ and trio.current_time() - start == pytest.approx(2.0)
    assert (await net.outbox(CID))[0]["ack"] == "read"


async def test_receipts_due_while_disconnected_arrive_after_reconnect(nursery, autojump_clock):
    net = network(ack_delays=(0.5, 1.5))
    session = await paired_session(nursery, net)
    sent = await session.transport.send(SendText(f"{CUSTOMER}@s.whatsapp.net", "olá"))
    net.fault(CID, "disconnect")
    await session.ended()
    await trio.sleep(10)
    await session.connected(nursery)
    receipts = [await session.next(), await session.next()]
    assert [(r.ids, r.ack) for r in receipts] == [((sent.id,), Ack.DELIVERED), ((sent.id,), Ack.READ)]


async def test_send_media_reaction_edit_and_delete_are_recorded(nursery, autojump_clock):
    net = network(ack_delays=(None, None))
    session = await paired_session(nursery, net)
    to = f"{CUSTOMER}@s.whatsapp.net"
    media = await session.transport.send(SendMedia(to, MessageKind.DOCUMENT, b"%PDF-1.4", "application/pdf",
                                                   "nota.pdf", caption="sua nota"))
    text = await session.transport.send(SendText(to, "primeira versão"))
    reaction = await session.transport.send(SendReaction(to, media.id, "❤️"))
    edit = await session.transport.send(EditMessage(to, text.id, "segunda versão"))
    delete = await session.transport.send(DeleteForEveryone(to, media.id))
    assert len({media.id, text.id, reaction.id, edit.id, delete.id}) == 5
    entries = {entry["id"]: entry for entry in await net.outbox(CID)}
    assert entries[media.id].items() >= {"kind": "document", "caption": "sua nota", "filename": "nota.pdf",
                                         "mimetype": "application/pdf", "size": 8, "deleted": True,
                                         "reaction": "❤️"}.items()
    assert entries[text.id]["body"] == "segunda versão" and entries[text.id]["edited"]
    assert entries[reaction.id]["kind"] == "reaction" and entries[reaction.id]["target_id"] == media.id
    assert entries[reaction.id]["emoji"] == "❤️"
    assert entries[edit.id]["kind"] == "edit" and entries[edit.id]["target_id"] == text.id
    assert entries[delete.id]["kind"] == "revoke" and entries[delete.id]["target_id"] == media.id
    await trio.sleep(60)
    assert session.drain() == []  # ack_delays None: no automatic receipts


async def test_manual_ack_emits_the_receipt_at_once(nursery, autojump_clock):
    net = network(ack_delays=(None, None))
    session = await paired_session(nursery, net)
    sent = await session.transport.send(SendText(f"{CUSTOMER}@s.whatsapp.net", "olá"))
    start = trio.current_time()
    await net.ack(CID, sent.id, "delivered")
    await net.ack(CID, sent.id, "read")
    first, second = await session.next(), await session.next()
    assert (first.ack, second.ack) == (Ack.DELIVERED, Ack.READ) and trio.current_time() == start
    assert isinstance(first, Receipt) and first.ids == (sent.id,)
    assert (await net.outbox(CID))[0]["ack"] == "read"
    with pytest.raises(SandboxError) as err:
        await net.ack(CID, "3EB0DOESNOTEXIST", "read")
    assert err.value.code == "ERR_SANDBOX_UNKNOWN_MESSAGE"
    with pytest.raises(SandboxError) as err:
        await net.ack(CID, sent.id, "seen")
    assert err.value.code == "ERR_SANDBOX_BAD_ACK"


async def test_an_ack_already_given_by_hand_is_not_repeated_by_the_timer(nursery, autojump_clock):
    net = network(ack_delays=(1.0, 1.0))
    session = await paired_session(nursery, net)
    sent = await session.transport.send(SendText(f"{CUSTOMER}@s.whatsapp.net", "olá"))
    await net.ack(CID, sent.id, "read")
    assert (await session.next()).ack is Ack.READ
    await trio.sleep(10)
    assert session.drain() == []


async def test_send_failure_fails_the_next_sends_and_records_them(nursery, autojump_clock):
    net = network(ack_delays=(None, None))
    session = await paired_session(nursery, net)
    to = f"{CUSTOMER}@s.whatsapp.net"
    net.fault(CID, "send_failure", count=2, reason="rate-overlimit")
    for _ in range(2):
        with pytest.raises(SendFailed) as err:
            await session.transport.send(SendText(to, "olá"))
        assert err.value.reason == "rate-overlimit"
    sent = await session.transport.send(SendText(to, "olá"))
    acks = [entry["ack"] for entry in await net.outbox(CID)]
    assert acks == ["failed", "failed", "sent"] and (await net.outbox(CID))[2]["id"] == sent.id
    with pytest.raises(SandboxError) as err:
        await net.ack(CID, (await net.outbox(CID))[0]["id"], "delivered")
    assert err.value.code == "ERR_SANDBOX_MESSAGE_FAILED"
    assert net.state(CID)["connected"]  # a refused send does not drop the connection


async def test_send_to_an_invalid_recipient_fails(nursery, autojump_clock):
    net = network()
    session = await paired_session(nursery, net)
    for to in (CUSTOMER, f"{CUSTOMER}@c.us", "maria@s.whatsapp.net"):
        with pytest.raises(SendFailed):
            await session.transport.send(SendText(to, "olá"))
    assert [entry["ack"] for entry in await net.outbox(CID)] == ["failed"] * 3


async def test_commands_need_a_connection(nursery, autojump_clock):
    net = network()
    session = Session(net)
    to = f"{CUSTOMER}@s.whatsapp.net"
    with pytest.raises(NotConnected):
        await session.transport.send(SendText(to, "olá"))
    await session.start(nursery)  # showing QR codes
    for command in (session.transport.send(SendText(to, "olá")),
                    session.transport.mark_read(to, ("X",)),
                    session.transport.set_presence(to, Presence.COMPOSING)):
        with pytest.raises(NotConnected):
            await command
    net.pair(CID)
    while not isinstance(await session.next(), Connected):
        pass
    net.fault(CID, "disconnect")
    await session.ended()
    with pytest.raises(NotConnected):
        await session.transport.send(SendText(to, "olá"))


async def test_the_outbox_is_bounded(nursery, autojump_clock, monkeypatch):
    monkeypatch.setattr(sandbox_outbox, "OUTBOX_MAX", 3)
    net = network(ack_delays=(None, None))
    session = await paired_session(nursery, net)
    ids = [(await session.transport.send(SendText(f"{CUSTOMER}@s.whatsapp.net", str(n)))).id for n in range(5)]
    assert [entry["id"] for entry in await net.outbox(CID)] == ids[2:]


async def test_mark_read_and_presence_are_recorded(nursery, autojump_clock):
    net = network()
    session = await paired_session(nursery, net)
    chat = f"{CUSTOMER}@s.whatsapp.net"
    await session.transport.mark_read(chat, ("A1", "A2"), sender=chat)
    await session.transport.mark_read(chat, ("NEVER-SEEN",))
    await session.transport.set_presence(chat, Presence.COMPOSING)
    state = net.state(CID)
    assert [entry["ids"] for entry in state["readByUs"]] == [["A1", "A2"], ["NEVER-SEEN"]]
    assert state["presence"] == {chat: "composing"}


# ─── faults ─────────────────────────────────────────────────────────────────────────────

async def test_logout_from_the_phone_clears_the_device_and_ends_the_run(nursery, autojump_clock):
    net = network()
    session = await paired_session(nursery, net)
    net.fault(CID, "logout")
    assert await session.next() == LoggedOut("logged out from the phone", banned=False)
    assert await session.ended() == "returned"
    assert session.device_changes == [None] and not net.state(CID)["paired"]
    await session.start(nursery)  # the same transport now needs a QR
    assert isinstance(await session.next(), QrCode)


async def test_ban_clears_the_device(nursery, autojump_clock):
    net = network()
    session = await paired_session(nursery, net)
    net.fault(CID, "ban")
    assert await session.next() == LoggedOut("banned by WhatsApp", banned=True)
    assert await session.ended() == "returned" and session.device_changes == [None]
    second = await paired_session(nursery, net)
    net.fault(CID, "ban", reason="spam")
    assert await second.next() == LoggedOut("spam", banned=True)


async def test_logout_while_offline_is_reported_at_the_next_run(nursery, autojump_clock):
    net = network()
    net.fault(CID, "logout")
    assert net.state(CID)["pendingLogout"]
    session = Session(net, dict(DEVICE))
    await session.start(nursery)
    assert await session.next() == LoggedOut("logged out from the phone")
    assert await session.ended() == "returned" and session.device_changes == [None]
    assert not net.state(CID)["pendingLogout"]


async def test_logout_of_an_unpaired_connection_is_refused(nursery, autojump_clock):
    net = network()
    session = Session(net)
    await session.start(nursery)
    with pytest.raises(SandboxError) as err:
        net.fault(CID, "logout")
    assert err.value.code == "ERR_SANDBOX_NOT_PAIRED"


async def test_our_logout_clears_the_device_and_ends_the_run(nursery, autojump_clock):
    net = network()
    session = await paired_session(nursery, net)
    await session.transport.logout()
    assert session.device_changes == [None]
    assert await session.ended() == "returned"
    assert session.drain() == [] and not net.state(CID)["paired"]


async def test_latency_delays_connect_sends_and_events(nursery, autojump_clock):
    net = network(latency=1.0, ack_delays=(None, None))
    session = Session(net, dict(DEVICE))
    start = trio.current_time()
    await session.connected(nursery)
    assert trio.current_time() - start == pytest.approx(1.0)
    net.fault(CID, "latency", seconds=2.0)
    assert net.state(CID)["latency"] == 3.0
    start = trio.current_time()
    await session.transport.send(SendText(f"{CUSTOMER}@s.whatsapp.net", "olá"))
    assert trio.current_time() - start == pytest.approx(3.0)
    start = trio.current_time()
    await net.inbound(CID, sender=CUSTOMER)
    await session.next()
    assert trio.current_time() - start == pytest.approx(3.0)


@pytest.mark.parametrize(("kind", "params", "code"), [
    ("flood", {}, "ERR_SANDBOX_UNKNOWN_FAULT"),
    ("latency", {"seconds": -1}, "ERR_SANDBOX_BAD_FAULT"),
    ("send_failure", {"count": "two"}, "ERR_SANDBOX_BAD_FAULT"),
    ("send_failure", {"times": 2}, "ERR_SANDBOX_BAD_FAULT"),
])
async def test_bad_faults_are_refused(kind, params, code):
    with pytest.raises(SandboxError) as err:
        network().fault(CID, kind, **params)
    assert err.value.code == code


async def test_forget_ends_the_running_transport_and_drops_the_state(nursery, autojump_clock):
    net = network()
    session = await paired_session(nursery, net)
    await session.transport.send(SendText(f"{CUSTOMER}@s.whatsapp.net", "olá"))
    await net.forget(CID)
    assert isinstance(await session.ended(), TransportError)
    assert await net.outbox(CID) == [] and not net.state(CID)["paired"] and not net.state(CID)["running"]


async def test_a_logout_interrupted_before_the_session_heard_it_is_repeated(nursery, autojump_clock):
    net = network()
    session = Session(net, dict(DEVICE), buffer=0)
    await session.connected(nursery)
    net.fault(CID, "logout")
    await trio.testing.wait_all_tasks_blocked()
    session.scope.cancel()  # the session stops before taking LoggedOut
    await session.ended()
    assert session.device_changes == [] and net.state(CID)["pendingLogout"]
    await session.start(nursery)
    assert await session.next() == LoggedOut("logged out from the phone")
    assert await session.ended() == "returned" and session.device_changes == [None]


async def test_a_device_that_cannot_be_saved_is_not_connected(nursery, autojump_clock):
    net = network()
    session = Session(net)
    session.save_error = OSError("disk full")
    await session.start(nursery)
    await session.next()
    net.pair(CID)
    assert isinstance(await session.ended(), OSError)
    assert not net.state(CID)["paired"] and session.drain() == []
    session.save_error = None
    await session.start(nursery)
    assert isinstance(await session.next(), QrCode)  # pairing starts over


async def test_number_checks_answer_from_the_connections_registry(nursery, autojump_clock):
    net = network()
    session = Session(net, dict(DEVICE))
    with pytest.raises(NotConnected):
        await session.transport.is_on_whatsapp(["5511988887777"])
    await session.connected(nursery)
    answers = await session.transport.is_on_whatsapp(["5511988887777", "+55 11 98888-0000", "abc"])
    assert [(a.number, a.exists, a.jid) for a in answers] == [
        ("5511988887777", True, "5511988887777@s.whatsapp.net"), ("+55 11 98888-0000", True,
                                                                  "5511988880000@s.whatsapp.net"), ("abc", False, None)]
    shown = net.registry(CID, not_on_whatsapp=["+55 (11) 98888-7777"], prefixes=["+5521", "5531"])
    assert shown["notOnWhatsapp"] == ["5511988887777"] and shown["notOnWhatsappPrefixes"] == ["5521", "5531"]
    answers = await session.transport.is_on_whatsapp(["5511988887777", "5521987654321", "5531900000000",
                                                      "5511988880000"])
    assert [a.exists for a in answers] == [False, False, False, True]
    registry = net.state(CID)["registry"]
    assert (registry["checks"], registry["numbersChecked"], registry["largestCheck"]) == (2, 7, 4)
    assert (await session.transport.is_on_whatsapp([])) == []
    for bad in ({"not_on_whatsapp": ["abc"]}, {"prefixes": ["55x"]}, {"prefixes": [""]}):
        with pytest.raises(SandboxError) as error:
            net.registry(CID, **bad)
        assert error.value.code == "ERR_SANDBOX_BAD_NUMBER"
    assert net.state(CID)["registry"]["notOnWhatsapp"] == ["5511988887777"]  # a refused change changes nothing


# ─── the test-only "crash" fault (SANDBOX_CRASH_FAULTS) ─────────────────────────────────

async def _run_to_crash(transport: SandboxTransport) -> BaseException | None:
    send, _receive = trio.open_memory_channel[Event](100)
    try:
        await transport.run(send)
    except InjectedCrash as crash:
        return crash
    return None


async def test_the_crash_fault_is_refused_unless_enabled(nursery, autojump_clock):
    session = await paired_session(nursery, network())
    with pytest.raises(SandboxError) as refused:
        session.net.fault(CID, "crash")
    assert refused.value.code == "ERR_SANDBOX_CRASH_DISABLED"
    assert session.done.is_set() is False  # the connection goes on


async def test_the_crash_fault_crashes_the_running_connection_then_each_next_run(nursery, autojump_clock):
    net = network(crash_faults=True)
    session = Session(net, dict(DEVICE))
    with pytest.raises(SandboxError):
        net.fault(CID, "crash", count=0)
    crashed: list[BaseException | None] = []

    async def run_once(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        crashed.append(await _run_to_crash(session.transport))

    nursery.start_soon(run_once)
    await trio.sleep(1)
    assert net.state(CID)["connected"]
    net.fault(CID, "crash", count=3)  # the running one, then two more runs
    await trio.sleep(1)
    assert isinstance(crashed[-1], InjectedCrash)
    for _ in range(2):
        assert isinstance(await _run_to_crash(session.transport), InjectedCrash)
    assert injected_crash(ExceptionGroup("nursery", [InjectedCrash("x")]))
    assert not injected_crash(ExceptionGroup("nursery", [TransportError("x")]))
    # the count is spent: the next run connects as before
    await session.start(nursery)
    assert isinstance(await session.next(), Connected)
