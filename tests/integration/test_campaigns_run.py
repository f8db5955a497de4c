"""Campaigns run (issue 14, the core): on the real app and the sandbox. Campaigns are made by SQL here (the
API is built beside this); the supervisor is nudged as the API does after its commits. What contacts got is
counted from the sandbox outbox."""

from __future__ import annotations

import json
from typing import Any

import trio

from storage import campaign_runs as rows
from tests.integration.conftest import Api, Server, auth
from tests.integration.test_conversations import connected_sandbox

TIMEOUT = 60
PROGRESS_SETTLE = 0.6  # the last progress event is published off the actor's path
COMPANY = 1


def numbers(count: int, start: int = 0) -> list[str]:
    return [f"55119{start + index:08d}" for index in range(count)]


async def sql(server: Server, query: str, params: Any = None) -> list[tuple[Any, ...]]:
    return await trio.to_thread.run_sync(server.sql, query, params)


async def settings(server: Server, **values: Any) -> None:
    for key, value in values.items():
        await sql(server, "INSERT INTO campaign_settings (company_id, key, value) VALUES (%s, %s, %s) "
                          "ON CONFLICT (company_id, key) DO UPDATE SET value = EXCLUDED.value",
                  (COMPANY, key, json.dumps(value)))


async def campaign(server: Server, wid: int, contacts: list[str], *, status: str = "EM_ANDAMENTO",
                   messages: tuple[str, ...] = ("Oi {{firstname}}, promo A", "Olá {{name}}, promo B"),
                   name: str = "Promo") -> int:
    [(list_id,)] = await sql(server, "INSERT INTO contact_lists (company_id, name) VALUES (%s, %s) RETURNING id",
                             (COMPANY, f"list {name}"))
    for index, number in enumerate(contacts):
        await sql(server, "INSERT INTO contact_list_items (company_id, contact_list_id, name, number) "
                          "VALUES (%s, %s, %s, %s)", (COMPANY, list_id, f"Cliente {index} Silva", number))
    fields = {f"message{index}": text for index, text in enumerate(messages, 1)}
    names = ", ".join(fields)
    [(campaign_id,)] = await sql(
        server, f"INSERT INTO campaigns (company_id, name, status, whatsapp_id, contact_list_id, {names}) "
                f"VALUES (%s, %s, %s, %s, %s, {', '.join(['%s'] * len(fields))}) RETURNING id",
        (COMPANY, name, status, wid, list_id, *fields.values()))
    return campaign_id


def nudge(server: Server, campaign_id: int) -> None:
    assert server.deps.campaigns is not None
    server.deps.campaigns.nudge(COMPANY, campaign_id)


async def outbox(api: Api, token: str, wid: int) -> list[dict[str, Any]]:
    response = await api.client.get(f"/sandbox/{wid}/outbox", headers=auth(token))
    assert response.status_code == 200, response.text
    return response.json()


async def status_of(server: Server, campaign_id: int) -> tuple[Any, ...]:
    [row] = await sql(server, "SELECT status, paused_at IS NOT NULL, pause_reason FROM campaigns WHERE id = %s",
                      (campaign_id,))
    return row


async def wait_for(check: Any, pause: float = 0.05) -> Any:
    while True:
        found = await check()
        if found:
            return found
        await trio.sleep(pause)


async def states(server: Server, campaign_id: int) -> dict[str, int]:
    found = await sql(server, "SELECT state, count(*) FROM campaign_shippings WHERE campaign_id = %s GROUP BY 1",
                      (campaign_id,))
    return dict(found)


async def db_write(server: Server, work: Any) -> Any:
    return await server.db.run(work)


def recipients(entries: list[dict[str, Any]]) -> list[str]:
    """Who WhatsApp took a message for (a send it refused is kept as failed until its retry replaces it)."""
    return sorted(entry["to"].split("@")[0] for entry in entries if entry["ack"] != "failed")


async def test_twenty_contacts_each_once_rotated_rendered_opt_out_skipped(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT), server.broker.subscribe(COMPANY) as events:
        token = await api.admin_token()
        wid = await connected_sandbox(api, token)
        await settings(server, pacing=False, variables=[{"key": "loja", "value": "Centro"}])
        contacts = numbers(21)
        await sql(server, "INSERT INTO campaign_opt_outs (company_id, number) VALUES (%s, %s)", (COMPANY, contacts[20]))
        campaign_id = await campaign(server, wid, contacts,
                                     messages=("Oi {{firstname}}, loja {loja}", "Olá {{name}}, loja {loja}"))
        nudge(server, campaign_id)
        await wait_for(lambda: _is(server, campaign_id, "FINALIZADA"))
        sent = await outbox(api, token, wid)
        assert recipients(sent) == sorted(contacts[:20])
        assert all(entry["attempts"] == 1 and entry["duplicates"] == 0 for entry in sent)
        bodies = {entry["to"].split("@")[0]: entry["body"] for entry in sent}
        assert bodies[contacts[0]] == "Oi Cliente, loja Centro"  # variant 1 for the 1st, 2 for the 2nd, ...
        assert bodies[contacts[1]] == "Olá Cliente 1 Silva, loja Centro"
        assert bodies[contacts[2]].startswith("Oi ")
        # their tickets (made closed, for the contacts' history) are not conversations: no ticket event, so a
        # manager's dashboard does not count 20 tickets created and resolved
        assert await sql(server, "SELECT count(*) FROM tickets") == [(20,)]
        assert await sql(server, "SELECT count(*) FROM ticket_events") == [(0,)]
        await trio.sleep(PROGRESS_SETTLE)
        assert await states(server, campaign_id) == {"sent": 20, "skipped": 1}
        assert await sql(server, "SELECT error FROM campaign_shippings WHERE number = %s", (contacts[20],)) == \
            [("opted out",)]
        # each in the contact's (closed) ticket, sent by the campaign, under the derived id
        found = await sql(server, "SELECT m.wid, m.sent_by, t.status, s.number FROM campaign_shippings s "
                                  "JOIN messages m ON m.id = s.message_id JOIN tickets t ON t.id = m.ticket_id "
                                  "WHERE s.campaign_id = %s", (campaign_id,))
        assert len(found) == 20
        assert {(sent_by, status) for _, sent_by, status, _ in found} == {("campaign", "closed")}
        assert all(wid_ == rows.wid_of(campaign_id, number) for wid_, _, _, number in found)
        seen = []
        while (event := events.receive_nowait()) is not None:
            if event.name == f"company-{COMPANY}-campaign":
                seen.append(event.payload)
        assert [e["record"]["status"] for e in seen if e["action"] == "update"][-1] == "FINALIZADA"
        progress = [e for e in seen if e["action"] == "progress"]
        assert progress and progress[-1]["counts"]["sent"] == 20 and progress[-1]["counts"]["total"] == 21


async def _is(server: Server, campaign_id: int, status: str) -> bool:
    return (await status_of(server, campaign_id))[0] == status


async def test_pause_resume_then_cancel_stops_sends(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        wid = await connected_sandbox(api, token)
        await settings(server, messageInterval=0.1, longerIntervalAfter=0, intervalJitter=0)
        contacts = numbers(20)
        campaign_id = await campaign(server, wid, contacts)
        nudge(server, campaign_id)
        await wait_for(lambda: _count_at_least(api, token, wid, 3))
        await sql(server, "UPDATE campaigns SET paused_at = now(), pause_reason = 'by a user' WHERE id = %s",
                  (campaign_id,))
        nudge(server, campaign_id)
        await trio.sleep(0.5)  # a send claimed before the pause committed lands
        paused_at = len(await outbox(api, token, wid))
        await trio.sleep(1.5)
        assert len(await outbox(api, token, wid)) == paused_at < 20
        assert (await status_of(server, campaign_id))[:2] == ("EM_ANDAMENTO", True)
        await sql(server, "UPDATE campaigns SET paused_at = NULL, pause_reason = NULL WHERE id = %s", (campaign_id,))
        nudge(server, campaign_id)
        await wait_for(lambda: _count_at_least(api, token, wid, paused_at + 3))
        cancelled = await api.client.post(f"/campaigns/{campaign_id}/cancel", headers=auth(token))
        assert cancelled.status_code == 204, cancelled.text
        after_cancel = len(await outbox(api, token, wid))  # at the answer: nothing may leave after it
        await trio.sleep(10)
        sent = await outbox(api, token, wid)
        assert len(sent) == after_cancel < 20
        assert len(set(recipients(sent))) == len(sent)
        assert (await status_of(server, campaign_id))[0] == "CANCELADA"
        counted = await states(server, campaign_id)
        assert counted.get("queued", 0) == 0 and counted.get("skipped", 0) >= 20 - after_cancel - 1


async def _count_at_least(api: Api, token: str, wid: int, count: int) -> bool:
    return len(await outbox(api, token, wid)) >= count


async def test_send_failures_trip_the_breaker_and_restart_sends_only_the_unreached(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT), server.broker.subscribe(COMPANY) as events:
        token = await api.admin_token()
        wid = await connected_sandbox(api, token)
        await settings(server, messageInterval=0.05, longerIntervalAfter=0, intervalJitter=0, breakerFailures=3)
        fault = await api.client.post(f"/sandbox/{wid}/fault", json={"kind": "send_failure", "count": 3},
                                      headers=auth(token))
        assert fault.status_code == 200, fault.text
        contacts = numbers(10)
        campaign_id = await campaign(server, wid, contacts)
        nudge(server, campaign_id)
        paused = await wait_for(lambda: _paused(server, campaign_id))
        assert paused[2].startswith("circuit breaker: 3 sends failed in a row")
        await trio.sleep(0.5)
        counted = await states(server, campaign_id)
        assert counted["failed"] == 3
        reached = {entry["to"] for entry in await outbox(api, token, wid)}
        breaker = []
        while (event := events.receive_nowait()) is not None:
            if event.name == f"company-{COMPANY}-campaign" and event.payload["action"] == "breaker":
                breaker.append(event.payload)
        assert breaker and breaker[0]["campaignId"] == campaign_id
        # restart: the failed ones queued again, the campaign runs to the end; nobody gets it twice
        await db_write(server, lambda conn: rows.restart(conn, COMPANY, campaign_id))
        nudge(server, campaign_id)
        await wait_for(lambda: _is(server, campaign_id, "FINALIZADA"))
        sent = await outbox(api, token, wid)
        assert recipients(sent) == sorted(contacts)
        assert all(entry["duplicates"] == 0 for entry in sent)
        assert reached <= {entry["to"] for entry in sent}
        assert await states(server, campaign_id) == {"sent": 10}


async def _paused(server: Server, campaign_id: int) -> tuple[Any, ...] | None:
    found = await status_of(server, campaign_id)
    return found if found[1] else None


async def test_a_disconnect_pauses_and_the_reconnect_resumes(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT), server.broker.subscribe(COMPANY) as events:
        token = await api.admin_token()
        wid = await connected_sandbox(api, token)
        await settings(server, messageInterval=0.1, longerIntervalAfter=0, intervalJitter=0)
        contacts = numbers(20)
        campaign_id = await campaign(server, wid, contacts)
        nudge(server, campaign_id)
        await wait_for(lambda: _count_at_least(api, token, wid, 3))
        fault = await api.client.post(f"/sandbox/{wid}/fault", json={"kind": "disconnect"}, headers=auth(token))
        assert fault.status_code == 200, fault.text
        await wait_for(lambda: _is(server, campaign_id, "FINALIZADA"))
        sent = await outbox(api, token, wid)
        assert recipients(sent) == sorted(contacts)
        reasons = []
        while (event := events.receive_nowait()) is not None:
            if event.name == f"company-{COMPANY}-campaign" and event.payload["action"] == "update":
                reasons.append(event.payload["record"]["pauseReason"])
        assert rows.CONNECTION_DOWN in reasons  # paused while down ...
        assert reasons[-1] is None  # ... and resumed, then finished
        assert server.deps.campaigns is not None and server.deps.campaigns.stats()["resumes"] >= 1


async def test_a_scheduled_campaign_starts_at_its_time(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        wid = await connected_sandbox(api, token)
        await settings(server, pacing=False)
        campaign_id = await campaign(server, wid, numbers(3), status="PROGRAMADA")
        await sql(server, "UPDATE campaigns SET scheduled_at = now() + interval '1 second' WHERE id = %s",
                  (campaign_id,))
        nudge(server, campaign_id)
        await trio.sleep(0.3)
        assert await outbox(api, token, wid) == []
        assert await sql(server, "SELECT kind, key FROM timers WHERE state = 'pending' AND kind LIKE 'campaign%%'") \
            == [("campaign.start", f"campaign:{campaign_id}")]
        await wait_for(lambda: _is(server, campaign_id, "FINALIZADA"))
        assert len(await outbox(api, token, wid)) == 3
