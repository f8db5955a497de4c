"""A scheduled message that comes due while the database is away (tests/faultproxy.py cuts it) is sent once
the database answers again — once, not per retry."""

from __future__ import annotations

import datetime as dt

import trio

from tests.faultproxy import FaultProxy
from tests.integration.conftest import Api, Server, auth
from tests.integration.test_conversations import connected_sandbox
from tests.integration.test_db_outage import direct_sql, proxy, server  # noqa: F401 (fixtures)
from tests.integration.test_schedules import new_contact, new_schedule, outbox, show

TIMEOUT = 60


async def test_due_during_a_database_outage_is_sent_once_after_it(server: Server, proxy: FaultProxy,  # noqa: F811
                                                                   api: Api, database_url: str) -> None:
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        wid = await connected_sandbox(api, token)
        contact = await new_contact(api, token)
        due = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2)
        made = await new_schedule(api, token, body="Enviada depois da queda", contactId=contact["id"],
                                  sendAt=due.isoformat())
        await proxy.cut()
        try:
            await trio.sleep(4)  # it comes due while the database is away
            assert direct_sql(database_url, "SELECT count(*) FROM messages WHERE sent_by = 'schedule'") == [(0,)]
        finally:
            await proxy.restore()
        while (await show(api, token, made["id"]))["status"] != "ENVIADA":
            await trio.sleep(0.1)
        while not await outbox(api, token, wid):
            await trio.sleep(0.1)
        await trio.sleep(1.5)  # a second send would be here by now
        got = await outbox(api, token, wid)
        assert [(item["body"], item["attempts"], item["duplicates"]) for item in got] == [
            ("Enviada depois da queda", 1, 0)]
        assert direct_sql(database_url, "SELECT status, sent_count FROM schedules") == [("ENVIADA", 1)]
        assert direct_sql(database_url, "SELECT state FROM timers WHERE kind = 'schedule'") == [("done",)]
        # (the API answered through the outage's end: the token still works)
        assert (await api.client.get("/schedules", headers=auth(token))).status_code == 200
