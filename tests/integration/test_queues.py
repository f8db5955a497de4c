"""`/queue`: CRUD, ordering, schedules, unique names, events, tenancy and bad input."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
import trio

from gateway.broker import Subscription
from tests.integration.conftest import Api, Server, auth

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


async def create_queue(api: Api, token: str, **fields: Any) -> dict[str, Any]:
    response = await api.client.post("/queue", json={"color": "#1E90FF", **fields}, headers=auth(token))
    assert response.status_code == 201, response.text
    return response.json()


def queue_events(subscription: Subscription) -> list[dict[str, Any]]:
    seen = []
    while (event := subscription.receive_nowait()) is not None:
        if event.name.endswith("-queue"):
            seen.append({"name": event.name, **event.payload})
    return seen


async def queues_table(server: Server) -> list[tuple[Any, ...]]:
    return await trio.to_thread.run_sync(server.sql, "SELECT * FROM queues ORDER BY id")


async def test_queue_crud_ordering_and_events(api: Api, server: Server, tenants: Tenants) -> None:
    with trio.fail_after(TIMEOUT), server.broker.subscribe(tenants.company_id) as events:
        sales = await create_queue(api, tenants.admin, name="Sales", color="#0A0", greetingMessage="Hi!",
                                   orderQueue=2)
        assert sales["name"] == "Sales" and sales["color"] == "#0A0" and sales["greetingMessage"] == "Hi!"
        assert sales["outOfHoursMessage"] == "" and sales["orderQueue"] == 2 and sales["schedules"] == []
        assert sales["companyId"] == tenants.company_id and sales["createdAt"] and sales["updatedAt"]
        support = await create_queue(api, tenants.admin, name="support", orderQueue=1)
        billing = await create_queue(api, tenants.admin, name="Billing")  # no order: last
        archive = await create_queue(api, tenants.admin, name="Archive", orderQueue="")  # "" from a form: unset
        assert archive["orderQueue"] is None

        listed = await api.client.get("/queue", headers=auth(tenants.user))  # any user reads them
        assert listed.status_code == 200
        assert [q["name"] for q in listed.json()] == ["support", "Sales", "Archive", "Billing"]
        shown = await api.client.get(f"/queue/{sales['id']}", headers=auth(tenants.user))
        assert shown.status_code == 200 and shown.json() == sales

        updated = await api.client.put(f"/queue/{sales['id']}", json={"color": "#abcdef", "orderQueue": None},
                                       headers=auth(tenants.admin))
        assert updated.status_code == 200, updated.text
        body = updated.json()
        assert body["color"] == "#abcdef" and body["orderQueue"] is None
        assert body["name"] == "Sales" and body["greetingMessage"] == "Hi!"  # partial: the rest is kept

        # A ticket of the queue survives its deletion, without a queue; user links go.
        agent = (await api.client.get("/users/list", headers=auth(tenants.admin))).json()
        agent_id = next(u["id"] for u in agent if u["name"] == "agent")
        await api.client.put(f"/users/{agent_id}", json={"queueIds": [billing["id"]]}, headers=auth(tenants.admin))
        ticket_id = await trio.to_thread.run_sync(_ticket_in_queue, server, tenants.company_id, billing["id"])
        deleted = await api.client.delete(f"/queue/{billing['id']}", headers=auth(tenants.admin))
        assert deleted.status_code == 200, deleted.text
        assert server.sql("SELECT queue_id FROM tickets WHERE id = %s", (ticket_id,)) == [(None,)]
        assert server.sql("SELECT count(*) FROM user_queues WHERE queue_id = %s", (billing["id"],)) == [(0,)]
        gone = await api.client.get(f"/queue/{billing['id']}", headers=auth(tenants.admin))
        assert gone.status_code == 404 and gone.json()["error"] == "ERR_NOT_FOUND"

        seen = queue_events(events)
        name = f"company-{tenants.company_id}-queue"
        assert all(event["name"] == name for event in seen)
        assert [(e["action"], e.get("queue", {}).get("id", e.get("queueId"))) for e in seen] == [
            ("update", sales["id"]), ("update", support["id"]), ("update", billing["id"]), ("update", archive["id"]),
            ("update", sales["id"]), ("delete", billing["id"]),
        ]
        assert seen[4]["queue"]["color"] == "#abcdef"


def _ticket_in_queue(server: Server, company_id: int, queue_id: int) -> int:
    contact = server.sql("INSERT INTO contacts (company_id, name, number) VALUES (%s, 'Ana', '5511988880000') "
                         "RETURNING id", (company_id,))[0][0]
    whatsapp = server.sql("INSERT INTO whatsapps (company_id, name) VALUES (%s, 'Main') RETURNING id",
                          (company_id,))[0][0]
    return server.sql("INSERT INTO tickets (company_id, contact_id, whatsapp_id, queue_id) VALUES (%s, %s, %s, %s) "
                      "RETURNING id", (company_id, contact, whatsapp, queue_id))[0][0]


async def test_queue_names_are_unique_per_company_ignoring_case(api: Api, server: Server, tenants: Tenants) -> None:
    with trio.fail_after(TIMEOUT):
        sales = await create_queue(api, tenants.admin, name="Sales")
        other = await create_queue(api, tenants.admin, name="Support")
        before = await queues_table(server)
        again = await api.client.post("/queue", json={"name": "SALES", "color": "#000"}, headers=auth(tenants.admin))
        assert again.status_code == 409 and again.json()["error"] == "ERR_QUEUE_NAME_ALREADY_EXISTS"
        renamed = await api.client.put(f"/queue/{other['id']}", json={"name": "sales"}, headers=auth(tenants.admin))
        assert renamed.status_code == 409 and renamed.json()["error"] == "ERR_QUEUE_NAME_ALREADY_EXISTS"
        assert await queues_table(server) == before
        same = await api.client.put(f"/queue/{sales['id']}", json={"name": "SALES"}, headers=auth(tenants.admin))
        assert same.status_code == 200 and same.json()["name"] == "SALES"  # renaming itself is fine
        # Another company may use the name.
        await create_queue(api, tenants.b_admin, name="Sales")


async def test_queue_schedules_are_validated_and_stored(api: Api, server: Server, tenants: Tenants) -> None:
    schedules = [
        {"weekday": 1, "startTime": "08:00", "endTime": "18:00"},
        # The shape of the Whaticket-family frontends: a day name, weekdayEn, empty times when closed.
        {"weekday": "Domingo", "weekdayEn": "sunday", "startTime": "", "endTime": "", "extra": "dropped"},
        {"weekday": "Sábado", "weekdayEn": "Saturday", "startTimeA": "08:00", "endTimeA": "12:00",
         "startTimeB": "13:00", "endTimeB": "17:30"},
    ]
    with trio.fail_after(TIMEOUT):
        queue = await create_queue(api, tenants.admin, name="Hours", schedules=schedules)
        expected = [
            {"weekday": 1, "startTime": "08:00", "endTime": "18:00"},
            {"weekday": "Domingo", "weekdayEn": "sunday", "startTime": "", "endTime": ""},
            {"weekday": "Sábado", "weekdayEn": "saturday", "startTimeA": "08:00", "endTimeA": "12:00",
             "startTimeB": "13:00", "endTimeB": "17:30"},
        ]
        assert queue["schedules"] == expected
        stored = await trio.to_thread.run_sync(server.sql, "SELECT schedules FROM queues WHERE id = %s", (queue["id"],))
        assert stored == [(expected,)]
        kept = await api.client.put(f"/queue/{queue['id']}", json={"name": "Hours 2"}, headers=auth(tenants.admin))
        assert kept.json()["schedules"] == expected
        cleared = await api.client.put(f"/queue/{queue['id']}", json={"schedules": []}, headers=auth(tenants.admin))
        assert cleared.json()["schedules"] == []


async def test_queue_tenancy_and_roles(api: Api, server: Server, tenants: Tenants) -> None:
    with trio.fail_after(TIMEOUT):
        own = await create_queue(api, tenants.admin, name="Own")
        foreign = await create_queue(api, tenants.b_admin, name="Foreign")
        listed = (await api.client.get("/queue", headers=auth(tenants.admin))).json()
        assert [q["id"] for q in listed] == [own["id"]]
        b_listed = (await api.client.get("/queue", headers=auth(tenants.b_admin))).json()
        assert [q["id"] for q in b_listed] == [foreign["id"]]

        before = await queues_table(server)
        for token in (tenants.admin, tenants.user):  # another tenant's id: 404 whatever the role
            for method, body in (("GET", None), ("PUT", {"name": "Stolen"}), ("DELETE", None)):
                response = await api.client.request(method, f"/queue/{foreign['id']}", json=body, headers=auth(token))
                assert response.status_code == 404, (method, response.text)
                assert response.json()["error"] == "ERR_NOT_FOUND"
        for method, path, body in (("POST", "/queue", {"name": "Mine", "color": "#fff"}),
                                   ("PUT", f"/queue/{own['id']}", {"name": "Mine"}),
                                   ("DELETE", f"/queue/{own['id']}", None)):
            response = await api.client.request(method, path, json=body, headers=auth(tenants.user))
            assert response.status_code == 403, (method, path, response.text)
            assert response.json()["error"] == "ERR_NO_PERMISSION"
        unauthenticated = await api.client.get("/queue")
        assert unauthenticated.status_code == 401
        not_an_id = await api.client.get("/queue/abc", headers=auth(tenants.admin))
        assert not_an_id.status_code == 404
        assert await queues_table(server) == before


GOOD = {"name": "Valid", "color": "#123456"}
BAD_QUEUES = {
    "name missing": ({"color": "#123"}, "name"),
    "name empty": ({**GOOD, "name": "  "}, "name"),
    "name too long": ({**GOOD, "name": "x" * 256}, "name"),
    "name a number": ({**GOOD, "name": 5}, "name"),
    "color missing": ({"name": "Valid"}, "color"),
    "color a word": ({**GOOD, "color": "red"}, "color"),
    "color 5 digits": ({**GOOD, "color": "#12345"}, "color"),
    "color not hex": ({**GOOD, "color": "#GGGGGG"}, "color"),
    "color without #": ({**GOOD, "color": "123456"}, "color"),
    "greeting a number": ({**GOOD, "greetingMessage": 1}, "greetingMessage"),
    "orderQueue negative": ({**GOOD, "orderQueue": -1}, "orderQueue"),
    "orderQueue a word": ({**GOOD, "orderQueue": "first"}, "orderQueue"),
    "schedules a string": ({**GOOD, "schedules": "mon 8-18"}, "schedules"),
    "schedules item a number": ({**GOOD, "schedules": [1]}, "schedules[0]"),
    "weekday out of range": ({**GOOD, "schedules": [{"weekday": 7, "startTime": "08:00", "endTime": "09:00"}]},
                             "schedules[0].weekday"),
    "weekday missing": ({**GOOD, "schedules": [{"startTime": "08:00", "endTime": "09:00"}]}, "schedules[0].weekday"),
    "weekdayEn unknown": ({**GOOD, "schedules": [{"weekday": "x", "weekdayEn": "funday", "startTime": "",
                                                  "endTime": ""}]}, "schedules[0].weekdayEn"),
    "hour 24": ({**GOOD, "schedules": [{"weekday": 1, "startTime": "24:00", "endTime": "09:00"}]},
                "schedules[0].startTime"),
    "time without minutes": ({**GOOD, "schedules": [{"weekday": 1, "startTime": "8", "endTime": "09:00"}]},
                             "schedules[0].startTime"),
    "time a number": ({**GOOD, "schedules": [{"weekday": 1, "startTime": 800, "endTime": "09:00"}]},
                      "schedules[0].startTime"),
    "end before start": ({**GOOD, "schedules": [{"weekday": 1, "startTime": "18:00", "endTime": "08:00"}]},
                         "schedules[0].endTime"),
    "end missing": ({**GOOD, "schedules": [{"weekday": 1, "startTime": "08:00"}]}, "schedules[0].endTime"),
    "no times": ({**GOOD, "schedules": [{"weekday": 1}]}, "schedules[0].startTime"),
    "shift B half set": ({**GOOD, "schedules": [{"weekday": 1, "startTimeA": "08:00", "endTimeA": "12:00",
                                                 "startTimeB": "", "endTimeB": "18:00"}]},
                         "schedules[0].startTimeB"),
}


@pytest.mark.parametrize(("body", "field"), list(BAD_QUEUES.values()), ids=list(BAD_QUEUES))
async def test_queue_bad_input_is_400_naming_the_field(api: Api, server: Server, tenants: Tenants,
                                                       body: dict[str, Any], field: str) -> None:
    with trio.fail_after(TIMEOUT):
        existing = await create_queue(api, tenants.admin, name="Existing")
        before = await queues_table(server)
        created = await api.client.post("/queue", json=body, headers=auth(tenants.admin))
        assert created.status_code == 400, created.text
        assert created.json()["field"] == field and created.json()["error"].startswith("ERR_")
        if field.split("[")[0].split(".")[0] in body:  # a partial update may leave out any field
            changed = await api.client.put(f"/queue/{existing['id']}", json=body, headers=auth(tenants.admin))
            assert changed.status_code == 400, changed.text
            assert changed.json()["field"] == field
        assert await queues_table(server) == before


async def test_the_ticketz_queue_form_with_schedules_off(api: Api) -> None:
    """ticketz sends `schedules: {}` when the company's schedules are off: no schedules, not a 400."""
    token = await api.admin_token()
    created = await api.client.post("/queue/", json={"name": "Form", "color": "#2B7A0B", "greetingMessage": "",
                                                      "schedules": {}}, headers=auth(token))
    assert created.status_code == 201, created.text
    assert created.json()["schedules"] == []
    bad = await api.client.post("/queue", json={"name": "Bad", "color": "#2B7A0B", "schedules": {"x": 1}},
                                headers=auth(token))
    # any other object is ticketz's {timezone, weeklyRules, overrides}, checked as such
    assert bad.status_code == 400 and bad.json()["field"] == "schedules.timezone"
