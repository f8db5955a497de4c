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
        # the plan's code (the default plan has no limit: connectionLimit overrides it for this company)
        assert second.status_code == 400 and second.json()["error"] == "ERR_NO_PERMISSION_CONNECTIONS_LIMIT"
        bad = await api.client.put(f"/companies/{created['id']}", json={"connectionLimit": -1}, headers=auth(token))
        assert bad.status_code == 400 and bad.json()["field"] == "connectionLimit"


async def test_the_family_user_form_round_trip(api: Api) -> None:
    """ticketz's user form sends the whole user back with `password: ""` when it is not changed; its profile
    form (a user editing themself) sends their role and queues back unchanged — neither is refused."""
    admin = await api.admin_token()
    queue = (await api.client.post("/queue", json={"name": "Q", "color": "#111111"}, headers=auth(admin))).json()
    agent = await api.create_user(admin, "agent@form.test", queueIds=[queue["id"]])
    shown = (await api.client.get(f"/users/{agent['id']}", headers=auth(admin))).json()
    form = {**shown, "password": "", "name": "Agent Renamed", "queueIds": [queue["id"]]}
    edited = await api.client.put(f"/users/{agent['id']}", json=form, headers=auth(admin))
    assert edited.status_code == 200, edited.text
    assert edited.json()["name"] == "Agent Renamed"
    assert await api.login("agent@form.test", "user-pass-1")  # the blank password changed nothing
    own = await api.login("agent@form.test", "user-pass-1")
    self_edit = await api.client.put(f"/users/{agent['id']}", json={**form, "name": "Me", "password": "new-pass-1"},
                                     headers=auth(own))
    assert self_edit.status_code == 200, self_edit.text
    assert await api.login("agent@form.test", "new-pass-1")
    promote = await api.client.put(f"/users/{agent['id']}", json={**form, "profile": "admin"}, headers=auth(own))
    assert promote.status_code == 403 and "profile" in promote.json()["message"]
    requeue = await api.client.put(f"/users/{agent['id']}", json={**form, "queueIds": []}, headers=auth(own))
    assert requeue.status_code == 403 and "queueIds" in requeue.json()["message"]
    short = await api.client.put(f"/users/{agent['id']}", json={"password": "abc"}, headers=auth(admin))
    assert short.status_code == 400 and short.json()["field"] == "password"


async def test_contacts_carry_an_empty_tag_list_until_tags_exist(api: Api) -> None:
    admin = await api.admin_token()
    created = await api.client.post("/contacts", json={"name": "T", "number": "5511900001111"}, headers=auth(admin))
    listed = (await api.client.get("/contacts", headers=auth(admin))).json()["contacts"]
    assert created.json()["tags"] == [] and listed[0]["tags"] == []
