"""Presence follows the sockets, and ended logins reach their frontends: the real server, real sockets.

- A user is online while one of their sockets is connected (any namespace), whatever their `userStatus`
  rate, and for PRESENCE_GRACE after the last one closes (shortened here); a logout is offline at once
  unless another login of theirs is connected. Announced as `company-{id}-user` `update` with the whole
  user (both frontends replace their copy of the user with it) and ticketz's `userOnlineChange`.
- `company-{id}-auth` `{action, user}` reaches only the sockets of the logins that ended (an admin's
  password reset, the user's own change: the others; a forced logout; a deletion), which are then
  closed, and a socket of an ended login cannot come back with its still valid access token.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests.integration.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, Api, Server, auth, make_config, start_server
from tests.integration.socketio_client import PollingSocket, SocketRefused, polling_socket

TIMEOUT = 40
GRACE = 1.0
PRIVATE = ("_keep_session", "_sessions", "_audience", "_participants", "_supers")


@asynccontextmanager
async def presence_server(tmp_path: Path, database_url: str) -> AsyncIterator[tuple[Server, Api]]:
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, make_config(tmp_path, database_url, presence_grace=GRACE))
        try:
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
                yield server, Api(client, server)
        finally:
            nursery.cancel_scope.cancel()
    await server.db.aclose()


def online(server: Server, user_id: int) -> bool:
    return server.sql("SELECT online FROM users WHERE id = %s", (user_id,))[0][0]


async def wait_until(condition: Callable[[], bool]) -> None:
    while not condition():
        await trio.sleep(0.05)


def presence_events(watcher: PollingSocket, user_id: int) -> list[bool]:
    """The online values `userOnlineChange` told the watcher about `user_id`, in order."""
    return [event["online"] for event in watcher.received("userOnlineChange") if event["userId"] == user_id]


async def login(api: Api, email: str, password: str) -> str:
    api.client.cookies.clear()
    return await api.login(email, password)


# ─── presence ───────────────────────────────────────────────────────────────────────────

async def test_a_connected_user_stays_online_without_heartbeats_and_goes_offline_after_the_grace(
        tmp_path: Path, database_url: str) -> None:
    with trio.fail_after(TIMEOUT):
        async with presence_server(tmp_path, database_url) as (server, api):
            admin = await api.admin_token()
            agent = await api.create_user(admin, "agent@zapgate.test", "agent-pass-1")
            token = await login(api, "agent@zapgate.test", "agent-pass-1")
            assert not online(server, agent["id"])  # a login alone is not presence
            async with polling_socket(server.url, "/1", admin) as watcher:
                async with polling_socket(server.url, "/1", token) as first:
                    await wait_until(lambda: presence_events(watcher, agent["id"]) == [True])
                    assert online(server, agent["id"])
                    announced = await watcher.wait_event(
                        "company-1-user", lambda p: p["user"]["id"] == agent["id"] and p["user"]["online"])
                    # the whole user, as the users page and useAuth replace theirs with it
                    assert announced["action"] == "update"
                    assert announced["user"]["email"] == "agent@zapgate.test" and announced["user"]["profile"] == "user"
                    # no heartbeat for many graces (the SaaS frontend sends one every 5 minutes): still online
                    await trio.sleep(4 * GRACE)
                    assert online(server, agent["id"]) and presence_events(watcher, agent["id"]) == [True]
                    assert first.received("userOnlineChange") == []  # for admins only

                    # two sockets (the company namespace and the root one): offline only when the last closes
                    async with polling_socket(server.url, "/", token) as second:
                        await first.close()
                        await trio.sleep(3 * GRACE)
                        assert online(server, agent["id"]) and presence_events(watcher, agent["id"]) == [True]
                        closed_at = trio.current_time()
                        await second.close()
                        await wait_until(lambda: presence_events(watcher, agent["id"]) == [True, False])
                        waited = trio.current_time() - closed_at
                        assert waited >= GRACE * 0.9, waited  # not before the grace
                        assert not online(server, agent["id"])
                        gone = await watcher.wait_event(
                            "company-1-user", lambda p: p["user"]["id"] == agent["id"] and not p["user"]["online"])
                        assert gone["user"]["name"] == agent["name"]

                # a reload: the socket closes and another opens within the grace — no offline blip
                async with polling_socket(server.url, "/1", token) as again:
                    await wait_until(lambda: presence_events(watcher, agent["id"]) == [True, False, True])
                    await again.close()
                async with polling_socket(server.url, "/1", token):
                    await trio.sleep(3 * GRACE)
                    assert presence_events(watcher, agent["id"]) == [True, False, True]
                    assert online(server, agent["id"])


async def test_presence_events_reach_the_admins_and_the_user_only(tmp_path: Path, database_url: str) -> None:
    with trio.fail_after(TIMEOUT):
        async with presence_server(tmp_path, database_url) as (server, api):
            admin = await api.admin_token()
            agent = await api.create_user(admin, "agent@zapgate.test", "agent-pass-1")
            await api.create_user(admin, "colleague@zapgate.test", "colleague-pass-1")
            await api.create_company(admin, "Acme", "boss@acme.test", "acme-pass-1")
            colleague = await login(api, "colleague@zapgate.test", "colleague-pass-1")
            acme_admin = await login(api, "boss@acme.test", "acme-pass-1")
            agent_token = await login(api, "agent@zapgate.test", "agent-pass-1")
            async with polling_socket(server.url, "/1", admin) as watcher, \
                    polling_socket(server.url, "/1", colleague) as peer, \
                    polling_socket(server.url, "/", acme_admin) as stranger:
                async with polling_socket(server.url, "/1", agent_token) as own:
                    await watcher.wait_event("userOnlineChange", lambda p: p == {"userId": agent["id"], "online": True})
                    await own.wait_event("company-1-user", lambda p: p["user"]["id"] == agent["id"])
                    await trio.sleep(0.3)
                assert not [p for p in peer.received("company-1-user") if p["user"]["id"] == agent["id"]]
                assert not [p for p in peer.received("userOnlineChange") if p["userId"] == agent["id"]]
                assert not [name for name, _ in stranger.events if name.startswith("company-1-")], stranger.events
                assert not [p for p in stranger.received("userOnlineChange") if p["userId"] == agent["id"]]


async def test_logout_is_offline_at_once_unless_another_login_is_connected(tmp_path: Path,
                                                                          database_url: str) -> None:
    with trio.fail_after(TIMEOUT):
        async with presence_server(tmp_path, database_url) as (server, api):
            admin = await api.admin_token()
            agent = await api.create_user(admin, "agent@zapgate.test", "agent-pass-1")
            laptop = await login(api, "agent@zapgate.test", "agent-pass-1")
            phone = await login(api, "agent@zapgate.test", "agent-pass-1")
            async with polling_socket(server.url, "/1", laptop), polling_socket(server.url, "/", phone):
                await wait_until(lambda: online(server, agent["id"]))
                assert (await api.client.delete("/auth/logout", headers=auth(laptop))).status_code == 204
                assert online(server, agent["id"])  # the phone is still here
                assert (await api.client.delete("/auth/logout", headers=auth(phone))).status_code == 204
                assert not online(server, agent["id"])  # at once, though its socket has not closed yet
            # the logged-out logins' sockets cannot come back with their (still valid) access tokens
            for token in (laptop, phone):
                with pytest.raises(SocketRefused) as refused:
                    async with polling_socket(server.url, "/1", token):
                        pass
                assert refused.value.body == {"message": "ERR_SESSION_EXPIRED: this login was ended"}


# ─── company-{id}-auth ──────────────────────────────────────────────────────────────────

def assert_auth_event(payload: dict[str, Any], user: dict[str, Any]) -> None:
    assert payload["action"] == "update"
    assert payload["user"] == {"id": user["id"], "email": user["email"], "companyId": user["companyId"]}
    assert not any(key in payload for key in PRIVATE), payload


async def test_ended_logins_are_told_and_closed_and_nobody_else_hears_it(tmp_path: Path,
                                                                        database_url: str) -> None:
    with trio.fail_after(TIMEOUT):
        async with presence_server(tmp_path, database_url) as (server, api):
            admin = await api.admin_token()
            agent = await api.create_user(admin, "agent@zapgate.test", "agent-pass-1")
            await api.create_user(admin, "colleague@zapgate.test", "colleague-pass-1")
            await api.create_company(admin, "Acme", "boss@acme.test", "acme-pass-1")
            colleague = await login(api, "colleague@zapgate.test", "colleague-pass-1")
            acme_admin = await login(api, "boss@acme.test", "acme-pass-1")
            first = await login(api, "agent@zapgate.test", "agent-pass-1")
            second = await login(api, "agent@zapgate.test", "agent-pass-1")
            async with polling_socket(server.url, "/1", admin) as boss, \
                    polling_socket(server.url, "/1", colleague) as peer, \
                    polling_socket(server.url, "/", acme_admin) as stranger:
                # 1. an admin resets the agent's password: every login of theirs is told, then closed
                async with polling_socket(server.url, "/1", first) as on_first, \
                        polling_socket(server.url, "/", second) as on_second:
                    reset = await api.client.put(f"/users/{agent['id']}", json={"password": "reset-pass-2"},
                                                 headers=auth(admin))
                    assert reset.status_code == 200, reset.text
                    for socket in (on_first, on_second):
                        assert_auth_event(await socket.wait_event("company-1-auth"), agent)
                        await socket.wait_disconnected()

                # 2. the agent changes their own password: their other login is told; this one stays
                here = await login(api, "agent@zapgate.test", "reset-pass-2")
                there = await login(api, "agent@zapgate.test", "reset-pass-2")
                async with polling_socket(server.url, "/1", here) as on_here, \
                        polling_socket(server.url, "/1", there) as on_there:
                    own = await api.client.put(f"/users/{agent['id']}", json={"password": "own-pass-3"},
                                               headers=auth(here))
                    assert own.status_code == 200, own.text
                    assert_auth_event(await on_there.wait_event("company-1-auth"), agent)
                    await on_there.wait_disconnected()
                    await trio.sleep(0.3)
                    assert on_here.received("company-1-auth") == [] and not on_here.disconnected
                    assert (await api.client.get("/auth/me", headers=auth(here))).status_code == 200

                    # 3. an admin forces the agent out: told, closed, refresh refused, offline at once
                    api.client.cookies.clear()
                    logged_in = await api.client.post("/auth/login", json={"email": "agent@zapgate.test",
                                                                           "password": "own-pass-3"})
                    refresh = logged_in.cookies["jrt"]
                    api.client.cookies.clear()
                    refused = await api.client.post(f"/users/{agent['id']}/logout", headers=auth(colleague))
                    assert refused.status_code == 403  # admins only
                    forced = await api.client.post(f"/users/{agent['id']}/logout", headers=auth(admin))
                    assert forced.status_code == 200, forced.text
                    assert forced.json() == {"userId": agent["id"], "revoked": 2}  # `here` and the new login
                    assert not online(server, agent["id"])
                    assert_auth_event(await on_here.wait_event("company-1-auth"), agent)
                    await on_here.wait_disconnected()
                    again = await api.client.post("/auth/refresh_token", json={"refreshToken": refresh})
                    assert again.status_code == 401
                with pytest.raises(SocketRefused):
                    async with polling_socket(server.url, "/1", here):
                        pass

                # 4. the agent is deleted: their sockets are told before they close
                last = await login(api, "agent@zapgate.test", "own-pass-3")
                async with polling_socket(server.url, "/1", last) as on_last:
                    deleted = await api.client.delete(f"/users/{agent['id']}", headers=auth(admin))
                    assert deleted.status_code == 200, deleted.text
                    assert_auth_event(await on_last.wait_event("company-1-auth"), agent)
                    await on_last.wait_disconnected()

                # nobody else heard any of it: not the admin, not a colleague, not another company
                await trio.sleep(0.3)
                for socket in (boss, peer, stranger):
                    assert not socket.received("company-1-auth"), socket.events
                    assert not socket.disconnected


async def test_a_reused_refresh_token_ends_that_logins_sockets_only(tmp_path: Path, database_url: str) -> None:
    with trio.fail_after(TIMEOUT):
        async with presence_server(tmp_path, database_url) as (server, api):
            api.client.cookies.clear()
            stolen = await api.client.post("/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
            token, refresh = stolen.json()["token"], stolen.cookies["jrt"]
            other = await login(api, ADMIN_EMAIL, ADMIN_PASSWORD)
            async with polling_socket(server.url, "/1", token) as victim, \
                    polling_socket(server.url, "/1", other) as elsewhere:
                api.client.cookies.clear()
                rotated = await api.client.post("/auth/refresh_token", json={"refreshToken": refresh})
                assert rotated.status_code == 200
                server.sql("UPDATE auth_sessions SET rotated_at = now() - interval '1 hour'")  # past the reuse grace
                api.client.cookies.clear()
                replay = await api.client.post("/auth/refresh_token", json={"refreshToken": refresh})
                assert replay.status_code == 401
                event = await victim.wait_event("company-1-auth")
                assert event["user"]["email"] == ADMIN_EMAIL and event["reason"] == "refresh token reused"
                await victim.wait_disconnected()
                await trio.sleep(0.3)
                assert not elsewhere.received("company-1-auth") and not elsewhere.disconnected
