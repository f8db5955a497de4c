"""`/chats`, the internal chat: the shapes ticketz's frontend reads, messages and unread counts, who may
see and change a chat, other companies, bad input, media, and the events each change announces."""

from __future__ import annotations

from typing import Any

import attrs
import httpx
import pytest
import trio

from tests.integration.conftest import Api, Server, auth
from tests.integration.test_platform_settings import assert_error

TIMEOUT = 30
CHAT_KEYS = {"id", "uuid", "title", "ownerId", "lastMessage", "companyId", "createdAt", "updatedAt", "owner", "users"}
MESSAGE_KEYS = {"id", "chatId", "senderId", "message", "mediaPath", "mediaType", "mediaName", "sender", "createdAt",
                "updatedAt"}
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c63f8cfc0f01f0005000201ffa6e1e1d40000000049454e44ae426082")


@attrs.frozen
class Member:
    token: str
    id: int
    name: str


@attrs.frozen
class World:
    company_id: int
    admin: Member  # admin of Alpha, in no chat unless added
    ana: Member
    bia: Member
    caio: Member  # a colleague of Ana and Bia who is not in their chat
    b_admin: Member  # admin of Beta
    b_user: Member


async def _member(api: Api, email: str, password: str) -> Member:
    token = await api.login(email, password)
    me = (await api.client.get("/auth/me", headers=auth(token))).json()
    return Member(token, me["id"], me["name"])


@pytest.fixture
async def world(api: Api) -> World:
    super_admin = await api.admin_token()
    alpha = await api.create_company(super_admin, "Alpha", "admin@alpha.test", "alpha-pass-1")
    await api.create_company(super_admin, "Beta", "admin@beta.test", "beta-pass-1")
    admin = await _member(api, "admin@alpha.test", "alpha-pass-1")
    b_admin = await _member(api, "admin@beta.test", "beta-pass-1")
    for name in ("ana", "bia", "caio"):
        await api.create_user(admin.token, f"{name}@alpha.test", "user-pass-1")
    await api.create_user(b_admin.token, "bruno@beta.test", "user-pass-1")
    return World(company_id=alpha["id"], admin=admin, ana=await _member(api, "ana@alpha.test", "user-pass-1"),
                 bia=await _member(api, "bia@alpha.test", "user-pass-1"),
                 caio=await _member(api, "caio@alpha.test", "user-pass-1"), b_admin=b_admin,
                 b_user=await _member(api, "bruno@beta.test", "user-pass-1"))


async def create_chat(api: Api, owner: Member, title: str, *others: Member) -> dict[str, Any]:
    response = await api.client.post("/chats", json={"title": title, "users": [{"id": m.id, "name": m.name}
                                                                               for m in others]},
                                      headers=auth(owner.token))
    assert response.status_code == 200, response.text
    return response.json()


async def send(api: Api, member: Member, chat: dict[str, Any], text: str) -> httpx.Response:
    return await api.client.post(f"/chats/{chat['id']}/messages", json={"message": text}, headers=auth(member.token))


async def chat_list(api: Api, member: Member, **params: Any) -> dict[str, Any]:
    # what the menu's badge and the popover call on every page load, trailing slash and all
    response = await api.client.get("/chats/", params={"searchParam": "", "pageNumber": 1, **params},
                                    headers=auth(member.token))
    assert response.status_code == 200, response.text
    return response.json()


def unreads(chat: dict[str, Any], member: Member) -> int:
    """As the frontend reads it: the caller's entry in `users`, found by `userId`."""
    return next(u for u in chat["users"] if u["userId"] == member.id)["unreads"]


async def db_counts(server: Server) -> tuple[Any, ...]:
    rows = await trio.to_thread.run_sync(server.sql, "SELECT (SELECT count(*) FROM chats), "
                                                     "(SELECT count(*) FROM chat_users), "
                                                     "(SELECT count(*) FROM chat_messages)")
    return rows[0]


async def test_the_list_the_frontend_reads(api: Api, world: World) -> None:
    with trio.fail_after(TIMEOUT):
        assert await chat_list(api, world.ana) == {"records": [], "count": 0, "hasMore": False}
        chat = await create_chat(api, world.ana, "Plantão", world.bia)
        assert set(chat) == CHAT_KEYS
        assert (chat["title"], chat["ownerId"], chat["lastMessage"], chat["companyId"]) == \
            ("Plantão", world.ana.id, "", world.company_id)
        assert chat["owner"] == {"id": world.ana.id, "name": world.ana.name}
        assert [(u["userId"], u["user"], u["unreads"], u["chatId"]) for u in chat["users"]] == [
            (world.ana.id, {"id": world.ana.id, "name": "ana"}, 0, chat["id"]),  # the owner takes part
            (world.bia.id, {"id": world.bia.id, "name": "bia"}, 0, chat["id"])]
        for member in (world.ana, world.bia):
            listed = await chat_list(api, member)
            assert listed == {"records": [chat], "count": 1, "hasMore": False}
        assert await chat_list(api, world.caio) == {"records": [], "count": 0, "hasMore": False}
        assert await chat_list(api, world.admin) == {"records": [], "count": 0, "hasMore": False}
        no_slash = await api.client.get("/chats", headers=auth(world.bia.token))
        assert no_slash.json()["records"] == [chat]


async def test_messages_unreads_and_reading(api: Api, world: World) -> None:
    with trio.fail_after(TIMEOUT):
        older = await create_chat(api, world.ana, "Escala", world.bia)
        newer = await create_chat(api, world.bia, "Café", world.ana, world.caio)
        assert [c["title"] for c in (await chat_list(api, world.ana))["records"]] == ["Café", "Escala"]

        sent = await send(api, world.ana, older, "oi, Bia")
        assert sent.status_code == 200, sent.text
        message = sent.json()
        assert set(message) == MESSAGE_KEYS
        assert (message["chatId"], message["senderId"], message["message"], message["mediaPath"],
                message["mediaType"]) == (older["id"], world.ana.id, "oi, Bia", None, "text")
        assert message["sender"] == {"id": world.ana.id, "name": "ana"}
        await send(api, world.ana, older, "tudo bem?")

        listed = (await chat_list(api, world.bia))["records"]
        assert [c["title"] for c in listed] == ["Escala", "Café"]  # the latest message first
        assert listed[0]["lastMessage"] == "ana: tudo bem?"
        assert (unreads(listed[0], world.bia), unreads(listed[0], world.ana)) == (2, 0)

        page = (await api.client.get(f"/chats/{older['id']}/messages", headers=auth(world.bia.token))).json()
        assert [m["message"] for m in page["records"]] == ["oi, Bia", "tudo bem?"]
        assert (page["count"], page["hasMore"]) == (2, False)

        read = await api.client.post(f"/chats/{older['id']}/read", json={"userId": world.ana.id},
                                     headers=auth(world.bia.token))
        assert read.status_code == 200
        assert unreads(read.json(), world.bia) == 0  # the caller's count, whatever the body says
        assert unreads((await chat_list(api, world.bia))["records"][0], world.bia) == 0

        reply = await send(api, world.bia, older, "tudo!")
        assert reply.status_code == 200
        after = (await chat_list(api, world.ana))["records"][0]
        assert (unreads(after, world.ana), unreads(after, world.bia)) == (1, 0)  # a sender has read the chat
        assert unreads((await chat_list(api, world.caio))["records"][0], world.caio) == 0  # other chats untouched
        assert newer["id"] != older["id"]


async def test_message_pages(api: Api, world: World) -> None:
    with trio.fail_after(TIMEOUT):
        chat = await create_chat(api, world.ana, "Muitas", world.bia)
        for number in range(21):
            assert (await send(api, world.ana if number % 2 else world.bia, chat, f"m{number:02d}")).status_code == 200
        first = (await api.client.get(f"/chats/{chat['uuid']}/messages", params={"pageNumber": 1},
                                      headers=auth(world.ana.token))).json()
        assert [m["message"] for m in first["records"]] == [f"m{n:02d}" for n in range(1, 21)]  # oldest first
        assert (first["count"], first["hasMore"]) == (21, True)
        second = (await api.client.get(f"/chats/{chat['id']}/messages", params={"pageNumber": 2},
                                       headers=auth(world.ana.token))).json()
        assert [m["message"] for m in second["records"]] == ["m00"] and second["hasMore"] is False
        chats = (await chat_list(api, world.ana))["records"]
        assert unreads(chats[0], world.ana) == 1  # Bia wrote the last one
        for _ in range(20):
            await create_chat(api, world.ana, "outra", world.caio)
        first_page = await chat_list(api, world.ana)
        assert (len(first_page["records"]), first_page["count"], first_page["hasMore"]) == (20, 21, True)
        last_page = await chat_list(api, world.ana, pageNumber=2)
        assert [c["title"] for c in last_page["records"]] == ["Muitas"] and last_page["hasMore"] is False


async def test_only_participants_see_a_chat_and_other_companies_never(api: Api, server: Server,
                                                                       world: World) -> None:
    with trio.fail_after(TIMEOUT):
        chat = await create_chat(api, world.ana, "Plantão", world.bia)
        await send(api, world.ana, chat, "segredo")
        for key in (chat["id"], chat["uuid"]):
            shown = await api.client.get(f"/chats/{key}", headers=auth(world.bia.token))
            assert shown.status_code == 200 and shown.json()["id"] == chat["id"]
        before = await db_counts(server)
        for outsider, status in ((world.caio, 403), (world.admin, 403), (world.b_admin, 404), (world.b_user, 404)):
            for key in (chat["id"], chat["uuid"]):
                assert_error(await api.client.get(f"/chats/{key}", headers=auth(outsider.token)), status)
                assert_error(await api.client.get(f"/chats/{key}/messages", headers=auth(outsider.token)), status)
                assert_error(await send(api, outsider, {"id": key}, "entrei?"), status)
                assert_error(await api.client.post(f"/chats/{key}/read", headers=auth(outsider.token)), status)
            assert (await chat_list(api, outsider))["count"] == 0
        for outsider in (world.b_admin, world.b_user):  # another company's admin cannot change or delete it either
            assert_error(await api.client.put(f"/chats/{chat['id']}", json={"title": "meu"},
                                              headers=auth(outsider.token)), 404)
            assert_error(await api.client.delete(f"/chats/{chat['id']}", headers=auth(outsider.token)), 404)
        for bad in ("0", "abc", "00000000-0000-0000-0000-000000000000", "99999999999999999999", "1.5"):
            assert_error(await api.client.get(f"/chats/{bad}", headers=auth(world.ana.token)), 404)
        assert await db_counts(server) == before
        page = (await api.client.get(f"/chats/{chat['id']}/messages", headers=auth(world.ana.token))).json()
        assert [m["message"] for m in page["records"]] == ["segredo"]


async def test_nobody_of_another_company_joins(api: Api, server: Server, world: World) -> None:
    with trio.fail_after(TIMEOUT):
        response = await api.client.post("/chats", json={"title": "Fusão", "users": [{"id": world.b_user.id}]},
                                         headers=auth(world.ana.token))
        assert_error(response, 404)
        mixed = await api.client.post("/chats", json={"title": "Fusão", "users": [{"id": world.bia.id},
                                                                                 {"id": world.b_user.id}]},
                                      headers=auth(world.ana.token))
        assert_error(mixed, 404)
        assert await db_counts(server) == (0, 0, 0)  # nothing half-written
        chat = await create_chat(api, world.ana, "Plantão", world.bia)
        before = await db_counts(server)
        edit = await api.client.put(f"/chats/{chat['id']}", json={"title": "Fusão", "users": [{"id": world.b_user.id}]},
                                    headers=auth(world.ana.token))
        assert_error(edit, 404)
        assert await db_counts(server) == before
        shown = (await api.client.get(f"/chats/{chat['id']}", headers=auth(world.ana.token))).json()
        assert shown["title"] == "Plantão" and [u["userId"] for u in shown["users"]] == [world.ana.id, world.bia.id]
        assert (await chat_list(api, world.b_user))["count"] == 0


async def test_bad_input_is_a_400_and_writes_nothing(api: Api, server: Server, world: World) -> None:
    with trio.fail_after(TIMEOUT):
        chat = await create_chat(api, world.ana, "Plantão", world.bia)
        before = await db_counts(server)
        bia = [{"id": world.bia.id}]
        bad_chats = [({"users": bia}, "title"), ({"title": "", "users": bia}, "title"),
                     ({"title": "x" * 256, "users": bia}, "title"), ({"title": 5, "users": bia}, "title"),
                     ({"title": "Sem gente"}, "users"), ({"title": "Sem gente", "users": []}, "users"),
                     ({"title": "Texto", "users": "bia"}, "users"),
                     ({"title": "Nome", "users": [{"id": "bia"}]}, "users[0].id"),
                     ({"title": "Zero", "users": [{"id": 0}]}, "users[0].id"),
                     ({"title": "Sem id", "users": [{"name": "bia"}]}, "users[0].id")]
        for body, field in bad_chats:
            assert_error(await api.client.post("/chats", json=body, headers=auth(world.ana.token)), 400,
                         "ERR_VALIDATION", field)
        bad_edits = [({"title": ""}, "title"), ({"title": 5}, "title"), ({"users": []}, "users"),
                     ({"users": {"id": world.bia.id}}, "users"), ({"users": [{"id": "x"}]}, "users[0].id")]
        for body, field in bad_edits:
            assert_error(await api.client.put(f"/chats/{chat['id']}", json=body, headers=auth(world.ana.token)), 400,
                         "ERR_VALIDATION", field)
        for body in ({}, {"message": ""}, {"message": "   "}, {"message": None}, {"message": 7},
                     {"message": "x" * 65_537}):
            assert_error(await api.client.post(f"/chats/{chat['id']}/messages", json=body,
                                               headers=auth(world.ana.token)), 400, "ERR_VALIDATION", "message")
        json_headers = {**auth(world.ana.token), "Content-Type": "application/json"}
        assert_error(await api.client.post("/chats", content=b"{not json", headers=json_headers), 400,
                     "ERR_INVALID_JSON")
        assert_error(await api.client.post(f"/chats/{chat['id']}/messages", files={"other": ("a.txt", b"x")},
                                           headers=auth(world.ana.token)), 400, "ERR_VALIDATION", "medias")
        assert_error(await api.client.get("/chats", params={"pageNumber": "x"}, headers=auth(world.ana.token)), 400)
        assert await db_counts(server) == before
        shown = (await api.client.get(f"/chats/{chat['id']}", headers=auth(world.ana.token))).json()
        assert shown["title"] == "Plantão" and len(shown["users"]) == 2


async def test_owner_or_admin_edits_and_deletes(api: Api, server: Server, world: World) -> None:
    with trio.fail_after(TIMEOUT):
        chat = await create_chat(api, world.ana, "Plantão", world.bia, world.caio)
        await send(api, world.bia, chat, "cheguei")
        assert_error(await api.client.put(f"/chats/{chat['id']}", json={"title": "Meu"}, headers=auth(world.bia.token)),
                     403, "ERR_NO_PERMISSION")
        assert_error(await api.client.delete(f"/chats/{chat['id']}", headers=auth(world.bia.token)), 403)

        # the owner drops Caio (and leaves herself out of the list: she stays); Ana keeps her unread count
        edited = await api.client.put(f"/chats/{chat['uuid']}", json={"title": "Plantão B", "users": [
            {"id": world.bia.id, "name": "bia"}]}, headers=auth(world.ana.token))
        assert edited.status_code == 200, edited.text
        record = edited.json()
        assert record["title"] == "Plantão B"
        assert [u["userId"] for u in record["users"]] == [world.ana.id, world.bia.id]
        assert unreads(record, world.ana) == 1
        assert_error(await api.client.get(f"/chats/{chat['id']}/messages", headers=auth(world.caio.token)), 403)
        assert (await chat_list(api, world.caio))["count"] == 0

        # an admin of the company who is not in it may change it; a title alone keeps the participants
        renamed = await api.client.put(f"/chats/{chat['id']}", json={"title": "Plantão C"},
                                       headers=auth(world.admin.token))
        assert renamed.status_code == 200 and len(renamed.json()["users"]) == 2

        assert (await api.client.delete(f"/chats/{chat['id']}", headers=auth(world.ana.token))).json() == \
            {"message": "Chat deleted"}
        assert_error(await api.client.get(f"/chats/{chat['id']}", headers=auth(world.ana.token)), 404)
        assert (await chat_list(api, world.bia))["count"] == 0
        assert await db_counts(server) == (0, 0, 0)


async def test_a_deleted_user_leaves_their_chats(api: Api, world: World) -> None:
    with trio.fail_after(TIMEOUT):
        chat = await create_chat(api, world.ana, "Plantão", world.bia, world.caio)
        await send(api, world.caio, chat, "até mais")
        assert (await api.client.delete(f"/users/{world.caio.id}", headers=auth(world.admin.token))).status_code == 200
        shown = (await api.client.get(f"/chats/{chat['id']}", headers=auth(world.ana.token))).json()
        assert [u["userId"] for u in shown["users"]] == [world.ana.id, world.bia.id]
        page = (await api.client.get(f"/chats/{chat['id']}/messages", headers=auth(world.ana.token))).json()
        assert page["records"] == []  # as in ticketz, their messages go with them


async def test_media_messages(api: Api, server: Server, world: World) -> None:
    with trio.fail_after(TIMEOUT):
        chat = await create_chat(api, world.ana, "Fotos", world.bia)
        response = await api.client.post(f"/chats/{chat['id']}/messages", headers=auth(world.ana.token),
                                         data={"body": "pixel.png", "fromMe": "true"},
                                         files=[("medias", ("pixel.png", PNG, "image/png")),
                                                ("medias", ("notas.txt", b"ata", "text/plain"))])
        assert response.status_code == 200, response.text
        page = (await api.client.get(f"/chats/{chat['id']}/messages", headers=auth(world.bia.token))).json()
        image, text = page["records"]
        assert (image["message"], image["mediaName"], image["mediaType"]) == ("pixel.png", "pixel.png", "image")
        assert (text["mediaName"], text["mediaType"]) == ("notas.txt", "text")
        assert image["mediaPath"].startswith(server.config.backend_url + "/media/")
        path = image["mediaPath"].removeprefix(server.config.backend_url)
        served = await api.client.get(path)
        assert served.status_code == 200 and served.content == PNG
        listed = (await chat_list(api, world.bia))["records"][0]
        assert listed["lastMessage"] == "ana: notas.txt" and unreads(listed, world.bia) == 2
        await api.client.delete(f"/chats/{chat['id']}", headers=auth(world.ana.token))
        assert (await api.client.get(path)).status_code == 404  # the chat's files go with it


async def test_events_go_to_the_participants(api: Api, server: Server, world: World) -> None:
    with trio.fail_after(TIMEOUT), server.broker.subscribe(world.company_id) as events:
        chat = await create_chat(api, world.ana, "Plantão", world.bia)
        await send(api, world.bia, chat, "oi")
        await api.client.post(f"/chats/{chat['id']}/read", headers=auth(world.ana.token))
        await api.client.put(f"/chats/{chat['id']}", json={"title": "Plantão", "users": [{"id": world.caio.id}]},
                             headers=auth(world.ana.token))
        await api.client.delete(f"/chats/{chat['id']}", headers=auth(world.ana.token))
        seen = []
        while len(seen) < 10:
            event = await events.receive()
            if "-chat" in event.name:
                seen.append(event)
        prefix = f"company-{world.company_id}-chat"
        ana, bia, caio = world.ana.id, world.bia.id, world.caio.id
        assert [(e.name, e.payload["action"], e.payload["_participants"]) for e in seen] == [
            (f"{prefix}-user-{ana}", "create", [ana]), (f"{prefix}-user-{bia}", "create", [bia]),
            (f"{prefix}-{chat['id']}", "new-message", [ana, bia]), (prefix, "new-message", [ana, bia]),
            (f"{prefix}-{chat['id']}", "update", [ana, bia]), (prefix, "update", [ana, bia]),
            (f"{prefix}-user-{ana}", "update", [ana]), (f"{prefix}-user-{caio}", "update", [caio]),
            (prefix, "delete", [bia]),  # Bia was removed from the chat
            (prefix, "delete", [ana, caio])]
        new_message = seen[2].payload
        assert new_message["newMessage"]["message"] == "oi" and new_message["newMessage"]["sender"]["name"] == "bia"
        assert unreads(new_message["chat"], world.ana) == 1  # the badge's count, in the event
        assert set(seen[0].payload["record"]) == CHAT_KEYS and seen[9].payload["id"] == chat["id"]
