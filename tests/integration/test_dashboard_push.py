"""The dashboard push end to end: a committed ticket event reaches the company's admins' sockets as ticketz's
`counter` (not a plain user's, not another company's), a rolled-back one reaches nobody, and the listener
rides out a database outage (tests/faultproxy.py) and pushes again once the database is back."""

from __future__ import annotations

import psycopg
import trio

from actors.dashboard_push import DashboardPush
from tests.faultproxy import FaultProxy
from tests.integration.conftest import Api, Server
from tests.integration.socketio_client import polling_socket

TIMEOUT = 40


def insert_event(server: Server, company_id: int = 1, *, commit: bool = True) -> None:
    with psycopg.connect(server.database_url) as conn:
        wid = conn.execute("INSERT INTO whatsapps (company_id, name, channel) VALUES (%s, gen_random_uuid()::text, "
                           "'sandbox') RETURNING id", (company_id,)).fetchone()[0]
        contact = conn.execute("INSERT INTO contacts (company_id, name, number) VALUES (%s, 'x', "
                               "(random() * 1e12)::bigint::text) RETURNING id", (company_id,)).fetchone()[0]
        ticket = conn.execute("INSERT INTO tickets (company_id, contact_id, whatsapp_id) VALUES (%s, %s, %s) "
                              "RETURNING id", (company_id, contact, wid)).fetchone()[0]
        conn.execute("INSERT INTO ticket_events (company_id, ticket_id, kind) VALUES (%s, %s, 'created')",
                     (company_id, ticket))
        if not commit:
            conn.rollback()


async def test_a_committed_event_reaches_the_admins_only(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        admin = await api.admin_token()
        await api.create_user(admin, "plain@push.test")
        plain = await api.login("plain@push.test", "user-pass-1")
        root = await api.admin_token()
        other = await api.create_company(root, "Delta", "admin@delta.test")
        other_admin = await api.login("admin@delta.test", "company-pass-1")
        async with polling_socket(server.url, "/1", admin) as manager, \
                polling_socket(server.url, "/1", plain) as agent, \
                polling_socket(server.url, f"/{other['id']}", other_admin) as stranger:
            await trio.to_thread.run_sync(lambda: insert_event(server, commit=False))
            await trio.to_thread.run_sync(insert_event, server)
            event = await manager.wait_event("counter")
            assert event["companyId"] == 1 and event["serie"] == "tickets"
            await trio.sleep(1.5)  # anything else would have arrived by now (pushes are at most 1/s)
            assert len(manager.received("counter")) == 1  # the rolled-back event pushed nothing
            assert agent.received("counter") == [] and stranger.received("counter") == []
            await trio.to_thread.run_sync(insert_event, server, other["id"])
            await stranger.wait_event("counter")
            await trio.sleep(1.5)
            assert len(manager.received("counter")) == 1


async def test_the_listener_rides_out_a_database_outage(server: Server, nursery: trio.Nursery) -> None:
    with trio.fail_after(TIMEOUT):
        params = psycopg.conninfo.conninfo_to_dict(server.database_url)
        proxy = FaultProxy(str(params.get("host") or "127.0.0.1"), int(params.get("port") or 5432))
        port = await nursery.start(proxy.run)
        params.update(host="127.0.0.1", port=port)
        pushed: list[int] = []
        push = DashboardPush(psycopg.conninfo.make_conninfo(**params),
                             lambda company, name, payload: pushed.append(company), interval=0.2)
        async with trio.open_nursery() as inner:
            await inner.start(push.run)
            while proxy.open_connections == 0:
                await trio.sleep(0.05)
            await trio.to_thread.run_sync(insert_event, server)
            while pushed != [1]:
                await trio.sleep(0.05)
            await proxy.cut()
            await trio.sleep(1.5)  # the listener notices and retries against a closed port
            assert push.reconnects >= 1
            await proxy.restore()
            while proxy.open_connections == 0:
                await trio.sleep(0.05)
            await trio.sleep(0.3)  # LISTEN issued on the new connection
            await trio.to_thread.run_sync(insert_event, server)
            while pushed != [1, 1]:
                await trio.sleep(0.05)
            inner.cancel_scope.cancel()  # a cancel ends the actor (its thread's wait returns within WAIT)
