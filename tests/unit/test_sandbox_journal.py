"""The sandbox across restarts: a network opened on the journal of an earlier one (a restarted process, or
one killed with SIGKILL) holds what WhatsApp's servers would: the messages not settled, the LIDs, a logout
not yet heard of. What was sent is in the outbox store (PostgreSQL in zapgate; here one MemoryOutbox shared
by the old and the new network stands for it): sends stay idempotent and counted, the missing receipts
follow. A journal of before version 15 hands its outbox over to the store."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import signal
import sqlite3
import sys
import textwrap
from pathlib import Path

import pytest
import trio
import trio.testing

from gateway.whatsapp.sandbox import SandboxNetwork
from gateway.whatsapp.sandbox_journal import SandboxJournal
from gateway.whatsapp.sandbox_outbox import MemoryOutbox
from gateway.whatsapp.sandbox_state import SandboxError
from gateway.whatsapp.transport import (
    Ack,
    InboundMessage,
    LoggedOut,
    MessageKind,
    NotConnected,
    Receipt,
    SendFailed,
    SendText,
    TransportError,
    settle,
)
from tests.unit.test_sandbox import CID, CUSTOMER, DEVICE, Session, network, paired_session

ROOT = Path(__file__).resolve().parents[2]
TO = f"{CUSTOMER}@s.whatsapp.net"


class DurableOutbox(MemoryOutbox):
    """Stands for PostgreSQL: one instance shared by a network and its "restarted" successor."""

    durable = True


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


async def test_sends_stay_idempotent_and_counted_across_a_restart(nursery, autojump_clock, tmp_path):
    store = DurableOutbox()  # what outlives the process: zapgate's PostgreSQL
    old = network(ack_delays=(None, None), journal=journal(tmp_path), outbox=store)
    session = await paired_session(nursery, old)
    first = await session.transport.send(SendText(TO, "olá", id="3EB0000000000000000A"))
    other = await session.transport.send(SendText(TO, "sem id"))
    await stop(session)
    outbox = await old.outbox(CID)
    old.close()
    assert [(entry["body"], entry["attempts"], entry["duplicates"]) for entry in outbox] == [
        ("olá", 1, 0), ("sem id", 1, 0)]

    new = network(ack_delays=(None, None), journal=journal(tmp_path), outbox=store)
    assert await new.outbox(CID) == outbox
    session = await paired_session(nursery, new)
    # a retry (its body changed meanwhile, even): answered with the first Sent, not sent again, counted
    assert await session.transport.send(SendText(TO, "olá!", id="3EB0000000000000000A")) == first
    assert await session.transport.send(SendText(TO, "olá!", id="3EB0000000000000000A")) == first
    assert await session.transport.send(SendText(TO, "sem id!", id=other.id)) == other
    counted = [(entry["id"], entry["body"], entry["attempts"], entry["duplicates"]) for entry in await new.outbox(CID)]
    assert counted == [(first.id, "olá", 3, 2), (other.id, "sem id", 2, 1)]
    assert [entry["duplicates"] for entry in await new.outbox(CID, message_id=first.id)] == [2]
    assert await new.outbox(CID, message_id="3EB0NEVERSENT") == []


async def test_a_send_answered_late_and_cut_is_counted_once_when_resent(nursery, autojump_clock):
    """The fault "slow_answer": WhatsApp takes the message at once and answers later; the connection drops
    before the answer, so the sender does not know; its resend under the same id is a duplicate."""
    net = network(ack_delays=(None, None))
    session = await paired_session(nursery, net)
    net.fault(CID, "slow_answer", seconds=30)
    assert net.state(CID)["slowAnswer"] == 30

    async def send_and_fail() -> None:
        with pytest.raises(NotConnected):
            await session.transport.send(SendText(TO, "uma vez", id="3EB0SLOWANSWER"))

    async with trio.open_nursery() as sending:
        sending.start_soon(send_and_fail)
        await trio.testing.wait_all_tasks_blocked()
        [entry] = await net.outbox(CID)  # in the outbox before it was answered
        assert (entry["id"], entry["attempts"], entry["duplicates"]) == ("3EB0SLOWANSWER", 1, 0)
        net.fault(CID, "disconnect")
    await session.ended()
    net.fault(CID, "slow_answer", seconds=0)
    await session.connected(nursery)
    sent = await session.transport.send(SendText(TO, "uma vez", id="3EB0SLOWANSWER"))
    assert sent.id == "3EB0SLOWANSWER" and sent.timestamp == dt.datetime.fromisoformat(entry["timestamp"])
    assert [(e["body"], e["attempts"], e["duplicates"]) for e in await net.outbox(CID)] == [("uma vez", 2, 1)]


async def test_receipts_missing_at_a_restart_follow_once(nursery, autojump_clock, tmp_path):
    store = DurableOutbox()
    old = network(ack_delays=(0.5, 1.5), journal=journal(tmp_path), outbox=store)
    session = await paired_session(nursery, old)
    sent = await session.transport.send(SendText(TO, "olá", id="3EB0RECEIPTS"))
    await stop(session)  # before any receipt was due
    old.close()

    new = network(ack_delays=(0.5, 1.5), journal=journal(tmp_path), outbox=store)
    session = await paired_session(nursery, new)
    receipts = [await session.next(), await session.next()]
    assert [(r.ids, r.ack) for r in receipts] == [((sent.id,), Ack.DELIVERED), ((sent.id,), Ack.READ)]
    await trio.sleep(10)
    assert session.drain() == [] and (await new.outbox(CID))[0]["ack"] == "read"
    await stop(session)  # not settled: they come again after the next restart, and only they
    new.close()

    again = network(ack_delays=(0.5, 1.5), journal=journal(tmp_path), outbox=store)
    session = await paired_session(nursery, again)
    assert [(r.ids, r.ack) for r in [await session.next(), await session.next()]] == [
        ((sent.id,), Ack.DELIVERED), ((sent.id,), Ack.READ)]
    await trio.sleep(10)
    assert session.drain() == []


class FlakyOutbox(DurableOutbox):
    """An outbox that can be down (as PostgreSQL can)."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise SandboxError("ERR_SANDBOX_OUTBOX", "the sandbox's outbox cannot be used: down")

    async def accept(self, *args, **kwargs):
        self._check()
        return await super().accept(*args, **kwargs)

    async def acks(self, *args, **kwargs):
        self._check()
        return await super().acks(*args, **kwargs)

    async def awaiting_receipts(self, *args, **kwargs):
        self._check()
        return await super().awaiting_receipts(*args, **kwargs)


async def test_an_outbox_that_cannot_answer_delays_the_receipts_and_refuses_sends(nursery, autojump_clock):
    store = FlakyOutbox()
    net = network(ack_delays=(0.5, None), outbox=store)
    session = await paired_session(nursery, net)
    sent = await session.transport.send(SendText(TO, "olá"))
    store.down = True
    net.fault(CID, "send_failure", count=1)
    with pytest.raises(TransportError) as err:  # not SendFailed: zapgate keeps it pending and tries again
        await session.transport.send(SendText(TO, "fora do ar", id="3EB0DOWN"))
    assert not isinstance(err.value, SendFailed) and net.state(CID)["sendFailures"] == 1  # not used up
    with pytest.raises(SandboxError) as refused:
        await net.ack(CID, sent.id, "read")
    assert refused.value.code == "ERR_SANDBOX_OUTBOX"
    await trio.sleep(5)
    assert session.drain() == []  # the delivered receipt waits for the outbox
    store.down = False
    receipt = await session.next()
    assert (receipt.ids, receipt.ack) == ((sent.id,), Ack.DELIVERED)
    assert [entry["ack"] for entry in await net.outbox(CID)] == ["delivered"]


async def test_receipts_due_after_a_restart_wait_for_an_outbox_that_cannot_answer(nursery, autojump_clock):
    store = FlakyOutbox()
    old = network(ack_delays=(0.5, None), outbox=store)
    session = await paired_session(nursery, old)
    sent = await session.transport.send(SendText(TO, "olá"))
    await stop(session)  # before its receipt was due
    store.down = True
    session = await paired_session(nursery, network(ack_delays=(0.5, None), outbox=store))
    await trio.sleep(5)
    assert session.drain() == []
    store.down = False
    receipt = await session.next()
    assert (receipt.ids, receipt.ack) == ((sent.id,), Ack.DELIVERED)
    await trio.sleep(5)
    assert session.drain() == []  # once


async def test_a_journal_of_before_version_15_hands_its_outbox_to_the_store(nursery, autojump_clock, tmp_path):
    path = journal(tmp_path)
    SandboxJournal.open(path).close()
    db = sqlite3.connect(path)  # the outbox table as version 14 wrote it
    db.execute("CREATE TABLE outbox (connection_id INTEGER NOT NULL, id TEXT NOT NULL, seq INTEGER NOT NULL, "
               "entry TEXT NOT NULL, PRIMARY KEY (connection_id, id))")
    old_entry = {"id": "3EB0OLD", "to": TO, "kind": "chat", "body": "de antes", "caption": None, "filename": None,
                 "mimetype": None, "size": None, "quotedId": None, "ack": "read",
                 "timestamp": "2026-01-02T03:04:05+00:00", "target_id": None, "emoji": None, "reaction": None,
                 "deleted": False, "edited": False, "error": None}
    db.execute("INSERT INTO outbox VALUES (?, ?, ?, ?)", (CID, "3EB0OLD", 1, json.dumps(old_entry)))
    db.commit()
    db.close()

    net = network(ack_delays=(None, None), journal=path, outbox=MemoryOutbox())
    assert await net.take_over_old_outbox() == 1
    assert await net.outbox(CID) == [{**old_entry, "attempts": 1, "duplicates": 0}]
    session = await paired_session(nursery, net)  # and its id stays sent once
    assert (await session.transport.send(SendText(TO, "de antes", id="3EB0OLD"))).id == "3EB0OLD"
    assert [(e["id"], e["duplicates"]) for e in await net.outbox(CID)] == [("3EB0OLD", 1)]
    await stop(session)
    net.close()
    again = network(journal=path, outbox=MemoryOutbox())
    assert await again.take_over_old_outbox() == 0  # moved once: the journal no longer has it
    again.close()


async def test_a_logout_the_device_has_not_heard_of_survives_a_restart(nursery, autojump_clock, tmp_path):
    old = network(journal=journal(tmp_path))
    old.fault(CID, "ban", reason="spam")
    old.close()
    session = Session(network(journal=journal(tmp_path)), dict(DEVICE))
    await session.start(nursery)
    assert await session.next() == LoggedOut("spam", banned=True)
    assert await session.ended() == "returned" and session.device_changes == [None]


async def test_a_deleted_connection_leaves_nothing_in_the_journal(nursery, autojump_clock, tmp_path):
    store = MemoryOutbox()
    old = network(journal=journal(tmp_path), outbox=store)
    session = await paired_session(nursery, old)
    await session.transport.send(SendText(TO, "olá"))
    await old.inbound(CID, sender=CUSTOMER, body="oi")
    await old.forget(CID)
    await session.ended()
    old.close()
    new = network(journal=journal(tmp_path), outbox=store)
    assert await new.outbox(CID) == [] and new.state(CID)["pendingInbound"] == 0


async def test_a_journal_held_by_another_network_leaves_this_one_in_memory(tmp_path, caplog):
    holder = network(journal=journal(tmp_path))
    caplog.set_level(logging.WARNING, logger="zapgate.sandbox")
    second = network(journal=journal(tmp_path), outbox=DurableOutbox())
    assert holder.journal_path == journal(tmp_path) and second.journal_path is None
    assert not second.outbox_durable  # the holder writes the outbox, not this one
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
    from gateway.whatsapp.transport import Event, settle

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
    session = Session(net, dict(DEVICE))
    with trio.fail_after(10):
        await session.connected(nursery)
        events = [await session.next() for _ in range(30)]
    assert all(isinstance(event, InboundMessage) for event in events)
    assert [event.id for event in events] == [f"MSG{n:04d}" for n in range(20, 50)]
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
