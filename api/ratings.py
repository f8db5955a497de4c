"""`GET /ratings`: the contacts' answers to the rating question (CSAT), for admins.

    GET /ratings?pageNumber=&userId=&queueId=&rate=&dateFrom=YYYY-MM-DD&dateTo=YYYY-MM-DD

answers `{records, count, hasMore, average}`, newest first, 20 a page: each record `{id, ticketId, userId,
companyId, rate, createdAt, updatedAt, user: {id, name} | null, ticket: {id, uuid, status, queueId,
whatsappId, contact: {id, name, number}}, queue: {id, name, color} | null}` — `queue` is the ticket's queue
now, `userId` the agent who closed it. `average` is the mean rate of every rating the filters match (null
when none). The days of `dateFrom` and `dateTo` (both included) are the company's, in its `timezone`
setting. The family has no such route (its dashboard averages the ratings per agent); the shape is the one
zapgate's paginated lists share. A ticket's latest rating is also on the ticket (`ticket.rating`).
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo

from quart import Blueprint, Response, current_app, jsonify, request

from api import present
from api.app import deps_of
from api.auth import require_admin
from api.errors import BadRequest
from api.schedules import known_zone
from api.validation import page, query_int
from storage import ratings, settings

blueprint = Blueprint("ratings", __name__, url_prefix="/ratings")
PAGE_SIZE = 20
DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _date(name: str) -> dt.date | None:
    raw = (request.args.get(name) or "").strip()
    if not raw:
        return None
    try:
        if not DATE.fullmatch(raw):
            raise ValueError(raw)
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise BadRequest(f"{name}: must be a date YYYY-MM-DD", code="ERR_VALIDATION", field=name) from None


def _optional_id(name: str, maximum: int = 2**62) -> int | None:
    if not (request.args.get(name) or "").strip():
        return None
    return query_int(name, 0, minimum=1, maximum=maximum)


@blueprint.get("")
async def list_ratings() -> Response:
    principal = require_admin()
    db = deps_of(current_app).db
    limit, offset = page(PAGE_SIZE)
    since, until = _date("dateFrom"), _date("dateTo")
    if since is not None and until is not None and until < since:
        raise BadRequest("dateTo: must not be before dateFrom", code="ERR_VALIDATION", field="dateTo")
    zone_name = await settings.get_setting(db, principal.company_id, "timezone")
    zone = zoneinfo.ZoneInfo(zone_name if known_zone(zone_name) else settings.DEFAULTS["timezone"])
    filters = ratings.RatingFilters(
        user_id=_optional_id("userId", 999_999_999), queue_id=_optional_id("queueId", 999_999_999),
        rate=_optional_id("rate", 5),
        since=dt.datetime.combine(since, dt.time(), zone) if since else None,
        until=dt.datetime.combine(until + dt.timedelta(days=1), dt.time(), zone) if until else None,
    )
    found = await ratings.page_ratings(db, principal.company_id, filters, limit=limit, offset=offset)
    shown = present.page("records", [present.rating(row) for row in found.rows], found.count, limit, offset)
    return jsonify({**shown, "average": round(found.average, 2) if found.average is not None else None})
