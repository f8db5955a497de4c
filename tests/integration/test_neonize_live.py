"""The neonize transport for real: neonize's Go client, whatsmeow's device store in PostgreSQL, threads.

WhatsApp itself is unreachable from the test machines, so the real client always fails to dial: these
tests check that this is a clean `TransportError`, that the device store lives in our database, that a
stored device is found (or reported gone instead of crashing the process), and that stopping leaves no
thread behind. The second half drives the same `run` machinery with a scripted client standing in for
neonize's, to cover what needs a WhatsApp server: events arriving on foreign threads, backpressure,
pairing, logout, and a stop while a callback is blocked.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
import trio
from neonize.exc import SendMessageError
from neonize.proto import Neonize_pb2 as nz
from neonize.proto.waE2E import WAWebProtobufsE2E_pb2 as wa

from gateway.whatsapp.neonize import STOP_DEADLINE, NeonizeTransport
from gateway.whatsapp.transport import (
    Connected,
    Disconnected,
    Event,
    InboundMessage,
    LoggedOut,
    NotConnected,
    PairingCode,
    QrCode,
    Receipt,
    SendFailed,
    SendText,
    Transport,
    TransportError,
)

SHOP = "5511999990000"
CUSTOMER = "5511988887777"
DIAL_FAILURE = "failed to dial whatsapp web websocket"


def wait_for_threads(before: frozenset[int], timeout: float = 2.0) -> frozenset[int]:
    """The threads alive now that were not before (empty once ours have ended; a finished thread may take
    a moment to vanish). Threads of other tests that end meanwhile do not count."""
    deadline = time.monotonic() + timeout
    while (new := live_threads() - before) and time.monotonic() < deadline:
        time.sleep(0.01)
    return new


def live_threads() -> frozenset[int]:
    return frozenset(thread.ident for thread in threading.enumerate() if thread.ident is not None)


async def run_to_end(transport: NeonizeTransport, events: trio.MemorySendChannel[Event]) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(transport.run, events)


def tables(database_url: str) -> set[str]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE tablename LIKE 'whatsmeow%'").fetchall()
    return {name for (name,) in rows}


# ─── the real neonize client ────────────────────────────────────────────────────────────

def test_it_is_a_transport(database_url: str) -> None:
    assert isinstance(NeonizeTransport("c1", database_url), Transport)


async def test_unreachable_whatsapp_is_a_transport_error(database_url: str) -> None:
    before = live_threads()
    transport = NeonizeTransport("conn-1", database_url)
    send, recv = trio.open_memory_channel[Event](16)
    started = trio.current_time()
    with trio.fail_after(30), pytest.RaisesGroup(pytest.RaisesExc(TransportError, match=DIAL_FAILURE)):
        await run_to_end(transport, send)
    assert trio.current_time() - started < 10
    assert wait_for_threads(before) == frozenset()
    # whatsmeow created its device store in our database before dialling
    assert "whatsmeow_device" in tables(database_url)
    with pytest.raises(trio.WouldBlock):
        recv.receive_nowait()
    # and the transport can be run again (the session retries with the same object)
    with trio.fail_after(30), pytest.RaisesGroup(pytest.RaisesExc(TransportError, match=DIAL_FAILURE)):
        await run_to_end(transport, send)
    assert wait_for_threads(before) == frozenset()


@pytest.mark.parametrize("delay", [0, 0.001, 0.02, 0.2])
async def test_cancelled_run_stops_quickly_and_leaves_no_thread(database_url: str, delay: float) -> None:
    before = live_threads()
    transport = NeonizeTransport("conn-2", database_url)
    send, _recv = trio.open_memory_channel[Event](16)
    cancelled_at = None
    with trio.fail_after(30):
        try:
            with trio.CancelScope() as scope:
                async with trio.open_nursery() as nursery:
                    await nursery.start(transport.run, send)
                    await trio.sleep(delay)
                    cancelled_at = trio.current_time()
                    scope.cancel()
        except* TransportError:  # the later cancels may come after the dial failed (in milliseconds, here)
            assert delay > 0
        if cancelled_at is not None:
            assert trio.current_time() - cancelled_at < 5
    assert wait_for_threads(before) == frozenset()
    with pytest.raises(NotConnected):
        await transport.send(SendText(to=CUSTOMER, body="oi"))


async def test_commands_before_connected_raise_not_connected(database_url: str) -> None:
    transport = NeonizeTransport("conn-3", database_url)
    with pytest.raises(NotConnected):
        await transport.send(SendText(to=CUSTOMER, body="oi"))
    with pytest.raises(NotConnected):
        await transport.request_pairing_code("+55 11 99999-0000")


async def test_a_device_gone_from_the_store_is_logged_out_not_a_crash(database_url: str) -> None:
    # neonize dereferences nil (and kills the process) when asked for a device that is not stored
    transport = NeonizeTransport("conn-4", database_url, device_jid=f"{SHOP}:12@s.whatsapp.net")
    send, recv = trio.open_memory_channel[Event](16)
    with trio.fail_after(30):
        await run_to_end(transport, send)  # returns: the session pairs anew
    event = recv.receive_nowait()
    assert isinstance(event, LoggedOut) and not event.banned and "no longer in the device store" in event.reason
    assert transport.device_jid is None


def store_device(database_url: str, device_jid: str) -> None:
    """A device row as whatsmeow writes one after pairing (keys are random bytes of the right sizes)."""
    import os

    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO whatsmeow_device (jid, registration_id, noise_key, identity_key, signed_pre_key,"
            " signed_pre_key_id, signed_pre_key_sig, adv_key, adv_details, adv_account_sig, adv_account_sig_key,"
            " adv_device_sig, push_name) VALUES (%s, 1234, %s, %s, %s, 1, %s, %s, %s, %s, %s, %s, 'Loja')",
            (device_jid, os.urandom(32), os.urandom(32), os.urandom(32), os.urandom(64), os.urandom(32),
             b"details", os.urandom(64), os.urandom(32), os.urandom(64)),
        )


async def test_a_stored_device_is_used_to_reconnect(database_url: str) -> None:
    before = live_threads()
    send, _recv = trio.open_memory_channel[Event](16)
    with trio.fail_after(30), pytest.RaisesGroup(pytest.RaisesExc(TransportError, match=DIAL_FAILURE)):
        await run_to_end(NeonizeTransport("conn-5", database_url), send)  # creates the whatsmeow tables
    device = f"{SHOP}:12@s.whatsapp.net"
    store_device(database_url, device)
    transport = NeonizeTransport("conn-5", database_url, device_jid=device)
    with trio.fail_after(30), pytest.RaisesGroup(pytest.RaisesExc(TransportError, match=DIAL_FAILURE)):
        await run_to_end(transport, send)
    assert transport.device_jid == device  # a network failure keeps the device
    assert wait_for_threads(before) == frozenset()
    # logout while not connected unlinks the device locally
    await transport.logout()
    assert transport.device_jid is None
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM whatsmeow_device").fetchone() == (0,)


async def test_a_database_whatsmeow_cannot_use_fails_the_start(database_url: str) -> None:
    transport = NeonizeTransport("conn-6", database_url + " options='-c search_path=elsewhere'")
    send, _recv = trio.open_memory_channel[Event](16)
    with trio.fail_after(30), pytest.RaisesGroup(pytest.RaisesExc(TransportError, match="options")):
        await run_to_end(transport, send)


# ─── the run machinery, with a scripted client in place of neonize's ────────────────────

def jid(user: str, server: str = "s.whatsapp.net", device: int = 0) -> nz.JID:
    return nz.JID(User=user, RawAgent=0, Device=device, Integrator=0, Server=server, IsEmpty=False)


EMPTY = nz.JID(User="", RawAgent=0, Device=0, Integrator=0, Server="", IsEmpty=True)


def text_event(text: str, id: str) -> nz.Message:
    source = nz.MessageSource(Chat=jid(CUSTOMER), Sender=jid(CUSTOMER), IsFromMe=False, IsGroup=False,
                              SenderAlt=EMPTY, RecipientAlt=EMPTY, BroadcastListOwner=EMPTY)
    info = nz.MessageInfo(MessageSource=source, ID=id, ServerID=0, Type="text", Pushname="Maria",
                          Timestamp=1_718_000_000_000, Category="", Multicast=False, MediaType="", Edit="")
    return nz.Message(Info=info, Message=wa.Message(conversation=text), IsEphemeral=False, IsViewOnce=False,
                      IsViewOnceV2=False, IsViewOnceV2Extension=False, IsDocumentWithCaption=False,
                      IsLottieSticker=False, IsEdit=False, UnavailableRequestID="", RetryCount=0)


class ScriptedEvents:
    def __init__(self) -> None:
        self.handlers: dict[type, Callable[[Any, Any], None]] = {}
        self.qr_handler: Callable[[Any, bytes], None] | None = None

    def __call__(self, event_type: type) -> Callable[[Callable[[Any, Any], None]], None]:
        def register(handler: Callable[[Any, Any], None]) -> None:
            self.handlers[event_type] = handler
        return register

    def qr(self, handler: Callable[[Any, bytes], None]) -> None:
        self.qr_handler = handler


class ScriptedClient:
    """Like neonize's client: `connect` blocks its thread until `stop`, callbacks run on that thread.
    The test queues steps (`client.then(...)`) that the client thread performs in order."""

    def __init__(self, database: str, *, jid: nz.JID | None, uuid: str, new_device: bool, props: Any,
                 on_login_status: Callable[[str], None], ignore_stop: bool = False) -> None:
        self.database, self.jid, self.uuid, self.new_device = database, jid, uuid, new_device
        self.on_login_status = on_login_status
        self.event = ScriptedEvents()
        self.steps: queue.Queue[Callable[[ScriptedClient], None]] = queue.Queue()
        self.stopped = threading.Event()
        self.released = threading.Event()
        self.ignore_stop = ignore_stop
        self.done_steps = 0
        self.sent: list[tuple[nz.JID, wa.Message]] = []
        self.fail_sends = False
        self.logged_out = False

    def then(self, step: Callable[[ScriptedClient], None]) -> None:
        self.steps.put(step)

    def connect(self) -> None:
        while True:
            if self.released.is_set() or (self.stopped.is_set() and not self.ignore_stop):
                return
            try:
                step = self.steps.get(timeout=0.01)
            except queue.Empty:
                continue
            step(self)
            self.done_steps += 1

    def stop(self) -> None:
        self.stopped.set()

    def emit(self, event: Any) -> None:
        self.event.handlers[type(event)](self, event)

    def qr(self, code: str) -> None:
        assert self.event.qr_handler is not None
        self.event.qr_handler(self, code.encode())

    def get_me(self) -> nz.Device:
        return nz.Device(JID=jid(SHOP, device=12), Platform="", BussinessName="", PushName="Loja Centro",
                         Initialized=True)

    def send_message(self, to: nz.JID, message: wa.Message) -> nz.SendResponse:
        if self.fail_sends:
            raise SendMessageError("server returned error 479")
        self.sent.append((to, message))
        return nz.SendResponse(ID="3EB0SENT", Timestamp=1_718_000_000, ServerID=0)

    def PairPhone(self, phone: str, show_push_notification: bool, client_name: Any) -> str:
        return f"ABCD-{phone[-4:]}"

    def logout(self) -> None:
        self.logged_out = True


class Scripted:
    """A client factory that remembers the clients it made."""

    def __init__(self, **options: Any) -> None:
        self.options = options
        self.clients: list[ScriptedClient] = []
        self.made = trio.Event()

    def __call__(self, *args: Any, **kwargs: Any) -> ScriptedClient:  # called by `run`, in trio
        client = ScriptedClient(*args, **kwargs, **self.options)
        self.clients.append(client)
        self.made.set()
        return client

    async def client(self) -> ScriptedClient:
        await self.made.wait()
        return self.clients[-1]


CONNECTED = nz.Connected(status=True)


async def test_events_from_foreign_threads_arrive_in_order() -> None:
    factory = Scripted()
    transport = NeonizeTransport("s1", "host=/nowhere dbname=zap", client_factory=factory)
    send, recv = trio.open_memory_channel[Event](16)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(transport.run, send)
            client = await factory.client()
            assert client.new_device and client.jid is None and client.database.startswith("postgres://")
            client.then(lambda c: c.qr("2@first"))
            client.then(lambda c: c.qr("2@second"))
            client.then(lambda c: c.emit(nz.PairStatus(ID=jid(SHOP, device=12), BusinessName="", Platform="",
                                                       Status=nz.PairStatus.SUCCESS)))
            client.then(lambda c: c.emit(CONNECTED))
            client.then(lambda c: c.emit(text_event("oi", "3A1")))
            client.then(lambda c: c.emit(nz.Receipt(
                MessageSource=nz.MessageSource(Chat=jid(CUSTOMER), Sender=jid(CUSTOMER), IsFromMe=False,
                                               IsGroup=False, SenderAlt=EMPTY, RecipientAlt=EMPTY,
                                               BroadcastListOwner=EMPTY),
                MessageIDs=["3EB0SENT"], Timestamp=1_718_000_000, Type=nz.Receipt.READ)))
            assert await recv.receive() == QrCode("2@first", 1)
            assert await recv.receive() == QrCode("2@second", 2)
            assert await recv.receive() == Connected(jid=f"{SHOP}:12@s.whatsapp.net")
            assert await recv.receive() == Connected(jid=f"{SHOP}:12@s.whatsapp.net", push_name="Loja Centro")
            message = await recv.receive()
            assert isinstance(message, InboundMessage) and message.body == "oi"
            receipt = await recv.receive()
            assert isinstance(receipt, Receipt) and receipt.ids == ("3EB0SENT",)
            assert transport.device_jid == f"{SHOP}:12@s.whatsapp.net"

            sent = await transport.send(SendText(to=f"{CUSTOMER}@s.whatsapp.net", body="Olá!"))
            assert sent.id == "3EB0SENT" and sent.timestamp.year == 2024
            assert client.sent[0][0].User == CUSTOMER and client.sent[0][1].conversation == "Olá!"
            client.fail_sends = True
            with pytest.raises(SendFailed, match="479"):
                await transport.send(SendText(to=CUSTOMER, body="de novo"))
            nursery.cancel_scope.cancel()
    assert client.stopped.is_set()


async def test_a_full_mailbox_blocks_the_callback_thread() -> None:
    factory = Scripted()
    transport = NeonizeTransport("s2", "host=/nowhere dbname=zap", client_factory=factory)
    send, recv = trio.open_memory_channel[Event](1)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(transport.run, send)
            client = await factory.client()
            for n in range(5):
                client.then(lambda c, n=n: c.emit(text_event(f"msg {n}", f"3A{n}")))
            await trio.sleep(0.3)
            # one message sits in the mailbox, the callback thread waits inside the second
            assert client.done_steps == 1
            bodies = [(await recv.receive()).body for _ in range(5)]  # type: ignore[union-attr]
            assert bodies == [f"msg {n}" for n in range(5)]  # nothing lost, order kept
            nursery.cancel_scope.cancel()


async def test_stop_while_a_callback_waits_on_a_full_mailbox() -> None:
    before = live_threads()
    factory = Scripted()
    transport = NeonizeTransport("s3", "host=/nowhere dbname=zap", client_factory=factory)
    send, _recv = trio.open_memory_channel[Event](0)  # nobody reads
    with trio.fail_after(10):
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                await nursery.start(transport.run, send)
                client = await factory.client()
                client.then(lambda c: c.emit(text_event("stuck", "3A9")))
                client.then(lambda c: c.emit(text_event("after stop", "3A10")))
                await trio.sleep(0.2)
                assert client.done_steps == 0  # the callback thread is blocked in the first delivery
                stop_at = trio.current_time()
                scope.cancel()
        assert trio.current_time() - stop_at < 5
    assert wait_for_threads(before) == frozenset()
    assert client.stopped.is_set()


async def test_logged_out_from_the_phone_ends_the_run() -> None:
    factory = Scripted()
    transport = NeonizeTransport("s4", "host=/nowhere dbname=zap", client_factory=factory)
    send, recv = trio.open_memory_channel[Event](16)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(transport.run, send)
            client = await factory.client()
            client.then(lambda c: c.emit(CONNECTED))
            client.then(lambda c: c.emit(nz.LoggedOut(OnConnect=False, Reason=nz.LOGGED_OUT)))
        # run returned by itself
    assert isinstance(recv.receive_nowait(), Connected)
    logged_out = recv.receive_nowait()
    assert isinstance(logged_out, LoggedOut) and not logged_out.banned
    assert transport.device_jid is None


async def test_stream_replaced_ends_the_run_with_an_error() -> None:
    factory = Scripted()
    transport = NeonizeTransport("s5", "host=/nowhere dbname=zap", client_factory=factory)
    send, recv = trio.open_memory_channel[Event](16)
    with trio.fail_after(10), pytest.RaisesGroup(pytest.RaisesExc(TransportError, match="replaced")):
        async with trio.open_nursery() as nursery:
            await nursery.start(transport.run, send)
            client = await factory.client()
            client.then(lambda c: c.emit(CONNECTED))
            client.then(lambda c: c.emit(nz.Disconnected(status=True)))
            client.then(lambda c: c.emit(nz.StreamReplaced()))
    events = [recv.receive_nowait() for _ in range(3)]
    assert [type(e) for e in events] == [Connected, Disconnected, Disconnected]


async def test_qr_not_scanned_in_time() -> None:
    factory = Scripted()
    transport = NeonizeTransport("s6", "host=/nowhere dbname=zap", client_factory=factory)
    send, _recv = trio.open_memory_channel[Event](16)
    with trio.fail_after(10), pytest.RaisesGroup(pytest.RaisesExc(TransportError, match="not scanned")):
        async with trio.open_nursery() as nursery:
            await nursery.start(transport.run, send)
            client = await factory.client()
            client.then(lambda c: c.qr("2@only"))
            client.then(lambda c: c.on_login_status("timeout"))


async def test_pairing_by_phone_number() -> None:
    factory = Scripted()
    transport = NeonizeTransport("s7", "host=/nowhere dbname=zap", client_factory=factory)
    send, recv = trio.open_memory_channel[Event](16)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(transport.run, send)
            client = await factory.client()
            client.then(lambda c: c.qr("2@first"))
            assert await recv.receive() == QrCode("2@first", 1)
            assert await transport.request_pairing_code("+55 11 99999-0000") == "ABCD-0000"
            assert await recv.receive() == PairingCode("ABCD-0000")
            with pytest.raises(NotConnected):  # not paired yet
                await transport.send(SendText(to=CUSTOMER, body="oi"))
            nursery.cancel_scope.cancel()


async def test_logout_ends_the_run() -> None:
    factory = Scripted()
    transport = NeonizeTransport("s8", "host=/nowhere dbname=zap", client_factory=factory)
    send, recv = trio.open_memory_channel[Event](16)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(transport.run, send)
            client = await factory.client()
            client.then(lambda c: c.emit(CONNECTED))
            assert isinstance(await recv.receive(), Connected)
            await transport.logout()
        assert client.logged_out
    assert recv.receive_nowait() == LoggedOut("logged out")
    assert transport.device_jid is None


async def test_a_client_that_ignores_stop_does_not_hold_up_the_session(caplog: pytest.LogCaptureFixture) -> None:
    # neonize's QR loop only ends when the shown code expires: stop returns anyway, and says so
    before = live_threads()
    factory = Scripted(ignore_stop=True)
    transport = NeonizeTransport("s9", "host=/nowhere dbname=zap", client_factory=factory)
    send, _recv = trio.open_memory_channel[Event](16)
    with caplog.at_level(logging.WARNING, logger="zapgate.whatsapp.neonize"), trio.fail_after(10):
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                await nursery.start(transport.run, send)
                client = await factory.client()
                client.then(lambda c: c.qr("2@shown"))
                await trio.sleep(0.1)
                stop_at = trio.current_time()
                scope.cancel()
        assert trio.current_time() - stop_at < STOP_DEADLINE + 1
    assert "still running" in caplog.text
    client.released.set()
    assert wait_for_threads(before) == frozenset()
