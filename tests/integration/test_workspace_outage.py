"""Quick messages, ticket notes and a send with variables while the database is away: 503 + Retry-After, no
file kept, nothing written or sent; the same requests work once it is back. (The database is cut with
tests/faultproxy.py, as in test_db_outage.)"""

from __future__ import annotations

import trio

from tests.faultproxy import FaultProxy
from tests.integration.conftest import Api, Server, auth
from tests.integration.test_conversations import connected_sandbox, inbound
from tests.integration.test_db_outage import direct_sql, proxy, server  # noqa: F401 (the app behind the proxy)

TIMEOUT = 60
STATE = ("SELECT (SELECT json_agg(q ORDER BY q.id) FROM quick_messages q), "
         "(SELECT json_agg(n ORDER BY n.id) FROM ticket_notes n), (SELECT count(*) FROM messages)")


def _media_files(app: Server) -> list[str]:
    root = app.config.data_dir / "media"
    return sorted(str(path) for path in root.rglob("*")) if root.exists() else []


async def test_the_workspace_answers_503_while_the_database_is_away(api: Api, server: Server,  # noqa: F811
                                                                    proxy: FaultProxy,  # noqa: F811
                                                                    database_url: str) -> None:
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        wid = await connected_sandbox(api, token)
        await inbound(api, token, wid, **{"from": "5511944440000", "name": "Lia", "body": "oi"})
        while not await trio.to_thread.run_sync(direct_sql, database_url, "SELECT id FROM tickets"):
            await trio.sleep(0.05)
        ticket_id = (await trio.to_thread.run_sync(direct_sql, database_url, "SELECT id FROM tickets"))[0][0]
        quick = (await api.client.post("/quick-messages", json={"shortcode": "oi", "message": "Oi {{name}}"},
                                       headers=auth(token))).json()
        before = await trio.to_thread.run_sync(direct_sql, database_url, STATE)
        files = await trio.to_thread.run_sync(_media_files, server)

        await proxy.cut()
        assert (await api.client.get("/ready")).status_code == 503
        attempts = (
            ("POST", "/quick-messages", {"json": {"shortcode": "tchau", "message": "Tchau"}}),
            ("PUT", f"/quick-messages/{quick['id']}", {"json": {"message": "Olá {{name}}"}}),
            ("POST", f"/quick-messages/{quick['id']}/media-upload", {"files": {"file": ("a.png", b"p", "image/png")}}),
            ("GET", "/quick-messages/list", {}),
            ("POST", "/ticket-notes", {"json": {"note": "VIP", "ticketId": ticket_id}}),
            ("GET", "/ticket-notes/list", {"params": {"ticketId": ticket_id}}),
            ("POST", f"/messages/{ticket_id}", {"json": {"body": quick["message"]}}),
        )
        for method, url, kwargs in attempts:
            response = await api.client.request(method, url, headers=auth(token), **kwargs)
            assert response.status_code == 503, (method, url, response.text)
            assert response.headers["Retry-After"] and response.json()["error"].startswith("ERR_")
        assert await trio.to_thread.run_sync(_media_files, server) == files  # no file kept for nobody
        assert await trio.to_thread.run_sync(direct_sql, database_url, STATE) == before

        await proxy.restore()
        while True:  # the pool reconnects by itself
            sent = await api.client.post(f"/messages/{ticket_id}", json={"body": quick["message"]}, headers=auth(token))
            if sent.status_code != 503:
                break
            await trio.sleep(0.2)
        assert sent.status_code == 201 and sent.json()["body"] == "Oi Lia", sent.text
        while not (outbox := (await api.client.get(f"/sandbox/{wid}/outbox", headers=auth(token))).json()):
            await trio.sleep(0.05)
        assert [entry["body"] for entry in outbox] == ["Oi Lia"]  # sent once, rendered
        note = await api.client.post("/ticket-notes", json={"note": "VIP", "ticketId": ticket_id}, headers=auth(token))
        assert note.status_code == 201, note.text
