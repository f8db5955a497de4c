"""Ratings: what contacts answered to the rating question after a close (`user_ratings`, schema version 14).

The routing writes them (the ticket actor, on the contact's answer); here they are read for `GET /ratings`.
"""

from __future__ import annotations

import datetime as dt

import attrs

from storage.db import Database, Row


@attrs.frozen
class RatingFilters:
    user_id: int | None = None
    queue_id: int | None = None  # the ticket's queue
    rate: int | None = None
    since: dt.datetime | None = None  # inclusive
    until: dt.datetime | None = None  # exclusive


@attrs.frozen
class RatingPage:
    rows: list[Row]
    count: int
    average: float | None  # of every rating matching the filters


async def page_ratings(db: Database, company_id: int, filters: RatingFilters, *, limit: int,
                       offset: int) -> RatingPage:
    """A page of the company's ratings, newest first, with their ticket, contact, agent and queue."""
    params = {"company_id": company_id, "user_id": filters.user_id, "queue_id": filters.queue_id,
              "rate": filters.rate, "since": filters.since, "until": filters.until, "limit": limit, "offset": offset}
    rows = await db.fetch_all(db.q.rating_page, params)
    if rows:
        return RatingPage(rows=rows, count=rows[0]["total"], average=float(rows[0]["average"]))
    totals = await db.fetch_one(db.q.rating_count, params) if offset else None  # a page past the end
    if not totals or not totals["total"]:
        return RatingPage(rows=[], count=0, average=None)
    return RatingPage(rows=[], count=totals["total"], average=float(totals["average"]))
