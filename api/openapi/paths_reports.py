"""The spec of the dashboard (api/dashboard.py: ticketz's routes and the SaaS lineage's) and the reports
(api/reports.py: the tickets report, its CSV/XLSX exports, the SLA figures)."""

from __future__ import annotations

from api.openapi.components import NID, NSTR
from api.openapi.dsl import (
    BOOL,
    DATE,
    ID,
    INT,
    NUM,
    PAGE,
    STR,
    TIME,
    Declare,
    Schema,
    arr,
    enum,
    nullable,
    obj,
    query,
)

dashboard = Declare("dashboard", tag="Dashboard")
reports = Declare("reports", tag="Reports")

NNUM = nullable(NUM)
HOUR = {"type": "string", "maxLength": 8, "description": "a local time HH:mm or HH:mm:ss"}
TZ = query("tz", {"type": "string", "maxLength": 64}, "an IANA zone or an offset (+03:00); the company's `timezone` "
                                                      "setting without it")
COMPANY = query("companyId", ID, "the super admin only: another company's figures (unknown: 404)")


def dates(first: str, last: str, *, required: bool = False) -> tuple[dict[str, Schema], dict[str, Schema]]:
    day = {**DATE, "format": "date"}  # YYYY-MM-DD (api/dashboard_time.py)
    return (query(first, day, "the period's first local day", required=required),
            query(last, day, "its last local day (at most a year after the first)", required=required))


TICKETZ_PERIOD = (*dates("date_from", "date_to", required=True), query("hour_from", HOUR), query("hour_to", HOUR),
                  TZ, COMPANY)
SERIES = obj(field=enum("hour", "three_hours", "six_hours", "twelve_hours", "day"), start=TIME, end=TIME,
             counters=arr(obj(time=STR, counter=INT)))
NAMED = obj(id=ID, name=STR)

# the tickets report: a ticket as api/reports.py's `shown`
REPORT_TICKET = obj(id=ID, uuid=STR, status=STR, createdAt=TIME, updatedAt=TIME,
                    contact=obj(id=ID, name=STR, number=STR), queue=nullable(NAMED), user=nullable(NAMED),
                    whatsapp=obj(id=NID, name=NSTR), tags={**STR, "description": "its tags' names, comma separated"},
                    waitTime=NNUM, firstResponseTime=NNUM, resolutionTime=NNUM, rating=nullable(INT))
REPORT_FILTERS = (*dates("dateFrom", "dateTo"), *dates("date_from", "date_to"), TZ,
                  query("status", enum("open", "pending", "closed")),
                  *(query(name, ID) for name in ("queueId", "userId", "tagId", "whatsappId", "contactId")), COMPANY)
FIGURE = obj(p50=NNUM, p90=NNUM, count=INT, breaches=INT)
FIGURES = {"firstResponse": FIGURE, "resolution": FIGURE}

OPERATIONS = [
    dashboard.get("/dashboard/status", "Tickets by status and queue, agents with their open tickets", auth="admin",
                  params=(COMPANY,),
                  ok=obj(ticketsStatusSummary=arr(obj(status=STR, queueId=NID, count=INT,
                                                      queue=nullable(obj(id=ID, name=STR, color=NSTR)))),
                         usersStatusSummary=arr(obj(id=ID, name=STR, online=BOOL, openTicketsCount=INT)))),
    dashboard.get("/dashboard/tickets", "Tickets created, accepted, transferred, closed over a period (ticketz)",
                  auth="admin", params=TICKETZ_PERIOD,
                  ok=obj(ticketCounters=obj(create=SERIES, accept=SERIES, transfer=SERIES, close=SERIES),
                         ticketStatistics=obj(avgWaitTime=NNUM, avgServiceTime=NNUM, totalClosed=INT,
                                              newContacts=INT, description="times in seconds"))),
    dashboard.get("/dashboard/users", "Each agent's figures over a period (ticketz)", auth="admin",
                  params=TICKETZ_PERIOD,
                  ok=obj(start=NSTR, end=NSTR,
                         userReport=arr(obj(id=ID, name=STR, avgWaitTime=NNUM, avgServiceTime=NNUM,
                                            totalTickets=INT, openTickets=INT, closedTickets=INT,
                                            averageRating=NNUM, online=BOOL)))),
    dashboard.get("/dashboard", "The SaaS lineage's dashboard counters and agents (times in minutes)", auth="admin",
                  params=(query("days", {"type": "integer", "minimum": 1, "maximum": 400},
                                "the last N days (default 30) when no dates are given"),
                          *dates("date_from", "date_to"), TZ, COMPANY),
                  ok=obj(counters=obj(avgSupportTime=NUM, avgWaitTime=NUM, supportHappening=INT,
                                      supportPending=INT, supportFinished=INT, leads=INT),
                         attendants=arr(obj(id=ID, name=STR, avgSupportTime=NUM, tickets=INT, rating=NUM,
                                            online=BOOL)))),
    dashboard.get("/dashboard/ticketsUsers", "Closes per agent (the SaaS lineage)", auth="admin",
                  params=(*dates("initialDate", "finalDate"), TZ, COMPANY),
                  ok=obj(data=arr(obj(quantidade=INT, nome=STR)))),
    dashboard.get("/dashboard/ticketsDay", "Tickets created per local hour of one day, or per day (SaaS lineage)",
                  auth="admin", params=(*dates("initialDate", "finalDate"), TZ, COMPANY),
                  ok=obj(count=INT, data=arr({"anyOf": [obj(total=INT, horario=INT),
                                                        obj(total=INT, data={**STR, "description": "dd/mm/YYYY"})]}))),

    reports.get("/ticketreport/reports", "A page of the tickets report, newest first (times in seconds)",
                auth="admin", params=(*REPORT_FILTERS, PAGE,
                                      query("pageSize", {"type": "integer", "minimum": 1, "maximum": 100},
                                            "default 20")),
                ok=obj(tickets=arr(REPORT_TICKET), totalTickets=obj(total=INT), count=INT, hasMore=BOOL)),
    reports.get("/ticketreport/reports/export", "Every ticket of the report as CSV or XLSX, oldest first (streamed)",
                auth="admin", params=(query("format", enum("csv", "xlsx"), "default csv"), *REPORT_FILTERS),
                ok_type="text/csv", ok={"type": "string", "description": "UTF-8 with a BOM; cells that a "
                                        "spreadsheet would run as formulas are quoted as text"},
                other_ok=(("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                           {"type": "string", "format": "binary"}),)),
    reports.get("/ticketreport/sla", "First response and resolution p50/p90 and breaches, ratings, a "
                "weekday by hour heatmap", auth="admin",
                params=(*dates("dateFrom", "dateTo"), *dates("date_from", "date_to"), TZ, COMPANY,
                        query("firstResponseMinutes", {"type": "integer", "minimum": 1, "maximum": 100_000},
                              "default 15"),
                        query("resolutionMinutes", {"type": "integer", "minimum": 1, "maximum": 1_000_000},
                              "default 1440")),
                ok=obj(period=obj(start=TIME, end=TIME),
                       thresholds=obj(firstResponseMinutes=INT, resolutionMinutes=INT),
                       overall=obj(FIGURES),
                       byQueue=arr(obj({"queueId": NID, "name": NSTR, **FIGURES})),
                       byUser=arr(obj({"userId": NID, "name": NSTR, **FIGURES})),
                       csat=obj(average=NNUM, count=INT,
                                distribution=obj({str(rate): INT for rate in range(1, 6)})),
                       heatmap=arr(arr(INT), description="7 rows (Monday first) of 24 hours"))),
]
