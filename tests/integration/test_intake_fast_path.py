"""The intake's fast path, through the sandbox: once a conversation's actor holds the contact and an
active ticket, each message is a batched write, and a group commit's are one statement together
(storage/queries.sql `message_intake_batch`; `message_intake_active` per message as the fallback).
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
        # (announced just after its commit: the last one may still be on its way when the rows are read)
        created = created_messages(events)
        while len(created) < len(bodies):
            await trio.sleep(0.05)
            created += created_messages(events)
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


async def test_one_statement_for_a_group_commit_two_chats_of_one_ticket_and_a_duplicate(
        api: Api, server: Server) -> None:
    """`conversations.intake_many` (one set-based statement per group commit), straight against the database:
    each row goes back to its own write; two messages of one ticket in one group (a phone chat and a LID chat
    of one contact) add up; a message stored before gets no row; a closed ticket is not written to; a quote
    resolves; two writes naming the same WhatsApp message fall back to a statement each."""
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        wid = await connected_sandbox(api, token)
        ana = await first_message(api, server, token, wid, ANA, "oi")
        bia = await first_message(api, server, token, wid, "5511970000002", "olá")
        closed = await first_message(api, server, token, wid, "5511970000003", "tchau")
        server.sql("UPDATE tickets SET status = 'closed' WHERE id = %s", (closed,))
        ana_wid = server.sql("SELECT wid FROM messages WHERE ticket_id = %s", (ana,))[0][0]
        contact = {ticket: server.sql("SELECT contact_id FROM tickets WHERE id = %s", (ticket,))[0][0]
                   for ticket in (ana, bia, closed)}
        at = dt.datetime(2026, 5, 1, 9, 0, tzinfo=dt.UTC)

        def params(ticket: int, wid_text: str, body: str, minute: int, quoted: str | None = None) -> dict[str, Any]:
            return {"company_id": 1, "whatsapp_id": wid, "ticket_id": ticket, "contact_id": contact[ticket],
                    "wid": wid_text, "from_me": False, "body": body, "media_type": "chat", "media_url": None,
                    "media_name": None, "media_mimetype": None, "ack": 0, "status": "received", "quoted_wid": quoted,
                    "participant": None, "wa_timestamp": at + dt.timedelta(minutes=minute), "read": False,
                    "sent_by_user_id": None, "unread": 1, "last_message": body, "latitude": None,
                    "longitude": None}

        group = [params(ana, "G1", "primeira", 1, quoted=ana_wid), params(bia, "G2", "da bia", 2),
                 params(ana, "G3", "segunda", 3), params(ana, ana_wid, "de novo", 4), params(closed, "G5", "x", 5)]
        unread_before = server.sql("SELECT unread_messages FROM tickets WHERE id = %s", (ana,))[0][0]
        q = server.db.q

        def run(batch: list[dict[str, Any]]) -> list[Any]:
            with psycopg.connect(server.database_url, row_factory=psycopg.rows.dict_row) as conn:
                return conversations.intake_many(q, conn, batch)

        rows = await trio.to_thread.run_sync(run, group)
        assert [row and row["wid"] for row in rows] == ["G1", "G2", "G3", None, None]
        quoted_id = server.sql("SELECT id FROM messages WHERE wid = %s", (ana_wid,))[0][0]
        assert rows[0]["quoted_msg_id"] == quoted_id and rows[0]["ticket_id"] == ana and rows[1]["ticket_id"] == bia
        for row in rows[0], rows[2]:  # both carry their ticket after the whole group: two more unread, the later text
            assert row["ticket_unread_messages"] == unread_before + 2 and row["ticket_last_message"] == "segunda"
        assert server.sql("SELECT unread_messages, last_message FROM tickets WHERE id = %s", (ana,)) == [
            (unread_before + 2, "segunda")]
        assert server.sql("SELECT count(*) FROM messages WHERE ticket_id = %s", (closed,)) == [(1,)]
        # a write naming another company for this ticket touches nothing, and the rest of its group goes through
        foreign = {**params(bia, "G7", "alheia", 7), "company_id": 2}
        rows = await trio.to_thread.run_sync(run, [foreign, params(bia, "G8", "da bia de novo", 8)])
        assert rows[0] is None and rows[1] is not None and rows[1]["wid"] == "G8"
        assert server.sql("SELECT count(*) FROM messages WHERE wid = 'G7'") == [(0,)]
        # the same WhatsApp message twice in one group: a statement each, the second finds it stored
        twice = [params(bia, "G9", "um", 6), params(bia, "G9", "um", 6)]
        rows = await trio.to_thread.run_sync(run, twice)
        assert rows[0] is not None and rows[0]["wid"] == "G9" and rows[1] is None
        assert server.sql("SELECT count(*) FROM messages WHERE wid = 'G9'") == [(1,)]
