"""Intake details: groups and the setting that ignores them, LIDs, names agents set, reactions,
edits and deletions, visibility of a ticket's messages, and the ticket actors' life cycle."""

from __future__ import annotations

import trio

from tests.integration.conftest import Api, Server, auth
from tests.integration.test_conversations import connected_sandbox, inbound, wait_sql

TIMEOUT = 60


async def test_groups_are_ignored_unless_the_setting_allows_them(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        wid = await connected_sandbox(api, token)
        group = {"id": "120363000000000001@g.us", "name": "Equipe"}
        await inbound(api, token, wid, **{"from": "5511911112222", "body": "ignored", "group": group})
        await inbound(api, token, wid, **{"from": "5511911113333", "body": "direct"})
        await wait_sql(server, "SELECT count(*) FROM messages", None, [(1,)])
        changed = await api.client.put("/settings/CheckMsgIsGroup", json={"value": "disabled"}, headers=auth(token))
        assert changed.status_code == 200
        server.deps.tickets._group_policy.clear()  # the cache lasts a few seconds; don't wait for it
        await inbound(api, token, wid, **{"from": "5511911112222", "name": "Paulo", "body": "no grupo",
                                          "group": group})
        await wait_sql(server, "SELECT count(*) FROM messages", None, [(2,)])
        rows = server.sql("SELECT c.name, c.number, c.is_group, t.is_group, m.participant FROM messages m "
                          "JOIN tickets t ON t.id = m.ticket_id JOIN contacts c ON c.id = t.contact_id "
                          "WHERE m.body = 'no grupo'")
        assert rows == [("Equipe", "120363000000000001", True, True, "5511911112222")]


async def test_lid_and_phone_are_one_contact_and_agent_names_stay(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        wid = await connected_sandbox(api, token)
        await inbound(api, token, wid, **{"from": "5511922223333", "lid": "98765432101234@lid", "name": "Bia",
                                          "body": "first"})
        await wait_sql(server, "SELECT count(*) FROM messages", None, [(1,)])
        assert server.sql("SELECT name, number, lid FROM contacts") == [("Bia", "5511922223333", "98765432101234")]
        contact_id = server.sql("SELECT id FROM contacts")[0][0]
        renamed = await api.client.put(f"/contacts/{contact_id}", json={"name": "Beatriz (cliente VIP)"},
                                       headers=auth(token))
        assert renamed.status_code == 200, renamed.text
        await inbound(api, token, wid, **{"from": "98765432101234@lid", "name": "Bia 2", "body": "second"})
        await wait_sql(server, "SELECT count(*) FROM messages", None, [(2,)])
        assert server.sql("SELECT count(*) FROM contacts") == [(1,)]
        assert server.sql("SELECT count(*) FROM tickets") == [(1,)]
        assert server.sql("SELECT name FROM contacts") == [("Beatriz (cliente VIP)",)]


async def test_reactions_edits_and_deletions_update_their_message(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT), server.broker.subscribe(1) as events:
        token = await api.admin_token()
        wid = await connected_sandbox(api, token)
        target = await inbound(api, token, wid, **{"from": "5511933334444", "body": "original"})
        await wait_sql(server, "SELECT count(*) FROM messages", None, [(1,)])
        await inbound(api, token, wid, **{"from": "5511933334444", "reaction": {"targetId": target, "emoji": "👍"}})
        await wait_sql(server, "SELECT reaction FROM messages WHERE wid = %s", (target,), [("👍",)])
        await inbound(api, token, wid, **{"from": "5511933334444", "edit": {"targetId": target, "body": "editado"}})
        await wait_sql(server, "SELECT body, is_edited FROM messages WHERE wid = %s", (target,), [("editado", True)])
        await inbound(api, token, wid, **{"from": "5511933334444", "revoke": {"targetId": target}})
        await wait_sql(server, "SELECT is_deleted FROM messages WHERE wid = %s", (target,), [(True,)])
        assert server.sql("SELECT count(*) FROM messages") == [(1,)]
        assert server.sql("SELECT edit_history->0->>'body' FROM messages") == [("original",)]
        updates: list[dict] = []
        while not updates or not updates[-1]["isDeleted"]:  # announced just after the commit read above
            while (event := events.receive_nowait()) is not None:
                if event.name == "company-1-appMessage" and event.payload["action"] == "update":
                    updates.append(event.payload["message"])
            await trio.sleep(0.05)
        assert [u["reaction"] for u in updates][:1] == ["👍"] and updates[-1]["isDeleted"] is True


async def test_a_user_outside_the_tickets_queue_cannot_read_or_write_it(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        wid = await connected_sandbox(api, token)
        sales = (await api.client.post("/queue", json={"name": "Vendas", "color": "#00aa00"},
                                       headers=auth(token))).json()
        support = (await api.client.post("/queue", json={"name": "Suporte", "color": "#0000aa"},
                                         headers=auth(token))).json()
        await api.create_user(token, "seller@acme.test", queueIds=[sales["id"]])
        await api.create_user(token, "helper@acme.test", queueIds=[support["id"]])
        await inbound(api, token, wid, **{"from": "5511944445555", "body": "quero comprar"})
        await wait_sql(server, "SELECT count(*) FROM tickets", None, [(1,)])
        ticket_id = server.sql("SELECT id FROM tickets")[0][0]
        server.sql("UPDATE tickets SET queue_id = %s WHERE id = %s", (sales["id"], ticket_id))
        seller = await api.login("seller@acme.test", "user-pass-1")
        helper = await api.login("helper@acme.test", "user-pass-1")
        assert (await api.client.get(f"/messages/{ticket_id}", headers=auth(seller))).status_code == 200
        before = server.sql("SELECT count(*) FROM messages")
        for method, kwargs in (("GET", {}), ("POST", {"json": {"body": "intrusion"}})):
            response = await api.client.request(method, f"/messages/{ticket_id}", headers=auth(helper), **kwargs)
            assert response.status_code == 404, response.text
        assert server.sql("SELECT count(*) FROM messages") == before


async def test_ticket_actors_stop_when_idle_and_are_capped(api: Api, server: Server) -> None:
    router = server.deps.tickets
    router.max_alive = 3
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        wid = await connected_sandbox(api, token)
        for index in range(8):
            await inbound(api, token, wid, **{"from": f"55119555500{index:02d}", "body": "oi"})
            await wait_sql(server, "SELECT count(*) FROM messages", None, [(index + 1,)])
        assert len(router.registry) <= 3
        router.idle_timeout = 0.2
        await inbound(api, token, wid, **{"from": "5511955560000", "body": "again"})  # a new actor, short idle
        await wait_sql(server, "SELECT count(*) FROM messages", None, [(9,)])
        key = (wid, "5511955560000@s.whatsapp.net")
        handle = router.registry.lookup(key)
        assert handle is not None
        for _ in range(200):  # it ends once idle
            if router.registry.lookup(key) is not handle:
                break
            await trio.sleep(0.05)
        assert router.registry.lookup(key) is not handle
        # and the conversation goes on with a fresh actor, in the same ticket
        await inbound(api, token, wid, **{"from": "5511955560000", "body": "still here"})
        await wait_sql(server, "SELECT count(DISTINCT ticket_id) FROM messages m JOIN contacts c "
                               "ON c.id = m.contact_id WHERE c.number = '5511955560000'", None, [(1,)])
        await wait_sql(server, "SELECT count(*) FROM messages", None, [(10,)])
