"""Changes that arrive from WhatsApp touch only their own chat: another contact's edit, revoke, reaction or
receipt for a message is ignored (row unchanged, nothing announced, one log line); the original sender's
works. Driven through the sandbox network (the contacts' phones) and, for what the sandbox cannot make
(our other device, a receipt from the wrong chat), through the sessions' inbound sink."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import pytest
import trio

from gateway.broker import Subscription
from gateway.whatsapp import transport as wa
from tests.integration.conftest import Api, Server, auth
from tests.integration.test_conversations import connected_sandbox, inbound, wait_sql

TIMEOUT = 30
COMPANY = 1
OUR_NUMBER = "5511900001111"
A, B = "5511911110001", "5511922220002"


def jid(number: str) -> str:
    return f"{number}@s.whatsapp.net"


def state(server: Server, wid: str) -> tuple[Any, ...]:
    """Everything a change could touch on a message (updated_at included: an ignored change writes nothing)."""
    rows = server.sql("SELECT body, reaction, is_edited, is_deleted, edit_history::text, ack, updated_at "
                      "FROM messages WHERE wid = %s", (wid,))
    assert len(rows) == 1, rows
    return rows[0]


def updates_of(events: Subscription, wids: set[str]) -> list[dict[str, Any]]:
    """The appMessage updates announced so far for messages among `wids` (drains the subscription)."""
    seen = []
    while (event := events.receive_nowait()) is not None:
        if event.name == f"company-{COMPANY}-appMessage" and event.payload["action"] == "update" \
                and event.payload["message"]["wid"] in wids:
            seen.append(event.payload["message"])
    return seen


def ignored_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    lines = [record for record in caplog.records if record.name == "zapgate.ticket" and "ignored" in record.msg]
    assert all(record.levelno == logging.INFO for record in lines)
    return [record.fields for record in lines]  # type: ignore[attr-defined]


async def write(api: Api, server: Server, token: str, wid: int, number: str, body: str, **extra: Any) -> str:
    """`number` writes `body` (in a group with `group=`); its WhatsApp id, once stored."""
    message_id = await inbound(api, token, wid, **{"from": number, "body": body, **extra})
    await wait_sql(server, "SELECT count(*) FROM messages WHERE wid = %s", (message_id,), [(1,)])
    return message_id


async def agent_sends(api: Api, server: Server, token: str, ticket_id: int, body: str) -> str:
    sent = await api.client.post(f"/messages/{ticket_id}", json={"body": body}, headers=auth(token))
    assert sent.status_code == 201, sent.text
    await wait_sql(server, "SELECT status FROM messages WHERE id = %s", (sent.json()["id"],), [("sent",)])
    return server.sql("SELECT wid FROM messages WHERE id = %s", (sent.json()["id"],))[0][0]


def ticket_of(server: Server, number: str) -> int:
    return server.sql("SELECT t.id FROM tickets t JOIN contacts c ON c.id = t.contact_id WHERE c.number = %s",
                      (number,))[0][0]


async def test_another_contact_cannot_edit_revoke_react_or_ack_a_message(
        api: Api, server: Server, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="zapgate.ticket")
    with trio.fail_after(TIMEOUT), server.broker.subscribe(COMPANY) as events:
        token = await api.admin_token()
        wid = await connected_sandbox(api, token, OUR_NUMBER)
        from_a = await write(api, server, token, wid, A, "A: meu pedido")
        await write(api, server, token, wid, B, "B: oi")
        to_a = await agent_sends(api, server, token, ticket_of(server, A), "PIX: chave-da-loja")
        # the sandbox's phone acknowledges: delivered, then read (4)
        await wait_sql(server, "SELECT ack FROM messages WHERE wid = %s", (to_a,), [(4,)])
        targets = {from_a, to_a}
        before = {target: state(server, target) for target in targets}
        updates_of(events, targets)

        # B, with a modified client, acts on A's message and on the agent's message to A
        for target in (from_a, to_a):
            await inbound(api, token, wid, **{"from": B, "edit": {"targetId": target, "body": "PIX: chave-do-golpe"}})
            await inbound(api, token, wid, **{"from": B, "reaction": {"targetId": target, "emoji": "😈"}})
            await inbound(api, token, wid, **{"from": B, "revoke": {"targetId": target}})
        # ... and sends receipts for them from its own chat (the sandbox's phones only ack what was sent to them)
        now = dt.datetime.now(dt.UTC)
        await server.deps.tickets.inbound(COMPANY, wid, wa.Receipt(jid(B), (to_a, from_a), wa.Ack.PLAYED, now))
        # A's receipt for A's own message: not one of ours
        await server.deps.tickets.inbound(COMPANY, wid, wa.Receipt(jid(A), (from_a,), wa.Ack.PLAYED, now))
        # each chat handles its events in order: once these are stored, everything above was handled
        await write(api, server, token, wid, B, "B: sync")
        await write(api, server, token, wid, A, "A: sync")

        assert {target: state(server, target) for target in targets} == before
        assert updates_of(events, targets) == []
        lines = ignored_lines(caplog)
        assert len(lines) == 8, lines  # six changes, two receipts: one line each
        assert all(line["whatsapp_id"] == wid for line in lines)
        assert sorted(line["chat"] for line in lines) == [jid(A)] + [jid(B)] * 7
        assert sorted(line["target"] for line in lines if line["chat"] == jid(B) and "kind" in line) == \
            sorted([from_a] * 3 + [to_a] * 3)
        assert {line["target"] for line in lines if "kind" not in line} == {f"{to_a},{from_a}", from_a}

        # the original senders: A edits, reacts to and deletes what A may; the receipt of A's phone applies
        await inbound(api, token, wid, **{"from": A, "edit": {"targetId": from_a, "body": "A: meu pedido (2)"}})
        await inbound(api, token, wid, **{"from": A, "reaction": {"targetId": to_a, "emoji": "👍"}})
        await inbound(api, token, wid, **{"from": A, "edit": {"targetId": to_a, "body": "PIX: outra"}})  # not A's
        await inbound(api, token, wid, **{"from": A, "revoke": {"targetId": from_a}})
        await server.deps.sandbox.ack(wid, to_a, "played")
        await wait_sql(server, "SELECT body, is_edited, is_deleted FROM messages WHERE wid = %s", (from_a,),
                       [("A: meu pedido (2)", True, True)])
        await wait_sql(server, "SELECT body, reaction, ack, is_edited FROM messages WHERE wid = %s", (to_a,),
                       [("PIX: chave-da-loja", "👍", 5, False)])
        await write(api, server, token, wid, A, "A: sync 2")
        seen = updates_of(events, targets)
        assert [(m["wid"], m["body"], m["isEdited"], m["isDeleted"]) for m in seen if m["wid"] == from_a] == [
            (from_a, "A: meu pedido (2)", True, False), (from_a, "A: meu pedido (2)", True, True)]
        assert [(m["reaction"], m["ack"]) for m in seen if m["wid"] == to_a] == [("👍", 4), ("👍", 5)]
        assert [line["target"] for line in ignored_lines(caplog)[8:]] == [to_a]  # A's edit of the agent's


async def test_in_a_group_only_the_participant_who_wrote_edits_or_deletes(
        api: Api, server: Server, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="zapgate.ticket")
    with trio.fail_after(TIMEOUT), server.broker.subscribe(COMPANY) as events:
        token = await api.admin_token()
        wid = await connected_sandbox(api, token, OUR_NUMBER)
        changed = await api.client.put("/settings/CheckMsgIsGroup", json={"value": "disabled"}, headers=auth(token))
        assert changed.status_code == 200
        server.deps.tickets._group_policy.clear()  # the setting is cached a few seconds
        group = {"id": "120363000000000077@g.us", "name": "Compras"}
        first = await write(api, server, token, wid, A, "A no grupo", group=group)
        await write(api, server, token, wid, B, "B no grupo", group=group)
        before = state(server, first)
        updates_of(events, {first})

        await inbound(api, token, wid, **{"from": B, "group": group, "edit": {"targetId": first, "body": "B mudou"}})
        await inbound(api, token, wid, **{"from": B, "group": group, "revoke": {"targetId": first}})
        await write(api, server, token, wid, B, "B: sync", group=group)
        assert state(server, first) == before and updates_of(events, {first}) == []
        assert [(line["chat"], line["target"], line["kind"]) for line in ignored_lines(caplog)] == [
            (group["id"], first, "edit"), (group["id"], first, "revoke")]

        # a reaction is anyone's in the chat; the edit and the deletion are the writer's
        await inbound(api, token, wid, **{"from": B, "group": group, "reaction": {"targetId": first, "emoji": "🎉"}})
        await inbound(api, token, wid, **{"from": A, "group": group, "edit": {"targetId": first, "body": "A mudou"}})
        await inbound(api, token, wid, **{"from": A, "group": group, "revoke": {"targetId": first}})
        await wait_sql(server, "SELECT body, reaction, is_edited, is_deleted FROM messages WHERE wid = %s", (first,),
                       [("A mudou", "🎉", True, True)])
        assert len(ignored_lines(caplog)) == 2


async def test_our_other_device_changes_only_our_messages(
        api: Api, server: Server, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="zapgate.ticket")
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        wid = await connected_sandbox(api, token, OUR_NUMBER)
        from_a = await write(api, server, token, wid, A, "A: original")
        ours = await agent_sends(api, server, token, ticket_of(server, A), "nosso texto")
        before = state(server, from_a)

        def from_our_phone(kind: wa.MessageKind, target: str, body: str = "") -> wa.InboundMessage:
            return wa.InboundMessage(id=wa.new_message_id(), chat=jid(A), sender=jid(OUR_NUMBER), kind=kind,
                                     timestamp=dt.datetime.now(dt.UTC), from_me=True, body=body, target_id=target)

        await server.deps.tickets.inbound(COMPANY, wid, from_our_phone(wa.MessageKind.EDIT, from_a, "reescrito"))
        await server.deps.tickets.inbound(COMPANY, wid, from_our_phone(wa.MessageKind.REVOKE, from_a))
        await server.deps.tickets.inbound(COMPANY, wid, from_our_phone(wa.MessageKind.EDIT, ours, "corrigido"))
        await wait_sql(server, "SELECT body, is_edited FROM messages WHERE wid = %s", (ours,), [("corrigido", True)])
        assert state(server, from_a) == before
        assert [(line["target"], line["kind"], line["from_me"]) for line in ignored_lines(caplog)] == [
            (from_a, "edit", True), (from_a, "revoke", True)]
