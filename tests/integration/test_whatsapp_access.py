"""Connections (`/whatsapp`, `/whatsappsession`, `/sandbox`): tenancy, roles, bad input, and the rules
that keep one company's connections consistent (limit, one default, unique names, delete).

One table lists every route of the feature with the least role that may call it (the same style as
test_isolation.py). Every refused request is checked twice: by its answer (a JSON error) and by what
it could have touched, which must be exactly as before: the connection rows, and the sandbox
network's own state of each connection (an inbound message, a fault or a pairing lives only there).

The module's server shows each sandbox QR code for a minute (instead of a second), so a connection
waiting for a scan holds still and a before/after snapshot of the table means something.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import httpx
import jwt
import pytest
import trio

from gateway.broker import Event, Subscription
from tests.integration.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, Api, Server, auth, make_config, start_server
from tests.integration.test_whatsapp import wait_status

TIMEOUT = 30
MISSING_ID = 987_654_321
DIAL_FAILURE = "failed to dial"


@pytest.fixture
async def server(nursery: trio.Nursery, database_url: str, tmp_path: Path) -> AsyncIterator[Server]:
    """The app with slow sandbox QR rotation (see the module docstring)."""
    srv = await start_server(nursery, make_config(tmp_path, database_url, sandbox_qr_interval=60.0))
    yield srv
    nursery.cancel_scope.cancel()
    await srv.db.aclose()


# ─── the route table ────────────────────────────────────────────────────────────────────
# `{id}` is a connection id. `access` is the least role that may call the route (user: any user of
# the company). `ok` is what the least role gets on its own connection that shows a QR code (ack
# reaches the sandbox, which knows no such message: that 409 proves the access checks passed).


@attrs.frozen
class Route:
    method: str
    path: str
    access: str
    body: dict[str, Any] | None = None
    ok: int = 200
    ok_code: str | None = None

    @property
    def id(self) -> str:
        return f"{self.method} {self.path}"

    def at(self, whatsapp_id: int | str) -> str:
        return self.path.replace("{id}", str(whatsapp_id))


NEW_CONNECTION = {"name": "Brand New", "channel": "sandbox"}
ROUTES = [
    Route("GET", "/whatsapp", "user"),
    Route("GET", "/whatsapp/", "user"),
    Route("POST", "/whatsapp", "admin", NEW_CONNECTION, ok=201),
    Route("POST", "/whatsapp/", "admin", NEW_CONNECTION, ok=201),
    Route("GET", "/whatsapp/{id}", "user"),
    Route("PUT", "/whatsapp/{id}", "admin", {"name": "Renamed", "isDefault": True, "greetingMessage": "hi!"}),
    Route("DELETE", "/whatsapp/{id}", "admin"),
    Route("GET", "/whatsapp/{id}/qrcode", "user"),
    Route("POST", "/whatsappsession/{id}", "admin"),
    Route("PUT", "/whatsappsession/{id}", "admin"),
    Route("DELETE", "/whatsappsession/{id}", "admin"),
    Route("POST", "/whatsappsession/{id}/pairing-code", "admin", {"number": "+55 11 96666-5555"}),
    Route("GET", "/sandbox/{id}", "admin"),
    Route("POST", "/sandbox/{id}/pair", "admin", {"number": "5511955554444"}),
    Route("POST", "/sandbox/{id}/inbound", "admin", {"from": "5511988887777", "body": "psst"}),
    Route("GET", "/sandbox/{id}/outbox", "admin"),
    Route("POST", "/sandbox/{id}/ack", "admin", {"id": "3EB0AAAA", "ack": "read"}, ok=409,
          ok_code="ERR_SANDBOX_UNKNOWN_MESSAGE"),
    Route("POST", "/sandbox/{id}/fault", "admin", {"kind": "send_failure", "count": 3}),
]
WITH_ID = [r for r in ROUTES if "{id}" in r.path]
ADMIN_ROUTES = [r for r in ROUTES if r.access == "admin"]
SANDBOX_ROUTES = [r for r in ROUTES if r.path.startswith("/sandbox/")]


def params(routes: list[Route]) -> list[Any]:
    return [pytest.param(r, id=r.id) for r in routes]


# ─── the world: three companies, every role, connections in every state ────────────────


@attrs.frozen
class Caller:
    token: str
    user_id: int
    company_id: int


@attrs.frozen
class World:
    super_admin: Caller  # super, company Default
    default_admin: Caller  # admin (not super) of Default
    a_admin: Caller  # admin of Alpha
    a_user: Caller  # plain user of Alpha
    a_queue: int
    a_conn: int  # Alpha's sandbox connection, showing a QR code
    b_admin: Caller  # admin of Beta
    b_queue: int
    b_live: int  # Beta's sandbox connection: paired (CONNECTED), the default, with a queue
    b_waiting: int  # Beta's sandbox connection showing a QR code

    @property
    def b_company(self) -> int:
        return self.b_admin.company_id


async def _caller(api: Api, email: str, password: str) -> Caller:
    token = await api.login(email, password)
    me = (await api.client.get("/auth/me", headers=auth(token))).json()
    return Caller(token=token, user_id=me["id"], company_id=me["companyId"])


def _add_queue(server: Server, company_id: int, name: str) -> int:
    return server.sql("INSERT INTO queues (company_id, name) VALUES (%s, %s) RETURNING id", (company_id, name))[0][0]


async def showing_qr(api: Api, caller: Caller, whatsapp_id: int) -> dict[str, Any]:
    return await wait_status(api, caller.token, whatsapp_id, lambda r: r["status"] == "qrcode" and r["qrcode"],
                             "qrcode")


async def create(api: Api, caller: Caller, **fields: Any) -> dict[str, Any]:
    """Create a connection (sandbox unless told); a sandbox one is returned once it shows its QR code,
    when its session has stopped writing (so that snapshots taken afterwards hold still)."""
    response = await api.client.post("/whatsapp", json={"channel": "sandbox", **fields}, headers=auth(caller.token))
    assert response.status_code == 201, response.text
    created = response.json()
    if created["channel"] == "sandbox":
        await showing_qr(api, caller, created["id"])
    return created


@pytest.fixture
async def world(server: Server, api: Api) -> World:
    with trio.fail_after(TIMEOUT):
        super_admin = await _caller(api, ADMIN_EMAIL, ADMIN_PASSWORD)
        await api.create_user(super_admin.token, "deputy@default.test", "deputy-pass-1", profile="admin")
        alpha = await api.create_company(super_admin.token, "Alpha", "admin@alpha.test", "alpha-pass-1")
        beta = await api.create_company(super_admin.token, "Beta", "admin@beta.test", "beta-pass-1")
        a_admin = await _caller(api, "admin@alpha.test", "alpha-pass-1")
        b_admin = await _caller(api, "admin@beta.test", "beta-pass-1")
        await api.create_user(a_admin.token, "user@alpha.test", "user-pass-1")
        a_queue = await trio.to_thread.run_sync(_add_queue, server, alpha["id"], "A")
        b_queue = await trio.to_thread.run_sync(_add_queue, server, beta["id"], "B")

        a_conn = (await create(api, a_admin, name="Alpha Line", queueIds=[a_queue]))["id"]
        b_live = (await create(api, b_admin, name="Beta Main", isDefault=True, queueIds=[b_queue]))["id"]
        b_waiting = (await create(api, b_admin, name="Beta Spare"))["id"]
        paired = await api.client.post(f"/sandbox/{b_live}/pair", json={"number": "5511977776666"},
                                       headers=auth(b_admin.token))
        assert paired.status_code == 200, paired.text
        await wait_status(api, b_admin.token, b_live, lambda r: r["status"] == "CONNECTED", "CONNECTED")
        return World(
            super_admin=super_admin, default_admin=await _caller(api, "deputy@default.test", "deputy-pass-1"),
            a_admin=a_admin, a_user=await _caller(api, "user@alpha.test", "user-pass-1"), a_queue=a_queue,
            a_conn=a_conn, b_admin=b_admin, b_queue=b_queue, b_live=b_live, b_waiting=b_waiting,
        )


# ─── helpers: the JSON error shape and the snapshots ────────────────────────────────────

SNAPSHOT_TABLES = ("whatsapps", "whatsapp_queues", "queues", "settings", "companies", "users")
SNAPSHOT_SQL = "SELECT " + ", ".join(
    f"(SELECT coalesce(json_agg(t ORDER BY t::text), '[]') FROM {table} t) AS {table}" for table in SNAPSHOT_TABLES
)


@attrs.frozen
class Snapshot:
    tables: tuple[Any, ...]
    sandbox: dict[int, Any]  # the network's state of each connection, as its own admin reads it


async def snapshot(server: Server, api: Api, world: World) -> Snapshot:
    """Everything the routes of this suite can change."""
    tables = (await trio.to_thread.run_sync(server.sql, SNAPSHOT_SQL))[0]
    sandbox = {}
    for owner, whatsapp_id in ((world.a_admin, world.a_conn), (world.b_admin, world.b_live),
                               (world.b_admin, world.b_waiting)):
        response = await api.client.get(f"/sandbox/{whatsapp_id}", headers=auth(owner.token))
        sandbox[whatsapp_id] = response.json() if response.status_code == 200 else response.status_code
    return Snapshot(tables, sandbox)


def assert_json_error(response: httpx.Response, status: int | tuple[int, ...], code: str | None = None,
                      field: str | None = None, label: str = "") -> dict[str, Any]:
    statuses = (status,) if isinstance(status, int) else status
    assert response.status_code in statuses, (label, response.status_code, response.text[:500])
    assert response.headers.get("content-type", "").startswith("application/json"), (label, response.headers)
    payload = response.json()
    assert isinstance(payload, dict) and str(payload.get("error", "")).startswith("ERR_"), (label, payload)
    assert isinstance(payload.get("message"), str) and payload["message"], (label, payload)
    if code is not None:
        assert payload["error"] == code, (label, payload)
    if field is not None:
        assert payload.get("field") == field, (label, payload)
    return payload


async def refused(server: Server, api: Api, world: World, method: str, path: str, *,
                  status: int | tuple[int, ...], code: str | None = None, field: str | None = None,
                  label: str = "", **kwargs: Any) -> dict[str, Any]:
    """Send a request that must be refused, and check that nothing it could touch has moved."""
    label = label or f"{method} {path}"
    before = await snapshot(server, api, world)
    response = await api.client.request(method, path, **kwargs)
    payload = assert_json_error(response, status, code, field, label)
    after = await snapshot(server, api, world)
    assert after.sandbox == before.sandbox, f"{label}: answered {response.status_code} but changed the sandbox"
    assert after.tables == before.tables, f"{label}: answered {response.status_code} but wrote"
    return payload


def drain(subscription: Subscription) -> list[Event]:
    events = []
    while (event := subscription.receive_nowait()) is not None:
        events.append(event)
    return events


def count_rows(server: Server, company_id: int) -> int:
    return server.sql("SELECT count(*) FROM whatsapps WHERE company_id = %s", (company_id,))[0][0]


# ─── 1. no token: 401 everywhere; an unusable one: 403 ──────────────────────────────────


async def test_every_route_needs_a_valid_token(server: Server, api: Api, world: World) -> None:
    now = int(time.time())
    claims = {"id": world.a_admin.user_id, "profile": "admin", "companyId": world.a_admin.company_id,
              "super": False, "type": "access", "iat": now - 7200, "exp": now - 3600}
    credentials = {
        "none": {},
        "garbage": {"Authorization": "Bearer not-a-jwt"},
        "expired": auth(jwt.encode(claims, server.config.jwt_secret, algorithm="HS256")),
        "other secret": auth(jwt.encode({**claims, "exp": now + 600}, "another-secret-" + "z" * 32,
                                        algorithm="HS256")),
    }
    with trio.fail_after(TIMEOUT):
        for route in ROUTES:
            for name, headers in credentials.items():
                label = f"{route.id} with {name}"
                status = 401 if name == "none" else 403  # no token: log out; an unusable one: refresh
                payload = await refused(server, api, world, route.method, route.at(world.a_conn), status=status,
                                        label=label, json=route.body, headers=headers)
                assert payload["error"] in ("ERR_SESSION_EXPIRED", "ERR_INVALID_TOKEN"), (label, payload)


# ─── the table is honest: the least role named for each route is enough ────────────────


@pytest.mark.parametrize("route", params(ROUTES))
async def test_least_role_is_allowed(api: Api, world: World, route: Route) -> None:
    caller = world.a_user if route.access == "user" else world.a_admin
    with trio.fail_after(TIMEOUT):
        response = await api.client.request(route.method, route.at(world.a_conn), json=route.body,
                                            headers=auth(caller.token))
        if route.ok_code is None:
            assert response.status_code == route.ok, (route.id, response.status_code, response.text)
        else:
            assert_json_error(response, route.ok, route.ok_code, label=route.id)


# ─── 2. another company's connections: 404, invisible, untouched ───────────────────────


@pytest.mark.parametrize("who", ["a_admin", "a_user", "super_admin"])
async def test_other_company_connections_are_not_found(server: Server, api: Api, world: World, who: str) -> None:
    """Every route with an id answers 404 for Beta's connections, as for an id that does not exist,
    whatever the caller's role; Beta's rows, sandbox state and event stream stay as they were."""
    caller: Caller = getattr(world, who)
    # ~150 requests, each with its before/after snapshot of Beta's rows: a hang guard of its size (30 s was hit
    # with the machine's cores shared by parallel tests).
    with trio.fail_after(2 * TIMEOUT), server.broker.subscribe(world.b_company) as beta_events:
        for route in WITH_ID:
            for target in (world.b_live, world.b_waiting, MISSING_ID):
                label = f"{route.id} on {target} by {who}"
                payload = await refused(server, api, world, route.method, route.at(target), status=404,
                                        code="ERR_NOT_FOUND", label=label, json=route.body,
                                        headers=auth(caller.token))
                assert "no such route" not in payload["message"], (label, payload)  # the route exists
        for odd in ("abc", "0", "-1", "1.0", "9" * 18, "9" * 40):  # ids that cannot name a row: 404 as well
            for route in WITH_ID:
                response = await api.client.request(route.method, route.at(odd), json=route.body,
                                                    headers=auth(caller.token))
                assert_json_error(response, 404, "ERR_NOT_FOUND", label=f"{route.id} on {odd!r} by {who}")
        assert drain(beta_events) == [], "a refused request published to Beta"
        live = (await api.client.get(f"/whatsapp/{world.b_live}", headers=auth(world.b_admin.token))).json()
        assert live["status"] == "CONNECTED" and live["number"] == "5511977776666" and live["isDefault"]
        assert [q["id"] for q in live["queues"]] == [world.b_queue]


async def test_lists_never_show_other_company_connections(server: Server, api: Api, world: World) -> None:
    with trio.fail_after(TIMEOUT):
        await create(api, world.super_admin, name="Default Line")
        rows = await trio.to_thread.run_sync(server.sql, "SELECT id, company_id FROM whatsapps")
        for caller in (world.a_admin, world.a_user, world.super_admin):
            mine = {whatsapp_id for whatsapp_id, company_id in rows if company_id == caller.company_id}
            for path in ("/whatsapp", "/whatsapp/"):
                listed = await api.client.get(path, headers=auth(caller.token))
                assert listed.status_code == 200, listed.text
                assert mine and {c["id"] for c in listed.json()} == mine, (caller.user_id, path)
                assert all(c["companyId"] == caller.company_id for c in listed.json())
        assert {world.b_live, world.b_waiting}.isdisjoint(mine)


# ─── 3. roles: plain users read (without the token), admins do the rest ────────────────


async def test_plain_user_is_refused_admin_routes(server: Server, api: Api, world: World) -> None:
    with trio.fail_after(TIMEOUT), server.broker.subscribe(world.a_user.company_id) as events:
        for route in ADMIN_ROUTES:
            await refused(server, api, world, route.method, route.at(world.a_conn), status=403,
                          code="ERR_NO_PERMISSION", label=route.id, json=route.body, headers=auth(world.a_user.token))
        assert drain(events) == []
        # the connection still shows the same QR code: nothing restarted, paired or logged out
        assert (await showing_qr(api, world.a_admin, world.a_conn))["name"] == "Alpha Line"


async def test_token_is_shown_to_admins_only(server: Server, api: Api, world: World) -> None:
    with trio.fail_after(TIMEOUT), server.broker.subscribe(world.a_admin.company_id) as events:
        created = await create(api, world.a_admin, name="Second", token="a-chosen-api-token-0001")
        assert created["token"] == "a-chosen-api-token-0001"
        tokens = dict(await trio.to_thread.run_sync(
            server.sql, "SELECT id, token FROM whatsapps WHERE company_id = %s", (world.a_admin.company_id,)))
        assert all(tokens.values()) and len(tokens) == 2
        for caller, shown in ((world.a_user, False), (world.a_admin, True)):
            for path in ("/whatsapp", "/whatsapp/"):
                listed = (await api.client.get(path, headers=auth(caller.token))).json()
                assert {c["id"]: c["token"] for c in listed} == (tokens if shown else dict.fromkeys(tokens)), path
            for whatsapp_id, token in tokens.items():
                one = (await api.client.get(f"/whatsapp/{whatsapp_id}", headers=auth(caller.token))).json()
                assert one["token"] == (token if shown else None)
        # every user of the company gets the connection events: they never carry the token
        await showing_qr(api, world.a_admin, created["id"])
        seen = drain(events)
        assert seen
        for event in seen:
            assert not any(token in json.dumps(event.payload) for token in tokens.values()), event


# ─── 4. bad input: 400 naming the field, nothing written ───────────────────────────────

LONG = "x" * 256
PNG = {"kind": "image", "mimetype": "image/png"}
# (method, path, body, field); `{a}` is Alpha's connection (the caller is Alpha's admin)
FIELD_ERRORS: dict[str, dict[str, tuple[str, str, Any, str]]] = {
    "connection": {
        "name missing": ("POST", "/whatsapp", {"channel": "sandbox"}, "name"),
        "name empty": ("POST", "/whatsapp", {"name": "   ", "channel": "sandbox"}, "name"),
        "name null": ("POST", "/whatsapp", {"name": None}, "name"),
        "name too long": ("POST", "/whatsapp", {"name": LONG, "channel": "sandbox"}, "name"),
        "name a number": ("POST", "/whatsapp", {"name": 123, "channel": "sandbox"}, "name"),
        "name a list": ("POST", "/whatsapp/", {"name": ["x"], "channel": "sandbox"}, "name"),
        "channel unknown": ("POST", "/whatsapp", {"name": "X", "channel": "telegram"}, "channel"),
        "channel empty": ("POST", "/whatsapp", {"name": "X", "channel": ""}, "channel"),
        "channel a number": ("POST", "/whatsapp", {"name": "X", "channel": 1}, "channel"),
        "isDefault a string": ("POST", "/whatsapp", {"name": "X", "channel": "sandbox", "isDefault": "true"},
                               "isDefault"),
        "isDefault a number": ("POST", "/whatsapp", {"name": "X", "channel": "sandbox", "isDefault": 1},
                               "isDefault"),
        "queueIds a string": ("POST", "/whatsapp", {"name": "X", "channel": "sandbox", "queueIds": "1,2"},
                              "queueIds"),
        "queueIds an object": ("POST", "/whatsapp", {"name": "X", "channel": "sandbox", "queueIds": {"a": 1}},
                               "queueIds"),
        "queueIds item a word": ("POST", "/whatsapp", {"name": "X", "channel": "sandbox", "queueIds": [1, "two"]},
                                 "queueIds[1]"),
        "token too short": ("POST", "/whatsapp", {"name": "X", "channel": "sandbox", "token": "short"}, "token"),
        "token 15 characters": ("POST", "/whatsapp", {"name": "X", "channel": "sandbox", "token": "t" * 15},
                                "token"),
        "token a number": ("POST", "/whatsapp", {"name": "X", "channel": "sandbox", "token": 1234567890123456789},
                           "token"),
        "update: name too long": ("PUT", "/whatsapp/{a}", {"name": LONG}, "name"),
        "update: name empty": ("PUT", "/whatsapp/{a}", {"name": ""}, "name"),
        "update: isDefault a string": ("PUT", "/whatsapp/{a}", {"isDefault": "yes"}, "isDefault"),
        "update: queueIds a number": ("PUT", "/whatsapp/{a}", {"queueIds": 5}, "queueIds"),
        "update: token too short": ("PUT", "/whatsapp/{a}", {"token": "abc"}, "token"),
        "update: channel changed": ("PUT", "/whatsapp/{a}", {"channel": "whatsapp"}, "channel"),
        "update: channel unknown": ("PUT", "/whatsapp/{a}", {"channel": "telegram"}, "channel"),
        "qrcode: unknown format": ("GET", "/whatsapp/{a}/qrcode?format=gif", None, "format"),
        "pairing code: number missing": ("POST", "/whatsappsession/{a}/pairing-code", {}, "number"),
        "pairing code: number too short": ("POST", "/whatsappsession/{a}/pairing-code", {"number": "12"}, "number"),
    },
    "sandbox": {
        "inbound: from missing": ("POST", "/sandbox/{a}/inbound", {"body": "hi"}, "from"),
        "inbound: empty body": ("POST", "/sandbox/{a}/inbound", {}, "from"),
        "inbound: from a number": ("POST", "/sandbox/{a}/inbound", {"from": 5511988887777}, "from"),
        "inbound: from not a phone": ("POST", "/sandbox/{a}/inbound", {"from": "hello there"}, "from"),
        "inbound: lid garbage": ("POST", "/sandbox/{a}/inbound", {"from": "5511988887777", "lid": "not-a-lid"},
                                 "lid"),
        "inbound: body a number": ("POST", "/sandbox/{a}/inbound", {"from": "5511988887777", "body": 5}, "body"),
        "inbound: id with spaces": ("POST", "/sandbox/{a}/inbound", {"from": "5511988887777", "id": "a b"}, "id"),
        "inbound: media bad base64": ("POST", "/sandbox/{a}/inbound",
                                      {"from": "5511988887777", "media": {**PNG, "base64": "not base64!"}},
                                      "media.base64"),
        "inbound: media base64 not ascii": ("POST", "/sandbox/{a}/inbound",
                                            {"from": "5511988887777", "media": {**PNG, "base64": "ação"}},
                                            "media.base64"),
        "inbound: media base64 missing": ("POST", "/sandbox/{a}/inbound",
                                          {"from": "5511988887777", "media": PNG}, "media.base64"),
        "inbound: media kind unknown": ("POST", "/sandbox/{a}/inbound",
                                        {"from": "5511988887777",
                                         "media": {**PNG, "kind": "hologram", "base64": "aGk="}}, "media.kind"),
        "inbound: media kind missing": ("POST", "/sandbox/{a}/inbound",
                                        {"from": "5511988887777", "media": {"mimetype": "x/y", "base64": "aGk="}},
                                        "media.kind"),
        "inbound: media not an object": ("POST", "/sandbox/{a}/inbound",
                                         {"from": "5511988887777", "media": "aGk="}, "media"),
        "inbound: group a string": ("POST", "/sandbox/{a}/inbound", {"from": "5511988887777", "group": "abc"},
                                    "group"),
        "inbound: group a list": ("POST", "/sandbox/{a}/inbound", {"from": "5511988887777", "group": ["1@g.us"]},
                                  "group"),
        "inbound: group without id": ("POST", "/sandbox/{a}/inbound",
                                      {"from": "5511988887777", "group": {"name": "Team"}}, "group.id"),
        "inbound: group id not a group": ("POST", "/sandbox/{a}/inbound",
                                          {"from": "5511988887777", "group": {"id": "team chat"}}, "group.id"),
        "inbound: timestamp garbage": ("POST", "/sandbox/{a}/inbound",
                                       {"from": "5511988887777", "timestamp": "yesterday"}, "timestamp"),
        "inbound: timestamp bad date": ("POST", "/sandbox/{a}/inbound",
                                        {"from": "5511988887777", "timestamp": "2024-13-45T25:61:00Z"}, "timestamp"),
        "inbound: timestamp negative": ("POST", "/sandbox/{a}/inbound",
                                        {"from": "5511988887777", "timestamp": -1}, "timestamp"),
        "inbound: timestamp far future": ("POST", "/sandbox/{a}/inbound",
                                          {"from": "5511988887777", "timestamp": 10**15}, "timestamp"),
        "inbound: timestamp a bool": ("POST", "/sandbox/{a}/inbound",
                                      {"from": "5511988887777", "timestamp": True}, "timestamp"),
        "inbound: timestamp an object": ("POST", "/sandbox/{a}/inbound",
                                         {"from": "5511988887777", "timestamp": {"s": 1}}, "timestamp"),
        "fault: kind unknown": ("POST", "/sandbox/{a}/fault", {"kind": "earthquake"}, "kind"),
        "fault: kind missing": ("POST", "/sandbox/{a}/fault", {}, "kind"),
        "fault: kind a number": ("POST", "/sandbox/{a}/fault", {"kind": 3}, "kind"),
        "fault: latency not a number": ("POST", "/sandbox/{a}/fault", {"kind": "latency", "seconds": "fast"},
                                        "seconds"),
        "fault: send_failure count zero": ("POST", "/sandbox/{a}/fault", {"kind": "send_failure", "count": 0},
                                           "count"),
        "ack: value unknown": ("POST", "/sandbox/{a}/ack", {"id": "3EB0AAAA", "ack": "seen"}, "ack"),
        "ack: value played": ("POST", "/sandbox/{a}/ack", {"id": "3EB0AAAA", "ack": "played"}, "ack"),
        "ack: value missing": ("POST", "/sandbox/{a}/ack", {"id": "3EB0AAAA"}, "ack"),
        "ack: id missing": ("POST", "/sandbox/{a}/ack", {"ack": "read"}, "id"),
        "pair: number letters": ("POST", "/sandbox/{a}/pair", {"number": "call me"}, "number"),
        "pair: number too short": ("POST", "/sandbox/{a}/pair", {"number": "123"}, "number"),
        "pair: number too long": ("POST", "/sandbox/{a}/pair", {"number": "1" * 16}, "number"),
        "pair: number a number": ("POST", "/sandbox/{a}/pair", {"number": 5511999990000}, "number"),
    },
}


@pytest.mark.parametrize("group", list(FIELD_ERRORS))
async def test_invalid_bodies_name_the_field(server: Server, api: Api, world: World, group: str) -> None:
    with trio.fail_after(TIMEOUT):
        for label, (method, path, body, field) in FIELD_ERRORS[group].items():
            await refused(server, api, world, method, path.format(a=world.a_conn), status=400, field=field,
                          label=label, json=body, headers=auth(world.a_admin.token))
        # and the connection that all of this was aimed at is as it was
        assert (await showing_qr(api, world.a_admin, world.a_conn))["name"] == "Alpha Line"


async def test_queues_of_another_company_are_refused(server: Server, api: Api, world: World) -> None:
    """A queue id of Beta (or one that does not exist) is refused on create and update; nothing is created
    and Alpha's connection keeps its queue."""
    with trio.fail_after(TIMEOUT):
        for queue_ids in ([world.b_queue], [world.a_queue, world.b_queue], [MISSING_ID]):
            await refused(server, api, world, "POST", "/whatsapp", status=(400, 404), label=f"create {queue_ids}",
                          json={"name": "Sneaky", "channel": "sandbox", "queueIds": queue_ids},
                          headers=auth(world.a_admin.token))
            await refused(server, api, world, "PUT", f"/whatsapp/{world.a_conn}", status=(400, 404),
                          label=f"update {queue_ids}", json={"name": "Sneaky", "queueIds": queue_ids},
                          headers=auth(world.a_admin.token))
        assert await trio.to_thread.run_sync(count_rows, server, world.a_admin.company_id) == 1
        row = (await api.client.get(f"/whatsapp/{world.a_conn}", headers=auth(world.a_admin.token))).json()
        assert (row["name"], [q["id"] for q in row["queues"]]) == ("Alpha Line", [world.a_queue])


# ─── 5. sandbox routes on a real WhatsApp connection; a live start on this machine ─────


async def test_sandbox_routes_refuse_a_whatsapp_connection(server: Server, api: Api, world: World) -> None:
    with trio.fail_after(TIMEOUT):
        real = await create(api, world.a_admin, name="Real Phone", channel="whatsapp")
        assert real["channel"] == "whatsapp"
        for route in SANDBOX_ROUTES:
            response = await api.client.request(route.method, route.at(real["id"]), json=route.body,
                                                headers=auth(world.a_admin.token))
            assert_json_error(response, 400, "ERR_NOT_SANDBOX", label=route.id)
        # a sandbox connection cannot become a real one (or the reverse) by an update
        response = await api.client.put(f"/whatsapp/{real['id']}", json={"channel": "sandbox"},
                                        headers=auth(world.a_admin.token))
        assert_json_error(response, 400, field="channel")


async def test_a_live_start_records_the_dial_failure_and_retries(server: Server, api: Api, world: World) -> None:
    """This machine has no network: the real transport fails to dial WhatsApp. The connection shows why
    and keeps retrying; the process, and the other connections, go on undisturbed."""
    with trio.fail_after(TIMEOUT):
        real = await create(api, world.a_admin, name="Real Phone", channel="whatsapp")
        row = await wait_status(api, world.a_admin.token, real["id"],
                                lambda r: r["retries"] >= 1 and DIAL_FAILURE in (r["lastDisconnectReason"] or ""),
                                "a recorded dial failure")
        assert row["status"] in ("OPENING", "DISCONNECTED") and row["lastDisconnectAt"], row
        health = await api.client.get("/health")
        assert health.status_code == 200 and health.json()["status"] == "ok", health.text
        assert health.json()["supervisors"]["root"]["crash_loop"] is False
        # it goes on retrying
        await wait_status(api, world.a_admin.token, real["id"], lambda r: r["retries"] > row["retries"]
                          or r["status"] == "DISCONNECTED", "another attempt")
        # meanwhile a sandbox connection of the same company pairs as usual
        paired = await api.client.post(f"/sandbox/{world.a_conn}/pair", json={}, headers=auth(world.a_admin.token))
        assert paired.status_code == 200, paired.text
        await wait_status(api, world.a_admin.token, world.a_conn, lambda r: r["status"] == "CONNECTED", "CONNECTED")
        assert (await api.client.get("/health")).status_code == 200


# ─── 6. the connection limit ────────────────────────────────────────────────────────────


async def test_connection_limit_is_set_by_a_super_admin_and_enforced(server: Server, api: Api,
                                                                     world: World) -> None:
    default_company = world.super_admin.company_id
    with trio.fail_after(TIMEOUT):
        for who in ("a_admin", "default_admin", "a_user"):
            await refused(server, api, world, "PUT", "/settings/connectionLimit", status=403,
                          code="ERR_NO_PERMISSION", label=f"limit set by {who}", json={"value": "1"},
                          headers=auth(getattr(world, who).token))
        changed = await api.client.put("/settings/connectionLimit", json={"value": "1"},
                                       headers=auth(world.super_admin.token))
        assert changed.status_code == 200 and changed.json()["value"] == "1", changed.text

        await create(api, world.super_admin, name="The Only One")
        with server.broker.subscribe(default_company) as events:
            for who in ("super_admin", "default_admin"):
                for path in ("/whatsapp", "/whatsapp/"):
                    # the plan's limit answer (README "Plans"): connectionLimit overrides the plan's number
                    await refused(server, api, world, "POST", path, status=400,
                                  code="ERR_NO_PERMISSION_CONNECTIONS_LIMIT",
                                  label=f"second connection by {who}",
                                  json={"name": "One Too Many", "channel": "sandbox"},
                                  headers=auth(getattr(world, who).token))
            assert not [e for e in drain(events) if e.name.endswith("-whatsapp")]
        assert await trio.to_thread.run_sync(count_rows, server, default_company) == 1
        # the limit is the Default company's: Alpha has one connection already and may add more
        await create(api, world.a_admin, name="Alpha Two")
        assert await trio.to_thread.run_sync(count_rows, server, world.a_admin.company_id) == 2


async def test_connection_limit_holds_under_parallel_creations(server: Server, api: Api, world: World) -> None:
    default_company = world.super_admin.company_id
    answers: list[int] = []

    async def attempt(n: int) -> None:
        response = await api.client.post("/whatsapp", json={"name": f"Racer {n}", "channel": "sandbox"},
                                         headers=auth(world.super_admin.token))
        answers.append(response.status_code)

    with trio.fail_after(TIMEOUT):
        changed = await api.client.put("/settings/connectionLimit", json={"value": "2"},
                                       headers=auth(world.super_admin.token))
        assert changed.status_code == 200, changed.text
        async with trio.open_nursery() as nursery:
            for n in range(6):
                nursery.start_soon(attempt, n)
        assert sorted(answers) == [201, 201, 400, 400, 400, 400], answers
        assert await trio.to_thread.run_sync(count_rows, server, default_company) == 2


# ─── 7. one default connection per company ─────────────────────────────────────────────


async def defaults(server: Server, company_id: int) -> list[int]:
    rows = await trio.to_thread.run_sync(
        server.sql, "SELECT id FROM whatsapps WHERE company_id = %s AND is_default ORDER BY id", (company_id,))
    return [whatsapp_id for (whatsapp_id,) in rows]


async def test_a_new_default_connection_clears_the_old_one(server: Server, api: Api, world: World) -> None:
    company = world.a_admin.company_id
    with trio.fail_after(TIMEOUT):
        first = await create(api, world.a_admin, name="First Default", isDefault=True)
        assert first["isDefault"] and await defaults(server, company) == [first["id"]]
        second = await create(api, world.a_admin, name="Second Default", isDefault=True)
        assert second["isDefault"] and await defaults(server, company) == [second["id"]]
        shown = (await api.client.get(f"/whatsapp/{first['id']}", headers=auth(world.a_admin.token))).json()
        assert shown["isDefault"] is False
        # Beta's default is its own business
        assert await defaults(server, world.b_company) == [world.b_live]


async def test_updating_the_default_clears_the_old_one(server: Server, api: Api, world: World) -> None:
    company = world.a_admin.company_id
    with trio.fail_after(TIMEOUT):
        other = await create(api, world.a_admin, name="Other Line")
        for whatsapp_id in (world.a_conn, other["id"], world.a_conn):
            updated = await api.client.put(f"/whatsapp/{whatsapp_id}", json={"isDefault": True},
                                           headers=auth(world.a_admin.token))
            assert updated.status_code == 200 and updated.json()["isDefault"], updated.text
            assert await defaults(server, company) == [whatsapp_id]
            listed = (await api.client.get("/whatsapp", headers=auth(world.a_user.token))).json()
            assert [c["id"] for c in listed if c["isDefault"]] == [whatsapp_id]
        unset = await api.client.put(f"/whatsapp/{world.a_conn}", json={"isDefault": False},
                                     headers=auth(world.a_admin.token))
        assert unset.status_code == 200 and await defaults(server, company) == []
        assert await defaults(server, world.b_company) == [world.b_live]


# ─── 8. names are unique per company, case-insensitively ───────────────────────────────


async def test_connection_names_are_unique_per_company(server: Server, api: Api, world: World) -> None:
    company = world.a_admin.company_id
    with trio.fail_after(TIMEOUT):
        for name in ("Alpha Line", "alpha line", "ALPHA LINE", "  Alpha Line  "):
            await refused(server, api, world, "POST", "/whatsapp", status=409, code="ERR_WAPP_NAME_ALREADY_EXISTS",
                          label=f"create {name!r}", json={"name": name, "channel": "sandbox"},
                          headers=auth(world.a_admin.token))
        other = await create(api, world.a_admin, name="Other Line")
        await refused(server, api, world, "PUT", f"/whatsapp/{other['id']}", status=409,
                      code="ERR_WAPP_NAME_ALREADY_EXISTS", label="rename onto a taken name",
                      json={"name": "ALPHA line"}, headers=auth(world.a_admin.token))
        assert await trio.to_thread.run_sync(count_rows, server, company) == 2
        # renaming a connection to its own name in another case is fine
        same = await api.client.put(f"/whatsapp/{world.a_conn}", json={"name": "ALPHA LINE"},
                                    headers=auth(world.a_admin.token))
        assert same.status_code == 200 and same.json()["name"] == "ALPHA LINE", same.text
        # another company's names do not count
        in_alpha = await create(api, world.a_admin, name="beta main")
        assert in_alpha["name"] == "beta main"
        in_beta = await create(api, world.b_admin, name="Alpha Line")
        assert in_beta["companyId"] == world.b_company


# ─── 9. deleting a running connection ──────────────────────────────────────────────────


async def test_deleting_a_running_connection_stops_its_session(database_url: str, tmp_path: Path) -> None:
    """With QR codes every 0.2 s the session writes all the time: once deleted, it writes no more."""
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as run:
            srv = await start_server(run, make_config(tmp_path, database_url, sandbox_qr_interval=0.2))
            async with httpx.AsyncClient(base_url=srv.url, timeout=10) as client:
                await _delete_while_running(Api(client, srv))
            run.cancel_scope.cancel()
        await srv.db.aclose()


async def _delete_while_running(api: Api) -> None:
    client, srv = api.client, api.server
    token = await api.admin_token()
    company = (await client.get("/auth/me", headers=auth(token))).json()["companyId"]
    keep = (await client.post("/whatsapp", json={"name": "Keep", "channel": "sandbox"}, headers=auth(token))).json()
    with srv.broker.subscribe(company) as events:
        doomed = await client.post("/whatsapp", json={"name": "Doomed", "channel": "sandbox"}, headers=auth(token))
        wid = doomed.json()["id"]
        first = await wait_status(api, token, wid, lambda r: r["status"] == "qrcode", "qrcode")
        await wait_status(api, token, wid, lambda r: r["qrcode"] != first["qrcode"], "a second qrcode")
        drain(events)

        deleted = await client.delete(f"/whatsapp/{wid}", headers=auth(token))
        assert deleted.status_code == 200, deleted.text
        announced = [e for e in drain(events) if e.name == f"company-{company}-whatsapp"]
        assert [e.payload for e in announced] == [{"action": "delete", "whatsappId": wid}]

        await trio.sleep(1.0)  # five QR intervals
        late = [e for e in drain(events) if e.name.endswith("-whatsappSession") and e.payload["session"]["id"] == wid]
        assert late == [], late
    assert await trio.to_thread.run_sync(srv.sql, "SELECT count(*) FROM whatsapps WHERE id = %s", (wid,)) == [(0,)]
    for path in (f"/whatsapp/{wid}", f"/sandbox/{wid}", f"/whatsapp/{wid}/qrcode"):
        assert_json_error(await client.get(path, headers=auth(token)), 404, "ERR_NOT_FOUND", label=path)
    assert_json_error(await client.delete(f"/whatsapp/{wid}", headers=auth(token)), 404, "ERR_NOT_FOUND")
    health = (await client.get("/health")).json()
    assert health["sessions"]["running"] == 1, health  # only "Keep"
    assert health["sessions"]["supervisor"]["restarts_total"] == 0, health
    # the other connection of the company goes on showing fresh QR codes
    shown = await wait_status(api, token, keep["id"], lambda r: r["status"] == "qrcode", "qrcode")
    await wait_status(api, token, keep["id"], lambda r: r["qrcode"] != shown["qrcode"], "a fresh qrcode")


async def test_deleting_while_a_start_is_in_flight_leaves_no_crashing_session(server: Server, api: Api,
                                                                              world: World) -> None:
    """A start racing a delete can leave a session running for a row that is gone: it must end quietly,
    not crash-loop under the supervisor every company's sessions share (its restart budget)."""
    headers = auth(world.a_admin.token)
    with trio.fail_after(TIMEOUT):
        for n in range(5):
            wid = (await create(api, world.a_admin, name=f"Short Lived {n}"))["id"]
            async with trio.open_nursery() as nursery:
                nursery.start_soon(partial(api.client.delete, f"/whatsapp/{wid}", headers=headers))
                for _ in range(3):
                    nursery.start_soon(partial(api.client.post, f"/whatsappsession/{wid}", headers=headers))
        await trio.sleep(0.5)  # crashed sessions are restarted after 0.1 s, 0.2 s, ...
        health = (await api.client.get("/health")).json()
        assert health["sessions"]["supervisor"]["restarts_total"] == 0, health
        assert not health["sessions"]["supervisor"]["crash_loop"], health
        assert await trio.to_thread.run_sync(count_rows, server, world.a_admin.company_id) == 1
        assert (await api.client.get("/whatsapp", headers=headers)).status_code == 200
