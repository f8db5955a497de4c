"""Conversations through the sandbox: intake into tickets and messages, media, idempotency, the agent's
replies through the outbox, acks, and sending while the connection is down."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import trio

from tests.integration.conftest import Api, Server, auth
from tests.integration.test_whatsapp import create_sandbox, wait_status

TIMEOUT = 60


async def connected_sandbox(api: Api, token: str, number: str = "5511900001111") -> int:
    wid = (await create_sandbox(api, token))["id"]
    await wait_status(api, token, wid, lambda r: r["status"] == "qrcode", "qrcode")
    paired = await api.client.post(f"/sandbox/{wid}/pair", json={"number": number}, headers=auth(token))
    assert paired.status_code == 200, paired.text
    await wait_status(api, token, wid, lambda r: r["status"] == "CONNECTED", "CONNECTED")
    return wid


async def inbound(api: Api, token: str, wid: int, **message: Any) -> str:
    response = await api.client.post(f"/sandbox/{wid}/inbound", json=message, headers=auth(token))
    assert response.status_code == 200, response.text
    return response.json()["id"]


async def wait_sql(server: Server, query: str, params: Any, expected: Any) -> list[tuple[Any, ...]]:
    while True:
        rows = await trio.to_thread.run_sync(server.sql, query, params)
        if rows == expected:
            return rows
        await trio.sleep(0.05)


async def test_ten_contacts_ten_messages_each(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT), server.broker.subscribe(1) as events:
        token = await api.admin_token()
        wid = await connected_sandbox(api, token)
        for round_ in range(10):
            for contact in range(10):
                await inbound(api, token, wid, **{"from": f"55119800000{contact:02d}", "name": f"Cliente {contact}",
                                                  "body": f"message {round_} from {contact}"})
        await wait_sql(server, "SELECT count(*) FROM messages", None, [(100,)])
        tickets = server.sql("SELECT t.unread_messages, t.last_message, t.status, c.number, c.name FROM tickets t "
                             "JOIN contacts c ON c.id = t.contact_id ORDER BY c.number")
        assert len(tickets) == 10
        for index, (unread, last, status, number, name) in enumerate(tickets):
            assert (unread, last, status) == (10, f"message 9 from {index}", "pending")
            assert number == f"55119800000{index:02d}" and name == f"Cliente {index}"
        for contact in range(10):
            bodies = [row[0] for row in server.sql(
                "SELECT m.body FROM messages m JOIN contacts c ON c.id = m.contact_id WHERE c.number = %s "
                "ORDER BY m.id", (f"55119800000{contact:02d}",))]
            assert bodies == [f"message {r} from {contact}" for r in range(10)]
        created = []
        while (event := events.receive_nowait()) is not None:
            if event.name == "company-1-appMessage" and event.payload["action"] == "create":
                created.append(event.payload)
        assert len(created) == 100
        assert created[0]["ticket"]["contact"]["number"].startswith("5511980000")
        assert created[0]["message"]["fromMe"] is False and created[0]["contact"]


async def test_media_is_stored_and_served_at_an_unguessable_url(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        wid = await connected_sandbox(api, token)
        files = {"image": ("image/png", "photo.png", b"\x89PNG\r\n\x1a\n" + b"x" * 100),
                 "ptt": ("audio/ogg; codecs=opus", "voice.ogg", b"OggS" + b"y" * 100),
                 "document": ("application/pdf", "contrato final.pdf", b"%PDF-1.4 " + b"z" * 100)}
        for kind, (mimetype, filename, data) in files.items():
            await inbound(api, token, wid, **{"from": "5511977770000", "body": f"a {kind}", "media": {
                "kind": kind, "mimetype": mimetype, "filename": filename,
                "base64": base64.b64encode(data).decode()}})
        await wait_sql(server, "SELECT count(*) FROM messages WHERE media_url IS NOT NULL", None, [(3,)])
        ticket_id = server.sql("SELECT id FROM tickets")[0][0]
        page = await api.client.get(f"/messages/{ticket_id}", headers=auth(token))
        assert page.status_code == 200, page.text
        messages = page.json()["messages"]
        # shown as the Whaticket family shows them: a voice note is "audio" (stored as the voice note it is)
        assert [m["mediaType"] for m in messages] == ["image", "audio", "document"]
        assert json.loads(messages[1]["dataJson"])["message"]["audioMessage"]["ptt"] is True
        async with httpx.AsyncClient(base_url=server.url) as browser:  # no Authorization header
            for message, (mimetype, _, data) in zip(messages, files.values(), strict=True):
                url = message["mediaUrl"]
                token_part = url.split("/media/")[1].split("/")[0]
                assert len(token_part) >= 22  # 128 random bits
                got = await browser.get(url if url.startswith("/") else httpx.URL(url).raw_path.decode())
                assert got.status_code == 200 and got.content == data
                assert got.headers["content-type"].startswith(mimetype.split(";")[0])
            guessed = await browser.get("/media/" + "A" * 22 + "/photo.png")
            assert guessed.status_code == 404


async def test_duplicates_are_stored_once_and_a_new_contacts_burst_makes_one_ticket(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        wid = await connected_sandbox(api, token)
        for _ in range(3):
            await inbound(api, token, wid, **{"from": "5511966660000", "id": "3EB0AAAABBBBCCCCDDDD", "body": "once"})
        await wait_sql(server, "SELECT count(*) FROM messages WHERE wid = '3EB0AAAABBBBCCCCDDDD'", None, [(1,)])

        async def burst(index: int) -> None:
            await server.deps.sandbox.inbound(wid, sender="5511955550000", name="Novo", body=f"oi {index}")

        async with trio.open_nursery() as nursery:
            for index in range(20):
                nursery.start_soon(burst, index)
        await wait_sql(server, "SELECT count(*) FROM messages m JOIN contacts c ON c.id = m.contact_id "
                               "WHERE c.number = '5511955550000'", None, [(20,)])
        assert server.sql("SELECT count(*) FROM contacts WHERE number = '5511955550000'") == [(1,)]
        assert server.sql("SELECT count(*) FROM tickets t JOIN contacts c ON c.id = t.contact_id "
                          "WHERE c.number = '5511955550000'") == [(1,)]
        # redelivery after a reconnect is ignored too
        await api.client.post(f"/sandbox/{wid}/fault", json={"kind": "disconnect", "redeliver": 5},
                              headers=auth(token))
        await wait_status(api, token, wid, lambda r: r["status"] == "CONNECTED" and r["lastDisconnectReason"], "back")
        await trio.sleep(0.5)
        assert server.sql("SELECT count(*) FROM messages") == [(21,)]


async def test_agent_reply_goes_out_through_the_outbox_and_acks_come_back(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT), server.broker.subscribe(1) as events:
        token = await api.admin_token()
        wid = await connected_sandbox(api, token)
        first = await inbound(api, token, wid, **{"from": "5511944440000", "name": "Ana", "body": "preciso de ajuda"})
        await wait_sql(server, "SELECT count(*) FROM messages", None, [(1,)])
        ticket_id = server.sql("SELECT id FROM tickets")[0][0]
        opened = await api.client.get(f"/messages/{ticket_id}", headers=auth(token))
        assert opened.json()["messages"][0]["wid"] == first
        assert server.sql("SELECT unread_messages FROM tickets") == [(0,)]
        state = (await api.client.get(f"/sandbox/{wid}", headers=auth(token))).json()
        assert [entry["ids"] for entry in state["readByUs"]] == [[first]]  # read receipts went to WhatsApp

        quoted = {"id": opened.json()["messages"][0]["id"]}
        reply = await api.client.post(f"/messages/{ticket_id}", json={"body": "Olá Ana!", "quotedMsg": quoted},
                                      headers=auth(token))
        assert reply.status_code == 201, reply.text
        sent = reply.json()
        assert sent["fromMe"] is True and sent["body"] == "Olá Ana!"
        assert server.sql("SELECT status, user_id IS NOT NULL FROM tickets") == [("open", True)]
        await wait_sql(server, "SELECT ack FROM messages WHERE id = %s", (sent["id"],), [(4,)])  # delivered, read
        outbox = (await api.client.get(f"/sandbox/{wid}/outbox", headers=auth(token))).json()
        assert [(o["body"], o["quotedId"]) for o in outbox] == [("Olá Ana!", first)]
        acks = []
        while (event := events.receive_nowait()) is not None:
            if event.name == "company-1-appMessage" and event.payload["message"]["id"] == sent["id"]:
                acks.append(event.payload["message"]["ack"])
        assert acks[0] == 1 and acks[-1] == 4 and acks == sorted(acks), acks


async def test_messages_wait_while_the_connection_is_down_and_go_out_in_order(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        wid = await connected_sandbox(api, token)
        await inbound(api, token, wid, **{"from": "5511933330000", "body": "oi"})
        await wait_sql(server, "SELECT count(*) FROM messages", None, [(1,)])
        ticket_id = server.sql("SELECT id FROM tickets")[0][0]
        await server.deps.sessions.stop(wid)
        for index in range(3):
            response = await api.client.post(f"/messages/{ticket_id}", json={"body": f"waiting {index}"},
                                             headers=auth(token))
            assert response.status_code == 201
        assert server.sql("SELECT count(*) FROM messages WHERE status = 'pending'") == [(3,)]
        await api.client.post(f"/whatsappsession/{wid}", headers=auth(token))
        await wait_sql(server, "SELECT count(*) FROM messages WHERE status = 'pending'", None, [(0,)])
        outbox = (await api.client.get(f"/sandbox/{wid}/outbox", headers=auth(token))).json()
        assert [o["body"] for o in outbox] == ["waiting 0", "waiting 1", "waiting 2"]
