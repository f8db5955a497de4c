from __future__ import annotations

from tests.integration.conftest import Api, auth


async def test_health_ready_login_me(api: Api) -> None:
    health = await api.client.get("/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    ready = await api.client.get("/ready")
    assert ready.status_code == 200 and ready.json()["schema"] >= 1
    token = await api.admin_token()
    me = await api.client.get("/auth/me", headers=auth(token))
    assert me.status_code == 200
    assert me.json()["super"] is True and me.json()["company"]["name"] == "Default"
