"""A message's `ack` on the Whaticket family's scale (Baileys' message status, as ticketz and whaticket-saas store
it and their frontends draw it): a sent message walks 1 pending → 2 sent → 3 delivered → 4 read (→ 5 played), a
failed send is -1 and stays so, a contact's message is 0, an internal note 2; and migration 9 moves the rows
stored on the scale zapgate had before."""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg
import trio

from gateway.broker import Subscription
from gateway.whatsapp import transport as wa
from storage import migrate
from tests.integration.conftest import Api, Server, auth
from tests.integration.test_conversations import connected_sandbox, inbound, wait_sql

TIMEOUT = 30
COMPANY = 1
CUSTOMER = "5511955550000"


async def acks_until(events: Subscription, message_id: int, last: int) -> list[int]:
    """The acks the appMessage events show for message `message_id`, in order (repeats folded), until `last`."""
    seen: list[int] = []
    while not seen or seen[-1] != last:
        event = await events.receive()
        if event.name == f"company-{COMPANY}-appMessage" and event.payload["message"]["id"] == message_id:
            ack = event.payload["message"]["ack"]
            if not seen or seen[-1] != ack:
                seen.append(ack)
    return seen


async def listed_acks(api: Api, token: str, ticket_id: int) -> dict[str, Any]:
    page = await api.client.get(f"/messages/{ticket_id}", headers=auth(token))
    assert page.status_code == 200, page.text
    return {m["body"]: m["ack"] for m in page.json()["messages"]}


async def test_a_sent_message_walks_1_2_3_4_as_the_phone_acknowledges_and_5_when_played(
        api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT), server.broker.subscribe(COMPANY) as events:
        token = await api.admin_token()
        wid = await connected_sandbox(api, token)
        await inbound(api, token, wid, **{"from": CUSTOMER, "name": "Bia", "body": "oi"})
        await wait_sql(server, "SELECT count(*) FROM messages", None, [(1,)])
        ticket_id = server.sql("SELECT id FROM tickets")[0][0]

        reply = await api.client.post(f"/messages/{ticket_id}", json={"body": "Olá Bia"}, headers=auth(token))
        assert reply.status_code == 201, reply.text
        sent = reply.json()
        assert sent["ack"] == 1  # pending: in the outbox, answered before it is sent
        # the server takes it (2), the sandbox's phone says delivered after 0.5 s (3) and read 1.5 s later (4)
        assert await acks_until(events, sent["id"], 4) == [1, 2, 3, 4]
        assert server.sql("SELECT status, ack FROM messages WHERE id = %s", (sent["id"],)) == [("sent", 4)]

        # a voice note's "played" goes one further; a late "delivered" moves nothing back
        message_wid = server.sql("SELECT wid FROM messages WHERE id = %s", (sent["id"],))[0][0]
        await server.deps.sandbox.ack(wid, message_wid, "played")
        assert await acks_until(events, sent["id"], 5) == [5]
        await server.deps.sandbox.ack(wid, message_wid, "delivered")
        await inbound(api, token, wid, **{"from": CUSTOMER, "body": "sync"})  # the chat's events, in order
        await wait_sql(server, "SELECT count(*) FROM messages WHERE body = 'sync'", None, [(1,)])

        note = await api.client.post(f"/messages/{ticket_id}", json={"body": "cliente VIP", "isPrivate": True},
                                     headers=auth(token))
        assert note.status_code == 201 and note.json()["ack"] == 2, note.text
        # as listed: a contact's message 0, ours played 5, the note 2
        assert await listed_acks(api, token, ticket_id) == {"oi": 0, "Olá Bia": 5, "sync": 0, "cliente VIP": 2}


async def test_a_failed_send_is_minus_one_and_no_receipt_moves_it(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT), server.broker.subscribe(COMPANY) as events:
        token = await api.admin_token()
        wid = await connected_sandbox(api, token)
        await inbound(api, token, wid, **{"from": CUSTOMER, "body": "oi"})
        await wait_sql(server, "SELECT count(*) FROM messages", None, [(1,)])
        ticket_id = server.sql("SELECT id FROM tickets")[0][0]
        fault = await api.client.post(f"/sandbox/{wid}/fault", json={"kind": "send_failure", "count": 1},
                                      headers=auth(token))
        assert fault.status_code == 200, fault.text

        reply = await api.client.post(f"/messages/{ticket_id}", json={"body": "não vai"}, headers=auth(token))
        assert reply.status_code == 201, reply.text
        failed = reply.json()
        assert await acks_until(events, failed["id"], -1) == [1, -1]
        [(status, ack, error, message_wid)] = server.sql("SELECT status, ack, error, wid FROM messages WHERE id = %s",
                                                         (failed["id"],))
        assert (status, ack) == ("failed", -1) and error

        # a receipt naming it (from the contact's own chat) leaves it failed
        now = dt.datetime.now(dt.UTC)
        await server.deps.tickets.inbound(COMPANY, wid, wa.Receipt(f"{CUSTOMER}@s.whatsapp.net", (message_wid,),
                                                                   wa.Ack.READ, now))
        await inbound(api, token, wid, **{"from": CUSTOMER, "body": "sync"})
        await wait_sql(server, "SELECT count(*) FROM messages WHERE body = 'sync'", None, [(1,)])
        assert server.sql("SELECT ack FROM messages WHERE id = %s", (failed["id"],)) == [(-1,)]
        assert (await listed_acks(api, token, ticket_id))["não vai"] == -1


def test_migration_9_moves_our_messages_one_step_up_and_runs_once(empty_database_url: str) -> None:
    known = migrate.available_migrations()
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        migrate.migrate(conn, [m for m in known if m.version < 9])
        company = conn.execute("INSERT INTO companies (name) VALUES ('C') RETURNING id").fetchone()[0]
        whatsapp = conn.execute("INSERT INTO whatsapps (company_id, name) VALUES (%s, 'w') RETURNING id",
                                (company,)).fetchone()[0]
        contact = conn.execute("INSERT INTO contacts (company_id, number) VALUES (%s, '5511999') RETURNING id",
                               (company,)).fetchone()[0]
        ticket = conn.execute("INSERT INTO tickets (company_id, contact_id, whatsapp_id) VALUES (%s, %s, %s) "
                              "RETURNING id", (company, contact, whatsapp)).fetchone()[0]
        # (body, from_me, status, ack before): the scale of versions 1 to 8
        before = [("contact's", False, "received", 0), ("pending", True, "pending", 0), ("sent", True, "sent", 1),
                  ("delivered", True, "sent", 2), ("read", True, "sent", 3), ("played", True, "sent", 4),
                  ("failed", True, "failed", -1), ("note", True, "private", 2)]
        for n, (body, from_me, status, ack) in enumerate(before):
            conn.execute("INSERT INTO messages (company_id, whatsapp_id, ticket_id, contact_id, wid, from_me, body, "
                         "status, ack, is_private) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                         (company, whatsapp, ticket, contact, None if status in ("private", "pending") else f"W{n}",
                          from_me, body, status, ack, status == "private"))

        def acks() -> dict[str, int]:
            return dict(conn.execute("SELECT body, ack FROM messages").fetchall())

        assert [m.version for m in migrate.migrate(conn, known)] == [m.version for m in known if m.version >= 9]
        expected = {"contact's": 0, "pending": 1, "sent": 2, "delivered": 3, "read": 4, "played": 5, "failed": -1,
                    "note": 2}
        assert acks() == expected
        assert migrate.migrate(conn, known) == [] and acks() == expected  # recorded: never applied twice
