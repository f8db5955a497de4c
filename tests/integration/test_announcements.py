"""`/announcements`: the super admin's notices to every company — shapes, drafts, pages, search, the
image, who may write, bad input, and `company-announcement` reaching every company's sockets."""

from __future__ import annotations

from typing import Any

import attrs
import httpx
import pytest
import trio

from tests.integration.conftest import Api, Server, auth
from tests.integration.socketio_client import polling_socket
from tests.integration.test_platform_settings import PNG, assert_error

TIMEOUT = 30
RECORD_KEYS = {"id", "priority", "title", "text", "mediaPath", "mediaName", "companyId", "status", "createdAt",
               "updatedAt"}


@attrs.frozen
class World:
    super_admin: str  # super admin of company Default
    default_id: int
    admin: str  # admin (not super) of company Alpha
    user: str  # plain user of Alpha
    alpha_id: int
    b_user: str  # plain user of Beta


@pytest.fixture
async def world(api: Api) -> World:
    super_admin = await api.admin_token()
    default_id = (await api.client.get("/auth/me", headers=auth(super_admin))).json()["companyId"]
    alpha = await api.create_company(super_admin, "Alpha", "admin@alpha.test", "alpha-pass-1")
    await api.create_company(super_admin, "Beta", "admin@beta.test", "beta-pass-1")
    admin = await api.login("admin@alpha.test", "alpha-pass-1")
    await api.create_user(admin, "user@alpha.test", "user-pass-1")
    await api.create_user(await api.login("admin@beta.test", "beta-pass-1"), "user@beta.test", "user-pass-1")
    return World(super_admin=super_admin, default_id=default_id, admin=admin,
                 user=await api.login("user@alpha.test", "user-pass-1"), alpha_id=alpha["id"],
                 b_user=await api.login("user@beta.test", "user-pass-1"))


async def announce(api: Api, token: str, **fields: Any) -> dict[str, Any]:
    response = await api.client.post("/announcements", json={"title": "Notice", "text": "Some text", **fields},
                                     headers=auth(token))
    assert response.status_code == 200, response.text
    return response.json()


async def records(api: Api, token: str, **params: Any) -> dict[str, Any]:
    response = await api.client.get("/announcements/", params=params, headers=auth(token))  # as the bell calls it
    assert response.status_code == 200, response.text
    return response.json()


async def rows(server: Server) -> list[tuple[Any, ...]]:
    return await trio.to_thread.run_sync(server.sql, "SELECT * FROM announcements ORDER BY id")


async def test_every_company_reads_the_active_notices_drafts_stay_with_super_admins(api: Api, world: World) -> None:
    with trio.fail_after(TIMEOUT):
        urgent = await announce(api, world.super_admin, title="Maintenance tonight", text="From 22h to 23h",
                                priority=1)
        assert set(urgent) == RECORD_KEYS
        assert urgent["priority"] == 1 and urgent["status"] is True and urgent["companyId"] == world.default_id
        assert urgent["mediaPath"] is None and urgent["mediaName"] is None and urgent["createdAt"]
        draft = await announce(api, world.super_admin, title="New prices", text="Draft", status=False)
        assert draft["priority"] == 3 and draft["status"] is False  # the frontend's defaults: low, active

        for token in (world.user, world.admin, world.b_user):  # every company, every role
            page = await records(api, token)
            assert page == {"records": [urgent], "count": 1, "hasMore": False}
            assert (await api.client.get(f"/announcements/{urgent['id']}", headers=auth(token))).json() == urgent
            assert_error(await api.client.get(f"/announcements/{draft['id']}", headers=auth(token)), 404)
            listed = (await api.client.get("/announcements/list", headers=auth(token))).json()
            assert [a["id"] for a in listed] == [urgent["id"]]
            assert listed[0]["company"] == {"id": world.default_id, "name": "Default"}
        everything = await records(api, world.super_admin)
        assert [r["id"] for r in everything["records"]] == [draft["id"], urgent["id"]]  # newest first
        assert (await api.client.get(f"/announcements/{draft['id']}", headers=auth(world.super_admin))).json() == draft
        filtered = await api.client.get("/announcements/list", params={"companyId": world.alpha_id},
                                        headers=auth(world.super_admin))
        assert filtered.json() == []

        # published: now everybody sees it
        published = await api.client.put(f"/announcements/{draft['id']}", json={**draft, "status": True},
                                         headers=auth(world.super_admin))
        assert published.status_code == 200 and published.json()["status"] is True
        assert (await records(api, world.b_user))["count"] == 2


async def test_pages_and_search(api: Api, world: World) -> None:
    with trio.fail_after(TIMEOUT):
        for number in range(23):
            await announce(api, world.super_admin, title=f"Release {number:02d}", text="Notes")
        await announce(api, world.super_admin, title="Holiday 50% off_season", text="Closed")
        first = await records(api, world.user)
        assert len(first["records"]) == 20 and first["count"] == 24 and first["hasMore"] is True
        second = await records(api, world.user, pageNumber=2)
        assert len(second["records"]) == 4 and second["hasMore"] is False
        ids = [r["id"] for r in first["records"] + second["records"]]
        assert len(set(ids)) == 24 and ids == sorted(ids, reverse=True)
        assert await records(api, world.user, pageNumber=3) == {"records": [], "count": 24, "hasMore": False}
        found = await records(api, world.user, searchParam="release 1")
        assert sorted(r["title"] for r in found["records"]) == [f"Release {n}" for n in range(10, 20)]
        assert (await records(api, world.user, searchParam="50%"))["count"] == 1  # LIKE's wildcards are literal
        assert (await records(api, world.user, searchParam="0%s"))["count"] == 0  # "0", anything, "s": no
        assert_error(await api.client.get("/announcements", params={"pageNumber": "x"}, headers=auth(world.user)),
                     400, "ERR_VALIDATION", "pageNumber")


async def test_only_a_super_admin_writes_and_bad_input_changes_nothing(api: Api, server: Server,
                                                                       world: World) -> None:
    with trio.fail_after(TIMEOUT):
        notice = await announce(api, world.super_admin)
        before = await rows(server)
        for token in (world.admin, world.user):
            assert_error(await api.client.post("/announcements", json={"title": "x", "text": "y"},
                                               headers=auth(token)), 403, "ERR_NO_PERMISSION")
            assert_error(await api.client.put(f"/announcements/{notice['id']}", json={"title": "Hijacked"},
                                              headers=auth(token)), 403, "ERR_NO_PERMISSION")
            assert_error(await api.client.delete(f"/announcements/{notice['id']}", headers=auth(token)), 403)
            upload = await api.client.post(f"/announcements/{notice['id']}/media-upload",
                                           files={"file": ("a.png", PNG, "image/png")}, headers=auth(token))
            assert_error(upload, 403, "ERR_NO_PERMISSION")
            assert_error(await api.client.delete(f"/announcements/{notice['id']}/media-upload", headers=auth(token)),
                         403)
        bad = [
            ({"text": "no title"}, "title"), ({"title": "", "text": "x"}, "title"), ({"title": "x"}, "text"),
            ({"title": "x", "text": "   "}, "text"), ({"title": "x" * 256, "text": "y"}, "title"),
            ({"title": "x", "text": "y", "priority": 4}, "priority"), ({"title": "x", "text": "y", "priority": 0},
                                                                       "priority"),
            ({"title": "x", "text": "y", "priority": "high"}, "priority"),
            ({"title": "x", "text": "y", "status": "maybe"}, "status"), ({"title": 5, "text": "y"}, "title"),
        ]
        for body, field in bad:
            assert_error(await api.client.post("/announcements", json=body, headers=auth(world.super_admin)), 400,
                         "ERR_VALIDATION", field)
        for body, field in (({"title": ""}, "title"), ({"text": None}, "text"), ({"priority": 9}, "priority")):
            assert_error(await api.client.put(f"/announcements/{notice['id']}", json=body,
                                              headers=auth(world.super_admin)), 400, "ERR_VALIDATION", field)
        for method in ("GET", "PUT", "DELETE"):
            missing = await api.client.request(method, "/announcements/987654", json={"title": "x"},
                                               headers=auth(world.super_admin))
            assert_error(missing, 404, "ERR_NOT_FOUND")
        assert_error(await api.client.get("/announcements/abc", headers=auth(world.super_admin)), 404)
        assert await rows(server) == before

        # the modal sends the whole record back: only title, text, priority and status are taken
        edited = await api.client.put(f"/announcements/{notice['id']}", headers=auth(world.super_admin), json={
            **notice, "title": "Edited", "priority": "2", "status": "false", "mediaPath": "../../secret",
            "mediaName": "x", "companyId": world.alpha_id, "id": 1234,
        })
        assert edited.status_code == 200, edited.text
        shown = edited.json()
        assert (shown["id"], shown["title"], shown["priority"], shown["status"]) == (notice["id"], "Edited", 2, False)
        assert shown["mediaPath"] is None and shown["companyId"] == world.default_id
        deleted = await api.client.delete(f"/announcements/{notice['id']}", headers=auth(world.super_admin))
        assert deleted.status_code == 200 and deleted.json() == {"message": "Announcement deleted"}
        assert await rows(server) == []


async def test_the_image_is_a_public_file_replaced_and_removed_with_its_notice(api: Api, server: Server,
                                                                               world: World) -> None:
    with trio.fail_after(TIMEOUT):
        notice = await announce(api, world.super_admin)

        async def upload(content: bytes = PNG, mimetype: str = "image/png", name: str = "pic.png",
                         target: int = notice["id"]) -> httpx.Response:
            return await api.client.post(f"/announcements/{target}/media-upload",
                                         files={"file": (name, content, mimetype)}, headers=auth(world.super_admin))

        first = await upload()
        assert first.status_code == 200 and first.json() == {"mensagem": "Mensagem enviada"}
        shown = (await api.client.get(f"/announcements/{notice['id']}", headers=auth(world.user))).json()
        assert shown["mediaName"] == "pic.png" and shown["mediaPath"].endswith("/pic.png")
        served = await api.client.get(f"/public/{shown['mediaPath']}")  # where the bell loads it from
        assert served.status_code == 200 and served.content == PNG
        assert (await upload(name="other.png")).status_code == 200
        replaced = (await api.client.get(f"/announcements/{notice['id']}", headers=auth(world.user))).json()
        assert replaced["mediaName"] == "other.png"
        assert (await api.client.get(f"/public/{shown['mediaPath']}")).status_code == 404  # the old one is gone

        before = await rows(server)
        assert_error(await upload(b"<html>", "text/html", "x.html"), 406, "ERR_INVALID_UPLOAD")
        assert_error(await upload(target=987654), 404)
        assert_error(await api.client.post(f"/announcements/{notice['id']}/media-upload",
                                           files={"other": ("a.png", PNG, "image/png")},
                                           headers=auth(world.super_admin)), 406, "ERR_INVALID_UPLOAD")
        assert await rows(server) == before

        removed = await api.client.delete(f"/announcements/{notice['id']}/media-upload",
                                          headers=auth(world.super_admin))
        assert removed.status_code == 200
        cleared = (await api.client.get(f"/announcements/{notice['id']}", headers=auth(world.user))).json()
        assert cleared["mediaPath"] is None and cleared["mediaName"] is None
        assert (await api.client.get(f"/public/{replaced['mediaPath']}")).status_code == 404

        assert (await upload(name="last.png")).status_code == 200
        last = (await api.client.get(f"/announcements/{notice['id']}", headers=auth(world.user))).json()["mediaPath"]
        assert (await api.client.delete(f"/announcements/{notice['id']}", headers=auth(world.super_admin))).is_success
        assert (await api.client.get(f"/public/{last}")).status_code == 404
        assert list(server.deps.public_files.root.iterdir()) == []


async def test_changes_reach_every_company_and_drafts_only_super_admins(api: Api, server: Server,
                                                                        world: World) -> None:
    with trio.fail_after(TIMEOUT):
        async with polling_socket(server.url, f"/{world.default_id}", world.super_admin) as boss, \
                polling_socket(server.url, f"/{world.alpha_id}", world.user) as alpha_user, \
                polling_socket(server.url, f"/{world.alpha_id}", world.admin) as alpha_admin:
            notice = await announce(api, world.super_admin, title="Hello everyone")
            for socket in (boss, alpha_user, alpha_admin):
                event = await socket.wait_event("company-announcement", lambda p: p["action"] == "create")
                assert event == {"action": "create", "record": notice}

            draft = await announce(api, world.super_admin, title="Secret plan", status=False)
            created = await boss.wait_event("company-announcement", lambda p: p.get("record", {}).get("id") ==
                                            draft["id"])
            assert created == {"action": "create", "record": draft}
            for socket in (alpha_user, alpha_admin):  # a draft never reaches them; a delete clears it if shown
                event = await socket.wait_event("company-announcement", lambda p: p.get("id") == draft["id"])
                assert event == {"action": "delete", "id": draft["id"]}

            assert (await api.client.delete(f"/announcements/{notice['id']}",
                                            headers=auth(world.super_admin))).is_success
            for socket in (boss, alpha_user, alpha_admin):
                event = await socket.wait_event("company-announcement", lambda p: p.get("id") == notice["id"])
                assert event == {"action": "delete", "id": notice["id"]}
            everything = [payload for socket in (alpha_user, alpha_admin)
                          for payload in socket.received("company-announcement")]
            assert "Secret plan" not in str(everything)
            assert all("_supers" not in payload for payload in everything + boss.received("company-announcement"))
