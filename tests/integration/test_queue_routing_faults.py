"""Routing under faults (issue 12): the database away while a contact answers, and a routing step that
crashes its actor. Either way the contact gets each automated message once, in order."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from actors import routing
from tests.faultproxy import FaultProxy
from tests.integration.conftest import Api, Server
from tests.integration.test_db_outage import eventually, serve_through
from tests.integration.test_db_outage import proxy as proxy
from tests.integration.test_queue_routing import settle, ticket_of, two_queues

TIMEOUT = 90
CUSTOMER = "5511955550002"
MENU = "Olá Ana! Escolha um setor:\n\n*[ 1 ]* - Vendas\n*[ 2 ]* - Suporte"


@pytest.fixture
async def cut_server(nursery: trio.Nursery, proxy: FaultProxy, database_url: str,
                     tmp_path: Path) -> AsyncIterator[Server]:
    async for srv in serve_through(nursery, proxy, database_url, tmp_path, sandbox_qr_interval=0.2):
        yield srv


async def test_an_answer_during_a_database_outage_routes_once_when_it_is_back(
        cut_server: Server, proxy: FaultProxy) -> None:
    server = cut_server
    with trio.fail_after(TIMEOUT):
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            api = Api(client, server)
            token = await api.admin_token()
            wid, _sales, support = await two_queues(api, server, token)
            sandbox = server.deps.sandbox
            assert sandbox is not None
            await sandbox.inbound(wid, sender=CUSTOMER, name="Ana", body="oi")
            assert await settle(api, token, wid, 1) == [MENU]
            await proxy.cut()
            await sandbox.inbound(wid, sender=CUSTOMER, name="Ana", body="2")  # held by the network meanwhile
            await trio.sleep(2)  # the actor waits the outage out (intake, then the routing step)
            await proxy.restore()
            bodies = await settle(api, token, wid, 2)
            assert bodies[0] == MENU and bodies[1].startswith("Suporte: escolha") and len(bodies) == 2
            ticket = await eventually(lambda: ticket_of(server, CUSTOMER), "the ticket")
            assert ticket["queue_id"] == support and ticket["chatbot"] is True


async def test_a_routing_step_that_crashes_its_actor_is_retried_and_sends_once(
        api: Api, server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        wid, _sales, support = await two_queues(api, server, token)
        sandbox = server.deps.sandbox
        assert sandbox is not None
        await sandbox.inbound(wid, sender=CUSTOMER, name="Ana", body="oi")
        assert await settle(api, token, wid, 1) == [MENU]
        real = routing.route_work
        crashes: list[int] = []

        def crash_once(*args: Any, **kwargs: Any) -> Any:
            work = real(*args, **kwargs)

            def flaky(conn: Any) -> Any:
                result = work(conn)  # the whole decision made and written ... then the actor dies before COMMIT
                if not crashes:
                    crashes.append(1)
                    raise RuntimeError("injected: the routing step crashed")
                return result
            return flaky

        monkeypatch.setattr(routing, "route_work", crash_once)
        await sandbox.inbound(wid, sender=CUSTOMER, name="Ana", body="2")
        bodies = await settle(api, token, wid, 2)
        assert crashes == [1]
        assert bodies == [MENU, bodies[1]] and bodies[1].startswith("Suporte: escolha")
        ticket = await ticket_of(server, CUSTOMER)
        assert ticket["queue_id"] == support
        # the message is stored once, the menu's answer once
        assert server.sql("SELECT count(*) FROM messages WHERE body = '2' AND NOT from_me") == [(1,)]
