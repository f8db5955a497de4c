"""The dashboard (issue 17): ticketz's routes and the SaaS lineage's, in the company's time zone, for admins.

ticketz (`pages/Dashboard`):

    GET /dashboard/status  → {ticketsStatusSummary: [{status, queueId, count, queue: {id, name, color} | null}],
                              usersStatusSummary: [{id, name, online, openTicketsCount}]}
    GET /dashboard/tickets?date_from=&date_to=&hour_from=&hour_to=&tz=
        → {ticketCounters: {create, accept, transfer, close: {field, start, end, counters: [{time, counter}]}},
           ticketStatistics: {avgWaitTime, avgServiceTime, totalClosed, newContacts}}
    GET /dashboard/users?date_from=&date_to=&tz=
        → {start, end, userReport: [{id, name, avgWaitTime, avgServiceTime, totalTickets, openTickets,
                                     closedTickets, averageRating, online}]}

Times are seconds (ticketz's `formatTimeInterval`); averages null when nothing was measured. The period and
buckets: api/dashboard_time.py (`tz` an IANA zone or an offset; without it the company's `timezone`).
`avgWaitTime`: from entering the queue (or creation, reopening) to the accept; `avgServiceTime`: from the
accept to the close; `totalClosed`: closes in the period; `newContacts`: contacts created in the period.
Per agent: `totalTickets` the tickets they took in the period (accepted, given by the bot, transferred to
them), `closedTickets` those they closed, `openTickets` theirs open now, `averageRating` of the ratings of
their tickets in the period.

The SaaS lineage (`pages/Dashboard`, `useDashboard`):

    GET /dashboard?days=|date_from=&date_to=  → {counters: {avgSupportTime, avgWaitTime, supportHappening,
        supportPending, supportFinished, leads}, attendants: [{id, name, avgSupportTime, tickets, rating, online}]}
    GET /dashboard/ticketsUsers?initialDate=&finalDate=  → {data: [{quantidade, nome}]}  (closes per agent)
    GET /dashboard/ticketsDay?initialDate=&finalDate=    → {count, data: [{total, horario} | {total, data}]}
        (tickets created per local hour of a single day, or per day "dd/mm/YYYY")

(its times are minutes). Every route needs an admin and answers for the caller's company; a super admin
may pass `companyId` (an unknown one is a 404). The originals' string-built SQL in the server's zone, some
of it unauthenticated, is not reproduced.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from quart import Blueprint, Response, current_app, jsonify, request

from api.app import deps_of
from api.auth import require_admin
from api.dashboard_time import Period, PeriodError, field_for, period_of, series, series_of
from api.errors import BadRequest, NotFound
from api.validation import query_int
from storage import dashboard, settings
from storage.dashboard import Period as Span
from storage.db import Database, Row

blueprint = Blueprint("dashboard", __name__)
SERIES = {"create": "created", "accept": "accepted", "transfer": "transferred", "close": "closed"}


async def company_of_request(db: Database) -> int:
    """The caller's company, or (a super admin) the one `companyId` names."""
    principal = require_admin()
    if principal.super and (request.args.get("companyId") or "").strip():
        company_id = query_int("companyId", 0, maximum=2**62)
        if await db.fetch_value("SELECT count(*) FROM companies WHERE id = %(id)s", {"id": company_id}) == 0:
            raise NotFound(f"company {company_id} not found")
        return company_id
    return principal.company_id


async def period_for(db: Database, company_id: int, args: Mapping[str, str], **options: Any) -> Period:
    zone = await settings.get_setting(db, company_id, "timezone")
    try:
        return period_of(args, zone or settings.DEFAULTS["timezone"], **options)
    except PeriodError as error:
        raise BadRequest(f"{error.field}: {error}", code="ERR_VALIDATION", field=error.field) from None


def span(company_id: int, period: Period) -> Span:
    return Span(company_id, period.since, period.until)


def seconds(value: float | None) -> float | None:
    return None if value is None else round(float(value), 1)


def minutes(value: float | None) -> float:
    return 0 if value is None else round(float(value) / 60, 1)


@blueprint.get("/dashboard/status")
async def status() -> Response:
    db = deps_of(current_app).db
    company_id = await company_of_request(db)
    no_groups = await settings.get_setting(db, company_id, "groupsTab") == "enabled"
    tickets, users = await dashboard.status_summary(db, company_id, no_groups=no_groups)
    return jsonify({
        "ticketsStatusSummary": [
            {"status": row["status"], "queueId": row["queue_id"], "count": row["count"],
             "queue": None if row["queue_id"] is None else
             {"id": row["queue_id"], "name": row["queue_name"], "color": row["queue_color"]}}
            for row in tickets],
        "usersStatusSummary": [{"id": row["id"], "name": row["name"], "online": bool(row["online"]),
                                "openTicketsCount": row["open_count"]} for row in users],
    })


async def ticket_figures(db: Database, company_id: int, period: Period) -> dict[str, Any]:
    """`/dashboard/tickets`'s answer (also the benchmark's subject)."""
    rows, stats = await dashboard.tickets_figures(db, span(company_id, period), raw=period.raw)
    field = field_for(period)
    start, end = period.start.isoformat(), period.end.isoformat()
    counters = series_of(period, field, rows, SERIES.values())
    return {
        "ticketCounters": {name: {"field": field, "start": start, "end": end, "counters": counters[column]}
                           for name, column in SERIES.items()},
        "ticketStatistics": {"avgWaitTime": seconds(stats["avg_wait"]), "avgServiceTime": seconds(stats["avg_service"]),
                             "totalClosed": stats["closed"], "newContacts": stats["new_contacts"]},
    }


def user_figures(rows: list[Row]) -> list[dict[str, Any]]:
    return [{"id": row["id"], "name": row["name"], "avgWaitTime": seconds(row["avg_wait"]),
             "avgServiceTime": seconds(row["avg_service"]), "totalTickets": row["taken"],
             "openTickets": row["open_now"], "closedTickets": row["closed"],
             "averageRating": None if row["avg_rating"] is None else round(float(row["avg_rating"]), 2),
             "online": bool(row["online"])} for row in rows]


@blueprint.get("/dashboard/tickets")
async def tickets() -> Response:
    db = deps_of(current_app).db
    company_id = await company_of_request(db)
    period = await period_for(db, company_id, request.args)
    return jsonify(await ticket_figures(db, company_id, period))


@blueprint.get("/dashboard/users")
async def users() -> Response:
    db = deps_of(current_app).db
    company_id = await company_of_request(db)
    period = await period_for(db, company_id, request.args)
    rows = await dashboard.users_report(db, span(company_id, period), raw=period.raw)
    return jsonify({"start": request.args.get("date_from"), "end": request.args.get("date_to"),
                    "userReport": user_figures(rows)})


def _saas_args(first: str, last: str) -> dict[str, str]:
    """The SaaS lineage's `days=` or its date names, as `period_of` reads them."""
    args = {"tz": request.args.get("tz", "")}
    if (request.args.get(first) or "").strip() or (request.args.get(last) or "").strip():
        args["date_from"] = request.args.get(first) or request.args.get(last) or ""
        args["date_to"] = request.args.get(last) or request.args.get(first) or ""
    return args


@blueprint.get("/dashboard")
async def saas_dashboard() -> Response:
    db = deps_of(current_app).db
    company_id = await company_of_request(db)
    days = query_int("days", 30, maximum=400)
    period = await period_for(db, company_id, _saas_args("date_from", "date_to"), dates_required=False,
                              default_days=days)
    part = span(company_id, period)
    stats = await dashboard.statistics(db, part, raw=period.raw)
    now = await dashboard.tickets_now(db, company_id)
    rows = await dashboard.users_report(db, part, raw=period.raw)
    return jsonify({
        "counters": {"avgSupportTime": minutes(stats["avg_service"]), "avgWaitTime": minutes(stats["avg_wait"]),
                     "supportHappening": now["open"], "supportPending": now["pending"],
                     "supportFinished": stats["closed"], "leads": await dashboard.leads(db, part)},
        "attendants": [{"id": row["id"], "name": row["name"], "avgSupportTime": minutes(row["avg_service"]),
                        "tickets": row["closed"], "rating": round(float(row["avg_rating"] or 0), 2),
                        "online": bool(row["online"])} for row in rows],
    })


@blueprint.get("/dashboard/ticketsUsers")
async def saas_tickets_users() -> Response:
    db = deps_of(current_app).db
    company_id = await company_of_request(db)
    period = await period_for(db, company_id, _saas_args("initialDate", "finalDate"), dates_required=False)
    rows = await dashboard.users_report(db, span(company_id, period), raw=period.raw)
    return jsonify({"data": [{"quantidade": row["closed"], "nome": row["name"]} for row in rows]})


@blueprint.get("/dashboard/ticketsDay")
async def saas_tickets_day() -> Response:
    db = deps_of(current_app).db
    company_id = await company_of_request(db)
    period = await period_for(db, company_id, _saas_args("initialDate", "finalDate"), dates_required=False)
    rows = await dashboard.hour_counts(db, span(company_id, period), raw=period.raw)
    one_day = period.start.date() == (period.end - dt.timedelta(seconds=1)).date()
    field = "hour" if one_day else "day"
    buckets = [bucket for bucket in series(period, field, rows, "created") if bucket["counter"]]
    if one_day:
        data = [{"total": b["counter"], "horario": int(b["time"][11:13])} for b in buckets]
    else:
        data = [{"total": b["counter"], "data": f"{b['time'][8:10]}/{b['time'][5:7]}/{b['time'][:4]}"}
                for b in buckets]
    return jsonify({"count": sum(item["total"] for item in data), "data": data})
