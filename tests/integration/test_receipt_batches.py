"""Receipts in bulk (actors/receipts.py): the acks of chats that have no conversation running are written a
batch at a time, each id only for our message to its own chat's contact, announced, and settled only after
their commit; a live conversation's receipts still go to its actor; a database outage holds them, unsettled,
until it ends."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from gateway.whatsapp import transport as wa
from tests.faultproxy import FaultProxy
from tests.integration.conftest import Api, Server
from tests.integration.test_conversations import connected_sandbox, inbound, wait_sql
from tests.integration.test_db_outage import direct_sql, eventually, serve_through
from tests.integration.test_db_outage import proxy as proxy

TIMEOUT = 60
COMPANY = 1
A, B = "5511911110001", "5511922220002"


def jid(number: str) -> str:
    return f"{number}@s.whatsapp.net"


def sent_message(sql: Callable[[str], list[tuple[Any, ...]]], whatsapp_id: int, number: str, wid: str) -> None:
    """Our message to `number`, sent (ack 2), as a campaign leaves it: in a closed ticket no actor holds."""
    [(contact,)] = sql(f"INSERT INTO contacts (company_id, name, number) VALUES ({COMPANY}, 'c', '{number}') "
                       "ON CONFLICT (company_id, number) WHERE number <> '' DO UPDATE SET name = 'c' RETURNING id")
    [(ticket,)] = sql(f"INSERT INTO tickets (company_id, contact_id, whatsapp_id, status, is_group) "
                      f"VALUES ({COMPANY}, {contact}, {whatsapp_id}, 'closed', false) RETURNING id")
    sql(f"INSERT INTO messages (company_id, whatsapp_id, ticket_id, contact_id, wid, from_me, body, ack, status, read) "
        f"VALUES ({COMPANY}, {whatsapp_id}, {ticket}, {contact}, '{wid}', true, 'oferta', 2, 'sent', true) "
        "RETURNING id")


class Settles:
    """Receipts whose `settle` records, at the moment it is called, the acks then committed."""

    def __init__(self, sql: Callable[[str], list[tuple[Any, ...]]]) -> None:
        self.sql = sql
        self.seen: list[tuple[str, dict[str, int]]] = []

    def receipt(self, number: str, ids: tuple[str, ...], ack: wa.Ack) -> wa.Receipt:
        def settle() -> None:
            rows = self.sql("SELECT wid, ack FROM messages WHERE wid IN ('W0A', 'W0B') ORDER BY wid")
            self.seen.append((f"{number}:{','.join(ids)}:{int(ack)}", dict(rows)))
        return wa.Receipt(jid(number), ids, ack, dt.datetime.now(dt.UTC), settle=settle)


def acks_announced(events: Any) -> dict[str, int]:
    last: dict[str, int] = {}
    while (event := events.receive_nowait()) is not None:
        if event.name == f"company-{COMPANY}-appMessage" and event.payload["action"] == "update":
            last[event.payload["message"]["wid"]] = event.payload["message"]["ack"]
    return last


async def test_receipts_of_chats_without_a_conversation_are_written_in_bulk_for_their_own_chat(
        api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT), server.broker.subscribe(COMPANY) as events:
        token = await api.admin_token()
        whatsapp_id = await connected_sandbox(api, token)
        sent_message(server.sql, whatsapp_id, A, "W0A")
        sent_message(server.sql, whatsapp_id, B, "W0B")
        router = server.deps.tickets
        spawned = router.stats()["spawned"]
        settles = Settles(server.sql)
        # delivered and read for A; B's phone acks its own message and, falsely, A's
        for receipt in (settles.receipt(A, ("W0A",), wa.Ack.DELIVERED), settles.receipt(A, ("W0A",), wa.Ack.READ),
                        settles.receipt(B, ("W0B", "W0A"), wa.Ack.READ)):
            await router.inbound(COMPANY, whatsapp_id, receipt)
        await eventually(lambda: len(settles.seen) == 3, "the three receipts settled")

        assert dict(server.sql("SELECT wid, ack FROM messages WHERE wid IN ('W0A', 'W0B')")) == {"W0A": 4, "W0B": 4}
        # each settled after its ack was committed (in its batch: the first may be alone, the rest together)
        assert settles.seen[-1][1] == {"W0A": 4, "W0B": 4}
        assert all(acks["W0A"] >= 3 for _, acks in settles.seen)
        stats = router.stats()
        assert stats["receipts"]["receipts"] == 3 and 1 <= stats["receipts"]["batches"] <= 3
        assert stats["receipts"]["foreign"] == 1  # B's receipt for A's message
        assert stats["spawned"] == spawned  # no conversation started for a receipt
        assert acks_announced(events) == {"W0A": 4, "W0B": 4}

        # B's receipt did not touch A's message: A's played (5) comes only from A
        await router.inbound(COMPANY, whatsapp_id, settles.receipt(B, ("W0A",), wa.Ack.PLAYED))
        await eventually(lambda: len(settles.seen) == 4, "B's receipt settled")
        assert server.sql("SELECT ack FROM messages WHERE wid = 'W0A'") == [(4,)]

        # a conversation running: its receipts go to its actor (in order with what it does), not in bulk
        await inbound(api, token, whatsapp_id, **{"from": A, "body": "oi"})
        await wait_sql(server, "SELECT count(*) FROM messages WHERE NOT from_me", None, [(1,)])
        assert router.registry.has((whatsapp_id, jid(A)))
        await router.inbound(COMPANY, whatsapp_id, settles.receipt(A, ("W0A",), wa.Ack.PLAYED))
        await wait_sql(server, "SELECT ack FROM messages WHERE wid = 'W0A'", None, [(5,)])
        assert router.stats()["receipts"]["receipts"] == 4  # the batcher did not take it


@pytest.fixture
async def cut_server(nursery: trio.Nursery, proxy: FaultProxy, database_url: str,
                     tmp_path: Path) -> AsyncIterator[Server]:
    async for srv in serve_through(nursery, proxy, database_url, tmp_path, sandbox_qr_interval=0.2):
        yield srv


async def test_a_database_outage_holds_the_receipts_unsettled_until_it_ends(
        cut_server: Server, proxy: FaultProxy, database_url: str) -> None:
    server = cut_server

    def sql(query: str) -> list[tuple[Any, ...]]:
        return direct_sql(database_url, query)

    with trio.fail_after(TIMEOUT):
        import httpx
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            api = Api(client, server)
            token = await api.admin_token()
            whatsapp_id = await connected_sandbox(api, token)
        sent_message(sql, whatsapp_id, A, "W0A")
        settles = Settles(sql)
        router = server.deps.tickets
        await proxy.cut()
        await router.inbound(COMPANY, whatsapp_id, settles.receipt(A, ("W0A",), wa.Ack.READ))
        await eventually(lambda: router.stats()["receipts"]["dbWaits"] >= 1, "the batcher waiting for the database")
        await trio.sleep(0.5)
        assert settles.seen == []  # not written: not settled (the network would send it again)
        await proxy.restore()
        await eventually(lambda: settles.seen, "the receipt settled after the outage")
        assert settles.seen == [("5511911110001:W0A:4", {"W0A": 4})]
