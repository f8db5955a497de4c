"""Campaigns (`/campaigns`, `/campaign-settings`): ticketz's routes and shapes, status rules, bad input,
tenancy, the plan's feature, the reports computed from shipping rows (inserted by SQL: the core that sends
is another module), and what a contact's reply does (opt-out, replied, confirmation) through the sandbox."""

from __future__ import annotations

import datetime as dt
import io
import json
from typing import Any

import attrs
import openpyxl
import pytest
import trio

from tests.integration.conftest import Api, Server, auth
from tests.integration.test_contact_lists import Events
from tests.integration.test_conversations import connected_sandbox, inbound, wait_sql
from tests.integration.test_plans import company_on, create_plan

TIMEOUT = 60


@attrs.frozen
class World:
    token: str  # admin of Default
    company_id: int
    user: str  # a plain user of Default
    b_token: str  # admin of Beta
    b_company_id: int
    whatsapp_id: int
    list_id: int
    b_whatsapp_id: int
    b_list_id: int


def _sql(server: Server, query: str, params: Any = None) -> list[tuple[Any, ...]]:
    return server.sql(query, params)


async def sql(server: Server, query: str, params: Any = None) -> list[tuple[Any, ...]]:
    return await trio.to_thread.run_sync(_sql, server, query, params)


async def one(server: Server, query: str, params: Any = None) -> Any:
    return (await sql(server, query, params))[0][0]


@pytest.fixture
async def world(api: Api, server: Server) -> World:
    token = await api.admin_token()
    me = (await api.client.get("/auth/me", headers=auth(token))).json()
    await api.create_user(token, "agent@default.test", "agent-pass-1")
    beta = await api.create_company(token, "Beta", "admin@beta.test", "beta-pass-1")
    company_id, b_company_id = me["companyId"], beta["id"]

    async def line_and_list(company: int) -> tuple[int, int]:
        wid = await one(server, "INSERT INTO whatsapps (company_id, name, channel) VALUES (%s, 'Linha', 'sandbox') "
                                "RETURNING id", (company,))
        lid = await one(server, "INSERT INTO contact_lists (company_id, name) VALUES (%s, 'Clientes') RETURNING id",
                        (company,))
        await sql(server, "INSERT INTO contact_list_items (company_id, contact_list_id, name, number, "
                          "is_whatsapp_valid) VALUES (%s, %s, 'Ana', '5511988880001', true), "
                          "(%s, %s, 'Bia', '5511988880002', NULL), (%s, %s, 'Cid', '5511988880003', false)",
                  (company, lid, company, lid, company, lid))
        return wid, lid

    wid, lid = await line_and_list(company_id)
    b_wid, b_lid = await line_and_list(b_company_id)
    return World(token=token, company_id=company_id, user=await api.login("agent@default.test", "agent-pass-1"),
                 b_token=await api.login("admin@beta.test", "beta-pass-1"), b_company_id=b_company_id,
                 whatsapp_id=wid, list_id=lid, b_whatsapp_id=b_wid, b_list_id=b_lid)


def body(world: World, **fields: Any) -> dict[str, Any]:
    return {"name": "Promoção", "whatsappId": world.whatsapp_id, "contactListId": world.list_id,
            "message1": "Olá {nome}!", "message2": "", "confirmation": False, "scheduledAt": "", **fields}


async def create(api: Api, token: str, payload: dict[str, Any]) -> dict[str, Any]:
    response = await api.client.post("/campaigns", json=payload, headers=auth(token))
    assert response.status_code == 200, response.text
    return response.json()


def assert_error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    payload = response.json()
    assert payload["error"].startswith("ERR_") and payload["message"], payload
    if code is not None:
        assert payload["error"] == code, payload
    return payload


SNAPSHOT = ("SELECT (SELECT coalesce(json_agg(c ORDER BY c.id), '[]') FROM campaigns c), "
            "(SELECT coalesce(json_agg(s ORDER BY s.id), '[]') FROM campaign_shippings s), "
            "(SELECT coalesce(json_agg(s ORDER BY s.key), '[]') FROM campaign_settings s)")


# ─── CRUD with ticketz's shapes and events ──────────────────────────────────────────────

async def test_create_list_show_update_delete(api: Api, server: Server, world: World) -> None:
    with trio.fail_after(TIMEOUT), server.broker.subscribe(world.company_id) as subscription:
        events = Events(subscription)
        made = await create(api, world.user, body(world))  # any user, as ticketz
        assert made["status"] == "INATIVA" and made["message1"] == "Olá {nome}!" and made["message2"] == ""
        assert made["contactList"] == {"id": world.list_id, "name": "Clientes"}
        assert made["whatsapp"] == {"id": world.whatsapp_id, "name": "Linha"}
        assert made["contactsCount"] == 2  # the items not known to be off WhatsApp
        created = events.named("-campaign")
        assert created[-1]["action"] == "create" and created[-1]["record"]["id"] == made["id"]

        later = (dt.datetime.now() + dt.timedelta(days=2)).strftime("%Y-%m-%d %H:%M:%S")  # ticketz's format
        scheduled = await create(api, world.token, body(world, name="Agendada", scheduledAt=later))
        assert scheduled["status"] == "PROGRAMADA" and scheduled["scheduledAt"]

        page = (await api.client.get("/campaigns", params={"searchParam": "agend", "pageNumber": 1},
                                     headers=auth(world.token))).json()
        assert [r["id"] for r in page["records"]] == [scheduled["id"]] and page["count"] == 1
        assert page["hasMore"] is False
        listed = (await api.client.get("/campaigns/list", headers=auth(world.user))).json()
        assert {r["id"] for r in listed} == {made["id"], scheduled["id"]}

        shown = (await api.client.get(f"/campaigns/{made['id']}", headers=auth(world.user))).json()
        assert shown["campaign"]["id"] == made["id"] and shown["valids"] == 2
        assert (shown["delivered"], shown["confirmationRequested"], shown["confirmed"]) == (0, 0, 0)

        # the modal sends the whole campaign back, its objects included: unknown keys are ignored
        edited = await api.client.put(f"/campaigns/{made['id']}", json={**shown["campaign"], "name": "Renomeada",
                                                                        "scheduledAt": later},
                                      headers=auth(world.user))
        assert edited.status_code == 200, edited.text
        assert edited.json()["name"] == "Renomeada" and edited.json()["status"] == "PROGRAMADA"
        back = await api.client.put(f"/campaigns/{made['id']}", json={"name": "Renomeada", "scheduledAt": None},
                                    headers=auth(world.user))
        assert back.json()["status"] == "INATIVA"
        assert events.named("-campaign")[-1]["record"]["name"] == "Renomeada"

        deleted = await api.client.delete(f"/campaigns/{made['id']}", headers=auth(world.user))
        assert deleted.status_code == 200, deleted.text
        assert events.named("-campaign")[-1] == {"name": f"company-{world.company_id}-campaign",
                                                  "action": "delete", "id": made["id"]}
        assert await one(server, "SELECT count(*) FROM campaigns WHERE id = %s", (made["id"],)) == 0


async def test_bad_input_is_refused_whole(api: Api, server: Server, world: World) -> None:
    with trio.fail_after(TIMEOUT):
        before = await sql(server, SNAPSHOT)
        cases = {
            "short name": (body(world, name="ab"), 400),
            "no message": (body(world, message1="  "), 400),
            "past schedule": (body(world, scheduledAt="2001-01-01 10:00:00"), 400),
            "bad schedule": (body(world, scheduledAt="amanhã"), 400),
            "list and tag": (body(world, tagId=1), 400),
            "huge message": (body(world, message1="x" * 10_001), 400),
            "confirmation without text": (body(world, confirmation=True), 400),
            "other company's connection": (body(world, whatsappId=world.b_whatsapp_id), 404),
            "other company's list": (body(world, contactListId=world.b_list_id), 404),
            "missing tag": (body(world, contactListId=None, tagId=987654), 404),
            "id as text": (body(world, whatsappId="abc"), 400),
        }
        for label, (payload, status) in cases.items():
            response = await api.client.post("/campaigns", json=payload, headers=auth(world.token))
            assert response.status_code == status, (label, response.text)
            assert_error(response, status)
        assert_error(await api.client.post("/campaigns", content=b"{", headers={
            **auth(world.token), "Content-Type": "application/json"}), 400)
        assert await sql(server, SNAPSHOT) == before


async def test_other_company_ids_are_not_found(api: Api, server: Server, world: World) -> None:
    with trio.fail_after(TIMEOUT):
        made = await create(api, world.token, body(world))
        before = await sql(server, SNAPSHOT)
        cid = made["id"]
        for method, path, payload in (
            ("GET", f"/campaigns/{cid}", None), ("PUT", f"/campaigns/{cid}", {"name": "Roubada"}),
            ("DELETE", f"/campaigns/{cid}", None), ("POST", f"/campaigns/{cid}/cancel", None),
            ("POST", f"/campaigns/{cid}/restart", None), ("POST", f"/campaigns/{cid}/pause", None),
            ("POST", f"/campaigns/{cid}/resume", None), ("DELETE", f"/campaigns/{cid}/media-upload", None),
            ("GET", f"/campaigns/{cid}/report", None), ("GET", f"/campaigns/{cid}/shippings", None),
            ("GET", f"/campaigns/{cid}/export?format=csv", None), ("GET", "/campaigns/987654321", None),
        ):
            response = await api.client.request(method, path, json=payload, headers=auth(world.b_token))
            assert_error(response, 404, "ERR_NOT_FOUND")
        upload = await api.client.post(f"/campaigns/{cid}/media-upload", files={"file": ("a.txt", b"x", "text/plain")},
                                       headers=auth(world.b_token))
        assert_error(upload, 404)
        assert (await api.client.get("/campaigns", headers=auth(world.b_token))).json()["count"] == 0
        assert await sql(server, SNAPSHOT) == before


async def test_plan_without_campaigns_is_refused(api: Api, server: Server, world: World) -> None:
    with trio.fail_after(TIMEOUT):
        plan = await create_plan(api, world.token, name="Sem campanhas", useCampaigns=False)
        _company, owner = await company_on(api, world.token, plan["id"], "Basica", "dono@basica.test")
        before = await sql(server, SNAPSHOT)
        for method, path, payload in (("GET", "/campaigns", None), ("GET", "/campaigns/list", None),
                                      ("POST", "/campaigns", body(world)), ("GET", "/campaign-settings", None),
                                      ("POST", "/campaign-settings", {"settings": {"messageInterval": 5}})):
            response = await api.client.request(method, path, json=payload, headers=auth(owner))
            assert_error(response, 403, "ERR_PLAN_FEATURE_DISABLED")
        assert await sql(server, SNAPSHOT) == before


# ─── status changes ─────────────────────────────────────────────────────────────────────

async def shipping(server: Server, company_id: int, campaign_id: int, number: str, **columns: Any) -> int:
    names = ", ".join(["company_id", "campaign_id", "number", *columns])
    marks = ", ".join(["%s"] * (3 + len(columns)))
    return await one(server, f"INSERT INTO campaign_shippings ({names}) VALUES ({marks}) RETURNING id",
                     (company_id, campaign_id, number, *columns.values()))


async def test_cancel_restart_pause_resume(api: Api, server: Server, world: World) -> None:
    with trio.fail_after(TIMEOUT):
        made = await create(api, world.token, body(world))
        cid = made["id"]
        assert_error(await api.client.post(f"/campaigns/{cid}/pause", headers=auth(world.token)), 400,
                     "ERR_CAMPAIGN_NOT_EDITABLE")  # not running
        # restart of a draft is "start now"
        started = await api.client.post(f"/campaigns/{cid}/restart", headers=auth(world.token))
        assert started.status_code == 204, started.text
        assert await one(server, "SELECT status FROM campaigns WHERE id = %s", (cid,)) == "EM_ANDAMENTO"
        assert_error(await api.client.put(f"/campaigns/{cid}", json={"name": "Nova"}, headers=auth(world.token)),
                     400, "ERR_CAMPAIGN_NOT_EDITABLE")
        assert_error(await api.client.delete(f"/campaigns/{cid}", headers=auth(world.token)), 400)

        paused = await api.client.post(f"/campaigns/{cid}/pause", json={"reason": "almoço"}, headers=auth(world.token))
        assert paused.status_code == 200 and paused.json()["paused"] is True
        # the campaign runs now (restart started it) on a connection that is not connected: the campaign core
        # may have paused it first ('connection down'); a paused campaign keeps its first pause
        assert paused.json()["pauseReason"] in ("almoço", "connection down")
        assert paused.json()["status"] == "EM_ANDAMENTO"
        resumed = await api.client.post(f"/campaigns/{cid}/resume", headers=auth(world.token))
        assert resumed.json()["paused"] is False and resumed.json()["pausedAt"] is None

        sent = await shipping(server, world.company_id, cid, "5511988880001", state="sent")
        failed = await shipping(server, world.company_id, cid, "5511988880002", state="failed", error="timeout",
                                attempts=3)
        assert (await api.client.post(f"/campaigns/{cid}/cancel", headers=auth(world.token))).status_code == 204
        assert await one(server, "SELECT status FROM campaigns WHERE id = %s", (cid,)) == "CANCELADA"
        assert (await api.client.post(f"/campaigns/{cid}/restart", headers=auth(world.token))).status_code == 204
        states = dict(await sql(server, "SELECT id, state FROM campaign_shippings WHERE campaign_id = %s", (cid,)))
        assert states == {sent: "sent", failed: "queued"}  # only the contact not reached goes again
        assert await one(server, "SELECT status FROM campaigns WHERE id = %s", (cid,)) == "EM_ANDAMENTO"

        await sql(server, "UPDATE campaigns SET status = 'FINALIZADA' WHERE id = %s", (cid,))
        assert_error(await api.client.post(f"/campaigns/{cid}/cancel", headers=auth(world.token)), 400)

        incomplete = await create(api, world.token, body(world, name="Sem linha", whatsappId=None))
        assert_error(await api.client.post(f"/campaigns/{incomplete['id']}/restart", headers=auth(world.token)), 400)


async def test_media_upload_and_removal(api: Api, server: Server, world: World) -> None:
    with trio.fail_after(TIMEOUT):
        made = await create(api, world.token, body(world))
        up = await api.client.post(f"/campaigns/{made['id']}/media-upload",
                                   files={"file": ("folheto.pdf", b"%PDF-1.4 test", "application/pdf")},
                                   headers=auth(world.token))
        assert up.status_code == 200, up.text
        assert up.json()["mediaName"] == "folheto.pdf" and up.json()["mediaPath"]
        shown = (await api.client.get(f"/campaigns/{made['id']}", headers=auth(world.token))).json()["campaign"]
        assert shown["mediaName"] == "folheto.pdf"
        fetched = await api.client.get(shown["mediaPath"], headers=auth(world.token))
        assert fetched.status_code == 200 and fetched.content == b"%PDF-1.4 test"
        assert_error(await api.client.post(f"/campaigns/{made['id']}/media-upload", headers=auth(world.token)), 406)
        removed = await api.client.delete(f"/campaigns/{made['id']}/media-upload", headers=auth(world.token))
        assert removed.status_code == 200
        assert await one(server, "SELECT media_path FROM campaigns WHERE id = %s", (made["id"],)) is None


# ─── settings ───────────────────────────────────────────────────────────────────────────

async def test_settings_ticketz_shape_and_pacing_keys(api: Api, server: Server, world: World) -> None:
    with trio.fail_after(TIMEOUT):
        defaults = (await api.client.get("/campaign-settings", headers=auth(world.user))).json()
        values = {item["key"]: json.loads(item["value"]) for item in defaults}  # the screen JSON.parses each
        assert values["messageInterval"] == 20 and values["variables"] == []
        assert values["stopWords"] == "SAIR,PARAR,STOP"
        saved = await api.client.post("/campaign-settings", json={"settings": {
            "messageInterval": "15", "longerIntervalAfter": 10, "greaterInterval": 90,
            "variables": [{"key": "loja", "value": "Centro"}], "dailyLimit": 300, "pacing": "off",
            "businessHoursOnly": True, "stopWords": " sair, Parar ,STOP,cancelar"}}, headers=auth(world.user))
        assert saved.status_code == 200, saved.text
        values = {item["key"]: json.loads(item["value"]) for item in saved.json()}
        assert values["messageInterval"] == 15 and values["variables"] == [{"key": "loja", "value": "Centro"}]
        assert values["stopWords"] == "sair,Parar,STOP,cancelar" and values["pacing"] == "off"
        assert await one(server, "SELECT value FROM campaign_settings WHERE company_id = %s AND key = 'dailyLimit'",
                         (world.company_id,)) == "300"
        b_values = {i["key"]: json.loads(i["value"])
                    for i in (await api.client.get("/campaign-settings", headers=auth(world.b_token))).json()}
        assert b_values["messageInterval"] == 20  # per company
        before = await sql(server, SNAPSHOT)
        for bad in ({"messageInterval": -1}, {"pacing": "maybe"}, {"variables": [{"key": ""}]}, {"stopWords": ""},
                    {"unknown": 1}, {"dailyLimit": True}):
            assert_error(await api.client.post("/campaign-settings", json={"settings": bad}, headers=auth(world.user)),
                         400)
        assert_error(await api.client.post("/campaign-settings", json={"settings": []}, headers=auth(world.user)), 400)
        assert await sql(server, SNAPSHOT) == before


# ─── reports ────────────────────────────────────────────────────────────────────────────

async def test_reports_from_shipping_rows(api: Api, server: Server, world: World) -> None:
    with trio.fail_after(TIMEOUT), server.broker.subscribe(world.company_id):
        made = await create(api, world.token, body(world, confirmation=True, confirmationMessage1="Obrigado!"))
        cid, company = made["id"], world.company_id
        contact = await one(server, "INSERT INTO contacts (company_id, name, number) VALUES (%s, 'Ana', "
                                    "'5511988880001') RETURNING id", (company,))
        ticket = await one(server, "INSERT INTO tickets (company_id, contact_id, whatsapp_id, status) VALUES "
                                   "(%s, %s, %s, 'open') RETURNING id", (company, contact, world.whatsapp_id))

        async def outbox(ack: int) -> int:
            return await one(server, "INSERT INTO messages (company_id, ticket_id, contact_id, whatsapp_id, wid, body, "
                                     "from_me, ack) VALUES (%s, %s, %s, %s, %s, 'Olá', true, %s) RETURNING id",
                             (company, ticket, contact, world.whatsapp_id, f"CAMP{ack}x{cid}", ack))

        now = dt.datetime.now(dt.UTC)
        await shipping(server, company, cid, "5511900000001", state="sent", message_id=await outbox(2), sent_at=now)
        await shipping(server, company, cid, "5511900000002", state="sent", message_id=await outbox(3), sent_at=now,
                       confirmation_requested_at=now)
        await shipping(server, company, cid, "5511900000003", state="sent", message_id=await outbox(4), sent_at=now,
                       replied_at=now, confirmation_requested_at=now, confirmed_at=now)
        await shipping(server, company, cid, "5511900000004", state="sent", sent_at=now, delivered_at=now)
        await shipping(server, company, cid, "5511900000005", state="failed", error="not on WhatsApp")
        await shipping(server, company, cid, "5511900000006", state="failed", error="not on WhatsApp")
        await shipping(server, company, cid, "5511900000007", state="failed", error="timeout")
        await shipping(server, company, cid, "5511900000008", state="skipped", error="opted out")
        await shipping(server, company, cid, "5511900000009")
        await sql(server, "INSERT INTO campaign_opt_outs (company_id, number) VALUES (%s, '5511900000008')", (company,))

        report = (await api.client.get(f"/campaigns/{cid}/report", headers=auth(world.user))).json()
        assert report == {"total": 9, "queued": 1, "sending": 0, "sent": 4, "delivered": 3, "read": 1, "failed": 3,
                          "failedReasons": [{"reason": "not on WhatsApp", "count": 2},
                                            {"reason": "timeout", "count": 1}],
                          "skipped": 1, "replied": 1, "optedOut": 1, "confirmationRequested": 2, "confirmed": 1}
        shown = (await api.client.get(f"/campaigns/{cid}", headers=auth(world.user))).json()
        assert (shown["valids"], shown["delivered"], shown["confirmationRequested"], shown["confirmed"]) == (8, 3, 2, 1)

        page = (await api.client.get(f"/campaigns/{cid}/shippings", params={"state": "failed"},
                                     headers=auth(world.user))).json()
        assert page["count"] == 3 and {r["error"] for r in page["records"]} == {"not on WhatsApp", "timeout"}
        delivered = (await api.client.get(f"/campaigns/{cid}/shippings", params={"state": "delivered"},
                                          headers=auth(world.user))).json()
        assert sorted(r["number"] for r in delivered["records"]) == ["5511900000002", "5511900000003", "5511900000004"]
        assert_error(await api.client.get(f"/campaigns/{cid}/shippings", params={"state": "x"},
                                          headers=auth(world.user)), 400)

        csv = await api.client.get(f"/campaigns/{cid}/export", params={"format": "csv"}, headers=auth(world.user))
        assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
        lines = csv.content.decode("utf-8-sig").strip().splitlines()
        assert lines[0].startswith("id,number,name,state") and len(lines) == 10
        xlsx = await api.client.get(f"/campaigns/{cid}/export", params={"format": "xlsx"}, headers=auth(world.user))
        sheet = openpyxl.load_workbook(io.BytesIO(xlsx.content)).active
        assert sheet.max_row == 10
        assert_error(await api.client.get(f"/campaigns/{cid}/export", params={"format": "pdf"},
                                          headers=auth(world.user)), 400)


# ─── a contact's reply ──────────────────────────────────────────────────────────────────

async def test_stop_word_opts_out_and_reply_confirms(api: Api, server: Server, world: World) -> None:
    with trio.fail_after(TIMEOUT):
        wid = await connected_sandbox(api, world.token)
        made = await create(api, world.token, body(world, whatsappId=wid, confirmation=True,
                                                    confirmationMessage1="Confirmado, obrigado!"))
        cid, company = made["id"], world.company_id
        await sql(server, "UPDATE campaigns SET status = 'EM_ANDAMENTO' WHERE id = %s", (cid,))  # the core's
        now = dt.datetime.now(dt.UTC)
        # the core's rows after sending: one asks for a confirmation, one is a plain send, one still queued
        asking = await shipping(server, company, cid, "5511977770001", state="sent", sent_at=now,
                                confirmation_requested_at=now, confirmation_message="Confirmado, obrigado!")
        plain = await shipping(server, company, cid, "5511977770002", state="sent", sent_at=now)
        other = await create(api, world.token, body(world, name="Segunda", whatsappId=wid))
        queued = await shipping(server, company, other["id"], "5511977770002")

        await inbound(api, world.token, wid, **{"from": "5511977770001", "name": "Ana", "body": "sim"})
        await wait_sql(server, "SELECT confirmed_at IS NOT NULL, replied_at IS NOT NULL FROM campaign_shippings "
                               "WHERE id = %s", (asking,), [(True, True)])
        await wait_sql(server, "SELECT count(*) FROM messages WHERE company_id = %s AND from_me AND "
                               "body = 'Confirmado, obrigado!'", (company,), [(1,)])
        await inbound(api, world.token, wid, **{"from": "5511977770001", "name": "Ana", "body": "sim de novo"})
        await trio.sleep(0.5)
        assert await one(server, "SELECT count(*) FROM messages WHERE company_id = %s AND from_me AND "
                                 "body = 'Confirmado, obrigado!'", (company,)) == 1  # once

        await inbound(api, world.token, wid, **{"from": "5511977770002", "name": "Bia", "body": "  Párar! "})
        await wait_sql(server, "SELECT count(*) FROM campaign_opt_outs WHERE company_id = %s AND "
                               "number = '5511977770002'", (company,), [(1,)])
        assert await one(server, "SELECT opted_out_at IS NOT NULL FROM contacts WHERE company_id = %s AND "
                                 "number = '5511977770002'", (company,)) is True
        assert await one(server, "SELECT replied_at IS NOT NULL FROM campaign_shippings WHERE id = %s", (plain,))
        # the second campaign skips the number
        assert await one(server, "SELECT state FROM campaign_shippings WHERE id = %s", (queued,)) == "skipped"
        await wait_sql(server, "SELECT count(*) FROM messages WHERE company_id = %s AND from_me AND body LIKE "
                               "'Você não receberá%%'", (company,), [(1,)])
        report = (await api.client.get(f"/campaigns/{cid}/report", headers=auth(world.token))).json()
        assert (report["optedOut"], report["replied"], report["confirmed"]) == (1, 2, 1)

        # a company with no shipping for the contact: nothing happens
        await inbound(api, world.token, wid, **{"from": "5511977770099", "name": "Zé", "body": "oi"})
        await trio.sleep(0.5)
        assert await one(server, "SELECT count(*) FROM campaign_opt_outs") == 1
