"""The sandbox's journal: a network opened on the file of an earlier one (a restarted process, or one
killed with SIGKILL) holds what WhatsApp's servers would: the messages not settled, the outbox and the
ids that keep sends idempotent, the LIDs, a logout not yet heard of; and the missing receipts follow."""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import sys
import textwrap
from pathlib import Path

import trio
import trio.testing

from gateway.whatsapp.sandbox import SandboxNetwork
from gateway.whatsapp.transport import Ack, InboundMessage, LoggedOut, MessageKind, Receipt, SendText, settle
from tests.unit.test_sandbox import CID, CUSTOMER, DEVICE, Session, network, paired_session

ROOT = Path(__file__).resolve().parents[2]
TO = f"{CUSTOMER}@s.whatsapp.net"


def journal(tmp_path: Path) -> Path:
    return tmp_path / "data" / "sandbox.sqlite3"


async def stop(session: Session) -> None:
    session.scope.cancel()
    await session.ended()


async def test_a_restarted_network_delivers_what_was_not_settled_in_its_order(nursery, autojump_clock, tmp_path):
    old = network(journal=journal(tmp_path))
    session = await paired_session(nursery, old)
    ids = [await old.inbound(CID, sender=CUSTOMER, name="Ana", body=f"msg {n}") for n in range(3)]
    first, second = await session.next(), await session.next()
    settle(first)  # committed; "msg 1" delivered and not settled; "msg 2" still queued
    await stop(session)
    media_id = await old.inbound(CID, sender="5511977776666", media={"kind": "document", "data": b"%PDF"},
                                 group={"id": "120363000000000001", "name": "Clientes"}, body="nota")
    old.close()

    new = network(journal=journal(tmp_path))
    state = new.state(CID)
    assert (state["pendingInbound"], state["queued"], state["unsettled"]) == (3, 3, 0)
    session = Session(new, dict(DEVICE))  # the device saved on the connection row: no QR
    await session.connected(nursery)
    again = [await session.next() for _ in range(3)]
    assert [message.id for message in again] == [ids[1], ids[2], media_id]
    assert again[0] == second  # the same message: sender, LID, timestamp, push name...
    assert again[2].is_group and again[2].group_name == "Clientes" and again[2].media is not None
    assert again[2].media.kind is MessageKind.DOCUMENT and again[2].body == "nota"
    assert again[0].sender_lid == second.sender_lid
    later = await new.inbound(CID, sender=CUSTOMER, body="same contact, same LID")
    message = await session.next()
    assert message.id == later and message.sender_lid == second.sender_lid
    for event in [*again, message]:
        settle(event)
    await stop(session)
    new.close()

    assert network(journal=journal(tmp_path)).state(CID)["pendingInbound"] == 0


async def test_sends_stay_idempotent_and_the_outbox_stays_across_a_restart(nursery, autojump_clock, tmp_path):
    old = network(ack_delays=(None, None), journal=journal(tmp_path))
    session = await paired_session(nursery, old)
    first = await session.transport.send(SendText(TO, "olá", id="3EB0000000000000000A"))
    other = await session.transport.send(SendText(TO, "sem id"))
    await stop(session)
    outbox = old.outbox(CID)
    old.close()

    new = network(ack_delays=(None, None), journal=journal(tmp_path))
    assert new.outbox(CID) == outbox and [entry["body"] for entry in outbox] == ["olá", "sem id"]
    session = await paired_session(nursery, new)
    # a retry (its body changed meanwhile, even): answered with the first Sent, not sent again
    assert await session.transport.send(SendText(TO, "olá!", id="3EB0000000000000000A")) == first
    assert await session.transport.send(SendText(TO, "sem id!", id=other.id)) == other
    assert new.outbox(CID) == outbox


async def test_receipts_missing_at_a_restart_follow_once(nursery, autojump_clock, tmp_path):
    old = network(ack_delays=(0.5, 1.5), journal=journal(tmp_path))
    session = await paired_session(nursery, old)
    sent = await session.transport.send(SendText(TO, "olá", id="3EB0RECEIPTS"))
    await stop(session)  # before any receipt was due
    old.close()

    new = network(ack_delays=(0.5, 1.5), journal=journal(tmp_path))
    session = await paired_session(nursery, new)
    receipts = [await session.next(), await session.next()]
    assert [(r.ids, r.ack) for r in receipts] == [((sent.id,), Ack.DELIVERED), ((sent.id,), Ack.READ)]
    await trio.sleep(10)
    assert session.drain() == [] and new.outbox(CID)[0]["ack"] == "read"
    await stop(session)  # not settled: they come again after the next restart, and only they
    new.close()

    again = network(ack_delays=(0.5, 1.5), journal=journal(tmp_path))
    session = await paired_session(nursery, again)
    assert [(r.ids, r.ack) for r in [await session.next(), await session.next()]] == [
        ((sent.id,), Ack.DELIVERED), ((sent.id,), Ack.READ)]
    await trio.sleep(10)
    assert session.drain() == []


async def test_a_logout_the_device_has_not_heard_of_survives_a_restart(nursery, autojump_clock, tmp_path):
    old = network(journal=journal(tmp_path))
    old.fault(CID, "ban", reason="spam")
    old.close()
    session = Session(network(journal=journal(tmp_path)), dict(DEVICE))
    await session.start(nursery)
    assert await session.next() == LoggedOut("spam", banned=True)
    assert await session.ended() == "returned" and session.device_changes == [None]


async def test_a_deleted_connection_leaves_nothing_in_the_journal(nursery, autojump_clock, tmp_path):
    old = network(journal=journal(tmp_path))
    session = await paired_session(nursery, old)
    await session.transport.send(SendText(TO, "olá"))
    await old.inbound(CID, sender=CUSTOMER, body="oi")
    old.forget(CID)
    await session.ended()
    old.close()
    new = network(journal=journal(tmp_path))
    assert new.outbox(CID) == [] and new.state(CID)["pendingInbound"] == 0


async def test_a_journal_held_by_another_network_leaves_this_one_in_memory(tmp_path, caplog):
    holder = network(journal=journal(tmp_path))
    caplog.set_level(logging.WARNING, logger="zapgate.sandbox")
    second = network(journal=journal(tmp_path))
    assert holder.journal_path == journal(tmp_path) and second.journal_path is None
    assert "in use by another process" in caplog.text
    await second.inbound(CID, sender=CUSTOMER, body="in memory")
    assert second.state(CID)["pendingInbound"] == 1 and not second.state(CID)["journaled"]
    holder.close()


async def test_without_a_journal_nothing_outlives_the_network(tmp_path):
    net = network()
    await net.inbound(CID, sender=CUSTOMER, body="oi")
    assert net.journal_path is None and not net.state(CID)["journaled"]
    assert not (tmp_path / "data").exists()


# ─── kill -9 ────────────────────────────────────────────────────────────────────────────

CHILD = textwrap.dedent("""
    import os, random, signal, sys
    import trio
    from gateway.whatsapp.sandbox import SandboxNetwork
    from gateway.whatsapp.transport import Event, SendText, settle

    DEVICE = {"jid": "5511912345678@s.whatsapp.net", "number": "5511912345678", "pushName": "Loja"}

    async def main():
        net = SandboxNetwork(rng=random.Random(2), ack_delays=(None, None), journal=sys.argv[1])
        async def saved(device):
            pass
        transport = net.transport(7, DEVICE, saved)
        send, receive = trio.open_memory_channel[Event](1000)
        async with trio.open_nursery() as nursery:
            await nursery.start(transport.run, send)
            await receive.receive()  # Connected
            for n in range(50):
                await net.inbound(7, sender="5511988887777", body=f"msg {n}", id=f"MSG{n:04d}")
            for n in range(50):
                message = await receive.receive()
                if n < 20:
                    settle(message)
            while net._settles_waiting():  # the delivery loop deletes them within 50 ms
                await trio.sleep(0.01)
            for n in range(3):
                await transport.send(SendText("5511988887777@s.whatsapp.net", f"sent {n}", id=f"3EB0SENT{n}"))
            print("ready", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

    trio.run(main)
""")


async def test_a_killed_process_loses_nothing_it_accepted(nursery, tmp_path):
    path = journal(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with trio.fail_after(60):
        child = await trio.run_process([sys.executable, "-c", CHILD, str(path)], env=env, cwd=ROOT,
                                       capture_stdout=True, capture_stderr=True, check=False)
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()
    assert child.stdout.decode().strip() == "ready"

    net = SandboxNetwork(ack_delays=(None, None), journal=path)
    assert net.state(CID)["pendingInbound"] == 30
    assert [(entry["id"], entry["body"]) for entry in net.outbox(CID)] == [
        (f"3EB0SENT{n}", f"sent {n}") for n in range(3)]
    session = Session(net, dict(DEVICE))
    with trio.fail_after(10):
        await session.connected(nursery)
        events = [await session.next() for _ in range(30)]
    assert all(isinstance(event, InboundMessage) for event in events)
    assert [event.id for event in events] == [f"MSG{n:04d}" for n in range(20, 50)]
    with trio.fail_after(10):
        sent = await session.transport.send(SendText(TO, "sent 0", id="3EB0SENT0"))
    assert sent.id == "3EB0SENT0" and len(net.outbox(CID)) == 3
    await stop(session)
    net.close()


def test_receipts_and_messages_round_trip_through_the_journal(tmp_path):
    from gateway.whatsapp.sandbox_journal import decode_event, encode_event

    net = SandboxNetwork()
    message = trio.run(lambda: net.inbound(CID, sender=CUSTOMER, body="x", location={"latitude": -23.5,
                                                                                     "longitude": -46.6}))
    [(_, event)] = list(net._lines[CID].queue)
    assert event.id == message
    assert decode_event(encode_event(event), lambda: None) == event
    receipt = Receipt("5511@s.whatsapp.net", ("A", "B"), Ack.READ, event.timestamp, sender="5511@s.whatsapp.net")
    assert decode_event(encode_event(receipt), lambda: None) == receipt
    assert decode_event('{"type": "message"}', lambda: None) is None  # unreadable: skipped, not fatal


def test_a_journaled_receipt_keeps_its_ack_across_the_scale_change():
    """Receipts are journaled by name ("read"), which no scale change moves; a journal written before schema
    version 9 holds numbers of the scale zapgate had then (2 delivered, 3 read, 4 played), read as those."""
    import json

    from gateway.whatsapp.sandbox_journal import decode_event, encode_event

    at = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    receipt = Receipt("5511@s.whatsapp.net", ("A",), Ack.READ, at)
    assert json.loads(encode_event(receipt))["ack"] == "read"
    old = {"type": "receipt", "chat": "5511@s.whatsapp.net", "ids": ["A"], "timestamp": at.isoformat(),
           "sender": None}
    assert [decode_event(json.dumps({**old, "ack": number}), lambda: None).ack for number in (2, 3, 4)] == [
        Ack.DELIVERED, Ack.READ, Ack.PLAYED]
    assert [decode_event(json.dumps({**old, "ack": name}), lambda: None).ack for name in ("delivered", "played")] == [
        Ack.DELIVERED, Ack.PLAYED]
    for unreadable in (7, True, "seen", None):  # skipped (logged), never a wrong ack
        assert decode_event(json.dumps({**old, "ack": unreadable}), lambda: None) is None
