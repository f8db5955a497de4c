"""Private messages (an agent's internal note, `isPrivate` as the Gold lineage's frontends post it): stored,
listed, pushed to the company's agents, never handed to WhatsApp — not when written, not when the
connection comes back; `"false"` or no flag sends as usual."""

from __future__ import annotations

from typing import Any

import trio

from gateway.broker import Subscription
from tests.integration.conftest import Api, Server, auth
from tests.integration.test_conversations import connected_sandbox, inbound, wait_sql
from tests.integration.test_whatsapp import wait_status

TIMEOUT = 30
COMPANY = 1


def created(events: Subscription) -> list[dict[str, Any]]:
    """The appMessage create events announced so far (drains the subscription)."""
    seen = []
    while (event := events.receive_nowait()) is not None:
        if event.name == f"company-{COMPANY}-appMessage" and event.payload["action"] == "create":
            seen.append(event.payload)
    return seen


async def outbox_bodies(api: Api, token: str, wid: int) -> list[str]:
    response = await api.client.get(f"/sandbox/{wid}/outbox", headers=auth(token))
    assert response.status_code == 200, response.text
    return [entry.get("body") or entry.get("caption") or "" for entry in response.json()]


async def post(api: Api, token: str, ticket_id: int, **kwargs: Any) -> dict[str, Any]:
    response = await api.client.post(f"/messages/{ticket_id}", headers=auth(token), **kwargs)
    assert response.status_code == 201, response.text
    return response.json()


async def test_private_notes_are_stored_listed_and_announced_but_never_sent(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT), server.broker.subscribe(COMPANY) as events:
        token = await api.admin_token()
        wid = await connected_sandbox(api, token)
        await inbound(api, token, wid, **{"from": "5511977770000", "name": "Rita", "body": "quero um orçamento"})
        await wait_sql(server, "SELECT count(*) FROM tickets", None, [(1,)])
        ticket_id = server.sql("SELECT id FROM tickets")[0][0]
        ticket_before = server.sql("SELECT status, user_id, unread_messages, last_message, last_message_at "
                                   "FROM tickets")
        created(events)

        notes = [
            await post(api, token, ticket_id, json={"body": "*Ana - Mensagem Interna:*\ncliente VIP",
                                                    "isPrivate": "true"}),
            await post(api, token, ticket_id, json={"body": "nota como booleano", "isPrivate": True}),
            await post(api, token, ticket_id, data={"body": "foto do pedido", "fromMe": "true", "isPrivate": "true"},
                       files=[("medias", ("pedido.jpg", b"\xff\xd8\xff" + b"7" * 64, "image/jpeg"))]),
        ]
        assert [(n["isPrivate"], n["status"], n["fromMe"], n["wid"]) for n in notes] == \
            [(True, "private", True, None)] * 3
        assert notes[2]["mediaType"] == "image" and notes[2]["mediaUrl"]
        # pushed to the agents' sockets as any new message, flagged
        pushed = [p for p in created(events) if p["message"]["fromMe"]]
        assert [(p["message"]["id"], p["message"]["isPrivate"], p["ticket"]["id"]) for p in pushed] == \
            [(n["id"], True, ticket_id) for n in notes]
        # a note neither accepts the pending ticket nor becomes the customer conversation's last message
        assert server.sql("SELECT status, user_id, unread_messages, last_message, last_message_at FROM tickets") == \
            ticket_before

        # the connection drops and comes back: the outbox is flushed, and holds no note
        await api.client.post(f"/sandbox/{wid}/fault", json={"kind": "disconnect"}, headers=auth(token))
        await wait_status(api, token, wid, lambda r: r["status"] == "CONNECTED" and r["lastDisconnectReason"], "back")
        replies = [await post(api, token, ticket_id, json={"body": "Olá Rita", "isPrivate": "false"}),
                   await post(api, token, ticket_id, json={"body": "Segue o orçamento"})]
        assert [r["isPrivate"] for r in replies] == [False, False]
        for reply in replies:
            await wait_sql(server, "SELECT status FROM messages WHERE id = %s", (reply["id"],), [("sent",)])
        assert await outbox_bodies(api, token, wid) == ["Olá Rita", "Segue o orçamento"]
        assert server.sql("SELECT status, user_id IS NOT NULL FROM tickets") == [("open", True)]  # the reply took it
        assert server.sql("SELECT count(*) FROM messages WHERE is_private AND (status <> 'private' OR wid IS NOT NULL)"
                          ) == [(0,)]

        listed = await api.client.get(f"/messages/{ticket_id}", headers=auth(token))
        assert listed.status_code == 200
        assert [(m["body"], m["isPrivate"]) for m in listed.json()["messages"]] == [
            ("quero um orçamento", False), ("*Ana - Mensagem Interna:*\ncliente VIP", True),
            ("nota como booleano", True), ("foto do pedido", True), ("Olá Rita", False),
            ("Segue o orçamento", False)]

        # a note is edited and deleted here only: WhatsApp never had it
        edited = await api.client.post(f"/messages/edit/{notes[1]['id']}", json={"body": "nota corrigida"},
                                       headers=auth(token))
        assert edited.status_code == 200, edited.text
        assert (edited.json()["body"], edited.json()["isEdited"], edited.json()["isPrivate"]) == \
            ("nota corrigida", True, True)
        deleted = await api.client.delete(f"/messages/{notes[0]['id']}", headers=auth(token))
        assert deleted.status_code == 200 and deleted.json()["isDeleted"] is True
        outbox = (await api.client.get(f"/sandbox/{wid}/outbox", headers=auth(token))).json()
        assert [(o["body"], o["edited"], o["deleted"]) for o in outbox] == [
            ("Olá Rita", False, False), ("Segue o orçamento", False, False)]


async def test_an_unreadable_private_flag_is_refused_not_sent(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        wid = await connected_sandbox(api, token)
        await inbound(api, token, wid, **{"from": "5511977770001", "body": "oi"})
        await wait_sql(server, "SELECT count(*) FROM tickets", None, [(1,)])
        ticket_id = server.sql("SELECT id FROM tickets")[0][0]
        for value in ("yes", "verdadeiro", 2, [True], {"a": 1}, 1.5):
            response = await api.client.post(f"/messages/{ticket_id}", json={"body": "x", "isPrivate": value},
                                             headers=auth(token))
            assert response.status_code == 400, (value, response.text)
            assert (response.json()["error"], response.json()["field"]) == ("ERR_VALIDATION", "isPrivate")
        multipart = await api.client.post(f"/messages/{ticket_id}", data={"body": "x", "isPrivate": "sim"},
                                          files=[("medias", ("a.jpg", b"\xff\xd8\xff1", "image/jpeg"))],
                                          headers=auth(token))
        assert multipart.status_code == 400 and multipart.json()["field"] == "isPrivate"
        assert server.sql("SELECT count(*) FROM messages WHERE from_me") == [(0,)]
        assert await outbox_bodies(api, token, wid) == []
