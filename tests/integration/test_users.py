"""Users and companies CRUD behaviours beyond access control: pagination, search, super flag."""

from __future__ import annotations

import trio

from tests.integration.conftest import Api, Server, auth


async def test_user_list_paginates_and_counts_past_the_end(api: Api) -> None:
    with trio.fail_after(30):
        token = await api.admin_token()
        for index in range(45):
            await api.create_user(token, f"agent{index:02d}@acme.test")
        first = (await api.client.get("/users", headers=auth(token))).json()
        assert len(first["users"]) == 40 and first["count"] == 46 and first["hasMore"] is True
        second = (await api.client.get("/users?pageNumber=2", headers=auth(token))).json()
        assert len(second["users"]) == 6 and second["hasMore"] is False
        assert not {u["id"] for u in first["users"]} & {u["id"] for u in second["users"]}
        past = (await api.client.get("/users?pageNumber=9", headers=auth(token))).json()
        assert past == {"users": [], "count": 46, "hasMore": False}
        found = (await api.client.get("/users?searchParam=AGENT0", headers=auth(token))).json()
        assert found["count"] == 10


async def test_super_admin_grants_and_removes_super(api: Api, server: Server) -> None:
    with trio.fail_after(30):
        token = await api.admin_token()
        user = await api.create_user(token, "deputy@acme.test", profile="admin")
        granted = await api.client.put(f"/users/{user['id']}", json={"super": True}, headers=auth(token))
        assert granted.status_code == 200 and granted.json()["super"] is True
        assert server.sql("SELECT super FROM users WHERE id = %s", (user["id"],)) == [(True,)]
        removed = await api.client.put(f"/users/{user['id']}", json={"super": False}, headers=auth(token))
        assert removed.json()["super"] is False


async def test_company_list_search_and_update(api: Api) -> None:
    with trio.fail_after(30):
        token = await api.admin_token()
        created = await api.create_company(token, "Padaria Pão Quente", "dono@padaria.test")
        listed = (await api.client.get("/companies?searchParam=padaria", headers=auth(token))).json()
        assert [c["id"] for c in listed["companies"]] == [created["id"]] and listed["count"] == 1
        updated = await api.client.put(f"/companies/{created['id']}", json={"phone": "5511999990000",
                                                                           "dueDate": "2027-01-31"},
                                       headers=auth(token))
        assert updated.status_code == 200
        assert updated.json()["phone"] == "5511999990000" and updated.json()["dueDate"] == "2027-01-31"
        assert updated.json()["name"] == "Padaria Pão Quente"


async def test_super_admin_sets_another_companys_connection_limit(api: Api) -> None:
    with trio.fail_after(30):
        token = await api.admin_token()
        created = await api.create_company(token, "Loja Limitada", "dono@loja.test")
        limited = await api.client.put(f"/companies/{created['id']}", json={"connectionLimit": 1}, headers=auth(token))
        assert limited.status_code == 200 and limited.json()["connectionLimit"] == 1
        owner = await api.login("dono@loja.test", "company-pass-1")
        first = await api.client.post("/whatsapp", json={"name": "a", "channel": "sandbox"}, headers=auth(owner))
        assert first.status_code == 201
        second = await api.client.post("/whatsapp", json={"name": "b", "channel": "sandbox"}, headers=auth(owner))
        assert second.status_code == 403 and second.json()["error"] == "ERR_CONNECTION_LIMIT"
        bad = await api.client.put(f"/companies/{created['id']}", json={"connectionLimit": -1}, headers=auth(token))
        assert bad.status_code == 400 and bad.json()["field"] == "connectionLimit"
