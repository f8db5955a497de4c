"""`/files`, the file lists: the requests the SaaS lineage's Files screen and its form make (save the list,
then upload the picked files by index), pages and search, files kept and removed on disk, who may do what,
other companies, bad input and what each change announces."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio

from tests.integration.conftest import Api, Server, auth
from tests.integration.socketio_client import polling_socket
from tests.integration.test_auth import running_server
from tests.integration.test_platform_settings import assert_error

TIMEOUT = 30
LIST_KEYS = {"id", "name", "message", "companyId", "createdAt", "updatedAt"}
OPTION_KEYS = {"id", "fileId", "name", "path", "mediaType", "mediaUrl", "createdAt", "updatedAt"}
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c63f8cfc0f01f0005000201ffa6e1e1d40000000049454e44ae426082")
PDF = b"%PDF-1.4\n% a price list\n%%EOF\n"


@attrs.frozen
class World:
    company_id: int
    admin: str  # tokens
    user: str
    b_company_id: int
    b_admin: str


@pytest.fixture
async def world(api: Api) -> World:
    super_admin = await api.admin_token()
    alpha = await api.create_company(super_admin, "Alpha", "admin@alpha.test", "alpha-pass-1")
    beta = await api.create_company(super_admin, "Beta", "admin@beta.test", "beta-pass-1")
    admin = await api.login("admin@alpha.test", "alpha-pass-1")
    await api.create_user(admin, "user@alpha.test", "user-pass-1")
    return World(company_id=alpha["id"], admin=admin, user=await api.login("user@alpha.test", "user-pass-1"),
                 b_company_id=beta["id"], b_admin=await api.login("admin@beta.test", "beta-pass-1"))


def form_body(name: str, message: str, *descriptions: str) -> dict[str, Any]:
    """What FileModal posts: Formik's values (each option with the empty path and mediaType it starts
    with, and the picked File, which JSON makes `{}`) and the user's id."""
    return {"name": name, "message": message, "userId": 1,
            "options": [{"name": text, "path": "", "mediaType": "", "file": {}} for text in descriptions]}


async def create(api: Api, token: str, name: str, message: str = "Veja os arquivos", *descriptions: str) -> dict:
    response = await api.client.post("/files", json=form_body(name, message, *descriptions), headers=auth(token))
    assert response.status_code == 200, response.text
    return response.json()


async def upload(api: Api, token: str, file_list: dict[str, Any], picked: dict[int, tuple[str, bytes, str]],
                 ) -> httpx.Response:
    """What FileModal's uploadFiles sends: for each option (by index) that picked a file, `files`,
    `mediaType` (the File's type), `name` and `id` of the option the save answered at that index."""
    options = file_list["options"]
    data: dict[str, Any] = {"fileId": str(file_list["id"]), "typeArch": "fileList", "mediaType": [], "name": [],
                            "id": []}
    sent = []
    for index, (filename, content, mimetype) in sorted(picked.items()):
        sent.append(("files", (filename, content, mimetype)))
        data["mediaType"].append(mimetype)
        data["name"].append(options[index]["name"])
        data["id"].append(str(options[index]["id"]))
    url = f"/files/uploadList/{file_list['id']}"
    if sent:
        return await api.client.post(url, data=data, files=sent, headers=auth(token))
    # a FormData without files is still multipart (httpx would send it urlencoded)
    boundary = "----formdata-zapgate-test"
    parts = "".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'
                    for key, value in data.items() if isinstance(value, str))
    return await api.client.post(url, content=f"{parts}--{boundary}--\r\n".encode(), headers={
        **auth(token), "Content-Type": f"multipart/form-data; boundary={boundary}"})


async def show(api: Api, token: str, file_id: int) -> dict[str, Any]:
    response = await api.client.get(f"/files/{file_id}", headers=auth(token))
    assert response.status_code == 200, response.text
    return response.json()


def stored(server: Server) -> set[str]:
    """The stored files' directories in the media store (one per file)."""
    root = server.config.data_dir / "media"
    return {path.name for path in root.iterdir()} if root.is_dir() else set()


def media_dir(server: Server, media_url: str) -> Path:
    token = media_url.removeprefix(server.config.backend_url).split("/")[2]
    return server.config.data_dir / "media" / token


async def db_state(server: Server) -> tuple[Any, ...]:
    rows = await trio.to_thread.run_sync(server.sql, """
        SELECT (SELECT coalesce(json_agg(f ORDER BY f.id), '[]') FROM files f),
               (SELECT coalesce(json_agg(o ORDER BY o.id), '[]') FROM files_options o)""")
    return rows[0]


# ─── the Files screen and its form ──────────────────────────────────────────────────────

async def test_the_form_saves_uploads_edits_and_deletes(api: Api, server: Server, world: World) -> None:
    with trio.fail_after(TIMEOUT):
        made = await create(api, world.admin, "Catálogo 2026", "Segue o catálogo", "Tabela de preços", "Foto",
                            "Sem arquivo ainda")
        assert set(made) == LIST_KEYS | {"options"} and made["companyId"] == world.company_id
        assert (made["name"], made["message"]) == ("Catálogo 2026", "Segue o catálogo")
        assert [o["name"] for o in made["options"]] == ["Tabela de preços", "Foto", "Sem arquivo ainda"]
        assert all(set(o) == OPTION_KEYS and (o["path"], o["mediaType"], o["mediaUrl"]) == ("", "", None)
                   and o["fileId"] == made["id"] for o in made["options"])

        response = await upload(api, world.admin, made, {0: ("tabela de preços.pdf", PDF, "application/pdf"),
                                                         1: ("pixel.png", PNG, "image/png")})
        assert response.status_code == 200 and response.json() == {"mensagem": "Arquivos atualizados"}
        shown = await show(api, world.admin, made["id"])
        table, photo, pending = shown["options"]
        assert [o["id"] for o in shown["options"]] == [o["id"] for o in made["options"]]
        assert (table["path"], table["mediaType"]) == ("tabela de preços.pdf", "application/pdf")
        assert (photo["path"], photo["mediaType"], pending["mediaUrl"]) == ("pixel.png", "image/png", None)
        for option, content in ((table, PDF), (photo, PNG)):
            assert option["mediaUrl"].startswith(server.config.backend_url + "/media/")
            served = await api.client.get(option["mediaUrl"].removeprefix(server.config.backend_url))
            assert served.status_code == 200 and served.content == content
        assert len(stored(server)) == 2

        # the edit: the form sends back what GET gave (whole objects), one option removed, one added
        values = {**shown, "name": "Catálogo 2027", "userId": 1,
                  "options": [table, pending, {"name": "Novo", "path": ""}]}
        response = await api.client.put(f"/files/{made['id']}", json=values, headers=auth(world.admin))
        assert response.status_code == 200, response.text
        edited = response.json()
        assert edited["name"] == "Catálogo 2027" and edited["message"] == "Segue o catálogo"
        assert [o["name"] for o in edited["options"]] == ["Tabela de preços", "Sem arquivo ainda", "Novo"]
        assert edited["options"][0] == {**table, "updatedAt": edited["options"][0]["updatedAt"]}
        assert not media_dir(server, photo["mediaUrl"]).exists()  # the removed option's file is gone
        assert (await api.client.get(photo["mediaUrl"].removeprefix(server.config.backend_url))).status_code == 404
        # and the form uploads the new option's file by its index in what the edit answered
        assert (await upload(api, world.admin, edited, {2: ("novo.png", PNG, "image/png")})).status_code == 200
        assert (await show(api, world.admin, made["id"]))["options"][2]["path"] == "novo.png"
        assert len(stored(server)) == 2

        response = await api.client.delete(f"/files/{made['id']}", headers=auth(world.admin))
        assert response.status_code == 200 and response.json() == {"message": "File List deleted"}
        assert stored(server) == set()  # every file of the list is gone from disk
        assert_error(await api.client.get(f"/files/{made['id']}", headers=auth(world.admin)), 404, "ERR_NOT_FOUND")
        assert await db_state(server) == ([], [])


async def test_a_new_upload_replaces_the_file(api: Api, server: Server, world: World) -> None:
    with trio.fail_after(TIMEOUT):
        made = await create(api, world.user, "Boletos", "", "Boleto")
        await upload(api, world.user, made, {0: ("a.pdf", PDF, "application/pdf")})
        first = (await show(api, world.user, made["id"]))["options"][0]
        await upload(api, world.user, made, {0: ("b.png", PNG, "image/png")})
        second = (await show(api, world.user, made["id"]))["options"][0]
        assert (second["id"], second["path"], second["mediaType"]) == (first["id"], "b.png", "image/png")
        assert not media_dir(server, first["mediaUrl"]).exists() and media_dir(server, second["mediaUrl"]).exists()
        assert len(stored(server)) == 1
        # a browser that does not know the type sends mediaType "": the part's own type is kept
        odt = "application/vnd.oasis.opendocument.text"
        response = await api.client.post(f"/files/uploadList/{made['id']}", headers=auth(world.user),
                                         data={"id": str(first["id"]), "mediaType": ""},
                                         files=[("files", ("notas.odt", b"odt", odt))])
        assert response.status_code == 200, response.text
        third = (await show(api, world.user, made["id"]))["options"][0]
        assert (third["path"], third["mediaType"]) == ("notas.odt", odt)
        assert len(stored(server)) == 1


async def test_an_upload_without_files_changes_nothing(api: Api, server: Server, world: World) -> None:
    """The form posts to uploadList after every save with options, a file picked or not: not an error."""
    with trio.fail_after(TIMEOUT):
        made = await create(api, world.admin, "Só texto", "mensagem", "a")
        before = await db_state(server)
        response = await upload(api, world.admin, made, {})
        assert response.status_code == 200 and response.json() == {"mensagem": "Arquivos atualizados"}
        assert await db_state(server) == before and stored(server) == set()


async def test_pages_search_and_the_pickers_list(api: Api, world: World) -> None:
    with trio.fail_after(TIMEOUT):
        for number in range(25):
            await create(api, world.admin, f"Lista {number:02d}")
        await create(api, world.admin, "Promoções de verão")
        await create(api, world.b_admin, "Lista de Beta")
        first = (await api.client.get("/files/", params={"searchParam": "", "pageNumber": 1},
                                      headers=auth(world.admin))).json()
        assert set(first) == {"files", "count", "hasMore"} and (first["count"], first["hasMore"]) == (26, True)
        assert [f["name"] for f in first["files"]][:2] == ["Lista 00", "Lista 01"] and len(first["files"]) == 20
        assert all(set(f) == LIST_KEYS and f["companyId"] == world.company_id for f in first["files"])
        second = (await api.client.get("/files", params={"pageNumber": 2}, headers=auth(world.admin))).json()
        assert (len(second["files"]), second["count"], second["hasMore"]) == (6, 26, False)
        assert second["files"][-1]["name"] == "Promoções de verão"
        found = (await api.client.get("/files", params={"searchParam": "promo"}, headers=auth(world.user))).json()
        assert [f["name"] for f in found["files"]] == ["Promoções de verão"] and found["count"] == 1
        past = (await api.client.get("/files", params={"pageNumber": 9}, headers=auth(world.user))).json()
        assert past == {"files": [], "count": 26, "hasMore": False}
        # the campaign form: GET /files/ with the company in the query (never trusted: the token's company)
        picker = (await api.client.get("/files/", params={"companyId": world.b_company_id},
                                       headers=auth(world.user))).json()
        assert "Lista de Beta" not in [f["name"] for f in picker["files"]]
        every = (await api.client.get("/files/list", headers=auth(world.user))).json()
        assert len(every) == 26 and all(f["companyId"] == world.company_id for f in every)
        assert [f["name"] for f in (await api.client.get("/files/list", params={"searchParam": "lista 1"},
                                                         headers=auth(world.user))).json()] == [
            f"Lista {n}" for n in range(10, 20)]


# ─── who may do what ────────────────────────────────────────────────────────────────────

async def test_users_create_upload_and_delete_admins_edit(api: Api, server: Server, world: World) -> None:
    with trio.fail_after(TIMEOUT):
        made = await create(api, world.user, "Do agente", "oi", "um")
        assert (await upload(api, world.user, made, {0: ("a.png", PNG, "image/png")})).status_code == 200
        before = await db_state(server)
        assert_error(await api.client.put(f"/files/{made['id']}", json={"name": "Renomeada", "options": []},
                                          headers=auth(world.user)), 403, "ERR_NO_PERMISSION")
        assert_error(await api.client.delete("/files", headers=auth(world.user)), 403, "ERR_NO_PERMISSION")
        assert await db_state(server) == before and len(stored(server)) == 1
        edited = await api.client.put(f"/files/{made['id']}", json={"name": "Renomeada"}, headers=auth(world.admin))
        assert edited.status_code == 200 and [o["name"] for o in edited.json()["options"]] == ["um"]  # kept
        assert (await api.client.delete(f"/files/{made['id']}", headers=auth(world.user))).status_code == 200
        assert stored(server) == set()


async def test_delete_all_is_the_companys(api: Api, server: Server, world: World) -> None:
    with trio.fail_after(TIMEOUT):
        for name in ("Uma", "Outra"):
            made = await create(api, world.admin, name, "", "x")
            await upload(api, world.admin, made, {0: ("x.png", PNG, "image/png")})
        theirs = await create(api, world.b_admin, "De Beta", "", "x")
        await upload(api, world.b_admin, theirs, {0: ("b.pdf", PDF, "application/pdf")})
        kept = (await show(api, world.b_admin, theirs["id"]))["options"][0]["mediaUrl"]
        assert (await api.client.delete("/files", headers=auth(world.admin))).status_code == 200
        assert (await api.client.get("/files", headers=auth(world.admin))).json()["count"] == 0
        assert (await api.client.get("/files", headers=auth(world.b_admin))).json()["count"] == 1
        assert stored(server) == {media_dir(server, kept).name}


# ─── other companies ────────────────────────────────────────────────────────────────────

async def test_another_companys_list_is_not_found(api: Api, server: Server, world: World) -> None:
    with trio.fail_after(TIMEOUT):
        mine = await create(api, world.admin, "Minha", "m", "a")
        await upload(api, world.admin, mine, {0: ("a.png", PNG, "image/png")})
        theirs = await create(api, world.b_admin, "Minha", "same name, other company: fine", "b")
        before, files_before = await db_state(server), stored(server)
        for method, kwargs in (("GET", {}), ("PUT", {"json": {"name": "Tomada", "options": []}}), ("DELETE", {})):
            response = await api.client.request(method, f"/files/{mine['id']}", headers=auth(world.b_admin), **kwargs)
            assert_error(response, 404, "ERR_NOT_FOUND")
        response = await upload(api, world.b_admin, {**mine, "options": theirs["options"]},
                                {0: ("b.png", PNG, "image/png")})
        assert_error(response, 404, "ERR_NOT_FOUND")
        # an option of another list (here: another company's) named in an edit or an upload of one's own list
        foreign_option = {"id": mine["options"][0]["id"], "name": "moved"}
        response = await api.client.put(f"/files/{theirs['id']}", json={"options": [foreign_option]},
                                        headers=auth(world.b_admin))
        assert_error(response, 404, "ERR_NOT_FOUND")
        response = await upload(api, world.b_admin, {**theirs, "options": mine["options"]},
                                {0: ("b.png", PNG, "image/png")})
        assert_error(response, 404, "ERR_NOT_FOUND")
        assert await db_state(server) == before and stored(server) == files_before
        listed = (await api.client.get("/files/list", headers=auth(world.b_admin))).json()
        assert [f["id"] for f in listed] == [theirs["id"]]


# ─── bad input ──────────────────────────────────────────────────────────────────────────

BAD_BODIES = {
    "no name": ({"message": "m"}, "name"),
    "short name": ({"name": "ab"}, "name"),
    "long name": ({"name": "n" * 256}, "name"),
    "name not text": ({"name": 12345}, "name"),
    "message not text": ({"name": "Válida", "message": ["m"]}, "message"),
    "options not a list": ({"name": "Válida", "options": {"name": "x"}}, "options"),
    "option not an object": ({"name": "Válida", "options": ["x"]}, "options[0]"),
    "option name not text": ({"name": "Válida", "options": [{"name": "ok"}, {"name": 3}]}, "options[1].name"),
    "too many options": ({"name": "Válida", "options": [{"name": "x"}] * 101}, "options"),
}


@pytest.mark.parametrize("case", list(BAD_BODIES.values()), ids=list(BAD_BODIES))
async def test_bad_bodies_are_400_and_write_nothing(api: Api, server: Server, world: World,
                                                     case: tuple[dict[str, Any], str]) -> None:
    body, field = case
    with trio.fail_after(TIMEOUT):
        made = await create(api, world.admin, "Existente", "m", "a")
        before = await db_state(server)
        assert_error(await api.client.post("/files", json=body, headers=auth(world.admin)), 400, "ERR_VALIDATION",
                     field)
        if field != "name" or body.get("name") is not None:  # a PUT may leave the name out
            response = await api.client.put(f"/files/{made['id']}", json=body, headers=auth(world.admin))
            assert_error(response, 400, "ERR_VALIDATION", field)
        assert await db_state(server) == before


async def test_duplicate_names_malformed_json_and_bad_ids(api: Api, server: Server, world: World) -> None:
    with trio.fail_after(TIMEOUT):
        made = await create(api, world.admin, "Catálogo", "m", "a")
        other = await create(api, world.admin, "Outro", "m")
        before = await db_state(server)
        assert_error(await api.client.post("/files", json={"name": "CATÁLOGO"}, headers=auth(world.admin)), 409,
                     "ERR_FILE_NAME_ALREADY_EXISTS")
        assert_error(await api.client.put(f"/files/{other['id']}", json={"name": "catálogo"},
                                          headers=auth(world.admin)), 409, "ERR_FILE_NAME_ALREADY_EXISTS")
        assert_error(await api.client.post("/files", content=b"{not json", headers={
            **auth(world.admin), "Content-Type": "application/json"}), 400, "ERR_INVALID_JSON")
        option = made["options"][0]
        assert_error(await api.client.put(f"/files/{made['id']}", json={"options": [option, option]},
                                          headers=auth(world.admin)), 400, "ERR_VALIDATION", "options")
        for path in ("/files/abc", "/files/0x1", "/files/99999999999999999999", "/files/987654321"):
            assert_error(await api.client.get(path, headers=auth(world.admin)), 404, "ERR_NOT_FOUND")
        assert_error(await api.client.post("/files/uploadList/abc", headers=auth(world.admin)), 404)
        assert await db_state(server) == before


async def test_bad_uploads_are_400_and_keep_no_file(api: Api, server: Server, world: World) -> None:
    with trio.fail_after(TIMEOUT):
        made = await create(api, world.admin, "Lista", "m", "a", "b")
        first, second = (str(o["id"]) for o in made["options"])
        url = f"/files/uploadList/{made['id']}"
        png = ("files", ("a.png", PNG, "image/png"))
        cases = {
            "not multipart": ({"json": {"files": []}}, "files"),
            "no option id": ({"files": [png]}, "id"),
            "ids not one per file": ({"data": {"id": [first, second]}, "files": [png]}, "id"),
            "id not a number": ({"data": {"id": "x"}, "files": [png]}, "id"),
            "mediaTypes not one per file": ({"data": {"id": [first, second], "mediaType": "image/png"},
                                             "files": [png, png]}, "mediaType"),
            "not a media type": ({"data": {"id": first, "mediaType": "<script>"}, "files": [png]}, "mediaType"),
            "empty file after a good one": ({"data": {"id": [first, second]},
                                             "files": [png, ("files", ("vazio.txt", b"", "text/plain"))]}, "files"),
            "description too long": ({"data": {"id": first, "name": "d" * 1025}, "files": [png]}, "name"),
        }
        before = await db_state(server)
        for name, (kwargs, field) in cases.items():
            response = await api.client.post(url, headers=auth(world.admin), **kwargs)
            assert response.status_code == 400, (name, response.text)
            assert response.json()["field"] == field, (name, response.json())
            assert await db_state(server) == before, name
            assert stored(server) == set(), name  # a file saved before the refusal is removed


async def test_an_upload_larger_than_allowed_is_413(database_url: str, tmp_path: Path) -> None:
    with trio.fail_after(TIMEOUT):
        async with running_server(tmp_path, database_url, upload_max_size=64 * 1024) as (server, api):
            token = await api.admin_token()
            made = await create(api, token, "Grande", "m", "a")
            before = await db_state(server)
            response = await upload(api, token, made, {0: ("big.bin", b"x" * 100_000, "application/pdf")})
            assert_error(response, 413, "ERR_PAYLOAD_TOO_LARGE")
            assert await db_state(server) == before and stored(server) == set()
            fits = await upload(api, token, made, {0: ("small.pdf", PDF, "application/pdf")})
            assert fits.status_code == 200 and len(stored(server)) == 1


# ─── realtime ───────────────────────────────────────────────────────────────────────────

async def test_changes_reach_the_companys_sockets(api: Api, server: Server, world: World) -> None:
    """A socket of a user of the company sees every change; another company's socket sees none. (The
    root namespace the SaaS lineage uses carries the same events: api/live.py.)"""
    name = f"company-{world.company_id}-file"
    with trio.fail_after(TIMEOUT):
        async with polling_socket(server.url, f"/{world.company_id}", world.user) as agent, \
                polling_socket(server.url, f"/{world.b_company_id}", world.b_admin) as stranger:
            made = await create(api, world.admin, "Ao vivo", "m", "a")
            created = await agent.wait_event(name, lambda p: p["action"] == "create")
            assert created == {"action": "create", "files": made, "fileList": made}  # the screen reads `files`
            await upload(api, world.admin, made, {0: ("a.png", PNG, "image/png")})
            uploaded = await agent.wait_event(name, lambda p: p["action"] == "update")
            assert uploaded["files"]["options"][0]["path"] == "a.png"
            await api.client.put(f"/files/{made['id']}", json={"name": "Ao vivo 2"}, headers=auth(world.admin))
            await agent.wait_event(name, lambda p: p["action"] == "update" and p["files"]["name"] == "Ao vivo 2")
            await api.client.delete(f"/files/{made['id']}", headers=auth(world.admin))
            deleted = await agent.wait_event(name, lambda p: p["action"] == "delete")
            assert deleted == {"action": "delete", "fileId": made["id"]}
            await create(api, world.b_admin, "De Beta", "m")  # Beta's own change reaches Beta: the socket works
            await stranger.wait_event(f"company-{world.b_company_id}-file")
            assert [event for event, _ in stranger.events if event == name] == []
