"""A campaign under a database outage (issue 14): the database goes away mid-run and comes back; the campaign's
actor waits it out (claims, answers and settles retried with backoff), and every contact still gets the
message exactly once — counted from the sandbox outbox — and the campaign ends FINALIZADA."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import trio

from tests.faultproxy import FaultProxy
from tests.integration.conftest import Api, Server, make_config, start_server
from tests.integration.test_campaigns_run import campaign, nudge, numbers, outbox, recipients, settings
from tests.integration.test_conversations import connected_sandbox
from tests.integration.test_db_outage import direct_sql, eventually, through
from tests.integration.test_db_outage import proxy as proxy

TIMEOUT = 90
CONTACTS = 120


@pytest.fixture
async def slow_cut_server(nursery: trio.Nursery, proxy: FaultProxy, database_url: str,
                          tmp_path: Path) -> AsyncIterator[Server]:
    # 20 ms a send on the simulated network: 120 sends take a few seconds, time to cut the database mid-run
    srv = await start_server(nursery, make_config(tmp_path, through(proxy, database_url), sandbox_qr_interval=0.2,
                                                  sandbox_latency=0.02))
    yield srv
    nursery.cancel_scope.cancel()
    await srv.db.aclose()


async def test_a_database_outage_mid_run_sends_each_contact_once(
        slow_cut_server: Server, proxy: FaultProxy, database_url: str, caplog: pytest.LogCaptureFixture) -> None:
    server = slow_cut_server
    caplog.set_level(logging.WARNING, logger="zapgate.campaigns")

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
            assert before_cut < CONTACTS  # cut mid-run
            await eventually(lambda: direct_sql(database_url, f"SELECT status FROM campaigns WHERE id = {campaign_id}")
                             == [("FINALIZADA",)], "FINALIZADA after the outage")
            assert direct_sql(database_url, "SELECT count(*) FROM campaign_shippings WHERE state = 'sent' "
                                            f"AND campaign_id = {campaign_id}") == [(CONTACTS,)]
            sent = await outbox(api, token, wid)
            assert recipients(sent) == sorted(contacts)  # each exactly once: one entry per number
            # the actor met the outage (its statements waited, or WhatsApp's side refused sends it then retried)
            assert [record for record in caplog.records if record.name == "zapgate.campaigns"
                    and ("database" in record.getMessage() or "did not take" in record.getMessage())]
            assert direct_sql(database_url, "SELECT count(*) FROM messages WHERE sent_by = 'campaign' "
                                            "AND status = 'sent'") == [(CONTACTS,)]
