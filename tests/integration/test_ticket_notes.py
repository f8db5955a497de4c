"""Ticket notes: CRUD and shapes (ticketz's contact drawer), the lists by ticket and contact and the page with
its accent-insensitive search, the tickets' visibility rule (a ticket one may not see has no notes for them),
who may change a note, bad input, other companies' ids, what goes with a ticket or a user, the events (on the
broker and on real sockets), and the acceptance line: a note is listed for its ticket and never reaches the
sandbox's outbox."""

from __future__ import annotations

from typing import Any

import httpx
import trio

from tests.integration.conftest import Api, Server, auth
from tests.integration.socketio_client import polling_socket
from tests.integration.test_conversations import connected_sandbox, inbound, wait_sql
from tests.integration.test_tickets import company_b, new_contact, new_queue, new_ticket
from tests.integration.test_whatsapp import create_sandbox

TIMEOUT = 30
KEYS = {"id", "note", "userId", "ticketId", "contactId", "companyId", "createdAt", "updatedAt", "user", "contact",
        "ticket"}


# ─── helpers ────────────────────────────────────────────────────────────────────────────

async def add_note(api: Api, token: str, ticket: dict[str, Any], note: str, status: int = 201,
                   **extra: Any) -> dict[str, Any]:
    body = {"note": note, "ticketId": ticket["id"], "contactId": ticket["contactId"], **extra}
    response = await api.client.post("/ticket-notes", json=body, headers=auth(token))
    assert response.status_code == status, response.text
    return response.json()


async def listed(api: Api, token: str, **params: Any) -> list[str]:
    response = await api.client.get("/ticket-notes/list", params=params, headers=auth(token))
    assert response.status_code == 200, response.text
    return [note["note"] for note in response.json()]


async def paged(api: Api, token: str, **params: Any) -> dict[str, Any]:
    response = await api.client.get("/ticket-notes", params=params, headers=auth(token))
    assert response.status_code == 200, response.text
    return response.json()


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == code and body["message"], body


def note_events(events: Any) -> list[tuple[str, Any]]:
    seen = []
    while (event := events.receive_nowait()) is not None:
        if event.name == "company-1-ticket-note":
            payload = event.payload
            seen.append((payload["action"], payload["note"]["note"] if "note" in payload else payload["id"]))
    return seen


async def office(api: Api) -> dict[str, Any]:
    """Company 1 with two queues, agents Ana and Bia (queue "Vendas"), Caio (queue "Suporte"), a connection
    and a ticket in each queue (admin's token, the agents' tokens and ids, the tickets)."""
    admin = await api.admin_token()
    sales, support = await new_queue(api, admin, "Vendas"), await new_queue(api, admin, "Suporte")
    people = {}
    for name, queue in (("ana", sales), ("bia", sales), ("caio", support)):
        user = await api.create_user(admin, f"{name}@default.test", f"{name}-pass-1", name=name.title(),
                                     queueIds=[queue])
        people[name] = (await api.login(f"{name}@default.test", f"{name}-pass-1"), user["id"])
    wid = (await create_sandbox(api, admin))["id"]
    sold = await new_ticket(api, admin, await new_contact(api, admin, "Cliente Vendas", "5511911110000"),
                            whatsappId=wid, status="pending", queueId=sales)
    helped = await new_ticket(api, admin, await new_contact(api, admin, "Cliente Suporte", "5511922220000"),
                              whatsappId=wid, status="pending", queueId=support)
    return {"admin": admin, **people, "sales": sold, "support": helped, "wid": wid}


# ─── CRUD, shapes, lists ────────────────────────────────────────────────────────────────

async def test_note_crud_shapes_lists_and_search(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT), server.broker.subscribe(1) as events:
        world = await office(api)
        admin, (ana, ana_id) = world["admin"], world["ana"]
        ticket = world["sales"]
        first = await add_note(api, ana, ticket, "Cliente prefere ligação à tarde")
        assert set(first) == KEYS
        assert (first["note"], first["userId"], first["ticketId"], first["contactId"], first["companyId"]) == \
            ("Cliente prefere ligação à tarde", ana_id, ticket["id"], ticket["contactId"], 1)
        assert first["user"] == {"id": ana_id, "name": "Ana", "email": "ana@default.test"}
        assert first["contact"] == {"id": ticket["contactId"], "name": "Cliente Vendas"}
        assert (first["ticket"]["id"], first["ticket"]["status"]) == (ticket["id"], "pending")
        second = await add_note(api, admin, ticket, "Orçamento enviado")
        without_contact = await api.client.post("/ticket-notes/", json={"note": "Sem contato no corpo",
                                                                        "ticketId": str(ticket["id"])},
                                                headers=auth(ana))  # the contact is the ticket's
        assert without_contact.status_code == 201 and without_contact.json()["contactId"] == ticket["contactId"]
        other = await add_note(api, admin, world["support"], "Nota do suporte")

        # the drawer's list: the ticket's, newest first (by ticket, by contact, by both)
        mine = ["Sem contato no corpo", "Orçamento enviado", "Cliente prefere ligação à tarde"]
        assert await listed(api, ana, ticketId=ticket["id"], contactId=ticket["contactId"]) == mine
        assert await listed(api, ana, ticketId=ticket["id"]) == mine
        assert await listed(api, ana, contactId=ticket["contactId"]) == mine
        assert await listed(api, admin, ticketId=ticket["id"], contactId=world["support"]["contactId"]) == []
        assert await listed(api, admin, ticketId=world["support"]["id"]) == ["Nota do suporte"]
        full = (await api.client.get("/ticket-notes/list/", params={"ticketId": ticket["id"]},
                                     headers=auth(ana))).json()
        assert full[-1] == first and set(full[0]) == KEYS

        # the page: {ticketNotes, count, hasMore} (ticketz's shape), newest first, searched without accents
        page = await paged(api, admin)
        assert set(page) == {"ticketNotes", "count", "hasMore"} and (page["count"], page["hasMore"]) == (4, False)
        assert [n["note"] for n in page["ticketNotes"]] == ["Nota do suporte", *mine]
        for search, found in (("ligacao", ["Cliente prefere ligação à tarde"]), ("ORÇAMENTO", ["Orçamento enviado"]),
                              ("orcamento", ["Orçamento enviado"]), ("a tarde", ["Cliente prefere ligação à tarde"]),
                              ("%", []), ("nada", [])):
            assert [n["note"] for n in (await paged(api, admin, searchParam=search))["ticketNotes"]] == found, search

        shown = await api.client.get(f"/ticket-notes/{first['id']}", headers=auth(ana))
        assert shown.status_code == 200 and shown.json() == first
        changed = await api.client.put(f"/ticket-notes/{first['id']}", headers=auth(ana),
                                       json={**first, "note": "Prefere ligação pela manhã", "userId": 999,
                                             "ticketId": world["support"]["id"]})
        assert changed.status_code == 200, changed.text
        assert (changed.json()["note"], changed.json()["userId"], changed.json()["ticketId"]) == \
            ("Prefere ligação pela manhã", ana_id, ticket["id"])
        deleted = await api.client.delete(f"/ticket-notes/{second['id']}", headers=auth(admin))
        assert deleted.status_code == 200
        assert (await api.client.get(f"/ticket-notes/{second['id']}", headers=auth(admin))).status_code == 404
        assert await listed(api, ana, ticketId=ticket["id"]) == ["Sem contato no corpo", "Prefere ligação pela manhã"]

        assert note_events(events) == [
            ("create", "Cliente prefere ligação à tarde"), ("create", "Orçamento enviado"),
            ("create", "Sem contato no corpo"), ("create", "Nota do suporte"),
            ("update", "Prefere ligação pela manhã"), ("delete", second["id"])]
        assert other["ticketId"] == world["support"]["id"]


async def test_pages_of_twenty_newest_first(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        world = await office(api)
        for number in range(23):
            await add_note(api, world["admin"], world["sales"], f"nota {number:02d}")
        first, second = await paged(api, world["admin"]), await paged(api, world["admin"], pageNumber=2)
        assert (len(first["ticketNotes"]), first["count"], first["hasMore"]) == (20, 23, True)
        assert (len(second["ticketNotes"]), second["count"], second["hasMore"]) == (3, 23, False)
        assert [n["note"] for n in first["ticketNotes"] + second["ticketNotes"]] == \
            [f"nota {number:02d}" for number in reversed(range(23))]
        past = await paged(api, world["admin"], pageNumber=9)
        assert (past["ticketNotes"], past["count"]) == ([], 23)


# ─── who sees, who changes ──────────────────────────────────────────────────────────────

async def test_notes_follow_the_tickets_visibility_and_their_authors(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        world = await office(api)
        admin, (ana, _), (bia, _), (caio, caio_id) = world["admin"], world["ana"], world["bia"], world["caio"]
        sales, support = world["sales"], world["support"]
        anas = await add_note(api, ana, sales, "da Ana")
        supports = await add_note(api, admin, support, "do suporte")

        # Caio (queue Suporte) may not see the sales ticket: its notes are not there for him, by any route
        assert_error(await api.client.get("/ticket-notes/list", params={"ticketId": sales["id"]},
                                          headers=auth(caio)), 404, "ERR_NOT_FOUND")
        assert await listed(api, caio, contactId=sales["contactId"]) == []
        assert [n["note"] for n in (await paged(api, caio))["ticketNotes"]] == ["do suporte"]
        before = server.sql("SELECT * FROM ticket_notes ORDER BY id")
        for method in ("GET", "PUT", "DELETE"):
            response = await api.client.request(method, f"/ticket-notes/{anas['id']}", json={"note": "x"},
                                                headers=auth(caio))
            assert_error(response, 404, "ERR_NOT_FOUND")
        assert_error(await api.client.post("/ticket-notes", json={"note": "intruso", "ticketId": sales["id"]},
                                           headers=auth(caio)), 404, "ERR_NOT_FOUND")
        assert server.sql("SELECT * FROM ticket_notes ORDER BY id") == before

        # Bia (queue Vendas) sees Ana's note, may add her own, but not change Ana's: 403, nothing changes
        assert await listed(api, bia, ticketId=sales["id"]) == ["da Ana"]
        await add_note(api, bia, sales, "da Bia")
        before = server.sql("SELECT * FROM ticket_notes ORDER BY id")
        assert_error(await api.client.put(f"/ticket-notes/{anas['id']}", json={"note": "mudei"}, headers=auth(bia)),
                     403, "ERR_NO_PERMISSION")
        assert_error(await api.client.delete(f"/ticket-notes/{anas['id']}", headers=auth(bia)),
                     403, "ERR_NO_PERMISSION")
        assert server.sql("SELECT * FROM ticket_notes ORDER BY id") == before
        # the admin changes anybody's
        assert (await api.client.put(f"/ticket-notes/{anas['id']}", json={"note": "revisto"},
                                     headers=auth(admin))).json()["userId"] == anas["userId"]
        assert (await api.client.delete(f"/ticket-notes/{anas['id']}", headers=auth(admin))).status_code == 200

        # the ticket moves to Caio's queue: its notes move with it (he sees them, Bia no more)
        moved = await api.client.put(f"/tickets/{sales['id']}", json={"queueId": support["queueId"]},
                                     headers=auth(admin))
        assert moved.status_code == 200, moved.text
        assert await listed(api, caio, ticketId=sales["id"]) == ["da Bia"]
        assert_error(await api.client.get("/ticket-notes/list", params={"ticketId": sales["id"]},
                                          headers=auth(bia)), 404, "ERR_NOT_FOUND")

        # a deleted author's note stays, without author; a deleted ticket takes its notes
        assert (await api.client.delete(f"/users/{caio_id}", headers=auth(admin))).status_code == 200
        kept = (await api.client.get(f"/ticket-notes/{supports['id']}", headers=auth(admin))).json()
        assert kept["note"] == "do suporte"
        await add_note(api, admin, support, "outra")
        assert (await api.client.delete(f"/tickets/{support['id']}", headers=auth(admin))).status_code == 200
        assert server.sql("SELECT count(*) FROM ticket_notes WHERE ticket_id = %s", (support["id"],)) == [(0,)]


async def test_a_deleted_authors_notes_stay_without_author(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        world = await office(api)
        (ana, ana_id) = world["ana"]
        note = await add_note(api, ana, world["sales"], "escrita pela Ana")
        assert (await api.client.delete(f"/users/{ana_id}", headers=auth(world["admin"]))).status_code == 200
        kept = (await api.client.get(f"/ticket-notes/{note['id']}", headers=auth(world["admin"]))).json()
        assert (kept["note"], kept["userId"], kept["user"]) == ("escrita pela Ana", None, None)


async def test_bad_input_is_a_400_and_writes_nothing(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        world = await office(api)
        admin, sales = world["admin"], world["sales"]
        note = await add_note(api, admin, sales, "ok")
        bodies = [
            ({"ticketId": sales["id"]}, "note"), ({"note": "   ", "ticketId": sales["id"]}, "note"),
            ({"note": 5, "ticketId": sales["id"]}, "note"), ({"note": "x" * 10_001, "ticketId": sales["id"]}, "note"),
            ({"note": "a\x00b", "ticketId": sales["id"]}, "note"), ({"note": "sem ticket"}, "ticketId"),
            ({"note": "x", "ticketId": "abc"}, "ticketId"), ({"note": "x", "ticketId": 0}, "ticketId"),
            ({"note": "x", "ticketId": sales["id"], "contactId": "x"}, "contactId"),
            ({"note": "x", "ticketId": sales["id"], "contactId": world["support"]["contactId"]}, "contactId"),
        ]
        before = server.sql("SELECT * FROM ticket_notes ORDER BY id")
        for body, field in bodies:
            response = await api.client.post("/ticket-notes", json=body, headers=auth(admin))
            assert_error(response, 400, "ERR_VALIDATION")
            assert response.json()["field"] == field, (body, response.json())
        for body in ({}, {"note": ""}, {"note": None}, {"note": ["x"]}):
            assert_error(await api.client.put(f"/ticket-notes/{note['id']}", json=body, headers=auth(admin)),
                         400, "ERR_VALIDATION")
        assert_error(await api.client.post("/ticket-notes", content=b"[1,", headers={
            **auth(admin), "Content-Type": "application/json"}), 400, "ERR_INVALID_JSON")
        for params in ({}, {"ticketId": "abc"}, {"contactId": "-3"}, {"ticketId": ""}):
            assert_error(await api.client.get("/ticket-notes/list", params=params, headers=auth(admin)),
                         400, "ERR_VALIDATION")
        assert_error(await api.client.get("/ticket-notes", params={"pageNumber": "0"}, headers=auth(admin)),
                     400, "ERR_VALIDATION")
        for path in ("/ticket-notes/abc", "/ticket-notes/99999999"):
            assert_error(await api.client.get(path, headers=auth(admin)), 404, "ERR_NOT_FOUND")
        assert server.sql("SELECT * FROM ticket_notes ORDER BY id") == before


async def test_another_companys_notes_tickets_and_contacts_are_not_found(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        world = await office(api)
        ours = await add_note(api, world["admin"], world["sales"], "nossa nota")
        beta = await company_b(api)
        theirs_ticket = await new_ticket(api, beta["token"], beta["contact"], whatsappId=beta["whatsapp"])
        theirs = await add_note(api, beta["token"], theirs_ticket, "nota deles")
        before = server.sql("SELECT * FROM ticket_notes ORDER BY id")
        for method in ("GET", "PUT", "DELETE"):
            response = await api.client.request(method, f"/ticket-notes/{ours['id']}", json={"note": "tomada"},
                                                headers=auth(beta["token"]))
            assert_error(response, 404, "ERR_NOT_FOUND")
        for params in ({"ticketId": world["sales"]["id"]}, {"contactId": world["sales"]["contactId"]},
                       {"ticketId": world["sales"]["id"], "contactId": world["sales"]["contactId"]}):
            assert_error(await api.client.get("/ticket-notes/list", params=params, headers=auth(beta["token"])),
                         404, "ERR_NOT_FOUND")
        assert_error(await api.client.post("/ticket-notes", json={"note": "x", "ticketId": world["sales"]["id"]},
                                           headers=auth(beta["token"])), 404, "ERR_NOT_FOUND")
        # our ticket with their contact: not our ticket's contact (and nothing about theirs is said)
        assert_error(await api.client.post("/ticket-notes", json={"note": "x", "ticketId": world["sales"]["id"],
                                                                  "contactId": beta["contact"]},
                                           headers=auth(world["admin"])), 400, "ERR_VALIDATION")
        assert server.sql("SELECT * FROM ticket_notes ORDER BY id") == before
        assert [n["note"] for n in (await paged(api, beta["token"]))["ticketNotes"]] == ["nota deles"]
        assert [n["note"] for n in (await paged(api, world["admin"]))["ticketNotes"]] == ["nossa nota"]
        assert theirs["companyId"] != 1


# ─── realtime: a colleague with the chat open sees it ───────────────────────────────────

async def test_a_colleague_with_the_chat_open_sees_the_note_live(api: Api, server: Server) -> None:
    name = "company-1-ticket-note"
    with trio.fail_after(TIMEOUT):
        world = await office(api)
        (ana, _), (bia, _), (caio, _) = world["ana"], world["bia"], world["caio"]
        sales, support = world["sales"], world["support"]
        beta = await company_b(api)
        async with polling_socket(server.url, "/1", bia) as colleague, \
                polling_socket(server.url, "/1", caio) as outsider, \
                polling_socket(server.url, "/", beta["token"]) as stranger:
            assert await colleague.emit("joinChatBox", str(sales["id"])) == []
            assert await outsider.emit("joinChatBox", str(sales["id"])) == []  # refused silently: not his to see
            assert await outsider.emit("joinChatBox", str(support["id"])) == []
            note = await add_note(api, ana, sales, "cliente irritado, cuidado")
            created = await colleague.wait_event(name, lambda p: p["action"] == "create")
            assert created == {"action": "create", "note": note, "ticketId": sales["id"]}  # no audience leaks
            await api.client.put(f"/ticket-notes/{note['id']}", json={"note": "cliente calmo"}, headers=auth(ana))
            updated = await colleague.wait_event(name, lambda p: p["action"] == "update")
            assert updated["note"]["note"] == "cliente calmo"
            await api.client.delete(f"/ticket-notes/{note['id']}", headers=auth(ana))
            assert await colleague.wait_event(name, lambda p: p["action"] == "delete") == \
                {"action": "delete", "id": note["id"], "ticketId": sales["id"]}
            # a note on the ticket Caio has open reaches him: after it, he has had nothing of the sales one
            await add_note(api, world["admin"], support, "do suporte")
            await outsider.wait_event(name)
            assert [p.get("ticketId") for p in outsider.received(name)] == [support["id"]]
            assert [p["ticketId"] for p in colleague.received(name)] == [sales["id"]] * 3
            assert stranger.received(name) == []


# ─── acceptance: listed for its ticket, never in the sandbox outbox ─────────────────────

async def test_a_note_is_listed_for_its_ticket_and_never_reaches_whatsapp(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        admin = await api.admin_token()
        wid = await connected_sandbox(api, admin)
        await inbound(api, admin, wid, **{"from": "5511955550000", "name": "Duda", "body": "quero cancelar"})
        await wait_sql(server, "SELECT count(*) FROM tickets", None, [(1,)])
        ticket = (await api.client.get(f"/tickets/{server.sql('SELECT id FROM tickets')[0][0]}",
                                       headers=auth(admin))).json()
        note = await add_note(api, admin, ticket, "oferecer desconto de retenção")
        reply = await api.client.post(f"/messages/{ticket['id']}", json={"body": "Podemos conversar?"},
                                      headers=auth(admin))
        assert reply.status_code == 201, reply.text
        await wait_sql(server, "SELECT status FROM messages WHERE id = %s", (reply.json()["id"],), [("sent",)])
        assert await listed(api, admin, ticketId=ticket["id"], contactId=ticket["contactId"]) == \
            ["oferecer desconto de retenção"]
        outbox = (await api.client.get(f"/sandbox/{wid}/outbox", headers=auth(admin))).json()
        assert [entry["body"] for entry in outbox] == ["Podemos conversar?"]  # the reply only
        # nor is it a message of the ticket: its history holds the customer's and the reply
        history = (await api.client.get(f"/messages/{ticket['id']}", headers=auth(admin))).json()
        assert [m["body"] for m in history["messages"]] == ["quero cancelar", "Podemos conversar?"]
        assert server.sql("SELECT count(*) FROM messages WHERE body LIKE %s", ("%retenção%",)) == [(0,)]
        assert note["ticketId"] == ticket["id"]
