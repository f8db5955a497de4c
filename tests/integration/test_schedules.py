"""Scheduled messages (`/schedules`, issue 13 point 4) on the real app and the sandbox: CRUD and its 400s and
404s, the realtime events, a schedule due in a second sent once (the sandbox outbox counts it), the ERRO path
and its retry, a recurring one that sends its count and stops."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import trio

from gateway.broker import Subscription
from tests.integration.conftest import Api, Server, auth
from tests.integration.test_conversations import connected_sandbox

TIMEOUT = 60
CUSTOMER = "5511955550077"


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def iso(when: dt.datetime) -> str:
    return when.isoformat()


async def new_contact(api: Api, token: str, name: str = "Ana Souza", number: str = CUSTOMER) -> dict[str, Any]:
    response = await api.client.post("/contacts", json={"name": name, "number": number}, headers=auth(token))
    assert response.status_code in (200, 201), response.text
    return response.json()


async def new_schedule(api: Api, token: str, status: int = 200, **fields: Any) -> dict[str, Any]:
    response = await api.client.post("/schedules", json=fields, headers=auth(token))
    assert response.status_code == status, (fields, response.text)
    return response.json()


async def show(api: Api, token: str, schedule_id: int) -> dict[str, Any]:
    response = await api.client.get(f"/schedules/{schedule_id}", headers=auth(token))
    assert response.status_code == 200, response.text
    return response.json()


async def outbox(api: Api, token: str, wid: int) -> list[dict[str, Any]]:
    response = await api.client.get(f"/sandbox/{wid}/outbox", headers=auth(token))
    assert response.status_code == 200, response.text
    return response.json()


async def wait_status(api: Api, token: str, schedule_id: int, status: str, **also: Any) -> dict[str, Any]:
    while True:
        found = await show(api, token, schedule_id)
        if found["status"] == status and all(found[k] == v for k, v in also.items()):
            return found
        await trio.sleep(0.05)


def schedule_events(subscription: Subscription) -> list[tuple[str, Any, Any]]:
    seen = []
    while (event := subscription.receive_nowait()) is not None:
        if event.name.endswith("-schedule") or event.name == "schedule":
            payload = event.payload
            item = payload.get("schedule") or {}
            seen.append((payload["action"], item.get("status", payload.get("scheduleId")), item.get("sentCount")))
            assert (event.name == "schedule") == (payload["action"] == "delete"), event
    return seen


async def company_b(api: Api) -> dict[str, Any]:
    super_token = await api.admin_token()
    company = await api.create_company(super_token, "Beta", "admin@beta.test", "beta-pass-1")
    token = await api.login("admin@beta.test", "beta-pass-1")
    return {"id": company["id"], "token": token}


async def test_crud_shapes_and_events(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT), server.broker.subscribe(1) as events:
        token = await api.admin_token()
        wid = (await api.client.post("/whatsapp", json={"name": "line", "channel": "sandbox"},
                                     headers=auth(token))).json()["id"]
        contact = await new_contact(api, token)
        # a time without an offset, as ticketz's datetime-local field sends it: the company's zone (São Paulo)
        local = (now() + dt.timedelta(hours=2)).astimezone(ZoneInfo("America/Sao_Paulo")).replace(second=0,
                                                                                                 microsecond=0)
        made = await new_schedule(api, token, body="Olá {{name}}, lembrete", contactId=contact["id"],
                                  sendAt=local.strftime("%Y-%m-%dT%H:%M"), saveMessage=True, userId=999)
        assert made["status"] == "AGENDADA" and made["sentAt"] is None and made["sentCount"] == 0
        assert dt.datetime.fromisoformat(made["sendAt"]) == local
        assert made["contact"] == {"id": contact["id"], "name": "Ana Souza", "number": CUSTOMER}
        assert made["user"]["name"] and made["userId"] != 999 and made["whatsappId"] == wid
        assert (made["saveMessage"], made["openTicket"], made["recurrence"]) == (True, False, "none")
        timer = server.sql("SELECT kind, key, due_at, state FROM timers WHERE key = %s", (f"schedule:{made['id']}",))
        assert timer == [("schedule", f"schedule:{made['id']}", local, "pending")]
        listed = (await api.client.get("/schedules", params={"searchParam": "lembrete"}, headers=auth(token))).json()
        assert listed["count"] == 1 and listed["hasMore"] is False and listed["schedules"][0]["id"] == made["id"]
        assert listed["schedules"][0]["contact"]["name"] == "Ana Souza"
        for params, count in (({"contactId": contact["id"]}, 1), ({"contactId": contact["id"] + 1000}, 0),
                              ({"userId": made["userId"]}, 1), ({"searchParam": "ana sou"}, 1),
                              ({"searchParam": "nada disso"}, 0)):
            found = (await api.client.get("/schedules", params=params, headers=auth(token))).json()
            assert found["count"] == count, params
        # the modal sends the whole record back (with its time cut to minutes): the body changes, the timer not
        back = {**made, "body": "Lembrete editado", "sendAt": local.strftime("%Y-%m-%dT%H:%M"), "sentAt": ""}
        edited = await api.client.put(f"/schedules/{made['id']}", json=back, headers=auth(token))
        assert edited.status_code == 200, edited.text
        assert edited.json()["body"] == "Lembrete editado" and edited.json()["status"] == "AGENDADA"
        generation = server.sql("SELECT generation FROM timers WHERE key = %s", (f"schedule:{made['id']}",))
        assert generation == [(1,)]
        later = local + dt.timedelta(days=1)
        moved = await api.client.put(f"/schedules/{made['id']}", json={"sendAt": iso(later)}, headers=auth(token))
        assert moved.status_code == 200 and dt.datetime.fromisoformat(moved.json()["sendAt"]) == later
        assert server.sql("SELECT due_at, generation FROM timers WHERE key = %s AND state = 'pending'",
                          (f"schedule:{made['id']}",)) == [(later, 2)]
        deleted = await api.client.delete(f"/schedules/{made['id']}", headers=auth(token))
        assert deleted.status_code == 200
        assert server.sql("SELECT count(*) FROM schedules") == [(0,)]
        assert server.sql("SELECT count(*) FROM timers WHERE key LIKE 'schedule:%%'") == [(0,)]
        assert (await api.client.get(f"/schedules/{made['id']}", headers=auth(token))).status_code == 404
        assert schedule_events(events) == [("create", "AGENDADA", 0), ("update", "AGENDADA", 0),
                                           ("update", "AGENDADA", 0), ("delete", made["id"], None)]


async def test_bad_input_is_refused_with_nothing_written(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        await api.client.post("/whatsapp", json={"name": "line", "channel": "sandbox"}, headers=auth(token))
        contact = await new_contact(api, token)
        soon = iso(now() + dt.timedelta(minutes=5))
        good = {"body": "Olá", "contactId": contact["id"], "sendAt": soon}
        cases: list[tuple[dict[str, Any], int, str]] = [
            ({**good, "body": "   "}, 400, "body"),
            ({k: v for k, v in good.items() if k != "body"}, 400, "body"),
            ({k: v for k, v in good.items() if k != "contactId"}, 400, "contactId"),
            ({k: v for k, v in good.items() if k != "sendAt"}, 400, "sendAt"),
            ({**good, "sendAt": "amanhã"}, 400, "sendAt"),
            ({**good, "sendAt": iso(now() - dt.timedelta(minutes=10))}, 400, "sendAt"),
            ({**good, "sendAt": iso(now() + dt.timedelta(days=4000))}, 400, "sendAt"),
            ({**good, "recurrence": "hourly"}, 400, "recurrence"),
            ({**good, "recurrence": "minutes", "recurrenceEvery": 0}, 400, "recurrenceEvery"),
            ({**good, "recurrence": "months", "recurrenceEvery": 500}, 400, "recurrenceEvery"),
            ({**good, "recurrence": "cron", "cron": "61 * * * *"}, 400, "cron"),
            ({**good, "recurrence": "cron", "cron": "0 9 * *"}, 400, "cron"),
            ({**good, "recurrence": "cron", "cron": "0 0 30 2 *"}, 400, "cron"),
            ({**good, "recurrence": "days", "recurrenceUntil": iso(now())}, 400, "recurrenceUntil"),
            ({**good, "recurrenceCount": -1}, 400, "recurrenceCount"),
            ({**good, "saveMessage": "yes"}, 400, "saveMessage"),
            ({**good, "mediaPath": "/etc/passwd"}, 400, "mediaPath"),
            ({**good, "mediaPath": "/media/abcdefghijkl/none.png"}, 400, "mediaPath"),
            ({**good, "body": "x" * 10_001}, 400, "body"),
            ({**good, "contactId": 987654}, 404, ""),
            ({**good, "whatsappId": 987654}, 404, ""),
        ]
        for body, status, field in cases:
            response = await api.client.post("/schedules", json=body, headers=auth(token))
            assert response.status_code == status, (body, response.text)
            payload = response.json()
            assert payload["error"].startswith("ERR_") and payload["message"], payload
            if field:
                assert payload.get("field") == field, (body, payload)
        assert server.sql("SELECT count(*) FROM schedules") == [(0,)]
        assert server.sql("SELECT count(*) FROM timers") == [(0,)]
        # a cron series starts at sendAt (or now): its first time at or after it
        cron = await new_schedule(api, token, body="Bom dia", contactId=contact["id"], recurrence="cron",
                                  cron="*/15 * * * *")
        first = dt.datetime.fromisoformat(cron["sendAt"])
        assert first.minute % 15 == 0 and first.second == 0 and now() <= first <= now() + dt.timedelta(minutes=15)


async def test_another_company_sees_and_changes_nothing(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        wid = (await api.client.post("/whatsapp", json={"name": "line", "channel": "sandbox"},
                                     headers=auth(token))).json()["id"]
        contact = await new_contact(api, token)
        mine = await new_schedule(api, token, body="Só nosso", contactId=contact["id"],
                                  sendAt=iso(now() + dt.timedelta(hours=1)))
        other = await company_b(api)
        their_contact = await new_contact(api, other["token"], "Bruno", "5511955550088")
        before = server.sql("SELECT row_to_json(s)::text FROM schedules s ORDER BY id")
        headers = auth(other["token"])
        for method, path, body in (("GET", f"/schedules/{mine['id']}", None),
                                   ("PUT", f"/schedules/{mine['id']}", {"body": "Roubado"}),
                                   ("DELETE", f"/schedules/{mine['id']}", None),
                                   ("DELETE", f"/schedules/{mine['id']}/media-upload", None)):
            response = await api.client.request(method, path, json=body, headers=headers)
            assert response.status_code == 404 and response.json()["error"] == "ERR_NOT_FOUND", (method, path)
        upload = await api.client.post(f"/schedules/{mine['id']}/media-upload", headers=headers,
                                       files={"file": ("a.png", b"png", "image/png")})
        assert upload.status_code == 404
        # their schedule may not name our contact or connection
        for body in ({"contactId": contact["id"]}, {"contactId": their_contact["id"], "whatsappId": wid}):
            response = await api.client.post("/schedules", json={"body": "x", "sendAt": iso(now() + dt.timedelta(
                hours=1)), **body}, headers=headers)
            assert response.status_code in (400, 404), response.text  # (Beta has no connection: 400 or 404)
        listed = (await api.client.get("/schedules", headers=headers)).json()
        assert listed == {"schedules": [], "count": 0, "hasMore": False}
        # the schedule dialog's contact picker (GET /contacts/list): each company its own contacts
        theirs = (await api.client.get("/contacts/list", headers=headers)).json()
        ours = (await api.client.get("/contacts/list", params={"name": "ana"}, headers=auth(token))).json()
        assert [c["id"] for c in theirs] == [their_contact["id"]] and [c["id"] for c in ours] == [contact["id"]]
        assert server.sql("SELECT row_to_json(s)::text FROM schedules s ORDER BY id") == before


async def test_only_the_author_or_an_admin_changes_a_schedule(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        admin = await api.admin_token()
        await api.client.post("/whatsapp", json={"name": "line", "channel": "sandbox"}, headers=auth(admin))
        contact = await new_contact(api, admin)
        await api.create_user(admin, "ana@zapgate.test")
        await api.create_user(admin, "bia@zapgate.test")
        ana, bia = await api.login("ana@zapgate.test", "user-pass-1"), await api.login("bia@zapgate.test",
                                                                                         "user-pass-1")
        made = await new_schedule(api, ana, body="Da Ana", contactId=contact["id"],
                                  sendAt=iso(now() + dt.timedelta(hours=1)))
        for method, body in (("PUT", {"body": "Da Bia"}), ("DELETE", None)):
            response = await api.client.request(method, f"/schedules/{made['id']}", json=body, headers=auth(bia))
            assert response.status_code == 403 and response.json()["error"] == "ERR_NO_PERMISSION"
        assert (await show(api, bia, made["id"]))["body"] == "Da Ana"  # any user of the company sees it
        assert (await api.client.put(f"/schedules/{made['id']}", json={"body": "Da Ana, editado"},
                                     headers=auth(ana))).status_code == 200
        assert (await api.client.delete(f"/schedules/{made['id']}", headers=auth(admin))).status_code == 200


async def test_due_in_a_second_is_sent_once_into_the_ticket(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT), server.broker.subscribe(1) as events:
        token = await api.admin_token()
        wid = await connected_sandbox(api, token)
        contact = await new_contact(api, token)
        due = now() + dt.timedelta(seconds=1)
        made = await new_schedule(api, token, body="Oi {{firstname}}, seu pedido saiu", contactId=contact["id"],
                                  sendAt=iso(due), openTicket=True)
        sent = await wait_status(api, token, made["id"], "ENVIADA")
        assert dt.datetime.fromisoformat(sent["sentAt"]) >= due and sent["sentCount"] == 1 and sent["ticketId"]
        assert dt.datetime.fromisoformat(sent["sentAt"]) - due < dt.timedelta(seconds=1)
        while not (got := await outbox(api, token, wid)):
            await trio.sleep(0.05)
        await trio.sleep(1.0)  # a second send would be here by now
        got = await outbox(api, token, wid)
        assert [(item["body"], item["attempts"], item["duplicates"]) for item in got] == [
            ("Oi Ana, seu pedido saiu", 1, 0)]
        rows = server.sql("SELECT m.sent_by, m.status, t.status, t.user_id IS NOT NULL FROM messages m "
                          "JOIN tickets t ON t.id = m.ticket_id WHERE m.ticket_id = %s", (sent["ticketId"],))
        assert rows == [("schedule", "sent", "open", True)]  # openTicket: a new ticket, open for its author
        assert server.sql("SELECT state FROM timers WHERE key = %s", (f"schedule:{made['id']}",)) == [("done",)]
        seen = schedule_events(events)
        assert seen[0] == ("create", "AGENDADA", 0) and seen[-1] == ("update", "ENVIADA", 1)
        # sent: the modal shows no save button (sentAt); editing the text alone does not send it again
        edited = await api.client.put(f"/schedules/{made['id']}", json={"body": "outra coisa"}, headers=auth(token))
        assert edited.status_code == 200 and edited.json()["status"] == "ENVIADA"


async def test_without_open_ticket_nor_save_the_send_goes_into_a_closed_ticket(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        wid = await connected_sandbox(api, token)
        contact = await new_contact(api, token)
        made = await new_schedule(api, token, body="Aviso", contactId=contact["id"],
                                  sendAt=iso(now() + dt.timedelta(seconds=1)))
        sent = await wait_status(api, token, made["id"], "ENVIADA")
        ticket = server.sql("SELECT status, user_id FROM tickets WHERE id = %s", (sent["ticketId"],))
        assert ticket == [("closed", None)]
        while not await outbox(api, token, wid):
            await trio.sleep(0.05)
        assert [item["body"] for item in await outbox(api, token, wid)] == ["Aviso"]


async def test_error_with_its_reason_then_retried_by_a_put(api: Api, server: Server, tmp_path: Path) -> None:
    with trio.fail_after(TIMEOUT), server.broker.subscribe(1) as events:
        token = await api.admin_token()
        wid = await connected_sandbox(api, token)
        contact = await new_contact(api, token)
        made = await new_schedule(api, token, body="Segue o boleto", contactId=contact["id"],
                                  sendAt=iso(now() + dt.timedelta(minutes=30)))
        upload = await api.client.post(f"/schedules/{made['id']}/media-upload", headers=auth(token),
                                       files={"file": ("boleto.pdf", b"%PDF-1.4 boleto", "application/pdf")})
        assert upload.status_code == 200, upload.text
        media_path = upload.json()["mediaPath"]
        assert (await show(api, token, made["id"]))["mediaName"] == "boleto.pdf"
        stored = server.config.data_dir / "media" / Path(media_path.removeprefix("/media/"))
        stored.unlink()  # the file goes missing from disk
        server.sql("UPDATE timers SET due_at = now() WHERE key = %s", (f"schedule:{made['id']}",))
        server.deps.scheduler.nudge()
        failed = await wait_status(api, token, made["id"], "ERRO")
        assert "boleto.pdf" in failed["lastError"] and failed["sentCount"] == 0
        assert await outbox(api, token, wid) == []
        assert server.sql("SELECT state FROM timers WHERE key = %s", (f"schedule:{made['id']}",)) == [("done",)]
        assert ("update", "ERRO", 0) in schedule_events(events)
        # the user removes the file and reschedules it: it goes out
        removed = await api.client.delete(f"/schedules/{made['id']}/media-upload", headers=auth(token))
        assert removed.status_code == 200
        retry = await api.client.put(f"/schedules/{made['id']}", json={"sendAt": iso(now() + dt.timedelta(seconds=1))},
                                     headers=auth(token))
        assert retry.status_code == 200 and retry.json()["status"] == "AGENDADA" and retry.json()["lastError"] is None
        await wait_status(api, token, made["id"], "ENVIADA")
        while not (got := await outbox(api, token, wid)):
            await trio.sleep(0.05)
        assert [item["body"] for item in got] == ["Segue o boleto"]


async def test_a_contact_without_number_is_an_error(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        await connected_sandbox(api, token)
        contact_id = server.sql("INSERT INTO contacts (company_id, name, number) VALUES (1, 'Sem número', '') "
                                "RETURNING id")[0][0]
        made = await new_schedule(api, token, body="Olá", contactId=contact_id,
                                  sendAt=iso(now() + dt.timedelta(seconds=1)))
        failed = await wait_status(api, token, made["id"], "ERRO")
        assert failed["lastError"] == "the contact has no number"
        assert server.sql("SELECT count(*) FROM messages") == [(0,)]


async def test_a_recurring_schedule_sends_its_count_and_stops(api: Api, server: Server) -> None:
    """Every minute, twice: the first send at its time, the second when its timer comes due (moved to now
    here instead of waiting a minute: tests/e2e/test_schedules_restart.py waits the real minute)."""
    with trio.fail_after(TIMEOUT), server.broker.subscribe(1) as events:
        token = await api.admin_token()
        wid = await connected_sandbox(api, token)
        contact = await new_contact(api, token)
        start = now() + dt.timedelta(seconds=1)
        made = await new_schedule(api, token, body="Lembrete {{name}}", contactId=contact["id"], sendAt=iso(start),
                                  recurrence="minutes", recurrenceEvery=1, recurrenceCount=2, saveMessage=True)
        assert (made["recurrence"], made["recurrenceEvery"], made["recurrenceCount"]) == ("minutes", 1, 2)
        first = await wait_status(api, token, made["id"], "AGENDADA", sentCount=1)
        assert dt.datetime.fromisoformat(first["sendAt"]) == start + dt.timedelta(minutes=1)
        key = f"schedule:{made['id']}"
        assert server.sql("SELECT state FROM timers WHERE key = %s ORDER BY id", (key,)) == [("done",), ("pending",)]
        server.sql("UPDATE timers SET due_at = now() WHERE key = %s AND state = 'pending'", (key,))
        server.deps.scheduler.nudge()
        done = await wait_status(api, token, made["id"], "ENVIADA", sentCount=2)
        assert server.sql("SELECT state FROM timers WHERE key = %s ORDER BY id", (key,)) == [("done",), ("done",)]
        while len(await outbox(api, token, wid)) < 2:
            await trio.sleep(0.05)
        await trio.sleep(1.0)
        assert [item["body"] for item in await outbox(api, token, wid)] == ["Lembrete Ana Souza"] * 2
        # both in the one pending ticket (saveMessage), in order
        assert server.sql("SELECT count(DISTINCT ticket_id), min(t.status) FROM messages m JOIN tickets t "
                          "ON t.id = m.ticket_id") == [(1, "pending")]
        assert done["ticketId"] is not None
        assert schedule_events(events) == [("create", "AGENDADA", 0), ("update", "ENVIADA", 1),
                                           ("update", "AGENDADA", 1), ("update", "ENVIADA", 2)]
