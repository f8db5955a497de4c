"""Integration fixtures: the real app on hypercorn on a free loopback port, over a fresh database.

`server` runs `gateway.bootstrap.run_app` (the same code path as `zapgate serve`) in the test's
nursery; `api` is an httpx client with helpers to log in and create tenants.
"""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import httpx
import psycopg
import pytest
import trio

from api.app import Deps
from gateway.bootstrap import AdminLogin, ensure_first_company, hypercorn_config, run_app
from gateway.broker import Broker
from gateway.config import Config
from storage.db import Database, open_pool

ADMIN_EMAIL = "admin@zapgate.test"
ADMIN_PASSWORD = "admin-password-1"


def make_config(tmp_path: Path, database_url: str, **overrides: Any) -> Config:
    values: dict[str, Any] = {
        "port": 0, "host": "127.0.0.1", "database_url": database_url,
        "jwt_secret": "test-secret-" + "x" * 32, "jwt_refresh_secret": "test-refresh-" + "y" * 32,
        "data_dir": tmp_path / "data", "admin_email": ADMIN_EMAIL, "admin_password": ADMIN_PASSWORD,
        "bcrypt_rounds": 4, "log_format": "text", "graceful_timeout": 2.0, "db_pool_min": 1, "db_pool_max": 5,
        "frontend_urls": ("http://frontend.test",),
        "sandbox_qr_interval": 1.0, "session_max_qr_codes": 30, "session_reconnect_initial": 0.2,
        "session_reconnect_max": 2.0,
        "webhook_allow_private": True,  # the tests' receivers listen on loopback
    }
    values.update(overrides)
    return Config(**values)


@attrs.define
class Server:
    url: str
    config: Config
    db: Database
    admin: AdminLogin
    database_url: str
    broker: Broker
    deps: Deps

    def sql(self, query: str, params: Any = None) -> list[tuple[Any, ...]]:
        """Run SQL directly (blocking; for assertions on what the database holds)."""
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            cursor = conn.execute(query, params)
            return cursor.fetchall() if cursor.description else []


async def start_server(nursery: trio.Nursery, config: Config, broker: Broker | None = None) -> Server:
    assert config.database_url is not None
    pool = await trio.to_thread.run_sync(partial(open_pool, config.database_url, min_size=config.db_pool_min,
                                                 max_size=config.db_pool_max,
                                                 statement_timeout_ms=config.db_statement_timeout_ms))
    db = Database(pool)
    config.data_dir.mkdir(parents=True, exist_ok=True)
    admin = await ensure_first_company(db, config)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    hc = hypercorn_config(config)
    hc.bind = [f"fd://{os.dup(sock.fileno())}"]  # hypercorn owns (and closes) the duplicate
    broker = broker or Broker()
    built: list[Deps] = []
    await nursery.start(partial(run_app, config, db, hc=hc, broker=broker, on_deps=built.append))
    sock.close()
    return Server(url=f"http://127.0.0.1:{port}", config=config, db=db, admin=admin,
                  database_url=config.database_url, broker=broker, deps=built[0])


@pytest.fixture
async def server(nursery: trio.Nursery, database_url: str, tmp_path: Path) -> AsyncIterator[Server]:
    srv = await start_server(nursery, make_config(tmp_path, database_url))
    yield srv
    nursery.cancel_scope.cancel()
    await srv.db.aclose()


class Api:
    """An httpx client bound to the test server, with helpers for the common set-up steps."""

    def __init__(self, client: httpx.AsyncClient, server: Server) -> None:
        self.client = client
        self.server = server

    async def login(self, email: str, password: str) -> str:
        response = await self.client.post("/auth/login", json={"email": email, "password": password})
        assert response.status_code == 200, response.text
        return response.json()["token"]

    async def admin_token(self) -> str:
        return await self.login(ADMIN_EMAIL, ADMIN_PASSWORD)

    async def create_company(self, super_token: str, name: str, email: str,
                             password: str = "company-pass-1") -> dict[str, Any]:
        response = await self.client.post("/companies", json={"name": name, "email": email, "password": password},
                                          headers=auth(super_token))
        assert response.status_code == 201, response.text
        return response.json()

    async def create_user(self, admin_token: str, email: str, password: str = "user-pass-1",
                          **fields: Any) -> dict[str, Any]:
        payload = {"name": email.split("@")[0], "email": email, "password": password, **fields}
        response = await self.client.post("/users", json=payload, headers=auth(admin_token))
        assert response.status_code == 201, response.text
        return response.json()


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def api(server: Server) -> AsyncIterator[Api]:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        yield Api(client, server)
