"""The dashboard's figures (issue 17): read from the hourly counters the event insert keeps (migration 0021),
or from the events themselves (`raw=True`: a zone whose offset is not whole hours, and the benchmark's
reference). Periods are `[since, until)` instants; for counters both are whole UTC hours (api/dashboard_time.py
rounds them), so a figure for a day of a whole-hour zone is exact.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import attrs

from storage.db import Database, Row
from storage.sql import load_queries

Q = load_queries(Path(__file__).with_name("dashboard.sql"))

# Per user: from the counters, or from the events. totalTickets counts the tickets the agent took (accepted,
# given by the bot, transferred to them); closedTickets those they closed; openTickets theirs open now.
_USERS = """
SELECT u.id, u.name, u.online, s.avg_wait, s.avg_service, coalesce(s.taken, 0)::int AS taken,
       coalesce(s.closed, 0)::int AS closed, s.avg_rating,
       (SELECT count(*) FROM tickets t WHERE t.company_id = u.company_id AND t.user_id = u.id
                                         AND t.status = 'open')::int AS open_now
FROM users u LEFT JOIN ({figures}) s ON s.user_id = u.id
WHERE u.company_id = %(company_id)s
ORDER BY lower(u.name), u.id
"""
# A period's whole UTC days from dashboard_user_days, its first and last partial days from dashboard_user_hours.
_FIGURES = "user_id, wait_s, wait_n, service_s, service_n, accepted + assigned + transferred AS taken, closed, " \
           "rating_sum, rated"
_USERS_FROM_COUNTERS = f"""
SELECT user_id, sum(wait_s) / nullif(sum(wait_n), 0) AS avg_wait,
       sum(service_s) / nullif(sum(service_n), 0) AS avg_service,
       sum(taken) AS taken, sum(closed) AS closed, sum(rating_sum)::float8 / nullif(sum(rated), 0) AS avg_rating
FROM (SELECT {_FIGURES} FROM dashboard_user_hours
      WHERE company_id = %(company_id)s AND hour >= %(since)s AND hour < %(days_from)s
      UNION ALL
      SELECT {_FIGURES} FROM dashboard_user_days
      WHERE company_id = %(company_id)s AND day >= %(first_day)s AND day < %(last_day)s
      UNION ALL
      SELECT {_FIGURES} FROM dashboard_user_hours
      WHERE company_id = %(company_id)s AND hour >= %(days_to)s AND hour < %(until)s) f
GROUP BY user_id
"""
_USERS_FROM_EVENTS = """
SELECT user_id, avg(wait_s) AS avg_wait, avg(service_s) AS avg_service,
       count(*) FILTER (WHERE kind IN ('accepted', 'assigned', 'transferred')) AS taken,
       count(*) FILTER (WHERE kind = 'closed') AS closed, avg(rate)::float8 AS avg_rating
FROM ticket_events
WHERE company_id = %(company_id)s AND created_at >= %(since)s AND created_at < %(until)s
  AND kind IN ('accepted', 'assigned', 'transferred', 'closed', 'rated')
GROUP BY user_id
"""
USERS_REPORT = _USERS.format(figures=_USERS_FROM_COUNTERS)
USERS_REPORT_RAW = _USERS.format(figures=_USERS_FROM_EVENTS)

# SLA figures per queue or per agent: first response (the first_reply events) and resolution (closed events),
# p50 and p90 in seconds, and how many went past the limits.
_SLA = """
SELECT {key} AS key,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY first_reply_s) FILTER (WHERE kind = 'first_reply') AS fr_p50,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY first_reply_s) FILTER (WHERE kind = 'first_reply') AS fr_p90,
       count(*) FILTER (WHERE kind = 'first_reply')::int AS fr_n,
       count(*) FILTER (WHERE kind = 'first_reply' AND first_reply_s > %(fr_limit)s)::int AS fr_breaches,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY resolution_s) FILTER (WHERE kind = 'closed') AS res_p50,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY resolution_s) FILTER (WHERE kind = 'closed') AS res_p90,
       count(*) FILTER (WHERE kind = 'closed' AND resolution_s IS NOT NULL)::int AS res_n,
       count(*) FILTER (WHERE kind = 'closed' AND resolution_s > %(res_limit)s)::int AS res_breaches
FROM ticket_events
WHERE company_id = %(company_id)s AND created_at >= %(since)s AND created_at < %(until)s
  AND kind IN ('first_reply', 'closed')
GROUP BY 1 ORDER BY 1 NULLS FIRST
"""
SLA_BY = {"queue": _SLA.format(key="queue_id"), "user": _SLA.format(key="user_id"),
          "all": _SLA.format(key="NULL::bigint")}


@attrs.frozen
class Period:
    company_id: int
    since: dt.datetime  # included
    until: dt.datetime  # excluded

    def params(self, **more: Any) -> dict[str, Any]:
        return {"company_id": self.company_id, "since": self.since, "until": self.until, **more}

    def by_days(self) -> dict[str, Any]:
        """The period as whole UTC days [first_day, last_day) between partial ones: hours [since, days_from)
        and [days_to, until). Without a whole day, all hours (and an empty day range)."""
        midnight = dt.datetime.combine(self.since.astimezone(dt.UTC).date(), dt.time(), dt.UTC)
        days_from = midnight if midnight == self.since else midnight + dt.timedelta(days=1)
        days_to = dt.datetime.combine(self.until.astimezone(dt.UTC).date(), dt.time(), dt.UTC)
        if days_from >= days_to:
            days_from = days_to = self.until
        return self.params(days_from=days_from, days_to=days_to, first_day=days_from.date(),
                           last_day=days_to.date())


async def hour_counts(db: Database, period: Period, *, raw: bool = False) -> list[Row]:
    """(hour, created, accepted, transferred, closed) per UTC hour with any (raw: per quarter hour)."""
    return await db.fetch_all(Q.hours_raw if raw else Q.hours_counters, period.params())


async def statistics(db: Database, period: Period, *, raw: bool = False) -> Row:
    row = await db.fetch_one(Q.statistics_raw if raw else Q.statistics, period.params())
    assert row is not None
    return row


async def tickets_figures(db: Database, period: Period, *, raw: bool = False) -> tuple[list[Row], Row]:
    """`hour_counts` and `statistics` in one trip to a worker thread and one connection (the dashboard's
    /dashboard/tickets: its latency is mostly these hops on a busy machine)."""
    params = period.params()

    def read(conn: Any) -> tuple[list[Row], Row]:
        rows = conn.execute(Q.hours_raw if raw else Q.hours_counters, params).fetchall()
        stats = conn.execute(Q.statistics_raw if raw else Q.statistics, params).fetchone()
        return rows, stats

    return await db.read(read)


async def users_report(db: Database, period: Period, *, raw: bool = False) -> list[Row]:
    return await db.fetch_all(USERS_REPORT_RAW if raw else USERS_REPORT, period.by_days())


async def status_summary(db: Database, company_id: int, *, no_groups: bool) -> tuple[list[Row], list[Row]]:
    """The tickets waiting and open now, by status and queue; the users with their open tickets."""
    tickets = await db.fetch_all(Q.status_tickets, {"company_id": company_id, "no_groups": no_groups})
    users = await db.fetch_all(Q.status_users, {"company_id": company_id})
    return tickets, users


async def tickets_now(db: Database, company_id: int) -> Row:
    row = await db.fetch_one(Q.tickets_now, {"company_id": company_id})
    assert row is not None
    return row


async def leads(db: Database, period: Period) -> int:
    return int(await db.fetch_value(Q.new_leads, period.params()))


async def created_by_hour(db: Database, period: Period) -> list[Row]:
    """Tickets created per UTC hour (the heat map's input)."""
    return await db.fetch_all(Q.heatmap, period.params())


async def sla(db: Database, period: Period, by: str, *, first_reply_limit: float,
              resolution_limit: float) -> list[Row]:
    return await db.fetch_all(SLA_BY[by], period.params(fr_limit=first_reply_limit, res_limit=resolution_limit))


async def csat(db: Database, period: Period) -> list[Row]:
    return await db.fetch_all(Q.csat, period.params())
