"""Reports (issue 17): the tickets report with its exports, and the service figures none of the family has.

    GET /ticketreport/reports?dateFrom=&dateTo=&status=&queueId=&userId=&tagId=&whatsappId=&contactId=
                              &pageNumber=&pageSize=&tz=
        → {tickets: [...], totalTickets: {total}, count, hasMore}   (newest first; pageSize ≤ 100, default 20)
    GET /ticketreport/reports/export?format=csv|xlsx&<the same filters>   (every matching ticket, oldest first)
    GET /ticketreport/sla?dateFrom=&dateTo=&tz=&firstResponseMinutes=&resolutionMinutes=
        → {period, thresholds, overall, byQueue: [...], byUser: [...], csat, heatmap}

The period is the tickets' creation (the report) or the events' time (SLA), days in the company's zone or
`tz` (api/dashboard_time.py); without dates, the last 30 days. A ticket of the report: `{id, uuid, status,
createdAt, updatedAt, contact: {id, name, number}, queue, user, whatsapp, tags, waitTime, firstResponseTime,
resolutionTime, rating}` (times in seconds, null when not measured). The export streams: CSV a batch at a
time; XLSX from openpyxl's write-only workbook (rows go to a temporary file as they come, memory stays
flat), sent in chunks once complete. SLA: first response (an agent's first message since the ticket was
created or reopened) and resolution (creation or reopening to close) p50/p90 in seconds, per queue and per
agent, and how many went past `firstResponseMinutes` (default 15) and `resolutionMinutes` (default 1440);
`csat`: the ratings' average, count and distribution 1..5; `heatmap`: tickets created per local weekday
(rows, Monday first) and hour (columns). Admins only; a super admin may pass `companyId`.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import tempfile
from collections.abc import AsyncIterator
from typing import Any

import trio
from quart import Blueprint, Response, current_app, jsonify, request

from api.app import deps_of
from api.dashboard import company_of_request, period_for, span
from api.dashboard_time import local_hour_grid
from api.errors import BadRequest
from api.validation import query_int
from storage import dashboard, reports
from storage.db import Database, Row

blueprint = Blueprint("reports", __name__, url_prefix="/ticketreport")
PAGE_SIZE = 20
CHUNK = 64 * 1024
COLUMNS = ["id", "created at", "status", "contact", "number", "queue", "agent", "connection", "tags",
           "wait (s)", "first response (s)", "resolution (s)", "rating"]


def _period_args() -> dict[str, str]:
    args = {"tz": request.args.get("tz", "")}
    first = request.args.get("dateFrom") or request.args.get("date_from") or ""
    last = request.args.get("dateTo") or request.args.get("date_to") or ""
    if first.strip() or last.strip():
        args["date_from"], args["date_to"] = first or last, last or first
    return args


def _optional_id(name: str) -> int | None:
    if not (request.args.get(name) or "").strip():
        return None
    return query_int(name, 0, maximum=2**62)


async def _filters() -> tuple[int, reports.ReportFilters, dt.tzinfo]:
    db = deps_of(current_app).db
    company_id = await company_of_request(db)
    period = await period_for(db, company_id, _period_args(), dates_required=False)
    status = (request.args.get("status") or "").strip() or None
    if status not in (None, "open", "pending", "closed"):
        raise BadRequest("status: must be open, pending or closed", code="ERR_VALIDATION", field="status")
    return company_id, reports.ReportFilters(
        since=period.since, until=period.until, status=status, queue_id=_optional_id("queueId"),
        user_id=_optional_id("userId"), whatsapp_id=_optional_id("whatsappId"),
        contact_id=_optional_id("contactId"), tag_id=_optional_id("tagId")), period.zone


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(float(value), 1)


def shown(row: Row, zone: dt.tzinfo) -> dict[str, Any]:
    return {
        "id": row["id"], "uuid": str(row["uuid"]), "status": row["status"],
        "createdAt": row["created_at"].astimezone(zone).isoformat(),
        "updatedAt": row["updated_at"].astimezone(zone).isoformat(),
        "contact": {"id": row["contact_id"], "name": row["contact_name"], "number": row["contact_number"]},
        "queue": None if row["queue_id"] is None else {"id": row["queue_id"], "name": row["queue_name"]},
        "user": None if row["user_id"] is None else {"id": row["user_id"], "name": row["user_name"]},
        "whatsapp": {"id": row["whatsapp_id"], "name": row["whatsapp_name"]},
        "tags": row["tags"] or "", "waitTime": _seconds(row["wait_s"]),
        "firstResponseTime": _seconds(row["first_reply_s"]), "resolutionTime": _seconds(row["resolution_s"]),
        "rating": row["rate"],
    }


def cells(row: Row, zone: dt.tzinfo) -> list[Any]:
    """A row of an export: the same values as the report's ticket, flat."""
    return [row["id"], row["created_at"].astimezone(zone).strftime("%Y-%m-%d %H:%M:%S"), row["status"],
            row["contact_name"], row["contact_number"], row["queue_name"] or "", row["user_name"] or "",
            row["whatsapp_name"], row["tags"] or "", _seconds(row["wait_s"]), _seconds(row["first_reply_s"]),
            _seconds(row["resolution_s"]), row["rate"]]


@blueprint.get("/reports")
async def report() -> Response:
    company_id, filters, zone = await _filters()
    size = query_int("pageSize", PAGE_SIZE, maximum=100)
    number = query_int("pageNumber", 1, maximum=100_000)
    rows, total = await reports.report_page(deps_of(current_app).db, company_id, filters, limit=size,
                                            offset=(number - 1) * size)
    return jsonify({"tickets": [shown(row, zone) for row in rows], "totalTickets": {"total": total},
                    "count": total, "hasMore": number * size < total})


async def _csv(db: Database, company_id: int, filters: reports.ReportFilters, zone: dt.tzinfo) -> AsyncIterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(COLUMNS)
    yield ("\ufeff" + buffer.getvalue()).encode()  # the BOM: spreadsheets read the file as UTF-8
    async for batch in reports.report_rows(db, company_id, filters):
        buffer.seek(0)
        buffer.truncate()
        writer.writerows(_text(cells(row, zone)) for row in batch)
        yield buffer.getvalue().encode()


def _text(values: list[Any]) -> list[Any]:
    """A cell that a spreadsheet would run as a formula is written as text (CSV injection)."""
    return [f"'{v}" if isinstance(v, str) and v[:1] in ("=", "+", "-", "@") else v for v in values]


async def _xlsx(db: Database, company_id: int, filters: reports.ReportFilters, zone: dt.tzinfo) -> AsyncIterator[bytes]:
    from openpyxl import Workbook  # write-only mode: rows are spooled to a temporary file as they come

    book = Workbook(write_only=True)
    sheet = book.create_sheet("tickets")
    sheet.append(COLUMNS)
    async for batch in reports.report_rows(db, company_id, filters):
        for row in batch:
            sheet.append(cells(row, zone))
    with tempfile.TemporaryFile() as file:
        await trio.to_thread.run_sync(book.save, file)
        file.seek(0)
        while chunk := await trio.to_thread.run_sync(file.read, CHUNK):
            yield chunk


@blueprint.get("/reports/export")
async def export() -> Response:
    kind = (request.args.get("format") or "csv").strip().lower()
    if kind not in ("csv", "xlsx"):
        raise BadRequest("format: must be csv or xlsx", code="ERR_VALIDATION", field="format")
    company_id, filters, zone = await _filters()
    db = deps_of(current_app).db  # the body is generated after the view returns: outside the app's context
    stamp = dt.datetime.now(zone).strftime("%Y%m%d-%H%M")
    if kind == "csv":
        body, mimetype = _csv(db, company_id, filters, zone), "text/csv; charset=utf-8"
    else:
        body = _xlsx(db, company_id, filters, zone)
        mimetype = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    response = Response(body, mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="tickets-{stamp}.{kind}"'
    return response


def _figures(row: Row) -> dict[str, Any]:
    return {"firstResponse": {"p50": _seconds(row["fr_p50"]), "p90": _seconds(row["fr_p90"]), "count": row["fr_n"],
                              "breaches": row["fr_breaches"]},
            "resolution": {"p50": _seconds(row["res_p50"]), "p90": _seconds(row["res_p90"]), "count": row["res_n"],
                           "breaches": row["res_breaches"]}}


@blueprint.get("/sla")
async def sla() -> Response:
    db = deps_of(current_app).db
    company_id = await company_of_request(db)
    period = await period_for(db, company_id, _period_args(), dates_required=False)
    first_limit = query_int("firstResponseMinutes", 15, maximum=100_000) * 60
    resolution_limit = query_int("resolutionMinutes", 1440, maximum=1_000_000) * 60
    part = span(company_id, period)
    limits = {"first_reply_limit": first_limit, "resolution_limit": resolution_limit}
    overall = await dashboard.sla(db, part, "all", **limits)
    by_queue = await dashboard.sla(db, part, "queue", **limits)
    by_user = await dashboard.sla(db, part, "user", **limits)
    names = {(kind, row["id"]): row["name"] for kind, sql in (("queue", "queues"), ("user", "users"))
             for row in await db.fetch_all(f"SELECT id, name FROM {sql} WHERE company_id = %(c)s",  # fixed names
                                           {"c": company_id})}
    rates = {row["rate"]: row["n"] for row in await dashboard.csat(db, part)}
    count = sum(rates.values())
    created = (await dashboard.hour_counts(db, part, raw=True) if period.raw
               else await dashboard.created_by_hour(db, part))
    empty = {"fr_p50": None, "fr_p90": None, "fr_n": 0, "fr_breaches": 0, "res_p50": None, "res_p90": None,
             "res_n": 0, "res_breaches": 0}
    return jsonify({
        "period": {"start": period.start.isoformat(), "end": period.end.isoformat()},
        "thresholds": {"firstResponseMinutes": first_limit // 60, "resolutionMinutes": resolution_limit // 60},
        "overall": _figures(overall[0] if overall else empty),
        "byQueue": [{"queueId": row["key"], "name": names.get(("queue", row["key"])), **_figures(row)}
                    for row in by_queue],
        "byUser": [{"userId": row["key"], "name": names.get(("user", row["key"])), **_figures(row)}
                   for row in by_user],
        "csat": {"average": round(sum(rate * n for rate, n in rates.items()) / count, 2) if count else None,
                 "count": count, "distribution": {str(rate): rates.get(rate, 0) for rate in range(1, 6)}},
        "heatmap": local_hour_grid(period, created, "created"),
    })
