"""Contact lists and their items (`/contact-lists`, `/contact-list-items`): CRUD with ticketz's shapes and
events, bad input, tenancy, imports into a list (CSV and XLSX), exports that import back as the same list,
and the number check through the sandbox."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import attrs
import httpx
import openpyxl
import pytest
import trio

from gateway.broker import Subscription
from tests.integration.conftest import Api, Server, auth, make_config, start_server
from tests.integration.test_conversations import connected_sandbox

TIMEOUT = 60


@attrs.frozen
class Tenants:
    admin: str  # admin (super) of company Default
    company_id: int
    user: str  # a plain user of Default
    b_admin: str  # admin of company Beta
    b_company_id: int


@pytest.fixture
async def tenants(api: Api) -> Tenants:
    admin = await api.admin_token()
    me = (await api.client.get("/auth/me", headers=auth(admin))).json()
    await api.create_user(admin, "agent@default.test", "agent-pass-1")
    beta = await api.create_company(admin, "Beta", "admin@beta.test", "beta-pass-1")
    return Tenants(admin=admin, company_id=me["companyId"], user=await api.login("agent@default.test", "agent-pass-1"),
                   b_admin=await api.login("admin@beta.test", "beta-pass-1"), b_company_id=beta["id"])


SNAPSHOT_SQL = ("SELECT (SELECT coalesce(json_agg(l ORDER BY l.id), '[]') FROM contact_lists l), "
                "(SELECT coalesce(json_agg(i ORDER BY i.id), '[]') FROM contact_list_items i), "
                "(SELECT coalesce(json_agg(t ORDER BY t.id), '[]') FROM timers t WHERE kind = 'contact_list_check')")


async def snapshot(server: Server) -> tuple[Any, ...]:
    return (await trio.to_thread.run_sync(server.sql, SNAPSHOT_SQL))[0]


@attrs.define
class Events:
    """What a subscription received so far, kept: each call reads the new ones, then filters all."""

    subscription: Subscription
    seen: list[dict[str, Any]] = attrs.field(factory=list)

    def named(self, suffix: str) -> list[dict[str, Any]]:
        while (event := self.subscription.receive_nowait()) is not None:
            self.seen.append({"name": event.name, **event.payload})
        return [event for event in self.seen if event["name"].endswith(suffix)]


def events_named(events: Events, suffix: str) -> list[dict[str, Any]]:
    return events.named(suffix)


async def create_list(api: Api, token: str, name: str) -> dict[str, Any]:
    response = await api.client.post("/contact-lists", json={"name": name}, headers=auth(token))
    assert response.status_code == 201, response.text
    return response.json()


async def create_item(api: Api, token: str, list_id: int, **fields: Any) -> httpx.Response:
    return await api.client.post("/contact-list-items", json={"contactListId": list_id, **fields},
                                 headers=auth(token))


async def upload(api: Api, token: str, list_id: int, content: bytes, filename: str = "list.csv",
                 mimetype: str = "text/csv") -> httpx.Response:
    return await api.client.post(f"/contact-lists/{list_id}/upload", files={"file": (filename, content, mimetype)},
                                 headers=auth(token))


def xlsx(rows: list[list[Any]]) -> bytes:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def items_of(server: Server, list_id: int) -> list[tuple[Any, ...]]:
    return server.sql("SELECT name, number, email FROM contact_list_items WHERE contact_list_id = %s ORDER BY number",
                      (list_id,))


# ─── lists ──────────────────────────────────────────────────────────────────────────────


async def test_list_crud_search_counts_and_events(api: Api, server: Server, tenants: Tenants) -> None:
    with trio.fail_after(TIMEOUT), server.broker.subscribe(tenants.company_id) as subscription:
        events = Events(subscription)
        clients = await create_list(api, tenants.user, "Clientes VIP")
        assert clients["name"] == "Clientes VIP" and clients["contactsCount"] == 0
        assert clients["companyId"] == tenants.company_id and clients["createdAt"]
        leads = await create_list(api, tenants.user, "Leads 2026")
        for number in ("5511988880001", "5511988880002"):
            assert (await create_item(api, tenants.admin, clients["id"], name="X", number=number)).status_code == 201
        page = (await api.client.get("/contact-lists", headers=auth(tenants.user))).json()
        assert [(r["name"], r["contactsCount"]) for r in page["records"]] == [("Clientes VIP", 2), ("Leads 2026", 0)]
        assert page["count"] == 2 and page["hasMore"] is False
        found = (await api.client.get("/contact-lists", params={"searchParam": "vip"}, headers=auth(tenants.user)))
        assert [r["id"] for r in found.json()["records"]] == [clients["id"]]
        assert [r["id"] for r in (await api.client.get("/contact-lists/list", headers=auth(tenants.user))).json()] == [
            clients["id"], leads["id"]]
        shown = (await api.client.get(f"/contact-lists/{clients['id']}", headers=auth(tenants.user))).json()
        assert shown["contactsCount"] == 2
        renamed = await api.client.put(f"/contact-lists/{leads['id']}", json={"name": "Leads"},
                                       headers=auth(tenants.user))
        assert renamed.status_code == 200 and renamed.json()["name"] == "Leads"
        deleted = await api.client.delete(f"/contact-lists/{clients['id']}", headers=auth(tenants.user))
        assert deleted.status_code == 200
        assert server.sql("SELECT count(*) FROM contact_list_items") == [(0,)]  # its items went with it
        assert server.sql("SELECT count(*) FROM timers WHERE kind = 'contact_list_check' AND state IN "
                          "('pending', 'claimed')") == [(0,)]  # and its number check
        seen = [(e["action"], (e.get("record") or {}).get("name") or e.get("id"))
                for e in events_named(events, "-ContactList")]
        assert seen == [("create", "Clientes VIP"), ("create", "Leads 2026"), ("update", "Leads"),
                        ("delete", clients["id"])]
        many = [await create_list(api, tenants.admin, f"List {i:02d}") for i in range(25)]
        first = (await api.client.get("/contact-lists", headers=auth(tenants.user))).json()
        second = (await api.client.get("/contact-lists", params={"pageNumber": 2}, headers=auth(tenants.user))).json()
        assert len(first["records"]) == 20 and first["hasMore"] and first["count"] == 26
        assert len(second["records"]) == 6 and not second["hasMore"]
        assert {r["id"] for r in first["records"] + second["records"]} == {leads["id"]} | {m["id"] for m in many}


async def test_list_bad_input_and_other_company(api: Api, server: Server, tenants: Tenants) -> None:
    with trio.fail_after(TIMEOUT):
        mine = await create_list(api, tenants.admin, "Mine")
        before = await snapshot(server)
        for body in ({}, {"name": ""}, {"name": "ab"}, {"name": 12}, {"name": "x" * 256}):
            response = await api.client.post("/contact-lists", json=body, headers=auth(tenants.admin))
            assert response.status_code == 400, (body, response.text)
            assert response.json()["error"] == "ERR_CONTACTLIST_INVALID_NAME" and response.json()["field"] == "name"
        bad_json = await api.client.post("/contact-lists", content=b"{", headers={
            **auth(tenants.admin), "Content-Type": "application/json"})
        assert bad_json.status_code == 400 and bad_json.json()["error"] == "ERR_INVALID_JSON"
        for method, path, body in (("GET", "/contact-lists/{id}", None),
                                   ("PUT", "/contact-lists/{id}", {"name": "Mine!"}),
                                   ("DELETE", "/contact-lists/{id}", None),
                                   ("POST", "/contact-lists/{id}/check", {}),
                                   ("GET", "/contact-lists/{id}/export", None),
                                   ("GET", "/contact-list-items?contactListId={id}", None),
                                   ("GET", "/contact-list-items/list?contactListId={id}", None)):
            for who, list_id in ((tenants.b_admin, mine["id"]), (tenants.admin, 987654321), (tenants.admin, "abc")):
                if list_id == "abc" and "?" in path:
                    continue  # a query parameter that is no id is a 400 (below)
                response = await api.client.request(method, path.format(id=list_id), json=body, headers=auth(who))
                assert response.status_code == 404, (method, path, response.text)
                assert response.json()["error"] == "ERR_NOT_FOUND"
        not_an_id = await api.client.get("/contact-list-items?contactListId=abc", headers=auth(tenants.admin))
        assert not_an_id.status_code == 400 and not_an_id.json()["field"] == "contactListId"
        foreign_upload = await upload(api, tenants.b_admin, mine["id"], b"name,number\nX,5511988880001\n")
        assert foreign_upload.status_code == 404
        foreign_item = await create_item(api, tenants.b_admin, mine["id"], name="X", number="5511988880001")
        assert foreign_item.status_code == 404
        assert await snapshot(server) == before
        theirs = (await api.client.get("/contact-lists/list", headers=auth(tenants.b_admin))).json()
        assert theirs == []


# ─── items ──────────────────────────────────────────────────────────────────────────────


async def test_items_crud_numbers_search_and_events(api: Api, server: Server, tenants: Tenants) -> None:
    with trio.fail_after(TIMEOUT), server.broker.subscribe(tenants.company_id) as subscription:
        events = Events(subscription)
        lst = await create_list(api, tenants.admin, "Clientes")
        made = await create_item(api, tenants.admin, lst["id"], name="Ana Souza", number="+55 (11) 98888-0001",
                                 email="Ana@X.test")
        assert made.status_code == 201, made.text
        ana = made.json()
        assert (ana["name"], ana["number"], ana["email"], ana["isWhatsappValid"], ana["contactListId"]) == (
            "Ana Souza", "5511988880001", "ana@x.test", None, lst["id"])
        national = await create_item(api, tenants.admin, lst["id"], name="Bruno", number="(21) 98765-4321")
        assert national.json()["number"] == "5521987654321"  # the company's region (BR) fills the country code
        dup = await create_item(api, tenants.admin, lst["id"], name="Again", number="5511988880001")
        assert dup.status_code == 409 and dup.json()["error"] == "ERR_DUPLICATED_CONTACT"
        for body, field in (({"name": "X", "number": "123"}, "number"), ({"name": "X", "number": "abc"}, "number"),
                            ({"number": "5511988880009"}, "name"), ({"name": "X"}, "number"),
                            ({"name": "X", "number": "5511988880009", "email": "no"}, "email")):
            bad = await create_item(api, tenants.admin, lst["id"], **body)
            assert bad.status_code == 400 and bad.json()["field"] == field, (body, bad.text)
        no_list = await api.client.post("/contact-list-items", json={"name": "X", "number": "5511988880009"},
                                        headers=auth(tenants.admin))
        assert no_list.status_code == 400 and no_list.json()["field"] == "contactListId"
        page = (await api.client.get("/contact-list-items", params={"contactListId": lst["id"]},
                                     headers=auth(tenants.admin))).json()
        assert [c["name"] for c in page["contacts"]] == ["Ana Souza", "Bruno"] and page["count"] == 2
        assert page["hasMore"] is False
        by_number = (await api.client.get("/contact-list-items", params={"contactListId": lst["id"],
                                                                          "searchParam": "98765"},
                                          headers=auth(tenants.admin))).json()
        assert [c["name"] for c in by_number["contacts"]] == ["Bruno"]
        by_name = (await api.client.get("/contact-list-items", params={"contactListId": lst["id"],
                                                                        "searchParam": "souz"},
                                        headers=auth(tenants.admin))).json()
        assert [c["name"] for c in by_name["contacts"]] == ["Ana Souza"]
        missing_param = await api.client.get("/contact-list-items", headers=auth(tenants.admin))
        assert missing_param.status_code == 400 and missing_param.json()["field"] == "contactListId"
        server.sql("UPDATE contact_list_items SET is_whatsapp_valid = true")
        same = await api.client.put(f"/contact-list-items/{ana['id']}", json={"name": "Ana S.",
                                                                              "number": "5511988880001"},
                                    headers=auth(tenants.admin))
        assert same.json()["isWhatsappValid"] is True  # the same number: still checked
        moved = await api.client.put(f"/contact-list-items/{ana['id']}", json={"number": "+55 11 98888-0003"},
                                     headers=auth(tenants.admin))
        assert moved.status_code == 200 and moved.json()["number"] == "5511988880003"
        assert moved.json()["isWhatsappValid"] is None and moved.json()["name"] == "Ana S."  # to be checked again
        clash = await api.client.put(f"/contact-list-items/{ana['id']}", json={"number": "5521987654321"},
                                     headers=auth(tenants.admin))
        assert clash.status_code == 409 and clash.json()["error"] == "ERR_DUPLICATED_CONTACT"
        shown = await api.client.get(f"/contact-list-items/{ana['id']}", headers=auth(tenants.admin))
        assert shown.json()["number"] == "5511988880003"
        listed = (await api.client.get("/contact-list-items/list", params={"contactListId": lst["id"]},
                                       headers=auth(tenants.admin))).json()
        assert {c["id"] for c in listed} == {ana["id"], national.json()["id"]}
        assert (await api.client.delete(f"/contact-list-items/{ana['id']}", headers=auth(tenants.admin))).status_code \
            == 200
        assert (await api.client.get(f"/contact-list-items/{ana['id']}", headers=auth(tenants.admin))).status_code \
            == 404
        seen = [(e["action"], (e.get("record") or {}).get("name") or e.get("id"))
                for e in events_named(events, "-ContactListItem")]
        assert seen == [("create", "Ana Souza"), ("create", "Bruno"), ("update", "Ana S."), ("update", "Ana S."),
                        ("delete", ana["id"])]
        # plain users: items are an admin's (ticketz's routes), other companies never see them
        assert (await api.client.get("/contact-list-items", params={"contactListId": lst["id"]},
                                     headers=auth(tenants.user))).status_code == 403
        before = await snapshot(server)
        bruno = national.json()["id"]
        for method, body in (("GET", None), ("PUT", {"name": "Hijack"}), ("DELETE", None)):
            response = await api.client.request(method, f"/contact-list-items/{bruno}", json=body,
                                                headers=auth(tenants.b_admin))
            assert response.status_code == 404 and response.json()["error"] == "ERR_NOT_FOUND"
        assert await snapshot(server) == before


# ─── import into a list ─────────────────────────────────────────────────────────────────


async def test_upload_csv_merges_reports_and_announces(api: Api, server: Server, tenants: Tenants) -> None:
    csv_text = (
        "\ufeffNome;Número;E-mail\r\n"               # row 1: header (BOM, semicolons, accents)
        "Ana;+55 (11) 98888-0001;ANA@x.test\r\n"      # 2 created
        "Bruno;;\r\n"                                 # 3 number missing
        "Carla;55 11 CALL;\r\n"                       # 4 not a number
        ";;\r\n"                                      # 5 blank: skipped
        "Dani;(11) 98888-0004;\r\n"                   # 6 created (region BR)
        "Ana Maria;5511988880001;\r\n"                # 7 merged with row 2: name replaced, email kept
        "Eva;5511988880005;not-an-email\r\n"          # 8 bad email
        "Fábio;5511988880099;\r\n"                    # 9 merged with the item already there
    )
    with trio.fail_after(TIMEOUT), server.broker.subscribe(tenants.company_id) as subscription:
        events = Events(subscription)
        lst = await create_list(api, tenants.user, "Importada")
        assert (await create_item(api, tenants.admin, lst["id"], name="Old", number="5511988880099",
                                  email="old@x.test")).status_code == 201
        response = await upload(api, tenants.user, lst["id"], csv_text.encode())
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["created"], body["merged"], body["rejected"], body["processed"]) == (2, 2, 3, 7)
        assert body["kind"] == "csv" and body["errorsShown"] == 3
        assert [(e["row"], e["field"], e["value"]) for e in body["errors"]] == [
            (3, "number", ""), (4, "number", "55 11 CALL"), (8, "email", "not-an-email")]
        assert all(e["message"] for e in body["errors"])
        assert await trio.to_thread.run_sync(items_of, server, lst["id"]) == [
            ("Ana Maria", "5511988880001", "ana@x.test"), ("Dani", "5511988880004", ""),
            ("Fábio", "5511988880099", "old@x.test")]
        seen = events_named(events, f"-ContactListItem-{lst['id']}")
        assert [e["action"] for e in seen] == ["reload"]
        assert {r["number"] for r in seen[0]["records"]} == {"5511988880001", "5511988880004", "5511988880099"}
        progress = events_named(events, "-import")
        assert progress[-1]["action"] == "done" and progress[-1]["contactListId"] == lst["id"]
        assert (progress[-1]["created"], progress[-1]["merged"], progress[-1]["rejected"]) == (2, 2, 3)
        assert any(e["action"] == "progress" for e in progress)
        # the list's count moved (the Contact lists screen updates its row)
        updates = [e for e in events_named(events, "-ContactList") if e["action"] == "update"]
        assert updates and updates[-1]["record"]["contactsCount"] == 3
        # the numbers wait for the number check (no connection: they stay unchecked)
        assert server.sql("SELECT count(*) FROM contact_list_items WHERE is_whatsapp_valid IS NULL") == [(3,)]


async def test_upload_xlsx_with_numeric_cells_and_mixed_headers(api: Api, server: Server, tenants: Tenants) -> None:
    content = xlsx([["NAME", "Telefone", "Email", "Observação"],
                    ["Ana", 5511988880001, "ana@x.test", "ignored in a list"],
                    [None, None, None, None],
                    ["Bia", "11 98888-0002", None, None],
                    ["Bad", 12345, None, None],
                    ["Ana again", 5511988880001.0, None, None]])
    with trio.fail_after(TIMEOUT):
        lst = await create_list(api, tenants.admin, "Planilha")
        response = await upload(api, tenants.admin, lst["id"], content, "lista.xlsx",
                                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["kind"], body["created"], body["merged"], body["rejected"]) == ("xlsx", 2, 1, 1)
        assert body["errors"][0]["row"] == 5 and body["errors"][0]["value"] == "12345"
        assert await trio.to_thread.run_sync(items_of, server, lst["id"]) == [
            ("Ana again", "5511988880001", "ana@x.test"), ("Bia", "5511988880002", "")]


BAD_FILES = {
    "png": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01", 400),
    "zip that is no workbook": (b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + bytes(range(256)), 400),
    "empty": (b"", 400),
    "no number column": (b"name,email\nAna,ana@x.test\n", 400),
    "only blank lines": (b"\n\n\n", 400),
    "binary": (b"name,number\n\x00\x01\x02", 400),
    "old xls": (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(100), 400),
}


@pytest.mark.parametrize("content", [v[0] for v in BAD_FILES.values()], ids=list(BAD_FILES))
async def test_upload_refuses_a_file_that_is_not_a_contact_sheet(api: Api, server: Server, tenants: Tenants,
                                                                  content: bytes) -> None:
    with trio.fail_after(TIMEOUT), server.broker.subscribe(tenants.company_id) as subscription:
        events = Events(subscription)
        lst = await create_list(api, tenants.admin, "Lista")
        before = await snapshot(server)
        response = await upload(api, tenants.admin, lst["id"], content, "lista.xlsx")
        assert response.status_code == 400, response.text
        assert response.json()["error"] in ("ERR_INVALID_FILE", "ERR_VALIDATION") and response.json()["message"]
        assert response.json()["field"] == "file"
        assert await snapshot(server) == before
        if content:
            assert [e["action"] for e in events_named(events, "-import")] == ["failed"]


async def test_upload_needs_multipart_with_a_file_and_rolls_back_a_broken_file(api: Api, server: Server,
                                                                                tenants: Tenants) -> None:
    with trio.fail_after(TIMEOUT):
        lst = await create_list(api, tenants.admin, "Lista")
        before = await snapshot(server)
        no_body = await api.client.post(f"/contact-lists/{lst['id']}/upload", headers=auth(tenants.admin))
        assert no_body.status_code == 400 and no_body.json()["field"] == "file"
        other_field = await api.client.post(f"/contact-lists/{lst['id']}/upload",
                                            files={"csv": ("c.csv", b"name,number\n")}, headers=auth(tenants.admin))
        assert other_field.status_code == 400 and other_field.json()["field"] == "file"
        as_json = await api.client.post(f"/contact-lists/{lst['id']}/upload", json={"file": "x"},
                                        headers=auth(tenants.admin))
        assert as_json.status_code == 415
        # a CSV whose 2,500th row breaks the format: the first two batches are rolled back with it
        rows = "".join(f"C{i},55119{i:08d}\n" for i in range(2_500))
        broken = ("name,number\n" + rows + 'bad,"unclosed\n' + "x" * 200_000).encode()
        response = await upload(api, tenants.admin, lst["id"], broken)
        assert response.status_code == 400 and response.json()["error"] == "ERR_INVALID_FILE", response.text
        assert await snapshot(server) == before


# ─── export → import ────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
async def test_export_imports_back_as_the_same_list(api: Api, server: Server, tenants: Tenants, fmt: str) -> None:
    with trio.fail_after(TIMEOUT):
        source = await create_list(api, tenants.admin, "Origem")
        people = [("Ana; \"Souza\"", "5511988880001", "ana@x.test"), ("=HYPERLINK(\"x\")", "5511988880002", ""),
                  ("", "5511988880003", "sem@nome.test"), ("João Ção", "14155552671", ""),
                  ("-minus", "5521987654321", "")]
        people += [(f"Pessoa {i}", f"55119{i:08d}", f"p{i}@x.test") for i in range(1_200)]  # more than a slice
        server.sql("INSERT INTO contact_list_items (company_id, contact_list_id, name, number, email) "
                   "SELECT %s, %s, n, num, e FROM unnest(%s::text[], %s::text[], %s::text[]) AS d(n, num, e)",
                   (tenants.company_id, source["id"], [p[0] for p in people], [p[1] for p in people],
                    [p[2] for p in people]))
        exported = await api.client.get(f"/contact-lists/{source['id']}/export", params={"format": fmt},
                                        headers=auth(tenants.admin))
        assert exported.status_code == 200, exported.text
        assert exported.headers["content-disposition"] == f'attachment; filename="Origem.{fmt}"'
        if fmt == "csv":
            assert exported.content.startswith(b"\xef\xbb\xbfname,number,email,whatsapp\r\n")
            assert b"'=HYPERLINK" in exported.content  # no formula for a spreadsheet program to run
        else:
            sheet = openpyxl.load_workbook(io.BytesIO(exported.content), read_only=True).worksheets[0]
            first = next(sheet.iter_rows(values_only=True))
            assert list(first) == ["name", "number", "email", "whatsapp"]
        copy = await create_list(api, tenants.admin, "Cópia")
        again = await upload(api, tenants.admin, copy["id"], exported.content, f"origem.{fmt}")
        assert again.status_code == 200, again.text
        assert (again.json()["created"], again.json()["merged"], again.json()["rejected"]) == (len(people), 0, 0)
        original = await trio.to_thread.run_sync(items_of, server, source["id"])
        assert await trio.to_thread.run_sync(items_of, server, copy["id"]) == original
        assert len(original) == len(people)
        bad_format = await api.client.get(f"/contact-lists/{source['id']}/export", params={"format": "pdf"},
                                          headers=auth(tenants.admin))
        assert bad_format.status_code == 400 and bad_format.json()["field"] == "format"
        assert (await api.client.get(f"/contact-lists/{source['id']}/export", headers=auth(tenants.user))
                ).status_code == 403


# ─── the number check ───────────────────────────────────────────────────────────────────


async def wait_for(server: Server, query: str, params: Any, expected: Any) -> None:
    while await trio.to_thread.run_sync(server.sql, query, params) != expected:
        await trio.sleep(0.1)


async def test_number_check_through_the_sandbox(api: Api, server: Server, tenants: Tenants) -> None:
    """An import starts the check: numbers go to the sandbox 50 at a time; those its registry says have no
    account end false, the others true; the answers come as ticketz's item updates. A recheck asks again."""
    with trio.fail_after(TIMEOUT), server.broker.subscribe(tenants.company_id) as subscription:
        events = Events(subscription)
        wid = await connected_sandbox(api, tenants.admin)
        registry = await api.client.put(f"/sandbox/{wid}/registry", headers=auth(tenants.admin), json={
            "notOnWhatsapp": ["+55 11 90000-0007"], "notOnWhatsappPrefixes": ["55119000001"]})
        assert registry.status_code == 200, registry.text
        assert registry.json()["notOnWhatsapp"] == ["5511900000007"]
        lst = await create_list(api, tenants.admin, "Checar")
        rows = "".join(f"P{i},55119{i:08d}\n" for i in range(120))  # 5511900000000 … 5511900000119
        response = await upload(api, tenants.admin, lst["id"], ("name,number\n" + rows).encode())
        assert response.json()["created"] == 120
        await wait_for(server, "SELECT count(*) FROM contact_list_items WHERE is_whatsapp_valid IS NULL", None, [(0,)])
        invalid = server.sql("SELECT number FROM contact_list_items WHERE NOT is_whatsapp_valid ORDER BY number")
        assert [n for (n,) in invalid] == ["5511900000007"] + [f"55119000001{i:02d}" for i in range(20)]
        state = (await api.client.get(f"/sandbox/{wid}", headers=auth(tenants.admin))).json()["registry"]
        assert state["numbersChecked"] == 120 and state["largestCheck"] == 50 and state["checks"] == 3
        updates = [e["record"] for e in events_named(events, "-ContactListItem") if e["action"] == "update"]
        assert len(updates) == 120 and {u["isWhatsappValid"] for u in updates} == {True, False}
        page = (await api.client.get("/contact-list-items", params={"contactListId": lst["id"],
                                                                     "searchParam": "5511900000007"},
                                     headers=auth(tenants.admin))).json()
        assert [(c["name"], c["isWhatsappValid"]) for c in page["contacts"]] == [("P7", False)]
        # nothing left to check: the check is done, its timer gone
        await wait_for(server, "SELECT count(*) FROM timers WHERE kind = 'contact_list_check' "
                               "AND state IN ('pending', 'claimed')", None, [(0,)])
        # everyone has WhatsApp now; a recheck asks about every number again
        await api.client.put(f"/sandbox/{wid}/registry", json={}, headers=auth(tenants.admin))
        again = await api.client.post(f"/contact-lists/{lst['id']}/check", json={"recheck": True},
                                      headers=auth(tenants.admin))
        assert again.status_code == 202 and again.json() == {"contactListId": lst["id"], "waiting": 120}
        await wait_for(server, "SELECT count(*) FROM contact_list_items WHERE is_whatsapp_valid IS NOT TRUE",
                       None, [(0,)])
        bad = await api.client.put(f"/sandbox/{wid}/registry", json={"notOnWhatsapp": ["abc"]},
                                   headers=auth(tenants.admin))
        assert bad.status_code == 400 and bad.json()["field"] == "notOnWhatsapp"
        assert (await api.client.post(f"/contact-lists/{lst['id']}/check", json={"recheck": "yes"},
                                      headers=auth(tenants.admin))).status_code == 400


async def test_number_check_waits_for_a_connection(api: Api, server: Server, tenants: Tenants) -> None:
    """Without a connected connection the numbers stay unchecked (null) and the check is put off, not lost."""
    with trio.fail_after(TIMEOUT):
        lst = await create_list(api, tenants.admin, "Sem conexão")
        assert (await create_item(api, tenants.admin, lst["id"], name="A", number="5511988880001")).status_code == 201
        await wait_for(server, "SELECT state, payload->>'waits' FROM timers WHERE kind = 'contact_list_check' "
                               "AND state <> 'done'", None, [("pending", "1")])
        assert server.sql("SELECT is_whatsapp_valid FROM contact_list_items") == [(None,)]


async def test_number_check_resumes_after_a_restart_without_asking_twice(nursery: trio.Nursery, database_url: str,
                                                                         tmp_path: Path) -> None:
    """The check's state is in the rows: stopped after a step, the next process asks about the numbers
    still unchecked, each once (its sandbox counts the numbers it is asked about)."""
    unchecked = "SELECT count(*) FROM contact_list_items WHERE is_whatsapp_valid IS NULL"
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as first_run:
            first = await start_server(first_run, make_config(tmp_path, database_url))
            async with httpx.AsyncClient(base_url=first.url) as client:
                api = Api(client, first)
                token = await api.admin_token()
                wid = await connected_sandbox(api, token)
                lst = await create_list(api, token, "Reinício")
                first.sql("INSERT INTO contact_list_items (company_id, contact_list_id, name, number) "
                          "SELECT 1, %s, 'P' || g, (5511900000000 + g)::text FROM generate_series(1, 120) g",
                          (lst["id"],))
                started = await client.post(f"/contact-lists/{lst['id']}/check", json={}, headers=auth(token))
                assert started.json()["waiting"] == 120
                while (await trio.to_thread.run_sync(first.sql, unchecked))[0][0] == 120:
                    await trio.sleep(0.05)
            first_run.cancel_scope.cancel()
        await first.db.aclose()
        left = first.sql(unchecked)[0][0]
        assert 0 < left < 120

        second = await start_server(nursery, make_config(tmp_path, database_url))
        async with httpx.AsyncClient(base_url=second.url) as client:
            api = Api(client, second)
            token = await api.admin_token()
            await wait_for(second, unchecked, None, [(0,)])
            state = (await client.get(f"/sandbox/{wid}", headers=auth(token))).json()["registry"]
            assert state["numbersChecked"] == left  # the numbers checked before the restart were not asked again
        await second.db.aclose()
