"""The tickets API: lists and every filter, who sees what, paging (pageNumber and cursor), a conversation
started by an agent, accept / transfer / close (farewell) / reopen with their ticket_events, delete,
tenancy, bad input that writes nothing, and the list queries' plans on the indexes."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

import attrs
import psycopg
import pytest
import trio
from psycopg.rows import dict_row

from gateway.broker import Subscription
from storage import ticket_lists
from storage import tickets as storage_tickets
from storage.ticket_lists import Cursor, TicketFilters
from storage.tickets import InvalidTransition, TicketChange, Viewer
from tests.integration.conftest import Api, Server, auth
from tests.integration.test_conversations import connected_sandbox, inbound, wait_sql
from tests.integration.test_whatsapp import create_sandbox

TIMEOUT = 30


# ─── helpers ────────────────────────────────────────────────────────────────────────────

async def me(api: Api, token: str) -> int:
    return (await api.client.get("/auth/me", headers=auth(token))).json()["id"]


async def listed(api: Api, token: str, **params: Any) -> dict[str, Any]:
    response = await api.client.get("/tickets", params=params, headers=auth(token))
    assert response.status_code == 200, (params, response.text)
    return response.json()


async def listed_ids(api: Api, token: str, **params: Any) -> list[int]:
    answer = await listed(api, token, **params)
    assert answer["count"] == len(answer["tickets"]), answer
    return [ticket["id"] for ticket in answer["tickets"]]


async def new_contact(api: Api, token: str, name: str, number: str) -> int:
    response = await api.client.post("/contacts", json={"name": name, "number": number}, headers=auth(token))
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def new_queue(api: Api, token: str, name: str) -> int:
    response = await api.client.post("/queue", json={"name": name, "color": "#336699"}, headers=auth(token))
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def new_ticket(api: Api, token: str, contact_id: int, **fields: Any) -> dict[str, Any]:
    response = await api.client.post("/tickets", json={"contactId": contact_id, **fields}, headers=auth(token))
    assert response.status_code == 201, response.text
    return response.json()


async def put_ticket(api: Api, token: str, ticket_id: int, body: dict[str, Any], status: int = 200) -> dict[str, Any]:
    response = await api.client.put(f"/tickets/{ticket_id}", json=body, headers=auth(token))
    assert response.status_code == status, (body, response.text)
    return response.json()


async def sandbox_ticket(api: Api, server: Server, token: str, wid: int, number: str, name: str,
                         body: str = "hi") -> int:
    """A customer writes on the sandbox; the pending ticket their message opened."""
    query = ("SELECT t.id FROM tickets t JOIN contacts c ON c.id = t.contact_id "
             "WHERE c.number = %s AND t.status = 'pending'")
    await inbound(api, token, wid, **{"from": number, "name": name, "body": body})
    while True:
        rows = await trio.to_thread.run_sync(server.sql, query, (number,))
        if rows:
            return rows[0][0]
        await trio.sleep(0.05)


def kinds(server: Server, ticket_id: int) -> list[str]:
    return [row[0] for row in server.sql("SELECT kind FROM ticket_events WHERE ticket_id = %s ORDER BY id",
                                         (ticket_id,))]


def ticket_updates(subscription: Subscription, ticket_id: int) -> list[dict[str, Any]]:
    seen = []
    while (event := subscription.receive_nowait()) is not None:
        if event.name.endswith("-ticket") and (event.payload.get("ticket", {}).get("id") == ticket_id
                                               or event.payload.get("ticketId") == ticket_id):
            seen.append(event.payload)
    return seen


async def company_b(api: Api) -> dict[str, Any]:
    """Another tenant with a contact, a queue, a user and a connection (their ids) and its admin's token."""
    root = await api.admin_token()
    await api.create_company(root, "Beta", "admin@beta.test")
    token = await api.login("admin@beta.test", "company-pass-1")
    user = await api.create_user(token, "agent@beta.test")
    connection = await create_sandbox(api, token, "Beta sandbox")
    return {"token": token, "contact": await new_contact(api, token, "Beta Client", "5521977770000"),
            "queue": await new_queue(api, token, "Beta Queue"), "user": user["id"], "whatsapp": connection["id"]}


async def wait_outbox(api: Api, token: str, wid: int, bodies: list[str]) -> None:
    while True:
        outbox = (await api.client.get(f"/sandbox/{wid}/outbox", headers=auth(token))).json()
        if [entry["body"] for entry in outbox] == bodies:
            return
        await trio.sleep(0.05)


# ─── lists, show, intake ────────────────────────────────────────────────────────────────

async def test_conversations_from_the_sandbox_are_listed_with_their_parts(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        wid = await connected_sandbox(api, token)
        maria = await sandbox_ticket(api, server, token, wid, "5511988887777", "Maria", "hi")
        joao = await sandbox_ticket(api, server, token, wid, "5511977776666", "João", "olá")

        answer = await listed(api, token, status="pending")
        assert [t["id"] for t in answer["tickets"]] == [joao, maria]  # newest activity first
        assert (answer["count"], answer["hasMore"], answer["nextCursor"]) == (2, False, None)
        first = answer["tickets"][0]
        assert first["contact"]["name"] == "João" and first["contact"]["number"] == "5511977776666"
        assert first["whatsapp"]["id"] == wid and first["whatsapp"]["status"] == "CONNECTED"
        assert (first["queue"], first["user"], first["tags"]) == (None, None, [])
        assert (first["lastMessage"], first["unreadMessages"], first["status"]) == ("olá", 1, "pending")

        shown = await api.client.get(f"/tickets/{maria}", headers=auth(token))
        # one ticket shows its contact's custom fields too (the contact drawer's), not in every list
        row = answer["tickets"][1]
        assert shown.status_code == 200 and shown.json() == {**row, "contact": {**row["contact"], "extraInfo": []}}
        by_uuid = await api.client.get(f"/tickets/u/{shown.json()['uuid']}", headers=auth(token))
        assert by_uuid.status_code == 200 and by_uuid.json()["id"] == maria
        assert kinds(server, maria) == ["created"]
        for path in ("/tickets/999999", "/tickets/abc", "/tickets/u/not-a-uuid",
                     "/tickets/u/00000000-0000-4000-8000-000000000000"):
            missing = await api.client.get(path, headers=auth(token))
            assert missing.status_code == 404 and missing.json()["error"] == "ERR_NOT_FOUND", path


async def test_an_agent_starts_a_conversation(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT), server.broker.subscribe(1) as events:
        token = await api.admin_token()
        admin_id = await me(api, token)
        first = (await create_sandbox(api, token, "Only"))["id"]
        carla = await new_contact(api, token, "Carla", "5511911112222")

        created = await new_ticket(api, token, carla)
        assert (created["status"], created["userId"], created["whatsappId"]) == ("open", admin_id, first)
        assert created["contact"]["name"] == "Carla" and created["user"]["id"] == admin_id
        assert kinds(server, created["id"]) == ["created", "accepted"]
        assert [e["action"] for e in ticket_updates(events, created["id"])] == ["update"]

        again = await api.client.post("/tickets", json={"contactId": carla}, headers=auth(token))
        assert again.status_code == 409 and again.json()["error"] == "ERR_OTHER_OPEN_TICKET"
        assert again.json()["ticketId"] == created["id"] and str(created["id"]) in again.json()["message"]

        second = (await create_sandbox(api, token, "Second"))["id"]
        dani = await new_contact(api, token, "Dani", "5511933334444")
        ambiguous = await api.client.post("/tickets", json={"contactId": dani}, headers=auth(token))
        assert ambiguous.status_code == 400 and ambiguous.json()["error"] == "ERR_NO_DEF_WAPP_FOUND"
        # The same contact on another connection is another conversation.
        pending = await new_ticket(api, token, carla, whatsappId=second, status="pending")
        assert (pending["status"], pending["userId"], pending["whatsappId"]) == ("pending", None, second)
        assert kinds(server, pending["id"]) == ["created"]

        made_default = await api.client.put(f"/whatsapp/{second}", json={"isDefault": True}, headers=auth(token))
        assert made_default.status_code == 200
        assert (await new_ticket(api, token, dani))["whatsappId"] == second
        assert server.sql("SELECT count(*) FROM tickets") == [(3,)]
        # As the family: a connected connection wins over a default one that is not connected.
        connected = await connected_sandbox(api, token, "5511900002222")
        erin = await new_contact(api, token, "Erin", "5511955556666")
        assert (await new_ticket(api, token, erin))["whatsappId"] == connected


async def test_every_filter(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        admin_id = await me(api, token)
        agent = await api.create_user(token, "agent@zapgate.test")
        await create_sandbox(api, token)
        first_queue, second_queue = await new_queue(api, token, "Sales"), await new_queue(api, token, "Support")
        names = ["Ana", "Bruno", "Carla", "Davi", "Eva"]
        contacts = [await new_contact(api, token, name, f"551190000000{i + 1}") for i, name in enumerate(names)]
        ana = (await new_ticket(api, token, contacts[0]))["id"]
        bruno = (await new_ticket(api, token, contacts[1], status="pending"))["id"]
        carla = (await new_ticket(api, token, contacts[2], userId=agent["id"]))["id"]
        davi = (await new_ticket(api, token, contacts[3], status="pending", queueId=first_queue))["id"]
        eva = (await new_ticket(api, token, contacts[4]))["id"]
        await put_ticket(api, token, eva, {"status": "closed"})
        # Deterministic order (ana newest), and the columns the filters look at.
        for minutes, ticket_id in enumerate([ana, bruno, carla, davi, eva]):
            server.sql("UPDATE tickets SET last_message_at = now() - make_interval(mins => %s) WHERE id = %s",
                       (minutes, ticket_id))
        server.sql("UPDATE tickets SET last_message = 'preciso de um boleto' WHERE id = %s", (bruno,))
        server.sql("UPDATE tickets SET unread_messages = 3 WHERE id = %s", (carla,))
        server.sql("UPDATE tickets SET created_at = '2024-03-10 12:00+00' WHERE id = %s", (davi,))
        server.sql("UPDATE tickets SET updated_at = '2024-04-01 12:00+00' WHERE id = %s", (ana,))
        server.sql("UPDATE tickets SET queue_id = %s WHERE id = %s", (second_queue, eva))
        vip, urgent = (row[0] for row in server.sql(
            "INSERT INTO tags (company_id, name) VALUES (1, 'vip'), (1, 'urgent') RETURNING id"))
        server.sql("INSERT INTO ticket_tags (company_id, ticket_id, tag_id) VALUES (1, %s, %s), (1, %s, %s), "
                   "(1, %s, %s)", (ana, vip, carla, vip, carla, urgent))

        everything = [ana, bruno, carla, davi, eva]
        assert await listed_ids(api, token, showAll="true") == everything
        assert await listed_ids(api, token, showAll="true", status="open") == [ana, carla]
        assert await listed_ids(api, token, showAll="true", status="pending") == [bruno, davi]
        assert await listed_ids(api, token, showAll="true", status="closed") == [eva]
        # Without showAll: the caller's own tickets and the pending ones (carla is the agent's).
        assert await listed_ids(api, token) == [ana, bruno, davi, eva]
        assert await listed_ids(api, token, status="open") == [ana]
        assert await listed_ids(api, token, showAll="true", searchParam="BRUNO") == [bruno]
        assert await listed_ids(api, token, showAll="true", searchParam="boleto") == [bruno]
        assert await listed_ids(api, token, showAll="true", searchParam="5511900000003") == [carla]
        assert await listed_ids(api, token, showAll="true", searchParam="+55 11 90000-0004") == [davi]
        assert await listed_ids(api, token, showAll="true", searchParam="100%") == []
        assert await listed_ids(api, token, showAll="true", date="2024-03-10") == [davi]
        assert await listed_ids(api, token, showAll="true", updatedAt="2024-04-01") == [ana]
        assert await listed_ids(api, token, showAll="true", withUnreadMessages="true") == [carla]
        # queueIds keeps queue-less tickets (the frontends send the selected queues and expect those too).
        assert await listed_ids(api, token, showAll="true", queueIds=json.dumps([first_queue])) == \
            [ana, bruno, carla, davi]
        assert await listed_ids(api, token, showAll="true", queueIds=json.dumps([second_queue])) == \
            [ana, bruno, carla, eva]
        assert await listed_ids(api, token, showAll="true", **{"queueIds[]": [str(second_queue)]}) == \
            [ana, bruno, carla, eva]
        assert await listed_ids(api, token, showAll="true", tags=json.dumps([vip])) == [ana, carla]
        assert await listed_ids(api, token, showAll="true", tags=json.dumps([vip, urgent])) == [carla]
        assert await listed_ids(api, token, showAll="true", tags="[]") == everything
        assert await listed_ids(api, token, showAll="true", users=json.dumps([agent["id"]])) == [carla]
        assert await listed_ids(api, token, showAll="true", users=json.dumps([admin_id, agent["id"]])) == \
            [ana, carla, eva]
        assert await listed_ids(api, token, showAll="true", status="open", users=json.dumps([agent["id"]]),
                                tags=json.dumps([urgent]), withUnreadMessages="true") == [carla]
        tagged = (await listed(api, token, showAll="true", tags=json.dumps([urgent])))["tickets"][0]
        assert sorted(tag["name"] for tag in tagged["tags"]) == ["urgent", "vip"]


async def test_a_plain_user_sees_their_queues_queue_less_tickets_with_all_ticket_and_their_own(
        api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        await create_sandbox(api, token)
        mine, other = await new_queue(api, token, "Mine"), await new_queue(api, token, "Other")
        agent = await api.create_user(token, "agent@zapgate.test", queueIds=[mine])
        colleague = await api.create_user(token, "colleague@zapgate.test")
        agent_token = await api.login("agent@zapgate.test", "user-pass-1")
        contacts = [await new_contact(api, token, f"C{i}", f"55119111100{i:02d}") for i in range(6)]
        in_mine = (await new_ticket(api, token, contacts[0], status="pending", queueId=mine))["id"]
        in_other = (await new_ticket(api, token, contacts[1], status="pending", queueId=other))["id"]
        no_queue = (await new_ticket(api, token, contacts[2], status="pending"))["id"]
        own_in_other = (await new_ticket(api, token, contacts[3], queueId=other, userId=agent["id"]))["id"]
        admins_in_mine = (await new_ticket(api, token, contacts[4], queueId=mine))["id"]
        colleagues_in_mine = (await new_ticket(api, token, contacts[5], queueId=mine, userId=colleague["id"]))["id"]
        every = [colleagues_in_mine, admins_in_mine, own_in_other, no_queue, in_other, in_mine]

        assert await listed_ids(api, token, showAll="true") == every
        assert await listed_ids(api, agent_token, showAll="true") == [colleagues_in_mine, admins_in_mine,
                                                                      own_in_other, in_mine]
        assert await listed_ids(api, agent_token) == [own_in_other, in_mine]
        assert await listed_ids(api, agent_token, showAll="true", status="open") == [colleagues_in_mine,
                                                                                     admins_in_mine, own_in_other]
        for hidden in (in_other, no_queue):
            response = await api.client.get(f"/tickets/{hidden}", headers=auth(agent_token))
            assert response.status_code == 404 and response.json()["error"] == "ERR_NOT_FOUND"
        hidden_uuid = server.sql("SELECT uuid::text FROM tickets WHERE id = %s", (in_other,))[0][0]
        assert (await api.client.get(f"/tickets/u/{hidden_uuid}", headers=auth(agent_token))).status_code == 404
        refused = await api.client.put(f"/tickets/{in_other}", json={"status": "open"}, headers=auth(agent_token))
        assert refused.status_code == 404
        assert server.sql("SELECT status, user_id FROM tickets WHERE id = %s", (in_other,)) == [("pending", None)]
        assert (await api.client.get(f"/tickets/{own_in_other}", headers=auth(agent_token))).status_code == 200

        enabled = await api.client.put(f"/users/{agent['id']}", json={"allTicket": "enable"}, headers=auth(token))
        assert enabled.status_code == 200, enabled.text
        assert await listed_ids(api, agent_token, showAll="true") == [colleagues_in_mine, admins_in_mine,
                                                                      own_in_other, no_queue, in_mine]
        assert (await api.client.get(f"/tickets/{no_queue}", headers=auth(agent_token))).status_code == 200
        # A filter never widens what the user may see.
        assert await listed_ids(api, agent_token, showAll="true", queueIds=json.dumps([other])) == \
            [own_in_other, no_queue]
        # Once transferred out of their sight, a ticket is gone for them.
        await put_ticket(api, agent_token, in_mine, {"queueId": other})
        assert (await api.client.get(f"/tickets/{in_mine}", headers=auth(agent_token))).status_code == 404


async def test_pages_count_has_more_and_the_cursor(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        wid = (await create_sandbox(api, token))["id"]
        # 95 tickets; pairs share a last_message_at, so the id decides between them.
        server.sql("""
            WITH c AS (
                INSERT INTO contacts (company_id, name, number)
                SELECT 1, 'Client ' || g, (5511950000000 + g)::text FROM generate_series(1, 95) g
                RETURNING id, number)
            INSERT INTO tickets (company_id, contact_id, whatsapp_id, status, user_id, last_message_at)
            SELECT 1, c.id, %s, (ARRAY['pending', 'open', 'closed'])[1 + (c.id %% 3)], 1,
                   timestamptz '2025-01-01 12:00:00.123456+00' - make_interval(mins => (c.id / 2)::int)
            FROM c""", (wid,))
        expected = [row[0] for row in server.sql(
            "SELECT id FROM tickets ORDER BY last_message_at DESC, id DESC")]
        expected_open = [row[0] for row in server.sql(
            "SELECT id FROM tickets WHERE status = 'open' ORDER BY last_message_at DESC, id DESC")]

        by_number = []
        for number, (size, more) in enumerate([(40, True), (40, True), (15, False), (0, False)], start=1):
            answer = await listed(api, token, showAll="true", pageNumber=number)
            assert (len(answer["tickets"]), answer["count"], answer["hasMore"]) == (size, 95, more)
            by_number += [t["id"] for t in answer["tickets"]]
        assert by_number == expected

        for params, wanted in (({}, expected), ({"status": "open"}, expected_open)):
            walked, cursor, pages = [], None, 0
            while True:
                answer = await listed(api, token, showAll="true", **params, **({"cursor": cursor} if cursor else {}))
                pages += 1
                assert answer["count"] == len(wanted)
                walked += [t["id"] for t in answer["tickets"]]
                cursor = answer["nextCursor"]
                assert (cursor is not None) == answer["hasMore"]
                if cursor is None:
                    break
            assert walked == wanted and pages == -(-len(wanted) // 40), params

        for bad in ("!!!", "bm90IGEgY3Vyc29y", Cursor(dt.datetime(2025, 1, 1), 5).encode()[:-3]):
            response = await api.client.get("/tickets", params={"cursor": bad}, headers=auth(token))
            assert response.status_code == 400 and response.json()["field"] == "cursor", bad


# ─── changes ────────────────────────────────────────────────────────────────────────────

async def test_accept_transfer_close_with_farewell_and_reopen(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT), server.broker.subscribe(1) as events:
        token = await api.admin_token()
        admin_id = await me(api, token)
        queue = await new_queue(api, token, "Support")
        agent = await api.create_user(token, "agent@zapgate.test", queueIds=[queue])
        agent_token = await api.login("agent@zapgate.test", "user-pass-1")
        wid = await connected_sandbox(api, token)
        farewell = await api.client.put(f"/whatsapp/{wid}", json={"farewellMessage": "Bye {{name}}"},
                                        headers=auth(token))
        assert farewell.status_code == 200
        ticket = await sandbox_ticket(api, server, token, wid, "5511988887777", "Maria")
        ticket_updates(events, ticket)

        accepted = await put_ticket(api, token, ticket, {"status": "open"})
        assert (accepted["status"], accepted["userId"], accepted["user"]["id"]) == ("open", admin_id, admin_id)
        assert [(e["action"], e["ticket"]["status"]) for e in ticket_updates(events, ticket)][-1] == ("update", "open")
        assert kinds(server, ticket) == ["created", "accepted"]

        moved = await put_ticket(api, token, ticket, {"queueId": queue, "userId": agent["id"]})
        assert (moved["status"], moved["queueId"], moved["queue"]["name"], moved["userId"]) == \
            ("open", queue, "Support", agent["id"])
        assert kinds(server, ticket) == ["created", "accepted", "transferred"]
        assert server.sql("SELECT user_id, queue_id FROM ticket_events WHERE ticket_id = %s AND kind = 'transferred'",
                          (ticket,)) == [(agent["id"], queue)]

        closed = await put_ticket(api, agent_token, ticket, {"status": "closed", "userId": agent["id"]})
        assert closed["status"] == "closed"
        await wait_outbox(api, token, wid, ["Bye Maria"])
        farewell_at, closed_at = server.sql(
            "SELECT (SELECT created_at FROM messages WHERE from_me AND body = 'Bye Maria'), "
            "(SELECT created_at FROM ticket_events WHERE ticket_id = %s AND kind = 'closed')", (ticket,))[0]
        assert farewell_at <= closed_at  # in the outbox before the ticket closed
        assert kinds(server, ticket) == ["created", "accepted", "transferred", "closed"]
        again = await put_ticket(api, agent_token, ticket, {"status": "closed"})  # closing twice: nothing new
        assert again["status"] == "closed" and kinds(server, ticket)[-1] == "closed"
        assert len(kinds(server, ticket)) == 4

        reopened = await put_ticket(api, agent_token, ticket, {"status": "open"})
        assert (reopened["status"], reopened["userId"]) == ("open", agent["id"])
        assert kinds(server, ticket)[-1] == "reopened"
        back_to_queue = await put_ticket(api, agent_token, ticket, {"status": "pending", "userId": None})
        assert (back_to_queue["status"], back_to_queue["userId"]) == ("pending", None)
        assert kinds(server, ticket)[-1] == "transferred"
        await put_ticket(api, token, ticket, {"status": "closed"})
        await wait_outbox(api, token, wid, ["Bye Maria", "Bye Maria"])

        # Maria writes again: a new ticket; the old one cannot be reopened beside it.
        newer = await sandbox_ticket(api, server, token, wid, "5511988887777", "Maria", "again")
        assert newer != ticket
        before = kinds(server, ticket)
        conflict = await api.client.put(f"/tickets/{ticket}", json={"status": "open"}, headers=auth(token))
        assert conflict.status_code == 409 and conflict.json()["error"] == "ERR_OTHER_OPEN_TICKET"
        assert conflict.json()["ticketId"] == newer
        assert server.sql("SELECT status FROM tickets WHERE id = %s", (ticket,)) == [("closed",)]
        assert kinds(server, ticket) == before


async def test_bad_input_answers_4xx_and_writes_nothing(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        beta = await company_b(api)
        token = await api.admin_token()
        wid = await connected_sandbox(api, token)
        await api.client.put(f"/whatsapp/{wid}", json={"farewellMessage": "Bye"}, headers=auth(token))
        pending = await sandbox_ticket(api, server, token, wid, "5511988887777", "Maria")
        contact = server.sql("SELECT contact_id FROM tickets WHERE id = %s", (pending,))[0][0]
        other_contact = await new_contact(api, token, "Other", "5511900009999")
        opened = (await new_ticket(api, token, other_contact))["id"]

        def snapshot() -> Any:
            return (server.sql("SELECT id, status, user_id, queue_id, updated_at FROM tickets ORDER BY id"),
                    server.sql("SELECT count(*) FROM ticket_events"), server.sql("SELECT count(*) FROM messages"))

        before = snapshot()
        puts = [
            (pending, {"status": "weird"}, 400, "ERR_INVALID_STATUS"),
            (pending, {"status": 5}, 400, "ERR_INVALID_STATUS"),
            (pending, {"userId": beta["user"]}, 404, "ERR_NOT_FOUND"),
            (pending, {"queueId": beta["queue"]}, 404, "ERR_NOT_FOUND"),
            (pending, {"status": "closed", "userId": beta["user"]}, 404, "ERR_NOT_FOUND"),
            (pending, {"userId": "abc"}, 400, "ERR_VALIDATION"),
            (pending, {"queueId": 0}, 400, "ERR_VALIDATION"),
            (opened, {"userId": None}, 400, "ERR_INVALID_STATUS"),
        ]
        for ticket_id, body, status, code in puts:
            response = await api.client.put(f"/tickets/{ticket_id}", json=body, headers=auth(token))
            assert (response.status_code, response.json()["error"]) == (status, code), (body, response.text)
        malformed = await api.client.put(f"/tickets/{pending}", content=b"[1]",
                                         headers={**auth(token), "Content-Type": "application/json"})
        assert malformed.status_code == 400 and malformed.json()["error"] == "ERR_INVALID_JSON"

        gets = [({"status": "weird"}, "status"), ({"queueIds": "notjson"}, "queueIds"),
                ({"tags": '[1, "x"]'}, "tags"), ({"users": '{"a": 1}'}, "users"), ({"queueIds": "[0]"}, "queueIds"),
                ({"date": "2024-13-45"}, "date"), ({"updatedAt": "yesterday"}, "updatedAt"),
                ({"pageNumber": "0"}, "pageNumber"), ({"cursor": "%%%"}, "cursor")]
        for params, field in gets:
            response = await api.client.get("/tickets", params=params, headers=auth(token))
            assert response.status_code == 400 and response.json()["field"].startswith(field), (params, response.text)

        posts = [({}, 400, "ERR_VALIDATION"), ({"contactId": "x"}, 400, "ERR_VALIDATION"),
                 ({"contactId": beta["contact"]}, 404, "ERR_NOT_FOUND"),
                 ({"contactId": other_contact, "whatsappId": beta["whatsapp"]}, 404, "ERR_NOT_FOUND"),
                 ({"contactId": contact, "status": "closed"}, 400, "ERR_INVALID_STATUS"),
                 ({"contactId": contact, "whatsappId": wid, "queueId": beta["queue"]}, 404, "ERR_NOT_FOUND"),
                 ({"contactId": contact, "whatsappId": wid}, 409, "ERR_OTHER_OPEN_TICKET"),
                 ({"contactId": contact, "status": "pending"}, 409, "ERR_OTHER_OPEN_TICKET")]
        for body, status, code in posts:
            response = await api.client.post("/tickets", json=body, headers=auth(token))
            assert (response.status_code, response.json()["error"]) == (status, code), (body, response.text)
        fresh = await new_contact(api, token, "Fresh", "5511900008888")
        for body in ({"contactId": fresh, "queueId": beta["queue"]}, {"contactId": fresh, "userId": beta["user"]}):
            response = await api.client.post("/tickets", json=body, headers=auth(token))
            assert response.status_code == 404, (body, response.text)

        assert snapshot() == before
        assert (await api.client.get(f"/sandbox/{wid}/outbox", headers=auth(token))).json() == []


async def test_other_companies_get_404_users_cannot_delete_and_a_deleted_ticket_is_gone(
        api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT), server.broker.subscribe(1) as events:
        beta = await company_b(api)
        token = await api.admin_token()
        await api.create_user(token, "agent@zapgate.test", allTicket="enable")
        agent_token = await api.login("agent@zapgate.test", "user-pass-1")
        wid = await connected_sandbox(api, token)
        ticket = await sandbox_ticket(api, server, token, wid, "5511988887777", "Maria")
        ticket_uuid = server.sql("SELECT uuid::text FROM tickets WHERE id = %s", (ticket,))[0][0]

        assert (await listed(api, beta["token"], showAll="true"))["count"] == 0
        for method, path in (("GET", f"/tickets/{ticket}"), ("GET", f"/tickets/u/{ticket_uuid}"),
                             ("PUT", f"/tickets/{ticket}"), ("DELETE", f"/tickets/{ticket}")):
            response = await api.client.request(method, path, json={"status": "closed"} if method == "PUT" else None,
                                                headers=auth(beta["token"]))
            assert response.status_code == 404 and response.json()["error"] == "ERR_NOT_FOUND", (method, path)
        assert (await api.client.get(f"/tickets/{ticket}", headers=auth(agent_token))).status_code == 200
        refused = await api.client.delete(f"/tickets/{ticket}", headers=auth(agent_token))
        assert refused.status_code == 403 and refused.json()["error"] == "ERR_NO_PERMISSION"
        assert server.sql("SELECT status FROM tickets WHERE id = %s", (ticket,)) == [("pending",)]
        ticket_updates(events, ticket)

        deleted = await api.client.delete(f"/tickets/{ticket}", headers=auth(token))
        assert deleted.status_code == 200, deleted.text
        assert ticket_updates(events, ticket) == [{"action": "delete", "ticketId": ticket, "_audience": {
            "queueId": None, "userId": None, "status": "pending"}}]  # who may see it: api/live.py, taken off there
        assert (await api.client.get(f"/tickets/{ticket}", headers=auth(token))).status_code == 404
        assert server.sql("SELECT count(*) FROM ticket_events WHERE ticket_id = %s", (ticket,)) == [(0,)]
        # The conversation goes on: Maria's next message opens a new ticket.
        newer = await sandbox_ticket(api, server, token, wid, "5511988887777", "Maria", "still there?")
        assert newer != ticket
        await wait_sql(server, "SELECT count(*) FROM messages WHERE ticket_id = %s", (newer,), [(1,)])


# ─── the plans of the list queries ──────────────────────────────────────────────────────

def _plan_nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    nodes = [plan]
    for child in plan.get("Plans", []):
        nodes += _plan_nodes(child)
    return nodes


async def test_list_queries_walk_the_indexes(server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        server.sql("""
            INSERT INTO whatsapps (company_id, name) VALUES (1, 'plan');
            INSERT INTO queues (company_id, name) VALUES (1, 'q1'), (1, 'q2');
            INSERT INTO contacts (company_id, name, number)
            SELECT 1, 'Client ' || g, (5511960000000 + g)::text FROM generate_series(1, 5000) g;
            INSERT INTO tickets (company_id, contact_id, whatsapp_id, status, user_id, queue_id, last_message_at)
            SELECT 1, c.id, w.id, (ARRAY['pending', 'open', 'closed', 'closed', 'closed'])[1 + (c.id % 5)],
                   CASE WHEN c.id % 4 = 0 THEN NULL ELSE 1 END,
                   (SELECT min(id) FROM queues) + (c.id % 2), now() - make_interval(secs => c.id)
            FROM contacts c, whatsapps w WHERE w.name = 'plan';
            ANALYZE tickets""")
        admin = Viewer(1, 1, True)
        deep = Cursor(dt.datetime.now(dt.UTC) - dt.timedelta(seconds=4000), 4000)
        cases = [
            (admin, TicketFilters(status="closed", show_all=True), None, {"tickets_status_idx"}, False),
            (admin, TicketFilters(status="closed", show_all=True), deep, {"tickets_status_idx"}, False),
            (admin, TicketFilters(show_all=True), None, {"tickets_status_idx"}, True),
            (admin, TicketFilters(show_all=True), deep, {"tickets_status_idx"}, True),
            (admin, TicketFilters(status="open"), None, {"tickets_user_idx"}, False),
            (Viewer(2, 1, False, True, (1,)), TicketFilters(), None, {"tickets_status_idx", "tickets_user_idx"}, True),
        ]

        def explain(sql: str, params: dict[str, Any]) -> dict[str, Any]:
            with psycopg.connect(server.database_url, row_factory=dict_row) as conn:
                return conn.execute("EXPLAIN (FORMAT JSON) " + sql, params).fetchone()["QUERY PLAN"][0]["Plan"]

        for viewer, filters, after, indexes, merged in cases:
            built = ticket_lists.build_list_query(viewer, filters, limit=40, after=after)
            # The page itself (the joins for its JSON then touch its 41 rows only).
            nodes = _plan_nodes(await trio.to_thread.run_sync(explain, built.page_sql, built.params))
            scans = [n for n in nodes if n.get("Relation Name") == "tickets"]
            assert scans and all(n["Node Type"] in ("Index Scan", "Index Only Scan") for n in scans), (filters, scans)
            assert {n["Index Name"] for n in scans} == indexes, (filters, scans)
            assert any(n["Node Type"] == "Merge Append" for n in nodes) == merged, filters
            assert not any(n["Node Type"] == "Sort" for n in nodes), filters  # the index order is the list order
            if after is not None:
                assert all("ROW(last_message_at, id) <" in n.get("Index Cond", "") for n in scans), scans


# ─── pure parts ─────────────────────────────────────────────────────────────────────────

def _row(status: str, user_id: int | None = None, queue_id: int | None = None) -> dict[str, Any]:
    return {"status": status, "user_id": user_id, "queue_id": queue_id}


@pytest.mark.parametrize(("row", "change", "expected"), [
    (_row("pending"), TicketChange(status="open"), ("open", 7, None, ("accepted",))),
    (_row("pending"), TicketChange(status="open", set_user=True, user_id=3), ("open", 3, None, ("accepted",))),
    (_row("pending"), TicketChange(status="open", set_queue=True, queue_id=2),
     ("open", 7, 2, ("accepted", "transferred"))),
    (_row("open", 7), TicketChange(set_user=True, user_id=3), ("open", 3, None, ("transferred",))),
    (_row("open", 7), TicketChange(status="pending", set_user=True, user_id=None),
     ("pending", None, None, ("transferred",))),
    (_row("open", 7), TicketChange(status="closed", set_user=True, user_id=3), ("closed", 3, None, ("closed",))),
    (_row("open", 7), TicketChange(status="closed", set_queue=True, queue_id=1),
     ("closed", 7, 1, ("transferred", "closed"))),
    (_row("closed", 3), TicketChange(status="open"), ("open", 3, None, ("reopened",))),
    (_row("closed", None), TicketChange(status="open"), ("open", 7, None, ("reopened",))),
    (_row("closed", 3), TicketChange(status="pending"), ("pending", 3, None, ("reopened",))),
    (_row("closed", 3), TicketChange(status="closed"), ("closed", 3, None, ())),
    (_row("open", 7), TicketChange(status="open"), ("open", 7, None, ())),
])
def test_the_status_machine(row: dict[str, Any], change: TicketChange, expected: tuple[Any, ...]) -> None:
    plan = storage_tickets.plan_change(row, change, caller_id=7)
    assert (plan.status, plan.user_id, plan.queue_id, plan.events) == expected


@pytest.mark.parametrize(("row", "change"), [
    (_row("open", 7), TicketChange(status="weird")),
    (_row("closed", 3), TicketChange(set_queue=True, queue_id=2)),
    (_row("open", 7), TicketChange(set_user=True, user_id=None)),
])
def test_nonsense_changes_are_refused(row: dict[str, Any], change: TicketChange) -> None:
    with pytest.raises(InvalidTransition):
        storage_tickets.plan_change(row, change, caller_id=7)


def test_cursors_round_trip_and_garbage_is_refused() -> None:
    cursor = Cursor(dt.datetime(2025, 1, 1, 12, 0, 0, 123456, tzinfo=dt.UTC), 42)
    assert Cursor.decode(cursor.encode()) == cursor
    for garbage in ("", "x", "!!!", "bm9wZQ", Cursor(dt.datetime(2025, 1, 1), 1).encode(), "A" * 500):
        with pytest.raises(ValueError):
            Cursor.decode(garbage)


def test_list_sql_carries_parameters_never_values() -> None:
    filters = TicketFilters(search="%O''Brien; DROP TABLE tickets%", status="open", queue_ids=(5,), tag_ids=(6, 7),
                            user_ids=(8,), created_on=dt.date(2024, 3, 10), unread_only=True)
    built = ticket_lists.build_list_query(Viewer(9, 3, False, True, (11,)), filters, limit=40, offset=80,
                                             after=None)
    for text in (built.sql, built.page_sql, built.count_sql):
        assert "Brien" not in text and "2024" not in text and "'open'" not in text
    assert built.params["search"] == filters.search and built.params["company_id"] == 3
    assert built.params["viewer_queue_ids"] == [11] and built.params["tag_count"] == 2


_VIEWERS = [Viewer(1, 1, True), Viewer(9, 3, False), Viewer(9, 3, False, True, (11, 12)),
            Viewer(9, 3, False, False, (4,))]
_FILTERS = [
    TicketFilters(), TicketFilters(status="open", show_all=True), TicketFilters(status="pending"),
    TicketFilters(search="%ana%"), TicketFilters(search="%an%", status="closed"),
    TicketFilters(search="%5511%", number_search="%5511%", show_all=True),
    TicketFilters(search="%10\\%%", number_search="%10%"),
    TicketFilters(created_on=dt.date(2024, 3, 10), updated_on=dt.date(2024, 4, 1), unread_only=True),
    TicketFilters(queue_ids=(3, 1, 3), user_ids=(2,), tag_ids=(7, 8), status="open", show_all=True),
    TicketFilters(tag_ids=(7,), active_only=True), TicketFilters(active_only=True, show_all=True),
]


@pytest.mark.parametrize("filters", _FILTERS)
def test_list_sql_is_built_once_per_shape_and_every_parameter_it_names_is_given(filters: TicketFilters) -> None:
    after = Cursor(dt.datetime(2025, 1, 1, tzinfo=dt.UTC), 42)
    for viewer in _VIEWERS:
        for cursor, offset in ((None, 0), (None, 80), (after, 0)):
            built = ticket_lists.build_list_query(viewer, filters, limit=40, offset=offset, after=cursor)
            for text in (built.sql, built.page_sql, built.count_sql):
                assert set(re.findall(r"%\((\w+)\)s", text)) <= set(built.params), (viewer, filters, text)
            # A search or the tags filter counts inside its one statement (the set it found); other lists apart.
            narrowed = filters.search or filters.tag_ids
            assert built.statements() == ([built.sql] if narrowed else [built.sql, built.count_sql])
            # Another caller and other values of the same filters: the same text (the cached one), other values.
            other = attrs.evolve(viewer, user_id=viewer.user_id + 1, company_id=viewer.company_id + 1,
                                 queue_ids=tuple(q + 1 for q in viewer.queue_ids))
            again = ticket_lists.build_list_query(other, filters, limit=40, offset=offset, after=cursor)
            assert again.sql is built.sql and again.params["company_id"] == built.params["company_id"] + 1


@pytest.mark.parametrize(("pattern", "text"), [
    ("%ana%", "ana"), ("%10\\%%", "10%"), ("%a\\_b%", "a_b"), ("%c:\\\\x%", "c:\\x"), ("%%", ""),
    ("ana", None), ("%a%b%", None), ("%a_b%", None), ("%ab\\%", None),
])
def test_the_text_of_a_search_pattern(pattern: str, text: str | None) -> None:
    assert ticket_lists.search_text(pattern) == text
