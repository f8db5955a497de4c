"""The sandbox's outbox in PostgreSQL (table sandbox_outbox): one row per message id, a repeated id counted
as a duplicate and never a second message, a failed send replaced by its retry, what edits, revokes and
reactions do to their message, acks that only go up, the listing the API gives tests to count sends with,
and rows that go with their connection."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from gateway.whatsapp import sandbox_outbox
from gateway.whatsapp.sandbox_outbox import DatabaseOutbox, TargetChange
from tests.integration.conftest import Api, Server, auth
from tests.integration.test_conversations import connected_sandbox, inbound, wait_sql
from tests.integration.test_whatsapp import create_sandbox

TIMEOUT = 60
TO = "5511944440000@s.whatsapp.net"


def entry(message_id: str, body: str | None = "olá", *, kind: str = "chat", ack: str = "sent",
          error: str | None = None, target_id: str | None = None, emoji: str | None = None,
          second: int = 5) -> dict[str, Any]:
    return {"id": message_id, "to": TO, "kind": kind, "body": body, "caption": None, "filename": None,
            "mimetype": None, "size": None, "quotedId": None, "ack": ack, "error": error,
            "timestamp": f"2026-03-01T12:00:{second:02d}+00:00", "target_id": target_id, "emoji": emoji}


def counts(server: Server) -> list[tuple[Any, ...]]:
    return server.sql("SELECT message_id, ack, attempts, duplicates FROM sandbox_outbox ORDER BY seq")


async def test_one_row_per_message_id_with_its_repeats_counted(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        wid = (await create_sandbox(api, token))["id"]
        store = DatabaseOutbox(server.db)

        assert await store.accept(wid, entry("3EB0A")) is None
        first = await store.accept(wid, entry("3EB0A", "olá de novo", second=9))
        assert first is not None and (first["body"], first["timestamp"]) == ("olá", "2026-03-01T12:00:05+00:00")
        assert (first["attempts"], first["duplicates"]) == (2, 1)
        # a send WhatsApp refused is kept as failed; its retry under the id replaces it (last), not a duplicate
        await store.accept(wid, entry("3EB0F", ack="failed", error="rate-overlimit"))
        await store.accept(wid, entry("3EB0B", "outra"))
        assert await store.accept(wid, entry("3EB0F", "de novo")) is None
        assert counts(server) == [("3EB0A", "sent", 2, 1), ("3EB0B", "sent", 1, 0), ("3EB0F", "sent", 2, 0)]

        # what an edit, a reaction and a revoke do to their message (and nothing to one never sent)
        await store.accept(wid, entry("3EB0E", "olá!", kind="edit", target_id="3EB0A"),
                           target=TargetChange("3EB0A", edit=True, body="olá!"))
        await store.accept(wid, entry("3EB0R", None, kind="reaction", target_id="3EB0B", emoji="👍"),
                           target=TargetChange("3EB0B", react=True, reaction="👍"))
        await store.accept(wid, entry("3EB0D", None, kind="revoke", target_id="3EB0B"),
                           target=TargetChange("3EB0B", revoke=True))
        await store.accept(wid, entry("3EB0X", None, kind="revoke", target_id="3EB0NONE"),
                           target=TargetChange("3EB0NONE", revoke=True))
        listed = {e["id"]: e for e in await store.entries(wid)}
        assert (listed["3EB0A"]["body"], listed["3EB0A"]["edited"]) == ("olá!", True)
        assert (listed["3EB0B"]["reaction"], listed["3EB0B"]["deleted"]) == ("👍", True)
        assert listed["3EB0R"]["emoji"] == "👍" and listed["3EB0E"]["target_id"] == "3EB0A"

        # acks only go up, never on a failed send; receipts are still due for what is not read
        await store.accept(wid, entry("3EB0FAILED", ack="failed", error="no"))
        await store.raise_acks(wid, {"3EB0A": "read", "3EB0B": "delivered", "3EB0FAILED": "read"})
        await store.raise_acks(wid, {"3EB0A": "delivered"})
        known = await store.acks(wid, ["3EB0A", "3EB0B", "3EB0FAILED", "3EB0NONE"])
        assert {mid: (r.ack, r.to) for mid, r in known.items()} == {
            "3EB0A": ("read", TO), "3EB0B": ("delivered", TO), "3EB0FAILED": ("failed", TO)}
        assert await store.awaiting_receipts(wid, 100) == ["3EB0B", "3EB0F"]
        assert await store.count(wid) == 8

        # the API lists them (what tests count sends with), one message id at a time too
        listing = await api.client.get(f"/sandbox/{wid}/outbox", headers=auth(token))
        assert [(e["id"], e["attempts"], e["duplicates"]) for e in listing.json()][:3] == [
            ("3EB0A", 2, 1), ("3EB0B", 1, 0), ("3EB0F", 2, 0)]
        one = await api.client.get(f"/sandbox/{wid}/outbox", params={"messageId": "3EB0A"}, headers=auth(token))
        assert [(e["id"], e["body"], e["duplicates"]) for e in one.json()] == [("3EB0A", "olá!", 1)]
        none = await api.client.get(f"/sandbox/{wid}/outbox", params={"messageId": "3EB0NONE"}, headers=auth(token))
        assert none.status_code == 200 and none.json() == []
        bad = await api.client.get(f"/sandbox/{wid}/outbox", params={"messageId": "no spaces"}, headers=auth(token))
        assert bad.status_code == 400 and bad.json()["error"] == "ERR_VALIDATION" and bad.json()["field"] == "messageId"
        state = await api.client.get(f"/sandbox/{wid}", headers=auth(token))
        assert state.json()["sent"] == 8 and state.json()["outboxKept"]

        # the rows go with their connection
        deleted = await api.client.delete(f"/whatsapp/{wid}", headers=auth(token))
        assert deleted.status_code == 200, deleted.text
        assert counts(server) == []


async def test_another_companys_connection_shows_no_outbox(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        wid = (await create_sandbox(api, token))["id"]
        await DatabaseOutbox(server.db).accept(wid, entry("3EB0MINE"))
        other = await api.create_company(token, "Outra", "outra@zapgate.test", "outra-pass-1")
        other_token = await api.login("outra@zapgate.test", "outra-pass-1")
        assert other["id"] != server.sql("SELECT company_id FROM whatsapps WHERE id = %s", (wid,))[0][0]
        response = await api.client.get(f"/sandbox/{wid}/outbox", headers=auth(other_token))
        assert response.status_code == 404 and "3EB0MINE" not in response.text


async def test_each_connection_keeps_its_newest_messages(api: Api, server: Server,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox_outbox, "OUTBOX_MAX", 3)
    monkeypatch.setattr(sandbox_outbox, "PRUNE_EVERY", 2)
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        wid = (await create_sandbox(api, token))["id"]
        other = (await create_sandbox(api, token, name="Sandbox 2"))["id"]
        store = DatabaseOutbox(server.db)
        await store.accept(other, entry("3EB0OTHER"))
        for n in range(7):
            await store.accept(wid, entry(f"3EB0{n}"))
        assert [e["id"] for e in await store.entries(wid)] == ["3EB04", "3EB05", "3EB06"]
        kept = server.sql("SELECT count(*) FROM sandbox_outbox WHERE connection_id = %s", (wid,))[0][0]
        assert 3 <= kept <= 3 + 2  # trimmed every PRUNE_EVERY sends
        assert [e["id"] for e in await store.entries(other)] == ["3EB0OTHER"]  # another connection's: untouched


async def test_an_old_journals_outbox_moves_in_once_and_skips_connections_that_are_gone(api: Api,
                                                                                       server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        wid = (await create_sandbox(api, token))["id"]
        store = DatabaseOutbox(server.db)
        old = {**entry("3EB0OLD", ack="read"), "reaction": "❤️", "deleted": False, "edited": True}
        await store.restore(wid, [old])
        await store.restore(wid, [{**old, "body": "outro"}])  # held already: skipped
        await store.restore(wid + 1000, [old])  # no such connection: skipped
        assert await store.entries(wid) == [{**old, "attempts": 1, "duplicates": 0}]
        assert counts(server) == [("3EB0OLD", "read", 1, 0)]


async def test_a_reply_is_in_the_outbox_once_with_its_receipts(api: Api, server: Server) -> None:
    """Through zapgate: the reply's row is committed with the id zapgate chose, and its acks follow."""
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        wid = await connected_sandbox(api, token)
        await inbound(api, token, wid, **{"from": "5511944440000", "body": "oi"})
        await wait_sql(server, "SELECT count(*) FROM messages", None, [(1,)])
        ticket_id = server.sql("SELECT id FROM tickets")[0][0]
        reply = await api.client.post(f"/messages/{ticket_id}", json={"body": "olá"}, headers=auth(token))
        assert reply.status_code == 201, reply.text
        await wait_sql(server, "SELECT count(*) FROM messages WHERE from_me AND status = 'sent'", None, [(1,)])
        message_wid = server.sql("SELECT wid FROM messages WHERE from_me")[0][0]
        await wait_sql(server, "SELECT message_id, body, ack, attempts, duplicates FROM sandbox_outbox", None,
                       [(message_wid, "olá", "read", 1, 0)])
