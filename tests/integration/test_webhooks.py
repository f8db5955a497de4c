"""Outbound webhooks against a real receiver (tests/webhook_receiver.py) on a loopback port: a scripted
conversation on the sandbox delivered event by event, once per webhook-id, in order per ticket, each
signature verified with the `standardwebhooks` library; a receiver that is down, busy or slow; endpoints
disabled after failing; the SSRF guard; bad input."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import trio
from standardwebhooks import Webhook

from tests.integration.conftest import Api, Server, auth, make_config, start_server
from tests.integration.test_conversations import connected_sandbox, inbound, wait_sql
from tests.integration.test_metrics import scrape, value
from tests.webhook_receiver import Answer, Receiver

TIMEOUT = 60
ALL_EVENTS = ["message.created", "message.updated", "ticket.created", "ticket.updated", "contact.updated",
              "session.status", "campaign.updated", "campaign.progress", "schedule.updated"]


async def create_webhook(api: Api, token: str, url: str, events: list[str] | None = None,
                         **fields: Any) -> dict[str, Any]:
    response = await api.client.post("/webhooks", json={"url": url, "events": events or ALL_EVENTS, **fields},
                                      headers=auth(token))
    assert response.status_code == 201, response.text
    made = response.json()
    assert made["secret"].startswith("whsec_")
    return made


def pending(server: Server) -> int:
    return server.sql("SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'")[0][0]


async def settled(server: Server) -> None:
    """Every delivery written so far is delivered or failed (bounded by the caller's deadline)."""
    while await trio.to_thread.run_sync(pending, server):
        await trio.sleep(0.05)


def verify_all(secret: str, received: list[Any]) -> list[dict[str, Any]]:
    """Each request verified as a receiver would, with the Standard Webhooks library; the payloads."""
    hook = Webhook(secret)
    return [hook.verify(request.body, request.headers) for request in received]


async def test_a_scripted_conversation_reaches_the_receiver_once_each_in_order_signed(
        api: Api, server: Server, nursery: trio.Nursery) -> None:
    receiver = Receiver()
    await receiver.start(nursery)
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        hook = await create_webhook(api, token, receiver.url, description="CRM")
        assert hook["events"] == ALL_EVENTS and hook["enabled"] is True
        wid = await connected_sandbox(api, token)
        first = await inbound(api, token, wid, **{"from": "5511944440000", "name": "Ana", "body": "oi"})
        second = await inbound(api, token, wid, **{"from": "5511944440000", "name": "Ana", "body": "tudo bem?"})
        await wait_sql(server, "SELECT count(*) FROM messages", None, [(2,)])
        ticket_id, contact_id = server.sql("SELECT id, contact_id FROM tickets")[0]
        reply = await api.client.post(f"/messages/{ticket_id}", json={"body": "Olá Ana!"}, headers=auth(token))
        assert reply.status_code == 201, reply.text
        await wait_sql(server, "SELECT ack FROM messages WHERE id = %s", (reply.json()["id"],), [(4,)])
        sent_wid = server.sql("SELECT wid FROM messages WHERE id = %s", (reply.json()["id"],))[0][0]
        await inbound(api, token, wid, **{"from": "5511944440000", "reaction": {"targetId": sent_wid, "emoji": "👍"}})
        await inbound(api, token, wid, **{"from": "5511944440000", "edit": {"targetId": first, "body": "olá"}})
        await inbound(api, token, wid, **{"from": "5511944440000", "revoke": {"targetId": second}})
        await wait_sql(server, "SELECT is_deleted FROM messages WHERE wid = %s", (second,), [(True,)])
        renamed = await api.client.put(f"/contacts/{contact_id}", json={"name": "Ana Souza"}, headers=auth(token))
        assert renamed.status_code == 200, renamed.text
        closed = await api.client.put(f"/tickets/{ticket_id}", json={"status": "closed"}, headers=auth(token))
        assert closed.status_code == 200, closed.text
        await settled(server)

        rows = server.sql("SELECT uid, event, order_key, status, attempts FROM webhook_deliveries ORDER BY id")
        assert {status for *_, status, _ in rows} == {"delivered"}
        assert {attempts for *_, attempts in rows} == {1}
        payloads = verify_all(hook["secret"], receiver.received)
        ids = [request.headers["webhook-id"] for request in receiver.received]
        assert Counter(ids).most_common(1)[0][1] == 1, "a webhook-id arrived twice"
        assert sorted(ids) == sorted(f"msg_{uid.hex}" for uid, *_ in rows)
        # in order per ticket: the receiver saw one conversation's events in the order they were committed
        of_ticket = [f"msg_{uid.hex}" for uid, _, key, *_ in rows if key == f"ticket:{ticket_id}"]
        assert [i for i in ids if i in set(of_ticket)] == of_ticket
        events = Counter(payload["type"] for payload in payloads)
        assert events["ticket.created"] == 1 and events["message.created"] == 3, events
        assert events["session.status"] >= 2 and events["contact.updated"] >= 1, events
        changes = {change for p in payloads if p["type"] == "message.updated" for change in p["data"]["changes"]}
        assert {"ack", "reaction", "body", "isDeleted"} <= changes, changes
        statuses = [(p["data"]["previous"]["status"], p["data"]["status"]) for p in payloads
                    if p["type"] == "ticket.updated"]
        assert statuses[0] == ("pending", "open") and statuses[-1] == ("open", "closed"), statuses
        bodies = [p["data"]["body"] for p in payloads if p["type"] == "message.created"]
        assert bodies == ["oi", "tudo bem?", "Olá Ana!"]
        assert any(p["data"]["status"] == "CONNECTED" for p in payloads if p["type"] == "session.status")
        assert any(p["data"]["name"] == "Ana Souza" for p in payloads if p["type"] == "contact.updated")
        assert all(p["data"]["companyId"] == 1 for p in payloads)

        log = await api.client.get(f"/webhooks/{hook['id']}/deliveries", headers=auth(token))
        assert log.status_code == 200
        page = log.json()
        assert page["count"] == len(rows) and len(page["deliveries"]) == min(20, len(rows))
        newest = page["deliveries"][0]
        assert newest["status"] == "delivered" and newest["attempts"] == 1 and newest["lastStatusCode"] == 200
        assert newest["lastResponse"] == '{"ok":true}' and newest["nextAttemptAt"] is None
        shown = (await api.client.get(f"/webhooks/{hook['id']}", headers=auth(token))).json()
        assert "secret" not in shown and shown["description"] == "CRM"


async def test_no_webhook_means_no_delivery_rows_and_an_unsubscribed_event_none(
        api: Api, server: Server, nursery: trio.Nursery) -> None:
    receiver = Receiver()
    await receiver.start(nursery)
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        wid = await connected_sandbox(api, token)
        await inbound(api, token, wid, **{"from": "5511944440001", "body": "antes"})
        await wait_sql(server, "SELECT count(*) FROM messages", None, [(1,)])
        assert server.sql("SELECT count(*) FROM webhook_deliveries") == [(0,)]
        await create_webhook(api, token, receiver.url, ["ticket.created"])
        await inbound(api, token, wid, **{"from": "5511944440001", "body": "depois"})  # same ticket: nothing
        await inbound(api, token, wid, **{"from": "5511944440002", "body": "novo"})  # a new ticket
        await wait_sql(server, "SELECT count(*) FROM messages", None, [(3,)])
        await settled(server)
        assert server.sql("SELECT event FROM webhook_deliveries") == [("ticket.created",)]
        assert [r.json["type"] for r in receiver.received] == ["ticket.created"]


async def test_a_receiver_that_is_down_gets_it_after_it_returns_in_order(
        tmp_path: Path, database_url: str, nursery: trio.Nursery) -> None:
    server = await start_server(nursery, make_config(tmp_path, database_url, webhook_backoff_initial=0.2,
                                                     webhook_backoff_max=0.5, webhook_timeout=2.0))
    receiver = Receiver()
    import httpx

    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        api = Api(client, server)
        with trio.fail_after(TIMEOUT):
            token = await api.admin_token()
            hook = await create_webhook(api, token, receiver.url, ["message.created"])
            wid = await connected_sandbox(api, token)
            for body in ("um", "dois", "três"):  # receiver down: the first is retried, the others wait behind it
                await inbound(api, token, wid, **{"from": "5511944440003", "body": body})
            while server.sql("SELECT coalesce(max(attempts), 0) FROM webhook_deliveries")[0][0] < 3:
                await trio.sleep(0.05)
            rows = server.sql("SELECT attempts, last_error, status FROM webhook_deliveries ORDER BY id")
            assert rows[0][0] >= 3 and "Connect" in rows[0][1] and rows[0][2] == "pending", rows
            assert [r[0] for r in rows[1:]] == [0, 0], "a later message of the ticket was tried before the first"
            await receiver.start(nursery)  # back
            await settled(server)
            payloads = verify_all(hook["secret"], receiver.received)
            assert [p["data"]["body"] for p in payloads] == ["um", "dois", "três"]
            assert len({r.headers["webhook-id"] for r in receiver.received}) == 3
            shown = (await client.get(f"/webhooks/{hook['id']}", headers=auth(token))).json()
            assert shown["enabled"] is True and shown["failingSince"] is None  # a success ends the streak
            # the attempts are counted by outcome in /metrics: the first message's retries, then the three posts
            samples = await scrape(client)
            assert value(samples, "zapgate_webhook_deliveries_total", outcome="delivered") == 3
            assert value(samples, "zapgate_webhook_deliveries_total", outcome="retried") >= 2  # the last of 3+ is 2xx
    nursery.cancel_scope.cancel()


async def test_retry_after_is_honoured_and_a_test_delivery_goes_through(
        api: Api, server: Server, nursery: trio.Nursery) -> None:
    receiver = Receiver()
    receiver.answers = [Answer(503, [("retry-after", "2")])]
    await receiver.start(nursery)
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        hook = await create_webhook(api, token, receiver.url, ["ticket.created"])
        tried = await api.client.post(f"/webhooks/{hook['id']}/test", headers=auth(token))
        assert tried.status_code == 202, tried.text
        assert tried.json()["event"] == "webhook.test" and tried.json()["status"] == "pending"
        while not receiver.refused:
            await trio.sleep(0.02)
        await trio.sleep(0.3)  # the outcome is recorded
        row = server.sql("SELECT status, last_status_code, extract(epoch FROM next_attempt_at - last_attempt_at) "
                         "FROM webhook_deliveries")[0]
        assert row[0] == "pending" and row[1] == 503 and row[2] >= 2.0, row  # not before Retry-After's 2 s
        await settled(server)
        assert [r.json["type"] for r in receiver.received] == ["webhook.test"]
        assert receiver.received[0].headers["webhook-id"] == receiver.refused[0].headers["webhook-id"]
        verify_all(hook["secret"], receiver.received)
        shown = (await api.client.get(f"/webhooks/{hook['id']}/deliveries?status=delivered",
                                      headers=auth(token))).json()
        assert [(d["attempts"], d["lastStatusCode"]) for d in shown["deliveries"]] == [(2, 200)]


async def test_a_failing_endpoint_is_disabled_with_its_reason_and_its_deliveries_fail(
        tmp_path: Path, database_url: str, nursery: trio.Nursery) -> None:
    server = await start_server(nursery, make_config(
        tmp_path, database_url, webhook_backoff_initial=0.1, webhook_backoff_max=0.2, webhook_retry_for=1.5,
        webhook_disable_after=1.0))
    receiver = Receiver()
    receiver.default = Answer(500)
    await receiver.start(nursery)
    import httpx

    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        api = Api(client, server)
        with trio.fail_after(TIMEOUT), server.broker.subscribe(1) as events:
            token = await api.admin_token()
            hook = await create_webhook(api, token, receiver.url, ["ticket.created"])
            await client.post(f"/webhooks/{hook['id']}/test", headers=auth(token))
            while (await client.get(f"/webhooks/{hook['id']}", headers=auth(token))).json()["enabled"]:
                await trio.sleep(0.05)
            shown = (await client.get(f"/webhooks/{hook['id']}", headers=auth(token))).json()
            assert "HTTP 500" in shown["disabledReason"] and shown["disabledAt"], shown
            heard = []
            while (event := events.receive_nowait()) is not None:
                if event.name == "company-1-webhook":
                    heard.append(event.payload)
            assert heard and heard[0]["action"] == "disabled" and heard[0]["webhookId"] == hook["id"]
            # disabled: nothing more is posted; enabled again, the pending one resumes until it is too old
            tries = len(receiver.refused)
            await trio.sleep(0.5)
            assert len(receiver.refused) == tries
            again = await client.put(f"/webhooks/{hook['id']}", json={"enabled": True}, headers=auth(token))
            assert again.json()["enabled"] is True and again.json()["disabledReason"] is None
            while server.sql("SELECT status FROM webhook_deliveries")[0][0] == "pending":
                await trio.sleep(0.05)
            assert server.sql("SELECT status, last_status_code FROM webhook_deliveries") == [("failed", 500)]
    nursery.cancel_scope.cancel()


async def test_a_slow_endpoint_holds_only_its_own_slots(api: Api, server: Server, nursery: trio.Nursery) -> None:
    """A receiver that never answers in time gets at most WEBHOOK_MAX_IN_FLIGHT posts at once, and a healthy
    endpoint of the same company is served meanwhile."""
    slow, healthy = Receiver(), Receiver()
    slow.default = Answer(200, delay=30)
    await slow.start(nursery)
    await healthy.start(nursery)
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        await create_webhook(api, token, slow.url, ["message.created"])
        await create_webhook(api, token, healthy.url, ["message.created"])
        wid = await connected_sandbox(api, token)
        for index in range(12):  # twelve conversations: their deliveries are independent of each other
            await inbound(api, token, wid, **{"from": f"55119444500{index:02d}", "body": f"m{index}"})
        await healthy.wait_for(lambda got: len(got) == 12)
        in_flight = server.sql("SELECT count(*) FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id "
                               "WHERE w.url = %s AND d.attempts > 0", (slow.url,))[0][0]
        assert 1 <= in_flight <= server.config.webhook_max_in_flight


async def test_ssrf_guard_refuses_private_destinations_at_creation_and_delivery(
        tmp_path: Path, database_url: str, nursery: trio.Nursery) -> None:
    server = await start_server(nursery, make_config(tmp_path, database_url, webhook_allow_private=False,
                                                     webhook_backoff_initial=0.1, webhook_backoff_max=0.2))
    receiver = Receiver()
    await receiver.start(nursery)
    import httpx

    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        api = Api(client, server)
        with trio.fail_after(TIMEOUT):
            token = await api.admin_token()
            for url in (receiver.url, "http://localhost:9/x", "http://10.1.2.3/x", "http://192.168.0.10/x",
                        "http://169.254.169.254/latest/meta-data", "http://[::1]:9/x", "http://[fe80::1]/x",
                        "http://0.0.0.0/x", "http://100.64.0.1/x", "http://[::ffff:127.0.0.1]/x"):
                refused = await client.post("/webhooks", json={"url": url, "events": ["ticket.created"]},
                                            headers=auth(token))
                assert refused.status_code == 400, (url, refused.text)
                assert refused.json()["error"] == "ERR_WEBHOOK_URL", url
            assert server.sql("SELECT count(*) FROM webhooks") == [(0,)]
            # a URL that was public when saved and resolves privately now (DNS changed): refused at delivery
            hook_id = server.sql("INSERT INTO webhooks (company_id, url, events, secret) VALUES "
                                 "(1, %s, '{ticket.created}', 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw') RETURNING id",
                                 (receiver.url,))[0][0]
            await client.post(f"/webhooks/{hook_id}/test", headers=auth(token))
            while not server.sql("SELECT last_error FROM webhook_deliveries")[0][0]:
                await trio.sleep(0.05)
            assert "refused" in server.sql("SELECT last_error FROM webhook_deliveries")[0][0]
            await trio.sleep(0.5)
            assert receiver.received == [] and receiver.refused == []
    nursery.cancel_scope.cancel()


async def test_bad_input_is_a_4xx_and_writes_nothing(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        bad = [
            {}, {"url": "http://127.0.0.1:9/x"}, {"url": "http://127.0.0.1:9/x", "events": []},
            {"url": "http://127.0.0.1:9/x", "events": ["message.deleted"]},
            {"url": "http://127.0.0.1:9/x", "events": "message.created"},
            {"url": "http://127.0.0.1:9/x", "events": [7]},
            {"url": "ftp://127.0.0.1/x", "events": ["message.created"]},
            {"url": "http://user:pw@127.0.0.1/x", "events": ["message.created"]},
            {"url": "http://", "events": ["message.created"]},
            {"url": "http://127.0.0.1:99999/x", "events": ["message.created"]},
            {"url": 5, "events": ["message.created"]},
            {"url": "http://127.0.0.1/" + "x" * 2000, "events": ["message.created"]},
            {"url": "http://127.0.0.1/x", "events": ["message.created"], "enabled": "yes"},
            {"url": "http://127.0.0.1/x", "events": ["message.created"], "description": "d" * 501},
        ]
        for body in bad:
            response = await api.client.post("/webhooks", json=body, headers=auth(token))
            assert response.status_code == 400, (body, response.text)
            assert response.json()["error"].startswith("ERR_") and response.json()["message"]
        raw = await api.client.post("/webhooks", content=b"{not json", headers={**auth(token),
                                                                                 "content-type": "application/json"})
        assert raw.status_code == 400
        assert server.sql("SELECT count(*) FROM webhooks") == [(0,)]
        hook = await create_webhook(api, token, "http://127.0.0.1:9/x", ["message.created"])
        for path in ("/webhooks/abc", "/webhooks/0", "/webhooks/99999999", "/webhooks/abc/deliveries"):
            assert (await api.client.get(path, headers=auth(token))).status_code in (400, 404), path
        bad_status = await api.client.get(f"/webhooks/{hook['id']}/deliveries?status=lost", headers=auth(token))
        assert bad_status.status_code == 400
        changed = await api.client.put(f"/webhooks/{hook['id']}", json={"events": ["nope"]}, headers=auth(token))
        assert changed.status_code == 400
        assert server.sql("SELECT events FROM webhooks") == [(["message.created"],)]
        described = await api.client.put(f"/webhooks/{hook['id']}", json={"description": "só a descrição"},
                                         headers=auth(token))
        assert described.status_code == 200, described.text
        assert (described.json()["description"], described.json()["enabled"]) == ("só a descrição", True)
        assert described.json()["events"] == ["message.created"] and "secret" not in described.json()


async def test_another_company_sees_none_of_them(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        hook = await create_webhook(api, token, "http://127.0.0.1:9/x", ["message.created"])
        await api.create_company(token, "Beta", "admin@beta.test", "beta-pass-1")
        beta = await api.login("admin@beta.test", "beta-pass-1")
        for method, path in (("GET", ""), ("PUT", ""), ("DELETE", ""), ("POST", "/test"), ("POST", "/rotate-secret"),
                             ("GET", "/deliveries")):
            response = await api.client.request(method, f"/webhooks/{hook['id']}{path}", json={"enabled": False},
                                                headers=auth(beta))
            assert response.status_code == 404, (method, path, response.text)
        listed = (await api.client.get("/webhooks", headers=auth(beta))).json()
        assert listed == {"webhooks": [], "count": 0, "hasMore": False}
        rotated = await api.client.post(f"/webhooks/{hook['id']}/rotate-secret", headers=auth(token))
        assert rotated.json()["secret"] != hook["secret"] and rotated.json()["secret"].startswith("whsec_")
        assert server.sql("SELECT count(*) FROM webhook_deliveries") == [(0,)]
        deleted = await api.client.delete(f"/webhooks/{hook['id']}", headers=auth(token))
        assert deleted.status_code == 200 and server.sql("SELECT count(*) FROM webhooks") == [(0,)]


async def test_a_campaign_and_a_scheduled_message_report_their_progress(
        api: Api, server: Server, nursery: trio.Nursery) -> None:
    """campaign.updated, campaign.progress and schedule.updated from the real campaign and schedule actors."""
    import datetime as dt

    from tests.integration.test_campaigns_run import campaign, nudge, numbers, settings
    from tests.integration.test_schedules import new_contact, new_schedule, wait_status

    receiver = Receiver()
    await receiver.start(nursery)
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        hook = await create_webhook(api, token, receiver.url,
                                    ["campaign.updated", "campaign.progress", "schedule.updated"])
        wid = await connected_sandbox(api, token)
        await settings(server, pacing=False)
        contacts = numbers(3, start=700)
        campaign_id = await campaign(server, wid, contacts)
        nudge(server, campaign_id)
        contact = await new_contact(api, token)
        made = await new_schedule(api, token, body="Lembrete", contactId=contact["id"],
                                  sendAt=(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)).isoformat())
        await wait_status(api, token, made["id"], "ENVIADA")
        while server.sql("SELECT status FROM campaigns WHERE id = %s", (campaign_id,)) != [("FINALIZADA",)]:
            await trio.sleep(0.05)
        await settled(server)
        payloads = verify_all(hook["secret"], receiver.received)
        updated = [p["data"]["status"] for p in payloads if p["type"] == "campaign.updated"]
        assert updated[-1] == "FINALIZADA", updated
        sent = sorted(p["data"]["number"] for p in payloads
                      if p["type"] == "campaign.progress" and p["data"]["state"] == "sent")
        assert sent == sorted(contacts)
        assert all(p["data"]["campaignId"] == campaign_id for p in payloads if p["type"] == "campaign.progress")
        assert all(p["data"]["id"] == campaign_id for p in payloads if p["type"] == "campaign.updated")
        scheduled = [p["data"] for p in payloads if p["type"] == "schedule.updated"]
        assert any(s["id"] == made["id"] and s["status"] == "ENVIADA" and s["sentCount"] == 1 for s in scheduled)
