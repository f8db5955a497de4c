"""Two `zapgate serve` processes on one PostgreSQL and one Redis: a socket on B receives, once, the events
of a message that arrived on A; Redis stopped and started again, delivery resumes."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
import trio

from tests.conftest import redis_url_or_skip
from tests.e2e.conftest import free_port
from tests.e2e.test_live import start_client
from tests.e2e.test_socketio_client import node  # noqa: F401 - the fixture installs the client

TIMEOUT = 90
PASSWORD = "scale-out-pass-1"


def start_redis(port: int, directory: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--dir", str(directory)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def redis_connected(url: str) -> bool:
    async with httpx.AsyncClient(base_url=url) as client:
        health = (await client.get("/health")).json()
    return bool(health["broker"].get("redis", {}).get("connected"))


async def wait_redis(url: str, connected: bool) -> None:
    while await redis_connected(url) is not connected:
        await trio.sleep(0.1)


async def test_a_socket_on_b_receives_what_arrived_on_a(nursery: trio.Nursery, node: str,  # noqa: F811
                                                       zapgate, external_db_env, tmp_path: Path) -> None:
    redis_url_or_skip()  # needs redis-server like the Redis-backed tests (mandatory in CI)
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed")
    port = free_port()
    redis = start_redis(port, tmp_path)
    try:
        env = {**external_db_env, "REDIS_URL": f"redis://127.0.0.1:{port}/0", "ADMIN_PASSWORD": PASSWORD,
               "SANDBOX_QR_INTERVAL": "1", "SESSION_RECONNECT_INITIAL": "0.2"}
        a = zapgate(["serve"], env)
        await trio.to_thread.run_sync(a.wait_healthy)
        b = zapgate(["serve"], env)  # the same data dir: the same JWT secrets, as nodes must share
        await trio.to_thread.run_sync(b.wait_healthy)
        with trio.fail_after(TIMEOUT):
            await wait_redis(a.url, True)
            await wait_redis(b.url, True)
            async with httpx.AsyncClient(base_url=a.url, timeout=10) as api:
                token = (await api.post("/auth/login", json={"email": "admin@zapgate.local",
                                                             "password": PASSWORD})).json()["token"]
                api.headers["Authorization"] = f"Bearer {token}"
                wid = (await api.post("/whatsapp", json={"name": "A's line", "channel": "sandbox"})).json()["id"]
                while (await api.get(f"/whatsapp/{wid}")).json()["status"] != "qrcode":
                    await trio.sleep(0.1)
                await api.post(f"/sandbox/{wid}/pair", json={"number": "5511900003333"})
                while (await api.get(f"/whatsapp/{wid}")).json()["status"] != "CONNECTED":
                    await trio.sleep(0.1)
                client = await start_client(nursery, node, b.url, "/1", token)
                await client.wait_for(lambda line: line["step"] == "ready")

                async def arrive(body: str) -> None:
                    response = await api.post(f"/sandbox/{wid}/inbound", json={"from": "5511988884444", "body": body})
                    assert response.status_code == 200, response.text

                def bodies() -> list[str]:
                    return [e["payload"]["message"]["body"] for e in client.events("company-1-appMessage")
                            if e["payload"]["action"] == "create"]

                await arrive("first")
                await client.wait_for(lambda line: line["step"] == "event" and "first" in bodies())
                await trio.sleep(1)  # a duplicate would have arrived by now
                assert bodies() == ["first"]

                redis.terminate()
                redis.wait(10)
                await wait_redis(b.url, False)
                await arrive("during the outage")  # stored on A; B's sockets miss it (they refetch on reconnect)
                redis = start_redis(port, tmp_path)
                await wait_redis(a.url, True)
                await wait_redis(b.url, True)
                await arrive("after")
                await client.wait_for(lambda line: line["step"] == "event" and "after" in bodies())
                await trio.sleep(0.5)
                assert bodies().count("after") == 1 and bodies().count("first") == 1
                await client.close()
    finally:
        redis.terminate()
        redis.wait(10)  # the zapgate fixture stops both processes
