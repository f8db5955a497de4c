"""`/contacts`: CRUD, number normalisation, search and pages, custom fields, the agent's name, events,
tenancy, bad input, and the imports (`/contacts/import`, `/upload`, ticketz's `/importCsv`) and exports."""

from __future__ import annotations

from functools import partial
from typing import Any

import attrs
import pytest
import trio

from gateway.broker import Subscription
from tests.integration.conftest import Api, Server, auth
from tests.integration.test_conversations import connected_sandbox, inbound
from tests.integration.test_queue_routing import attach, make_queue, settle

TIMEOUT = 30


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


async def create_contact(api: Api, token: str, **fields: Any) -> dict[str, Any]:
    response = await api.client.post("/contacts", json=fields, headers=auth(token))
    assert response.status_code == 201, response.text
    return response.json()


def contact_events(subscription: Subscription) -> list[dict[str, Any]]:
    seen = []
    while (event := subscription.receive_nowait()) is not None:
        if event.name.endswith("-contact"):
            seen.append({"name": event.name, **event.payload})
    return seen


SNAPSHOT_SQL = ("SELECT (SELECT coalesce(json_agg(c ORDER BY c.id), '[]') FROM contacts c), "
                "(SELECT coalesce(json_agg(f ORDER BY f.id), '[]') FROM contact_custom_fields f)")


async def snapshot(server: Server) -> tuple[Any, ...]:
    return (await trio.to_thread.run_sync(server.sql, SNAPSHOT_SQL))[0]


def insert_contacts(server: Server, company_id: int, rows: list[tuple[str, str]], *, by_agent: bool = False) -> None:
    server.sql("INSERT INTO contacts (company_id, name, number, name_set_by_agent) "
               "SELECT %s, name, number, %s FROM unnest(%s::text[], %s::text[]) AS r(name, number)",
               (company_id, by_agent, [name for name, _ in rows], [number for _, number in rows]))


# ─── CRUD ───────────────────────────────────────────────────────────────────────────────


async def test_contact_crud_with_extra_info_and_events(api: Api, server: Server, tenants: Tenants) -> None:
    with trio.fail_after(TIMEOUT), server.broker.subscribe(tenants.company_id) as events:
        created = await create_contact(api, tenants.user, name="Ana Souza", number="+55 (11) 98888-7777",
                                       email="Ana@Example.COM",
                                       extraInfo=[{"name": "CPF", "value": "123"}, {"name": "Plan", "value": "Gold"}])
        assert created["number"] == "5511988887777" and created["name"] == "Ana Souza"
        assert created["email"] == "ana@example.com" and created["companyId"] == tenants.company_id
        assert created["profilePicUrl"] == "" and created["isGroup"] is False and created["lid"] is None
        assert [(f["name"], f["value"]) for f in created["extraInfo"]] == [("CPF", "123"), ("Plan", "Gold")]
        assert all(isinstance(f["id"], int) for f in created["extraInfo"])
        assert created["createdAt"] and created["updatedAt"]
        cid = created["id"]

        shown = await api.client.get(f"/contacts/{cid}", headers=auth(tenants.user))
        assert shown.status_code == 200 and shown.json() == created

        # Partial update: the number in another notation is the same number; the email is kept.
        updated = await api.client.put(f"/contacts/{cid}", json={"name": "Ana S.", "number": "5511988887777"},
                                       headers=auth(tenants.user))
        assert updated.status_code == 200, updated.text
        body = updated.json()
        assert body["name"] == "Ana S." and body["email"] == "ana@example.com" and body["extraInfo"] == created[
            "extraInfo"]
        moved = await api.client.put(f"/contacts/{cid}", json={"number": "+1 415 555 0100"}, headers=auth(tenants.user))
        assert moved.json()["number"] == "14155550100"
        as_integer = await api.client.put(f"/contacts/{cid}", json={"number": 14155550101}, headers=auth(tenants.user))
        assert as_integer.json()["number"] == "14155550101"

        # Any user of the company may delete (as the original backend allows).
        deleted = await api.client.delete(f"/contacts/{cid}", headers=auth(tenants.user))
        assert deleted.status_code == 200, deleted.text
        gone = await api.client.get(f"/contacts/{cid}", headers=auth(tenants.user))
        assert gone.status_code == 404 and gone.json()["error"] == "ERR_NOT_FOUND"
        assert server.sql("SELECT count(*) FROM contact_custom_fields WHERE contact_id = %s", (cid,)) == [(0,)]

        seen = contact_events(events)
        assert all(e["name"] == f"company-{tenants.company_id}-contact" for e in seen)
        assert [e["action"] for e in seen] == ["update", "update", "update", "update", "delete"]
        assert seen[0]["contact"] == created and seen[1]["contact"]["name"] == "Ana S."
        assert seen[4]["contactId"] == cid


async def test_extra_info_replaces_the_custom_fields(api: Api, server: Server, tenants: Tenants) -> None:
    with trio.fail_after(TIMEOUT):
        created = await create_contact(api, tenants.admin, name="Bob", number="5511977776666",
                                       extraInfo=[{"name": "CPF", "value": "1"}, {"name": "Old", "value": "x"}])
        cpf_id = created["extraInfo"][0]["id"]
        # What a frontend sends back: the items with their ids, one changed, one removed, one added.
        response = await api.client.put(f"/contacts/{created['id']}", json={
            **created, "extraInfo": [{"id": cpf_id, "name": "CPF", "value": "2"}, {"name": "New", "value": ""}],
        }, headers=auth(tenants.admin))
        assert response.status_code == 200, response.text
        fields = response.json()["extraInfo"]
        assert [(f["name"], f["value"]) for f in fields] == [("CPF", "2"), ("New", "")]
        assert fields[0]["id"] == cpf_id  # matched by name: the field keeps its id
        untouched = await api.client.put(f"/contacts/{created['id']}", json={"email": "bob@x.test"},
                                         headers=auth(tenants.admin))
        assert untouched.json()["extraInfo"] == fields  # no extraInfo in the body: fields kept
        null = await api.client.put(f"/contacts/{created['id']}", json={"extraInfo": None}, headers=auth(tenants.admin))
        assert null.json()["extraInfo"] == fields  # null too
        cleared = await api.client.put(f"/contacts/{created['id']}", json={"extraInfo": []},
                                       headers=auth(tenants.admin))
        assert cleared.json()["extraInfo"] == []
        assert server.sql("SELECT count(*) FROM contact_custom_fields") == [(0,)]


async def test_a_name_changed_by_an_agent_is_marked(api: Api, server: Server, tenants: Tenants) -> None:
    with trio.fail_after(TIMEOUT):
        await trio.to_thread.run_sync(insert_contacts, server, tenants.company_id, [("Push Name", "5511966665555")])
        cid = server.sql("SELECT id FROM contacts WHERE number = '5511966665555'")[0][0]

        def flag() -> bool:
            return server.sql("SELECT name_set_by_agent FROM contacts WHERE id = %s", (cid,))[0][0]

        same = await api.client.put(f"/contacts/{cid}", json={"name": "Push Name", "email": ""},
                                    headers=auth(tenants.user))
        assert same.status_code == 200 and flag() is False  # the form sent back unchanged: still a push name
        renamed = await api.client.put(f"/contacts/{cid}", json={"name": "Maria (VIP)"}, headers=auth(tenants.user))
        assert renamed.json()["name"] == "Maria (VIP)" and flag() is True
        created = await create_contact(api, tenants.user, name="Typed", number="5511955554444")
        assert server.sql("SELECT name_set_by_agent FROM contacts WHERE id = %s", (created["id"],)) == [(True,)]


async def test_an_unchanged_group_number_is_accepted_back(api: Api, server: Server, tenants: Tenants) -> None:
    with trio.fail_after(TIMEOUT):
        group = "120363025246125486"  # a group's id: longer than a phone number
        cid = server.sql("INSERT INTO contacts (company_id, name, number, is_group) VALUES (%s, 'Group', %s, true) "
                         "RETURNING id", (tenants.company_id, group))[0][0]
        shown = (await api.client.get(f"/contacts/{cid}", headers=auth(tenants.user))).json()
        assert shown["isGroup"] is True
        response = await api.client.put(f"/contacts/{cid}", json={**shown, "email": "group@x.test"},
                                        headers=auth(tenants.user))
        assert response.status_code == 200, response.text
        assert response.json()["number"] == group


async def test_duplicate_numbers_are_409(api: Api, server: Server, tenants: Tenants) -> None:
    with trio.fail_after(TIMEOUT):
        await create_contact(api, tenants.admin, name="First", number="5511988881111")
        second = await create_contact(api, tenants.admin, name="Second", number="5511988882222")
        before = await snapshot(server)
        again = await api.client.post("/contacts", json={"name": "Again", "number": "+55 11 98888-1111"},
                                      headers=auth(tenants.admin))
        assert again.status_code == 409 and again.json()["error"] == "ERR_DUPLICATED_CONTACT"
        taken = await api.client.put(f"/contacts/{second['id']}", json={"number": "(55) 11 988881111",
                                                                        "extraInfo": [{"name": "a", "value": "b"}]},
                                     headers=auth(tenants.admin))
        assert taken.status_code == 409 and taken.json()["error"] == "ERR_DUPLICATED_CONTACT"
        assert await snapshot(server) == before  # the custom field of the refused update is not kept
        # Another company may hold the same number.
        await create_contact(api, tenants.b_admin, name="Elsewhere", number="5511988881111")


# ─── list: search and pages ─────────────────────────────────────────────────────────────


async def test_list_searches_name_and_number_and_paginates(api: Api, server: Server, tenants: Tenants) -> None:
    with trio.fail_after(TIMEOUT):
        rows = [(f"Cliente {index:02d}", f"55119{index:08d}") for index in range(45)]
        rows += [("ÁGATA Lima", "5521912345678"), ("zeca", "5531900000001"), ("50%_off", "5531900000002")]
        await trio.to_thread.run_sync(insert_contacts, server, tenants.company_id, rows)
        await trio.to_thread.run_sync(insert_contacts, server, tenants.b_company_id, [("Cliente B", "5511900000001")])
        headers = auth(tenants.user)

        first = (await api.client.get("/contacts", headers=headers)).json()
        assert first["count"] == 48 and first["hasMore"] is True and len(first["contacts"]) == 20
        third = (await api.client.get("/contacts?pageNumber=3", headers=headers)).json()
        assert len(third["contacts"]) == 8 and third["hasMore"] is False
        past = (await api.client.get("/contacts?pageNumber=9", headers=headers)).json()
        assert past == {"contacts": [], "count": 48, "hasMore": False}
        everyone = [c for p in (1, 2, 3)
                    for c in (await api.client.get(f"/contacts?pageNumber={p}", headers=headers)).json()["contacts"]]
        assert len({c["id"] for c in everyone}) == 48
        # By lower(name) (where "Á" falls follows the database's collation), ties by id.
        ascii_names = [c["name"] for c in everyone if c["name"].isascii()]
        assert ascii_names == sorted(ascii_names, key=str.lower) and ascii_names[0] == "50%_off"
        assert all(c["companyId"] == tenants.company_id for c in everyone)  # never Beta's rows

        async def search(term: str) -> dict[str, Any]:
            response = await api.client.get("/contacts", params={"searchParam": term}, headers=headers)
            assert response.status_code == 200, response.text
            return response.json()

        assert (await search("CLIENTE 1"))["count"] == 10
        assert [c["name"] for c in (await search("ágata"))["contacts"]] == ["ÁGATA Lima"]
        assert [c["name"] for c in (await search("+55 (21) 91234"))["contacts"]] == ["ÁGATA Lima"]
        assert [c["name"] for c in (await search("5531900000001"))["contacts"]] == ["zeca"]
        assert [c["name"] for c in (await search("%_"))["contacts"]] == ["50%_off"]  # % and _ are literal
        assert (await search("cliente b"))["count"] == 0  # Beta's contact
        empty = await search("nobody")
        assert empty == {"contacts": [], "count": 0, "hasMore": False}
        bad_page = await api.client.get("/contacts?pageNumber=0", headers=headers)
        assert bad_page.status_code == 400 and bad_page.json()["field"] == "pageNumber"


async def test_search_finds_contacts_by_their_custom_fields(api: Api, server: Server, tenants: Tenants) -> None:
    with trio.fail_after(TIMEOUT):
        gold = await create_contact(api, tenants.admin, name="Ana", number="5511988880001",
                                    extraInfo=[{"name": "Plano", "value": "Ouro Premium"}, {"name": "CPF",
                                                                                            "value": "123.456"}])
        await create_contact(api, tenants.admin, name="Bia", number="5511988880002",
                             extraInfo=[{"name": "Plano", "value": "Prata"}])
        await create_contact(api, tenants.admin, name="Ouro Preto Transportes", number="5511988880003")
        await create_contact(api, tenants.b_admin, name="Caio", number="5511988880004",
                             extraInfo=[{"name": "Plano", "value": "Ouro"}])  # Beta's

        async def names(term: str) -> list[str]:
            response = await api.client.get("/contacts", params={"searchParam": term}, headers=auth(tenants.user))
            assert response.status_code == 200, response.text
            assert response.json()["count"] == len(response.json()["contacts"])
            return [c["name"] for c in response.json()["contacts"]]

        assert await names("ouro") == ["Ana", "Ouro Preto Transportes"]  # a field's value, or the name
        assert await names("PREMIUM") == ["Ana"]
        assert await names("3.4") == ["Ana"]  # a short search (no index piece) still finds it
        assert await names("ur") == ["Ana", "Ouro Preto Transportes"]
        assert await names("prata") == ["Bia"]
        assert await names("plano") == []  # field names are not searched, only their values
        listed = (await api.client.get("/contacts", params={"searchParam": "premium"},
                                       headers=auth(tenants.user))).json()["contacts"][0]
        assert listed["id"] == gold["id"] and {f["name"] for f in listed["extraInfo"]} == {"Plano", "CPF"}


# ─── tenancy ────────────────────────────────────────────────────────────────────────────


async def test_contacts_of_another_company_are_404(api: Api, server: Server, tenants: Tenants) -> None:
    with trio.fail_after(TIMEOUT):
        own = await create_contact(api, tenants.admin, name="Own", number="5511911112222")
        foreign = await create_contact(api, tenants.b_admin, name="Foreign", number="5511933334444",
                                       extraInfo=[{"name": "k", "value": "v"}])
        before = await snapshot(server)
        for token in (tenants.admin, tenants.user):
            for method, body in (("GET", None), ("PUT", {"name": "Stolen", "extraInfo": []}), ("DELETE", None)):
                response = await api.client.request(method, f"/contacts/{foreign['id']}", json=body,
                                                     headers=auth(token))
                assert response.status_code == 404, (method, response.text)
                assert response.json()["error"] == "ERR_NOT_FOUND"
            listed = (await api.client.get("/contacts", headers=auth(token))).json()
            assert [c["id"] for c in listed["contacts"]] == [own["id"]] and listed["count"] == 1
        refused = await upload(api, tenants.user, b"name,number\nX,5511900001111\n")
        assert refused.status_code == 403 and refused.json()["error"] == "ERR_NO_PERMISSION"
        assert (await api.client.get("/contacts")).status_code == 401
        assert (await api.client.get("/contacts/not-an-id", headers=auth(tenants.admin))).status_code == 404
        assert await snapshot(server) == before


# ─── bad input ──────────────────────────────────────────────────────────────────────────

GOOD = {"name": "Valid", "number": "5511988887777"}
BAD_CONTACTS = {
    "name missing": ({"number": "5511988887777"}, "name"),
    "name empty": ({**GOOD, "name": " "}, "name"),
    "name too long": ({**GOOD, "name": "x" * 256}, "name"),
    "name a list": ({**GOOD, "name": ["a"]}, "name"),
    "number missing": ({"name": "Valid"}, "number"),
    "number empty": ({**GOOD, "number": ""}, "number"),
    "number too short": ({**GOOD, "number": "1234567"}, "number"),
    "number too long": ({**GOOD, "number": "1234567890123456"}, "number"),
    "number with letters": ({**GOOD, "number": "55 11 CALL-NOW"}, "number"),
    "number a JID": ({**GOOD, "number": "5511988887777@s.whatsapp.net"}, "number"),
    "number fullwidth digits": ({**GOOD, "number": "\uff15\uff15\uff11\uff11\uff19\uff18\uff18\uff18\uff18"}, "number"),
    "number a boolean": ({**GOOD, "number": True}, "number"),
    "number a negative integer": ({**GOOD, "number": -5511988887777}, "number"),
    "email invalid": ({**GOOD, "email": "not-an-email"}, "email"),
    "email too long": ({**GOOD, "email": "a" * 250 + "@x.com"}, "email"),
    "extraInfo an object": ({**GOOD, "extraInfo": {"name": "a"}}, "extraInfo"),
    "extraInfo item a string": ({**GOOD, "extraInfo": ["a"]}, "extraInfo[0]"),
    "extraInfo name missing": ({**GOOD, "extraInfo": [{"value": "a"}]}, "extraInfo[0].name"),
    "extraInfo name too long": ({**GOOD, "extraInfo": [{"name": "n" * 256, "value": "a"}]}, "extraInfo[0].name"),
    "extraInfo value a number": ({**GOOD, "extraInfo": [{"name": "n", "value": 5}]}, "extraInfo[0].value"),
    "extraInfo value too long": ({**GOOD, "extraInfo": [{"name": "n", "value": "v" * 10_001}]},
                                 "extraInfo[0].value"),
    "extraInfo names repeat": ({**GOOD, "extraInfo": [{"name": "n", "value": "1"}, {"name": "n", "value": "2"}]},
                               "extraInfo[1].name"),
    "extraInfo too many": ({**GOOD, "extraInfo": [{"name": f"n{i}", "value": ""} for i in range(101)]},
                           "extraInfo"),
}


@pytest.mark.parametrize(("body", "field"), list(BAD_CONTACTS.values()), ids=list(BAD_CONTACTS))
async def test_contact_bad_input_is_400_naming_the_field(api: Api, server: Server, tenants: Tenants,
                                                         body: dict[str, Any], field: str) -> None:
    with trio.fail_after(TIMEOUT):
        existing = await create_contact(api, tenants.user, name="Existing", number="5511900009999",
                                        extraInfo=[{"name": "keep", "value": "me"}])
        before = await snapshot(server)
        created = await api.client.post("/contacts", json=body, headers=auth(tenants.user))
        assert created.status_code == 400, created.text
        assert created.json()["error"] == "ERR_VALIDATION" and created.json()["field"] == field
        if field.split("[")[0] in body:  # a partial update may leave out any field
            changed = await api.client.put(f"/contacts/{existing['id']}", json=body, headers=auth(tenants.user))
            assert changed.status_code == 400, changed.text
            assert changed.json()["field"] == field
        assert await snapshot(server) == before


# ─── import (the engine: storage/imports.py; lists and the 50,000-row acceptance: test_imports.py) ──


async def upload(api: Api, token: str, content: bytes, filename: str = "contacts.csv",
                 path: str = "/contacts/import", field: str = "file", read_timeout: float | None = None) -> Any:
    extra = {"timeout": read_timeout} if read_timeout else {}
    return await api.client.post(path, files={field: (filename, content, "text/csv")}, headers=auth(token), **extra)


async def test_import_keeps_good_rows_and_lists_bad_ones(api: Api, server: Server, tenants: Tenants) -> None:
    csv_text = (
        "Name,Number,Email\n"                          # row 1: the header
        "Ana,+55 (11) 98888-0001,ANA@x.test\n"         # 2 good
        "Bruno,,bruno@x.test\n"                        # 3 number missing
        "Carla,55 11 CALL,\n"                          # 4 not a number
        "\n"                                           # 5 blank: skipped
        '"Souza, Dani",5511988880004,\n'               # 6 good (quoted comma)
        "Eva,5511988880001,\n"                         # 7 repeats row 2: merged (its name wins, row 2's email stays)
        "Fábio,1234,\n"                                # 8 too short
        f"{'G' * 256},5511988880008,\n"                # 9 name too long
        "Hugo,5511988880009,not-an-email\n"            # 10 bad email
        ",5511988880010,\n"                            # 11 good, no name: the number is the name
    )
    with trio.fail_after(TIMEOUT):
        response = await upload(api, tenants.admin, csv_text.encode())
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["created"], body["merged"], body["rejected"], body["processed"]) == (3, 1, 5, 9)
        assert (body["updated"], body["errorCount"]) == (1, 5)  # the names of zapgate's first import
        assert [(e["row"], e["field"]) for e in body["errors"]] == [(3, "number"), (4, "number"), (8, "number"),
                                                                   (9, "name"), (10, "email")]
        assert body["errors"][1]["value"] == "55 11 CALL" and body["errors"][4]["value"] == "not-an-email"
        stored = server.sql("SELECT name, number, email, name_set_by_agent FROM contacts WHERE company_id = %s "
                            "ORDER BY number", (tenants.company_id,))
        assert stored == [("Eva", "5511988880001", "ana@x.test", True), ("Souza, Dani", "5511988880004", "", True),
                          ("5511988880010", "5511988880010", "", False)]


async def test_import_semicolons_bom_portuguese_header_and_upsert(api: Api, server: Server, tenants: Tenants) -> None:
    with trio.fail_after(TIMEOUT):
        agent_named = await create_contact(api, tenants.admin, name="Named By Agent", number="5511977770001",
                                           email="old@x.test")
        await trio.to_thread.run_sync(insert_contacts, server, tenants.company_id, [("push", "5511977770002")])
        csv_bytes = "\ufeffNOME;Número;E-mail\r\nImported One;5511977770001;new@x.test\r\n" \
                    "Imported Two;+55 11 97777-0002;\r\nBrand New;5511977770003;\r\n".encode()
        response = await upload(api, tenants.admin, csv_bytes)
        assert response.status_code == 200, response.text
        assert {k: response.json()[k] for k in ("created", "merged", "rejected", "errors")} == {
            "created": 1, "merged": 2, "rejected": 0, "errors": []}
        stored = dict((row[1], row) for row in server.sql(
            "SELECT name, number, email, name_set_by_agent FROM contacts WHERE company_id = %s", (tenants.company_id,)))
        assert stored["5511977770001"] == ("Named By Agent", "5511977770001", "new@x.test", True)  # agent's name kept
        assert stored["5511977770002"] == ("Imported Two", "5511977770002", "", True)  # a push name is replaced
        assert stored["5511977770003"] == ("Brand New", "5511977770003", "", True)
        again = await upload(api, tenants.admin, csv_bytes)  # idempotent: everything is a merge now
        assert again.json()["created"] == 0 and again.json()["merged"] == 3
        assert server.sql("SELECT count(*) FROM contacts WHERE company_id = %s", (tenants.company_id,)) == [(3,)]
        # Tab-separated, Windows-1252 (what spreadsheet programs save), alias "telefone", a national number.
        latin = "nome\ttelefone\nJoão\t(11) 97777-0004\n".encode("cp1252")
        assert (await upload(api, tenants.admin, latin)).json()["created"] == 1
        assert server.sql("SELECT name FROM contacts WHERE number = '5511977770004'") == [("João",)]
        # Company B's import never touches A's contacts with the same number.
        b_import = await upload(api, tenants.b_admin, b"name,number\nB,5511977770001\n")
        assert b_import.json()["created"] == 1
        assert (await api.client.get(f"/contacts/{agent_named['id']}", headers=auth(tenants.admin))).json()[
            "name"] == "Named By Agent"


async def test_import_custom_fields_and_ticketz_routes(api: Api, server: Server, tenants: Tenants) -> None:
    """Columns other than name, number and email are custom fields (an empty cell sets nothing), and so is
    ticketz's ExtraInfo JSON; ticketz's contacts page posts to /contacts/importCsv with the field `contacts`."""
    with trio.fail_after(TIMEOUT):
        existing = await create_contact(api, tenants.admin, name="Ana", number="5511988880001",
                                        extraInfo=[{"name": "Plano", "value": "Prata"}, {"name": "CPF", "value": "1"}])
        csv_text = ('Name,Number,Plano,Cidade,ExtraInfo\n'
                    'Ana,5511988880001,Ouro,,\n'
                    'Bia,5511988880002,,Recife,"[{""name"": ""Origem"", ""value"": ""site""}]"\n'
                    'Caio,5511988880003,,,not json\n')
        response = await upload(api, tenants.admin, csv_text.encode(), path="/contacts/importCsv", field="contacts")
        assert response.status_code == 200, response.text
        assert (response.json()["created"], response.json()["merged"], response.json()["rejected"]) == (1, 1, 1)
        assert response.json()["errors"][0]["field"] == "extraInfo"
        ana = (await api.client.get(f"/contacts/{existing['id']}", headers=auth(tenants.admin))).json()
        assert {f["name"]: f["value"] for f in ana["extraInfo"]} == {"Plano": "Ouro", "CPF": "1"}
        bia = server.sql("SELECT f.name, f.value FROM contact_custom_fields f JOIN contacts c ON c.id = f.contact_id "
                         "WHERE c.number = '5511988880002' ORDER BY f.name")
        assert bia == [("Cidade", "Recife"), ("Origem", "site")]
        upload_route = await upload(api, tenants.admin, b"number\n5511988880004\n", path="/contacts/upload")
        assert upload_route.status_code == 200 and upload_route.json()["created"] == 1
        assert (await upload(api, tenants.user, b"number\n5511988880005\n", path="/contacts/upload")
                ).status_code == 403
        phone = await api.client.post("/contacts/import", json={"whatsappId": 1}, headers=auth(tenants.admin))
        assert phone.status_code == 501 and phone.json()["error"] == "ERR_NOT_SUPPORTED"


BAD_FILES = {
    "png": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01",
    "zip": b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + bytes(range(256)),
    "empty": b"",
    "no number column": b"name,email\nAna,ana@x.test\n",
    "only blank lines": b"\n\n\n",
}


@pytest.mark.parametrize("content", list(BAD_FILES.values()), ids=list(BAD_FILES))
async def test_import_rejects_a_file_that_is_not_a_contacts_csv(api: Api, server: Server, tenants: Tenants,
                                                                content: bytes) -> None:
    with trio.fail_after(TIMEOUT):
        before = await snapshot(server)
        response = await upload(api, tenants.admin, content, filename="contacts.png")
        assert response.status_code == 400, response.text
        assert response.json()["error"] == "ERR_INVALID_FILE" and response.json()["message"]
        assert await snapshot(server) == before


async def test_import_needs_a_file_and_caps_the_rows(api: Api, server: Server, tenants: Tenants) -> None:
    with trio.fail_after(TIMEOUT):
        before = await snapshot(server)
        no_body = await api.client.post("/contacts/import", headers=auth(tenants.admin))
        assert no_body.status_code == 400 and no_body.json()["field"] == "file"
        other_field = await api.client.post("/contacts/import", files={"csv": ("c.csv", b"name,number\n")},
                                            headers=auth(tenants.admin))
        assert other_field.status_code == 400 and other_field.json()["field"] == "file"
        as_json = await api.client.post("/contacts/upload", json={"file": "name,number"}, headers=auth(tenants.admin))
        assert as_json.status_code == 415
        for content in (b"garbage", b"--x\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nname,number"):
            broken = await api.client.post("/contacts/import", content=content, headers={
                **auth(tenants.admin), "Content-Type": "multipart/form-data; boundary=x"})
            assert broken.status_code == 400 and broken.json()["error"].startswith("ERR_"), broken.text
        # more rows than allowed (100,000): refused whole, nothing written (rows without a number are cheap)
        too_many = "name,number\n5511900000000,5511900000000\n" + "x,y\n" * 100_000
        response = await upload(api, tenants.admin, too_many.encode())
        assert response.status_code == 413 and response.json()["error"] == "ERR_IMPORT_TOO_MANY_ROWS"
        assert await snapshot(server) == before


async def test_import_of_50_000_contacts(api: Api, server: Server, tenants: Tenants) -> None:
    # One request doing 50,000 rows' work: the client waits as long as the test's hang guard (the api fixture's
    # 10 s read timeout was hit when the machine was busy with other tests in parallel).
    with trio.fail_after(2 * TIMEOUT):
        rows = "".join(f"C{i},55119{i:08d}\n" for i in range(50_000))
        response = await upload(api, tenants.admin, ("name,number\n" + rows).encode(), read_timeout=2 * TIMEOUT)
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["created"], body["merged"], body["rejected"], body["errors"]) == (50_000, 0, 0, [])
        assert server.sql("SELECT count(*) FROM contacts WHERE company_id = %s", (tenants.company_id,)) == [(50_000,)]


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
async def test_export_imports_back_as_the_same_contacts(api: Api, server: Server, tenants: Tenants, fmt: str) -> None:
    contacts_sql = ("SELECT c.name, c.number, c.email, coalesce((SELECT json_agg(json_build_array(f.name, f.value) "
                    "ORDER BY f.name) FROM contact_custom_fields f WHERE f.contact_id = c.id), '[]') "
                    "FROM contacts c WHERE c.company_id = %s ORDER BY c.number")
    with trio.fail_after(TIMEOUT):
        fields = [{"name": "Plano", "value": "Ouro"}, {"name": "Nota", "value": "linha 1\nlinha 2"}]
        await create_contact(api, tenants.admin, name="Ana; \"A\"", number="5511988880001", email="ana@x.test",
                             extraInfo=fields)
        await create_contact(api, tenants.admin, name="=1+1", number="14155552671")
        await trio.to_thread.run_sync(partial(insert_contacts, server, tenants.company_id,
                                              [(f"Pessoa {i}", f"55119{i:08d}") for i in range(1_100)], by_agent=True))
        server.sql("INSERT INTO contacts (company_id, name, number, is_group) "
                   "VALUES (%s, 'Grupo', '120363@g.us', true)", (tenants.company_id,))
        exported = await api.client.get("/contacts/export", params={"format": fmt}, headers=auth(tenants.admin))
        assert exported.status_code == 200, exported.text
        assert exported.headers["content-disposition"] == f'attachment; filename="contacts.{fmt}"'
        before = [row for row in await trio.to_thread.run_sync(server.sql, contacts_sql, (tenants.company_id,))
                  if row[0] != "Grupo"]
        server.sql("DELETE FROM contacts WHERE company_id = %s", (tenants.company_id,))
        again = await upload(api, tenants.admin, exported.content, filename=f"contacts.{fmt}", path="/contacts/upload")
        assert again.status_code == 200, again.text
        assert (again.json()["created"], again.json()["merged"], again.json()["rejected"]) == (len(before), 0, 0)
        assert await trio.to_thread.run_sync(server.sql, contacts_sql, (tenants.company_id,)) == before
        assert (await api.client.get("/contacts/export", headers=auth(tenants.user))).status_code == 403


async def test_ticketz_export_csv(api: Api, server: Server, tenants: Tenants) -> None:
    """ticketz's contacts page downloads /contacts/exportCsv: Name, Number, Email, ExtraInfo, with `;` for the
    languages that write decimals with a comma."""
    with trio.fail_after(TIMEOUT):
        await create_contact(api, tenants.admin, name="Ana", number="5511988880001",
                             extraInfo=[{"name": "Plano", "value": "Ouro"}])
        pt = await api.client.get("/contacts/exportCsv", headers={**auth(tenants.admin),
                                                                   "Accept-Language": "pt-BR,pt;q=0.9"})
        assert pt.status_code == 200 and pt.headers["content-type"].startswith("text/csv")
        lines = pt.content.decode("utf-8-sig").splitlines()
        assert lines[0] == "Name;Number;Email;ExtraInfo"
        assert lines[1] == 'Ana;5511988880001;;"[{""name"": ""Plano"", ""value"": ""Ouro""}]"'
        en = await api.client.get("/contacts/exportCsv", headers={**auth(tenants.admin), "Accept-Language": "en-US"})
        assert en.content.decode("utf-8-sig").splitlines()[0] == "Name,Number,Email,ExtraInfo"
        forced = await api.client.get("/contacts/exportCsv", params={"delimiter": "semicolon"},
                                      headers=auth(tenants.admin))
        assert forced.content.decode("utf-8-sig").startswith("Name;Number")
        bad = await api.client.get("/contacts/export", params={"format": "ods"}, headers=auth(tenants.admin))
        assert bad.status_code == 400 and bad.json()["field"] == "format"


async def test_find_or_insert_a_contact_by_number(api: Api, server: Server) -> None:
    """ticketz's contact cards and mentions open a chat through POST /contacts/findOrInsert {name, number}."""
    token = await api.admin_token()
    made = await api.client.post("/contacts/findOrInsert", json={"name": "Card", "number": "+55 11 91234-0000"},
                                 headers=auth(token))
    assert made.status_code == 201, made.text
    assert made.json()["number"] == "5511912340000" and made.json()["name"] == "Card"
    again = await api.client.post("/contacts/findOrInsert", json={"name": "Other name", "number": "5511912340000"},
                                  headers=auth(token))
    assert again.status_code == 200 and again.json()["id"] == made.json()["id"]
    assert again.json()["name"] == "Card"  # found, not renamed
    bad = await api.client.post("/contacts/findOrInsert", json={"name": "X", "number": "12"}, headers=auth(token))
    assert bad.status_code == 400 and bad.json()["field"] == "number"
    other = await api.create_company(token, "Outra", "dona@outra.test")
    their = await api.login("dona@outra.test", "company-pass-1")
    theirs = await api.client.post("/contacts/findOrInsert", json={"number": "5511912340000"}, headers=auth(their))
    assert theirs.status_code == 201 and theirs.json()["id"] != made.json()["id"]  # each company its own
    assert theirs.json()["companyId"] == other["id"]
    assert server.sql("SELECT count(*) FROM contacts WHERE number = '5511912340000'") == [(2,)]


async def test_imported_custom_fields_are_message_variables(api: Api, server: Server) -> None:
    """A custom field set by an import is a `{{field}}` variable of the automated texts (the connection's
    greeting, rendered by actors/routing.py, and the farewell of a close): what the contact receives in the
    sandbox's outbox."""
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        imported = await upload(api, token, "Nome,Número,Plano,Data de vencimento\n"
                                            "Ana Souza,5511955550001,Ouro,10/05\n".encode(), path="/contacts/upload")
        assert imported.json()["created"] == 1, imported.text
        wid = await connected_sandbox(api, token)
        sales = await make_queue(api, token, "Vendas")
        await attach(api, token, wid, [sales, await make_queue(api, token, "Suporte")],
                     greetingMessage="Olá {{firstname}}, plano {{plano}}, vence {{Data de vencimento}}. {{nada}}")
        await inbound(api, token, wid, **{"from": "5511955550001", "name": "Push Name", "body": "oi"})
        bodies = await settle(api, token, wid, 1)
        assert bodies[0].startswith("Olá Ana, plano Ouro, vence 10/05. {{nada}}"), bodies
        # the farewell of an agent's close renders them too
        farewell = await api.client.put(f"/whatsapp/{wid}", json={"farewellMessage": "Tchau {{name}} ({{Plano}})"},
                                        headers=auth(token))
        assert farewell.status_code == 200
        ticket_id = server.sql("SELECT id FROM tickets")[0][0]
        closed = await api.client.put(f"/tickets/{ticket_id}", json={"status": "closed"}, headers=auth(token))
        assert closed.status_code == 200, closed.text
        bodies = await settle(api, token, wid, 2)
        assert bodies[1] == "Tchau Ana Souza (Ouro)"
