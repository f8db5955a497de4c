"""`/auth` against the real server over HTTP: login, tokens, refresh rotation and reuse detection,
logout, expiry, password changes, throttling, disabled companies, CORS and security headers."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import jwt
import trio

from tests.integration.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, Api, Server, auth, make_config, start_server

TEST_TIMEOUT = 30
USER_KEYS = {"id", "name", "email", "profile", "companyId", "company", "super", "queues", "allTicket"}
FRONTEND = "http://frontend.test"


# ─── helpers ────────────────────────────────────────────────────────────────────────────

def set_cookie(response: httpx.Response, name: str = "jrt") -> str | None:
    """The Set-Cookie header of `response` for cookie `name`, if any."""
    for header in response.headers.get_list("set-cookie"):
        if header.split("=", 1)[0].strip() == name:
            return header
    return None


def cookie_value(response: httpx.Response, name: str = "jrt") -> str | None:
    header = set_cookie(response, name)
    if header is None:
        return None
    return header.split("=", 1)[1].split(";", 1)[0].strip().strip('"')


def cookie_attributes(header: str) -> dict[str, str]:
    attributes = {}
    for part in header.split(";")[1:]:
        key, _, value = part.strip().partition("=")
        attributes[key.lower()] = value
    return attributes


def is_cleared(response: httpx.Response) -> bool:
    header = set_cookie(response)
    if header is None:
        return False
    attributes = cookie_attributes(header)
    expired = attributes.get("max-age") == "0" or "1970" in attributes.get("expires", "")
    return cookie_value(response) == "" and expired


async def login(api: Api, email: str, password: str) -> httpx.Response:
    return await api.client.post("/auth/login", json={"email": email, "password": password})


async def login_ok(api: Api, email: str, password: str) -> tuple[str, str]:
    """(access token, refresh token) of a successful login."""
    response = await login(api, email, password)
    assert response.status_code == 200, response.text
    refresh = cookie_value(response)
    assert refresh
    return response.json()["token"], refresh


async def refresh_with_body(api: Api, refresh: str) -> httpx.Response:
    api.client.cookies.clear()  # only the body speaks
    return await api.client.post("/auth/refresh_token", json={"refreshToken": refresh})


async def refresh_with_cookie(api: Api, refresh: str) -> httpx.Response:
    api.client.cookies.clear()
    return await api.client.post("/auth/refresh_token", headers={"Cookie": f"jrt={refresh}"})


def access_claims(server: Server, token: str) -> dict[str, Any]:
    return jwt.decode(token, server.config.jwt_secret, algorithms=["HS256"])


def refresh_claims(server: Server, token: str) -> dict[str, Any]:
    return jwt.decode(token, server.config.jwt_refresh_secret, algorithms=["HS256"])


def assert_user_shape(user: dict[str, Any]) -> None:
    assert USER_KEYS <= set(user), USER_KEYS - set(user)
    assert isinstance(user["id"], int) and isinstance(user["companyId"], int)
    assert user["profile"] in ("admin", "user")
    assert isinstance(user["super"], bool) and isinstance(user["queues"], list)
    assert user["company"]["id"] == user["companyId"]
    assert "password" not in user and "password_hash" not in user and "passwordHash" not in user


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"] == code, response.text


@asynccontextmanager
async def running_server(tmp_path: Path, database_url: str, **overrides: Any) -> AsyncIterator[tuple[Server, Api]]:
    """A server with a custom configuration, and an Api client bound to it."""
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, make_config(tmp_path, database_url, **overrides))
        try:
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
                yield server, Api(client, server)
        finally:
            nursery.cancel_scope.cancel()
    await server.db.aclose()


# ─── 1. login ───────────────────────────────────────────────────────────────────────────

async def test_login_answers_token_user_and_httponly_refresh_cookie(api: Api, server: Server) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        response = await login(api, ADMIN_EMAIL, ADMIN_PASSWORD)
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) >= {"token", "user"}
        user = body["user"]
        assert_user_shape(user)
        assert user["email"] == ADMIN_EMAIL and user["profile"] == "admin" and user["super"] is True
        assert user["company"]["name"] == "Default"

        header = set_cookie(response)
        assert header is not None, response.headers
        attributes = cookie_attributes(header)
        assert "httponly" in attributes and attributes.get("path") == "/"
        assert int(attributes["max-age"]) == server.config.refresh_token_ttl
        refresh = cookie_value(response)
        assert refresh and refresh_claims(server, refresh)["id"] == user["id"]

        claims = access_claims(server, body["token"])
        assert claims["id"] == user["id"]
        assert claims["profile"] == "admin"
        assert claims["companyId"] == user["companyId"]
        assert claims["exp"] - claims["iat"] == server.config.access_token_ttl

        # Online comes with a connected socket, not with a login (tests/integration/test_presence.py).
        assert server.sql("SELECT online FROM users WHERE id = %s", (user["id"],)) == [(False,)]


async def test_login_refresh_and_me_carry_the_companys_settings(api: Api, server: Server) -> None:
    """`user.company.settings`, `[{key, value}]`: the SaaS lineage reads it at login (campaignsEnabled)."""
    with trio.fail_after(TEST_TIMEOUT):
        admin = await api.admin_token()
        for key, value in (("userRating", "enabled"), ("apiToken", "secret-api-token")):
            changed = await api.client.put(f"/settings/{key}", json={"value": value}, headers=auth(admin))
            assert changed.status_code == 200, changed.text
        other = await api.create_company(admin, "Acme", "boss@acme.test", "acme-pass-1")
        other_admin = await api.login("boss@acme.test", "acme-pass-1")
        assert (await api.client.put("/settings/userRating", json={"value": "disabled"},
                                     headers=auth(other_admin))).status_code == 200

        logged_in = await login(api, ADMIN_EMAIL, ADMIN_PASSWORD)
        refreshed = await api.client.post("/auth/refresh_token")  # the cookie jar's jrt
        me = await api.client.get("/auth/me", headers=auth(logged_in.json()["token"]))
        for name, user in (("login", logged_in.json()["user"]), ("refresh", refreshed.json()["user"]),
                           ("me", me.json())):
            entries = user["company"]["settings"]
            assert isinstance(entries, list) and all({"key", "value"} <= set(entry) for entry in entries), name
            values = {entry["key"]: entry["value"] for entry in entries}
            assert values["userRating"] == "enabled", name  # the company's value
            assert values["scheduleType"] == "disabled", name  # a default (a key without a row)
            assert "apiToken" not in values and "openAiKey" not in values, name  # credentials stay out
            assert "secret-api-token" not in str(user), name
            assert {entry["companyId"] for entry in entries} == {user["companyId"]}, name

        theirs = (await login(api, "boss@acme.test", "acme-pass-1")).json()["user"]
        assert theirs["companyId"] == other["id"]
        assert {e["key"]: e["value"] for e in theirs["company"]["settings"]}["userRating"] == "disabled"


async def test_login_with_wrong_password_or_unknown_email_answers_the_same_401(api: Api) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        wrong = await login(api, ADMIN_EMAIL, "not-the-password")
        unknown = await login(api, "nobody@zapgate.test", ADMIN_PASSWORD)
        for response in (wrong, unknown):
            assert_error(response, 401, "ERR_INVALID_CREDENTIALS")
            assert set_cookie(response) is None
            assert "token" not in response.json()
        assert wrong.json() == unknown.json()  # nothing tells which emails exist

        missing = await api.client.post("/auth/login", json={"email": ADMIN_EMAIL})
        assert missing.status_code == 400 and set_cookie(missing) is None


async def test_login_email_is_case_insensitive(api: Api) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        lower = await login(api, ADMIN_EMAIL, ADMIN_PASSWORD)
        upper = await login(api, ADMIN_EMAIL.upper(), ADMIN_PASSWORD)
        assert upper.status_code == 200, upper.text
        assert upper.json()["user"]["id"] == lower.json()["user"]["id"]

        # and so for a user created with a mixed-case address
        admin = await api.admin_token()
        created = await api.create_user(admin, "Mixed.Case@Zapgate.test", "mixed-pass-1")
        mixed = await login(api, "mixed.case@zapgate.TEST", "mixed-pass-1")
        assert mixed.status_code == 200, mixed.text
        assert mixed.json()["user"]["id"] == created["id"]


async def test_unknown_email_takes_as_long_as_a_wrong_password(tmp_path: Path, database_url: str) -> None:
    """No timing oracle for which emails exist, at the production bcrypt cost."""
    with trio.fail_after(TEST_TIMEOUT):
        async with running_server(tmp_path, database_url, bcrypt_rounds=10, login_max_failures=50) as (_, api):
            durations: dict[str, list[float]] = {"wrong": [], "unknown": []}
            for attempt in range(4):
                for kind, email in (("wrong", ADMIN_EMAIL), ("unknown", f"nobody{attempt}@zapgate.test")):
                    started = time.perf_counter()
                    assert_error(await login(api, email, "not-the-password"), 401, "ERR_INVALID_CREDENTIALS")
                    durations[kind].append(time.perf_counter() - started)
            # bcrypt at cost 10 takes tens of milliseconds; a cheaper dummy check would answer much sooner.
            assert min(durations["unknown"]) >= 0.4 * min(durations["wrong"]), durations


# ─── 2. /auth/me ────────────────────────────────────────────────────────────────────────

async def test_me_needs_a_valid_access_token(api: Api, server: Server) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        token, refresh = await login_ok(api, ADMIN_EMAIL, ADMIN_PASSWORD)
        api.client.cookies.clear()
        me = await api.client.get("/auth/me", headers=auth(token))
        assert me.status_code == 200, me.text
        assert_user_shape(me.json())
        assert me.json()["email"] == ADMIN_EMAIL

        claims = access_claims(server, token)
        forged = jwt.encode(claims, "another-secret-" + "z" * 32, algorithm="HS256")
        unsigned = jwt.encode(claims, None, algorithm="none")
        wrong_type = jwt.encode({**claims, "type": "refresh"}, server.config.jwt_secret, algorithm="HS256")
        attempts = {
            "no header": {},
            "garbage": auth("not-a-jwt"),
            "bare scheme": {"Authorization": "Bearer"},
            "basic scheme": {"Authorization": f"Basic {token}"},
            "another secret": auth(forged),
            "alg none": auth(unsigned),
            "refresh token": auth(refresh),
            "not an access token": auth(wrong_type),
        }
        for name, headers in attempts.items():
            response = await api.client.get("/auth/me", headers=headers)
            # the family's statuses: no token 401 (the frontend logs out), an unusable one 403 (it refreshes)
            assert response.status_code == (401 if name == "no header" else 403), (name, response.text)
            assert response.json()["error"].startswith("ERR_"), name
        assert (await api.client.get("/auth/me", headers={"Authorization": ""})).status_code == 401


# ─── 3. refresh ─────────────────────────────────────────────────────────────────────────

async def test_refresh_through_the_cookie_jar_rotates_the_cookie(api: Api, server: Server) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        first = await login(api, ADMIN_EMAIL, ADMIN_PASSWORD)
        r1 = cookie_value(first)
        assert api.client.cookies.get("jrt") == r1  # what a browser keeps

        response = await api.client.post("/auth/refresh_token")  # no body: the cookie speaks
        assert response.status_code == 200, response.text
        assert_user_shape(response.json()["user"])
        assert response.json()["user"]["id"] == first.json()["user"]["id"]
        r2 = cookie_value(response)
        assert r2 and r2 != r1
        assert "httponly" in cookie_attributes(set_cookie(response) or "")
        assert api.client.cookies.get("jrt") == r2
        assert refresh_claims(server, r2)["sid"] == refresh_claims(server, r1)["sid"]  # the same login

        me = await api.client.get("/auth/me", headers=auth(response.json()["token"]))
        assert me.status_code == 200
        assert access_claims(server, response.json()["token"])["companyId"] == me.json()["companyId"]


async def test_refresh_through_the_body_and_explicit_cookie(api: Api, server: Server) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        _, r1 = await login_ok(api, ADMIN_EMAIL, ADMIN_PASSWORD)

        by_body = await refresh_with_body(api, r1)
        assert by_body.status_code == 200, by_body.text
        assert set(by_body.json()) >= {"token", "user"}
        r2 = cookie_value(by_body)
        assert r2 and r2 != r1

        by_cookie = await refresh_with_cookie(api, r2)
        assert by_cookie.status_code == 200, by_cookie.text
        r3 = cookie_value(by_cookie)
        assert r3 and r3 not in (r1, r2)
        me = await api.client.get("/auth/me", headers=auth(by_cookie.json()["token"]))
        assert me.status_code == 200

        api.client.cookies.clear()
        nothing = await api.client.post("/auth/refresh_token")
        assert_error(nothing, 401, "ERR_SESSION_EXPIRED")
        for bad in ("garbage", by_cookie.json()["token"], 12345):  # not a JWT, an access token, not a string
            response = await api.client.post("/auth/refresh_token", json={"refreshToken": bad})
            assert response.status_code == 401, (bad, response.text)
        malformed = await api.client.post("/auth/refresh_token", content=b'{"refreshToken":',
                                          headers={"Content-Type": "application/json", "Cookie": f"jrt={r3}"})
        assert_error(malformed, 400, "ERR_INVALID_JSON")  # refused before anything rotates
        forged = jwt.encode(refresh_claims(server, r3), "another-secret-" + "z" * 32, algorithm="HS256")
        assert (await refresh_with_body(api, forged)).status_code == 401
        # None of the refused attempts spoiled the legitimate token.
        assert (await refresh_with_body(api, r3)).status_code == 200


# ─── 4. reuse detection ─────────────────────────────────────────────────────────────────

async def test_reusing_a_rotated_refresh_token_revokes_that_login_only(api: Api, server: Server) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        _, r1 = await login_ok(api, ADMIN_EMAIL, ADMIN_PASSWORD)
        _, other = await login_ok(api, ADMIN_EMAIL, ADMIN_PASSWORD)  # the same user on another device

        rotated = await refresh_with_body(api, r1)
        assert rotated.status_code == 200, rotated.text
        r2 = cookie_value(rotated)
        assert r2

        # Past the grace window that parallel refreshes of one browser get (REFRESH_REUSE_GRACE):
        server.sql("UPDATE auth_sessions SET rotated_at = now() - interval '1 minute'")
        replay = await refresh_with_body(api, r1)  # a thief replays the old token
        assert_error(replay, 401, "ERR_SESSION_EXPIRED")
        assert is_cleared(replay)
        legit = await refresh_with_body(api, r2)  # the whole login is gone, latest token too
        assert_error(legit, 401, "ERR_SESSION_EXPIRED")
        assert cookie_value(legit) in (None, "")

        still = await refresh_with_body(api, other)
        assert still.status_code == 200, still.text
        assert (await refresh_with_body(api, cookie_value(still) or "")).status_code == 200

        reasons = server.sql("SELECT revoked_reason FROM auth_sessions WHERE id = %s",
                             (refresh_claims(server, r1)["sid"],))
        assert reasons == [("refresh token reused",)]


async def test_concurrent_refreshes_of_one_browser_keep_the_login(api: Api, server: Server) -> None:
    """The Whaticket frontend refreshes once per failed request: parallel requests refresh with one cookie."""
    with trio.fail_after(TEST_TIMEOUT):
        _, r1 = await login_ok(api, ADMIN_EMAIL, ADMIN_PASSWORD)
        api.client.cookies.clear()
        answers: list[httpx.Response] = []

        async def refresh_once() -> None:
            answers.append(await api.client.post("/auth/refresh_token", json={"refreshToken": r1}))

        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(refresh_once)
        assert [answer.status_code for answer in answers] == [200, 200, 200], [a.text for a in answers]
        # All three hold the one current token: exactly one rotation happened.
        assert len({refresh_claims(server, cookie_value(answer) or "")["jti"] for answer in answers}) == 1
        latest = cookie_value(answers[-1]) or ""
        assert (await refresh_with_body(api, latest)).status_code == 200


# ─── 5. logout ──────────────────────────────────────────────────────────────────────────

async def test_logout_revokes_the_login_clears_the_cookie_and_marks_offline(api: Api, server: Server) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        _, other = await login_ok(api, ADMIN_EMAIL, ADMIN_PASSWORD)  # another device
        token, refresh = await login_ok(api, ADMIN_EMAIL, ADMIN_PASSWORD)
        assert api.client.cookies.get("jrt") == refresh
        user_id = access_claims(server, token)["id"]
        server.sql("UPDATE users SET online = true WHERE id = %s", (user_id,))  # as a socket would have it

        unauthenticated = await api.client.delete("/auth/logout")
        assert unauthenticated.status_code == 401
        assert server.sql("SELECT online FROM users WHERE id = %s", (user_id,)) == [(True,)]

        logout = await api.client.delete("/auth/logout", headers=auth(token))
        assert logout.status_code in (200, 204), logout.text
        assert is_cleared(logout)
        assert api.client.cookies.get("jrt") is None  # the client dropped it

        assert server.sql("SELECT online FROM users WHERE id = %s", (user_id,)) == [(False,)]
        refused = await refresh_with_body(api, refresh)
        assert_error(refused, 401, "ERR_SESSION_EXPIRED")
        assert (await refresh_with_body(api, other)).status_code == 200  # another device stays signed in


# ─── 6. expiry ──────────────────────────────────────────────────────────────────────────

async def test_expired_tokens_are_refused(api: Api, server: Server) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        token, refresh = await login_ok(api, ADMIN_EMAIL, ADMIN_PASSWORD)
        past = int(time.time()) - 60
        expired_access = jwt.encode({**access_claims(server, token), "iat": past - 60, "exp": past},
                                    server.config.jwt_secret, algorithm="HS256")
        response = await api.client.get("/auth/me", headers=auth(expired_access))
        assert_error(response, 403, "ERR_SESSION_EXPIRED")

        # A refresh token past its exp, of a live login, with the login's current id.
        expired_refresh = jwt.encode({**refresh_claims(server, refresh), "iat": past - 60, "exp": past},
                                     server.config.jwt_refresh_secret, algorithm="HS256")
        assert_error(await refresh_with_body(api, expired_refresh), 401, "ERR_SESSION_EXPIRED")
        assert (await refresh_with_body(api, refresh)).status_code == 200  # not a reuse: the login lives on

        # A login expired on the server while its token still claims a future exp.
        _, second = await login_ok(api, ADMIN_EMAIL, ADMIN_PASSWORD)
        server.sql("UPDATE auth_sessions SET expires_at = now() - interval '1 second' WHERE id = %s",
                   (refresh_claims(server, second)["sid"],))
        assert_error(await refresh_with_body(api, second), 401, "ERR_SESSION_EXPIRED")


async def test_short_lived_tokens_expire_on_a_real_clock(tmp_path: Path, database_url: str) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        async with running_server(tmp_path, database_url, access_token_ttl=1, refresh_token_ttl=1) as (_, api):
            token, refresh = await login_ok(api, ADMIN_EMAIL, ADMIN_PASSWORD)
            api.client.cookies.clear()
            assert (await api.client.get("/auth/me", headers=auth(token))).status_code == 200
            await trio.sleep(2.2)
            assert_error(await api.client.get("/auth/me", headers=auth(token)), 403, "ERR_SESSION_EXPIRED")
            assert_error(await api.client.get("/auth/me", headers=auth("garbage")), 403, "ERR_INVALID_TOKEN")
            assert_error(await refresh_with_body(api, refresh), 401, "ERR_SESSION_EXPIRED")


async def test_an_expired_access_token_answers_403_then_the_refresh_works(tmp_path: Path, database_url: str) -> None:
    """What every family frontend does: a 403 makes it refresh (cookie `jrt`) and retry; a 401 logs it out."""
    with trio.fail_after(TEST_TIMEOUT):
        async with running_server(tmp_path, database_url, access_token_ttl=10) as (server, api):
            token, _ = await login_ok(api, ADMIN_EMAIL, ADMIN_PASSWORD)  # the cookie jar keeps jrt
            assert (await api.client.get("/users", headers=auth(token))).status_code == 200
            past = int(time.time()) - 60
            expired = jwt.encode({**access_claims(server, token), "iat": past - 60, "exp": past},
                                 server.config.jwt_secret, algorithm="HS256")
            assert_error(await api.client.get("/users", headers=auth(expired)), 403, "ERR_SESSION_EXPIRED")
            refreshed = await api.client.post("/auth/refresh_token")  # the frontend's interceptor, cookie only
            assert refreshed.status_code == 200, refreshed.text
            fresh = refreshed.json()["token"]
            retried = await api.client.get("/users", headers=auth(fresh))
            assert retried.status_code == 200 and retried.json()["count"] >= 1
            assert_error(await api.client.get("/users"), 401, "ERR_SESSION_EXPIRED")  # no token: log out

        # AUTH_EXPIRED_STATUS=401 for clients that want it: expired and invalid tokens both answer 401
        async with running_server(tmp_path, database_url, expired_token_status=401) as (server, api):
            token, _ = await login_ok(api, ADMIN_EMAIL, ADMIN_PASSWORD)
            expired = jwt.encode({**access_claims(server, token), "iat": past - 60, "exp": past},
                                 server.config.jwt_secret, algorithm="HS256")
            assert_error(await api.client.get("/users", headers=auth(expired)), 401, "ERR_SESSION_EXPIRED")
            assert_error(await api.client.get("/users", headers=auth("garbage")), 401, "ERR_INVALID_TOKEN")


# ─── 7. password change ─────────────────────────────────────────────────────────────────

async def test_password_change_revokes_the_users_logins(api: Api, server: Server) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        admin = await api.admin_token()
        agent = await api.create_user(admin, "agent@zapgate.test", "old-pass-1")
        await api.create_user(admin, "bystander@zapgate.test", "by-pass-1")
        _, first = await login_ok(api, "agent@zapgate.test", "old-pass-1")
        _, second = await login_ok(api, "agent@zapgate.test", "old-pass-1")
        _, untouched = await login_ok(api, "bystander@zapgate.test", "by-pass-1")

        # An admin resets the agent's password.
        changed = await api.client.put(f"/users/{agent['id']}", json={"password": "new-pass-2"}, headers=auth(admin))
        assert changed.status_code == 200, changed.text
        for refresh in (first, second):
            assert_error(await refresh_with_body(api, refresh), 401, "ERR_SESSION_EXPIRED")
        assert (await refresh_with_body(api, untouched)).status_code == 200  # other users keep their logins
        assert_error(await login(api, "agent@zapgate.test", "old-pass-1"), 401, "ERR_INVALID_CREDENTIALS")
        token, third = await login_ok(api, "agent@zapgate.test", "new-pass-2")
        _, elsewhere = await login_ok(api, "agent@zapgate.test", "new-pass-2")

        # The agent changes their own password: their other logins end, the one they changed it from stays.
        own = await api.client.put(f"/users/{agent['id']}", json={"password": "own-pass-3"}, headers=auth(token))
        assert own.status_code == 200, own.text
        assert_error(await refresh_with_body(api, elsewhere), 401, "ERR_SESSION_EXPIRED")
        assert (await refresh_with_body(api, third)).status_code == 200
        assert_error(await login(api, "agent@zapgate.test", "new-pass-2"), 401, "ERR_INVALID_CREDENTIALS")
        await login_ok(api, "agent@zapgate.test", "own-pass-3")

        # A renamed user (no password in the request) keeps their logins.
        _, kept = await login_ok(api, "agent@zapgate.test", "own-pass-3")
        renamed = await api.client.put(f"/users/{agent['id']}", json={"name": "Agent Smith"}, headers=auth(admin))
        assert renamed.status_code == 200, renamed.text
        assert (await refresh_with_body(api, kept)).status_code == 200


async def test_deleted_user_cannot_refresh(api: Api) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        admin = await api.admin_token()
        agent = await api.create_user(admin, "leaver@zapgate.test", "leaver-pass-1")
        token, refresh = await login_ok(api, "leaver@zapgate.test", "leaver-pass-1")
        deleted = await api.client.delete(f"/users/{agent['id']}", headers=auth(admin))
        assert deleted.status_code == 200, deleted.text
        # The frontend checks its session with /auth/me: a 401 sends it to the login page.
        assert_error(await api.client.get("/auth/me", headers=auth(token)), 401, "ERR_SESSION_EXPIRED")
        assert_error(await refresh_with_body(api, refresh), 401, "ERR_SESSION_EXPIRED")
        assert_error(await login(api, "leaver@zapgate.test", "leaver-pass-1"), 401, "ERR_INVALID_CREDENTIALS")


# ─── 8. throttling ──────────────────────────────────────────────────────────────────────

async def test_failed_logins_are_throttled_per_email_and_per_address(tmp_path: Path, database_url: str) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        async with running_server(tmp_path, database_url, login_max_failures=3, login_max_failures_per_ip=8,
                                  login_window=60) as (_, api):
            admin = await api.admin_token()
            for name in ("locked", "reset", "other"):
                await api.create_user(admin, f"{name}@zapgate.test", f"{name}-pass-1")

            # A success resets the email's count: 2 failures + success + 2 failures stays under 3.
            for _ in range(2):
                assert_error(await login(api, "reset@zapgate.test", "wrong"), 401, "ERR_INVALID_CREDENTIALS")
            await login_ok(api, "reset@zapgate.test", "reset-pass-1")
            for _ in range(2):
                assert_error(await login(api, "reset@zapgate.test", "wrong"), 401, "ERR_INVALID_CREDENTIALS")
            await login_ok(api, "reset@zapgate.test", "reset-pass-1")  # 4 failures so far from this address

            # Three failures lock the email, even against the right password, in any letter case.
            for _ in range(3):
                assert_error(await login(api, "locked@zapgate.test", "wrong"), 401, "ERR_INVALID_CREDENTIALS")
            for email in ("locked@zapgate.test", "LOCKED@zapgate.test"):
                locked = await login(api, email, "locked-pass-1")
                assert_error(locked, 429, "ERR_TOO_MANY_REQUESTS")
                assert 1 <= int(locked.headers["Retry-After"]) <= 61
                assert set_cookie(locked) is None

            # Another email from the same address still logs in (7 failures < 8)...
            await login_ok(api, "other@zapgate.test", "other-pass-1")
            # ...until the address reaches its own limit; then every email is refused.
            assert_error(await login(api, "unknown@zapgate.test", "wrong"), 401, "ERR_INVALID_CREDENTIALS")
            for email, password in (("other@zapgate.test", "other-pass-1"), (ADMIN_EMAIL, ADMIN_PASSWORD)):
                refused = await login(api, email, password)
                assert_error(refused, 429, "ERR_TOO_MANY_REQUESTS")
                assert int(refused.headers["Retry-After"]) >= 1

            # Throttling is about logins: existing sessions keep working.
            assert (await api.client.get("/auth/me", headers=auth(admin))).status_code == 200


# ─── 9. disabled company ────────────────────────────────────────────────────────────────

async def test_disabled_company_cannot_log_in_or_refresh(api: Api, server: Server) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        root = await api.admin_token()
        company = await api.create_company(root, "Acme", "boss@acme.test", "acme-pass-1")
        _, refresh = await login_ok(api, "boss@acme.test", "acme-pass-1")

        disabled = await api.client.put(f"/companies/{company['id']}", json={"status": False}, headers=auth(root))
        assert disabled.status_code == 200, disabled.text

        refused = await login(api, "boss@acme.test", "acme-pass-1")
        assert_error(refused, 403, "ERR_COMPANY_INACTIVE")
        assert set_cookie(refused) is None
        # A wrong password learns nothing about the company.
        assert_error(await login(api, "boss@acme.test", "wrong"), 401, "ERR_INVALID_CREDENTIALS")
        assert_error(await refresh_with_body(api, refresh), 401, "ERR_SESSION_EXPIRED")
        # Other companies are unaffected.
        await login_ok(api, ADMIN_EMAIL, ADMIN_PASSWORD)

        enabled = await api.client.put(f"/companies/{company['id']}", json={"status": True}, headers=auth(root))
        assert enabled.status_code == 200, enabled.text
        await login_ok(api, "boss@acme.test", "acme-pass-1")


# ─── 10. CORS and headers ───────────────────────────────────────────────────────────────

async def test_cors_preflight_allows_only_the_frontend(api: Api) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
        allowed = await api.client.options("/auth/login", headers={"Origin": FRONTEND, **preflight})
        assert 200 <= allowed.status_code < 300, allowed.text
        assert allowed.headers["Access-Control-Allow-Origin"] == FRONTEND
        assert allowed.headers["Access-Control-Allow-Credentials"] == "true"
        assert "POST" in allowed.headers["Access-Control-Allow-Methods"]
        assert "content-type" in allowed.headers["Access-Control-Allow-Headers"].lower()
        assert "origin" in allowed.headers.get("Vary", "").lower()

        for origin in ("http://evil.test", "http://frontend.test.evil.test", "null"):
            other = await api.client.options("/auth/login", headers={"Origin": origin, **preflight})
            assert "Access-Control-Allow-Origin" not in other.headers, origin
            assert "Access-Control-Allow-Credentials" not in other.headers, origin

        # The real request from the frontend is readable by it, cookie included.
        response = await api.client.post("/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD},
                                         headers={"Origin": FRONTEND})
        assert response.status_code == 200
        assert response.headers["Access-Control-Allow-Origin"] == FRONTEND
        assert response.headers["Access-Control-Allow-Credentials"] == "true"
        assert set_cookie(response) is not None
        failed = await api.client.post("/auth/login", json={"email": ADMIN_EMAIL, "password": "wrong"},
                                       headers={"Origin": FRONTEND})
        assert failed.status_code == 401 and failed.headers["Access-Control-Allow-Origin"] == FRONTEND
        foreign = await api.client.post("/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD},
                                        headers={"Origin": "http://evil.test"})
        assert "Access-Control-Allow-Origin" not in foreign.headers


async def test_security_headers_and_request_id_on_every_response(api: Api) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        token = await api.admin_token()
        responses = {
            "ok": await api.client.get("/auth/me", headers=auth(token)),
            "login": await login(api, ADMIN_EMAIL, ADMIN_PASSWORD),
            "bad login": await login(api, ADMIN_EMAIL, "wrong"),
            "no token": await api.client.get("/auth/me"),
            "bad refresh": await refresh_with_body(api, "garbage"),
            "no route": await api.client.get("/no/such/route", headers=auth(token)),
            "preflight": await api.client.options("/auth/login", headers={"Origin": FRONTEND}),
            "bad json": await api.client.post("/auth/login", content=b"{not json",
                                              headers={"Content-Type": "application/json"}),
        }
        ids = set()
        for name, response in responses.items():
            assert response.headers.get("X-Content-Type-Options") == "nosniff", name
            assert response.headers.get("X-Frame-Options") in ("DENY", "SAMEORIGIN"), name
            request_id = response.headers.get("X-Request-Id")
            assert request_id, name
            ids.add(request_id)
        assert len(ids) == len(responses)  # one id per request

        echoed = await api.client.get("/auth/me", headers={**auth(token), "X-Request-Id": "trace-123"})
        assert echoed.headers["X-Request-Id"] == "trace-123"


async def test_throttling_behind_a_trusted_proxy_uses_the_forwarded_address(nursery, database_url: str,
                                                                               tmp_path) -> None:
    from tests.integration.conftest import make_config, start_server

    config = make_config(tmp_path, database_url, trusted_proxies=1, login_max_failures=100,
                         login_max_failures_per_ip=2)
    srv = await start_server(nursery, config)
    with trio.fail_after(TEST_TIMEOUT):
        async with httpx.AsyncClient(base_url=srv.url) as client:
            for attempt in range(2):
                bad = await client.post("/auth/login", json={"email": f"x{attempt}@y.test", "password": "nope-nope"},
                                        headers={"X-Forwarded-For": "203.0.113.7"})
                assert bad.status_code == 401
            locked = await client.post("/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD},
                                       headers={"X-Forwarded-For": "203.0.113.7"})
            assert locked.status_code == 429
            other = await client.post("/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD},
                                      headers={"X-Forwarded-For": "198.51.100.1"})
            assert other.status_code == 200, other.text
    await srv.db.aclose()
