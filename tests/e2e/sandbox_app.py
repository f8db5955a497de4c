"""A `zapgate serve` with a paired sandbox line, for the e2e tests that kill and restart it (routing, scheduled
messages, campaigns): what the contact got is read from the sandbox's outbox, which survives the kills."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg

from tests.e2e.conftest import wait_until

ADMIN = {"email": "admin@zapgate.local", "password": "restart-line-pass-1"}


def serve_env(external_db_env: dict[str, str]) -> dict[str, str]:
    return {**external_db_env, "ADMIN_PASSWORD": ADMIN["password"], "SANDBOX_QR_INTERVAL": "1",
            "SESSION_RECONNECT_INITIAL": "0.2"}


def start(zapgate: Any, env: dict[str, str], port: int) -> Any:
    process = zapgate(["serve"], env, port=port)
    process.wait_healthy()
    return process


def login(url: str) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=10)
    token = client.post("/auth/login", json=ADMIN).json()["token"]
    client.headers["Authorization"] = f"Bearer {token}"
    return client


def connected_line(client: httpx.Client, number: str = "5511900003333") -> int:
    """A new sandbox connection, paired and CONNECTED; its id."""
    wid = client.post("/whatsapp", json={"name": "line", "channel": "sandbox"}).json()["id"]
    wait_until(lambda: client.get(f"/whatsapp/{wid}").json()["status"] == "qrcode", what="qrcode")
    assert client.post(f"/sandbox/{wid}/pair", json={"number": number}).status_code == 200
    wait_until(lambda: client.get(f"/whatsapp/{wid}").json()["status"] == "CONNECTED", what="connected")
    return wid


def sql(url: str, query: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(query, params)
        return cursor.fetchall() if cursor.description else []
