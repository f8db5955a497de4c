"""What routing reads, as the API takes and shows it (issue 12): a queue's greeting file, auto-assignment and
ticketz's business-hours object; a company's schedules; a connection's routing texts and limits; an agent's
`maxTickets`; the routing settings; the ratings list and a ticket's rating."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from tests.integration.conftest import Api, Server, auth

TIMEOUT = 30
OPEN_HOURS = {
    "timezone": "America/Sao_Paulo",
    "weeklyRules": [{"days": ["mon", "tue", "wed", "thu", "fri"], "hours": [{"from": "09:00", "to": "12:00"},
                                                                           {"from": "13:00", "to": "18:00"}]},
                    {"days": ["sat"], "hours": []}],
    "overrides": [{"date": "2026-12-25", "repeat": "yearly", "closed": True, "label": "Natal"},
                  {"date": "2026-12-24", "closed": False, "hours": [{"from": "09:00", "to": "12:00"}], "label": ""}],
}
STORED_HOURS = {
    "timezone": "America/Sao_Paulo", "weeklyRules": OPEN_HOURS["weeklyRules"],
    "overrides": [{"date": "2026-12-25", "repeat": "yearly", "closed": True, "label": "Natal"},
                  {"date": "2026-12-24", "closed": False, "hours": [{"from": "09:00", "to": "12:00"}]}],
}


@attrs.frozen
class World:
    admin: str  # the super admin, of company Default
    company_id: int
    user: str  # a plain user of Default
    user_id: int
    b_admin: str  # admin of company Beta
    b_company_id: int


@pytest.fixture
async def world(api: Api) -> World:
    admin = await api.admin_token()
    me = (await api.client.get("/auth/me", headers=auth(admin))).json()
    agent = await api.create_user(admin, "agent@default.test", "agent-pass-1")
    beta = await api.create_company(admin, "Beta", "admin@beta.test", "beta-pass-1")
    return World(admin=admin, company_id=me["companyId"], user=await api.login("agent@default.test", "agent-pass-1"),
                 user_id=agent["id"], b_admin=await api.login("admin@beta.test", "beta-pass-1"),
                 b_company_id=beta["id"])


async def create_queue(api: Api, token: str, **fields: Any) -> dict[str, Any]:
    response = await api.client.post("/queue", json={"color": "#1E90FF", **fields}, headers=auth(token))
    assert response.status_code == 201, response.text
    return response.json()


def stored_file(server: Server, media_path: str) -> Path:
    return server.config.data_dir / "media" / media_path.removeprefix("/media/")


async def table(server: Server, name: str) -> list[tuple[Any, ...]]:
    return await trio.to_thread.run_sync(server.sql, f"SELECT * FROM {name} ORDER BY id")


# What a connection's running session writes on its own (storage/queries.sql whatsapp_set_status, _set_device):
# a sandbox session's QR code changes every SANDBOX_QR_INTERVAL, whatever the API is asked.
SESSION_COLUMNS = ["status", "qrcode", "pairing_code", "retries", "number", "last_disconnect_at",
                   "last_disconnect_reason", "session_data", "updated_at"]


async def connection_settings(server: Server) -> list[tuple[Any, ...]]:
    """Every whatsapps row without the columns its session writes: what a refused API call must leave alone."""
    return await trio.to_thread.run_sync(server.sql, "SELECT to_jsonb(w) - %s::text[] FROM whatsapps w ORDER BY id",
                                         (SESSION_COLUMNS,))


# ─── queues ─────────────────────────────────────────────────────────────────────────────

async def test_queue_greeting_file_auto_assign_and_open_hours(api: Api, server: Server, world: World) -> None:
    with trio.fail_after(TIMEOUT), server.broker.subscribe(world.company_id) as events:
        queue = await create_queue(api, world.admin, name="Sales", autoAssign="round_robin", schedules=OPEN_HOURS)
        assert queue["autoAssign"] == "round_robin" and queue["schedules"] == STORED_HOURS
        assert queue["mediaPath"] is None and queue["mediaName"] is None and queue["options"] == []
        plain = await create_queue(api, world.admin, name="Plain")
        assert plain["autoAssign"] == "off" and plain["schedules"] == []
        changed = await api.client.put(f"/queue/{queue['id']}", json={"autoAssign": "least_busy"},
                                       headers=auth(world.admin))
        assert changed.json()["autoAssign"] == "least_busy" and changed.json()["schedules"] == STORED_HOURS

        url = f"/queue/{queue['id']}/media-upload"
        uploaded = await api.client.post(url, files={"file": ("boas vindas.ogg", b"OggS voice", "audio/ogg")},
                                         headers=auth(world.admin))
        assert uploaded.status_code == 200, uploaded.text
        shown = (await api.client.get(f"/queue/{queue['id']}", headers=auth(world.user))).json()
        assert shown["mediaName"] == "boas vindas.ogg" and shown["mediaPath"] == uploaded.json()["mediaPath"]
        served = await api.client.get(shown["mediaPath"])
        assert served.status_code == 200 and served.content == b"OggS voice"
        path = stored_file(server, shown["mediaPath"])
        # ticketz's form saves the whole queue back (with its media and options): nothing is lost
        saved = await api.client.put(f"/queue/{queue['id']}", json={**shown, "schedules": shown["schedules"]},
                                     headers=auth(world.admin))
        assert saved.status_code == 200 and saved.json()["mediaPath"] == shown["mediaPath"]
        removed = await api.client.delete(url, headers=auth(world.admin))
        assert removed.status_code == 200 and not await trio.to_thread.run_sync(path.exists)
        after = (await api.client.get(f"/queue/{queue['id']}", headers=auth(world.admin))).json()
        assert after["mediaPath"] is None and after["mediaName"] is None
        # ticketz's form uploads a new queue's file to /queue/undefined/media-upload: a 404, nothing kept
        lost = await api.client.post("/queue/undefined/media-upload", files={"file": ("a.png", b"x", "image/png")},
                                     headers=auth(world.admin))
        assert lost.status_code == 404

        refused = await api.client.post(url, files={"file": ("a.png", b"x", "image/png")}, headers=auth(world.user))
        assert refused.status_code == 403
        b_queue = await create_queue(api, world.b_admin, name="Theirs")
        for method in ("POST", "DELETE"):
            files = {"file": ("a.png", b"x", "image/png")} if method == "POST" else None
            foreign = await api.client.request(method, f"/queue/{b_queue['id']}/media-upload", files=files,
                                               headers=auth(world.admin))
            assert foreign.status_code == 404, foreign.text
        no_file = await api.client.post(url, files={"other": ("a.png", b"x", "image/png")}, headers=auth(world.admin))
        assert no_file.status_code == 406

        updates = []
        while (event := events.receive_nowait()) is not None:
            if event.name == f"company-{world.company_id}-queue" and event.payload["action"] == "update":
                updates.append(event.payload["queue"])
        assert [(q["id"], q["mediaName"]) for q in updates[-3:]] == [
            (queue["id"], "boas vindas.ogg"), (queue["id"], "boas vindas.ogg"), (queue["id"], None)]


BAD_HOURS = {
    "unknown zone": ({**OPEN_HOURS, "timezone": "Mars/Olympus"}, "schedules.timezone"),
    "the server's zone": ({**OPEN_HOURS, "timezone": "localtime"}, "schedules.timezone"),
    "no zone": ({"weeklyRules": [], "overrides": []}, "schedules.timezone"),
    "rules not a list": ({**OPEN_HOURS, "weeklyRules": {"mon": "9-18"}}, "schedules.weeklyRules"),
    "unknown day": ({**OPEN_HOURS, "weeklyRules": [{"days": ["monday"], "hours": []}]},
                    "schedules.weeklyRules[0].days[0]"),
    "day twice": ({**OPEN_HOURS, "weeklyRules": [{"days": ["mon", "mon"], "hours": []}]},
                  "schedules.weeklyRules[0].days"),
    "time without zero": ({**OPEN_HOURS, "weeklyRules": [{"days": ["mon"],
                                                          "hours": [{"from": "9:00", "to": "18:00"}]}]},
                          "schedules.weeklyRules[0].hours[0].from"),
    "to before from": ({**OPEN_HOURS, "weeklyRules": [{"days": ["mon"], "hours": [{"from": "18:00", "to": "09:00"}]}]},
                       "schedules.weeklyRules[0].hours[0].to"),
    "overlapping hours": ({**OPEN_HOURS, "weeklyRules": [{"days": ["mon"], "hours": [
        {"from": "09:00", "to": "13:00"}, {"from": "12:00", "to": "18:00"}]}]}, "schedules.weeklyRules[0].hours"),
    "no such date": ({**OPEN_HOURS, "overrides": [{"date": "2026-02-30", "closed": True}]},
                     "schedules.overrides[0].date"),
    "date as words": ({**OPEN_HOURS, "overrides": [{"date": "Christmas", "closed": True}]},
                      "schedules.overrides[0].date"),
    "repeat weekly": ({**OPEN_HOURS, "overrides": [{"date": "2026-12-25", "repeat": "weekly"}]},
                      "schedules.overrides[0].repeat"),
    "closed a word": ({**OPEN_HOURS, "overrides": [{"date": "2026-12-25", "closed": "yes"}]},
                      "schedules.overrides[0].closed"),
    "same day twice": ({**OPEN_HOURS, "overrides": [{"date": "2025-12-25", "repeat": "yearly", "closed": True},
                                                    {"date": "2026-12-25", "repeat": "yearly", "closed": True}]},
                       "schedules.overrides[1].date"),
    "label too long": ({**OPEN_HOURS, "overrides": [{"date": "2026-12-25", "closed": True, "label": "x" * 256}]},
                       "schedules.overrides[0].label"),
    "a number": (5, "schedules"),
}


@pytest.mark.parametrize(("schedules", "field"), list(BAD_HOURS.values()), ids=list(BAD_HOURS))
async def test_bad_open_hours_are_400_for_queues_and_companies(api: Api, server: Server, world: World,
                                                               schedules: Any, field: str) -> None:
    with trio.fail_after(TIMEOUT):
        queue = await create_queue(api, world.admin, name="Hours", schedules=OPEN_HOURS)
        before = (await table(server, "queues"), await table(server, "companies"))
        for method, url, body in (("POST", "/queue", {"name": "New", "color": "#000", "schedules": schedules}),
                                  ("PUT", f"/queue/{queue['id']}", {"schedules": schedules}),
                                  ("PUT", f"/companies/{world.company_id}/schedules", {"schedules": schedules})):
            response = await api.client.request(method, url, json=body, headers=auth(world.admin))
            assert response.status_code == 400, (url, response.text)
            assert response.json()["field"] == field and response.json()["error"] == "ERR_VALIDATION"
        assert (await table(server, "queues"), await table(server, "companies")) == before


# ─── companies ──────────────────────────────────────────────────────────────────────────

async def test_company_schedules_in_every_shape(api: Api, server: Server, world: World) -> None:
    with trio.fail_after(TIMEOUT):
        b_token = world.b_admin
        url = f"/companies/{world.b_company_id}/schedules"
        saved = await api.client.put(url, json={"id": world.b_company_id, "schedules": OPEN_HOURS},
                                     headers=auth(b_token))  # its own admin, as ticketz's settings page sends it
        assert saved.status_code == 200, saved.text
        assert saved.json()["id"] == world.b_company_id and saved.json()["schedules"] == STORED_HOURS
        shown = await api.client.get(f"/companies/{world.b_company_id}", headers=auth(b_token))
        assert shown.json()["schedules"] == STORED_HOURS  # where ticketz's Schedules tab reads them
        two_shifts = [{"weekday": "Segunda-feira", "weekdayEn": "monday", "startTimeA": "08:00", "endTimeA": "12:00",
                       "startTimeB": "13:00", "endTimeB": "18:00"}]
        listed = await api.client.put(url, json={"schedules": two_shifts}, headers=auth(b_token))
        assert listed.status_code == 200 and listed.json()["schedules"] == two_shifts
        by_super = await api.client.put(url, json={"schedules": []}, headers=auth(world.admin))
        assert by_super.status_code == 200 and by_super.json()["schedules"] == []
        stored = await trio.to_thread.run_sync(server.sql, "SELECT schedules FROM companies WHERE id = %s",
                                               (world.b_company_id,))
        assert stored == [([],)]

        before = await table(server, "companies")
        other = await api.client.put(f"/companies/{world.company_id}/schedules", json={"schedules": []},
                                     headers=auth(b_token))  # another company's
        assert other.status_code == 403 and other.json()["error"] == "ERR_NO_PERMISSION"
        plain = await api.client.put(f"/companies/{world.company_id}/schedules", json={"schedules": []},
                                     headers=auth(world.user))  # their own company, not an admin
        assert plain.status_code == 403
        missing = await api.client.put(url, json={}, headers=auth(b_token))
        assert missing.status_code == 400 and missing.json()["field"] == "schedules"
        nobody = await api.client.put("/companies/987654/schedules", json={"schedules": []}, headers=auth(world.admin))
        assert nobody.status_code == 404
        assert await table(server, "companies") == before


# ─── connections and agents ─────────────────────────────────────────────────────────────

async def test_connection_routing_fields(api: Api, server: Server, world: World) -> None:
    with trio.fail_after(TIMEOUT):
        created = await api.client.post("/whatsapp", json={
            "name": "Main", "channel": "sandbox", "ratingMessage": "Rate us", "transferMessage": "Moving you",
            "expiresTicket": "30", "expiresInactiveMessage": "Closed for silence", "maxUseBotQueues": 2,
            "timeUseBotQueues": "", "schedules": OPEN_HOURS}, headers=auth(world.admin))
        assert created.status_code == 201, created.text
        body = created.json()
        assert (body["ratingMessage"], body["transferMessage"], body["expiresTicket"], body["expiresInactiveMessage"],
                body["maxUseBotQueues"], body["timeUseBotQueues"]) == ("Rate us", "Moving you", 30,
                                                                       "Closed for silence", 2, 0)
        assert body["schedules"] == STORED_HOURS  # its hours, for scheduleType "connection"
        defaults = await api.client.post("/whatsapp", json={"name": "Second", "channel": "sandbox"},
                                         headers=auth(world.admin))
        assert (defaults.json()["expiresTicket"], defaults.json()["maxUseBotQueues"],
                defaults.json()["ratingMessage"], defaults.json()["schedules"]) == (0, 3, "", [])
        # the family's form sends the whole connection back
        echoed = {**body, "maxUseBotQueues": "5", "expiresTicket": 0, "ratingMessage": "Rate 1 to 5"}
        updated = await api.client.put(f"/whatsapp/{body['id']}", json=echoed, headers=auth(world.admin))
        assert updated.status_code == 200, updated.text
        assert (updated.json()["maxUseBotQueues"], updated.json()["expiresTicket"],
                updated.json()["ratingMessage"], updated.json()["transferMessage"]) == (5, 0, "Rate 1 to 5",
                                                                                      "Moving you")
        stored = server.sql("SELECT rating_message, max_use_bot_queues, expires_ticket, schedules FROM whatsapps "
                            "WHERE id = %s", (body["id"],))
        assert stored == [("Rate 1 to 5", 5, 0, STORED_HOURS)]
        two_shifts = [{"weekday": 1, "startTimeA": "08:00", "endTimeA": "12:00", "startTimeB": "", "endTimeB": ""}]
        shifts = await api.client.put(f"/whatsapp/{body['id']}", json={"schedules": two_shifts},
                                      headers=auth(world.admin))
        assert shifts.status_code == 200 and shifts.json()["schedules"] == two_shifts
        kept = await api.client.put(f"/whatsapp/{body['id']}", json={"name": "Main 2"}, headers=auth(world.admin))
        assert kept.json()["schedules"] == two_shifts

        before = await connection_settings(server)
        for field, value in (("maxUseBotQueues", 101), ("maxUseBotQueues", -1), ("expiresTicket", "soon"),
                             ("timeUseBotQueues", 525_601), ("ratingMessage", 5), ("expiresInactiveMessage", ["x"]),
                             ("schedules", "always"), ("schedules.timezone", {"timezone": "Nowhere/Never"})):
            key = field.split(".")[0]
            bad = await api.client.put(f"/whatsapp/{body['id']}", json={key: value}, headers=auth(world.admin))
            assert bad.status_code == 400 and bad.json()["field"] == field, (field, value, bad.text)
        refused = await api.client.put(f"/whatsapp/{body['id']}", json={"ratingMessage": "x"}, headers=auth(world.user))
        assert refused.status_code == 403
        assert await connection_settings(server) == before


async def test_an_agents_max_tickets(api: Api, server: Server, world: World) -> None:
    with trio.fail_after(TIMEOUT):
        assert (await api.client.get(f"/users/{world.user_id}", headers=auth(world.admin))).json()["maxTickets"] is None
        capped = await api.client.put(f"/users/{world.user_id}", json={"maxTickets": 4}, headers=auth(world.admin))
        assert capped.status_code == 200 and capped.json()["maxTickets"] == 4
        listed = (await api.client.get("/users", headers=auth(world.admin))).json()["users"]
        assert {u["id"]: u["maxTickets"] for u in listed}[world.user_id] == 4
        created = await api.create_user(world.admin, "capped@default.test", maxTickets=2)
        assert created["maxTickets"] == 2
        # the user's own profile form sends the field back unchanged: fine; a change: refused
        me = (await api.client.get(f"/users/{world.user_id}", headers=auth(world.user))).json()
        same = await api.client.put(f"/users/{world.user_id}", json={**me, "name": "Agent"}, headers=auth(world.user))
        assert same.status_code == 200, same.text
        raised = await api.client.put(f"/users/{world.user_id}", json={"maxTickets": 40}, headers=auth(world.user))
        assert raised.status_code == 403 and raised.json()["error"] == "ERR_NO_PERMISSION"
        for value in (-1, 100_001, "many", 2.5):
            bad = await api.client.put(f"/users/{world.user_id}", json={"maxTickets": value}, headers=auth(world.admin))
            assert bad.status_code == 400 and bad.json()["field"] == "maxTickets", (value, bad.text)
        unlimited = await api.client.put(f"/users/{world.user_id}", json={"maxTickets": ""}, headers=auth(world.admin))
        assert unlimited.status_code == 200 and unlimited.json()["maxTickets"] is None
        assert server.sql("SELECT max_tickets FROM users WHERE id = %s", (world.user_id,)) == [(None,)]


async def test_routing_settings_and_their_defaults(api: Api, world: World) -> None:
    with trio.fail_after(TIMEOUT):
        settings = {s["key"]: s["value"] for s in (await api.client.get("/settings", headers=auth(world.user))).json()}
        keys = ("scheduleType", "timezone", "userRating", "ratingsTimeout", "chatbotAutoExit", "showNumericIcons",
                "tempoRoteador", "outOfHoursAction", "sendGreetingAccepted", "ticketAcceptedMessage")
        assert {key: settings[key] for key in keys} == {
            "scheduleType": "disabled", "timezone": "America/Sao_Paulo", "userRating": "disabled",
            "ratingsTimeout": "5", "chatbotAutoExit": "disabled", "showNumericIcons": "disabled", "tempoRoteador": "0",
            "outOfHoursAction": "pending", "sendGreetingAccepted": "disabled", "ticketAcceptedMessage": ""}
        for key, value in (("scheduleType", "connection"), ("timezone", "Europe/Lisbon"), ("tempoRoteador", 15)):
            changed = await api.client.put(f"/settings/{key}", json={"value": value}, headers=auth(world.admin))
            assert changed.status_code == 200 and changed.json()["value"] == str(value), changed.text
        for key, value in (("timezone", "Mars/Olympus"), ("timezone", "localtime"), ("timezone", ""),
                           ("scheduleType", "contact"), ("tempoRoteador", "soon")):
            bad = await api.client.put(f"/settings/{key}", json={"value": value}, headers=auth(world.admin))
            assert bad.status_code == 400 and bad.json()["field"] == "value", (key, value, bad.text)
        assert (await api.client.get("/settings/timezone", headers=auth(world.user))).json() == "Europe/Lisbon"


# ─── ratings ────────────────────────────────────────────────────────────────────────────

def _rated_tickets(server: Server, company_id: int, user_id: int, queue_id: int) -> list[int]:
    """Three closed tickets and their ratings: 5 (the agent, the queue, on 2026-03-10 at 02:30 UTC, which is
    still 03-09 in São Paulo), 2 (nobody, no queue, 2026-03-11 15:00 UTC) and, on the first ticket, an older 1."""
    contact = server.sql("INSERT INTO contacts (company_id, name, number) VALUES (%s, 'Ana', '5511988880000') "
                         "RETURNING id", (company_id,))[0][0]
    whatsapp = server.sql("INSERT INTO whatsapps (company_id, name) VALUES (%s, 'Main') RETURNING id",
                          (company_id,))[0][0]
    tickets = [server.sql("INSERT INTO tickets (company_id, contact_id, whatsapp_id, queue_id, user_id, status) "
                          "VALUES (%s, %s, %s, %s, %s, 'closed') RETURNING id",
                          (company_id, contact, whatsapp, queue, user))[0][0]
               for queue, user in ((queue_id, user_id), (None, None))]
    for ticket, user, rate, at in ((tickets[0], user_id, 1, "2026-03-01 12:00+00"),
                                   (tickets[0], user_id, 5, "2026-03-10 02:30+00"),
                                   (tickets[1], None, 2, "2026-03-11 15:00+00")):
        server.sql("INSERT INTO user_ratings (company_id, ticket_id, user_id, rate, created_at, updated_at) "
                   "VALUES (%s, %s, %s, %s, %s, %s)", (company_id, ticket, user, rate, at, at))
    return tickets


async def test_ratings_list_filters_and_the_tickets_rating(api: Api, server: Server, world: World) -> None:
    with trio.fail_after(TIMEOUT):
        queue = await create_queue(api, world.admin, name="Sales")
        first, second = await trio.to_thread.run_sync(_rated_tickets, server, world.company_id, world.user_id,
                                                       queue["id"])
        b_queue = await create_queue(api, world.b_admin, name="Theirs")
        b_user = await api.create_user(world.b_admin, "agent@beta.test")
        await trio.to_thread.run_sync(_rated_tickets, server, world.b_company_id, b_user["id"], b_queue["id"])

        every = await api.client.get("/ratings", headers=auth(world.admin))
        assert every.status_code == 200, every.text
        body = every.json()
        assert (body["count"], body["hasMore"], body["average"]) == (3, False, 2.67)
        assert [(r["ticketId"], r["rate"]) for r in body["records"]] == [(second, 2), (first, 5), (first, 1)]
        top = body["records"][1]
        assert top["user"] == {"id": world.user_id, "name": "agent"} and top["userId"] == world.user_id
        assert top["queue"]["id"] == queue["id"] and top["ticket"]["contact"]["name"] == "Ana"
        assert top["createdAt"] == "2026-03-10T02:30:00+00:00" and top["companyId"] == world.company_id
        assert body["records"][0]["user"] is None and body["records"][0]["queue"] is None

        async def rates(**params: Any) -> list[int]:
            response = await api.client.get("/ratings", params=params, headers=auth(world.admin))
            assert response.status_code == 200, response.text
            return [r["rate"] for r in response.json()["records"]]

        assert await rates(userId=world.user_id) == [5, 1]
        assert await rates(queueId=queue["id"]) == [5, 1]
        assert await rates(rate=2) == [2]
        # days are the company's (America/Sao_Paulo): 2026-03-10 02:30 UTC is still the 9th there
        assert await rates(dateFrom="2026-03-09", dateTo="2026-03-09") == [5]
        assert await rates(dateFrom="2026-03-10") == [2]
        assert await rates(dateTo="2026-03-01") == [1]
        past = await api.client.get("/ratings", params={"pageNumber": 3}, headers=auth(world.admin))
        assert past.json() == {"records": [], "count": 3, "hasMore": False, "average": 2.67}

        # the ticket carries its latest rating, in the list and alone, as the presenter shows it
        shown = (await api.client.get(f"/tickets/{first}", headers=auth(world.admin))).json()
        assert shown["rating"]["rate"] == 5 and shown["rating"]["userId"] == world.user_id
        assert shown["rating"]["createdAt"] == "2026-03-10T02:30:00+00:00"
        listed = (await api.client.get("/tickets", params={"showAll": "true", "status": "closed"},
                                       headers=auth(world.admin))).json()["tickets"]
        assert {t["id"]: (t["rating"] or {}).get("rate") for t in listed} == {first: 5, second: 2}
        assert {t["id"]: t["rating"] for t in listed}[first] == shown["rating"]

        refused = await api.client.get("/ratings", headers=auth(world.user))
        assert refused.status_code == 403 and refused.json()["error"] == "ERR_NO_PERMISSION"
        for params, field in (({"dateFrom": "yesterday"}, "dateFrom"), ({"dateTo": "2026-02-30"}, "dateTo"),
                              ({"dateFrom": "2026-03-10", "dateTo": "2026-03-01"}, "dateTo"),
                              ({"rate": 6}, "rate"), ({"userId": "x"}, "userId"), ({"pageNumber": 0}, "pageNumber")):
            bad = await api.client.get("/ratings", params=params, headers=auth(world.admin))
            assert bad.status_code == 400 and bad.json()["field"] == field, (params, bad.text)
        theirs = await api.client.get("/ratings", headers=auth(world.b_admin))
        assert theirs.json()["count"] == 3
        assert {r["companyId"] for r in theirs.json()["records"]} == {world.b_company_id}
        assert not ({r["ticketId"] for r in theirs.json()["records"]} & {first, second})
        # another company's agent or queue as a filter: nothing of theirs
        assert await rates(userId=b_user["id"]) == [] and await rates(queueId=b_queue["id"]) == []


async def test_a_ticket_without_rating_shows_null(api: Api, server: Server, world: World) -> None:
    with trio.fail_after(TIMEOUT):
        contact = server.sql("INSERT INTO contacts (company_id, name, number) VALUES (%s, 'Bia', '5511977770000') "
                             "RETURNING id", (world.company_id,))[0][0]
        whatsapp = server.sql("INSERT INTO whatsapps (company_id, name) VALUES (%s, 'Main') RETURNING id",
                              (world.company_id,))[0][0]
        ticket = server.sql("INSERT INTO tickets (company_id, contact_id, whatsapp_id) VALUES (%s, %s, %s) "
                            "RETURNING id", (world.company_id, contact, whatsapp))[0][0]
        shown = (await api.client.get(f"/tickets/{ticket}", headers=auth(world.admin))).json()
        assert "rating" in shown and shown["rating"] is None
        assert dt.datetime.fromisoformat(shown["createdAt"])  # the rest of the ticket as before
