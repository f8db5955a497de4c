"""The JSON that PostgreSQL builds for GET /tickets and GET /messages/:ticketId (schema version 2: tickets_json,
messages_page_json) is the presenters' JSON (api/present_tickets.py), key for key and value for value, in
any session time zone; the answers of both routes carry it; ticket search finds substrings of the
contact's name and number and word prefixes of the last message, and never another company's tickets."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import trio
from psycopg.rows import dict_row

from api.present_tickets import MessagePresenter
from api.present_tickets import ticket as present_ticket
from storage.tickets import page_params
from tests.integration.conftest import Api, Server, auth
from tests.integration.test_tickets import company_b, listed_ids, new_contact, new_queue, new_ticket
from tests.integration.test_whatsapp import create_sandbox

TIMEOUT = 30
BASE_URL = "http://zapgate.test"


def _same_json(value: Any) -> Any:
    """What a client reads from the presenter's output."""
    return json.loads(json.dumps(value))


def _rows(server: Server, query: str, params: Any = None, *, time_zone: str = "UTC") -> list[dict[str, Any]]:
    with psycopg.connect(server.database_url, autocommit=True, row_factory=dict_row,
                         options=f"-c TimeZone={time_zone}") as conn:
        return conn.execute(query, params).fetchall()


async def _varied_tickets(api: Api, server: Server, token: str) -> list[int]:
    """Tickets with and without a queue, a user, tags, a contact's optional fields; odd text and timestamps."""
    await create_sandbox(api, token)
    queue = await new_queue(api, token, "Suporte Técnico")
    agent = await api.create_user(token, "agente@zapgate.test")
    plain = await new_contact(api, token, 'Zé "Aspas" \\ Ünïcode 😀', "5511988880001")
    full = await new_contact(api, token, "Maria Nogueira", "5511988880002")
    server.sql("UPDATE contacts SET lid = '12345', email = 'maria@example.test', profile_pic_url = 'https://p/x.jpg',"
               " is_group = false WHERE id = %s", (full,))
    bare = (await new_ticket(api, token, plain, status="pending"))["id"]
    rich = (await new_ticket(api, token, full, queueId=queue, userId=agent["id"]))["id"]
    server.sql("UPDATE tickets SET last_message = %s, unread_messages = 2, created_at = '2024-03-10 12:00:00+00',"
               " updated_at = '2024-03-10 12:00:00.120000+00', last_message_at = '2024-03-10 12:00:00.000001+00'"
               " WHERE id = %s", ("linha 1\nlinha\t2 \"citação\" \\ fim", rich))
    vip, urgent = (row[0] for row in server.sql(
        "INSERT INTO tags (company_id, name, color) VALUES (1, 'vip', '#ff0000'), (1, 'urgente', '#00ff00') "
        "RETURNING id"))
    server.sql("INSERT INTO ticket_tags (company_id, ticket_id, tag_id) VALUES (1, %s, %s), (1, %s, %s)",
               (rich, vip, rich, urgent))
    return [bare, rich]


async def test_tickets_json_is_the_presenters_in_any_time_zone(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        ticket_ids = await _varied_tickets(api, server, token)
        for time_zone in ("UTC", "America/Sao_Paulo", "Asia/Kolkata"):
            rows = _rows(server, "SELECT *, json::text AS json_text FROM tickets_json WHERE id = ANY(%s) ORDER BY id",
                         (ticket_ids,), time_zone=time_zone)
            assert [row["id"] for row in rows] == sorted(ticket_ids)
            for row in rows:
                assert json.loads(row["json_text"]) == _same_json(present_ticket(row)), (time_zone, row["id"])
        bare, rich = (json.loads(row["json_text"]) for row in _rows(
            server, "SELECT json::text AS json_text FROM tickets_json WHERE id = ANY(%s) ORDER BY id", (ticket_ids,)))
        assert bare["queue"] is None and bare["user"] is None and bare["tags"] == [] and bare["userId"] is None
        assert rich["queue"]["name"] == "Suporte Técnico"
        assert [tag["name"] for tag in rich["tags"]] == ["urgente", "vip"]
        assert rich["createdAt"] == "2024-03-10T12:00:00+00:00"
        assert rich["updatedAt"] == "2024-03-10T12:00:00.120000+00:00"


async def test_the_list_answers_the_presented_tickets(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        ticket_ids = await _varied_tickets(api, server, token)
        response = await api.client.get("/tickets", params={"showAll": "true"}, headers=auth(token))
        assert response.status_code == 200 and response.headers["content-type"] == "application/json"
        answer = response.json()
        shown = {row["id"]: row for row in _rows(server, "SELECT * FROM tickets_shown WHERE id = ANY(%s)",
                                                  (ticket_ids,))}
        assert answer["count"] == 2 and answer["hasMore"] is False and answer["nextCursor"] is None
        assert {ticket["id"] for ticket in answer["tickets"]} == set(ticket_ids)
        for ticket in answer["tickets"]:
            assert ticket == _same_json(present_ticket(shown[ticket["id"]]))
        empty = await api.client.get("/tickets", params={"showAll": "true", "status": "closed"}, headers=auth(token))
        assert empty.json() == {"tickets": [], "count": 0, "hasMore": False, "nextCursor": None}


def _parsed(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages with their `dataJson` (and their quote's) parsed, as the frontends read them: PostgreSQL and
    Python write the same object with different spacing."""
    out = []
    for message in messages:
        message = {**message, "dataJson": json.loads(message["dataJson"])}
        if message.get("quotedMsg"):
            message["quotedMsg"] = {**message["quotedMsg"], "dataJson": json.loads(message["quotedMsg"]["dataJson"])}
        out.append(message)
    return out


async def _messages(server: Server, ticket_id: int) -> None:
    """Messages of every kind: media, a quote of a sent message, a quote of a pending one (no wid yet), an
    agent's, odd text, a voice note, a document, a sticker, a named and an unnamed location, a contact card,
    a reply to an image; distinct timestamps (with and without microseconds)."""
    contact_id, whatsapp_id = server.sql("SELECT contact_id, whatsapp_id FROM tickets WHERE id = %s", (ticket_id,))[0]
    user_id = server.sql("SELECT min(id) FROM users")[0][0]
    common = {"ticket": ticket_id, "contact": contact_id, "whatsapp": whatsapp_id}
    first = server.sql(
        "INSERT INTO messages (company_id, whatsapp_id, ticket_id, contact_id, wid, body, created_at, updated_at) "
        "VALUES (1, %(whatsapp)s, %(ticket)s, %(contact)s, 'W1', 'olá \"mundo\" \\ 😀', '2024-05-01 10:00:00+00', "
        "'2024-05-01 10:00:00.5+00') RETURNING id", common)[0][0]
    pending = server.sql(
        "INSERT INTO messages (company_id, whatsapp_id, ticket_id, contact_id, from_me, body, status, read, "
        "sent_by_user_id, created_at) VALUES (1, %(whatsapp)s, %(ticket)s, %(contact)s, true, 'ainda não', "
        "'pending', true, %(user)s, '2024-05-01 10:01:00+00') RETURNING id", {**common, "user": user_id})[0][0]
    image = server.sql(
        "INSERT INTO messages (company_id, whatsapp_id, ticket_id, contact_id, wid, body, media_type, media_url, "
        "media_name, media_mimetype, quoted_msg_id, participant, reaction, is_edited, ack, wa_timestamp, created_at) "
        "VALUES (1, %(whatsapp)s, %(ticket)s, %(contact)s, 'W2', 'foto', 'image', '/media/1/x.jpg', 'x.jpg', "
        "'image/jpeg', %(quoted)s, '5511@s.whatsapp.net', '👍', true, 3, '2024-05-01 09:59:59.5+00', "
        "'2024-05-01 10:02:00.000123+00') RETURNING id", {**common, "quoted": first})[0][0]
    server.sql(
        "INSERT INTO messages (company_id, whatsapp_id, ticket_id, contact_id, wid, body, media_url, quoted_msg_id, "
        "created_at) VALUES (1, %(whatsapp)s, %(ticket)s, %(contact)s, 'W3', 'sem mídia', '', %(quoted)s, "
        "'2024-05-01 10:03:00+00')", {**common, "quoted": pending})
    kinds = [  # (wid, body, media_type, media_url, media_name, media_mimetype, latitude, longitude, quoted)
        ("W4", "", "ptt", "/media/2/v.ogg", "v.ogg", "audio/ogg; codecs=opus", None, None, None),
        ("W5", "nota.pdf", "document", "/media/3/nota.pdf", "nota.pdf", "application/pdf", None, None, None),
        ("W6", "", "sticker", "/media/4/s.webp", None, "image/webp", None, None, None),
        ("W7", "Av. Paulista, 1000", "location", None, None, None, -23.561414, -46.6558819, None),
        ("W8", "-23.5,-46.6", "location", None, None, None, -23.5, -46.6, None),
        ("W9", "BEGIN:VCARD\nVERSION:3.0\nFN:Ana\nTEL;waid=5511:+55 11\nEND:VCARD", "vcard", None, None, None,
         None, None, None),
        ("W10", "e esta?", "video", "/media/5/v.mp4", "v.mp4", "video/mp4", None, None, image),
    ]
    for minute, (wid, body, kind, url, name, mimetype, latitude, longitude, quoted) in enumerate(kinds, start=4):
        server.sql(
            "INSERT INTO messages (company_id, whatsapp_id, ticket_id, contact_id, wid, body, media_type, media_url, "
            "media_name, media_mimetype, latitude, longitude, quoted_msg_id, created_at) VALUES (1, %(whatsapp)s, "
            "%(ticket)s, %(contact)s, %(wid)s, %(body)s, %(kind)s, %(url)s, %(name)s, %(mimetype)s, %(latitude)s, "
            "%(longitude)s, %(quoted)s, '2024-05-01 10:00:00+00'::timestamptz + make_interval(mins => %(minute)s))",
            {**common, "wid": wid, "body": body, "kind": kind, "url": url, "name": name, "mimetype": mimetype,
             "latitude": latitude, "longitude": longitude, "quoted": quoted, "minute": minute})


async def test_messages_json_is_the_presenters_and_the_route_answers_it(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        bare, rich = await _varied_tickets(api, server, token)
        await _messages(server, rich)
        present = MessagePresenter(BASE_URL)
        shown = _rows(server, "SELECT * FROM tickets_shown WHERE id = %s", (rich,))[0]
        params = page_params(_rows(server, server.db.q.ticket_show_json, {"id": rich, "company_id": 1})[0], limit=4,
                             offset=1, base_url=BASE_URL)
        for time_zone in ("UTC", "America/Sao_Paulo"):
            for page in ({}, {"offset": 0, "limit": 20}, {"offset": 0, "limit": 3}):
                built = _rows(server, server.db.q.messages_page_json, {**params, **page}, time_zone=time_zone)[0]
                rows = _rows(server, server.db.q.messages_page, {**params, **page}, time_zone=time_zone)
                assert _parsed(json.loads(built["messages"])) == _parsed(_same_json(
                    [present(row, shown) for row in reversed(rows)])), (time_zone, page)
        built = _rows(server, server.db.q.messages_page_json, params)[0]
        assert (built["shown"], built["count"], built["more"]) == (4, 11, True)
        page = _parsed(json.loads(_rows(server, server.db.q.messages_page_json, {**params, "offset": 0,
                                                                                  "limit": 20})[0]["messages"]))
        assert [message["body"] for message in page][:4] == ['olá "mundo" \\ 😀', "ainda não", "foto", "sem mídia"]
        foto, no_media = page[2], page[3]
        assert foto["mediaUrl"] == f"{BASE_URL}/media/1/x.jpg" and no_media["mediaUrl"] is None
        assert foto["quotedMsg"]["body"] == 'olá "mundo" \\ 😀' and no_media["quotedMsg"] is None
        assert [message["mediaType"] for message in page][4:] == ["audio", "document", "image", "location",
                                                                  "location", "vcard", "video"]

        expected_messages = [MessagePresenter(server.config.backend_url)(row, shown) for row in reversed(
            _rows(server, server.db.q.messages_page, {**params, "limit": 20, "offset": 0}))]
        response = await api.client.get(f"/messages/{rich}", headers=auth(token))
        assert response.status_code == 200 and response.headers["content-type"] == "application/json"
        answer = response.json()
        assert {**answer, "messages": _parsed(answer["messages"])} == {
            "messages": _parsed(_same_json(expected_messages)), "ticket": _same_json(present_ticket(shown)),
            "count": 11, "hasMore": False, "nextId": None}
        # Read on the first page: the answer showed the ticket as it was; the database has it read.
        assert answer["ticket"]["unreadMessages"] == 2
        assert server.sql("SELECT unread_messages FROM tickets WHERE id = %s", (rich,)) == [(0,)]
        assert server.sql("SELECT count(*) FROM messages WHERE ticket_id = %s AND NOT read", (rich,)) == [(0,)]
        second = (await api.client.get(f"/messages/{rich}", params={"pageNumber": 2}, headers=auth(token))).json()
        assert second["messages"] == [] and second["count"] == 11 and second["hasMore"] is False
        empty = (await api.client.get(f"/messages/{bare}", headers=auth(token))).json()
        assert empty["messages"] == [] and empty["count"] == 0 and empty["ticket"]["id"] == bare


async def test_search_finds_name_and_number_substrings_and_last_message_word_prefixes(api: Api,
                                                                                      server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        await create_sandbox(api, token)
        names = ["Maria Nogueira", "João Silva", "Ana Souza"]
        contacts = [await new_contact(api, token, name, f"551197777000{i}") for i, name in enumerate(names)]
        maria, joao, ana = [(await new_ticket(api, token, contact))["id"] for contact in contacts]
        server.sql("UPDATE tickets SET last_message = 'Preciso da segunda via do boleto, por favor' WHERE id = %s",
                   (joao,))
        server.sql("UPDATE tickets SET last_message = %s WHERE id = %s", ("O_o 100% ok", ana))
        server.sql("UPDATE tickets SET last_message_at = now() - make_interval(mins => id::int)")
        other = await company_b(api)
        # Another company: a contact and a last message that match every search below.
        server.sql("UPDATE contacts SET name = 'Maria Nogueira' WHERE id = %s", (other["contact"],))
        theirs = (await new_ticket(api, other["token"], other["contact"]))["id"]
        server.sql("UPDATE tickets SET last_message = 'boleto segunda via' WHERE id = %s", (theirs,))

        async def found(text: str) -> list[int]:
            return await listed_ids(api, token, showAll="true", searchParam=text)

        assert await found("nogueira") == [maria]  # a substring of the name, any case
        assert await found("OGUEI") == [maria]
        assert await found("LV") == [joao]  # two letters: no trigram to look up, still a substring
        assert await found("97777000") == [maria, joao, ana]  # a substring of the number
        assert await found("77770001") == [joao]
        assert await found("bol") == [joao]  # a word of the last message starts with it
        assert await found("SEGUNDA via") == [joao]  # every word, in any order
        assert await found("via segunda") == [joao]
        assert await found("oleto") == []  # inside a word of the last message: not a word prefix
        assert await found("boleto cancelado") == []
        assert await found("100%") == [ana]  # the word "100"; the % is no wildcard
        assert await found("no%ra") == []
        assert theirs not in await found("boleto") + await found("Maria") + await found("21977770000")
        assert await listed_ids(api, other["token"], showAll="true", searchParam="nogueira") == [theirs]
