"""The intake's fast path, through the sandbox: once a conversation's actor holds the contact and an
active ticket, each message is one batched statement (storage/queries.sql `message_intake_active`).
What a user sees must not change: every message stored once, in order, the ticket's unread count, last
message and ordering time right, and a closed ticket never written to (the next message opens a new
one), also when it was closed behind the actor's back (by another node)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg
import trio

from gateway.broker import Subscription
from storage import conversations
from storage.conversations import ContactIdentity, IncomingRow
from storage.writer import Batched
from tests.integration.conftest import Api, Server, auth
from tests.integration.test_conversations import connected_sandbox, inbound, wait_sql

TIMEOUT = 60
ANA = "5511970000001"


def batched_writes(server: Server) -> int:
    return server.deps.tickets.writer.stats()["batched_writes"]


def created_messages(events: Subscription) -> list[dict[str, Any]]:
    created = []
    while (event := events.receive_nowait()) is not None:
        if event.name == "company-1-appMessage" and event.payload["action"] == "create":
            created.append(event.payload)
    return created


def ticket_row(server: Server, ticket_id: int) -> tuple[Any, ...]:
    return server.sql("SELECT status, unread_messages, last_message, last_message_at, updated_at, "
                      "(SELECT count(*) FROM messages WHERE ticket_id = t.id) FROM tickets t WHERE id = %s",
                      (ticket_id,))[0]


async def first_message(api: Api, server: Server, token: str, wid: int, number: str, body: str) -> int:
    """The conversation's first message (the full intake: contact and ticket are created); its ticket."""
    await inbound(api, token, wid, **{"from": number, "name": "Ana", "body": body})
    await wait_sql(server, "SELECT count(*) FROM messages m JOIN contacts c ON c.id = m.contact_id "
                           "WHERE c.number = %s", (number,), [(1,)])
    return server.sql("SELECT t.id FROM tickets t JOIN contacts c ON c.id = t.contact_id WHERE c.number = %s",
                      (number,))[0][0]


async def test_a_long_conversation_keeps_its_order_and_the_tickets_counters(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT), server.broker.subscribe(1) as events:
        token = await api.admin_token()
        wid = await connected_sandbox(api, token)
        ticket = await first_message(api, server, token, wid, ANA, "oi")
        before = batched_writes(server)
        start = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
        for index in range(80):
            await inbound(api, token, wid, **{"from": ANA, "name": "Ana", "body": f"message {index}",
                                              "timestamp": (start + dt.timedelta(seconds=index)).isoformat()})
        await wait_sql(server, "SELECT count(*) FROM messages WHERE ticket_id = %s", (ticket,), [(81,)])
        assert batched_writes(server) - before == 80  # all of them took the fast path

        bodies = [row[0] for row in server.sql("SELECT body FROM messages WHERE ticket_id = %s ORDER BY id",
                                               (ticket,))]
        assert bodies == ["oi"] + [f"message {index}" for index in range(80)]
        status, unread, last, last_at, _, count = ticket_row(server, ticket)
        assert (status, unread, last, count) == ("pending", 81, "message 79", 81)
        assert last_at == max(row[0] for row in server.sql("SELECT wa_timestamp FROM messages WHERE ticket_id = %s",
                                                           (ticket,)))
        # what the frontends were told: each message once, in order, with the ticket's running unread count
        created = created_messages(events)
        assert [payload["message"]["body"] for payload in created] == bodies
        assert [payload["ticket"]["unreadMessages"] for payload in created] == list(range(1, 82))
        assert created[-1]["ticket"]["lastMessage"] == "message 79" and created[-1]["ticket"]["id"] == ticket

        # a late message (older timestamp) is stored and counted, but the ordering time does not go back
        await inbound(api, token, wid, **{"from": ANA, "name": "Ana", "body": "late",
                                          "timestamp": (start - dt.timedelta(days=1)).isoformat()})
        await wait_sql(server, "SELECT count(*) FROM messages WHERE ticket_id = %s", (ticket,), [(82,)])
        assert ticket_row(server, ticket)[1:4] == (82, "late", last_at)


async def test_a_redelivered_message_is_stored_and_counted_once(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT), server.broker.subscribe(1) as events:
        token = await api.admin_token()
        wid = await connected_sandbox(api, token)
        ticket = await first_message(api, server, token, wid, ANA, "oi")
        before = batched_writes(server)
        for _ in range(3):
            await inbound(api, token, wid, **{"from": ANA, "name": "Ana", "id": "3EB0FASTPATH0001", "body": "again"})
        await inbound(api, token, wid, **{"from": ANA, "name": "Ana", "body": "after"})
        await wait_sql(server, "SELECT count(*) FROM messages WHERE body = 'after'", None, [(1,)])
        assert batched_writes(server) - before == 4
        assert server.sql("SELECT count(*) FROM messages WHERE wid = '3EB0FASTPATH0001'") == [(1,)]
        assert ticket_row(server, ticket)[1:3] == (3, "after")
        assert [payload["message"]["body"] for payload in created_messages(events)] == ["oi", "again", "after"]


async def test_after_an_agent_closes_the_ticket_the_next_message_opens_a_new_one(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        wid = await connected_sandbox(api, token)
        ticket = await first_message(api, server, token, wid, ANA, "oi")
        await inbound(api, token, wid, **{"from": ANA, "name": "Ana", "body": "still there?"})
        await wait_sql(server, "SELECT count(*) FROM messages WHERE ticket_id = %s", (ticket,), [(2,)])
        closed = await api.client.put(f"/tickets/{ticket}", json={"status": "closed"}, headers=auth(token))
        assert closed.status_code == 200, closed.text
        as_closed = ticket_row(server, ticket)
        assert as_closed[0] == "closed"

        await inbound(api, token, wid, **{"from": ANA, "name": "Ana", "body": "hello again"})
        await inbound(api, token, wid, **{"from": ANA, "name": "Ana", "body": "anyone?"})
        await wait_sql(server, "SELECT count(*) FROM messages WHERE body IN ('hello again', 'anyone?')", None, [(2,)])
        assert ticket_row(server, ticket) == as_closed  # nothing written to the closed ticket
        tickets = server.sql("SELECT id, status, unread_messages, last_message FROM tickets ORDER BY id")
        assert len(tickets) == 2 and tickets[0][0] == ticket
        newer = tickets[1][0]
        assert tickets[1][1:] == ("pending", 2, "anyone?")
        assert server.sql("SELECT body FROM messages WHERE ticket_id = %s ORDER BY id", (newer,)) == \
            [("hello again",), ("anyone?",)]


async def test_a_ticket_closed_behind_the_actors_back_is_not_written_to(api: Api, server: Server) -> None:
    """Another node closed it: the actor still holds it as pending, so the fast path meets a closed ticket."""
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        wid = await connected_sandbox(api, token)
        old_wid = await inbound(api, token, wid, **{"from": ANA, "name": "Ana", "body": "oi"})
        await wait_sql(server, "SELECT count(*) FROM messages", None, [(1,)])
        ticket = server.sql("SELECT id FROM tickets")[0][0]
        server.sql("UPDATE tickets SET status = 'closed' WHERE id = %s", (ticket,))
        as_closed = ticket_row(server, ticket)
        before = batched_writes(server)

        # a redelivery of a message the closed ticket holds: still stored once, and no ticket opened for it
        await inbound(api, token, wid, **{"from": ANA, "name": "Ana", "id": old_wid, "body": "oi"})
        await inbound(api, token, wid, **{"from": ANA, "name": "Ana", "body": "new question"})
        await wait_sql(server, "SELECT count(*) FROM messages", None, [(2,)])
        await inbound(api, token, wid, **{"from": ANA, "name": "Ana", "body": "and another"})
        await wait_sql(server, "SELECT count(*) FROM messages", None, [(3,)])
        assert batched_writes(server) - before == 3  # all three met the closed ticket on the fast path, or its heir

        assert ticket_row(server, ticket) == as_closed
        assert server.sql("SELECT count(*) FROM messages WHERE wid = %s", (old_wid,)) == [(1,)]
        tickets = server.sql("SELECT id, status, unread_messages, last_message FROM tickets ORDER BY id")
        assert len(tickets) == 2
        newer = tickets[1][0]
        assert tickets[1][1:] == ("pending", 2, "and another")
        assert server.sql("SELECT body FROM messages WHERE ticket_id = %s ORDER BY id", (newer,)) == \
            [("new question",), ("and another",)]
        assert server.sql("SELECT kind FROM ticket_events WHERE ticket_id = %s", (newer,)) == [("created",)]


async def test_many_chats_at_once_each_keep_order_and_counts(api: Api, server: Server) -> None:
    contacts, messages = 25, 20
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        wid = await connected_sandbox(api, token)
        sandbox = server.deps.sandbox
        numbers = [f"55119710{index:05d}" for index in range(contacts)]

        async def chat(number: str) -> None:
            for index in range(messages):
                await sandbox.inbound(wid, sender=number, name=f"Cliente {number[-3:]}", body=f"{number} {index}")

        async with trio.open_nursery() as nursery:
            for number in numbers:
                nursery.start_soon(chat, number)
        await wait_sql(server, "SELECT count(*) FROM messages", None, [(contacts * messages,)])
        assert batched_writes(server) >= contacts * (messages - 1)  # all but each chat's first message
        rows = server.sql("SELECT c.number, t.status, t.unread_messages, t.last_message FROM tickets t "
                          "JOIN contacts c ON c.id = t.contact_id ORDER BY c.number")
        assert rows == [(number, "pending", messages, f"{number} {messages - 1}") for number in numbers]
        for number in numbers:
            bodies = [row[0] for row in server.sql(
                "SELECT m.body FROM messages m JOIN contacts c ON c.id = m.contact_id WHERE c.number = %s "
                "ORDER BY m.id", (number,))]
            assert bodies == [f"{number} {index}" for index in range(messages)]


async def test_a_close_that_races_the_fast_path_wins_and_the_message_opens_a_new_ticket(
        api: Api, server: Server) -> None:
    """The close commits while the fast-path statement waits for the ticket's row: the statement must see
    the ticket closed then (not as it was when the statement began) and store nothing in it."""
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        wid = await connected_sandbox(api, token)
        ticket_id = await first_message(api, server, token, wid, ANA, "oi")
        db = server.db
        contact = await db.fetch_one("SELECT * FROM contacts WHERE number = %s", (ANA,))
        ticket = await conversations.show_ticket(db, 1, ticket_id)
        message = IncomingRow(wid="3EB0RACE0001", from_me=False, body="racing", media_type="chat",
                              at=dt.datetime.now(dt.UTC))
        write = conversations.intake_write(db.q, company_id=1, whatsapp_id=wid, who=ContactIdentity(
            number=ANA, name="Ana"), contact=contact, ticket=ticket, message=message)
        assert isinstance(write, Batched)  # the fast path

        before = ticket_row(server, ticket_id)
        closer = await trio.to_thread.run_sync(lambda: psycopg.connect(server.database_url))
        try:
            await trio.to_thread.run_sync(closer.execute, "UPDATE tickets SET status = 'closed' WHERE id = %s",
                                          (ticket_id,))  # not committed yet: the row stays locked
            results: list[Any] = []

            async def store() -> None:
                results.append(await server.deps.tickets.writer.submit(write))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(store)
                await wait_sql(server, "SELECT count(*) > 0 FROM pg_locks WHERE NOT granted", None, [(True,)])
                await trio.to_thread.run_sync(closer.commit)
        finally:
            await trio.to_thread.run_sync(closer.close)

        [intake] = results
        assert intake.message is not None and intake.ticket_created and intake.ticket["id"] != ticket_id
        assert intake.message["ticket_id"] == intake.ticket["id"]
        assert ticket_row(server, ticket_id) == ("closed", *before[1:])  # nothing written to it
        assert server.sql("SELECT status, unread_messages, last_message FROM tickets WHERE id = %s",
                          (intake.ticket["id"],)) == [("pending", 1, "racing")]
