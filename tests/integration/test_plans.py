"""Plans, subscriptions, invoices and signup (issue 21, points 1-3): the default plan, limits and features
enforced by the server, a company past due refused while its WhatsApp keeps receiving, an invoice paid
letting it in again, the login's `company.dueDate` as the SaaS frontends read it, the public signup."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import httpx
import psycopg
import trio

from storage import invoices
from tests.integration.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, Api, Server, auth
from tests.integration.test_conversations import connected_sandbox, wait_sql

TIMEOUT = 60
NEVER = "9999-12-31"
FLAGS = ("useCampaigns", "useSchedules", "useInternalChat", "useExternalApi", "useKanban", "useOpenAi",
         "useIntegrations")


def today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


async def create_plan(api: Api, super_token: str, **fields: Any) -> dict[str, Any]:
    response = await api.client.post("/plans", json={"name": "Plan", **fields}, headers=auth(super_token))
    assert response.status_code == 201, response.text
    return response.json()


async def company_on(api: Api, super_token: str, plan_id: int, name: str, email: str,
                     **fields: Any) -> tuple[dict[str, Any], str]:
    """A company on `plan_id` and its admin's token."""
    response = await api.client.post("/companies", json={"name": name, "email": email, "password": "owner-pass-1",
                                                         "planId": plan_id, **fields}, headers=auth(super_token))
    assert response.status_code == 201, response.text
    return response.json(), await api.login(email, "owner-pass-1")


async def count(server: Server, query: str, *params: Any) -> int:
    return (await trio.to_thread.run_sync(server.sql, query, params))[0][0]


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"] == code and response.json()["message"], response.text


# ─── the default plan ───────────────────────────────────────────────────────────────────


async def test_every_company_starts_on_the_unlimited_default_plan(api: Api) -> None:
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        shown = (await api.client.get("/companies/listPlan/1", headers=auth(token))).json()
        assert set(shown) >= {"id", "name", "email", "status", "dueDate", "createdAt", "phone", "plan"}
        plan = shown["plan"]
        assert plan["isDefault"] and (plan["users"], plan["connections"], plan["queues"]) == (0, 0, 0)
        assert all(plan[flag] is True for flag in FLAGS), plan
        created = await api.create_company(token, "Sem Plano", "dono@semplano.test")
        assert created["planId"] == plan["id"] and created["plan"]["name"] == plan["name"]
        assert created["dueDate"] is None and created["recurrence"] == "MENSAL"
        # the SaaS Companies screen: every company with its plan and settings
        listed = (await api.client.get("/companies/list", headers=auth(token))).json()
        assert {c["name"] for c in listed} == {"Default", "Sem Plano"}
        assert all(c["plan"]["id"] == plan["id"] and isinstance(c["settings"], list) for c in listed)
        # a user reads their own company's plan, not another's
        owner = await api.login("dono@semplano.test", "company-pass-1")
        own = await api.client.get(f"/companies/listPlan/{created['id']}", headers=auth(owner))
        assert own.status_code == 200 and own.json()["plan"]["useKanban"] is True
        assert_error(await api.client.get("/companies/listPlan/1", headers=auth(owner)), 403, "ERR_NO_PERMISSION")
        assert (await api.client.get(f"/companies/{created['id']}", headers=auth(owner))).json()["planId"] == plan["id"]
        assert_error(await api.client.get("/companies/1", headers=auth(owner)), 403, "ERR_NO_PERMISSION")
        # the default plan cannot go
        assert_error(await api.client.delete(f"/plans/{plan['id']}", headers=auth(token)), 409, "ERR_PLAN_IN_USE")


async def test_plans_crud_and_bad_input(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        # the SaaS Plans screen sends numbers back as text, and the price in its pt-BR format
        gold = await create_plan(api, token, name="Gold", users="3", connections=2, queues=4, value="1.234,50",
                                 useKanban=False, isPublic=True)
        assert (gold["users"], gold["connections"], gold["queues"], gold["value"]) == (3, 2, 4, 1234.5)
        assert gold["useKanban"] is False and gold["useCampaigns"] is True and gold["isPublic"] is True
        edited = await api.client.put(f"/plans/{gold['id']}", json={**gold, "value": "49,9", "users": 5},
                                      headers=auth(token))
        assert edited.status_code == 200 and edited.json()["value"] == 49.9 and edited.json()["users"] == 5
        assert (await api.client.get(f"/plans/{gold['id']}", headers=auth(token))).json()["users"] == 5
        page = (await api.client.get("/plans?searchParam=gol", headers=auth(token))).json()
        assert [p["name"] for p in page["plans"]] == ["Gold"] and page["count"] == 1 and page["hasMore"] is False
        before = await count(server, "SELECT count(*) FROM plans")
        for bad in ({"name": "gold"}, {"name": "X", "users": -1}, {"name": "X", "value": "abc"},
                    {"name": "X", "value": True}, {"name": ""}, {"name": "X", "recurrence": "DAILY"},
                    {"name": "X", "useKanban": "yes"}):
            response = await api.client.post("/plans", json=bad, headers=auth(token))
            assert response.status_code in (400, 409), (bad, response.text)
        assert await count(server, "SELECT count(*) FROM plans") == before
        company, owner = await company_on(api, token, gold["id"], "Ouro", "dono@ouro.test")
        # a company's admin reads its plan, never changes one
        assert (await api.client.get(f"/plans/{gold['id']}", headers=auth(owner))).status_code == 200
        for method in ("PUT", "DELETE"):
            refused = await api.client.request(method, f"/plans/{gold['id']}", json={"users": 0}, headers=auth(owner))
            assert_error(refused, 403, "ERR_NO_PERMISSION")
        assert_error(await api.client.post("/plans", json={"name": "Mine"}, headers=auth(owner)), 403,
                     "ERR_NO_PERMISSION")
        assert (await api.client.get(f"/plans/{gold['id']}", headers=auth(token))).json()["users"] == 5
        hidden = await create_plan(api, token, name="Secreto")
        assert_error(await api.client.get(f"/plans/{hidden['id']}", headers=auth(owner)), 404, "ERR_NOT_FOUND")
        assert_error(await api.client.delete(f"/plans/{gold['id']}", headers=auth(token)), 409, "ERR_PLAN_IN_USE")
        await api.client.put(f"/companies/{company['id']}", json={"planId": 1}, headers=auth(token))
        assert (await api.client.delete(f"/plans/{gold['id']}", headers=auth(token))).status_code == 200
        assert (await api.client.get(f"/plans/{gold['id']}", headers=auth(token))).status_code == 404
        assert_error(await api.client.put("/companies/1", json={"planId": 999999}, headers=auth(token)), 404,
                     "ERR_NOT_FOUND")


async def test_public_plan_lists(api: Api) -> None:
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        await create_plan(api, token, name="Aberto", isPublic=True)
        await create_plan(api, token, name="Interno")
        api.client.cookies.clear()
        anonymous = (await api.client.get("/plans/list")).json()
        assert [p["name"] for p in anonymous] == ["Aberto"]
        assert (await api.client.get("/plans/listpublic")).json() == anonymous  # ticketz's signup page
        assert [p["name"] for p in (await api.client.get("/plans/all")).json()] == ["Aberto"]
        everything = (await api.client.get("/plans/all", headers=auth(token))).json()
        assert {p["name"] for p in everything} == {"Aberto", "Interno", "Unlimited"}
        await api.create_company(token, "Publico", "dono@publico.test")
        owner = await api.login("dono@publico.test", "company-pass-1")
        assert_error(await api.client.get("/plans", headers=auth(owner)), 403, "ERR_NO_PERMISSION")
        assert [p["name"] for p in (await api.client.get("/plans/all", headers=auth(owner))).json()] == ["Aberto"]


# ─── limits ─────────────────────────────────────────────────────────────────────────────


async def test_a_plan_with_two_users_refuses_the_third_and_writes_nothing(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        plan = await create_plan(api, token, name="Dois", users=2, connections=1, queues=1)
        company, owner = await company_on(api, token, plan["id"], "Pequena", "dono@pequena.test")
        await api.create_user(owner, "segundo@pequena.test")  # the admin and this one: 2
        refused = await api.client.post("/users", json={"name": "T", "email": "terceiro@pequena.test",
                                                        "password": "terceiro-1"}, headers=auth(owner))
        assert_error(refused, 400, "ERR_USER_CREATION_COUNT")
        assert await count(server, "SELECT count(*) FROM users WHERE company_id = %s", company["id"]) == 2
        assert await count(server, "SELECT count(*) FROM users WHERE email = 'terceiro@pequena.test'") == 0

        first = await api.client.post("/whatsapp", json={"name": "a", "channel": "sandbox"}, headers=auth(owner))
        assert first.status_code == 201, first.text
        second = await api.client.post("/whatsapp", json={"name": "b", "channel": "sandbox"}, headers=auth(owner))
        assert_error(second, 400, "ERR_NO_PERMISSION_CONNECTIONS_LIMIT")
        assert await count(server, "SELECT count(*) FROM whatsapps WHERE company_id = %s", company["id"]) == 1

        assert (await api.client.post("/queue", json={"name": "Q1", "color": "#112233"},
                                      headers=auth(owner))).status_code == 201
        assert_error(await api.client.post("/queue", json={"name": "Q2", "color": "#445566"}, headers=auth(owner)),
                     400, "ERR_QUEUE_CREATION_COUNT")
        assert await count(server, "SELECT count(*) FROM queues WHERE company_id = %s", company["id"]) == 1

        # a bigger plan lets the same requests through
        await api.client.put(f"/plans/{plan['id']}", json={"users": 3, "queues": 0}, headers=auth(token))
        await api.create_user(owner, "terceiro@pequena.test")
        assert (await api.client.post("/queue", json={"name": "Q2", "color": "#445566"},
                                      headers=auth(owner))).status_code == 201
        # the super admin's per-company connectionLimit overrides the plan's connections
        await api.client.put(f"/companies/{company['id']}", json={"connectionLimit": 2}, headers=auth(token))
        assert (await api.client.post("/whatsapp", json={"name": "b", "channel": "sandbox"},
                                      headers=auth(owner))).status_code == 201


async def test_parallel_creations_never_pass_the_limit(api: Api, server: Server) -> None:
    """Ten creations of each at once with room for one of each: exactly one of each goes through."""
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        plan = await create_plan(api, token, name="Apertado", users=2, queues=1)
        company, owner = await company_on(api, token, plan["id"], "Corrida", "dono@corrida.test")
        statuses: list[int] = []

        async def create(kind: str, index: int) -> None:
            if kind == "user":
                body = {"name": f"u{index}", "email": f"u{index}@corrida.test", "password": "corrida-pass-1"}
                response = await api.client.post("/users", json=body, headers=auth(owner))
            else:
                response = await api.client.post("/queue", json={"name": f"q{index}", "color": "#123456"},
                                                 headers=auth(owner))
            statuses.append(response.status_code)

        async with trio.open_nursery() as nursery:
            for index in range(10):
                nursery.start_soon(create, "user", index)
                nursery.start_soon(create, "queue", index)
        assert sorted(statuses) == [201, 201] + [400] * 18, statuses
        assert await count(server, "SELECT count(*) FROM users WHERE company_id = %s", company["id"]) == 2
        assert await count(server, "SELECT count(*) FROM queues WHERE company_id = %s", company["id"]) == 1


async def test_a_creation_waits_for_the_company_lock_and_counts_what_was_committed(api: Api,
                                                                                     server: Server) -> None:
    """The count and the insert are one step: while another transaction holds the company's row (and adds a
    queue), a creation waits, then counts that queue and is refused."""
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        plan = await create_plan(api, token, name="Uma Fila", queues=1)
        company, owner = await company_on(api, token, plan["id"], "Trava", "dono@trava.test")
        locked, release = trio.Event(), threading.Event()
        answers: list[httpx.Response] = []

        def hold() -> None:
            with psycopg.connect(server.database_url) as conn:  # one transaction until commit
                conn.execute("SELECT 1 FROM companies WHERE id = %s FOR NO KEY UPDATE", (company["id"],))
                conn.execute("INSERT INTO queues (company_id, name) VALUES (%s, 'held')", (company["id"],))
                trio.from_thread.run_sync(locked.set)
                release.wait(20)
                conn.commit()

        async def create() -> None:
            answers.append(await api.client.post("/queue", json={"name": "Q", "color": "#123456"},
                                                 headers=auth(owner)))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.to_thread.run_sync, hold)
            await locked.wait()
            nursery.start_soon(create)
            await trio.sleep(0.5)
            assert answers == [], "the creation did not wait for the company's lock"
            release.set()
        assert_error(answers[0], 400, "ERR_QUEUE_CREATION_COUNT")
        assert await count(server, "SELECT count(*) FROM queues WHERE company_id = %s", company["id"]) == 1


# ─── features ───────────────────────────────────────────────────────────────────────────


async def test_a_feature_off_in_the_plan_is_refused_on_its_routes(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        plan = await create_plan(api, token, name="Basico", useInternalChat=False, useKanban=False,
                                 useExternalApi=False)
        company, owner = await company_on(api, token, plan["id"], "Basica", "dono@basica.test")
        colleague = await api.create_user(owner, "colega@basica.test")
        menu = (await api.client.get(f"/companies/listPlan/{company['id']}", headers=auth(owner))).json()["plan"]
        assert (menu["useInternalChat"], menu["useKanban"], menu["useExternalApi"]) == (False, False, False)

        chats_before = await count(server, "SELECT count(*) FROM chats")
        new_chat = await api.client.post("/chats", json={"title": "Oi", "users": [{"id": colleague["id"]}]},
                                         headers=auth(owner))
        assert_error(new_chat, 403, "ERR_PLAN_FEATURE_DISABLED")
        assert await count(server, "SELECT count(*) FROM chats") == chats_before
        # the list answers empty: the SaaS menu calls it on every page whatever the plan
        listed = await api.client.get("/chats", headers=auth(owner))
        assert listed.status_code == 200 and listed.json() == {"records": [], "count": 0, "hasMore": False}
        assert_error(await api.client.get("/chats/1/messages", headers=auth(owner)), 403, "ERR_PLAN_FEATURE_DISABLED")
        for path in ("/ticket/kanban", "/tags/kanban"):
            assert_error(await api.client.get(path, headers=auth(owner)), 403, "ERR_PLAN_FEATURE_DISABLED")
        wid = await connected_sandbox(api, owner)
        connection = (await api.client.get(f"/whatsapp/{wid}", headers=auth(owner))).json()
        external = await api.client.post("/api/messages/send", json={"number": "5511988887777", "body": "oi"},
                                         headers=auth(connection["token"]))
        assert_error(external, 403, "ERR_PLAN_FEATURE_DISABLED")
        assert await count(server, "SELECT count(*) FROM messages WHERE company_id = %s", company["id"]) == 0
        # the default plan's company is not affected, and switching the feature on applies at once
        assert (await api.client.get("/ticket/kanban", headers=auth(token))).status_code == 200
        await api.client.put(f"/plans/{plan['id']}", json={"useKanban": True, "useInternalChat": True},
                             headers=auth(token))
        assert (await api.client.get("/ticket/kanban", headers=auth(owner))).status_code == 200
        created = await api.client.post("/chats", json={"title": "Oi", "users": [{"id": colleague["id"]}]},
                                        headers=auth(owner))
        assert created.status_code in (200, 201), created.text


# ─── subscriptions and invoices ─────────────────────────────────────────────────────────


async def test_login_presents_the_due_date_the_saas_frontend_lets_in(api: Api) -> None:
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        login = await api.client.post("/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
        company = login.json()["user"]["company"]
        assert company["dueDate"] == NEVER and company["planId"] == 1  # no due date: never expires
        created = await api.create_company(token, "Com Data", "dono@comdata.test")
        await api.client.put(f"/companies/{created['id']}", json={"dueDate": "2030-01-15"}, headers=auth(token))
        login = await api.client.post("/auth/login", json={"email": "dono@comdata.test", "password": "company-pass-1"})
        assert login.json()["user"]["company"]["dueDate"] == "2030-01-15"
        # the grace is part of the date shown: the frontend refuses the login once it is in the past
        await api.client.put("/settings/gracePeriod", json={"value": "3"}, headers=auth(token))
        owner = login.json()["token"]
        assert (await api.client.get("/auth/me", headers=auth(owner))).json()["company"]["dueDate"] == "2030-01-18"
        assert (await api.client.get("/companies/listPlan/1", headers=auth(token))).json()["dueDate"] is None


async def test_past_due_is_refused_keeps_receiving_and_paying_lets_it_in(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        plan = await create_plan(api, token, name="Mensal", value=99.9)
        company, owner = await company_on(api, token, plan["id"], "Devedora", "dono@devedora.test",
                                          dueDate=(today() + dt.timedelta(days=30)).isoformat())
        wid = await connected_sandbox(api, owner)
        assert (await api.client.get("/tickets", headers=auth(owner))).status_code == 200

        yesterday = today() - dt.timedelta(days=1)
        await api.client.put(f"/companies/{company['id']}", json={"dueDate": yesterday.isoformat()},
                             headers=auth(token))
        for method, path in (("GET", "/tickets"), ("GET", "/contacts"), ("POST", "/queue"), ("GET", "/whatsapp")):
            assert_error(await api.client.request(method, path, json={}, headers=auth(owner)), 402,
                         "ERR_SUBSCRIPTION_EXPIRED")
        for path in ("/auth/me", "/invoices", "/invoices/all", f"/companies/listPlan/{company['id']}",
                     f"/plans/{plan['id']}"):
            assert (await api.client.get(path, headers=auth(owner))).status_code == 200, path
        login = await api.client.post("/auth/login", json={"email": "dono@devedora.test", "password": "owner-pass-1"})
        assert login.status_code == 200 and login.json()["user"]["company"]["dueDate"] == yesterday.isoformat()
        assert (await api.client.get("/tickets", headers=auth(token))).status_code == 200  # others are not affected

        # WhatsApp keeps receiving: the message is stored while the API refuses the company
        await server.deps.sandbox.inbound(wid, sender="5511977776666", name="Cliente", body="ainda aqui?")
        await wait_sql(server, "SELECT body FROM messages WHERE company_id = %s", (company["id"],),
                       [("ainda aqui?",)])

        # the grace lets it in, until it is over
        await api.client.put("/settings/gracePeriod", json={"value": "2"}, headers=auth(token))
        assert (await api.client.get("/tickets", headers=auth(owner))).status_code == 200
        await api.client.put("/settings/gracePeriod", json={"value": "0"}, headers=auth(token))
        assert (await api.client.get("/tickets", headers=auth(owner))).status_code == 402

        # the sweep bills it (once, however often it runs); the company sees its invoice
        assert await invoices.create_due_invoices(server.db, 20) >= 1
        assert await invoices.create_due_invoices(server.db, 20) == 0
        bills = (await api.client.get("/invoices/all", headers=auth(owner))).json()
        assert [(b["detail"], b["value"], b["dueDate"], b["status"]) for b in bills] == [
            ("Mensal", 99.9, yesterday.isoformat(), "open")]
        paged = (await api.client.get("/invoices", headers=auth(owner))).json()
        assert paged["count"] == 1 and paged["invoices"][0]["id"] == bills[0]["id"]
        # only a super admin marks it paid
        assert_error(await api.client.put(f"/invoices/{bills[0]['id']}", json={"status": "paid"},
                                          headers=auth(owner)), 403, "ERR_NO_PERMISSION")
        paid = await api.client.put(f"/invoices/{bills[0]['id']}", json={"status": "paid"}, headers=auth(token))
        assert paid.status_code == 200 and paid.json()["status"] == "paid" and paid.json()["paidAt"]
        moved = (await api.client.get(f"/companies/{company['id']}", headers=auth(token))).json()["dueDate"]
        assert dt.date.fromisoformat(moved) > today() + dt.timedelta(days=26)  # a month after yesterday
        again = await api.client.put(f"/invoices/{bills[0]['id']}", json={"status": "paid"}, headers=auth(token))
        assert again.status_code == 200
        assert (await api.client.get(f"/companies/{company['id']}", headers=auth(token))).json()["dueDate"] == moved

        # let in, and the message received meanwhile is there
        tickets = await api.client.get("/tickets?status=pending", headers=auth(owner))
        assert tickets.status_code == 200
        assert [t["contact"]["number"] for t in tickets.json()["tickets"]] == ["5511977776666"]
        assert_error(await api.client.put(f"/invoices/{bills[0]['id']}", json={"status": "gone"},
                                          headers=auth(token)), 400, "ERR_VALIDATION")


async def test_invoices_are_per_company(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        plan = await create_plan(api, token, name="Pago", value=10)
        soon = (today() + dt.timedelta(days=5)).isoformat()
        a, a_token = await company_on(api, token, plan["id"], "A", "dono@a.test", dueDate=soon)
        b, b_token = await company_on(api, token, plan["id"], "B", "dono@b.test", dueDate=soon)
        assert await invoices.create_due_invoices(server.db, 20) == 2
        a_bills = (await api.client.get("/invoices/all", headers=auth(a_token))).json()
        b_bills = (await api.client.get("/invoices/all", headers=auth(b_token))).json()
        assert [x["companyId"] for x in a_bills] == [a["id"]] and [x["companyId"] for x in b_bills] == [b["id"]]
        assert_error(await api.client.get(f"/invoices/{b_bills[0]['id']}", headers=auth(a_token)), 404,
                     "ERR_NOT_FOUND")
        assert (await api.client.get(f"/invoices/{b_bills[0]['id']}", headers=auth(token))).status_code == 200
        everyone = (await api.client.get("/invoices", headers=auth(token))).json()
        assert everyone["count"] == 2
        one = (await api.client.get(f"/invoices?companyId={a['id']}", headers=auth(token))).json()
        assert [x["companyId"] for x in one["invoices"]] == [a["id"]]
        assert (await api.client.get("/invoices", headers=auth(a_token))).json()["count"] == 1


# ─── signup ─────────────────────────────────────────────────────────────────────────────


async def test_signup_only_when_allowed_on_a_public_plan_with_a_trial(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        offered = await create_plan(api, token, name="Teste", isPublic=True, users=3)
        hidden = await create_plan(api, token, name="Escondido")
        form = {"name": "Nova Loja", "email": "dona@novaloja.test", "phone": "(11) 99999-0000",
                "password": "nova-pass-1", "planId": offered["id"], "recurrence": "MENSAL",
                "dueDate": "2099-01-01", "status": "t", "campaignsEnabled": True}  # the SaaS signup page's body
        companies_before = await count(server, "SELECT count(*) FROM companies")
        assert_error(await api.client.post("/companies/cadastro", json=form), 403, "ERR_SIGNUP_DISABLED")
        await api.client.put("/settings/allowSignup", json={"value": "enabled"}, headers=auth(token))
        assert_error(await api.client.post("/companies/cadastro", json={**form, "planId": hidden["id"]}), 400,
                     "ERR_PLAN_NOT_AVAILABLE")
        assert await count(server, "SELECT count(*) FROM companies") == companies_before
        created = await api.client.post("/companies/cadastro", json=form)
        assert created.status_code == 201, created.text
        company = created.json()
        trial_end = (today() + dt.timedelta(days=server.config.signup_trial_days)).isoformat()
        assert company["dueDate"] == trial_end and company["planId"] == offered["id"]  # not the client's date
        login = await api.client.post("/auth/login", json={"email": "dona@novaloja.test", "password": "nova-pass-1"})
        assert login.status_code == 200
        assert login.json()["user"]["company"]["dueDate"] == trial_end
        assert login.json()["user"]["profile"] == "admin"
        duplicate = await api.client.post("/companies/cadastro", json={**form, "name": "Outra Loja"})
        assert_error(duplicate, 409, "ERR_DUPLICATED_EMAIL")
        assert await count(server, "SELECT count(*) FROM companies") == companies_before + 1
        # rate-limited per address: every attempt counts
        statuses = []
        for index in range(server.config.signup_max_per_ip + 1):
            response = await api.client.post("/companies/cadastro", json={**form, "name": f"Loja {index}",
                                                                           "email": f"loja{index}@x.test"})
            statuses.append(response.status_code)
        assert statuses[-1] == 429 and "Retry-After" in response.headers, statuses
