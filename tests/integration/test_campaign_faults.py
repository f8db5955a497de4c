"""A campaign under faults (issue 14): the database goes away mid-run and comes back; the campaign's
actor waits it out (claims, answers and settles retried with backoff), and every contact still gets the
message exactly once — counted from the sandbox outbox — and the campaign ends FINALIZADA."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from gateway.whatsapp.sandbox_state import SandboxError
from tests.faultproxy import FaultProxy
from tests.integration.conftest import Api, Server
from tests.integration.test_campaigns_run import campaign, nudge, numbers, outbox, recipients, settings
from tests.integration.test_conversations import connected_sandbox
from tests.integration.test_db_outage import direct_sql, eventually, serve_through
from tests.integration.test_db_outage import proxy as proxy

TIMEOUT = 90
CONTACTS = 120


@pytest.fixture
async def slow_cut_server(nursery: trio.Nursery, proxy: FaultProxy, database_url: str,
                          tmp_path: Path) -> AsyncIterator[Server]:
    # 50 ms a send on the simulated network: 120 sends take six seconds or more
    async for srv in serve_through(nursery, proxy, database_url, tmp_path, sandbox_qr_interval=0.2,
                                   sandbox_latency=0.05):
        yield srv


async def test_a_database_outage_mid_run_sends_each_contact_once(
        slow_cut_server: Server, proxy: FaultProxy, database_url: str) -> None:
    server = slow_cut_server

    def sent_count() -> int:
        return direct_sql(database_url, "SELECT count(*) FROM sandbox_outbox")[0][0]

    with trio.fail_after(TIMEOUT):
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            api = Api(client, server)
            token = await api.admin_token()
            wid = await connected_sandbox(api, token)
            await settings(server, pacing=False)
            contacts = numbers(CONTACTS)
            campaign_id = await campaign(server, wid, contacts)
            nudge(server, campaign_id)
            await eventually(lambda: sent_count() >= 20, "20 sends before the outage")
            await proxy.cut()
            before_cut = sent_count()
            await trio.sleep(2)
            await proxy.restore()
            assert before_cut < CONTACTS - 20  # cut mid-run
            await eventually(lambda: direct_sql(database_url, f"SELECT status FROM campaigns WHERE id = {campaign_id}")
                             == [("FINALIZADA",)], "FINALIZADA after the outage")
            assert direct_sql(database_url, "SELECT count(*) FROM campaign_shippings WHERE state = 'sent' "
                                            f"AND campaign_id = {campaign_id}") == [(CONTACTS,)]
            sent = await outbox(api, token, wid)
            assert recipients(sent) == sorted(contacts)  # each exactly once: one entry per number
            assert direct_sql(database_url, "SELECT count(*) FROM messages WHERE sent_by = 'campaign' "
                                            "AND status = 'sent'") == [(CONTACTS,)]


async def test_sends_whatsapp_refuses_for_a_transport_fault_are_sent_again(api: Api, server: Server) -> None:
    """The network refuses some sends without answering them (a transport fault, the session still up): the
    campaign sends them again under their ids after a pause, and finishes."""
    network = server.deps.sandbox
    assert network is not None
    accept = network._outbox.accept
    refusals = {"left": 3}

    async def flaky(*args: Any, **kwargs: Any) -> Any:
        if refusals["left"] > 0:
            refusals["left"] -= 1
            raise SandboxError("ERR_SANDBOX_STORE", "the network is away")
        return await accept(*args, **kwargs)

    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        wid = await connected_sandbox(api, token)
        await settings(server, pacing=False)
        contacts = numbers(30)
        campaign_id = await campaign(server, wid, contacts)
        network._outbox.accept = flaky  # type: ignore[method-assign]
        nudge(server, campaign_id)
        await eventually(lambda: server.sql(f"SELECT status FROM campaigns WHERE id = {campaign_id}")
                         == [("FINALIZADA",)], "FINALIZADA")
        assert refusals["left"] == 0
        assert recipients(await outbox(api, token, wid)) == sorted(contacts)
        assert server.sql(f"SELECT state, count(*) FROM campaign_shippings WHERE campaign_id = {campaign_id} "
                          "GROUP BY 1") == [("sent", 30)]
