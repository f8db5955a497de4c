"""The messages API beyond the happy path: files, edits, deletions, the external API, refusals."""

from __future__ import annotations

import trio

from tests.integration.conftest import Api, Server, auth, make_config, start_server
from tests.integration.test_conversations import connected_sandbox, inbound, wait_sql

TIMEOUT = 60


async def open_ticket(api: Api, server: Server, token: str, wid: int, number: str = "5511922220000") -> int:
    await inbound(api, token, wid, **{"from": number, "name": "Cliente", "body": "oi"})
    await wait_sql(server, "SELECT count(*) FROM tickets t JOIN contacts c ON c.id = t.contact_id WHERE c.number = %s",
                   (number,), [(1,)])
    return server.sql("SELECT t.id FROM tickets t JOIN contacts c ON c.id = t.contact_id WHERE c.number = %s",
                      (number,))[0][0]


async def test_multipart_files_edit_and_delete_for_everyone(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        wid = await connected_sandbox(api, token)
        ticket_id = await open_ticket(api, server, token, wid)
        files = [("medias", ("foto.jpg", b"\xff\xd8\xff" + b"1" * 50, "image/jpeg")),
                 ("medias", ("nota.pdf", b"%PDF" + b"2" * 50, "application/pdf"))]
        sent = await api.client.post(f"/messages/{ticket_id}", data={"body": "veja"}, files=files,
                                     headers=auth(token))
        assert sent.status_code == 201, sent.text
        first, second = sent.json()
        assert (first["mediaType"], first["body"]) == ("image", "veja")
        assert (second["mediaType"], second["body"], second["mediaName"]) == ("document", "", "nota.pdf")
        await wait_sql(server, "SELECT count(*) FROM messages WHERE from_me AND status = 'sent'", None, [(2,)])
        outbox = (await api.client.get(f"/sandbox/{wid}/outbox", headers=auth(token))).json()
        assert [(o["kind"], o.get("caption"), o.get("filename")) for o in outbox] == [
            ("image", "veja", "foto.jpg"), ("document", "", "nota.pdf")]

        text = (await api.client.post(f"/messages/{ticket_id}", json={"body": "primeira versão"},
                                      headers=auth(token))).json()
        await wait_sql(server, "SELECT status FROM messages WHERE id = %s", (text["id"],), [("sent",)])
        edited = await api.client.post(f"/messages/edit/{text['id']}", json={"body": "segunda versão"},
                                       headers=auth(token))
        assert edited.status_code == 200, edited.text
        assert edited.json()["isEdited"] is True and edited.json()["body"] == "segunda versão"
        history = server.sql("SELECT edit_history->0->>'body' FROM messages WHERE id = %s", (text["id"],))
        assert history == [("primeira versão",)]
        deleted = await api.client.delete(f"/messages/{text['id']}", headers=auth(token))
        assert deleted.status_code == 200 and deleted.json()["isDeleted"] is True
        outbox = (await api.client.get(f"/sandbox/{wid}/outbox", headers=auth(token))).json()
        wid_of_text = server.sql("SELECT wid FROM messages WHERE id = %s", (text["id"],))[0][0]
        assert next(o for o in outbox if o["id"] == wid_of_text)["deleted"] is True


async def test_refusals_write_nothing(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        wid = await connected_sandbox(api, token)
        ticket_id = await open_ticket(api, server, token, wid)
        before = server.sql("SELECT count(*) FROM messages")
        cases = [
            (f"/messages/{ticket_id}", {"json": {"body": "   "}}, 400, "ERR_EMPTY_MESSAGE"),
            (f"/messages/{ticket_id}", {"json": {"body": 5}}, 400, "ERR_VALIDATION"),
            (f"/messages/{ticket_id}", {"json": {"body": "x", "quotedMsg": {"id": "abc"}}}, 400, "ERR_VALIDATION"),
            (f"/messages/{ticket_id}", {"json": {"body": "x", "quotedMsg": 999999}}, 404, "ERR_NOT_FOUND"),
            ("/messages/999999", {"json": {"body": "x"}}, 404, "ERR_NOT_FOUND"),
            ("/messages/abc", {"json": {"body": "x"}}, 404, "ERR_NOT_FOUND"),
            (f"/messages/{ticket_id}", {"content": b"{bad", "headers": {"Content-Type": "application/json"}}, 400,
             "ERR_INVALID_JSON"),
        ]
        for path, kwargs, status, code in cases:
            headers = {**auth(token), **kwargs.pop("headers", {})}
            response = await api.client.post(path, headers=headers, **kwargs)
            assert response.status_code == status, (path, kwargs, response.text)
            assert response.json()["error"] == code
        inbound_id = server.sql("SELECT id FROM messages WHERE NOT from_me")[0][0]
        not_mine = await api.client.delete(f"/messages/{inbound_id}", headers=auth(token))
        assert not_mine.status_code == 400 and not_mine.json()["error"] == "ERR_NOT_OWN_MESSAGE"
        assert server.sql("SELECT count(*) FROM messages") == before


async def test_files_over_the_upload_limit_are_413(nursery: trio.Nursery, database_url: str, tmp_path) -> None:
    import httpx

    server = await start_server(nursery, make_config(tmp_path, database_url, upload_max_size=10_000))
    with trio.fail_after(TIMEOUT):
        async with httpx.AsyncClient(base_url=server.url) as client:
            api = Api(client, server)
            token = await api.admin_token()
            wid = await connected_sandbox(api, token)
            ticket_id = await open_ticket(api, server, token, wid)
            big = await client.post(f"/messages/{ticket_id}", files=[("medias", ("big.bin", b"0" * 20_000,
                                                                                 "application/octet-stream"))],
                                    headers=auth(token))
            assert big.status_code == 413 and big.json()["error"] == "ERR_PAYLOAD_TOO_LARGE"
            assert server.sql("SELECT count(*) FROM messages WHERE from_me") == [(0,)]
    await server.db.aclose()


async def test_external_api_sends_to_a_number_with_the_connection_token(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        wid = await connected_sandbox(api, token)
        connection_token = (await api.client.get(f"/whatsapp/{wid}", headers=auth(token))).json()["token"]
        refused = await api.client.post("/api/messages/send", json={"number": "5511911110000", "body": "x"},
                                        headers=auth("not-a-token-at-all"))
        assert refused.status_code == 401
        jwt_is_not_a_connection_token = await api.client.post(
            "/api/messages/send", json={"number": "5511911110000", "body": "x"}, headers=auth(token))
        assert jwt_is_not_a_connection_token.status_code == 401
        sent = await api.client.post("/api/messages/send", json={"number": "+55 (11) 91111-0000", "body": "Seu pedido"},
                                     headers=auth(connection_token))
        assert sent.status_code == 201, sent.text
        await wait_sql(server, "SELECT count(*) FROM messages WHERE status = 'sent'", None, [(1,)])
        outbox = (await api.client.get(f"/sandbox/{wid}/outbox", headers=auth(token))).json()
        assert [(o["to"], o["body"]) for o in outbox] == [("5511911110000@s.whatsapp.net", "Seu pedido")]
        assert server.sql("SELECT number FROM contacts") == [("5511911110000",)]
        bad = await api.client.post("/api/messages/send", json={"number": "12", "body": "x"},
                                    headers=auth(connection_token))
        assert bad.status_code == 400 and bad.json()["field"] == "number"


async def test_another_companys_tickets_and_messages_are_404(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        wid = await connected_sandbox(api, token)
        ticket_id = await open_ticket(api, server, token, wid)
        mine = (await api.client.post(f"/messages/{ticket_id}", json={"body": "meu"}, headers=auth(token))).json()
        await wait_sql(server, "SELECT status FROM messages WHERE id = %s", (mine["id"],), [("sent",)])
        other = await api.create_company(token, "Outra Empresa", "chefe@outra.test")
        assert other["id"] != 1
        intruder = await api.login("chefe@outra.test", "company-pass-1")
        before = server.sql("SELECT id, body, is_deleted, is_edited FROM messages ORDER BY id")
        attempts = [("GET", f"/messages/{ticket_id}", {}), ("POST", f"/messages/{ticket_id}", {"json": {"body": "x"}}),
                    ("DELETE", f"/messages/{mine['id']}", {}),
                    ("POST", f"/messages/edit/{mine['id']}", {"json": {"body": "hacked"}})]
        for method, path, kwargs in attempts:
            response = await api.client.request(method, path, headers=auth(intruder), **kwargs)
            assert response.status_code == 404, (method, path, response.text)
            assert response.json()["error"].startswith("ERR_")
        assert server.sql("SELECT id, body, is_deleted, is_edited FROM messages ORDER BY id") == before
        no_token = await api.client.get(f"/messages/{ticket_id}")
        assert no_token.status_code == 401
