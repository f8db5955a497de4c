"""The dashboard (issue 17): a day driven through the API counted exactly in the company's zone and another;
days scripted at fixed instants around midnight and DST changes (America/Sao_Paulo 2018-11-04, Europe/Lisbon
2018-03-25 and 2018-10-28), a fixed offset and a :30 zone (answered from the events); the counters against
the same figures from the raw events on a random history; the status summary and the SaaS shapes; bad
input; the events every lifecycle change writes (queued, first reply, rated)."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any
from zoneinfo import ZoneInfo

import trio

from tests.integration.conftest import Api, Server, auth
from tests.integration.test_conversations import connected_sandbox, inbound
from tests.integration.test_queue_routing import attach, set_setting, settle
from tests.integration.test_tickets import put_ticket, sandbox_ticket

TIMEOUT = 60
KINDS = ("create", "accept", "transfer", "close")


async def get(api: Api, token: str, path: str, expect: int = 200, **params: Any) -> Any:
    response = await api.client.get(path, params=params, headers=auth(token))
    assert response.status_code == expect, response.text
    return response.json()


def totals(body: dict[str, Any]) -> dict[str, int]:
    return {name: sum(c["counter"] for c in body["ticketCounters"][name]["counters"]) for name in KINDS}


def nonzero(body: dict[str, Any], name: str) -> dict[str, int]:
    return {c["time"]: c["counter"] for c in body["ticketCounters"][name]["counters"] if c["counter"]}


# ─── scripted histories (SQL at fixed instants; the insert trigger counts them as it does live ones) ──────

def make_connection(server: Server, company_id: int = 1) -> int:
    return server.sql("INSERT INTO whatsapps (company_id, name, channel) VALUES (%s, %s, 'sandbox') RETURNING id",
                      (company_id, f"scripted {random.random()}"))[0][0]


def scripted(server: Server, events: list[tuple[str, str, str]], *, company_id: int = 1,
             user_id: int | None = None) -> dict[str, int]:
    """Tickets (by key) and their events (key, kind, ISO instant), inserted in the order given."""
    wid = make_connection(server, company_id)
    tickets: dict[str, int] = {}
    for key, kind, at in events:
        if key not in tickets:
            contact = server.sql("INSERT INTO contacts (company_id, name, number) VALUES (%s, %s, %s) RETURNING id",
                                 (company_id, key, f"55{random.randrange(10**10, 10**11)}"))[0][0]
            tickets[key] = server.sql(
                "INSERT INTO tickets (company_id, contact_id, whatsapp_id, status, created_at) "
                "VALUES (%s, %s, %s, 'closed', %s) RETURNING id", (company_id, contact, wid, at))[0][0]
        server.sql("INSERT INTO ticket_events (company_id, ticket_id, kind, user_id, whatsapp_id, created_at) "
                   "VALUES (%s, %s, %s, %s, %s, %s)",
                   (company_id, tickets[key], kind, user_id if kind != "created" else None, wid, at))
    return tickets


# ─── the acceptance day, through the API ─────────────────────────────────────────────────────────────────

async def test_a_day_driven_through_the_api_is_counted_exactly_in_any_zone(api: Api, server: Server) -> None:
    """5 created, 3 accepted, 1 transferred, 2 closed, 1 rated — the routes give exactly those counts."""
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        agent = await api.create_user(token, "agent@dash.test")
        wid = await connected_sandbox(api, token)
        await attach(api, token, wid, [], ratingMessage="Avalie!", complationMessage="Obrigado!",
                     farewellMessage="Tchau!")
        await set_setting(api, token, "userRating", "enabled")
        numbers = [f"55119876500{i}" for i in range(5)]
        ids = [await sandbox_ticket(api, server, token, wid, number, f"Cliente {i}")
               for i, number in enumerate(numbers)]
        for ticket in ids[:3]:
            await put_ticket(api, token, ticket, {"status": "open"})
        await put_ticket(api, token, ids[2], {"userId": agent["id"]})  # the transfer
        sent = await api.client.post(f"/messages/{ids[0]}", json={"body": "Olá!"}, headers=auth(token))
        assert sent.status_code in (200, 201), sent.text
        sent = await api.client.post(f"/messages/{ids[0]}", json={"body": "Tudo bem?"}, headers=auth(token))
        assert sent.status_code in (200, 201), sent.text
        note = await api.client.post(f"/messages/{ids[1]}", json={"body": "nota interna", "isPrivate": True},
                                     headers=auth(token))
        assert note.status_code in (200, 201), note.text
        await put_ticket(api, token, ids[0], {"status": "closed"})
        await put_ticket(api, token, ids[1], {"status": "closed"})
        await settle(api, token, wid, 6)  # 2 messages of the agent, 2 farewells, 2 rating questions
        await inbound(api, token, wid, **{"from": numbers[0], "name": "Cliente 0", "body": "4"})
        while not server.sql("SELECT 1 FROM ticket_events WHERE kind = 'rated'"):
            await trio.sleep(0.05)

        expected = {"create": 5, "accept": 3, "transfer": 1, "close": 2}
        for tz in ("", "America/Sao_Paulo", "Asia/Tokyo", "-03:00", "Asia/Kolkata"):
            zone = dt.timezone(dt.timedelta(hours=-3)) if tz == "-03:00" else ZoneInfo(tz or "America/Sao_Paulo")
            today = dt.datetime.now(zone).date()
            params = {"date_from": str(today - dt.timedelta(days=1)), "date_to": str(today + dt.timedelta(days=1)),
                      "tz": tz}
            body = await get(api, token, "/dashboard/tickets", **params)
            assert totals(body) == expected, (tz, totals(body))
            assert body["ticketCounters"]["create"]["field"] == "hour"
            assert body["ticketStatistics"]["totalClosed"] == 2
            assert body["ticketStatistics"]["newContacts"] == 5
            assert body["ticketStatistics"]["avgWaitTime"] is not None
            users = {u["name"]: u for u in (await get(api, token, "/dashboard/users", **params))["userReport"]}
            admin = next(u for u in users.values() if u["name"] != "agent")
            assert (admin["totalTickets"], admin["closedTickets"], admin["openTickets"]) == (3, 2, 0)
            assert admin["averageRating"] == 4
            assert (users["agent"]["totalTickets"], users["agent"]["openTickets"]) == (1, 1)
            assert users["agent"]["closedTickets"] == 0 and users["agent"]["averageRating"] is None

        # the events behind it: one first reply (not the second message, nor the internal note, nor the
        # farewells sent for the agent), the rating with its rate
        assert server.sql("SELECT count(*) FROM ticket_events WHERE kind = 'first_reply'") == [(1,)]
        assert server.sql("SELECT rate FROM ticket_events WHERE kind = 'rated'") == [(4,)]
        status = await get(api, token, "/dashboard/status")
        assert {(s["status"], s["count"]) for s in status["ticketsStatusSummary"]} == {("open", 1), ("pending", 2)}
        assert {u["name"]: u["openTicketsCount"] for u in status["usersStatusSummary"]}["agent"] == 1

        saas = await get(api, token, "/dashboard", days=2)
        assert saas["counters"]["supportFinished"] == 2 and saas["counters"]["supportPending"] == 2
        assert saas["counters"]["supportHappening"] == 1 and saas["counters"]["leads"] == 5
        assert {a["name"]: a["tickets"] for a in saas["attendants"]}["agent"] == 0


# ─── days at fixed instants ──────────────────────────────────────────────────────────────────────────────

async def test_midnight_and_the_sao_paulo_dst_day(api: Api, server: Server) -> None:
    """2018-11-04 in São Paulo: clocks went from 00:00 to 01:00 (-03 → -02), a day of 23 hours."""
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        scripted(server, [
            ("a", "created", "2018-11-04T02:30:00Z"),  # 2018-11-03 23:30 -03: the day before, in São Paulo
            ("b", "created", "2018-11-04T03:30:00Z"),  # 01:30 -02 (the first local hour of the day)
            ("b", "accepted", "2018-11-04T03:40:00Z"),
            ("b", "closed", "2018-11-04T12:00:00Z"),
            ("c", "created", "2018-11-05T01:30:00Z"),  # 23:30 -02 on the 4th in São Paulo; the 5th in UTC
        ])
        day = {"date_from": "2018-11-04", "date_to": "2018-11-04"}
        body = await get(api, token, "/dashboard/tickets", **day)  # the company's zone: America/Sao_Paulo
        hours = body["ticketCounters"]["create"]["counters"]
        assert len(hours) == 23 and hours[0]["time"] == "2018-11-04T01:00:00-02:00"
        assert hours[-1]["time"] == "2018-11-04T23:00:00-02:00"
        assert nonzero(body, "create") == {"2018-11-04T01:00:00-02:00": 1, "2018-11-04T23:00:00-02:00": 1}
        assert totals(body) == {"create": 2, "accept": 1, "transfer": 0, "close": 1}
        assert body["ticketStatistics"]["avgWaitTime"] == 600
        assert body["ticketStatistics"]["avgServiceTime"] == 8 * 3600 + 20 * 60

        utc = await get(api, token, "/dashboard/tickets", tz="UTC", **day)
        assert len(utc["ticketCounters"]["create"]["counters"]) == 24
        assert nonzero(utc, "create") == {"2018-11-04T02:00:00+00:00": 1, "2018-11-04T03:00:00+00:00": 1}
        offset = await get(api, token, "/dashboard/tickets", tz="-03:00", **day)  # fixed: no DST
        assert len(offset["ticketCounters"]["create"]["counters"]) == 24
        assert nonzero(offset, "create") == {"2018-11-04T00:00:00-03:00": 1, "2018-11-04T22:00:00-03:00": 1}
        # the day before in São Paulo holds ticket a only
        before = await get(api, token, "/dashboard/tickets", date_from="2018-11-03", date_to="2018-11-03")
        assert len(before["ticketCounters"]["create"]["counters"]) == 24
        assert nonzero(before, "create") == {"2018-11-03T23:00:00-03:00": 1}
        # a week as days: one bucket per local day, the DST day included
        week = await get(api, token, "/dashboard/tickets", date_from="2018-10-01", date_to="2019-01-31")
        assert week["ticketCounters"]["create"]["field"] == "day"
        assert nonzero(week, "create") == {"2018-11-03T00:00:00-03:00": 1, "2018-11-04T01:00:00-02:00": 2}


async def test_lisbon_dst_days_have_23_and_25_hours(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        scripted(server, [
            ("a", "created", "2018-10-28T00:30:00Z"),  # 01:30 WEST (+01), the first 01:30
            ("b", "created", "2018-10-28T01:30:00Z"),  # 01:30 WET (+00), the repeated one
            ("c", "created", "2018-03-25T01:10:00Z"),  # 02:10 WEST: right after the spring gap
        ])
        autumn = await get(api, token, "/dashboard/tickets", date_from="2018-10-28", date_to="2018-10-28",
                           tz="Europe/Lisbon")
        hours = autumn["ticketCounters"]["create"]["counters"]
        assert len(hours) == 25
        assert nonzero(autumn, "create") == {"2018-10-28T01:00:00+01:00": 1, "2018-10-28T01:00:00+00:00": 1}
        spring = await get(api, token, "/dashboard/tickets", date_from="2018-03-25", date_to="2018-03-25",
                           tz="Europe/Lisbon")
        assert len(spring["ticketCounters"]["create"]["counters"]) == 23
        assert nonzero(spring, "create") == {"2018-03-25T02:00:00+01:00": 1}
        # in three-hour buckets the autumn day still counts both 01:30s in its first bucket
        week = await get(api, token, "/dashboard/tickets", date_from="2018-10-27", date_to="2018-11-04",
                         tz="Europe/Lisbon")
        assert week["ticketCounters"]["create"]["field"] == "three_hours"
        assert nonzero(week, "create") == {"2018-10-28T00:00:00+01:00": 2}


async def test_a_half_hour_zone_is_answered_from_the_events(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        scripted(server, [
            ("a", "created", "2018-11-04T18:15:00Z"),  # 23:45 IST on the 4th
            ("b", "created", "2018-11-04T18:45:00Z"),  # 00:15 IST on the 5th
            ("c", "created", "2018-11-03T18:29:00Z"),  # 23:59 IST on the 3rd
            ("d", "created", "2018-11-03T18:30:00Z"),  # 00:00 IST on the 4th
        ])
        body = await get(api, token, "/dashboard/tickets", date_from="2018-11-04", date_to="2018-11-04",
                         tz="Asia/Kolkata")
        assert len(body["ticketCounters"]["create"]["counters"]) == 24
        assert nonzero(body, "create") == {"2018-11-04T00:00:00+05:30": 1, "2018-11-04T23:00:00+05:30": 1}


async def test_counters_equal_the_raw_events_on_a_random_history(api: Api, server: Server) -> None:
    """Any period, any zone with whole hours: the counters give what the events give (storage's raw twin)."""
    from storage import dashboard
    from storage.dashboard import Period as Span

    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        rng = random.Random(17)
        start = dt.datetime(2018, 10, 20, tzinfo=dt.UTC)
        events = []
        for n in range(120):
            at = start + dt.timedelta(minutes=rng.randrange(0, 30 * 24 * 60))
            events.append((f"t{n}", "created", at.isoformat()))
            if rng.random() < 0.7:
                events.append((f"t{n}", "accepted", (at + dt.timedelta(minutes=rng.randrange(1, 90))).isoformat()))
                if rng.random() < 0.6:
                    events.append((f"t{n}", "closed", (at + dt.timedelta(hours=rng.randrange(2, 30))).isoformat()))
        user = await api.create_user(token, "raw@dash.test")
        scripted(server, events, user_id=user["id"])
        for zone in ("America/Sao_Paulo", "Europe/Lisbon", "UTC", "Asia/Tokyo", "+05:00"):
            for first, last in (("2018-10-27", "2018-10-29"), ("2018-11-01", "2018-11-10"),
                                ("2018-10-20", "2018-11-20")):
                params = {"date_from": first, "date_to": last, "tz": zone}
                body = await get(api, token, "/dashboard/tickets", **params)
                from api.dashboard_time import period_of, series
                period = period_of(params, "UTC")
                raw = await dashboard.hour_counts(server.db, Span(1, period.since, period.until), raw=True)
                field = body["ticketCounters"]["create"]["field"]
                raw_period = type(period)(period.zone, period.start, period.end, True, period.since, period.until)
                for name, column in (("create", "created"), ("accept", "accepted"), ("close", "closed")):
                    assert body["ticketCounters"][name]["counters"] == series(raw_period, field, raw, column), \
                        (zone, first, name)
                stats = await dashboard.statistics(server.db, Span(1, period.since, period.until), raw=True)
                assert body["ticketStatistics"]["totalClosed"] == stats["closed"]
                assert body["ticketStatistics"]["avgWaitTime"] == (None if stats["avg_wait"] is None
                                                                   else round(stats["avg_wait"], 1))
                counted = await dashboard.users_report(server.db, Span(1, period.since, period.until))
                from_events = await dashboard.users_report(server.db, Span(1, period.since, period.until), raw=True)
                assert [(r["id"], r["taken"], r["closed"]) for r in counted] == \
                       [(r["id"], r["taken"], r["closed"]) for r in from_events]


async def test_bad_input_is_a_400_and_a_plain_user_a_403(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        user = await api.create_user(token, "plain@dash.test")
        plain = await api.login(user["email"], "user-pass-1")
        for params in ({}, {"date_from": "2018-11-04"}, {"date_from": "x", "date_to": "2018-11-04"},
                       {"date_from": "2018-11-05", "date_to": "2018-11-04"},
                       {"date_from": "2018-02-30", "date_to": "2018-03-01"},
                       {"date_from": "2010-01-01", "date_to": "2018-11-04"},
                       {"date_from": "2018-11-04", "date_to": "2018-11-04", "tz": "Mars/Olympus"},
                       {"date_from": "2018-11-04", "date_to": "2018-11-04", "tz": "+25:00"},
                       {"date_from": "2018-11-04", "date_to": "2018-11-04", "hour_from": "25:00"},
                       {"date_from": "2018-11-04", "date_to": "2018-11-04", "hour_from": "10:00", "hour_to": "09:00"}):
            for path in ("/dashboard/tickets", "/dashboard/users"):
                body = await get(api, token, path, 400, **params)
                assert body["error"] == "ERR_VALIDATION" and body["message"], (path, params)
        for path in ("/dashboard/status", "/dashboard/tickets", "/dashboard/users", "/dashboard",
                     "/dashboard/ticketsUsers", "/dashboard/ticketsDay"):
            body = await get(api, plain, path, 403, date_from="2018-11-04", date_to="2018-11-04")
            assert body["error"] == "ERR_NO_PERMISSION"
            response = await api.client.get(path)
            assert response.status_code == 401


async def test_a_super_admin_may_read_another_company(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        root = await api.admin_token()
        other = await api.create_company(root, "Gamma", "admin@gamma.test")
        scripted(server, [("g", "created", "2018-11-04T12:00:00Z")], company_id=other["id"])
        day = {"date_from": "2018-11-04", "date_to": "2018-11-04"}
        mine = await get(api, root, "/dashboard/tickets", **day)
        assert totals(mine)["create"] == 0
        theirs = await get(api, root, "/dashboard/tickets", companyId=other["id"], **day)
        assert totals(theirs)["create"] == 1
        await get(api, root, "/dashboard/tickets", 404, companyId=999_999, **day)
        admin = await api.login("admin@gamma.test", "company-pass-1")
        own = await get(api, admin, "/dashboard/tickets", **day)
        assert totals(own)["create"] == 1
        ignored = await get(api, admin, "/dashboard/tickets", companyId=1, **day)  # not a super admin: their own
        assert totals(ignored)["create"] == 1


async def test_the_saas_day_chart_counts_local_hours(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        scripted(server, [("a", "created", "2018-11-04T03:30:00Z"), ("b", "created", "2018-11-04T03:50:00Z"),
                          ("c", "created", "2018-11-05T12:00:00Z")])
        one = await get(api, token, "/dashboard/ticketsDay", initialDate="2018-11-04", finalDate="2018-11-04")
        assert one == {"count": 2, "data": [{"total": 2, "horario": 1}]}
        two = await get(api, token, "/dashboard/ticketsDay", initialDate="2018-11-04", finalDate="2018-11-05")
        assert two == {"count": 3, "data": [{"total": 2, "data": "04/11/2018"}, {"total": 1, "data": "05/11/2018"}]}
