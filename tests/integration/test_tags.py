"""Tags: CRUD and shapes (trailing slashes too), the accent-insensitive search, who may do what, bad input,
tenancy, `/tags/sync` replacing the set as `tagsMode` says, `/ticket-tags`, the kanban (lanes, cards, a
move that swaps lanes in one statement even under concurrent moves), the tags filter of the ticket lists
(every tag, through the tags' indexes) and the events."""

from __future__ import annotations

import json
import re
from typing import Any

import psycopg
import trio
from psycopg.rows import dict_row

from gateway.broker import Subscription
from storage import tags as storage_tags
from storage import ticket_lists
from storage.ticket_lists import TicketFilters
from storage.tickets import Viewer
from tests.integration.conftest import Api, Server, auth
from tests.integration.test_tickets import company_b, new_contact, new_ticket, put_ticket
from tests.integration.test_whatsapp import create_sandbox

TIMEOUT = 30
HEX = re.compile(r"#[0-9A-Fa-f]{6}")


# ─── helpers ────────────────────────────────────────────────────────────────────────────

async def new_tag(api: Api, token: str, status: int = 201, **fields: Any) -> dict[str, Any]:
    response = await api.client.post("/tags", json=fields, headers=auth(token))
    assert response.status_code == status, (fields, response.text)
    return response.json()


def tag_events(subscription: Subscription) -> list[tuple[str, str, Any]]:
    seen = []
    while (event := subscription.receive_nowait()) is not None:
        if event.name == "tag" or event.name.endswith("-tag"):
            payload = event.payload
            seen.append((event.name, payload["action"], payload.get("tag", {}).get("name") or payload.get("tagId")))
    return seen


def ticket_events(subscription: Subscription, ticket_id: int) -> list[list[str]]:
    """The tags (names) of each `update` of the ticket announced."""
    seen = []
    while (event := subscription.receive_nowait()) is not None:
        ticket = event.payload.get("ticket") or {}
        if event.name.endswith("-ticket") and event.payload.get("action") == "update" and ticket.get("id") == ticket_id:
            seen.append([tag["name"] for tag in ticket["tags"]])
    return seen


def ticket_tag_names(server: Server, ticket_id: int) -> list[str]:
    return [row[0] for row in server.sql("SELECT tg.name FROM ticket_tags tt JOIN tags tg ON tg.id = tt.tag_id "
                                         "WHERE tt.ticket_id = %s ORDER BY tg.name", (ticket_id,))]


async def a_ticket(api: Api, token: str, wid: int, name: str, number: str, **fields: Any) -> dict[str, Any]:
    return await new_ticket(api, token, await new_contact(api, token, name, number), whatsappId=wid, **fields)


async def listed_ids(api: Api, token: str, path: str = "/tickets", **params: Any) -> list[int]:
    response = await api.client.get(path, params={"showAll": "true", **params}, headers=auth(token))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["count"] == len(body["tickets"]), body
    return sorted(ticket["id"] for ticket in body["tickets"])


# ─── tags ───────────────────────────────────────────────────────────────────────────────

async def test_tag_crud_shapes_accent_insensitive_search_and_events(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT), server.broker.subscribe(1) as events:
        admin = await api.admin_token()
        action = await new_tag(api, admin, name="Ação Urgente", color="#FF0000", kanban=0)
        assert set(action) == {"id", "name", "color", "kanban", "companyId", "ticketsCount", "contactsCount",
                               "createdAt", "updatedAt"}
        assert (action["name"], action["color"], action["kanban"], action["companyId"]) == \
            ("Ação Urgente", "#FF0000", 0, 1)
        assert (action["ticketsCount"], action["contactsCount"]) == (0, 0)
        created = await api.client.post("/tags/", json={"name": "vip"}, headers=auth(admin))  # trailing slash
        assert created.status_code == 201, created.text
        vip = created.json()
        assert HEX.fullmatch(vip["color"]) and vip["kanban"] == 0  # a colour of its own, from the name
        # The chat page's tag box creates whatever is typed: an existing name is that tag (no new one) ...
        again = await new_tag(api, admin, status=200, name="VIP")
        assert again["id"] == vip["id"] and again["name"] == "vip"
        # ... but a name taken by a tag of another colour is a conflict.
        clash = await api.client.post("/tags", json={"name": "Vip", "color": "#000000"}, headers=auth(admin))
        assert clash.status_code == 409 and clash.json()["error"] == "ERR_TAG_NAME_ALREADY_EXISTS"
        lane = await new_tag(api, admin, name="Funil: novo", kanban=1, color="#123")
        assert lane["kanban"] == 1 and lane["color"] == "#123"

        for path in ("/tags", "/tags/"):
            page = (await api.client.get(path, headers=auth(admin))).json()
            assert set(page) == {"tags", "count", "hasMore"} and page["count"] == 3 and page["hasMore"] is False
            assert [tag["name"] for tag in page["tags"]] == ["Ação Urgente", "Funil: novo", "vip"]
        for search, found in (("acao", ["Ação Urgente"]), ("AÇÃO", ["Ação Urgente"]), ("urgênte", ["Ação Urgente"]),
                              ("funil:", ["Funil: novo"]), ("%", []), ("zzz", [])):
            page = (await api.client.get("/tags", params={"searchParam": search}, headers=auth(admin))).json()
            assert [tag["name"] for tag in page["tags"]] == found and page["count"] == len(found), search
        for path in ("/tags/list", "/tags/list/"):
            listed = (await api.client.get(path, headers=auth(admin))).json()
            assert [tag["name"] for tag in listed] == ["Ação Urgente", "Funil: novo", "vip"]
        assert [t["name"] for t in (await api.client.get("/tags/list?kanban=1", headers=auth(admin))).json()] == \
            ["Funil: novo"]
        for path in ("/tag/kanban", "/tags/kanban/"):
            lanes = (await api.client.get(path, headers=auth(admin))).json()
            assert [tag["id"] for tag in lanes["lista"]] == [lane["id"]]

        shown = await api.client.get(f"/tags/{vip['id']}", headers=auth(admin))
        assert shown.status_code == 200 and shown.json() == vip
        changed = await api.client.put(f"/tags/{action['id']}/",
                                       json={"name": "Ação Imediata", "color": "#00ff00", "id": 999, "kanban": None},
                                       headers=auth(admin))
        assert changed.status_code == 200, changed.text
        assert (changed.json()["name"], changed.json()["color"], changed.json()["kanban"]) == \
            ("Ação Imediata", "#00ff00", 0)
        renamed = await api.client.put(f"/tags/{action['id']}", json={"name": "VIP"}, headers=auth(admin))
        assert renamed.status_code == 409 and renamed.json()["error"] == "ERR_TAG_NAME_ALREADY_EXISTS"
        deleted = await api.client.delete(f"/tags/{vip['id']}", headers=auth(admin))
        assert deleted.status_code == 200
        assert (await api.client.get(f"/tags/{vip['id']}", headers=auth(admin))).status_code == 404

        seen = tag_events(events)
        for name in ("tag", "company-1-tag"):  # ticketz's Tags screen listens to `tag`
            assert [(action_, what) for event, action_, what in seen if event == name] == [
                ("create", "Ação Urgente"), ("create", "vip"), ("create", "Funil: novo"),
                ("update", "Ação Imediata"), ("delete", vip["id"])]


async def test_who_may_change_tags_bad_input_and_other_companies(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        admin = await api.admin_token()
        await api.create_user(admin, "agent@default.test", "agent-pass-1")
        agent = await api.login("agent@default.test", "agent-pass-1")
        made = await new_tag(api, agent, name="from the chat")  # any user creates (the chat page's tag box)
        assert (await api.client.put(f"/tags/{made['id']}", json={"name": "renamed"},
                                     headers=auth(agent))).json()["error"] == "ERR_NO_PERMISSION"
        refused = await api.client.delete(f"/tags/{made['id']}", headers=auth(agent))
        assert refused.status_code == 403
        assert (await api.client.get(f"/tags/{made['id']}", headers=auth(agent))).json()["name"] == "from the chat"

        beta = await company_b(api)
        for method in ("GET", "PUT", "DELETE"):
            answer = await api.client.request(method, f"/tags/{made['id']}", json={"name": "mine now"},
                                              headers=auth(beta["token"]))
            assert answer.status_code == 404, (method, answer.text)
        assert (await api.client.get("/tags/list", headers=auth(beta["token"]))).json() == []
        assert (await api.client.get("/tags", headers=auth(beta["token"]))).json()["count"] == 0
        mine = await new_tag(api, beta["token"], name="from the chat")  # names are per company
        assert mine["id"] != made["id"] and mine["companyId"] != 1

        before = server.sql("SELECT * FROM tags ORDER BY id")
        bad: list[tuple[Any, str]] = [
            ({"name": "ab"}, "name"), ({}, "name"), ({"name": None}, "name"), ({"name": "x" * 256}, "name"),
            ({"name": "valid", "color": "red"}, "color"), ({"name": "valid", "color": 5}, "color"),
            ({"name": "valid", "kanban": "yes"}, "kanban"), ({"name": "valid", "kanban": 2}, "kanban"),
        ]
        for body, field in bad:
            answer = await api.client.post("/tags", json=body, headers=auth(admin))
            assert answer.status_code == 400 and answer.json()["field"] == field, (body, answer.text)
        for raw in (b"[1]", b"{", b'"x"'):
            answer = await api.client.post("/tags", content=raw, headers={**auth(admin),
                                                                           "Content-Type": "application/json"})
            assert answer.status_code == 400 and answer.json()["error"] == "ERR_INVALID_JSON", raw
        answer = await api.client.put(f"/tags/{made['id']}", json={"name": "ab"}, headers=auth(admin))
        assert answer.status_code == 400
        for path in ("/tags/abc", "/tags/0x1", "/tags/99999999"):
            assert (await api.client.get(path, headers=auth(admin))).status_code == 404, path
        assert (await api.client.get("/tags", params={"pageNumber": "0"}, headers=auth(admin))).status_code == 400
        assert server.sql("SELECT * FROM tags ORDER BY id") == before  # nothing written


# ─── tags on tickets and contacts ───────────────────────────────────────────────────────

async def test_sync_replaces_the_set_as_tags_mode_says(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT), server.broker.subscribe(1) as events:
        admin = await api.admin_token()
        wid = (await create_sandbox(api, admin))["id"]
        ticket = await a_ticket(api, admin, wid, "Ana", "5511999990001")
        alpha, beta_, gamma = [await new_tag(api, admin, name=n) for n in ("alpha", "beta", "gamma")]
        other = await company_b(api)
        foreign = await new_tag(api, other["token"], name="foreign")
        ticket_events(events, ticket["id"])  # its creation's

        def sync(body: dict[str, Any]) -> Any:
            return api.client.post("/tags/sync", json=body, headers=auth(admin))

        synced = await sync({"ticketId": ticket["id"], "tags": [alpha, beta_]})  # the tag box sends whole tags
        assert synced.status_code == 200, synced.text
        assert [tag["name"] for tag in synced.json()["tags"]] == ["alpha", "beta"]
        assert set(synced.json()["tags"][0]) == {"id", "name", "color", "kanban"}
        synced = await sync({"ticketId": ticket["id"], "tags": [{"id": beta_["id"]}, gamma["id"]]})
        assert [tag["name"] for tag in synced.json()["tags"]] == ["beta", "gamma"]  # replaced, not added
        assert ticket_tag_names(server, ticket["id"]) == ["beta", "gamma"]
        assert ticket_events(events, ticket["id"]) == [["alpha", "beta"], ["beta", "gamma"]]
        shown = (await api.client.get(f"/tickets/{ticket['id']}", headers=auth(admin))).json()
        assert [tag["name"] for tag in shown["tags"]] == ["beta", "gamma"] and shown["contact"]["tags"] == []

        # Another company's tag is never attached: 404, and the set stays as it was.
        for tag_ids in ([alpha["id"], foreign["id"]], [foreign["id"]], [999_999]):
            answer = await sync({"ticketId": ticket["id"], "tags": [{"id": i} for i in tag_ids]})
            assert answer.status_code == 404, answer.text
        assert ticket_tag_names(server, ticket["id"]) == ["beta", "gamma"]
        for body, code in (({"ticketId": ticket["id"], "tags": [None]}, "ERR_VALIDATION"),
                           ({"ticketId": ticket["id"], "tags": "alpha"}, "ERR_VALIDATION"),
                           ({"ticketId": ticket["id"], "tags": [{"name": "x"}]}, "ERR_VALIDATION"),
                           ({"ticketId": "x", "tags": []}, "ERR_VALIDATION"),
                           ({"tags": []}, "ERR_NO_TICKET_OR_CONTACT"),
                           ({"contactId": ticket["contactId"], "tags": []}, "ERR_INVALID_TAGMODE")):
            answer = await sync(body)
            assert answer.status_code == 400 and answer.json()["error"] == code, (body, answer.text)
        assert (await sync({"ticketId": ticket["id"] + 1000, "tags": []})).status_code == 404
        assert ticket_tag_names(server, ticket["id"]) == ["beta", "gamma"]

        # tagsMode = contact: the tags are the contact's, a ticketId tags its contact.
        assert (await api.client.put("/settings/tagsMode", json={"value": "contact"},
                                     headers=auth(admin))).status_code == 200
        synced = await sync({"ticketId": ticket["id"], "tags": [alpha]})
        assert synced.status_code == 200, synced.text
        assert [tag["name"] for tag in synced.json()["contact"]["tags"]] == ["alpha"]
        assert [tag["name"] for tag in synced.json()["tags"]] == ["beta", "gamma"]  # the ticket's own are kept
        synced = await sync({"contactId": ticket["contactId"], "tags": [alpha, gamma]})
        assert synced.status_code == 200 and [tag["name"] for tag in synced.json()["tags"]] == ["alpha", "gamma"]
        contact = (await api.client.get(f"/contacts/{ticket['contactId']}", headers=auth(admin))).json()
        assert [tag["name"] for tag in contact["tags"]] == ["alpha", "gamma"]
        contacts = (await api.client.get("/contacts", headers=auth(admin))).json()["contacts"]
        assert [tag["name"] for tag in contacts[0]["tags"]] == ["alpha", "gamma"]
        listed = (await api.client.get("/tickets", params={"showAll": "true"}, headers=auth(admin))).json()
        assert [tag["name"] for tag in listed["tickets"][0]["contact"]["tags"]] == ["alpha", "gamma"]
        counted = (await api.client.get("/tags", headers=auth(admin))).json()["tags"]
        assert [(t["name"], t["ticketsCount"], t["contactsCount"]) for t in counted] == \
            [("alpha", 0, 1), ("beta", 1, 0), ("gamma", 1, 1)]
        contact_updates = []
        while (event := events.receive_nowait()) is not None:
            if event.name == "company-1-contact":
                contact_updates.append([tag["name"] for tag in event.payload["contact"]["tags"]])
        assert contact_updates == [["alpha"], ["alpha", "gamma"]]
        # Another company's contact: 404.
        answer = await sync({"contactId": other["contact"], "tags": []})
        assert answer.status_code == 404
        # A tag deleted leaves every ticket and contact.
        assert (await api.client.delete(f"/tags/{gamma['id']}", headers=auth(admin))).status_code == 200
        assert ticket_tag_names(server, ticket["id"]) == ["beta"]
        assert server.sql("SELECT count(*) FROM contact_tags WHERE tag_id = %s", (gamma["id"],)) == [(0,)]


async def test_ticket_tags_and_the_kanban(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT), server.broker.subscribe(1) as events:
        admin = await api.admin_token()
        wid = (await create_sandbox(api, admin))["id"]
        ticket = await a_ticket(api, admin, wid, "Bia", "5511999990002")
        waiting = await a_ticket(api, admin, wid, "Caio", "5511999990003", status="pending")
        done = await a_ticket(api, admin, wid, "Duda", "5511999990004")
        await put_ticket(api, admin, done["id"], {"status": "closed"})
        new, talking = [await new_tag(api, admin, name=n, kanban=1) for n in ("Lane new", "Lane talking")]
        plain = await new_tag(api, admin, name="plain")
        ticket_events(events, ticket["id"])  # its creation's

        def put(ticket_id: int, tag_id: int) -> Any:
            return api.client.put(f"/ticket-tags/{ticket_id}/{tag_id}", headers=auth(admin))

        added = await put(ticket["id"], new["id"])
        assert added.status_code == 201 and added.json()["ticketId"] == ticket["id"]
        assert [tag["name"] for tag in added.json()["ticket"]["tags"]] == ["Lane new"]
        assert (await put(ticket["id"], plain["id"])).status_code == 201
        assert (await put(ticket["id"], plain["id"])).status_code == 201  # again: nothing more
        moved = await put(ticket["id"], talking["id"])  # the card moves: its lane is swapped, the plain tag stays
        assert [tag["name"] for tag in moved.json()["ticket"]["tags"]] == ["Lane talking", "plain"]
        assert ticket_tag_names(server, ticket["id"]) == ["Lane talking", "plain"]
        assert ticket_events(events, ticket["id"]) == [["Lane new"], ["Lane new", "plain"], ["Lane talking", "plain"]]
        assert (await put(waiting["id"], new["id"])).status_code == 201

        # The board: lanes are the kanban tags, cards the pending and open tickets (the filters of /tickets).
        lanes = (await api.client.get("/tag/kanban", headers=auth(admin))).json()["lista"]
        assert [lane["name"] for lane in lanes] == ["Lane new", "Lane talking"]
        for path in ("/ticket/kanban", "/ticket/kanban/"):
            assert await listed_ids(api, admin, path) == sorted([ticket["id"], waiting["id"]])
        assert await listed_ids(api, admin, "/ticket/kanban", status="closed") == [done["id"]]
        assert await listed_ids(api, admin, "/ticket/kanban", tags=json.dumps([talking["id"]])) == [ticket["id"]]
        assert await listed_ids(api, admin, "/ticket/kanban", tags=json.dumps([new["id"]])) == [waiting["id"]]
        bad = await api.client.get("/ticket/kanban", params={"tags": "[x]"}, headers=auth(admin))
        assert bad.status_code == 400

        # Removing one, then all; another company's tag or ticket is a 404 and changes nothing.
        other = await company_b(api)
        foreign = await new_tag(api, other["token"], name="foreign", kanban=1)
        assert (await put(ticket["id"], foreign["id"])).status_code == 404
        assert (await api.client.put(f"/ticket-tags/{ticket['id']}/{new['id']}",
                                     headers=auth(other["token"]))).status_code == 404
        assert (await api.client.delete(f"/ticket-tags/{ticket['id']}",
                                        headers=auth(other["token"]))).status_code == 404
        assert (await api.client.delete(f"/ticket-tags/{ticket['id']}/{foreign['id']}",
                                        headers=auth(admin))).status_code == 404
        assert (await put(ticket["id"], 0)).status_code == 404
        assert ticket_tag_names(server, ticket["id"]) == ["Lane talking", "plain"]
        removed = await api.client.delete(f"/ticket-tags/{ticket['id']}/{plain['id']}", headers=auth(admin))
        assert removed.status_code == 200 and ticket_tag_names(server, ticket["id"]) == ["Lane talking"]
        cleared = await api.client.delete(f"/ticket-tags/{ticket['id']}/", headers=auth(admin))
        assert cleared.status_code == 200 and ticket_tag_names(server, ticket["id"]) == []
        assert ticket_events(events, ticket["id"]) == [["Lane talking"], []]

        # A plain user who may not see a ticket cannot tag it (404, as another company's).
        await api.create_user(admin, "agent@default.test", "agent-pass-1")
        agent = await api.login("agent@default.test", "agent-pass-1")
        hidden = await api.client.put(f"/ticket-tags/{ticket['id']}/{plain['id']}", headers=auth(agent))
        assert hidden.status_code == 404 and ticket_tag_names(server, ticket["id"]) == []
        hidden = await api.client.post("/tags/sync", json={"ticketId": ticket["id"], "tags": [plain]},
                                       headers=auth(agent))
        assert hidden.status_code == 404 and ticket_tag_names(server, ticket["id"]) == []


async def test_concurrent_moves_leave_a_card_in_exactly_one_lane(api: Api, server: Server) -> None:
    """The swap is one statement after the ticket's row is locked: twenty simultaneous moves across three
    lanes end with the card in one lane, and a reader watching meanwhile never sees it in none or in two."""
    with trio.fail_after(TIMEOUT):
        admin = await api.admin_token()
        wid = (await create_sandbox(api, admin))["id"]
        ticket = await a_ticket(api, admin, wid, "Eli", "5511999990005")
        lanes = [(await new_tag(api, admin, name=f"Lane {i}", kanban=1))["id"] for i in range(3)]
        await storage_tags.add_ticket_tag(server.db, 1, ticket["id"], lanes[0])
        seen: set[int] = set()
        stop = trio.Event()

        def watch() -> None:
            with psycopg.connect(server.database_url, autocommit=True) as conn:
                while not stop.is_set():
                    seen.add(conn.execute("SELECT count(*) FROM ticket_tags tt JOIN tags tg ON tg.id = tt.tag_id "
                                          "WHERE tt.ticket_id = %s AND tg.kanban", (ticket["id"],)).fetchone()[0])

        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.to_thread.run_sync, watch)
            async with trio.open_nursery() as movers:
                for i in range(20):
                    movers.start_soon(storage_tags.add_ticket_tag, server.db, 1, ticket["id"], lanes[i % 3])
            stop.set()
        assert seen == {1}
        assert len([n for n in ticket_tag_names(server, ticket["id"]) if n.startswith("Lane")]) == 1


# ─── the tags filter of the ticket lists ────────────────────────────────────────────────

async def test_the_tags_filter_requires_every_tag_on_the_ticket_or_its_contact(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        admin = await api.admin_token()
        wid = (await create_sandbox(api, admin))["id"]
        one, both, other, via_contact, none = [
            (await a_ticket(api, admin, wid, name, f"55119999901{i:02d}"))["id"]
            for i, name in enumerate(["One", "Both", "Other", "Contact", "None"])]
        a, b = [await new_tag(api, admin, name=n) for n in ("tag a", "tag b")]
        for ticket_id, tag in ((one, a), (both, a), (both, b), (other, b)):
            assert (await api.client.put(f"/ticket-tags/{ticket_id}/{tag['id']}",
                                         headers=auth(admin))).status_code == 201
        contact_id = server.sql("SELECT contact_id FROM tickets WHERE id = %s", (via_contact,))[0][0]
        server.sql("INSERT INTO contact_tags (company_id, contact_id, tag_id) VALUES (1, %s, %s), (1, %s, %s)",
                   (contact_id, a["id"], contact_id, b["id"]))
        assert await listed_ids(api, admin, tags=json.dumps([a["id"]])) == sorted([one, both, via_contact])
        assert await listed_ids(api, admin, tags=json.dumps([a["id"], b["id"]])) == sorted([both, via_contact])
        assert await listed_ids(api, admin, **{"tags[]": [str(b["id"])]}) == sorted([both, other, via_contact])
        assert await listed_ids(api, admin, tags=json.dumps([a["id"], b["id"]]), searchParam="Both") == [both]
        assert await listed_ids(api, admin, tags="[]") == sorted([one, both, other, via_contact, none])
        assert await listed_ids(api, admin, tags=json.dumps([999_999])) == []


def _plan_nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    nodes = [plan]
    for child in plan.get("Plans", []):
        nodes += _plan_nodes(child)
    return nodes


async def test_the_tags_filter_is_served_by_the_tags_indexes(server: Server) -> None:
    """A rare tag's tickets are fetched through ticket_tags_tag_idx and the primary key, never by reading
    every ticket; a common tag's list walks the list's index (the first page is soon full)."""
    with trio.fail_after(TIMEOUT):
        server.sql("""
            INSERT INTO whatsapps (company_id, name) VALUES (1, 'plan');
            INSERT INTO contacts (company_id, name, number)
            SELECT 1, 'Client ' || g, (5511960000000 + g)::text FROM generate_series(1, 8000) g;
            INSERT INTO tickets (company_id, contact_id, whatsapp_id, status, last_message_at)
            SELECT 1, c.id, w.id, (ARRAY['pending', 'open', 'closed'])[1 + c.id % 3],
                   now() - make_interval(secs => c.id)
            FROM contacts c, whatsapps w WHERE w.name = 'plan';
            INSERT INTO tags (company_id, name) VALUES (1, 'rare'), (1, 'common');
            INSERT INTO ticket_tags (company_id, ticket_id, tag_id)
            SELECT 1, t.id, tg.id FROM tickets t, tags tg
            WHERE (tg.name = 'rare' AND t.id % 500 = 0) OR (tg.name = 'common' AND t.id % 10 < 8);
            ANALYZE""")
        rare, common = (server.sql("SELECT id FROM tags WHERE name = %s", (name,))[0][0] for name in ("rare", "common"))

        def plans(tag_id: int) -> tuple[bool, list[dict[str, Any]], list[dict[str, Any]]]:
            with psycopg.connect(server.database_url, row_factory=dict_row, autocommit=True) as conn:
                q = server.db.q
                common_tags = ticket_lists.tags_common(conn, q, (tag_id,))
                filters = TicketFilters(show_all=True, tag_ids=(tag_id,))
                built = ticket_lists.build_list_query(Viewer(1, 1, True), filters, limit=40, common_tags=common_tags)
                explained = [_plan_nodes(conn.execute("EXPLAIN (FORMAT JSON) " + sql, built.params)
                                         .fetchone()["QUERY PLAN"][0]["Plan"]) for sql in built.statements()]
                return common_tags, explained[0], [node for nodes in explained for node in nodes]

        common_tags, _, nodes = await trio.to_thread.run_sync(plans, rare)
        assert not common_tags
        indexes = {node.get("Index Name") for node in nodes}
        assert {"ticket_tags_tag_idx", "tickets_pkey"} <= indexes, indexes
        assert not [node for node in nodes if node["Node Type"] == "Seq Scan"
                    and node.get("Relation Name") in ("tickets", "ticket_tags")], nodes
        common_tags, page, _ = await trio.to_thread.run_sync(plans, common)
        assert common_tags
        scans = [node for node in page if node.get("Relation Name") == "tickets"]
        assert "tickets_status_idx" in {node.get("Index Name") for node in scans}, page
        assert not [node for node in scans if node["Node Type"] == "Seq Scan"], page
        assert any(node["Node Type"] == "Merge Append" for node in page)  # the three statuses' lists merged
