"""Ticket actors stopped, passivated or crashing while their chat's messages keep arriving lose nothing.

Issue 22, items 3 and 5: a stop leaves the registry first and finishes its mailbox; a crash keeps the
mailbox and tries the message again; every request waiting on an actor is answered within its bound.
"""

from __future__ import annotations

from typing import Any

import trio

from actors import ticket as ticket_module
from actors.ticket import ActorUnavailable, TicketActor
from storage import conversations
from storage.errors import Unavailable
from tests.integration.conftest import Api, Server
from tests.integration.test_conversations import connected_sandbox, wait_sql

TIMEOUT = 120
MESSAGES = 1_000
CONTACT = "5511977770000"
CRASH_ON = {"m 100", "m 300", "m 500", "m 700"}  # each crashes its actor once (under the actor's restart budget)


async def conversation_with_a_ticket(api: Api, server: Server) -> tuple[str, int, int]:
    """(admin token, a connected sandbox connection, the ticket CONTACT's first message opened)."""
    sandbox = server.deps.sandbox
    assert sandbox is not None
    token = await api.admin_token()
    wid = await connected_sandbox(api, token)
    await sandbox.inbound(wid, sender=CONTACT, body="hello")
    await wait_sql(server, "SELECT count(*) FROM messages", None, [(1,)])
    return token, wid, server.sql("SELECT id FROM tickets")[0][0]


async def test_stops_and_crashes_while_messages_arrive_lose_nothing_and_answer_every_request(
        api: Api, server: Server, monkeypatch: Any) -> None:
    router = server.deps.tickets
    sandbox = server.deps.sandbox
    assert sandbox is not None
    router.ask_timeout = 5.0
    crashed: list[str] = []
    original = TicketActor._on_inbound

    async def flaky(self: TicketActor, event: Any) -> None:
        if event.body in CRASH_ON and event.body not in crashed:
            crashed.append(event.body)
            raise RuntimeError(f"injected crash on {event.body!r}")
        await original(self, event)

    monkeypatch.setattr(TicketActor, "_on_inbound", flaky)
    with trio.fail_after(TIMEOUT):
        _, wid, ticket_id = await conversation_with_a_ticket(api, server)
        ticket = await conversations.show_ticket(server.deps.db, 1, ticket_id)
        key = (wid, f"{CONTACT}@s.whatsapp.net")
        stops = 0
        answers: list[tuple[str, float]] = []
        spawned_before = router._spawned

        async def chaos() -> None:  # stop (passivate) the chat's actor every few ms, busy or not
            nonlocal stops
            while True:
                handle = router.registry.lookup(key)
                if handle is not None and not handle.stopping:
                    handle.stop()
                    stops += 1
                await trio.sleep(0.003)

        async def requests() -> None:  # an API caller asking the same actor all along
            async def who(actor: TicketActor) -> str:
                return actor.chat

            while True:
                began = trio.current_time()
                try:
                    result = await router.call(1, ticket, who)
                except ActorUnavailable:
                    result = "unavailable"
                answers.append((result, trio.current_time() - began))
                await trio.sleep(0.005)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(chaos)
            nursery.start_soon(requests)
            for index in range(MESSAGES):
                await sandbox.inbound(wid, sender=CONTACT, body=f"m {index}")
                if index % 50 == 0:  # paced by the chaos, not the clock: a stop at least every 50 messages
                    target = stops + 1  # (a loaded machine otherwise delivers them all between a few stops)
                    while stops < target:
                        await trio.sleep(0.003)
            await wait_sql(server, "SELECT count(*), count(DISTINCT wid) FROM messages", None,
                           [(MESSAGES + 1, MESSAGES + 1)])
            nursery.cancel_scope.cancel()
        assert sorted(crashed) == sorted(CRASH_ON)  # each crashed once, and was stored on its second try
        assert stops >= 20 and router._spawned - spawned_before >= 20  # the chat went through many actors
        assert answers and all(seconds <= router.ask_timeout + 0.5 for _, seconds in answers)
        assert sum(result == key[1] for result, _ in answers) >= len(answers) // 2
        # one ticket, the messages in the order the contact sent them
        bodies = [row[0] for row in server.sql("SELECT body FROM messages ORDER BY id")]
        assert bodies == ["hello"] + [f"m {index}" for index in range(MESSAGES)]
        assert server.sql("SELECT count(*) FROM tickets") == [(1,)]
        stats = router.stats()
        assert stats["set_aside_total"] == 0 and stats["left_unsettled_total"] == 0


async def test_a_crash_looping_actor_is_given_up_shows_in_health_and_its_messages_come_again(
        api: Api, server: Server, monkeypatch: Any) -> None:
    """Past its own restart budget an actor is given up (not the process): requests answered, events left
    unsettled; the network delivers them again after a reconnect, once the cause is gone."""
    router = server.deps.tickets
    sandbox = server.deps.sandbox
    assert sandbox is not None
    monkeypatch.setattr(ticket_module, "RESTART_BUDGET", (2, 60.0))
    broken = True
    original = TicketActor._on_inbound

    async def failing(self: TicketActor, event: Any) -> None:
        if broken and event.body.startswith("poison"):
            raise RuntimeError("injected: this conversation's actor always crashes")
        await original(self, event)

    monkeypatch.setattr(TicketActor, "_on_inbound", failing)
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        wid = await connected_sandbox(api, token)
        for index in range(5):
            await sandbox.inbound(wid, sender=CONTACT, body=f"poison {index}")
        await sandbox.inbound(wid, sender="5511977771111", body="another chat")
        await wait_sql(server, "SELECT body FROM messages", None, [("another chat",)])  # the others go on
        while not router.stats()["given_up_total"]:
            await trio.sleep(0.05)
        health = (await api.client.get("/health")).json()
        assert health["tickets"]["given_up_total"] >= 1 and health["tickets"]["crash_loop"] is True
        assert health["status"] == "degraded" and "crash-looping" in health["reason"]
        assert server.sql("SELECT count(*) FROM messages WHERE body LIKE 'poison%%'") == [(0,)]
        # the cause is fixed; the connection drops and comes back: the network delivers them again
        broken = False
        response = await api.client.post(f"/sandbox/{wid}/fault", json={"kind": "disconnect"},
                                         headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200, response.text
        await wait_sql(server, "SELECT count(*) FROM messages WHERE body LIKE 'poison%%'", None, [(5,)])


async def test_a_stuck_chat_never_blocks_the_session_or_other_chats(api: Api, server: Server, monkeypatch: Any) -> None:
    """Item 10: one chat whose actor hangs (mailbox full, and more) while other chats of the number go on."""
    sandbox = server.deps.sandbox
    assert sandbox is not None
    release = trio.Event()
    original = TicketActor._on_inbound

    async def stuck(self: TicketActor, event: Any) -> None:
        if self.chat.startswith("5511966660000"):
            await release.wait()
        await original(self, event)

    monkeypatch.setattr(TicketActor, "_on_inbound", stuck)
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        wid = await connected_sandbox(api, token)
        stuck_count = ticket_module.MAILBOX + 100  # its mailbox fills; the rest waits in its overflow
        for index in range(stuck_count):
            await sandbox.inbound(wid, sender="5511966660000", body=f"slow {index}")
        for index in range(20):
            await sandbox.inbound(wid, sender="5511966661111", body=f"quick {index}")
        # the other chat is stored while the first is still stuck
        await wait_sql(server, "SELECT count(*) FROM messages WHERE body LIKE 'quick%%'", None, [(20,)])
        assert server.sql("SELECT count(*) FROM messages WHERE body LIKE 'slow%%'") == [(0,)]
        assert server.deps.tickets.stats()["overflowed"] > 0
        release.set()
        await wait_sql(server, "SELECT count(*) FROM messages WHERE body LIKE 'slow%%'", None, [(stuck_count,)])
        bodies = [row[0] for row in server.sql("SELECT body FROM messages WHERE body LIKE 'slow%%' ORDER BY id")]
        assert bodies == [f"slow {index}" for index in range(stuck_count)]  # in order, overflow after mailbox
        assert server.deps.tickets.stats()["overflowed"] == 0


async def test_an_outbox_write_whose_commit_went_unheard_is_stored_and_sent_once(
        api: Api, server: Server, monkeypatch: Any) -> None:
    """Item 11: the COMMIT went through but its answer was lost (a connection cut): the retry finds the row by
    the id chosen before the write, so the message is stored once and sent once."""
    sandbox = server.deps.sandbox
    assert sandbox is not None
    writer = server.deps.tickets.writer
    original = writer.submit
    lost: list[Any] = []

    async def submit(write: Any) -> Any:
        result = await original(write)
        if not lost and getattr(write, "__qualname__", "").endswith("_on_send.<locals>.write"):
            lost.append(result)
            raise Unavailable("server closed the connection unexpectedly (injected after the COMMIT)")
        return result

    monkeypatch.setattr(writer, "submit", submit)
    with trio.fail_after(TIMEOUT):
        token, wid, ticket_id = await conversation_with_a_ticket(api, server)
        response = await api.client.post(f"/messages/{ticket_id}", json={"body": "once"},
                                         headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 201, response.text
        assert lost, "the injected fault did not fire"
        await wait_sql(server, "SELECT count(*), min(status) FROM messages WHERE body = 'once'", None, [(1, "sent")])
        assert [entry["body"] for entry in await sandbox.outbox(wid)] == ["once"]
