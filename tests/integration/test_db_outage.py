"""The database goes away and comes back (issue 22, item 6): the pool recovers by itself, `/ready` and
`/health` say what is going on, the API answers 503 + Retry-After meanwhile, and a 30 s outage under
traffic leaves the process up and loses nothing the network accepted.

PostgreSQL is cut with a TCP proxy between the app and the server (tests/faultproxy.py), never stopped:
other tests share it. Assertions on what was stored go to the server directly, past the proxy.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import trio
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from storage.db import Database, open_pool
from storage.errors import Unavailable
from tests.faultproxy import FaultProxy
from tests.integration.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, Server, auth, make_config, start_server
from tests.integration.test_whatsapp import create_sandbox

OUTAGE = 30.0  # seconds without the database in the acceptance test, as issue 22 asks
CONNECTIONS = 10  # sandbox connections in the acceptance test
TIMEOUT = 60  # seconds for the quick tests


@pytest.fixture
async def proxy(nursery: trio.Nursery, database_url: str) -> AsyncIterator[FaultProxy]:
    params = conninfo_to_dict(database_url)
    proxy = FaultProxy(str(params.get("host") or "127.0.0.1"), int(params.get("port") or 5432))
    await nursery.start(proxy.run)
    yield proxy


@pytest.fixture
async def server(nursery: trio.Nursery, proxy: FaultProxy, database_url: str, tmp_path: Path) -> AsyncIterator[Server]:
    """The real app (as tests.integration.conftest's `server`), its database behind the proxy."""
    srv = await start_server(nursery, make_config(tmp_path, through(proxy, database_url), sandbox_qr_interval=0.2))
    yield srv
    nursery.cancel_scope.cancel()
    await srv.db.aclose()


def through(proxy: FaultProxy, database_url: str) -> str:
    """`database_url`, but through the proxy."""
    return make_conninfo(database_url, host=proxy.host, port=str(proxy.port))


async def serve_through(nursery: trio.Nursery, proxy: FaultProxy, database_url: str, tmp_path: Path,
                        **overrides: Any) -> AsyncIterator[Server]:
    """A test server whose database connections go through the proxy (a fixture's body: yields it, then stops)."""
    srv = await start_server(nursery, make_config(tmp_path, through(proxy, database_url), **overrides))
    yield srv
    nursery.cancel_scope.cancel()
    await srv.db.aclose()


def direct_sql(database_url: str, query: str) -> list[tuple[Any, ...]]:
    """Run SQL on the server itself, past the proxy (blocking)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        return conn.execute(query).fetchall()


async def eventually(check: Any, what: str) -> Any:
    """Poll `check()` (sync or async) until it returns something truthy (bounded by the caller's deadline)."""
    while True:
        value = check()
        if not isinstance(value, bool | type(None)) and hasattr(value, "__await__"):
            value = await value
        if value:
            return value
        await trio.sleep(0.1)


# ─── the pool and Database.health ───────────────────────────────────────────────────────

async def test_the_pool_recovers_by_itself_after_a_cut(proxy: FaultProxy, database_url: str) -> None:
    pool = await trio.to_thread.run_sync(lambda: open_pool(through(proxy, database_url), min_size=2, max_size=4,
                                                           statement_timeout_ms=10_000, timeout=3.0))
    db = Database(pool)
    try:
        with trio.fail_after(TIMEOUT):
            async with trio.open_nursery() as nursery:  # several connections in use, then idle in the pool
                for _ in range(4):
                    nursery.start_soon(db.fetch_value, "SELECT pg_sleep(0.2)")
            assert not db.health.down and proxy.open_connections >= 2

            await proxy.cut()
            with pytest.raises(Unavailable):
                await db.fetch_value("SELECT 1")
            assert db.health.down and db.health.outages == 1
            with pytest.raises(Unavailable):  # still away: refused again, not hung
                await db.fetch_value("SELECT 1")
            assert db.health.snapshot()["status"] == "down" and db.health.unavailable_errors >= 2

            await proxy.restore()

            async def answers() -> bool:
                try:
                    return await db.fetch_value("SELECT 1 AS one") == 1
                except Unavailable:
                    return False

            await eventually(answers, "the pool reconnected")
            assert not db.health.down and db.health.recovered_at is not None
            assert db.health.snapshot()["status"] == "up"

            # A cut nobody noticed (no query while it lasted): the pool's check finds the connections the
            # server closed before handing one out, so the first query after it already works.
            async with trio.open_nursery() as nursery:
                for _ in range(3):
                    nursery.start_soon(db.fetch_value, "SELECT pg_sleep(0.2)")
            before = proxy.accepted
            await proxy.cut()
            await proxy.restore()
            assert await db.fetch_value("SELECT 2 AS two") == 2
            assert proxy.accepted > before  # on a new connection
            assert db.health.outages == 1  # and never seen as an outage
    finally:
        await db.aclose()


# ─── the API while the database is cut ──────────────────────────────────────────────────

async def test_ready_health_and_the_api_say_the_database_is_away(server: Server, proxy: FaultProxy) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=20) as client:
        with trio.fail_after(TIMEOUT):
            login = await client.post("/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
            token = login.json()["token"]
            assert (await client.get("/ready")).status_code == 200
            health = (await client.get("/health")).json()
            assert health["status"] == "ok" and health["database"]["status"] == "up"

            await proxy.cut()
            ready = await client.get("/ready")
            assert ready.status_code == 503 and ready.headers["Retry-After"] == "5"
            assert ready.json()["database"] == "unreachable" and ready.json()["since"]
            listed = await client.get("/whatsapp", headers=auth(token))
            assert listed.status_code == 503, listed.text
            assert listed.headers["Retry-After"] == "5"
            assert listed.json()["error"] == "ERR_SERVICE_UNAVAILABLE" and listed.json()["message"]
            health = (await client.get("/health")).json()
            assert health["status"] == "degraded" and health["reason"].startswith("database unavailable since")
            assert health["database"]["status"] == "down" and health["database"]["outages"] == 1
            assert health["database"]["unavailableErrors"] >= 1

            await proxy.restore()

            async def ready_again() -> bool:
                return (await client.get("/ready")).status_code == 200

            await eventually(ready_again, "/ready is 200 again")
            health = (await client.get("/health")).json()
            assert health["status"] == "ok" and "reason" not in health
            assert health["database"]["status"] == "up" and health["database"]["outages"] == 1
            assert health["database"]["recoveredAt"]
            assert (await client.get("/whatsapp", headers=auth(token))).status_code == 200


# ─── the acceptance test ────────────────────────────────────────────────────────────────

async def connect_sandboxes(client: httpx.AsyncClient, server: Server, token: str, count: int) -> list[int]:
    ids: list[int] = []

    async def one(index: int) -> None:
        api = _Api(client)
        created = await create_sandbox(api, token, name=f"Outage {index}")  # type: ignore[arg-type]
        wid = created["id"]
        await eventually(lambda: server.deps.sandbox.state(wid).get("qr") if server.deps.sandbox else None, "qr")
        paired = await client.post(f"/sandbox/{wid}/pair", json={"number": f"55119{index:08d}"}, headers=auth(token))
        assert paired.status_code == 200, paired.text
        ids.append(wid)

    async with trio.open_nursery() as nursery:
        for index in range(count):
            nursery.start_soon(one, index)
    await eventually(lambda: server.deps.sessions.stats()["by_status"].get("CONNECTED") == count, "connected")
    return sorted(ids)


class _Api:
    """The bit of tests.integration.conftest.Api that create_sandbox uses."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client


async def test_a_30s_database_outage_under_traffic(server: Server, proxy: FaultProxy, database_url: str,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    """PostgreSQL unavailable for OUTAGE seconds with CONNECTIONS sandbox connections and inbound traffic:
    the process stays up, /ready is 503 during and 200 after, and every message the network accepted
    (over `POST /sandbox/:id/inbound`, and straight into the network while the API could not take it) is
    stored once after recovery."""
    caplog.set_level(logging.CRITICAL)  # thousands of expected warnings; the assertions say what matters
    sandbox = server.deps.sandbox
    assert sandbox is not None
    accepted: set[str] = set()  # message ids the network accepted
    refused = {"api": 0}
    answers: list[tuple[int, str | None, str]] = []  # the API's answers other than 200
    seq = itertools.count()
    async with httpx.AsyncClient(base_url=server.url, timeout=20) as client:
        with trio.fail_after(OUTAGE + 120):
            login = await client.post("/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
            token = login.json()["token"]
            wids = await connect_sandboxes(client, server, token, CONNECTIONS)
            handles = {wid: server.deps.sessions.lookup(wid) for wid in wids}

            async def customers(wid: int, stop: trio.Event) -> None:
                """A few contacts of one connection write, one message after another, over the API."""
                while not stop.is_set():
                    n = next(seq)
                    try:
                        response = await client.post(f"/sandbox/{wid}/inbound", headers=auth(token), json={
                            "from": f"55118{n % 7:08d}", "body": f"message {n}"})
                    except httpx.TransportError:
                        refused["api"] += 1
                        continue
                    if response.status_code == 200:
                        accepted.add(response.json()["id"])
                    else:  # the database is away: not accepted (asserted below, not here: see the docstring)
                        answers.append((response.status_code, response.headers.get("Retry-After"), response.text))
                        refused["api"] += 1
                        await trio.sleep(0.2)

            stop = trio.Event()
            async with trio.open_nursery() as traffic:
                for wid in wids:
                    traffic.start_soon(customers, wid, stop)
                await trio.sleep(2)
                before_cut = len(accepted)
                assert before_cut > 0

                await proxy.cut()
                cut_at = trio.current_time()
                ready_during: list[int] = []
                during = 0
                while trio.current_time() - cut_at < OUTAGE:
                    # customers keep writing: the network accepts, whatever zapgate's database does
                    for wid in wids:
                        accepted.add(await sandbox.inbound(wid, sender=f"55117{next(seq) % 5:08d}",
                                                           body="during the outage"))
                        during += 1
                    ready_during.append((await client.get("/ready")).status_code)
                    await trio.sleep(1)
                health = (await client.get("/health")).json()
                assert health["status"] == "degraded" and health["database"]["status"] == "down"
                # the sessions serve their connections: up, the same actors, not restarted
                assert {wid: server.deps.sessions.lookup(wid) for wid in wids} == handles
                assert all(handle is not None and handle.status == "CONNECTED" for handle in handles.values())

                await proxy.restore()

                async def ready_again() -> bool:
                    return (await client.get("/ready")).status_code == 200

                await eventually(ready_again, "/ready is 200 again")
                await trio.sleep(2)  # traffic after the outage too
                stop.set()

                assert ready_during and set(ready_during) == {503}
                assert answers and all(status == 503 and retry for status, retry, _ in answers), answers[:3]
                # the process stayed up: no supervisor gave up, the root never had to restart a child
                health = (await client.get("/health")).json()
                assert health["status"] == "ok" and health["database"]["outages"] >= 1
                root = health["supervisors"]["root"]
                assert root["running"] and root["restarts_total"] == 0, root
                assert health["sessions"]["by_status"] == {"CONNECTED": CONNECTIONS}
                assert {wid: server.deps.sessions.lookup(wid) for wid in wids} == handles
                assert during >= CONNECTIONS and len(accepted) > before_cut + during  # and after it, over the API

                # nothing the network accepted is lost: all stored, each once
                async def stored() -> list[tuple[Any, ...]]:
                    return await trio.to_thread.run_sync(
                        direct_sql, database_url, "SELECT wid, count(*) FROM messages WHERE NOT from_me GROUP BY wid")

                deadline = trio.current_time() + 30
                rows = await stored()
                while not accepted <= {wid for wid, _ in rows} and trio.current_time() < deadline:
                    await trio.sleep(0.5)
                    rows = await stored()
                assert all(count == 1 for _, count in rows)
                missing = accepted - {wid for wid, _ in rows}
                statuses = await trio.to_thread.run_sync(direct_sql, database_url,
                                                         "SELECT DISTINCT status FROM whatsapps")
                assert statuses == [("CONNECTED",)]
                assert not missing, f"{len(missing)} of {len(accepted)} accepted messages lost"
