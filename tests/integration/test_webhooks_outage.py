"""The webhook delivery actor rides out a database outage (tests/faultproxy.py cuts the line): its claims
fail and are retried by the actor itself, never counted as crashes, and the delivery goes out once the
database answers again."""

from __future__ import annotations

import trio
from standardwebhooks import Webhook

from tests.faultproxy import FaultProxy
from tests.integration.conftest import Api, Server, auth
from tests.integration.test_db_outage import direct_sql, proxy, server  # noqa: F401 (fixtures)
from tests.webhook_receiver import Receiver

TIMEOUT = 60


async def test_a_delivery_due_during_a_database_outage_goes_out_after_it(
        server: Server, proxy: FaultProxy, api: Api, database_url: str, nursery: trio.Nursery) -> None:  # noqa: F811
    receiver = Receiver()  # not started: the first attempt fails and the delivery waits for its retry
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        made = await api.client.post("/webhooks", json={"url": receiver.url, "events": ["ticket.created"]},
                                     headers=auth(token))
        hook = made.json()
        assert (await api.client.post(f"/webhooks/{hook['id']}/test", headers=auth(token))).status_code == 202
        while direct_sql(database_url, "SELECT attempts FROM webhook_deliveries") != [(1,)]:
            await trio.sleep(0.05)
        dispatcher = server.deps.webhooks
        assert dispatcher is not None
        await proxy.cut()
        try:
            await receiver.start(nursery)
            errors = dispatcher.stats()["claimErrors"]
            while dispatcher.stats()["claimErrors"] < errors + 3:  # it tries, fails, waits, tries again
                await trio.sleep(0.1)
        finally:
            await proxy.restore()
        while direct_sql(database_url, "SELECT status FROM webhook_deliveries") != [("delivered",)]:
            await trio.sleep(0.1)
        assert server.deps.webhooks is dispatcher and dispatcher.stats()["delivered"] == 1
        ids = {request.headers["webhook-id"] for request in receiver.received}
        assert len(ids) == 1  # the same delivery, however often the outage made it post
        for request in receiver.received:
            assert Webhook(hook["secret"]).verify(request.body, request.headers)["type"] == "webhook.test"
        root = server.deps.health()["supervisors"]["root"]
        assert root["restarts_total"] == 0  # ridden out by the actor, not restarted by its supervisor
