"""`/queue-options`: the menu tree of a queue as ticketz's queue form builds it — create, read, save back,
move, cascade deletes, media, limits, bad input, tenancy, roles, events."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from gateway.broker import Subscription
from storage.queue_options import MAX_CHILDREN, MAX_DEPTH
from tests.integration.conftest import Api, Server, auth

TIMEOUT = 30
OPTION_KEYS = {"id", "title", "option", "message", "queueId", "parentId", "forwardQueueId", "exitChatbot",
               "mediaPath", "mediaName", "createdAt", "updatedAt"}


@attrs.frozen
class World:
    admin: str  # the super admin, of company Default
    company_id: int
    user: str  # a plain user of Default
    sales: int  # queues of Default
    support: int
    b_admin: str  # admin of company Beta
    b_queue: int
    b_option: int  # an option of Beta's queue


async def _queue(api: Api, token: str, name: str, color: str) -> int:
    response = await api.client.post("/queue", json={"name": name, "color": color}, headers=auth(token))
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def post_option(api: Api, token: str, **body: Any) -> dict[str, Any]:
    response = await api.client.post("/queue-options", json=body, headers=auth(token))
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture
async def world(api: Api) -> World:
    admin = await api.admin_token()
    me = (await api.client.get("/auth/me", headers=auth(admin))).json()
    await api.create_user(admin, "agent@default.test", "agent-pass-1")
    await api.create_company(admin, "Beta", "admin@beta.test", "beta-pass-1")
    b_admin = await api.login("admin@beta.test", "beta-pass-1")
    b_queue = await _queue(api, b_admin, "Beta queue", "#123456")
    b_option = await post_option(api, b_admin, queueId=b_queue, title="Beta", option="1")
    return World(admin=admin, company_id=me["companyId"], user=await api.login("agent@default.test", "agent-pass-1"),
                 sales=await _queue(api, admin, "Sales", "#00AA00"),
                 support=await _queue(api, admin, "Support", "#0000AA"),
                 b_admin=b_admin, b_queue=b_queue, b_option=b_option["id"])


def queue_events(subscription: Subscription) -> list[dict[str, Any]]:
    seen = []
    while (event := subscription.receive_nowait()) is not None:
        if event.name.endswith("-queue"):
            seen.append({"name": event.name, **event.payload})
    return seen


async def options_table(server: Server) -> list[tuple[Any, ...]]:
    return await trio.to_thread.run_sync(server.sql, "SELECT * FROM queue_options ORDER BY id")


def media_file(server: Server, media_path: str) -> Path:
    return server.config.data_dir / "media" / media_path.removeprefix("/media/")


# ─── the form's way ─────────────────────────────────────────────────────────────────────

async def test_the_ticketz_form_builds_reads_and_saves_a_tree(api: Api, server: Server, world: World) -> None:
    with trio.fail_after(TIMEOUT), server.broker.subscribe(world.company_id) as events:
        # The form adds a first-level option with its queue, numbered, with an empty title and message.
        first = await post_option(api, world.admin, title="", message="", edition=False, option=1, queueId=world.sales,
                                  parentId=None, children=[])
        assert set(first) == OPTION_KEYS
        assert (first["option"], first["title"], first["message"], first["queueId"], first["parentId"]) == (
            "1", "", "", world.sales, None)
        assert (first["forwardQueueId"], first["exitChatbot"], first["mediaPath"], first["mediaName"]) == (
            None, False, None, None)
        second = await post_option(api, world.admin, title="Support", option="2", queueId=world.sales,
                                   forwardQueueId=world.support, message="Moving you to support")
        # A sub-option given only its parent: its queue is the parent's.
        sub = await post_option(api, world.admin, parentId=first["id"], title="Prices", option=1,
                                message="Our prices: {{name}}", exitChatbot=True)
        assert sub["queueId"] == world.sales and sub["parentId"] == first["id"] and sub["exitChatbot"] is True

        roots = await api.client.get("/queue-options", params={"queueId": world.sales, "parentId": -1},
                                     headers=auth(world.user))  # any user reads
        assert roots.status_code == 200, roots.text
        assert [o["id"] for o in roots.json()] == [first["id"], second["id"]]
        assert roots.json()[1]["forwardQueueId"] == world.support
        children = await api.client.get("/queue-options", params={"queueId": world.sales, "parentId": first["id"]},
                                        headers=auth(world.admin))
        assert children.json() == [sub]
        every = await api.client.get("/queue-options", params={"queueId": world.sales}, headers=auth(world.admin))
        assert [o["id"] for o in every.json()] == [first["id"], second["id"], sub["id"]]
        one = await api.client.get(f"/queue-options/{first['id']}", headers=auth(world.user))
        assert one.status_code == 200 and one.json() == {**first, "options": [sub]}
        queue = (await api.client.get(f"/queue/{world.sales}", headers=auth(world.user))).json()
        assert [o["id"] for o in queue["options"]] == [first["id"], second["id"], sub["id"]]

        # The form saves the whole option back: its children, its edition flag, "" for no forward queue.
        echoed = {**first, "title": "Sales team", "message": "Hi!", "option": 1, "forwardQueueId": "",
                  "children": [{**sub, "children": [], "edition": False}], "edition": True}
        saved = await api.client.put(f"/queue-options/{first['id']}", json=echoed, headers=auth(world.admin))
        assert saved.status_code == 200, saved.text
        assert (saved.json()["title"], saved.json()["message"], saved.json()["option"]) == ("Sales team", "Hi!", "1")
        assert saved.json()["forwardQueueId"] is None and saved.json()["parentId"] is None
        forward = await api.client.put(f"/queue-options/{second['id']}",
                                       json={**second, "forwardQueueId": f"{world.sales}", "exitChatbot": False},
                                       headers=auth(world.admin))
        assert forward.status_code == 200 and forward.json()["forwardQueueId"] == world.sales

        stored = await trio.to_thread.run_sync(server.sql, "SELECT company_id, queue_id, parent_id, title, option "
                                               "FROM queue_options ORDER BY id")
        assert stored[-3:] == [(world.company_id, world.sales, None, "Sales team", "1"),
                               (world.company_id, world.sales, None, "Support", "2"),
                               (world.company_id, world.sales, first["id"], "Prices", "1")]

        # Every change is announced as the queue's update, with its options as they are then.
        seen = [e for e in queue_events(events) if e["action"] == "update" and e["queue"]["id"] == world.sales]
        assert len(seen) == 5 and all(e["name"] == f"company-{world.company_id}-queue" for e in seen)
        assert [o["title"] for o in seen[-1]["queue"]["options"]] == ["Sales team", "Support", "Prices"]


async def test_a_delete_takes_the_sub_options_and_their_files(api: Api, server: Server, world: World) -> None:
    with trio.fail_after(TIMEOUT):
        root = await post_option(api, world.admin, queueId=world.sales, title="Root", option="1")
        child = await post_option(api, world.admin, parentId=root["id"], title="Child", option="1")
        grandchild = await post_option(api, world.admin, parentId=child["id"], title="Grandchild", option="1")
        other = await post_option(api, world.admin, queueId=world.sales, title="Other", option="2")
        uploaded = await api.client.post(f"/queue-options/{grandchild['id']}/media-upload",
                                         files={"file": ("menu.pdf", b"%PDF-1.4 menu", "application/pdf")},
                                         headers=auth(world.admin))
        assert uploaded.status_code == 200, uploaded.text
        path = media_file(server, uploaded.json()["mediaPath"])
        assert path.read_bytes() == b"%PDF-1.4 menu"
        # A ticket in the middle of the menu keeps existing, at no option.
        ticket = await trio.to_thread.run_sync(_ticket_at_option, server, world.company_id, world.sales, child["id"])

        deleted = await api.client.delete(f"/queue-options/{root['id']}", headers=auth(world.admin))
        assert deleted.status_code == 200, deleted.text
        left = await trio.to_thread.run_sync(server.sql, "SELECT id FROM queue_options WHERE queue_id = %s",
                                             (world.sales,))
        assert left == [(other["id"],)]
        assert not path.exists() and not path.parent.exists()
        assert server.sql("SELECT queue_option_id FROM tickets WHERE id = %s", (ticket,)) == [(None,)]
        for gone in (root, child, grandchild):
            again = await api.client.get(f"/queue-options/{gone['id']}", headers=auth(world.admin))
            assert again.status_code == 404 and again.json()["error"] == "ERR_NOT_FOUND"


def _ticket_at_option(server: Server, company_id: int, queue_id: int, option_id: int) -> int:
    contact = server.sql("INSERT INTO contacts (company_id, name, number) VALUES (%s, 'Ana', '5511988880000') "
                         "RETURNING id", (company_id,))[0][0]
    whatsapp = server.sql("INSERT INTO whatsapps (company_id, name) VALUES (%s, 'Main') RETURNING id",
                          (company_id,))[0][0]
    return server.sql("INSERT INTO tickets (company_id, contact_id, whatsapp_id, queue_id, queue_option_id, chatbot) "
                      "VALUES (%s, %s, %s, %s, %s, true) RETURNING id",
                      (company_id, contact, whatsapp, queue_id, option_id))[0][0]


async def test_deleting_a_queue_deletes_its_options_and_every_file(api: Api, server: Server, world: World) -> None:
    with trio.fail_after(TIMEOUT):
        root = await post_option(api, world.admin, queueId=world.sales, title="Root", option="1")
        child = await post_option(api, world.admin, parentId=root["id"], title="Child", option="1")
        forwarding = await post_option(api, world.admin, queueId=world.support, title="To sales", option="1",
                                       forwardQueueId=world.sales)
        paths = []
        for url in (f"/queue/{world.sales}/media-upload", f"/queue-options/{child['id']}/media-upload"):
            response = await api.client.post(url, files={"file": ("hello.png", b"\x89PNG hello", "image/png")},
                                             headers=auth(world.admin))
            assert response.status_code == 200, response.text
            paths.append(media_file(server, response.json()["mediaPath"]))
        assert all(path.exists() for path in paths)
        deleted = await api.client.delete(f"/queue/{world.sales}", headers=auth(world.admin))
        assert deleted.status_code == 200, deleted.text
        assert not any(path.exists() for path in paths)
        left = server.sql("SELECT count(*) FROM queue_options WHERE id IN (%s, %s)", (root["id"], child["id"]))
        assert left == [(0,)]
        # An option of another queue that forwarded to it now forwards nowhere.
        shown = await api.client.get(f"/queue-options/{forwarding['id']}", headers=auth(world.admin))
        assert shown.json()["forwardQueueId"] is None


async def test_option_media_upload_replace_and_remove(api: Api, server: Server, world: World) -> None:
    with trio.fail_after(TIMEOUT):
        option = await post_option(api, world.admin, queueId=world.sales, title="Catalog", option="1")
        url = f"/queue-options/{option['id']}/media-upload"
        first = await api.client.post(url, files={"file": ("catálogo 2026.pdf", b"%PDF one", "application/pdf")},
                                      headers=auth(world.admin))
        assert first.status_code == 200, first.text
        assert first.json()["mensagem"] and first.json()["mediaName"] == "catálogo 2026.pdf"
        shown = (await api.client.get(f"/queue-options/{option['id']}", headers=auth(world.user))).json()
        assert shown["mediaPath"] == first.json()["mediaPath"] and shown["mediaName"] == "catálogo 2026.pdf"
        served = await api.client.get(shown["mediaPath"])
        assert served.status_code == 200 and served.content == b"%PDF one"
        old_path = media_file(server, shown["mediaPath"])

        second = await api.client.post(url, files={"file": ("new.pdf", b"%PDF two", "application/pdf")},
                                       headers=auth(world.admin))
        assert second.status_code == 200 and second.json()["mediaName"] == "new.pdf"
        assert not old_path.exists() and media_file(server, second.json()["mediaPath"]).read_bytes() == b"%PDF two"

        removed = await api.client.delete(url, headers=auth(world.admin))
        assert removed.status_code == 200, removed.text
        assert not media_file(server, second.json()["mediaPath"]).exists()
        after = (await api.client.get(f"/queue-options/{option['id']}", headers=auth(world.admin))).json()
        assert after["mediaPath"] is None and after["mediaName"] is None
        again = await api.client.delete(url, headers=auth(world.admin))  # nothing to remove: still fine
        assert again.status_code == 200

        before = await options_table(server)
        files_before = sorted((server.config.data_dir / "media").iterdir())
        for body in ({"data": {"file": ""}}, {"files": {"other": ("x.txt", b"x", "text/plain")}},
                     {"files": {"file": ("empty.txt", b"", "text/plain")}}):
            bad = await api.client.post(url, headers=auth(world.admin), **body)
            assert bad.status_code == 406 and bad.json()["error"] == "ERR_INVALID_UPLOAD", bad.text
        not_multipart = await api.client.post(url, json={"file": "x"}, headers=auth(world.admin))
        assert not_multipart.status_code == 406
        assert await options_table(server) == before
        assert sorted((server.config.data_dir / "media").iterdir()) == files_before


async def test_an_option_moves_with_its_sub_options(api: Api, server: Server, world: World) -> None:
    with trio.fail_after(TIMEOUT):
        a = await post_option(api, world.admin, queueId=world.sales, title="A", option="1")
        b = await post_option(api, world.admin, queueId=world.sales, title="B", option="2")
        a1 = await post_option(api, world.admin, parentId=a["id"], title="A1", option="1")
        a11 = await post_option(api, world.admin, parentId=a1["id"], title="A11", option="1")
        under_b = await api.client.put(f"/queue-options/{a1['id']}", json={"parentId": b["id"]},
                                       headers=auth(world.admin))
        assert under_b.status_code == 200 and under_b.json()["parentId"] == b["id"]
        to_root = await api.client.put(f"/queue-options/{a1['id']}", json={"parentId": None},
                                       headers=auth(world.admin))
        assert to_root.status_code == 200 and to_root.json()["parentId"] is None

        before = await options_table(server)
        for target in (a1["id"], a11["id"]):  # under itself, under its own sub-option
            cycle = await api.client.put(f"/queue-options/{a1['id']}", json={"parentId": target},
                                         headers=auth(world.admin))
            assert cycle.status_code == 400 and cycle.json()["field"] == "parentId", cycle.text
        mismatch = await api.client.put(f"/queue-options/{a11['id']}", json={"queueId": world.support},
                                        headers=auth(world.admin))
        assert mismatch.status_code == 400 and mismatch.json()["field"] == "queueId"
        assert await options_table(server) == before

        # A first-level option moves to another queue with everything under it.
        other_queue = await api.client.put(f"/queue-options/{a1['id']}", json={"queueId": world.support},
                                           headers=auth(world.admin))
        assert other_queue.status_code == 200 and other_queue.json()["queueId"] == world.support
        queues_of = dict(server.sql("SELECT id, queue_id FROM queue_options WHERE id IN (%s, %s)",
                                    (a1["id"], a11["id"])))
        assert queues_of == {a1["id"]: world.support, a11["id"]: world.support}
        # Under a parent of another queue: the queue follows the parent.
        back = await api.client.put(f"/queue-options/{a1['id']}", json={"parentId": a["id"]},
                                    headers=auth(world.admin))
        assert back.status_code == 200 and back.json()["queueId"] == world.sales
        assert server.sql("SELECT queue_id FROM queue_options WHERE id = %s", (a11["id"],)) == [(world.sales,)]


async def test_limits_answer_400(api: Api, server: Server, world: World) -> None:
    with trio.fail_after(TIMEOUT):
        parent = None
        for level in range(MAX_DEPTH):
            where = {"parentId": parent} if parent else {"queueId": world.sales}
            parent = (await post_option(api, world.admin, title=f"Level {level + 1}", option="1", **where))["id"]
        before = await options_table(server)
        too_deep = await api.client.post("/queue-options", json={"parentId": parent, "option": "1"},
                                         headers=auth(world.admin))
        assert too_deep.status_code == 400 and too_deep.json()["field"] == "parentId", too_deep.text
        assert f"{MAX_DEPTH} levels" in too_deep.json()["message"]

        await trio.to_thread.run_sync(
            server.sql, "INSERT INTO queue_options (company_id, queue_id, option) "
                        "SELECT %s, %s, g::text FROM generate_series(2, %s) g",
            (world.company_id, world.sales, MAX_CHILDREN))
        full = await api.client.post("/queue-options", json={"queueId": world.sales, "option": "99"},
                                     headers=auth(world.admin))
        assert full.status_code == 400 and full.json()["field"] == "queueId", full.text
        assert len(await options_table(server)) == len(before) + MAX_CHILDREN - 1


GOOD = {"title": "Sales", "option": "1", "message": "Hi"}
BAD_OPTIONS = {
    "no queue nor parent": ({**GOOD}, "queueId"),
    "option missing": ({"queueId": "{sales}", "title": "x"}, "option"),
    "option empty": ({**GOOD, "queueId": "{sales}", "option": "  "}, "option"),
    "option #": ({**GOOD, "queueId": "{sales}", "option": "#"}, "option"),
    "option too long": ({**GOOD, "queueId": "{sales}", "option": "1" * 33}, "option"),
    "option a list": ({**GOOD, "queueId": "{sales}", "option": [1]}, "option"),
    "title too long": ({**GOOD, "queueId": "{sales}", "title": "t" * 256}, "title"),
    "message too long": ({**GOOD, "queueId": "{sales}", "message": "m" * 10_001}, "message"),
    "queueId a word": ({**GOOD, "queueId": "sales"}, "queueId"),
    "parentId a word": ({**GOOD, "parentId": "root"}, "parentId"),
    "exitChatbot a word": ({**GOOD, "queueId": "{sales}", "exitChatbot": "yes"}, "exitChatbot"),
    "forward and exit": ({**GOOD, "queueId": "{sales}", "forwardQueueId": "{support}", "exitChatbot": True},
                         "exitChatbot"),
    "parent in another queue": ({**GOOD, "queueId": "{support}", "parentId": "{root}"}, "parentId"),
    "forwardQueueId negative": ({**GOOD, "queueId": "{sales}", "forwardQueueId": -5}, "forwardQueueId"),
}


def _fill(body: dict[str, Any], ids: dict[str, int]) -> dict[str, Any]:
    return {key: ids[value.strip("{}")] if isinstance(value, str) and value in {f"{{{k}}}" for k in ids} else value
            for key, value in body.items()}


@pytest.mark.parametrize(("body", "field"), list(BAD_OPTIONS.values()), ids=list(BAD_OPTIONS))
async def test_bad_input_is_400_naming_the_field_and_writes_nothing(api: Api, server: Server, world: World,
                                                                    body: dict[str, Any], field: str) -> None:
    with trio.fail_after(TIMEOUT):
        root = await post_option(api, world.admin, queueId=world.sales, title="Root", option="1")
        ids = {"sales": world.sales, "support": world.support, "root": root["id"]}
        before = await options_table(server)
        created = await api.client.post("/queue-options", json=_fill(body, ids), headers=auth(world.admin))
        assert created.status_code == 400, created.text
        assert created.json()["field"] == field and created.json()["error"].startswith("ERR_")
        if field in body and field not in ("queueId",):  # the same change of an existing option
            changed = await api.client.put(f"/queue-options/{root['id']}", json=_fill(body, ids),
                                           headers=auth(world.admin))
            assert changed.status_code == 400, changed.text
            assert changed.json()["field"] == field
        assert await options_table(server) == before


async def test_bad_filters_and_json(api: Api, server: Server, world: World) -> None:
    with trio.fail_after(TIMEOUT):
        for params in ({"queueId": "x"}, {"parentId": "-2"}, {"queueOptionId": "1.5"}):
            response = await api.client.get("/queue-options", params=params, headers=auth(world.admin))
            assert response.status_code == 400 and response.json()["field"] == next(iter(params)), response.text
        before = await options_table(server)
        malformed = await api.client.post("/queue-options", content=b'{"option": ', headers={
            **auth(world.admin), "Content-Type": "application/json"})
        assert malformed.status_code == 400 and malformed.json()["error"] == "ERR_INVALID_JSON"
        not_an_id = await api.client.put("/queue-options/abc", json=GOOD, headers=auth(world.admin))
        assert not_an_id.status_code == 404
        assert await options_table(server) == before


async def test_another_companys_ids_are_not_found(api: Api, server: Server, world: World) -> None:
    with trio.fail_after(TIMEOUT):
        mine = await post_option(api, world.admin, queueId=world.sales, title="Mine", option="1")
        before = await options_table(server)
        foreign = f"/queue-options/{world.b_option}"
        for token in (world.admin, world.user):
            for method, url, kwargs in (
                ("GET", foreign, {}), ("PUT", foreign, {"json": {"title": "Stolen"}}), ("DELETE", foreign, {}),
                ("POST", f"{foreign}/media-upload", {"files": {"file": ("x.png", b"x", "image/png")}}),
                ("DELETE", f"{foreign}/media-upload", {}),
                ("GET", "/queue-options", {"params": {"queueId": world.b_queue}}),
                ("GET", "/queue-options", {"params": {"parentId": world.b_option}}),
            ):
                response = await api.client.request(method, url, headers=auth(token), **kwargs)
                assert response.status_code == 404, (method, url, response.text)
                assert response.json()["error"] == "ERR_NOT_FOUND"
        for body in ({"queueId": world.b_queue, "option": "1"}, {"parentId": world.b_option, "option": "1"},
                     {"queueId": world.sales, "option": "1", "forwardQueueId": world.b_queue}):
            created = await api.client.post("/queue-options", json=body, headers=auth(world.admin))
            assert created.status_code == 404, (body, created.text)
        for body in ({"parentId": world.b_option}, {"queueId": world.b_queue}, {"forwardQueueId": world.b_queue}):
            changed = await api.client.put(f"/queue-options/{mine['id']}", json=body, headers=auth(world.admin))
            assert changed.status_code == 404, (body, changed.text)
        listed = await api.client.get("/queue-options", headers=auth(world.admin))
        assert [o["id"] for o in listed.json()] == [mine["id"]]
        assert await options_table(server) == before


async def test_plain_users_read_but_never_write(api: Api, server: Server, world: World) -> None:
    with trio.fail_after(TIMEOUT):
        option = await post_option(api, world.admin, queueId=world.sales, title="Root", option="1")
        before = await options_table(server)
        url = f"/queue-options/{option['id']}"
        for method, path, kwargs in (
            ("POST", "/queue-options", {"json": {"queueId": world.sales, "option": "2"}}),
            ("PUT", url, {"json": {"title": "Mine"}}), ("DELETE", url, {}),
            ("POST", f"{url}/media-upload", {"files": {"file": ("x.png", b"x", "image/png")}}),
            ("DELETE", f"{url}/media-upload", {}),
        ):
            response = await api.client.request(method, path, headers=auth(world.user), **kwargs)
            assert response.status_code == 403 and response.json()["error"] == "ERR_NO_PERMISSION", (method, path)
        assert (await api.client.get(url, headers=auth(world.user))).status_code == 200
        assert (await api.client.get("/queue-options")).status_code == 401
        assert await options_table(server) == before
