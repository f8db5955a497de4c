"""Reports (issue 17): the tickets report's filters and pages; its CSV and XLSX exports read back with the
same rows; SLA percentiles, breaches against the thresholds given, CSAT and the heat map, on a history
scripted at fixed instants; bad input."""

from __future__ import annotations

import csv
import io
from typing import Any

import trio
from openpyxl import load_workbook

from tests.integration.conftest import Api, Server, auth
from tests.integration.test_dashboard import get, make_connection

TIMEOUT = 60


def history(server: Server, user_id: int) -> dict[str, int]:
    """Three tickets on 2018-11-04/05 (São Paulo) with known times, one tagged, one rated; a queue."""
    queue = server.sql("INSERT INTO queues (company_id, name) VALUES (1, 'Vendas') RETURNING id")[0][0]
    tag = server.sql("INSERT INTO tags (company_id, name) VALUES (1, 'VIP') RETURNING id")[0][0]
    wid = make_connection(server)
    ids: dict[str, int] = {}
    plan = [  # name, created, first reply after (s), closed after (s), queue?, rate
        ("Ana", "2018-11-04T12:00:00Z", 600, 3600, True, 5),
        ("Bia", "2018-11-04T13:00:00Z", 1800, 4 * 3600, True, None),
        ("=Caio", "2018-11-05T12:00:00Z", None, None, False, None),  # a formula-looking name (CSV injection)
    ]
    for name, created, reply, close, queued, rate in plan:
        contact = server.sql("INSERT INTO contacts (company_id, name, number) VALUES (1, %s, %s) RETURNING id",
                             (name, f"55119{len(ids):08d}"))[0][0]
        ticket = server.sql("INSERT INTO tickets (company_id, contact_id, whatsapp_id, queue_id, user_id, status, "
                            "created_at) VALUES (1, %s, %s, %s, %s, %s, %s) RETURNING id",
                            (contact, wid, queue if queued else None, user_id if reply else None,
                             "closed" if close else "pending", created))[0][0]
        ids[name] = ticket
        event = ("INSERT INTO ticket_events (company_id, ticket_id, kind, user_id, queue_id, created_at) "
                 "VALUES (1, %s, %s, %s, %s, %s::timestamptz + %s * interval '1 second')")
        q = queue if queued else None
        server.sql(event, (ticket, "created", None, q, created, 0))
        if reply:
            server.sql(event, (ticket, "accepted", user_id, q, created, 60))
            server.sql(event, (ticket, "first_reply", user_id, q, created, reply))
        if close:
            server.sql(event, (ticket, "closed", user_id, q, created, close))
        if rate:
            server.sql("INSERT INTO user_ratings (company_id, ticket_id, user_id, rate, created_at) "
                       "VALUES (1, %s, %s, %s, %s::timestamptz + interval '2 hours')", (ticket, user_id, rate, created))
    server.sql("INSERT INTO ticket_tags (company_id, ticket_id, tag_id) VALUES (1, %s, %s)", (ids["Bia"], tag))
    return {**ids, "queue": queue, "tag": tag, "whatsapp": wid}


async def test_the_report_filters_and_pages(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        me = (await api.client.get("/auth/me", headers=auth(token))).json()["id"]
        ids = history(server, me)
        days = {"dateFrom": "2018-11-04", "dateTo": "2018-11-05"}
        every = await get(api, token, "/ticketreport/reports", **days)
        assert [t["id"] for t in every["tickets"]] == [ids["=Caio"], ids["Bia"], ids["Ana"]]
        assert every["totalTickets"] == {"total": 3} and every["hasMore"] is False
        ana = every["tickets"][2]
        assert ana["contact"]["name"] == "Ana" and ana["queue"]["name"] == "Vendas" and ana["rating"] == 5
        assert (ana["waitTime"], ana["firstResponseTime"], ana["resolutionTime"]) == (60, 600, 3600)
        assert ana["createdAt"] == "2018-11-04T10:00:00-02:00"  # the company's zone
        assert every["tickets"][1]["tags"] == "VIP"
        for params, expected in (({"dateFrom": "2018-11-04", "dateTo": "2018-11-04"}, ["Bia", "Ana"]),
                                 ({**days, "status": "pending"}, ["=Caio"]),
                                 ({**days, "queueId": ids["queue"]}, ["Bia", "Ana"]),
                                 ({**days, "userId": me}, ["Bia", "Ana"]),
                                 ({**days, "tagId": ids["tag"]}, ["Bia"]),
                                 ({**days, "whatsappId": ids["whatsapp"]}, ["=Caio", "Bia", "Ana"]),
                                 ({"tz": "Pacific/Kiritimati", "dateFrom": "2018-11-05", "dateTo": "2018-11-05"},
                                  ["Bia", "Ana"])):
            found = await get(api, token, "/ticketreport/reports", **params)
            assert [t["id"] for t in found["tickets"]] == [ids[n] for n in expected], params
        first = await get(api, token, "/ticketreport/reports", pageSize=2, pageNumber=1, **days)
        second = await get(api, token, "/ticketreport/reports", pageSize=2, pageNumber=2, **days)
        assert [t["id"] for t in first["tickets"] + second["tickets"]] == [ids["=Caio"], ids["Bia"], ids["Ana"]]
        assert first["hasMore"] is True and second["hasMore"] is False and second["count"] == 3
        for params in ({"status": "open-ish"}, {"queueId": "x"}, {"pageSize": "1000"}, {"dateFrom": "2018-13-01"},
                       {"tz": "Nowhere/Land"}):
            body = await get(api, token, "/ticketreport/reports", 400, **params)
            assert body["error"] == "ERR_VALIDATION" and body["message"]
        body = await get(api, token, "/ticketreport/reports/export", 400, format="pdf")
        assert body["error"] == "ERR_VALIDATION"


async def test_csv_and_xlsx_exports_read_back_with_the_same_rows(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        me = (await api.client.get("/auth/me", headers=auth(token))).json()["id"]
        history(server, me)
        days = {"dateFrom": "2018-11-04", "dateTo": "2018-11-05"}
        report = await get(api, token, "/ticketreport/reports", **days)
        response = await api.client.get("/ticketreport/reports/export", params={"format": "csv", **days},
                                        headers=auth(token))
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
        assert "attachment" in response.headers["content-disposition"]
        rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
        response = await api.client.get("/ticketreport/reports/export", params={"format": "xlsx", **days},
                                        headers=auth(token))
        assert response.status_code == 200 and "spreadsheetml" in response.headers["content-type"]
        sheet = load_workbook(io.BytesIO(response.content), read_only=True).active
        width = len(rows[0])  # a row's trailing empty cells are not stored: pad them back
        cells = [["" if value is None else value for value in row] + [""] * (width - len(row))
                 for row in sheet.iter_rows(values_only=True)]
        assert rows[0] == [str(value) for value in cells[0]] and rows[0][0] == "id"
        expected = sorted(report["tickets"], key=lambda t: t["id"])  # exports are oldest first
        assert [int(r[0]) for r in rows[1:]] == [t["id"] for t in expected] == [c[0] for c in cells[1:]]
        for text_row, cell_row, ticket in zip(rows[1:], cells[1:], expected, strict=True):
            assert [_same(c) for c in cell_row] == [_same(v) for v in text_row]
            assert text_row[3].lstrip("'") == ticket["contact"]["name"] == cell_row[3]
            assert text_row[12] == ("" if ticket["rating"] is None else str(ticket["rating"]))
        caio = next(r for r in rows if r[3].endswith("=Caio"))
        assert caio[3] == "'=Caio"  # written as text in the CSV: no formula runs when it is opened


def _same(value: Any) -> Any:
    """A cell compared by value: numbers as floats (CSV has text, XLSX numbers), the CSV's formula guard off."""
    text = str(value)
    text = text[1:] if text.startswith("'") else text
    try:
        return float(text)
    except ValueError:
        return text


async def test_sla_figures_csat_and_the_heat_map(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        me = (await api.client.get("/auth/me", headers=auth(token))).json()["id"]
        ids = history(server, me)
        days = {"dateFrom": "2018-11-04", "dateTo": "2018-11-05"}
        sla: dict[str, Any] = await get(api, token, "/ticketreport/sla", firstResponseMinutes=15,
                                        resolutionMinutes=120, **days)
        overall = sla["overall"]
        # first responses 600 s and 1800 s: p50 1200, p90 600 + 0.9 x 1200; one past 15 minutes; resolutions
        # 3600 s and 14400 s: p50 9000, p90 3600 + 0.9 x 10800; one past 2 hours
        assert overall["firstResponse"] == {"p50": 1200, "p90": 1680, "count": 2, "breaches": 1}
        assert overall["resolution"] == {"p50": 9000, "p90": 13320, "count": 2, "breaches": 1}
        assert [(q["queueId"], q["name"], q["firstResponse"]["count"]) for q in sla["byQueue"]] == \
               [(ids["queue"], "Vendas", 2)]
        assert [(u["userId"], u["resolution"]["breaches"]) for u in sla["byUser"]] == [(me, 1)]
        assert sla["csat"] == {"average": 5, "count": 1, "distribution": {"1": 0, "2": 0, "3": 0, "4": 0, "5": 1}}
        # tickets created: Sunday 2018-11-04 10:00 and 11:00 -02, Monday 2018-11-05 10:00 -02
        grid = sla["heatmap"]
        assert grid[6][10] == 1 and grid[6][11] == 1 and grid[0][10] == 1 and sum(map(sum, grid)) == 3
        loose = await get(api, token, "/ticketreport/sla", firstResponseMinutes=60, resolutionMinutes=600, **days)
        assert loose["overall"]["firstResponse"]["breaches"] == 0 and loose["overall"]["resolution"]["breaches"] == 0
        utc = await get(api, token, "/ticketreport/sla", tz="UTC", **days)
        assert utc["heatmap"][6][12] == 1 and utc["heatmap"][0][12] == 1
        assert (await get(api, token, "/ticketreport/sla", 400, firstResponseMinutes="-1"))["error"] == "ERR_VALIDATION"
