"""The tickets report (issue 17): the company's tickets with their service times, filtered, a page at a time or
all of them in id batches for an export. Durations come from the ticket's events (migration 0021): the wait
of its first accept, its first response, the resolution of its last close; its rating is its latest.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import attrs

from storage.db import Database, Row

# Optional filters as NULL-able parameters: one plan shape, no SQL built from input.
_WHERE = """
t.company_id = %(company_id)s
  AND (%(since)s::timestamptz IS NULL OR t.created_at >= %(since)s)
  AND (%(until)s::timestamptz IS NULL OR t.created_at < %(until)s)
  AND (%(status)s::text IS NULL OR t.status = %(status)s)
  AND (%(queue_id)s::bigint IS NULL OR t.queue_id = %(queue_id)s)
  AND (%(user_id)s::bigint IS NULL OR t.user_id = %(user_id)s)
  AND (%(whatsapp_id)s::bigint IS NULL OR t.whatsapp_id = %(whatsapp_id)s)
  AND (%(contact_id)s::bigint IS NULL OR t.contact_id = %(contact_id)s)
  AND (%(tag_id)s::bigint IS NULL OR EXISTS (SELECT FROM ticket_tags tt WHERE tt.ticket_id = t.id
                                               AND tt.company_id = t.company_id AND tt.tag_id = %(tag_id)s))
"""
_ROWS = """
SELECT t.id, t.uuid, t.status, t.created_at, t.updated_at, t.contact_id, c.name AS contact_name,
       c.number AS contact_number, t.queue_id, q.name AS queue_name, t.user_id, u.name AS user_name,
       t.whatsapp_id, w.name AS whatsapp_name,
       (SELECT string_agg(g.name, ', ' ORDER BY g.name) FROM ticket_tags tt JOIN tags g ON g.id = tt.tag_id
        WHERE tt.ticket_id = t.id AND tt.company_id = t.company_id) AS tags,
       (SELECT e.wait_s FROM ticket_events e WHERE e.ticket_id = t.id AND e.company_id = t.company_id
          AND e.kind = 'accepted' ORDER BY e.created_at, e.id LIMIT 1) AS wait_s,
       (SELECT e.first_reply_s FROM ticket_events e WHERE e.ticket_id = t.id AND e.company_id = t.company_id
          AND e.kind = 'first_reply' ORDER BY e.created_at, e.id LIMIT 1) AS first_reply_s,
       (SELECT e.resolution_s FROM ticket_events e WHERE e.ticket_id = t.id AND e.company_id = t.company_id
          AND e.kind = 'closed' ORDER BY e.created_at DESC, e.id DESC LIMIT 1) AS resolution_s,
       (SELECT r.rate FROM user_ratings r WHERE r.ticket_id = t.id AND r.company_id = t.company_id
        ORDER BY r.id DESC LIMIT 1) AS rate
FROM tickets t
JOIN contacts c ON c.id = t.contact_id
JOIN whatsapps w ON w.id = t.whatsapp_id
LEFT JOIN queues q ON q.id = t.queue_id
LEFT JOIN users u ON u.id = t.user_id
WHERE {where}
"""
REPORT_PAGE = _ROWS.format(where=_WHERE) + " ORDER BY t.id DESC LIMIT %(limit)s OFFSET %(offset)s"
REPORT_COUNT = "SELECT count(*) FROM tickets t WHERE " + _WHERE
# exports walk the ids upwards, a batch at a time: each batch a short statement
REPORT_BATCH = _ROWS.format(where=_WHERE + " AND t.id > %(after)s") + " ORDER BY t.id LIMIT %(limit)s"
EXPORT_BATCH = 1000


@attrs.frozen
class ReportFilters:
    since: dt.datetime | None = None  # created at or after
    until: dt.datetime | None = None  # created before
    status: str | None = None
    queue_id: int | None = None
    user_id: int | None = None
    whatsapp_id: int | None = None
    contact_id: int | None = None
    tag_id: int | None = None

    def params(self, company_id: int, **more: Any) -> dict[str, Any]:
        return {"company_id": company_id, **attrs.asdict(self), **more}


async def report_page(db: Database, company_id: int, filters: ReportFilters, *, limit: int,
                      offset: int) -> tuple[list[Row], int]:
    """A page of the report (newest first) and how many tickets match."""
    rows = await db.fetch_all(REPORT_PAGE, filters.params(company_id, limit=limit, offset=offset))
    total = await db.fetch_value(REPORT_COUNT, filters.params(company_id))
    return rows, int(total)


async def report_rows(db: Database, company_id: int, filters: ReportFilters) -> AsyncIterator[list[Row]]:
    """Every matching ticket, oldest first, in batches (an export's source)."""
    after = 0
    while True:
        batch = await db.fetch_all(REPORT_BATCH, filters.params(company_id, after=after, limit=EXPORT_BATCH))
        if not batch:
            return
        yield batch
        after = batch[-1]["id"]
