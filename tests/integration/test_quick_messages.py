"""Quick messages: CRUD and shapes, the accent-insensitive search, who lists what (the setting quickMessages,
`geral`), who may change what, a shortcode unique per author, bad input, other companies' ids, the files,
the events (on the broker and on real sockets) and the acceptance line: a quick message found by its
shortcode, sent in a chat with its variables rendered (the sandbox outbox holds the rendered text), and
its file fetched and sent as the frontend does."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import trio

from actors.automation.render import greeting
from gateway.broker import Subscription
from tests.integration.conftest import Api, Server, auth
from tests.integration.socketio_client import polling_socket
from tests.integration.test_conversations import connected_sandbox, inbound, wait_sql
from tests.integration.test_tickets import company_b

TIMEOUT = 30
KEYS = {"id", "shortcode", "message", "mediaPath", "mediaName", "userId", "companyId", "geral", "createdAt",
        "updatedAt"}
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c63f8cfc0f01f0005000201ffa6e1e1d40000000049454e44ae426082")


# ─── helpers ────────────────────────────────────────────────────────────────────────────

async def new_quick(api: Api, token: str, shortcode: str, message: str, status: int = 201,
                    **fields: Any) -> dict[str, Any]:
    response = await api.client.post("/quick-messages", json={"shortcode": shortcode, "message": message, **fields},
                                     headers=auth(token))
    assert response.status_code == status, response.text
    return response.json()


async def shortcodes(api: Api, token: str, path: str = "/quick-messages/list", **params: Any) -> list[str]:
    response = await api.client.get(path, params=params, headers=auth(token))
    assert response.status_code == 200, response.text
    body = response.json()
    records = body if isinstance(body, list) else body["records"]
    return [record["shortcode"] for record in records]


def quick_events(subscription: Subscription) -> list[tuple[str, str, Any]]:
    seen = []
    while (event := subscription.receive_nowait()) is not None:
        if "quickmessage" in event.name or "quickemessage" in event.name:
            payload = event.payload
            seen.append((event.name, payload["action"],
                         payload["record"]["shortcode"] if "record" in payload else payload["id"]))
    return seen


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == code and body["message"], body


async def team(api: Api) -> tuple[str, tuple[str, int], tuple[str, int]]:
    """The admin's token, and two agents (token, id) of company 1."""
    admin = await api.admin_token()
    ana = await api.create_user(admin, "ana@default.test", "ana-pass-1", name="Ana")
    bia = await api.create_user(admin, "bia@default.test", "bia-pass-1", name="Bia")
    return (admin, (await api.login("ana@default.test", "ana-pass-1"), ana["id"]),
            (await api.login("bia@default.test", "bia-pass-1"), bia["id"]))


# ─── CRUD, shapes, search, events ───────────────────────────────────────────────────────

async def test_quick_message_crud_shapes_accent_insensitive_search_and_events(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT), server.broker.subscribe(1) as events:
        admin = await api.admin_token()
        me = (await api.client.get("/auth/me", headers=auth(admin))).json()
        hello = await new_quick(api, admin, "saudação", "Olá {{name}}, tudo bem?")
        assert set(hello) == KEYS
        assert (hello["shortcode"], hello["message"], hello["userId"], hello["companyId"], hello["geral"],
                hello["mediaPath"], hello["mediaName"]) == ("saudação", "Olá {{name}}, tudo bem?", me["id"], 1,
                                                           False, None, None)
        made = await api.client.post("/quick-messages/", json={"shortcode": "preco", "message": "O preço é R$ 10",
                                                               "geral": True}, headers=auth(admin))
        assert made.status_code == 201, made.text  # a trailing slash too
        price = made.json()
        assert price["geral"] is True
        await new_quick(api, admin, "Endereço", "Rua das Flores, 100")

        page = (await api.client.get("/quick-messages", headers=auth(admin))).json()
        assert set(page) == {"records", "count", "hasMore"} and (page["count"], page["hasMore"]) == (3, False)
        assert [r["shortcode"] for r in page["records"]] == ["Endereço", "preco", "saudação"]  # by shortcode
        for search, found in (("saudacao", ["saudação"]), ("SAUDAÇÃO", ["saudação"]), ("ola", ["saudação"]),
                              ("preço", ["preco"]), ("PRECO", ["preco"]), ("endereco", ["Endereço"]),
                              ("flôres", ["Endereço"]), ("%", []), ("_", []), ("zzz", [])):
            assert await shortcodes(api, admin, "/quick-messages", searchParam=search) == found, search
            assert await shortcodes(api, admin, searchParam=search) == found, search  # the list takes it too
        assert await shortcodes(api, admin) == ["Endereço", "preco", "saudação"]
        assert await shortcodes(api, admin, "/quick-messages/list/") == ["Endereço", "preco", "saudação"]

        shown = await api.client.get(f"/quick-messages/{hello['id']}", headers=auth(admin))
        assert shown.status_code == 200 and shown.json() == hello
        # ticketz's dialog sends the whole record back, with the editor's userId: only the three fields count
        changed = await api.client.put(f"/quick-messages/{hello['id']}/", headers=auth(admin), json={
            **hello, "shortcode": "oi", "message": "Oi {{firstname}}!", "id": 999, "userId": 12345,
            "mediaPath": "http://evil.example/x.png", "companyId": 2})
        assert changed.status_code == 200, changed.text
        after = changed.json()
        assert (after["id"], after["shortcode"], after["message"], after["userId"], after["companyId"],
                after["mediaPath"], after["geral"]) == (hello["id"], "oi", "Oi {{firstname}}!", me["id"], 1, None,
                                                        False)
        only_geral = await api.client.put(f"/quick-messages/{hello['id']}", json={"geral": "true"},
                                          headers=auth(admin))
        assert only_geral.status_code == 200 and only_geral.json()["geral"] is True
        assert only_geral.json()["message"] == "Oi {{firstname}}!"
        deleted = await api.client.delete(f"/quick-messages/{price['id']}", headers=auth(admin))
        assert deleted.status_code == 200
        assert (await api.client.get(f"/quick-messages/{price['id']}", headers=auth(admin))).status_code == 404
        assert server.sql("SELECT count(*) FROM quick_messages") == [(2,)]

        seen = quick_events(events)
        for name in ("company-1-quickmessage", "company1-quickemessage"):  # ticketz's and the SaaS frontend's
            assert [(action, what) for event, action, what in seen if event == name] == [
                ("create", "saudação"), ("create", "preco"), ("create", "Endereço"), ("update", "oi"),
                ("update", "oi"), ("delete", price["id"])]


async def test_pages_of_twenty(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        admin = await api.admin_token()
        for number in range(25):
            await new_quick(api, admin, f"atalho{number:02d}", f"texto {number}")
        first = (await api.client.get("/quick-messages", headers=auth(admin))).json()
        second = (await api.client.get("/quick-messages", params={"pageNumber": 2}, headers=auth(admin))).json()
        past = (await api.client.get("/quick-messages", params={"pageNumber": 3}, headers=auth(admin))).json()
        assert (len(first["records"]), first["count"], first["hasMore"]) == (20, 25, True)
        assert (len(second["records"]), second["count"], second["hasMore"]) == (5, 25, False)
        assert (past["records"], past["count"], past["hasMore"]) == ([], 25, False)
        assert [r["shortcode"] for r in first["records"] + second["records"]] == [f"atalho{n:02d}" for n in range(25)]
        assert len((await api.client.get("/quick-messages/list", headers=auth(admin))).json()) == 25


# ─── who lists what, who changes what ───────────────────────────────────────────────────

async def test_individual_and_company_lists_and_who_may_change(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        admin, (ana, ana_id), (bia, bia_id) = await team(api)
        mine = await new_quick(api, ana, "ana1", "da Ana")
        bias = await new_quick(api, bia, "bia1", "da Bia")
        shared = await new_quick(api, bia, "geral1", "de todos", geral=True)
        boss = await new_quick(api, admin, "chefe", "do admin")

        # individual (the default): one's own and the global ones, in the chat's list and on the page
        assert await shortcodes(api, ana) == ["ana1", "geral1"]
        assert await shortcodes(api, bia) == ["bia1", "geral1"]
        assert await shortcodes(api, admin) == ["chefe", "geral1"]  # the chat shows an admin their own set
        assert await shortcodes(api, ana, "/quick-messages") == ["ana1", "geral1"]
        assert await shortcodes(api, admin, "/quick-messages") == ["ana1", "bia1", "chefe", "geral1"]  # manages all
        assert await shortcodes(api, admin, "/quick-messages", userId=bia_id) == ["bia1", "geral1"]
        assert await shortcodes(api, ana, "/quick-messages", userId=bia_id) == ["geral1"]
        # another's personal message is not there for Ana: 404, whatever she tries; the global one she reads
        for method in ("GET", "PUT", "DELETE"):
            response = await api.client.request(method, f"/quick-messages/{bias['id']}", json={"message": "x"},
                                                 headers=auth(ana))
            assert_error(response, 404, "ERR_NOT_FOUND")
        upload = await api.client.post(f"/quick-messages/{bias['id']}/media-upload", headers=auth(ana),
                                       files={"file": ("a.png", PNG, "image/png")})
        assert_error(upload, 404, "ERR_NOT_FOUND")
        assert (await api.client.get(f"/quick-messages/{shared['id']}", headers=auth(ana))).status_code == 200
        # ... but changing it is its author's or an admin's: 403, and nothing changes
        before = server.sql("SELECT * FROM quick_messages ORDER BY id")
        for method, path in (("PUT", f"/quick-messages/{shared['id']}"), ("DELETE", f"/quick-messages/{shared['id']}"),
                             ("DELETE", f"/quick-messages/{shared['id']}/media-upload")):
            response = await api.client.request(method, path, json={"message": "roubada"}, headers=auth(ana))
            assert_error(response, 403, "ERR_NO_PERMISSION")
        upload = await api.client.post(f"/quick-messages/{shared['id']}/media-upload", headers=auth(ana),
                                       files={"file": ("a.png", PNG, "image/png")})
        assert_error(upload, 403, "ERR_NO_PERMISSION")
        assert server.sql("SELECT * FROM quick_messages ORDER BY id") == before
        # an admin changes anybody's; the author stays
        fixed = await api.client.put(f"/quick-messages/{mine['id']}", json={"message": "da Ana, revisto"},
                                     headers=auth(admin))
        assert fixed.status_code == 200 and (fixed.json()["userId"], fixed.json()["message"]) == \
            (ana_id, "da Ana, revisto")
        assert (await api.client.get(f"/quick-messages/{boss['id']}", headers=auth(ana))).status_code == 404

        # company: every message of the company, to everybody; changing still the author's or an admin's
        assert (await api.client.put("/settings/quickMessages", json={"value": "company"},
                                     headers=auth(admin))).status_code == 200
        assert await shortcodes(api, ana) == ["ana1", "bia1", "chefe", "geral1"]
        assert (await api.client.get(f"/quick-messages/{bias['id']}", headers=auth(ana))).status_code == 200
        assert_error(await api.client.put(f"/quick-messages/{bias['id']}", json={"message": "x"}, headers=auth(ana)),
                     403, "ERR_NO_PERMISSION")
        assert (await api.client.delete(f"/quick-messages/{mine['id']}", headers=auth(ana))).status_code == 200


async def test_a_shortcode_is_unique_per_author_in_any_case(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        admin, (ana, _), (bia, _) = await team(api)
        first = await new_quick(api, ana, "Oi", "olá")
        again = await api.client.post("/quick-messages", json={"shortcode": "OI", "message": "de novo"},
                                      headers=auth(ana))
        assert_error(again, 409, "ERR_QUICKMESSAGE_ALREADY_EXISTS")
        assert again.json()["field"] == "shortcode"
        await new_quick(api, bia, "oi", "o meu")  # Bia's own "/oi": she never saw Ana's
        await new_quick(api, admin, "oi", "o do admin", geral=True)
        other = await new_quick(api, ana, "tchau", "até logo")
        renamed = await api.client.put(f"/quick-messages/{other['id']}", json={"shortcode": "oI"}, headers=auth(ana))
        assert_error(renamed, 409, "ERR_QUICKMESSAGE_ALREADY_EXISTS")
        assert (await api.client.get(f"/quick-messages/{other['id']}", headers=auth(ana))).json()["shortcode"] == \
            "tchau"
        # Ana's list holds her own and the admin's global one: both named "oi", each with its text
        listed = (await api.client.get("/quick-messages/list", headers=auth(ana))).json()
        assert sorted((r["shortcode"], r["message"]) for r in listed) == \
            [("Oi", "olá"), ("oi", "o do admin"), ("tchau", "até logo")]
        assert first["id"] in [r["id"] for r in listed]


async def test_bad_input_is_a_400_and_writes_nothing(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        admin = await api.admin_token()
        made = await new_quick(api, admin, "ok", "texto")
        bodies = [
            ({}, "shortcode"), ({"message": "sem atalho"}, "shortcode"), ({"shortcode": "sem texto"}, "message"),
            ({"shortcode": "  ", "message": "x"}, "shortcode"), ({"shortcode": "x", "message": "   "}, "message"),
            ({"shortcode": 12, "message": "x"}, "shortcode"), ({"shortcode": "x", "message": ["x"]}, "message"),
            ({"shortcode": "x" * 256, "message": "x"}, "shortcode"),
            ({"shortcode": "x", "message": "x" * 10_001}, "message"),
            ({"shortcode": "x", "message": "x", "geral": "talvez"}, "geral"),
            ({"shortcode": "x\x00y", "message": "x"}, "shortcode"),
        ]
        before = server.sql("SELECT * FROM quick_messages ORDER BY id")
        for body, field in bodies:
            response = await api.client.post("/quick-messages", json=body, headers=auth(admin))
            assert_error(response, 400, "ERR_VALIDATION")
            assert response.json()["field"] == field, (body, response.json())
        for body, _field in bodies[3:]:
            response = await api.client.put(f"/quick-messages/{made['id']}", json=body, headers=auth(admin))
            assert response.status_code == 400, (body, response.text)
        malformed = await api.client.post("/quick-messages", content=b"{nope", headers={
            **auth(admin), "Content-Type": "application/json"})
        assert_error(malformed, 400, "ERR_INVALID_JSON")
        assert_error(await api.client.get("/quick-messages", params={"pageNumber": "x"}, headers=auth(admin)),
                     400, "ERR_VALIDATION")
        assert_error(await api.client.get("/quick-messages", params={"userId": "-1"}, headers=auth(admin)),
                     400, "ERR_VALIDATION")
        for path in ("/quick-messages/abc", "/quick-messages/0", "/quick-messages/99999999"):
            assert_error(await api.client.get(path, headers=auth(admin)), 404, "ERR_NOT_FOUND")
        no_file = await api.client.post(f"/quick-messages/{made['id']}/media-upload", json={}, headers=auth(admin))
        assert no_file.status_code == 406 and no_file.json()["error"] == "ERR_INVALID_UPLOAD"
        empty = await api.client.post(f"/quick-messages/{made['id']}/media-upload", headers=auth(admin),
                                      files={"file": ("a.png", b"", "image/png")})
        assert empty.status_code == 406
        assert server.sql("SELECT * FROM quick_messages ORDER BY id") == before


async def test_another_companys_quick_messages_are_not_found(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        admin = await api.admin_token()
        ours = await new_quick(api, admin, "nosso", "texto nosso", geral=True)
        beta = await company_b(api)
        theirs = await new_quick(api, beta["token"], "deles", "texto deles", geral=True)
        assert await shortcodes(api, beta["token"]) == ["deles"]
        assert await shortcodes(api, beta["token"], "/quick-messages", searchParam="nosso") == []
        assert await shortcodes(api, admin) == ["nosso"]
        before = server.sql("SELECT * FROM quick_messages ORDER BY id")
        for method in ("GET", "PUT", "DELETE"):
            response = await api.client.request(method, f"/quick-messages/{ours['id']}",
                                                json={"message": "tomado"}, headers=auth(beta["token"]))
            assert_error(response, 404, "ERR_NOT_FOUND")
        assert_error(await api.client.post(f"/quick-messages/{ours['id']}/media-upload", headers=auth(beta["token"]),
                                           files={"file": ("a.png", PNG, "image/png")}), 404, "ERR_NOT_FOUND")
        assert_error(await api.client.delete(f"/quick-messages/{ours['id']}/media-upload",
                                             headers=auth(beta["token"])), 404, "ERR_NOT_FOUND")
        assert server.sql("SELECT * FROM quick_messages ORDER BY id") == before
        assert theirs["companyId"] == server.sql("SELECT id FROM companies WHERE name = 'Beta'")[0][0]


# ─── files ──────────────────────────────────────────────────────────────────────────────

async def test_file_upload_replace_remove_and_delete(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT), server.broker.subscribe(1) as events:
        admin = await api.admin_token()
        made = await new_quick(api, admin, "catalogo", "Segue o catálogo")
        media_root = server.config.data_dir / "media"
        uploaded = await api.client.post(f"/quick-messages/{made['id']}/media-upload", headers=auth(admin),
                                         files={"file": ("catálogo.png", PNG, "image/png")})
        assert uploaded.status_code == 200, uploaded.text
        answer = uploaded.json()
        assert answer["mensagem"] and answer["mediaName"] == "catálogo.png"
        media_url = re.escape(server.config.backend_url) + r"/media/[A-Za-z0-9_-]{22}/[^/]+\.png"
        assert re.fullmatch(media_url, answer["mediaPath"])
        shown = (await api.client.get(f"/quick-messages/{made['id']}", headers=auth(admin))).json()
        assert (shown["mediaPath"], shown["mediaName"]) == (answer["mediaPath"], "catálogo.png")
        # the frontend fetches it as is, without a token (an <img>, axios' plain get)
        fetched = await api.client.get(answer["mediaPath"])
        assert fetched.status_code == 200 and fetched.content == PNG
        # a second file replaces the first, whose file is gone
        again = await api.client.post(f"/quick-messages/{made['id']}/media-upload/", headers=auth(admin),
                                      files={"file": ("tabela.pdf", b"%PDF-1.4 tabela", "application/pdf")})
        assert again.status_code == 200 and again.json()["mediaName"] == "tabela.pdf"
        assert (await api.client.get(answer["mediaPath"])).status_code == 404
        assert len([p for p in media_root.iterdir() if p.is_dir()]) == 1
        removed = await api.client.delete(f"/quick-messages/{made['id']}/media-upload", headers=auth(admin))
        assert removed.status_code == 200 and removed.json()["mensagem"]
        after = (await api.client.get(f"/quick-messages/{made['id']}", headers=auth(admin))).json()
        assert (after["mediaPath"], after["mediaName"]) == (None, None)
        assert (await api.client.get(again.json()["mediaPath"])).status_code == 404
        assert [p for p in media_root.iterdir() if p.is_dir()] == []
        # deleting a message takes its file with it
        await api.client.post(f"/quick-messages/{made['id']}/media-upload", headers=auth(admin),
                              files={"file": ("c.png", PNG, "image/png")})
        assert len([p for p in media_root.iterdir() if p.is_dir()]) == 1
        assert (await api.client.delete(f"/quick-messages/{made['id']}", headers=auth(admin))).status_code == 200
        assert [p for p in media_root.iterdir() if p.is_dir()] == []
        updates = [what for _, action, what in quick_events(events) if action == "update"]
        assert updates == ["catalogo"] * 8  # 4 changes of its file, each under both names


# ─── realtime: who gets the events ──────────────────────────────────────────────────────

async def test_a_personal_messages_events_reach_only_its_author(api: Api, server: Server) -> None:
    name = "company-1-quickmessage"
    with trio.fail_after(TIMEOUT):
        _admin, (ana, _), (bia, _) = await team(api)
        async with polling_socket(server.url, "/1", ana) as ana_socket, \
                polling_socket(server.url, "/1", bia) as bia_socket:
            personal = await new_quick(api, ana, "meu", "só meu")
            created = await ana_socket.wait_event(name, lambda p: p["action"] == "create")
            assert created == {"action": "create", "record": personal}
            assert await ana_socket.wait_event("company1-quickemessage") == created  # the SaaS frontend's name
            shared = await new_quick(api, ana, "nosso", "de todos", geral=True)
            await bia_socket.wait_event(name, lambda p: p["record"]["id"] == shared["id"])  # a global one: all
            await ana_socket.wait_event(name, lambda p: p.get("record", {}).get("id") == shared["id"])
            assert [p["record"]["id"] for p in bia_socket.received(name)] == [shared["id"]]  # never the personal
            assert all("_participants" not in p for p in ana_socket.received(name))


# ─── acceptance: found by shortcode, sent with its variables rendered ───────────────────

async def test_a_quick_message_found_by_shortcode_is_sent_with_its_variables_rendered(api: Api,
                                                                                       server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        admin = await api.admin_token()
        zone = ZoneInfo("America/Manaus")
        assert (await api.client.put("/settings/timezone", json={"value": "America/Manaus"},
                                     headers=auth(admin))).status_code == 200
        wid = await connected_sandbox(api, admin)
        await inbound(api, admin, wid, **{"from": "5511977770000", "name": "Rita Souza", "body": "oi"})
        await wait_sql(server, "SELECT count(*) FROM tickets", None, [(1,)])
        ticket_id, contact_id = server.sql("SELECT id, contact_id FROM tickets")[0]
        contact = await api.client.put(f"/contacts/{contact_id}", headers=auth(admin), json={
            "name": "Rita Souza", "number": "5511977770000", "email": "rita@example.com",
            "extraInfo": [{"name": "plano", "value": "Ouro"}]})
        assert contact.status_code == 200, contact.text
        template = ("{{greeting}}, {{firstname}}! Protocolo {{protocol}}, ticket {{ticket}}. "
                    "Plano {{plano}}, e-mail {{email}}, número {{ name }}. Atendente: {{user}}. {{desconhecido}}")
        await new_quick(api, admin, "boasvindas", template)
        await new_quick(api, admin, "outra", "nada a ver")

        # the chat's "/" list: found by its shortcode; the frontend puts its text, as written, in the box
        found = (await api.client.get("/quick-messages/list", headers=auth(admin))).json()
        chosen = next(q for q in found if "/boasvindas".startswith("/" + q["shortcode"]))
        assert chosen["message"] == template
        before = dt.datetime.now(dt.UTC)
        sent = await api.client.post(f"/messages/{ticket_id}", headers=auth(admin),
                                     json={"body": chosen["message"], "fromMe": True, "read": 1, "mediaUrl": ""})
        after = dt.datetime.now(dt.UTC)
        assert sent.status_code == 201, sent.text
        admin_name = (await api.client.get("/auth/me", headers=auth(admin))).json()["name"]
        expected = [
            f"{greeting(moment.astimezone(zone))}, Rita! Protocolo {moment.astimezone(zone):%Y%m%d}-{ticket_id}, "
            f"ticket {ticket_id}. Plano Ouro, e-mail rita@example.com, número Rita Souza. Atendente: {admin_name}. "
            "{{desconhecido}}" for moment in (before, after)]
        assert sent.json()["body"] in expected  # stored and shown as sent
        await wait_sql(server, "SELECT status FROM messages WHERE id = %s", (sent.json()["id"],), [("sent",)])
        outbox = (await api.client.get(f"/sandbox/{wid}/outbox", headers=auth(admin))).json()
        assert [entry["body"] for entry in outbox] in ([text] for text in expected)  # the customer got it rendered
        # an internal note keeps its text as written
        note = await api.client.post(f"/messages/{ticket_id}", headers=auth(admin),
                                     json={"body": "usar {{name}} no retorno", "isPrivate": "true"})
        assert note.status_code == 201 and note.json()["body"] == "usar {{name}} no retorno"


async def test_a_quick_message_with_a_file_is_sent_as_the_frontend_does(api: Api, server: Server) -> None:
    """The SaaS frontend fetches the message's `mediaPath` (no token) and posts it as the chat's file, with the
    message as its body: the caption reaches the customer rendered."""
    with trio.fail_after(TIMEOUT):
        admin = await api.admin_token()
        wid = await connected_sandbox(api, admin)
        await inbound(api, admin, wid, **{"from": "5511966660000", "name": "Caio", "body": "catálogo?"})
        await wait_sql(server, "SELECT count(*) FROM tickets", None, [(1,)])
        ticket_id = server.sql("SELECT id FROM tickets")[0][0]
        made = await new_quick(api, admin, "catalogo", "Aqui está, {{name}}")
        await api.client.post(f"/quick-messages/{made['id']}/media-upload", headers=auth(admin),
                              files={"file": ("catalogo.png", PNG, "image/png")})
        option = next(q for q in (await api.client.get("/quick-messages/list", headers=auth(admin))).json()
                      if q["shortcode"] == "catalogo")
        blob = await api.client.get(option["mediaPath"])
        assert blob.status_code == 200 and blob.headers["content-type"].startswith("image/png")
        sent = await api.client.post(f"/messages/{ticket_id}", headers=auth(admin),
                                     data={"body": option["message"], "fromMe": "true"},
                                     files=[("medias", ("1700000000000.png", blob.content, "image/png"))])
        assert sent.status_code == 201, sent.text
        await wait_sql(server, "SELECT status FROM messages WHERE id = %s", (sent.json()["id"],), [("sent",)])
        outbox = (await api.client.get(f"/sandbox/{wid}/outbox", headers=auth(admin))).json()
        assert [(e["kind"], e["caption"], e["mimetype"], e["size"]) for e in outbox] == \
            [("image", "Aqui está, Caio", "image/png", len(PNG))]
