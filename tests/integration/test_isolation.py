"""Tenancy and roles, route by route (DESIGN §3 "Tenancy").

One table lists every route with the least role that may call it; each test runs over the table, so
adding a route is one line in ROUTES. Every refused request is checked twice: by its answer (401, 403,
or 404 for another tenant's ids, as a JSON error) and by the database, which must hold exactly what it
held before the request.
"""

from __future__ import annotations

import time
from typing import Any

import attrs
import httpx
import jwt
import pytest
import trio

from tests.integration.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, Api, Server, auth

TIMEOUT = 30
SETTING = "userRating"  # a setting every company has, "disabled" by default

# ─── the route table ────────────────────────────────────────────────────────────────────
# Path placeholders, filled per caller: {self} the caller, {colleague} another (plain) user of the
# caller's company, {company} another company, {own} the caller's company, {key} a setting key, {queue} and
# {option} a queue and a queue option of company Alpha (also in bodies); {quick}, {ticket}, {contact}, {note}: a
# quick message, a ticket (assigned to Alpha's plain user) with its contact, and a note of that user's; {list}
# and {item}: a contact list of Alpha and an item of it.
# `access` is the least role that may call the route: public, user, admin or super. `files`: a multipart body
# instead of JSON.


CSV_FILE = b"name,number,Plano\nAna,5511988880001,Ouro\n"


@attrs.frozen
class Route:
    method: str
    path: str
    access: str
    body: dict[str, Any] | None = None
    files: dict[str, Any] | None = None

    @property
    def id(self) -> str:
        return f"{self.method} {self.path}"


ROUTES = [
    Route("POST", "/auth/login", "public", {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}),
    Route("POST", "/auth/refresh_token", "public"),
    Route("DELETE", "/auth/logout", "user"),
    Route("GET", "/auth/me", "user"),
    Route("GET", "/users", "admin"),
    Route("POST", "/users", "admin", {"name": "Newcomer", "email": "newcomer@alpha.test", "password": "newcomer-1"}),
    Route("GET", "/users/list", "user"),
    Route("GET", "/users/{self}", "user"),
    Route("PUT", "/users/{self}", "user", {"name": "Renamed Self"}),
    Route("GET", "/users/{colleague}", "admin"),
    Route("PUT", "/users/{colleague}", "admin", {"name": "Renamed Colleague", "profile": "admin"}),
    Route("DELETE", "/users/{colleague}", "admin"),
    Route("POST", "/users/{colleague}/logout", "admin"),
    Route("GET", "/companies", "super"),
    Route("POST", "/companies", "super", {"name": "Gamma", "email": "admin@gamma.test", "password": "gamma-pass-1"}),
    Route("GET", "/companies/{company}", "super"),
    Route("PUT", "/companies/{company}", "super", {"name": "Beta Renamed", "status": False}),
    Route("DELETE", "/companies/{company}", "super"),
    Route("GET", "/settings", "user"),
    Route("GET", "/settings/{key}", "user"),
    Route("PUT", "/settings/{key}", "admin", {"value": "enabled"}),
    Route("PUT", "/settings/appName", "super", {"value": "Acme Desk"}),
    Route("GET", "/health", "public"),
    Route("GET", "/ready", "public"),
    Route("GET", "/", "public"),
    Route("GET", "/version", "public"),
    Route("GET", "/openapi.json", "public"),  # the API's description: no tenant's data
    Route("GET", "/docs", "public"),
    Route("GET", "/metrics", "public"),  # open unless METRICS_TOKEN is set (tests/integration/test_metrics.py)
    Route("GET", "/admin/runtime", "super"),  # every company's runtime: super admins only
    Route("GET", "/public-settings/appName", "public"),
    Route("GET", "/announcements", "user"),
    Route("GET", "/announcements/list", "user"),
    Route("POST", "/announcements", "super", {"title": "Maintenance", "text": "Tonight at 22h", "priority": 1}),
    Route("GET", "/helps", "user"),
    Route("GET", "/helps/list", "user"),
    Route("POST", "/helps", "super", {"title": "Getting started", "description": "Tour", "video": "dQw4w9WgXcQ"}),
    Route("GET", "/chats", "user"),  # the rest of /chats: tests/integration/test_chats.py
    Route("GET", "/files", "user"),  # the rest of /files: tests/integration/test_files.py
    Route("GET", "/files/list", "user"),
    Route("POST", "/files", "user", {"name": "Price lists", "message": "Our prices", "options": [{"name": "2026"}]}),
    Route("DELETE", "/files", "admin"),
    # plans, subscriptions, invoices (the rest: tests/integration/test_plans.py)
    Route("GET", "/plans", "super"),
    Route("POST", "/plans", "super", {"name": "Gold", "users": 5}),
    Route("GET", "/plans/list", "public"),
    Route("GET", "/plans/all", "public"),
    Route("GET", "/plans/1", "user"),  # the default plan, the caller's company's
    Route("PUT", "/plans/1", "super", {"name": "Everything"}),
    Route("GET", "/companies/list", "super"),
    Route("GET", "/companies/listPlan/{company}", "super"),
    Route("POST", "/companies/cadastro", "public", {"name": "Signup", "email": "s@signup.test",
                                                    "password": "signup-pass-1", "planId": 1}),
    Route("GET", "/invoices", "user"),
    Route("GET", "/invoices/all", "user"),
    # queue options, queues' greeting files, business hours, ratings (the rest: test_queue_options.py,
    # test_routing_api.py)
    Route("GET", "/queue-options?queueId={queue}&parentId=-1", "user"),
    Route("POST", "/queue-options", "admin", {"queueId": "{queue}", "title": "Sales", "option": "2"}),
    Route("GET", "/queue-options/{option}", "user"),
    Route("PUT", "/queue-options/{option}", "admin", {"title": "Renamed", "option": 3}),
    Route("DELETE", "/queue-options/{option}", "admin"),
    Route("POST", "/queue-options/{option}/media-upload", "admin", files={"file": ("a.png", b"png", "image/png")}),
    Route("DELETE", "/queue-options/{option}/media-upload", "admin"),
    Route("POST", "/queue/{queue}/media-upload", "admin", files={"file": ("a.ogg", b"ogg", "audio/ogg")}),
    Route("DELETE", "/queue/{queue}/media-upload", "admin"),
    Route("PUT", "/companies/{own}/schedules", "admin", {"schedules": [{"weekday": 1, "startTime": "08:00",
                                                                        "endTime": "18:00"}]}),
    Route("GET", "/ratings", "admin"),
    # contact lists and their items, imports and exports (the rest: test_contact_lists.py, test_contacts.py)
    Route("GET", "/contact-lists", "user"),
    Route("GET", "/contact-lists/list", "user"),
    Route("POST", "/contact-lists", "user", {"name": "Campanha"}),
    Route("GET", "/contact-lists/{list}", "user"),
    Route("PUT", "/contact-lists/{list}", "user", {"name": "Renomeada"}),
    Route("DELETE", "/contact-lists/{list}", "user"),
    Route("POST", "/contact-lists/{list}/upload", "user", files={"file": ("l.csv", CSV_FILE, "text/csv")}),
    Route("GET", "/contact-lists/{list}/export?format=xlsx", "admin"),
    Route("POST", "/contact-lists/{list}/check", "admin", {"recheck": True}),
    Route("GET", "/contact-list-items?contactListId={list}", "admin"),
    Route("GET", "/contact-list-items/list?contactListId={list}", "admin"),
    Route("POST", "/contact-list-items", "admin", {"contactListId": "{list}", "name": "Ana",
                                                   "number": "5511988880002"}),
    Route("GET", "/contact-list-items/{item}", "admin"),
    Route("PUT", "/contact-list-items/{item}", "admin", {"name": "Bia", "number": "5511988880003"}),
    Route("DELETE", "/contact-list-items/{item}", "admin"),
    Route("POST", "/contacts/upload", "admin", files={"file": ("c.csv", CSV_FILE, "text/csv")}),
    Route("POST", "/contacts/importCsv", "admin", files={"contacts": ("c.csv", CSV_FILE, "text/csv")}),
    Route("POST", "/contacts/import", "admin", files={"file": ("c.xlsx", CSV_FILE, "text/csv")}),
    Route("GET", "/contacts/export?format=csv", "admin"),
    Route("GET", "/contacts/exportCsv", "admin"),
    # quick messages and ticket notes, on Alpha's plain user's own message, ticket and note (the rest:
    # test_quick_messages.py, test_ticket_notes.py)
    Route("GET", "/quick-messages", "user"),
    Route("GET", "/quick-messages/list", "user"),
    Route("POST", "/quick-messages", "user", {"shortcode": "bye", "message": "Bye {{name}}"}),
    Route("GET", "/quick-messages/{quick}", "user"),
    Route("PUT", "/quick-messages/{quick}", "user", {"message": "Changed"}),
    Route("DELETE", "/quick-messages/{quick}", "user"),
    Route("POST", "/quick-messages/{quick}/media-upload", "user", files={"file": ("a.png", b"png", "image/png")}),
    Route("DELETE", "/quick-messages/{quick}/media-upload", "user"),
    Route("GET", "/ticket-notes", "user"),
    Route("GET", "/ticket-notes/list?ticketId={ticket}&contactId={contact}", "user"),
    Route("POST", "/ticket-notes", "user", {"note": "Call back", "ticketId": "{ticket}", "contactId": "{contact}"}),
    Route("GET", "/ticket-notes/{note}", "user"),
    Route("PUT", "/ticket-notes/{note}", "user", {"note": "Changed"}),
    Route("DELETE", "/ticket-notes/{note}", "user"),
    # scheduled messages ({schedule}: one of Alpha's plain user's; the rest: tests/integration/test_schedules.py)
    Route("GET", "/contacts/list", "user"),
    Route("GET", "/schedules", "user"),
    Route("POST", "/schedules", "user", {"body": "Lembrete", "contactId": "{contact}", "sendAt": "2030-01-02T10:00"}),
    Route("GET", "/schedules/{schedule}", "user"),
    Route("PUT", "/schedules/{schedule}", "user", {"body": "Lembrete editado"}),
    Route("POST", "/schedules/{schedule}/media-upload", "user", files={"file": ("a.png", b"png", "image/png")}),
    Route("DELETE", "/schedules/{schedule}/media-upload", "user"),
    Route("DELETE", "/schedules/{schedule}", "user"),
    # campaigns (the rest: test_campaigns.py): {campaign} a draft of Alpha, {running} one in progress
    Route("GET", "/campaigns", "user"),
    Route("GET", "/campaigns/list", "user"),
    Route("POST", "/campaigns", "user", {"name": "Promo", "message1": "Olá", "contactListId": "{list}"}),
    Route("GET", "/campaigns/{campaign}", "user"),
    Route("PUT", "/campaigns/{campaign}", "user", {"name": "Promo nova"}),
    Route("DELETE", "/campaigns/{campaign}", "user"),
    Route("POST", "/campaigns/{running}/cancel", "user"),
    Route("POST", "/campaigns/{campaign}/restart", "user"),
    Route("POST", "/campaigns/{running}/pause", "user"),
    Route("POST", "/campaigns/{running}/resume", "user"),
    Route("POST", "/campaigns/{campaign}/media-upload", "user", files={"file": ("a.png", b"png", "image/png")}),
    Route("DELETE", "/campaigns/{campaign}/media-upload", "user"),
    Route("GET", "/campaigns/{running}/report", "user"),
    Route("GET", "/campaigns/{running}/shippings", "user"),
    Route("GET", "/campaigns/{running}/export?format=csv", "user"),
    Route("GET", "/campaign-settings", "user"),
    Route("POST", "/campaign-settings", "user", {"settings": {"messageInterval": 10}}),
    # webhooks (the rest: test_webhooks.py): {webhook} an endpoint of Alpha
    Route("GET", "/webhooks", "admin"),
    Route("POST", "/webhooks", "admin", {"url": "http://127.0.0.1:9/hook", "events": ["message.created"]}),
    Route("GET", "/webhooks/{webhook}", "admin"),
    Route("PUT", "/webhooks/{webhook}", "admin", {"enabled": False}),
    Route("DELETE", "/webhooks/{webhook}", "admin"),
    Route("POST", "/webhooks/{webhook}/rotate-secret", "admin"),
    Route("POST", "/webhooks/{webhook}/test", "admin"),
    Route("GET", "/webhooks/{webhook}/deliveries?pageNumber=1", "admin"),
    # dashboard and reports (issue 17; figures: test_dashboard.py, test_reports.py)
    Route("GET", "/dashboard/status", "admin"),
    Route("GET", "/dashboard/tickets?date_from=2018-11-04&date_to=2018-11-04", "admin"),
    Route("GET", "/dashboard/users?date_from=2018-11-04&date_to=2018-11-04", "admin"),
    Route("GET", "/dashboard?days=7", "admin"),
    Route("GET", "/dashboard/ticketsUsers?initialDate=2018-11-04&finalDate=2018-11-04", "admin"),
    Route("GET", "/dashboard/ticketsDay?initialDate=2018-11-04&finalDate=2018-11-04", "admin"),
    Route("GET", "/ticketreport/reports", "admin"),
    Route("GET", "/ticketreport/reports/export?format=csv", "admin"),
    Route("GET", "/ticketreport/reports/export?format=xlsx", "admin"),
    Route("GET", "/ticketreport/sla", "admin"),
]
RANK = {"public": 0, "user": 1, "admin": 2, "super": 3}


def routes(*, least: str | None = None, exactly: str | None = None) -> list[Any]:
    chosen = [r for r in ROUTES if (least is None or RANK[r.access] >= RANK[least])
              and (exactly is None or r.access == exactly)]
    return [pytest.param(r, id=r.id) for r in chosen]


# ─── the world: two tenants and every role ──────────────────────────────────────────────


@attrs.frozen
class Caller:
    token: str
    user_id: int
    company_id: int


@attrs.frozen
class World:
    super_admin: Caller  # super, company Default
    default_admin: Caller  # admin (not super) of company Default
    a_admin: Caller  # admin of company Alpha
    a_user: Caller  # plain user of Alpha
    a_colleague_id: int  # another plain user of Alpha
    a_queue_id: int
    a_option_id: int  # a queue option of Alpha's queue
    default_colleague_id: int  # a plain user of Default
    b_admin: Caller  # admin of company Beta
    b_user_id: int
    b_company_id: int
    b_queue_id: int
    a_list_id: int = 0  # a contact list of Alpha
    a_item_id: int = 0  # an item of it
    a_quick_id: int = 0  # a quick message of Alpha's plain user
    a_ticket_id: int = 0  # a ticket of Alpha, assigned to its plain user, and its contact
    a_contact_id: int = 0
    a_note_id: int = 0  # a note of Alpha's plain user on that ticket
    a_schedule_id: int = 0  # a scheduled message of Alpha's plain user, to that contact
    a_campaign_id: int = 0  # a draft campaign of Alpha (its connection, its list)
    a_running_id: int = 0  # a campaign of Alpha in progress
    a_webhook_id: int = 0  # a webhook of Alpha

    def path(self, route: Route, caller: Caller | None) -> str:
        me = caller.user_id if caller is not None else self.a_user.user_id
        colleague = self.a_colleague_id
        if caller is not None and caller.company_id == self.b_company_id:
            colleague = self.b_user_id
        elif caller is not None and caller.company_id == self.super_admin.company_id:
            colleague = self.default_colleague_id
        own = caller.company_id if caller is not None else self.a_user.company_id
        return route.path.format(self=me, colleague=colleague, company=self.b_company_id, key=SETTING,
                                 queue=self.a_queue_id, option=self.a_option_id, own=own, quick=self.a_quick_id,
                                 ticket=self.a_ticket_id, contact=self.a_contact_id, note=self.a_note_id,
                                 schedule=self.a_schedule_id, list=self.a_list_id, item=self.a_item_id,
                                 campaign=self.a_campaign_id, running=self.a_running_id,
                                 webhook=self.a_webhook_id)

    def body(self, route: Route) -> dict[str, Any] | None:
        if route.body is None:
            return None
        ids = {"{queue}": self.a_queue_id, "{option}": self.a_option_id, "{ticket}": self.a_ticket_id,
               "{contact}": self.a_contact_id, "{list}": self.a_list_id}
        return {key: ids.get(value, value) if isinstance(value, str) else value for key, value in route.body.items()}


async def _caller(api: Api, email: str, password: str) -> Caller:
    token = await api.login(email, password)
    me = (await api.client.get("/auth/me", headers=auth(token))).json()
    return Caller(token=token, user_id=me["id"], company_id=me["companyId"])


def _add_queue(server: Server, company_id: int, name: str) -> int:
    return server.sql("INSERT INTO queues (company_id, name) VALUES (%s, %s) RETURNING id", (company_id, name))[0][0]


def _add_contact_list(server: Server, company_id: int) -> tuple[int, int]:
    list_id = server.sql("INSERT INTO contact_lists (company_id, name) VALUES (%s, 'Clientes') RETURNING id",
                         (company_id,))[0][0]
    item_id = server.sql("INSERT INTO contact_list_items (company_id, contact_list_id, name, number) "
                         "VALUES (%s, %s, 'Ana', '5511988880001') RETURNING id", (company_id, list_id))[0][0]
    return list_id, item_id


def _add_option(server: Server, company_id: int, queue_id: int) -> int:
    return server.sql("INSERT INTO queue_options (company_id, queue_id, title, option) VALUES (%s, %s, 'Menu', '1') "
                      "RETURNING id", (company_id, queue_id))[0][0]


def _add_workspace(server: Server, company_id: int, user_id: int) -> dict[str, int]:
    """A quick message of the user, a ticket assigned to them (on a connection of their company) with its
    contact, and a note of theirs on it."""
    def one(query: str, params: tuple[Any, ...]) -> int:
        return server.sql(query, params)[0][0]

    whatsapp = one("INSERT INTO whatsapps (company_id, name, channel) VALUES (%s, 'Alpha line', 'sandbox') "
                   "RETURNING id", (company_id,))
    contact = one("INSERT INTO contacts (company_id, name, number) VALUES (%s, 'Alpha client', '5511900000001') "
                  "RETURNING id", (company_id,))
    ticket = one("INSERT INTO tickets (company_id, contact_id, whatsapp_id, user_id, status) "
                 "VALUES (%s, %s, %s, %s, 'open') RETURNING id", (company_id, contact, whatsapp, user_id))
    return {
        "a_quick_id": one("INSERT INTO quick_messages (company_id, user_id, shortcode, message) "
                          "VALUES (%s, %s, 'hi', 'Hi {{name}}') RETURNING id", (company_id, user_id)),
        "a_ticket_id": ticket, "a_contact_id": contact,
        "a_note_id": one("INSERT INTO ticket_notes (company_id, ticket_id, contact_id, user_id, note) "
                         "VALUES (%s, %s, %s, %s, 'VIP') RETURNING id", (company_id, ticket, contact, user_id)),
    }


def _add_campaigns(server: Server, company_id: int, list_id: int) -> dict[str, int]:
    whatsapp = server.sql("SELECT id FROM whatsapps WHERE company_id = %s ORDER BY id LIMIT 1", (company_id,))[0][0]
    made = {}
    for key, status in (("a_campaign_id", "INATIVA"), ("a_running_id", "EM_ANDAMENTO")):
        made[key] = server.sql("INSERT INTO campaigns (company_id, name, status, whatsapp_id, contact_list_id, "
                               "message1) VALUES (%s, 'Promo', %s, %s, %s, 'Olá') RETURNING id",
                               (company_id, status, whatsapp, list_id))[0][0]
    return made


def _add_webhook(server: Server, company_id: int) -> int:
    return server.sql("INSERT INTO webhooks (company_id, url, events, secret) VALUES (%s, 'http://127.0.0.1:9/hook', "
                      "'{ticket.created}', 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw') RETURNING id", (company_id,))[0][0]


@pytest.fixture
async def world(server: Server, api: Api) -> World:
    super_admin = await _caller(api, ADMIN_EMAIL, ADMIN_PASSWORD)
    await api.create_user(super_admin.token, "deputy@default.test", "deputy-pass-1", profile="admin")
    default_colleague = await api.create_user(super_admin.token, "plain@default.test")
    alpha = await api.create_company(super_admin.token, "Alpha", "admin@alpha.test", "alpha-pass-1")
    beta = await api.create_company(super_admin.token, "Beta", "admin@beta.test", "beta-pass-1")
    a_admin = await _caller(api, "admin@alpha.test", "alpha-pass-1")
    b_admin = await _caller(api, "admin@beta.test", "beta-pass-1")
    await api.create_user(a_admin.token, "user@alpha.test", "user-pass-1")
    colleague = await api.create_user(a_admin.token, "colleague@alpha.test", "colleague-pass-1")
    b_user = await api.create_user(b_admin.token, "user@beta.test", "user-pass-1")
    a_queue_id = await trio.to_thread.run_sync(_add_queue, server, alpha["id"], "A")
    a_list_id, a_item_id = await trio.to_thread.run_sync(_add_contact_list, server, alpha["id"])
    a_user = await _caller(api, "user@alpha.test", "user-pass-1")
    workspace = await trio.to_thread.run_sync(_add_workspace, server, alpha["id"], a_user.user_id)
    made = await api.client.post("/schedules", json={"body": "Olá", "contactId": workspace["a_contact_id"],
                                                     "sendAt": "2030-01-01T10:00"}, headers=auth(a_user.token))
    assert made.status_code == 200, made.text
    return World(
        super_admin=super_admin,
        default_admin=await _caller(api, "deputy@default.test", "deputy-pass-1"),
        a_admin=a_admin, a_user=a_user, a_schedule_id=made.json()["id"],
        a_colleague_id=colleague["id"], a_queue_id=a_queue_id,
        a_option_id=await trio.to_thread.run_sync(_add_option, server, alpha["id"], a_queue_id),
        default_colleague_id=default_colleague["id"],
        b_admin=b_admin, b_user_id=b_user["id"], b_company_id=beta["id"],
        b_queue_id=await trio.to_thread.run_sync(_add_queue, server, beta["id"], "B"),
        a_list_id=a_list_id, a_item_id=a_item_id,
        **workspace,
        **await trio.to_thread.run_sync(_add_campaigns, server, alpha["id"], a_list_id),
        a_webhook_id=await trio.to_thread.run_sync(_add_webhook, server, alpha["id"]),
    )


# ─── helpers: the JSON error shape and the database snapshot ────────────────────────────

SNAPSHOT_TABLES = ("companies", "users", "user_queues", "queues", "settings", "auth_sessions", "platform_settings",
                   "announcements", "helps", "chats", "chat_users", "chat_messages", "files", "files_options",
                   "plans", "invoices", "queue_options", "user_ratings",
                   "quick_messages", "ticket_notes", "schedules", "timers", "contact_lists", "contact_list_items",
                   "contacts", "contact_custom_fields", "campaigns", "campaign_shippings",
                   "campaign_settings", "campaign_opt_outs", "webhooks", "webhook_deliveries")
SNAPSHOT_SQL = "SELECT " + ", ".join(
    f"(SELECT coalesce(json_agg(t ORDER BY t::text), '[]') FROM {table} t) AS {table}" for table in SNAPSHOT_TABLES
)


async def snapshot(server: Server) -> tuple[Any, ...]:
    """Everything the routes of this suite can change."""
    rows = await trio.to_thread.run_sync(server.sql, SNAPSHOT_SQL)
    return rows[0]


def assert_json_error(response: httpx.Response, status: int, code: str | None = None,
                      label: str = "") -> dict[str, Any]:
    assert response.status_code == status, (label, response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json"), (label, response.headers)
    payload = response.json()
    assert isinstance(payload, dict) and payload["error"].startswith("ERR_"), (label, payload)
    assert isinstance(payload["message"], str) and payload["message"], (label, payload)
    if code is not None:
        assert payload["error"] == code, (label, payload)
    return payload


async def send(api: Api, world: World, route: Route, caller: Caller | None, **kwargs: Any) -> httpx.Response:
    headers = kwargs.pop("headers", None) or (auth(caller.token) if caller is not None else {})
    if route.files is not None:
        return await api.client.request(route.method, world.path(route, caller), files=route.files,
                                        headers=headers, **kwargs)
    return await api.client.request(route.method, world.path(route, caller), json=world.body(route),
                                    headers=headers, **kwargs)


async def assert_refused(server: Server, api: Api, world: World, route: Route, caller: Caller | None, *,
                         status: int, code: str | None = None, **kwargs: Any) -> dict[str, Any]:
    before = await snapshot(server)
    response = await send(api, world, route, caller, **kwargs)
    payload = assert_json_error(response, status, code, label=route.id)
    assert await snapshot(server) == before, f"{route.id} answered {status} but changed the database"
    return payload


# ─── (a) no valid token: 401 (none) or 403 (unusable) on every protected route ─────────


def _bad_credentials(server: Server, world: World, refresh_token: str) -> dict[str, dict[str, str]]:
    now = int(time.time())
    claims = {"id": world.a_admin.user_id, "profile": "admin", "companyId": world.a_admin.company_id,
              "super": False, "type": "access", "iat": now, "exp": now + 600}
    secret = server.config.jwt_secret
    return {
        "none": {},
        "bare scheme": {"Authorization": "Bearer"},
        "garbage": {"Authorization": "Bearer not-a-jwt"},
        "basic scheme": {"Authorization": "Basic YWRtaW46eA=="},
        "token without scheme": {"Authorization": jwt.encode(claims, secret, algorithm="HS256")},
        "other secret": auth(jwt.encode(claims, "some-other-secret-" + "z" * 32, algorithm="HS256")),
        "alg none": auth(jwt.encode(claims, None, algorithm="none")),
        "expired": auth(jwt.encode({**claims, "iat": now - 7200, "exp": now - 3600}, secret, algorithm="HS256")),
        "refresh token": auth(refresh_token),
        "refresh secret": auth(jwt.encode(claims, server.config.jwt_refresh_secret, algorithm="HS256")),
        "no companyId": auth(jwt.encode({k: v for k, v in claims.items() if k != "companyId"}, secret,
                                        algorithm="HS256")),
    }


@pytest.mark.parametrize("route", routes(least="user"))
async def test_protected_route_needs_a_valid_token(server: Server, api: Api, world: World, route: Route) -> None:
    with trio.fail_after(TIMEOUT):
        login = await api.client.post("/auth/login", json={"email": "admin@alpha.test", "password": "alpha-pass-1"})
        api.client.cookies.clear()  # the refresh cookie must not ride along
        before = await snapshot(server)
        for name, headers in _bad_credentials(server, world, login.cookies["jrt"]).items():
            # no token: 401 (the family's frontends log out); an unusable one: 403 (they refresh)
            status = 401 if name == "none" else 403
            payload = assert_json_error(await send(api, world, route, None, headers=headers), status, label=name)
            assert payload["error"] in ("ERR_SESSION_EXPIRED", "ERR_INVALID_TOKEN"), (name, payload)
        assert await snapshot(server) == before, f"{route.id} changed the database without a valid token"


PUBLIC_STATUS = {"POST /auth/login": 200, "POST /auth/refresh_token": 401, "GET /health": 200, "GET /ready": 200,
                 "GET /": 200, "GET /version": 200, "GET /public-settings/appName": 200, "GET /plans/list": 200,
                 "GET /plans/all": 200, "POST /companies/cadastro": 403,  # signup: off unless allowSignup
                 "GET /openapi.json": 200, "GET /docs": 200, "GET /metrics": 200}
PUBLIC_TYPES = {"GET /docs": "text/html",  # the spec's reader page
                "GET /metrics": "text/plain"}  # the Prometheus text format; every other answer is JSON


@pytest.mark.parametrize("route", routes(exactly="public"))
async def test_public_route_answers_without_token(api: Api, world: World, route: Route) -> None:
    with trio.fail_after(TIMEOUT):
        api.client.cookies.clear()
        response = await send(api, world, route, None)
        assert response.status_code == PUBLIC_STATUS[route.id], response.text
        assert response.headers["content-type"].startswith(PUBLIC_TYPES.get(route.id, "application/json"))


# ─── the table is honest: the least role named for each route is enough ────────────────


@pytest.mark.parametrize("route", routes(least="user"))
async def test_least_role_is_allowed(api: Api, world: World, route: Route) -> None:
    caller = {"user": world.a_user, "admin": world.a_admin, "super": world.super_admin}[route.access]
    with trio.fail_after(TIMEOUT):
        response = await send(api, world, route, caller)
        assert response.status_code in (200, 201, 202, 204), (route.id, response.text)


# ─── (b) another tenant's records are invisible ────────────────────────────────────────

FOREIGN_USER_ROUTES = [
    Route("GET", "/users/{foreign}", "user"),
    Route("PUT", "/users/{foreign}", "user", {"name": "Hijacked", "password": "hijacked-1", "profile": "user"}),
    Route("DELETE", "/users/{foreign}", "user"),
    Route("POST", "/users/{foreign}/logout", "user"),
]


@pytest.mark.parametrize("route", [pytest.param(r, id=r.id) for r in FOREIGN_USER_ROUTES])
@pytest.mark.parametrize("who", ["a_admin", "a_user", "super_admin"])
async def test_other_company_user_is_not_found(server: Server, api: Api, world: World, route: Route,
                                               who: str) -> None:
    """An id of another tenant answers 404 (as a missing id would), never 403, whatever the caller's role."""
    caller: Caller = getattr(world, who)
    with trio.fail_after(TIMEOUT):
        for foreign in (world.b_user_id, world.b_admin.user_id):
            aimed = attrs.evolve(route, path=route.path.replace("{foreign}", str(foreign)))
            await assert_refused(server, api, world, aimed, caller, status=404, code="ERR_NOT_FOUND")
        missing = attrs.evolve(route, path=route.path.replace("{foreign}", "987654321"))
        await assert_refused(server, api, world, missing, caller, status=404, code="ERR_NOT_FOUND")


async def test_lists_never_show_other_company_users(server: Server, api: Api, world: World) -> None:
    with trio.fail_after(TIMEOUT):
        rows = await trio.to_thread.run_sync(server.sql, "SELECT id, company_id FROM users")
        alpha_ids = {user_id for user_id, company_id in rows if company_id == world.a_admin.company_id}
        listed = (await api.client.get("/users", headers=auth(world.a_admin.token))).json()
        assert {u["id"] for u in listed["users"]} == alpha_ids and listed["count"] == len(alpha_ids)
        assert all(u["companyId"] == world.a_admin.company_id for u in listed["users"])
        for search in ("beta", "user@beta.test", "admin"):
            found = (await api.client.get("/users", params={"searchParam": search},
                                          headers=auth(world.a_admin.token))).json()
            assert {u["id"] for u in found["users"]} <= alpha_ids, search
        short = (await api.client.get("/users/list", headers=auth(world.a_user.token))).json()
        assert {u["id"] for u in short} == alpha_ids


async def test_settings_are_per_company(server: Server, api: Api, world: World) -> None:
    query = "SELECT company_id, key, value, updated_at FROM settings WHERE company_id <> %s ORDER BY 1, 2"
    with trio.fail_after(TIMEOUT):
        others_before = await trio.to_thread.run_sync(server.sql, query, (world.a_admin.company_id,))
        changed = await api.client.put(f"/settings/{SETTING}", json={"value": "enabled"},
                                       headers=auth(world.a_admin.token))
        assert changed.status_code == 200 and changed.json()["value"] == "enabled"
        assert await trio.to_thread.run_sync(server.sql, query, (world.a_admin.company_id,)) == others_before
        mine = await api.client.get(f"/settings/{SETTING}", headers=auth(world.a_user.token))
        theirs = await api.client.get(f"/settings/{SETTING}", headers=auth(world.b_admin.token))
        assert mine.json() == "enabled" and theirs.json() == "disabled"  # the value itself, as ticketz answers
        listed = (await api.client.get("/settings", headers=auth(world.b_admin.token))).json()
        assert {s["key"]: s["value"] for s in listed}[SETTING] == "disabled"


# ─── (c) roles ─────────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize("route", routes(least="admin"))
async def test_plain_user_is_refused_admin_routes(server: Server, api: Api, world: World, route: Route) -> None:
    with trio.fail_after(TIMEOUT):
        await assert_refused(server, api, world, route, world.a_user, status=403, code="ERR_NO_PERMISSION")


@pytest.mark.parametrize("route", routes(exactly="super"))
@pytest.mark.parametrize("who", ["a_admin", "default_admin"])
async def test_company_admin_is_refused_super_routes(server: Server, api: Api, world: World, route: Route,
                                                     who: str) -> None:
    with trio.fail_after(TIMEOUT):
        await assert_refused(server, api, world, route, getattr(world, who), status=403, code="ERR_NO_PERMISSION")


SELF_ESCALATIONS = {
    "profile admin": {"profile": "admin"},
    "super": {"super": True},
    "both, hidden among allowed fields": {"name": "Still Me", "profile": "admin", "super": True},
    "all tickets": {"allTicket": "enable"},
    "queues": {"queueIds": ["{queue}"]},
}


@pytest.mark.parametrize("change", list(SELF_ESCALATIONS.values()), ids=list(SELF_ESCALATIONS))
async def test_plain_user_cannot_raise_own_privileges(server: Server, api: Api, world: World,
                                                      change: dict[str, Any]) -> None:
    body = {k: ([world.a_queue_id] if v == ["{queue}"] else v) for k, v in change.items()}
    with trio.fail_after(TIMEOUT):
        route = Route("PUT", "/users/{self}", "user", body)
        await assert_refused(server, api, world, route, world.a_user, status=403, code="ERR_NO_PERMISSION")
        me = (await api.client.get("/auth/me", headers=auth(world.a_user.token))).json()
        assert (me["profile"], me["super"], me["name"]) == ("user", False, "user")


ADMIN_SUPER_ATTEMPTS = [
    Route("POST", "/users", "super", {"name": "Root", "email": "root@alpha.test", "password": "root-pass-1",
                                      "profile": "admin", "super": True}),
    Route("PUT", "/users/{self}", "super", {"super": True}),
    Route("PUT", "/users/{colleague}", "super", {"super": True, "profile": "admin"}),
]


@pytest.mark.parametrize("route", [pytest.param(r, id=r.id) for r in ADMIN_SUPER_ATTEMPTS])
@pytest.mark.parametrize("who", ["a_admin", "default_admin"])
async def test_company_admin_cannot_make_a_super_user(server: Server, api: Api, world: World, route: Route,
                                                      who: str) -> None:
    with trio.fail_after(TIMEOUT):
        await assert_refused(server, api, world, route, getattr(world, who), status=403, code="ERR_NO_PERMISSION")
        supers = await trio.to_thread.run_sync(server.sql, "SELECT email FROM users WHERE super")
        assert supers == [(ADMIN_EMAIL,)]


SUPER_TAKEOVERS = {
    "password": ("PUT", {"password": "taken-over-1"}),
    "email": ("PUT", {"email": "mine@default.test"}),
    "demote": ("PUT", {"profile": "user"}),
    "delete": ("DELETE", None),
}


@pytest.mark.parametrize("attempt", list(SUPER_TAKEOVERS.values()), ids=list(SUPER_TAKEOVERS))
async def test_company_admin_cannot_take_over_the_super_admin(server: Server, api: Api, world: World,
                                                              attempt: tuple[str, Any]) -> None:
    """An admin of the super admin's own company could otherwise set its password and log in as super."""
    method, body = attempt
    route = Route(method, f"/users/{world.super_admin.user_id}", "super", body)
    with trio.fail_after(TIMEOUT):
        await assert_refused(server, api, world, route, world.default_admin, status=403, code="ERR_NO_PERMISSION")
        await api.login(ADMIN_EMAIL, ADMIN_PASSWORD)


@pytest.mark.parametrize("route", [pytest.param(r, id=r.id) for r in ROUTES if "{webhook}" in r.path])
async def test_other_company_webhook_is_not_found(server: Server, api: Api, world: World, route: Route) -> None:
    """Beta's admin aiming at Alpha's webhook: 404, as a missing id, and nothing written."""
    with trio.fail_after(TIMEOUT):
        await assert_refused(server, api, world, route, world.b_admin, status=404, code="ERR_NOT_FOUND")


# ─── the dashboard and reports: another company's figures are never reachable ──────────


async def test_dashboard_and_reports_show_only_the_callers_company(server: Server, api: Api, world: World) -> None:
    """Beta's tickets, events and ratings exist; Alpha's admin sees none of them — also naming Beta in
    `companyId` (honoured for super admins only) or Beta's queue and user in the filters."""
    with trio.fail_after(TIMEOUT):
        def script() -> None:
            wid = server.sql("INSERT INTO whatsapps (company_id, name, channel) VALUES (%s, 'B sandbox', 'sandbox') "
                             "RETURNING id", (world.b_company_id,))[0][0]
            contact = server.sql("INSERT INTO contacts (company_id, name, number) VALUES (%s, 'B client', "
                                 "'5521900000001') RETURNING id", (world.b_company_id,))[0][0]
            ticket = server.sql("INSERT INTO tickets (company_id, contact_id, whatsapp_id, queue_id, user_id, status) "
                                "VALUES (%s, %s, %s, %s, %s, 'closed') RETURNING id",
                                (world.b_company_id, contact, wid, world.b_queue_id, world.b_user_id))[0][0]
            for kind in ("created", "accepted", "closed"):
                server.sql("INSERT INTO ticket_events (company_id, ticket_id, kind, user_id, queue_id) "
                           "VALUES (%s, %s, %s, %s, %s)", (world.b_company_id, ticket, kind, world.b_user_id,
                                                           world.b_queue_id))
            server.sql("INSERT INTO user_ratings (company_id, ticket_id, user_id, rate) VALUES (%s, %s, %s, 5)",
                       (world.b_company_id, ticket, world.b_user_id))

        await trio.to_thread.run_sync(script)
        b_events = await trio.to_thread.run_sync(server.sql, "SELECT count(*) FROM dashboard_counters "
                                                 "WHERE company_id = %s", (world.b_company_id,))
        assert b_events[0][0] > 0  # Beta's figures exist
        headers = auth(world.a_admin.token)
        beta = {"companyId": world.b_company_id}
        status = (await api.client.get("/dashboard/status", params=beta, headers=headers)).json()
        assert all(u["id"] != world.b_user_id for u in status["usersStatusSummary"])
        alpha_active = await trio.to_thread.run_sync(server.sql, "SELECT count(*) FROM tickets WHERE company_id = %s "
                                                     "AND status IN ('open', 'pending')", (world.a_admin.company_id,))
        assert sum(s["count"] for s in status["ticketsStatusSummary"]) == alpha_active[0][0]
        tickets = (await api.client.get("/dashboard/tickets", params={**beta, "date_from": "2000-01-01",
                                                                       "date_to": "2001-01-01"}, headers=headers))
        assert tickets.status_code == 200
        now = (await api.client.get("/dashboard", params=beta, headers=headers)).json()
        assert now["counters"]["supportFinished"] == 0
        assert all(a["id"] != world.b_user_id for a in now["attendants"])
        users = (await api.client.get("/dashboard/users", params={"date_from": "2026-01-01", "date_to": "2026-12-31",
                                                                  **beta}, headers=headers)).json()
        assert all(u["id"] != world.b_user_id and u["closedTickets"] == 0 for u in users["userReport"])
        alpha_tickets = {row[0] for row in await trio.to_thread.run_sync(
            server.sql, "SELECT id FROM tickets WHERE company_id = %s", (world.a_admin.company_id,))}
        report = (await api.client.get("/ticketreport/reports", params=beta, headers=headers)).json()
        assert {t["id"] for t in report["tickets"]} == alpha_tickets and report["count"] == len(alpha_tickets)
        for params in ({"queueId": world.b_queue_id}, {"userId": world.b_user_id}):
            report = (await api.client.get("/ticketreport/reports", params=params, headers=headers)).json()
            assert report["tickets"] == [] and report["totalTickets"] == {"total": 0}, params
        exported = await api.client.get("/ticketreport/reports/export", params={"format": "csv", **beta},
                                        headers=headers)
        assert exported.status_code == 200 and "B client" not in exported.text
        assert len(exported.text.strip().splitlines()) == 1 + len(alpha_tickets)
        sla = (await api.client.get("/ticketreport/sla", params=beta, headers=headers)).json()
        assert sla["csat"]["count"] == 0 and sla["overall"]["resolution"]["count"] == 0
        assert sla["byUser"] == [] and sum(map(sum, sla["heatmap"])) == 0
        # the same calls by Beta's admin do see them: the checks above could fail
        mine = (await api.client.get("/ticketreport/sla", headers=auth(world.b_admin.token))).json()
        assert mine["csat"]["count"] == 1 and mine["overall"]["resolution"]["count"] == 1
