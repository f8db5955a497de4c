"""The sandbox as WhatsApp's servers: what it accepted and what was sent outlive a restart of zapgate
(its journal in the data dir), and a network holding all it may answers 429."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import trio

from gateway.whatsapp import sandbox as sandbox_module
from tests.integration.conftest import Api, Server, auth, make_config, start_server
from tests.integration.test_conversations import connected_sandbox, inbound, wait_sql
from tests.integration.test_whatsapp import wait_status

TIMEOUT = 60


async def test_a_restarted_server_keeps_the_outbox_and_delivers_what_was_waiting(nursery: trio.Nursery,
                                                                                 database_url: str,
                                                                                 tmp_path: Path) -> None:
    config = make_config(tmp_path, database_url)
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as first_run:
            first = await start_server(first_run, config)
            async with httpx.AsyncClient(base_url=first.url, timeout=10) as client:
                api = Api(client, first)
                token = await api.admin_token()
                wid = await connected_sandbox(api, token)
                await inbound(api, token, wid, **{"from": "5511944440000", "body": "oi"})
                await wait_sql(first, "SELECT count(*) FROM messages", None, [(1,)])
                ticket_id = first.sql("SELECT id FROM tickets")[0][0]
                reply = await client.post(f"/messages/{ticket_id}", json={"body": "olá"}, headers=auth(token))
                assert reply.status_code == 201, reply.text
                await wait_sql(first, "SELECT count(*) FROM messages WHERE from_me AND status = 'sent'", None, [(1,)])
                # WhatsApp becomes very slow: what arrives now waits on its "server"...
                slow = await client.post(f"/sandbox/{wid}/fault", json={"kind": "latency", "seconds": 60},
                                         headers=auth(token))
                assert slow.status_code == 200
                waiting = await inbound(api, token, wid, **{"from": "5511944440000", "body": "enquanto lento"})
            first_run.cancel_scope.cancel()  # ...and zapgate stops before it arrived
        await first.db.aclose()

        second: Server = await start_server(nursery, config)
        async with httpx.AsyncClient(base_url=second.url, timeout=10) as client:
            api = Api(client, second)
            token = await api.admin_token()
            await wait_status(api, token, wid, lambda row: row["status"] == "CONNECTED", "CONNECTED")
            # every message once (one redelivered, the other delivered late), and the reply sent once
            await wait_sql(second, "SELECT body, wid FROM messages WHERE NOT from_me ORDER BY id", None,
                           [("oi", second.sql("SELECT wid FROM messages WHERE body = 'oi'")[0][0]),
                            ("enquanto lento", waiting)])
            outbox = (await client.get(f"/sandbox/{wid}/outbox", headers=auth(token))).json()
            assert [entry["body"] for entry in outbox] == ["olá"]
            # the network forgets each event once zapgate settled it (after its commit): drained soon after
            while True:
                state = (await client.get(f"/sandbox/{wid}", headers=auth(token))).json()
                assert state["journaled"]
                if state["queued"] == 0:
                    break
                await trio.sleep(0.05)
    await second.db.aclose()


async def test_a_network_holding_all_it_may_answers_429(api: Api, server: Server,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox_module, "QUEUE_MAX", 2)
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        wid = await connected_sandbox(api, token)
        await api.client.post(f"/sandbox/{wid}/fault", json={"kind": "latency", "seconds": 60}, headers=auth(token))
        for body in ("um", "dois"):  # held by the network: one on its way (slowly), one queued
            await inbound(api, token, wid, **{"from": "5511944440000", "body": body})
        full = await api.client.post(f"/sandbox/{wid}/inbound", json={"from": "5511944440000", "body": "três"},
                                     headers=auth(token))
        assert full.status_code == 429 and full.headers["Retry-After"] == "1"
        assert full.json()["error"] == "ERR_SANDBOX_QUEUE_FULL"
        state = (await api.client.get(f"/sandbox/{wid}", headers=auth(token))).json()
        assert state["pendingInbound"] == 2
