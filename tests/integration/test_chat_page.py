"""The ticket's page of the ticketz frontend (`/tickets/:uuid`) against zapgate's answers (issue 11).

Its MessagesList parses every message's `dataJson` (the WhatsApp message as Baileys gives it) and picks the
bubble from it and from `mediaType`: a document by `documentMessage.fileName`, a sticker by `stickerMessage`, a
location by `locationMessage` degrees, audio only when `mediaType` is "audio", a file hidden when the message
has an `extendedTextMessage`; quotes by `quotedMsg` (with its own `dataJson` and `contact.name`), reactions
by `replies`, the sender of a group message by `contact.name`; older pages by `nextId`. Its header, contact
drawer and action buttons read the ticket from `GET /tickets/u/:uuid`. These tests hold zapgate's answers —
the page's, built by PostgreSQL, and the realtime events', built in Python — to what that code reads.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any

import trio

from tests.integration.conftest import Api, Server, auth
from tests.integration.test_conversations import connected_sandbox, inbound, wait_sql
from tests.integration.test_tickets import company_b, new_queue

TIMEOUT = 60
MARIA = "5511977770001"
VCARD = "BEGIN:VCARD\nVERSION:3.0\nFN:Ana Souza\nTEL;type=CELL;waid=5511966665555:+55 11 96666-5555\nEND:VCARD"


def media(kind: str, mimetype: str, filename: str | None = None, size: int = 64) -> dict[str, Any]:
    return {"kind": kind, "mimetype": mimetype, "filename": filename,
            "base64": base64.b64encode(b"\x00" + b"m" * size).decode()}


def data_of(message: dict[str, Any]) -> dict[str, Any]:
    """What `JSON.parse(message.dataJson)` gives the frontend: it must be a JSON object (a string, never null)."""
    assert isinstance(message["dataJson"], str), message
    data = json.loads(message["dataJson"])
    assert isinstance(data, dict) and isinstance(data["message"], dict) and isinstance(data["key"], dict)
    return data


def content(message: dict[str, Any]) -> tuple[str, dict[str, Any] | str]:
    """The one content field of the message (conversation, imageMessage, …) and its value."""
    (name, value), = data_of(message)["message"].items()
    return name, value


async def page(api: Api, token: str, ticket_id: int, **params: Any) -> dict[str, Any]:
    response = await api.client.get(f"/messages/{ticket_id}", params=params, headers=auth(token))
    assert response.status_code == 200, response.text
    return response.json()


def last_events(events: Any) -> dict[int, dict[str, Any]]:
    """The last `appMessage` event of each message (what a frontend that replaces a message by its update has)."""
    latest: dict[int, dict[str, Any]] = {}
    while (event := events.receive_nowait()) is not None:
        if event.name == "company-1-appMessage":
            latest[event.payload["message"]["id"]] = event.payload["message"]
    return latest


def rendered(message: dict[str, Any]) -> dict[str, Any]:
    """What the bubble is drawn from (the parts that do not move with acks and reads)."""
    quoted = message["quotedMsg"]
    return {"body": message["body"], "mediaType": message["mediaType"], "data": data_of(message),
            "contact": message["contact"], "replies": message["replies"], "isEdited": message["isEdited"],
            "isDeleted": message["isDeleted"], "quotedMsg": quoted and {**quoted, "dataJson": data_of(quoted)}}


async def test_every_kind_of_message_carries_the_dataJson_its_bubble_is_drawn_from(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT), server.broker.subscribe(1) as events:
        token = await api.admin_token()
        wid = await connected_sandbox(api, token)
        assert server.deps.sandbox is not None
        maria = {"from": MARIA, "name": "Maria"}
        text = await inbound(api, token, wid, **maria, body="oi, tudo bem?")
        image = await inbound(api, token, wid, **maria, body="a foto", media=media("image", "image/jpeg", "f.jpg"))
        voice = await inbound(api, token, wid, **maria, media=media("ptt", "audio/ogg; codecs=opus", "v.ogg"))
        video = await inbound(api, token, wid, **maria, body="o vídeo", media=media("video", "video/mp4", "v.mp4"))
        document = await inbound(api, token, wid, **maria, media=media("document", "application/pdf", "boleto.pdf"))
        sticker = await inbound(api, token, wid, **maria, media=media("sticker", "image/webp", "s.webp"))
        place = await server.deps.sandbox.inbound(wid, sender=MARIA, name="Maria", location={
            "latitude": -23.561414, "longitude": -46.6558819, "name": "Av. Paulista, 1000"})
        spot = await server.deps.sandbox.inbound(wid, sender=MARIA, name="Maria",
                                                 location={"latitude": -22.9, "longitude": -43.2})
        card = await server.deps.sandbox.inbound(wid, sender=MARIA, name="Maria", vcard=VCARD)
        reply = await inbound(api, token, wid, **maria, body="gostou?", quotedId=image)
        await inbound(api, token, wid, **maria, reaction={"targetId": text, "emoji": "❤️"})
        await inbound(api, token, wid, **maria, edit={"targetId": text, "body": "oi, tudo bem? (editado)"})
        await inbound(api, token, wid, **maria, revoke={"targetId": video})
        await wait_sql(server, "SELECT count(*), count(*) FILTER (WHERE is_edited), count(*) FILTER (WHERE is_deleted),"
                       " count(reaction) FROM messages", None, [(10, 1, 1, 1)])
        ticket_id, ticket_uuid = server.sql("SELECT id, uuid FROM tickets")[0]
        first = await page(api, token, ticket_id)
        text_id = next(m["id"] for m in first["messages"] if m["wid"] == text)
        # the agent answers as ticketz sends it: the whole quoted message; a file with its name as body; a note
        answer = await api.client.post(f"/messages/{ticket_id}", headers=auth(token), json={
            "read": 1, "fromMe": True, "mediaUrl": "", "body": "Olá Maria!",
            "quotedMsg": next(m for m in first["messages"] if m["wid"] == text)})
        assert answer.status_code == 201, answer.text
        upload = await api.client.post(
            f"/messages/{ticket_id}", headers=auth(token), data={"fromMe": "true", "body": "contrato.pdf"},
            files=[("medias", ("contrato.pdf", b"%PDF-1.4 x", "application/pdf"))])
        assert upload.status_code == 201, upload.text
        note = await api.client.post(f"/messages/{ticket_id}", headers=auth(token),
                                     json={"body": "cliente VIP", "isPrivate": "true"})
        assert note.status_code == 201, note.text
        await wait_sql(server, "SELECT count(*) FROM messages WHERE from_me AND NOT is_private AND ack = 4", None,
                       [(2,)])

        answered = await page(api, token, ticket_id)
        messages = answered["messages"]
        assert answered["hasMore"] is False and answered["nextId"] is None and len(messages) == 13
        by_wid = {m["wid"]: m for m in messages}
        for message in messages:  # every bubble: a JSON object to parse, its key, a time, a text
            data = data_of(message)
            assert data["key"] == {"remoteJid": f"{MARIA}@s.whatsapp.net", "fromMe": message["fromMe"],
                                   "id": message["wid"]}
            assert isinstance(data["messageTimestamp"], int) and isinstance(message["body"], str)
            assert dt.datetime.fromisoformat(message["createdAt"]) and message["mediaType"] != "reactionMessage"
            contact = message["contact"]
            assert contact is None if message["fromMe"] else contact["name"] == "Maria" and contact["number"] == MARIA
            if message["mediaType"] in ("image", "video", "audio", "document") and message["mediaUrl"]:
                assert "extendedTextMessage" not in data["message"]  # it would hide the file

        edited = by_wid[text]
        assert content(edited) == ("conversation", "oi, tudo bem? (editado)") and edited["isEdited"] is True
        assert edited["replies"] == [{"id": f"{edited['id']}-reaction", "mediaType": "reactionMessage",
                                      "body": "❤️", "contact": None}]
        assert content(by_wid[image]) == ("imageMessage", {"caption": "a foto", "mimetype": "image/jpeg",
                                                           "contextInfo": None})
        assert by_wid[image]["mediaType"] == "image" and by_wid[image]["mediaUrl"].endswith("/f.jpg")
        name, audio = content(by_wid[voice])
        assert (by_wid[voice]["mediaType"], name, audio["ptt"]) == ("audio", "audioMessage", True)  # plays as audio
        assert content(by_wid[video])[0] == "videoMessage" and by_wid[video]["isDeleted"] is True
        name, pdf = content(by_wid[document])
        assert (name, pdf["fileName"], pdf["mimetype"]) == ("documentMessage", "boleto.pdf", "application/pdf")
        assert content(by_wid[sticker])[0] == "stickerMessage"
        assert content(by_wid[place]) == ("locationMessage", {
            "degreesLatitude": -23.561414, "degreesLongitude": -46.6558819, "name": "Av. Paulista, 1000",
            "contextInfo": None})
        assert content(by_wid[spot]) == ("locationMessage", {"degreesLatitude": -22.9, "degreesLongitude": -43.2,
                                                             "name": None, "contextInfo": None})
        assert by_wid[card]["body"] == VCARD and content(by_wid[card]) == ("contactMessage", {
            "vcard": VCARD, "contextInfo": None})
        quoting = by_wid[reply]
        assert content(quoting) == ("extendedTextMessage", {"text": "gostou?", "contextInfo": {"stanzaId": image}})
        quoted = quoting["quotedMsg"]
        assert (quoted["id"], quoted["body"], quoted["fromMe"], quoted["mediaType"]) == (
            by_wid[image]["id"], "a foto", False, "image")
        assert quoted["mediaUrl"] == by_wid[image]["mediaUrl"] and quoted["contact"]["name"] == "Maria"
        assert content(quoted)[0] == "imageMessage"

        ours = [m for m in messages if m["fromMe"]]
        assert [m["body"] for m in ours] == ["Olá Maria!", "contrato.pdf", "cliente VIP"]
        hello, contract, private = ours
        assert content(hello) == ("extendedTextMessage", {"text": "Olá Maria!", "contextInfo": {"stanzaId": text}})
        assert hello["quotedMsg"]["id"] == text_id and content(hello["quotedMsg"])[0] == "conversation"
        assert content(contract)[0] == "documentMessage" and content(contract)[1]["fileName"] == "contrato.pdf"
        assert private["isPrivate"] is True and content(private) == ("conversation", "cliente VIP")

        # The realtime events, built in Python, draw the same bubbles: a reply keeps its quote through its acks.
        latest = last_events(events)
        for message in messages:
            assert rendered(latest[message["id"]]) == rendered(message), message["wid"]
        assert latest[hello["id"]]["ack"] == 4 and latest[hello["id"]]["quotedMsg"]["id"] == text_id

        # The page's own ticket, by uuid, has the channel the header formats names by.
        by_uuid = await api.client.get(f"/tickets/u/{ticket_uuid}", headers=auth(token))
        assert by_uuid.status_code == 200 and by_uuid.json()["channel"] == "whatsapp"


async def test_a_group_message_names_its_sender(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        wid = await connected_sandbox(api, token)
        changed = await api.client.put("/settings/CheckMsgIsGroup", json={"value": "disabled"}, headers=auth(token))
        assert changed.status_code == 200
        server.deps.tickets._group_policy.clear()  # the cache lasts a few seconds; don't wait for it
        said = await inbound(api, token, wid, **{"from": MARIA, "name": "Maria", "body": "bom dia, equipe",
                                                 "group": {"id": "120363000000000001", "name": "Equipe"}})
        await wait_sql(server, "SELECT count(*) FROM messages", None, [(1,)])
        ticket_id = server.sql("SELECT id FROM tickets")[0][0]
        message, = (await page(api, token, ticket_id))["messages"]
        assert message["wid"] == said and message["contact"] == {"id": None, "name": MARIA, "number": MARIA}
        assert data_of(message)["key"]["remoteJid"] == "120363000000000001@g.us"


async def test_older_messages_come_by_nextId(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        wid = await connected_sandbox(api, token)
        for n in range(25):
            await inbound(api, token, wid, **{"from": MARIA, "name": "Maria", "body": f"mensagem {n}"})
        await wait_sql(server, "SELECT count(*) FROM messages", None, [(25,)])
        ticket_id = server.sql("SELECT id FROM tickets")[0][0]
        newest = await page(api, token, ticket_id, markAsRead="true")
        assert [m["body"] for m in newest["messages"]] == [f"mensagem {n}" for n in range(5, 25)]
        assert newest["hasMore"] is True and newest["nextId"] == newest["messages"][0]["id"]
        older = await page(api, token, ticket_id, nextId=newest["nextId"])
        assert [m["body"] for m in older["messages"]] == [f"mensagem {n}" for n in range(5)]
        assert older["hasMore"] is False and older["nextId"] is None and older["count"] == 25
        # the whaticket paging still pages the same history
        second = await page(api, token, ticket_id, pageNumber=2)
        assert [m["id"] for m in second["messages"]] == [m["id"] for m in older["messages"]]

        bad = await api.client.get(f"/messages/{ticket_id}", params={"nextId": "abc"}, headers=auth(token))
        assert bad.status_code == 400 and bad.json()["error"] == "ERR_VALIDATION"
        other = await api.client.get(f"/messages/{ticket_id}", params={"nextId": "999999"}, headers=auth(token))
        assert other.status_code == 404 and other.json()["error"] == "ERR_NOT_FOUND"
        # another ticket's message is no cursor here
        await inbound(api, token, wid, **{"from": "5511955550000", "name": "Bia", "body": "oi"})
        await wait_sql(server, "SELECT count(*) FROM tickets", None, [(2,)])
        bia_message = server.sql("SELECT m.id FROM messages m JOIN contacts c ON c.id = m.contact_id "
                                 "WHERE c.number = '5511955550000'")[0][0]
        foreign = await api.client.get(f"/messages/{ticket_id}", params={"nextId": bia_message}, headers=auth(token))
        assert foreign.status_code == 404


async def test_the_page_loads_its_ticket_by_uuid_and_its_buttons_change_it(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        wid = await connected_sandbox(api, token)
        await inbound(api, token, wid, **{"from": MARIA, "name": "Maria", "body": "oi"})
        await wait_sql(server, "SELECT count(*) FROM tickets", None, [(1,)])
        ticket_id, ticket_uuid, contact_id = server.sql("SELECT id, uuid, contact_id FROM tickets")[0]
        saved = await api.client.put(f"/contacts/{contact_id}", headers=auth(token), json={
            "name": "Maria", "number": MARIA, "email": "maria@example.test",
            "extraInfo": [{"name": "CPF", "value": "123"}, {"name": "Plano", "value": "Ouro"}]})
        assert saved.status_code == 200, saved.text
        me = (await api.client.get("/auth/me", headers=auth(token))).json()

        async def ticket() -> dict[str, Any]:
            response = await api.client.get(f"/tickets/u/{ticket_uuid}", headers=auth(token))
            assert response.status_code == 200, response.text
            return response.json()

        shown = await ticket()
        assert (shown["id"], shown["uuid"], shown["status"], shown["channel"]) == (ticket_id, str(ticket_uuid),
                                                                                 "pending", "whatsapp")
        assert (shown["contactId"], shown["isGroup"], shown["queueId"], shown["userId"]) == (contact_id, False,
                                                                                            None, None)
        assert "user" in shown and shown["user"] is None  # the header shows its info once `user` is defined
        contact = shown["contact"]
        assert (contact["id"], contact["name"], contact["number"], contact["email"], contact["isGroup"]) == (
            contact_id, "Maria", MARIA, "maria@example.test", False)
        assert isinstance(contact["profilePicUrl"], str)
        assert [(f["name"], f["value"]) for f in contact["extraInfo"]] == [("CPF", "123"), ("Plano", "Ouro")]
        assert shown["whatsapp"]["id"] == wid and shown["whatsapp"]["name"] and shown["tags"] == []
        assert (await api.client.get(f"/tickets/{ticket_id}", headers=auth(token))).json() == shown

        async def button(**body: Any) -> dict[str, Any]:
            response = await api.client.put(f"/tickets/{ticket_id}", json=body, headers=auth(token))
            assert response.status_code == 200, response.text
            return await ticket()

        accepted = await button(status="open", userId=me["id"])  # accept
        assert (accepted["status"], accepted["userId"], accepted["user"]) == ("open", me["id"],
                                                                              {"id": me["id"], "name": me["name"]})
        returned = await button(status="pending", userId=None)  # return to the queue
        assert (returned["status"], returned["userId"], returned["user"]) == ("pending", None, None)
        queue = await new_queue(api, token, "Financeiro")
        agent = await api.create_user(token, "agente@zapgate.test", queueIds=[queue])
        transferred = await button(userId=agent["id"], queueId=queue)  # transfer (the dialog's request)
        assert (transferred["userId"], transferred["queue"]["id"], transferred["queue"]["name"]) == (
            agent["id"], queue, "Financeiro")
        back = await button(queueId=queue, status="pending", userId=None)  # to the queue, nobody's
        assert (back["status"], back["userId"], back["queueId"]) == ("pending", None, queue)
        await button(status="open", userId=me["id"])
        closed = await button(status="closed", userId=me["id"])  # resolve
        assert closed["status"] == "closed"
        reopened = await button(status="open", userId=me["id"])  # reopen (admins)
        assert (reopened["status"], reopened["userId"]) == ("open", me["id"])

        for path in ("/tickets/u/not-a-uuid", "/tickets/u/00000000-0000-4000-8000-000000000000"):
            missing = await api.client.get(path, headers=auth(token))
            assert missing.status_code == 404 and missing.json()["error"]
        other = await company_b(api)
        foreign = await api.client.get(f"/tickets/u/{ticket_uuid}", headers=auth(other["token"]))
        assert foreign.status_code == 404


async def test_the_message_menu_reacts_and_shows_the_edit_history(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        wid = await connected_sandbox(api, token)
        theirs = await inbound(api, token, wid, **{"from": MARIA, "name": "Maria", "body": "primeira"})
        await inbound(api, token, wid, **{"from": MARIA, "name": "Maria", "edit": {"targetId": theirs,
                                                                                     "body": "segunda"}})
        await wait_sql(server, "SELECT count(*) FROM messages WHERE is_edited", None, [(1,)])
        ticket_id = server.sql("SELECT id FROM tickets")[0][0]
        message, = (await page(api, token, ticket_id))["messages"]

        history = await api.client.get(f"/messages/{message['id']}/history", headers=auth(token))
        assert history.status_code == 200, history.text
        old, = history.json()["oldMessages"]
        assert old["body"] == "primeira" and dt.datetime.fromisoformat(old["createdAt"])

        reacted = await api.client.post(f"/messages/react/{message['id']}", headers=auth(token),
                                        json={"ticketId": ticket_id, "emoji": "👍"})
        assert reacted.status_code == 200, reacted.text
        assert reacted.json()["replies"][0]["body"] == "👍" and reacted.json()["reaction"] == "👍"
        outbox = (await api.client.get(f"/sandbox/{wid}/outbox", headers=auth(token))).json()
        assert [(o["kind"], o["target_id"], o["emoji"]) for o in outbox] == [("reaction", theirs, "👍")]
        shown, = (await page(api, token, ticket_id))["messages"]
        assert shown["replies"] == [{"id": f"{shown['id']}-reaction", "mediaType": "reactionMessage", "body": "👍",
                                     "contact": None}]
        removed = await api.client.post(f"/messages/react/{message['id']}", headers=auth(token), json={"emoji": ""})
        assert removed.status_code == 200 and removed.json()["replies"] == [] and removed.json()["reaction"] is None

        note = (await api.client.post(f"/messages/{ticket_id}", headers=auth(token),
                                      json={"body": "nota", "isPrivate": True})).json()
        refused = await api.client.post(f"/messages/react/{note['id']}", headers=auth(token), json={"emoji": "👍"})
        assert refused.status_code == 400 and refused.json()["error"] == "ERR_MESSAGE_PRIVATE"
        bad = await api.client.post(f"/messages/react/{message['id']}", headers=auth(token), json={"emoji": 5})
        assert bad.status_code == 400 and bad.json()["error"] == "ERR_VALIDATION"
        other = await company_b(api)
        for response in (await api.client.get(f"/messages/{message['id']}/history", headers=auth(other["token"])),
                         await api.client.post(f"/messages/react/{message['id']}", headers=auth(other["token"]),
                                               json={"emoji": "👎"})):
            assert response.status_code == 404
        assert server.sql("SELECT reaction FROM messages WHERE id = %s", (message["id"],)) == [(None,)]
