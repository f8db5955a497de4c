"""`/helps`: the super admin's help videos for every company — shapes, order, pages, search, YouTube
links, who may write, bad input."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from tests.integration.conftest import Api, Server, auth
from tests.integration.test_platform_settings import World, assert_error
from tests.integration.test_platform_settings import world as world  # the fixture

TIMEOUT = 30


async def create_help(api: Api, token: str, **fields: Any) -> dict[str, Any]:
    response = await api.client.post("/helps", json={"title": "Help", **fields}, headers=auth(token))
    assert response.status_code == 200, response.text
    return response.json()


async def rows(server: Server) -> list[tuple[Any, ...]]:
    return await trio.to_thread.run_sync(server.sql, "SELECT * FROM helps ORDER BY id")


async def test_helps_are_listed_to_every_company(api: Api, world: World) -> None:
    with trio.fail_after(TIMEOUT):
        tickets = await create_help(api, world.super_admin, title="Tickets", description="Accept and close",
                                    video="dQw4w9WgXcQ")
        assert set(tickets) == {"id", "title", "description", "video", "link", "createdAt", "updatedAt"}
        assert (tickets["title"], tickets["description"], tickets["video"], tickets["link"]) == \
            ("Tickets", "Accept and close", "dQw4w9WgXcQ", "")
        linked = await create_help(api, world.super_admin, title="connections",
                                   video="https://www.youtube.com/watch?v=abc_DEF-123&t=42s",
                                   link="https://docs.acme.test/connections", description=None)
        assert linked["video"] == "abc_DEF-123" and linked["description"] == ""  # what the embed needs
        short = await create_help(api, world.super_admin, title="Queues", video="https://youtu.be/XyZ987")
        assert short["video"] == "XyZ987"

        for token in (world.user, world.admin, world.b_admin):
            listed = await api.client.get("/helps/list/", headers=auth(token))  # the Helps page's call
            assert listed.status_code == 200
            assert [h["title"] for h in listed.json()] == ["connections", "Queues", "Tickets"]  # by title
            shown = await api.client.get(f"/helps/{tickets['id']}", headers=auth(token))
            assert shown.json() == tickets
        page = (await api.client.get("/helps", params={"searchParam": "QUE"}, headers=auth(world.user))).json()
        assert page == {"records": [short], "count": 1, "hasMore": False}


async def test_pages(api: Api, world: World) -> None:
    with trio.fail_after(TIMEOUT):
        for number in range(21):
            await create_help(api, world.super_admin, title=f"Video {number:02d}")
        first = (await api.client.get("/helps", headers=auth(world.user))).json()
        assert len(first["records"]) == 20 and first["count"] == 21 and first["hasMore"] is True
        assert first["records"][0]["title"] == "Video 00"
        second = (await api.client.get("/helps", params={"pageNumber": 2}, headers=auth(world.user))).json()
        assert [h["title"] for h in second["records"]] == ["Video 20"] and second["hasMore"] is False


async def test_only_a_super_admin_writes_and_bad_input_changes_nothing(api: Api, server: Server,
                                                                       world: World) -> None:
    with trio.fail_after(TIMEOUT):
        entry = await create_help(api, world.super_admin, title="Tickets", video="dQw4w9WgXcQ")
        before = await rows(server)
        for token in (world.admin, world.user, world.b_admin):
            assert_error(await api.client.post("/helps", json={"title": "Mine"}, headers=auth(token)), 403,
                         "ERR_NO_PERMISSION")
            assert_error(await api.client.put(f"/helps/{entry['id']}", json={"title": "Mine"}, headers=auth(token)),
                         403, "ERR_NO_PERMISSION")
            assert_error(await api.client.delete(f"/helps/{entry['id']}", headers=auth(token)), 403)
        bad = [({}, "title"), ({"title": "ab"}, "title"), ({"title": "x" * 256}, "title"),
               ({"title": "Video", "video": "https://vimeo.com/123"}, "video"),
               ({"title": "Video", "video": "not an id!"}, "video"),
               ({"title": "Video", "link": "javascript:alert(1)"}, "link"),
               ({"title": "Video", "description": 5}, "description")]
        for body, field in bad:
            assert_error(await api.client.post("/helps", json=body, headers=auth(world.super_admin)), 400,
                         "ERR_VALIDATION", field)
        assert_error(await api.client.put(f"/helps/{entry['id']}", json={"title": ""},
                                          headers=auth(world.super_admin)), 400, "ERR_VALIDATION", "title")
        for method in ("GET", "PUT", "DELETE"):
            assert_error(await api.client.request(method, "/helps/987654", json={"title": "Tickets"},
                                                  headers=auth(world.super_admin)), 404, "ERR_NOT_FOUND")
        assert await rows(server) == before

        # the manager sends {id, title, description, video}: a partial update keeps the rest
        edited = await api.client.put(f"/helps/{entry['id']}", json={"id": entry["id"], "title": "Tickets 101",
                                                                      "description": "The basics"},
                                      headers=auth(world.super_admin))
        assert edited.status_code == 200, edited.text
        assert (edited.json()["title"], edited.json()["description"], edited.json()["video"]) == \
            ("Tickets 101", "The basics", "dQw4w9WgXcQ")
        deleted = await api.client.delete(f"/helps/{entry['id']}", headers=auth(world.super_admin))
        assert deleted.json() == {"message": "Help deleted"}
        assert await rows(server) == []


@pytest.mark.parametrize("path", ["/helps", "/helps/list", "/announcements", "/announcements/list"])
async def test_reading_needs_a_token(api: Api, path: str) -> None:
    with trio.fail_after(TIMEOUT):
        assert_error(await api.client.get(path), 401)
