"""`/queue-options` while the database is away: 503 + Retry-After, no file kept, nothing half-written; the
same requests work once it is back. (The database is cut with tests/faultproxy.py, as in test_db_outage.)"""

from __future__ import annotations

import trio

from tests.faultproxy import FaultProxy
from tests.integration.conftest import Api, Server, auth
from tests.integration.test_db_outage import direct_sql, proxy, server  # noqa: F401 (the app behind the proxy)

TIMEOUT = 60


def _media_files(app: Server) -> list[str]:
    root = app.config.data_dir / "media"
    return sorted(str(path) for path in root.rglob("*")) if root.exists() else []


async def test_writes_answer_503_while_the_database_is_away(api: Api, server: Server, proxy: FaultProxy,  # noqa: F811
                                                            database_url: str) -> None:
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        queue = (await api.client.post("/queue", json={"name": "Sales", "color": "#123456"},
                                       headers=auth(token))).json()
        root = (await api.client.post("/queue-options", json={"queueId": queue["id"], "option": "1", "title": "A"},
                                      headers=auth(token))).json()
        tree = "SELECT id, parent_id, title, media_path FROM queue_options ORDER BY id"
        before = await trio.to_thread.run_sync(direct_sql, database_url, tree)
        files = await trio.to_thread.run_sync(_media_files, server)

        await proxy.cut()
        assert (await api.client.get("/ready")).status_code == 503  # the probe sees it away: calls wait 1 s at most
        attempts = (
            ("POST", "/queue-options", {"json": {"parentId": root["id"], "option": "1"}}),
            ("PUT", f"/queue-options/{root['id']}", {"json": {"title": "B"}}),
            ("DELETE", f"/queue-options/{root['id']}", {}),
            ("POST", f"/queue-options/{root['id']}/media-upload", {"files": {"file": ("a.png", b"png", "image/png")}}),
            ("POST", f"/queue/{queue['id']}/media-upload", {"files": {"file": ("a.png", b"png", "image/png")}}),
        )
        for method, url, kwargs in attempts:
            response = await api.client.request(method, url, headers=auth(token), **kwargs)
            assert response.status_code == 503, (method, url, response.text)
            assert response.headers["Retry-After"] and response.json()["error"].startswith("ERR_")
        assert await trio.to_thread.run_sync(_media_files, server) == files  # no file kept for nobody
        assert await trio.to_thread.run_sync(direct_sql, database_url, tree) == before

        await proxy.restore()
        while True:  # the pool reconnects by itself
            again = await api.client.post(f"/queue-options/{root['id']}/media-upload", headers=auth(token),
                                          files={"file": ("a.png", b"png", "image/png")})
            if again.status_code != 503:
                break
            await trio.sleep(0.2)
        assert again.status_code == 200, again.text
        after = await trio.to_thread.run_sync(direct_sql, database_url, tree)
        assert after[0][3] == again.json()["mediaPath"]
