"""Bad input over HTTP (DESIGN §3): a clear 4xx with a JSON body `{"error": "ERR_…", "message": …}`
(and `field` where one field is to blame), never a 500, never an HTML page, and never a write: the
database holds exactly what it held before the rejected request.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio

from tests.integration.conftest import ADMIN_EMAIL, Api, Server, auth, make_config, start_server

TIMEOUT = 30
SETTING = "userRating"


def raw(value: Any) -> bytes:
    """JSON text as a client would send it (ASCII escapes, so lone surrogates travel as `\\ud800`)."""
    return json.dumps(value).encode()


JSON = {"Content-Type": "application/json"}


@attrs.frozen
class Ctx:
    token: str  # the super admin, company Default
    me: int
    other: int  # a plain user of Default
    company: int  # another company, Beta
    own_queue: int
    foreign_queue: int  # a queue of Beta

    def path(self, template: str) -> str:
        return template.format(me=self.me, other=self.other, company=self.company)

    @property
    def headers(self) -> dict[str, str]:
        return {**auth(self.token), **JSON}


def _add_queue(server: Server, company_id: int, name: str) -> int:
    return server.sql("INSERT INTO queues (company_id, name) VALUES (%s, %s) RETURNING id", (company_id, name))[0][0]


@pytest.fixture
async def ctx(server: Server, api: Api) -> Ctx:
    token = await api.admin_token()
    me = (await api.client.get("/auth/me", headers=auth(token))).json()
    other = await api.create_user(token, "other@default.test", name="Other")
    beta = await api.create_company(token, "Beta", "admin@beta.test")
    return Ctx(token=token, me=me["id"], other=other["id"], company=beta["id"],
               own_queue=await trio.to_thread.run_sync(_add_queue, server, me["companyId"], "Sales"),
               foreign_queue=await trio.to_thread.run_sync(_add_queue, server, beta["id"], "Beta queue"))


# ─── helpers ────────────────────────────────────────────────────────────────────────────

SNAPSHOT_TABLES = ("companies", "users", "user_queues", "queues", "settings", "auth_sessions")
SNAPSHOT_SQL = "SELECT " + ", ".join(
    f"(SELECT coalesce(json_agg(t ORDER BY t::text), '[]') FROM {table} t) AS {table}" for table in SNAPSHOT_TABLES
)


async def snapshot(server: Server) -> tuple[Any, ...]:
    return (await trio.to_thread.run_sync(server.sql, SNAPSHOT_SQL))[0]


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


async def rejected(server: Server, client: httpx.AsyncClient, method: str, path: str, *,
                   status: int | tuple[int, ...], code: str | None = None, field: str | None = None,
                   label: str = "", **kwargs: Any) -> dict[str, Any]:
    """Send a request that must be refused, and check that the database did not move."""
    before = await snapshot(server)
    response = await client.request(method, path, **kwargs)
    payload = assert_json_error(response, status, code, field, label or f"{method} {path}")
    assert await snapshot(server) == before, f"{label}: {method} {path} answered {response.status_code} but wrote"
    return payload


# ─── malformed bodies ───────────────────────────────────────────────────────────────────

BODY_ROUTES = ["POST /users", "PUT /users/{other}", "POST /companies", "PUT /companies/{company}",
               f"PUT /settings/{SETTING}", "POST /auth/login", "POST /auth/refresh_token"]
MALFORMED = {
    "truncated": b'{"name":',
    "array": b'[{"name": "x"}]',
    "string": b'"name"',
    "number": b"42",
    "null": b"null",
    "form encoded": b"name=x&email=y",
    "invalid utf-8": b'{"name": "\xff\xfe"}',
    "trailing garbage": b'{"name": "x"} {',
    "deeply nested": b'{"name": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
}


@pytest.mark.parametrize("content", list(MALFORMED.values()), ids=list(MALFORMED))
async def test_malformed_json_is_400(server: Server, api: Api, ctx: Ctx, content: bytes) -> None:
    api.client.cookies.clear()  # /auth/refresh_token reads its body only without the jrt cookie
    with trio.fail_after(TIMEOUT):
        for route in BODY_ROUTES:
            method, path = route.split()
            await rejected(server, api.client, method, ctx.path(path), status=400, code="ERR_INVALID_JSON",
                           content=content, headers=ctx.headers)


async def test_body_that_is_not_json_is_415(server: Server, api: Api, ctx: Ctx) -> None:
    with trio.fail_after(TIMEOUT):
        for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
            await rejected(server, api.client, "POST", "/users", status=415, code="ERR_UNSUPPORTED_MEDIA_TYPE",
                           content=raw({"name": "x", "email": "x@x.test", "password": "secret-1"}),
                           headers={**auth(ctx.token), "Content-Type": content_type})


# ─── fields: types, choices, required, lengths, NUL, encoding ───────────────────────────

USER = {"name": "Valid Name", "email": "valid@default.test", "password": "valid-pass-1"}
TEN_K = "x" * 10_000

# Grouped by kind: each test sends every case of its group (the case name is in any failure).
FIELD_ERRORS: dict[str, dict[str, tuple[str, str, Any, str]]] = {
    "wrong type or value": {
        "user name as number": ("POST", "/users", {**USER, "name": 123}, "name"),
        "user name as object": ("POST", "/users", {**USER, "name": {"first": "x"}}, "name"),
        "queueIds as string": ("POST", "/users", {**USER, "queueIds": "1,2"}, "queueIds"),
        "queueIds item as word": ("POST", "/users", {**USER, "queueIds": [1, "two"]}, "queueIds[1]"),
        "queueIds item negative": ("POST", "/users", {**USER, "queueIds": [-1]}, "queueIds[0]"),
        "queueIds too many": ("POST", "/users", {**USER, "queueIds": list(range(1, 1002))}, "queueIds"),
        "profile not a choice": ("POST", "/users", {**USER, "profile": "root"}, "profile"),
        "profile wrong case": ("PUT", "/users/{other}", {"profile": "Admin"}, "profile"),
        "email invalid": ("POST", "/users", {**USER, "email": "not-an-email"}, "email"),
        "email two ats": ("PUT", "/users/{other}", {"email": "a@b@c.test"}, "email"),
        "super as string": ("POST", "/users", {**USER, "super": "true"}, "super"),
        "whatsappId as word": ("POST", "/users", {**USER, "whatsappId": "one"}, "whatsappId"),
        "whatsappId beyond bigint": ("POST", "/users", {**USER, "whatsappId": 2**70}, "whatsappId"),
        "allTicket as bool": ("PUT", "/users/{other}", {"allTicket": True}, "allTicket"),
        "password too short": ("PUT", "/users/{other}", {"password": "12345"}, "password"),
        "user name null": ("PUT", "/users/{other}", {"name": None}, "name"),
        "user name blank": ("PUT", "/users/{other}", {"name": "   "}, "name"),
        "company name as list": ("POST", "/companies", {"name": ["x"]}, "name"),
        "company status as string": ("PUT", "/companies/{company}", {"status": "off"}, "status"),
        "company dueDate as word": ("PUT", "/companies/{company}", {"dueDate": "tomorrow"}, "dueDate"),
        "company dueDate impossible": ("PUT", "/companies/{company}", {"dueDate": "2024-02-30"}, "dueDate"),
        "company email invalid": ("POST", "/companies", {"name": "Fresh", "email": "fresh"}, "email"),
        "setting value as object": ("PUT", f"/settings/{SETTING}", {"value": {"a": 1}}, "value"),
        "setting value as list": ("PUT", f"/settings/{SETTING}", {"value": ["enabled"]}, "value"),
        "setting value as float": ("PUT", f"/settings/{SETTING}", {"value": 1.5}, "value"),
        "setting value null": ("PUT", f"/settings/{SETTING}", {"value": None}, "value"),
        "login email as number": ("POST", "/auth/login", {"email": 5, "password": "x"}, "email"),
    },
    "missing": {
        "user without name": ("POST", "/users", {k: v for k, v in USER.items() if k != "name"}, "name"),
        "user without email": ("POST", "/users", {k: v for k, v in USER.items() if k != "email"}, "email"),
        "user without password": ("POST", "/users", {k: v for k, v in USER.items() if k != "password"}, "password"),
        "user from empty object": ("POST", "/users", {}, "name"),
        "company without name": ("POST", "/companies", {"email": "x@fresh.test"}, "name"),
        "company admin without email": ("POST", "/companies", {"name": "Fresh", "password": "secret-1"}, "email"),
        "setting without value": ("PUT", f"/settings/{SETTING}", {}, "value"),
        "login without password": ("POST", "/auth/login", {"email": ADMIN_EMAIL}, "password"),
    },
    "too long": {
        "user name 10k": ("POST", "/users", {**USER, "name": TEN_K}, "name"),
        "user name 10k on update": ("PUT", "/users/{other}", {"name": TEN_K}, "name"),
        "user email 10k": ("POST", "/users", {**USER, "email": TEN_K + "@x.test"}, "email"),
        "user password 10k": ("POST", "/users", {**USER, "password": TEN_K}, "password"),
        "company name 10k": ("POST", "/companies", {"name": TEN_K}, "name"),
        "company phone 10k": ("PUT", "/companies/{company}", {"phone": TEN_K}, "phone"),
        "setting value 10k+1": ("PUT", f"/settings/{SETTING}", {"value": TEN_K + "x"}, "value"),
        "login email 10k": ("POST", "/auth/login", {"email": TEN_K, "password": "x"}, "email"),
        "login password 10k": ("POST", "/auth/login", {"email": ADMIN_EMAIL, "password": TEN_K}, "password"),
    },
    # PostgreSQL text cannot hold NUL bytes
    "NUL byte": {
        "user name with NUL": ("POST", "/users", {**USER, "name": "a\x00b"}, "name"),
        "user email with NUL": ("POST", "/users", {**USER, "email": "a\x00b@x.test"}, "email"),
        "user password with NUL": ("PUT", "/users/{other}", {"password": "pass\x00word"}, "password"),
        "company name with NUL": ("PUT", "/companies/{company}", {"name": "Be\x00ta"}, "name"),
        "setting value with NUL": ("PUT", f"/settings/{SETTING}", {"value": "en\x00abled"}, "value"),
        "login email with NUL": ("POST", "/auth/login", {"email": "admin\x00@zapgate.test", "password": "x"}, "email"),
    },
    # valid JSON escapes, but no UTF-8 text can carry a lone UTF-16 surrogate
    "lone surrogate": {
        "user name lone surrogate": ("POST", "/users", {**USER, "name": "\ud800"}, "name"),
        "company name lone surrogate": ("PUT", "/companies/{company}", {"name": "Beta \udfff"}, "name"),
        "setting value lone surrogate": ("PUT", f"/settings/{SETTING}", {"value": "\ud83d"}, "value"),
        "login email lone surrogate": ("POST", "/auth/login", {"email": "\ud800@x.test", "password": "x"}, "email"),
    },
}


@pytest.mark.parametrize("group", list(FIELD_ERRORS))
async def test_bad_field_is_400_naming_it(server: Server, api: Api, ctx: Ctx, group: str) -> None:
    with trio.fail_after(TIMEOUT):
        for name, (method, path, body, field) in FIELD_ERRORS[group].items():
            await rejected(server, api.client, method, ctx.path(path), status=400, code="ERR_VALIDATION", field=field,
                           content=raw(body), headers=ctx.headers, label=name)


async def test_empty_body_is_missing_fields(server: Server, api: Api, ctx: Ctx) -> None:
    with trio.fail_after(TIMEOUT):
        await rejected(server, api.client, "POST", "/users", status=400, code="ERR_VALIDATION", field="name",
                       headers=auth(ctx.token))


# ─── size limits ────────────────────────────────────────────────────────────────────────

JSON_MAX, UPLOAD_MAX = 1024, 4096


@pytest.fixture
async def small(nursery: trio.Nursery, database_url: str, tmp_path: Path) -> AsyncIterator[tuple[Server, Api]]:
    """A server whose JSON bodies are capped at 1 KiB and other bodies at 4 KiB."""
    srv = await start_server(nursery, make_config(tmp_path, database_url, json_max_size=JSON_MAX,
                                                  upload_max_size=UPLOAD_MAX))
    async with httpx.AsyncClient(base_url=srv.url, timeout=10) as client:
        yield srv, Api(client, srv)
    nursery.cancel_scope.cancel()
    await srv.db.aclose()


async def _chunks(data: bytes, size: int = 256) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]


async def test_oversized_bodies_are_413(small: tuple[Server, Api]) -> None:
    server, api = small
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        padded = raw({**USER, "padding": "p" * (JSON_MAX + 100)})  # valid: only its size is wrong
        assert JSON_MAX < len(padded) < UPLOAD_MAX
        cases: list[tuple[str, str, dict[str, Any]]] = [
            ("POST", "/users", {"content": padded, "headers": {**auth(token), **JSON}}),
            ("POST", "/users", {"content": _chunks(padded), "headers": {**auth(token), **JSON}}),  # no length
            ("PUT", f"/settings/{SETTING}", {"content": raw({"value": "v" * (JSON_MAX + 1)}),
                                             "headers": {**auth(token), **JSON}}),
            ("POST", "/users", {"content": padded, "headers": JSON}),  # no token either
            ("POST", "/users", {"content": b"x" * (UPLOAD_MAX + 1),
                                "headers": {**auth(token), "Content-Type": "text/plain"}}),
            ("POST", "/users", {"content": _chunks(b"x" * (UPLOAD_MAX * 2)),
                                "headers": {**auth(token), "Content-Type": "application/octet-stream"}}),
            ("POST", "/users", {"files": {"medias": ("big.bin", b"\0" * (UPLOAD_MAX + 1))},
                                "headers": auth(token)}),
        ]
        for method, path, kwargs in cases:
            # one client throughout: a refused body must not leave its keep-alive connection unusable
            await rejected(server, api.client, method, path, status=413, code="ERR_PAYLOAD_TOO_LARGE", **kwargs)
            assert (await api.client.get("/health")).status_code == 200
        # just under the JSON limit still works
        small_body = raw({**USER, "padding": "p" * (JSON_MAX - len(raw(USER)) - 20)})
        created = await api.client.post("/users", content=small_body, headers={**auth(token), **JSON})
        assert created.status_code == 201, created.text


async def test_refused_streamed_body_leaves_the_connection_usable(server: Server, ctx: Ctx) -> None:
    """A request refused before its body was read (401, 404, 405, 415…) must not wedge the keep-alive
    connection: the client's next request on it gets an answer."""
    refusals = [("POST", "/users", {"Content-Type": "application/json"}, 401),
                ("POST", "/nope", {**ctx.headers}, 404),
                ("PATCH", "/users", {**ctx.headers}, 405),
                ("PUT", "/settings/nope", {**ctx.headers}, 404)]
    with trio.fail_after(TIMEOUT):
        async with httpx.AsyncClient(base_url=server.url, timeout=5) as client:
            for _ in range(4):
                for method, path, headers, status in refusals:
                    response = await client.request(method, path, content=_chunks(b"x" * 200_000, 4096),
                                                    headers=headers)
                    assert_json_error(response, status)
                    assert (await client.get("/health")).status_code == 200


# ─── routes, methods, ids ───────────────────────────────────────────────────────────────

UNKNOWN = ["/nope", "/users/1/extra", "/api/v9/anything", "/auth", "/settings/userRating/more", "/users/list/x",
           "/index.html", "/%00"]


@pytest.mark.parametrize("with_token", [False, True], ids=["anonymous", "authenticated"])
async def test_unknown_route_is_404_json(server: Server, api: Api, ctx: Ctx, with_token: bool) -> None:
    headers = auth(ctx.token) if with_token else {}
    with trio.fail_after(TIMEOUT):
        for path in UNKNOWN:
            for method in ("GET", "POST", "DELETE"):
                await rejected(server, api.client, method, path, status=404, code="ERR_NOT_FOUND", headers=headers)


WRONG_METHODS = ["PATCH /users", "DELETE /users", "POST /users/{other}", "PATCH /users/{other}", "DELETE /settings",
                 f"POST /settings/{SETTING}", "PUT /auth/login", "GET /auth/logout", "GET /auth/refresh_token",
                 "POST /health", "DELETE /ready", "PATCH /companies/{company}", "PUT /companies"]


async def test_wrong_method_is_405_json(server: Server, api: Api, ctx: Ctx) -> None:
    with trio.fail_after(TIMEOUT):
        for route in WRONG_METHODS:
            method, path = route.split()
            for headers in ({}, ctx.headers):
                before = await snapshot(server)
                response = await api.client.request(method, ctx.path(path), headers=headers, content=b"{}")
                assert_json_error(response, 405, "ERR_METHOD_NOT_ALLOWED")
                assert method not in response.headers["Allow"] and response.headers["Allow"], route
                assert await snapshot(server) == before


BAD_IDS = ["abc", "-1", "1.5", "1e3", "0x1", "99999999999999999999", "%20", "1%20", "0", "987654321", "{me}abc"]


@pytest.mark.parametrize("resource", ["users", "companies"])
async def test_id_that_names_nothing_is_404(server: Server, api: Api, ctx: Ctx, resource: str) -> None:
    with trio.fail_after(TIMEOUT):
        for bad in BAD_IDS:
            path = ctx.path(f"/{resource}/{bad}")
            for method, body in (("GET", None), ("PUT", {"name": "Renamed"}), ("DELETE", None)):
                await rejected(server, api.client, method, path, status=404, code="ERR_NOT_FOUND",
                               content=None if body is None else raw(body), headers=ctx.headers)


async def test_unknown_setting_key_is_404(server: Server, api: Api, ctx: Ctx) -> None:
    with trio.fail_after(TIMEOUT):
        for key in ("nope", "userrating", "userRating'; DROP TABLE settings; --", "x" * 5000, "%00"):
            for method in ("GET", "PUT"):
                await rejected(server, api.client, method, f"/settings/{key}", status=404,
                               code="ERR_NO_SETTING_FOUND", content=raw({"value": "enabled"}), headers=ctx.headers)


# ─── injection-looking text is just text ────────────────────────────────────────────────

SQLISH = "'; DROP TABLE users; --"
SEARCHES = [SQLISH, "' OR '1'='1", "%", "_", "\\", "%' OR 1=1 --", "Robert'); DELETE FROM companies;--"]


async def test_sql_like_text_is_stored_and_searched_literally(server: Server, api: Api, ctx: Ctx) -> None:
    with trio.fail_after(TIMEOUT):
        for index, name in enumerate((SQLISH, "100% sure", "under_score", "back\\slash")):
            created = await api.client.post("/users", content=raw({**USER, "name": name, "email": f"u{index}@x.test"}),
                                            headers=ctx.headers)
            assert created.status_code == 201, created.text
            stored = await trio.to_thread.run_sync(server.sql, "SELECT name FROM users WHERE id = %s",
                                                   (created.json()["id"],))
            assert stored == [(name,)]
        company = await api.client.post("/companies", content=raw({"name": SQLISH}), headers=ctx.headers)
        assert company.status_code == 201 and company.json()["name"] == SQLISH
        everyone = await trio.to_thread.run_sync(server.sql, "SELECT id, name, email FROM users WHERE company_id = "
                                                 "(SELECT company_id FROM users WHERE id = %s)", (ctx.me,))
        for search in SEARCHES:
            response = await api.client.get("/users", params={"searchParam": search}, headers=ctx.headers)
            assert response.status_code == 200, response.text
            expected = {i for i, name, email in everyone if search.lower() in name.lower() or search.lower() in email}
            assert {u["id"] for u in response.json()["users"]} == expected, search
            companies = await api.client.get("/companies", params={"searchParam": search}, headers=ctx.headers)
            assert companies.status_code == 200, companies.text
            assert all(search.lower() in c["name"].lower() or search.lower() in (c["email"] or "")
                       for c in companies.json()["companies"]), search
        tables = await trio.to_thread.run_sync(server.sql, "SELECT count(*) FROM pg_tables WHERE tablename IN "
                                               "('users', 'companies', 'settings')")
        assert tables == [(3,)]
        assert (await trio.to_thread.run_sync(server.sql, "SELECT count(*) FROM users"))[0][0] == len(everyone) + 1


@pytest.mark.parametrize("path", ["/users", "/companies"])
async def test_bad_search_and_page_params_are_400(server: Server, api: Api, ctx: Ctx, path: str) -> None:
    with trio.fail_after(TIMEOUT):
        for params, field in [
            ({"searchParam": "s" * 201}, "searchParam"),
            ({"searchParam": "s" * 30_000}, "searchParam"),
            ({"searchParam": "a\x00b"}, "searchParam"),
            ({"pageNumber": "0"}, "pageNumber"),
            ({"pageNumber": "-1"}, "pageNumber"),
            ({"pageNumber": "abc"}, "pageNumber"),
            ({"pageNumber": "1.5"}, "pageNumber"),
            ({"pageNumber": "99999999999"}, "pageNumber"),
            ({"pageNumber": "1e3"}, "pageNumber"),
        ]:
            await rejected(server, api.client, "GET", path, status=400, code="ERR_VALIDATION", field=field,
                           params=params, headers=ctx.headers)


def _complete(response: bytes) -> bool:
    head, separator, body = response.partition(b"\r\n\r\n")
    if not separator:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return False


async def raw_request(server: Server, head: bytes) -> bytes:
    """Send a hand-made HTTP/1.1 request (httpx refuses URLs over 64 KiB); the response, or what came
    back before the server closed the connection (b"" if it closed without answering).

    The server may close (even reset) the connection before it has read everything we send, so the
    sending side ignores broken pipes and the receiving side keeps what it got.
    """
    host, port = server.url.removeprefix("http://").split(":")
    received = bytearray()

    async def send_all(stream: trio.SocketStream) -> None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await stream.send_all(head)

    async with await trio.open_tcp_stream(host, int(port)) as stream, trio.open_nursery() as nursery:
        nursery.start_soon(send_all, stream)
        with contextlib.suppress(trio.BrokenResourceError):
            while not _complete(received) and (chunk := await stream.receive_some(65536)):
                received += chunk
        nursery.cancel_scope.cancel()
    return bytes(received)


def _megabyte_search(token: str) -> bytes:
    return (f"GET /users?searchParam={'s' * 1_000_000} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {token}\r\nConnection: close\r\n\r\n").encode()


async def test_megabyte_search_param_is_refused_without_500(server: Server, api: Api, ctx: Ctx) -> None:
    with trio.fail_after(TIMEOUT):
        before = await snapshot(server)
        answer = await raw_request(server, _megabyte_search(ctx.token))
        if answer:  # else the server cut the connection before answering: refused too
            status = int(answer.split(b" ", 2)[1])
            assert status in (400, 414, 431), answer[:300]
        assert await snapshot(server) == before
        assert (await api.client.get("/health")).status_code == 200  # the server is fine


async def test_megabyte_search_param_answers_json(server: Server, api: Api, ctx: Ctx) -> None:
    with trio.fail_after(TIMEOUT):
        answer = await raw_request(server, _megabyte_search(ctx.token))
        head, _, body = answer.partition(b"\r\n\r\n")
        assert b"application/json" in head.lower() and json.loads(body)["error"].startswith("ERR_"), answer[:300]


async def test_undecodable_text_outside_bodies_is_harmless(server: Server, api: Api, ctx: Ctx) -> None:
    """Bytes that are not UTF-8 in a query or a path, and a lone surrogate where a token is expected."""
    with trio.fail_after(TIMEOUT):
        before = await snapshot(server)
        for query in ("searchParam=%ED%A0%80", "searchParam=%FF%FE", "pageNumber=%FF"):
            response = await api.client.get(f"/users?{query}", headers=ctx.headers)
            assert response.status_code in (200, 400), response.text
            assert response.headers["content-type"].startswith("application/json")
        assert_json_error(await api.client.get("/settings/%ED%A0%80", headers=ctx.headers), 404)
        assert_json_error(await api.client.get("/users/%FF", headers=ctx.headers), 404)
        api.client.cookies.clear()
        refresh = await api.client.post("/auth/refresh_token", content=raw({"refreshToken": "\ud800"}), headers=JSON)
        assert_json_error(refresh, 401, "ERR_SESSION_EXPIRED")
        assert await snapshot(server) == before


# ─── conflicts and half-writes ──────────────────────────────────────────────────────────


async def test_duplicate_email_is_409_whatever_its_case(server: Server, api: Api, ctx: Ctx) -> None:
    with trio.fail_after(TIMEOUT):
        for email in ("OTHER@default.test", "other@DEFAULT.TEST", ADMIN_EMAIL.upper(), " Admin@Zapgate.Test "):
            await rejected(server, api.client, "POST", "/users", status=409, code="ERR_DUPLICATED_EMAIL",
                           content=raw({**USER, "email": email}), headers=ctx.headers)
        # an update that would take someone's email changes nothing, not even the other fields
        await rejected(server, api.client, "PUT", ctx.path("/users/{other}"), status=409, code="ERR_DUPLICATED_EMAIL",
                       content=raw({"name": "Renamed", "email": ADMIN_EMAIL.upper()}), headers=ctx.headers)
        # a company whose admin email is taken is not created at all (no company, no settings left behind)
        await rejected(server, api.client, "POST", "/companies", status=409, code="ERR_DUPLICATED_EMAIL",
                       content=raw({"name": "Fresh", "email": "Admin@Beta.Test", "password": "fresh-pass-1"}),
                       headers=ctx.headers)
        await rejected(server, api.client, "POST", "/companies", status=409, code="ERR_COMPANY_NAME_ALREADY_EXISTS",
                       content=raw({"name": "BETA"}), headers=ctx.headers)
        await rejected(server, api.client, "PUT", ctx.path("/companies/{company}"), status=409,
                       code="ERR_COMPANY_NAME_ALREADY_EXISTS", content=raw({"name": "default", "phone": "123"}),
                       headers=ctx.headers)


async def test_bad_reference_is_refused_without_half_write(server: Server, api: Api, ctx: Ctx) -> None:
    with trio.fail_after(TIMEOUT):
        # a queue of another company: the user row must not be left behind
        await rejected(server, api.client, "POST", "/users", status=(400, 404),
                       content=raw({**USER, "queueIds": [ctx.own_queue, ctx.foreign_queue]}), headers=ctx.headers)
        # the rename in the same request must not survive either
        await rejected(server, api.client, "PUT", ctx.path("/users/{other}"), status=(400, 404),
                       content=raw({"name": "Renamed", "queueIds": [ctx.own_queue, ctx.foreign_queue]}),
                       headers=ctx.headers)
        await rejected(server, api.client, "POST", "/users", status=(400, 404),
                       content=raw({**USER, "whatsappId": 987654}), headers=ctx.headers)
        await rejected(server, api.client, "PUT", ctx.path("/users/{other}"), status=(400, 404),
                       content=raw({"name": "Renamed", "whatsappId": 987654}), headers=ctx.headers)


# ─── unexpected errors ──────────────────────────────────────────────────────────────────


async def test_unexpected_error_is_a_json_500_with_an_error_id(server: Server, api: Api, ctx: Ctx) -> None:
    """Nothing a client sends should cause a 500; a broken database schema (an operator's mistake) does."""
    with trio.fail_after(TIMEOUT):
        await trio.to_thread.run_sync(server.sql, "ALTER TABLE settings RENAME TO settings_lost")
        response = await api.client.get("/settings", headers=ctx.headers)
        payload = assert_json_error(response, 500, "ERR_INTERNAL")
        assert isinstance(payload["errorId"], str) and len(payload["errorId"]) >= 8
        assert "settings_lost" not in response.text and "relation" not in response.text  # no internals leak
        assert response.headers["X-Request-Id"]
        assert (await api.client.get("/health")).status_code == 200
