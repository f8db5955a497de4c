"""`GET /metrics` (issue 18, point 2): Prometheus text that parses, counters that move with a conversation
over the sandbox, route templates as labels (never raw ids), and METRICS_TOKEN."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from api.metrics import UNMATCHED
from tests.integration.conftest import Api, Server, auth, make_config, start_server
from tests.integration.test_conversations import connected_sandbox, inbound, wait_sql

TIMEOUT = 60
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample by (name, labels); raises if the exposition does not parse."""
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name, frozenset(sample.labels.items())] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every sample of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, have), v in samples.items() if n == name and wanted <= have)


async def scrape(client: httpx.AsyncClient, **headers: str) -> Samples:
    response = await client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


async def test_counters_move_with_a_conversation_over_the_sandbox(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT), server.broker.subscribe(1):
        before = await scrape(api.client)
        assert value(before, "zapgate_build_info", version="0.1.0") == 1
        assert total(before, "zapgate_messages_total") == 0
        assert value(before, "zapgate_db_pool_connections", state="max") == server.config.db_pool_max
        assert value(before, "zapgate_db_up") == 1
        assert value(before, "zapgate_broker_subscribers") >= 1  # this test's subscription

        token = await api.admin_token()
        wid = await connected_sandbox(api, token)
        for n, sender in enumerate(["5511944440001", "5511944440002", "5511944440001"]):
            await inbound(api, token, wid, **{"from": sender, "name": f"C{n}", "body": f"message {n}"})
        await wait_sql(server, "SELECT count(*) FROM messages", None, [(3,)])
        ticket_id = server.sql("SELECT id FROM tickets ORDER BY id LIMIT 1")[0][0]
        reply = await api.client.post(f"/messages/{ticket_id}", json={"body": "Olá!"}, headers=auth(token))
        assert reply.status_code == 201, reply.text
        await wait_sql(server, "SELECT ack FROM messages WHERE id = %s", (reply.json()["id"],), [(4,)])  # read
        shown = await api.client.get(f"/tickets/{ticket_id}", headers=auth(token))
        assert shown.status_code == 200
        assert (await api.client.get("/no/such/route/98765")).status_code == 404

        after = await scrape(api.client)
        company, connection = "1", str(wid)
        assert value(after, "zapgate_messages_total", direction="in", company=company, connection=connection) == 3
        assert value(after, "zapgate_messages_total", direction="out", company=company, connection=connection) == 1
        assert value(after, "zapgate_sessions", status="CONNECTED") == 1
        assert value(after, "zapgate_ticket_actors", company=company) == 2  # one per contact, not idle yet
        assert value(after, "zapgate_ack_latency_seconds_count", ack="delivered") == 1
        assert value(after, "zapgate_ack_latency_seconds_count", ack="read") == 1
        # the writer: every message and the reply went through group commits
        assert value(after, "zapgate_writer_batch_size_sum") >= 4
        assert value(after, "zapgate_writer_flush_seconds_count") >= 1
        assert value(after, "zapgate_writer_batch_size_count") == value(after, "zapgate_writer_flush_seconds_count")
        assert value(after, "zapgate_broker_published_total") > value(before, "zapgate_broker_published_total")

        # routes by their template, never the raw path: the ticket's id is nowhere in a label
        route = "/tickets/<ticket_id>"
        assert value(after, "zapgate_http_requests_total", method="GET", route=route, status="200") == 1
        assert value(after, "zapgate_http_request_duration_seconds_count", method="GET", route=route) == 1
        assert value(after, "zapgate_http_requests_total", method="POST", route="/messages/<ticket_id>",
                     status="201") == 1
        assert value(after, "zapgate_http_requests_total", method="GET", route=UNMATCHED, status="404") == 1
        labels = {v for (_, have) in after for _, v in have}
        assert not any(str(ticket_id) in label.split("/") for label in labels if label.startswith("/"))
        assert not any("98765" in label for label in labels)


async def test_webhook_deliveries_are_counted_by_outcome(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        before = await scrape(api.client)
        for outcome in ("delivered", "retried", "failed", "disabled"):  # all shown from the start
            assert ("zapgate_webhook_deliveries_total", frozenset({("outcome", outcome)})) in before
        server.deps.metrics.count_webhook_delivery("delivered")
        server.deps.metrics.count_webhook_delivery("delivered")
        server.deps.metrics.count_webhook_delivery("failed")
        with pytest.raises(ValueError):
            server.deps.metrics.count_webhook_delivery("exploded")
        after = await scrape(api.client)
        assert value(after, "zapgate_webhook_deliveries_total", outcome="delivered") == 2
        assert value(after, "zapgate_webhook_deliveries_total", outcome="failed") == 1
        assert value(after, "zapgate_webhook_deliveries_total", outcome="retried") == 0


@pytest.fixture
async def guarded(nursery: trio.Nursery, database_url: str, tmp_path: Path) -> AsyncIterator[Server]:
    srv = await start_server(nursery, make_config(tmp_path, database_url, metrics_token="scrape-me-please"))
    yield srv
    nursery.cancel_scope.cancel()
    await srv.db.aclose()


async def test_metrics_token_is_required_when_set(guarded: Server) -> None:
    with trio.fail_after(TIMEOUT):
        async with httpx.AsyncClient(base_url=guarded.url, timeout=10) as client:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic scrape-me-please"},
                            {"Authorization": "Bearer scrape-me-pleasE"}):
                refused = await client.get("/metrics", headers=headers)
                assert refused.status_code == 401, headers
                assert refused.json()["error"] == "ERR_METRICS_TOKEN"
                assert "zapgate_" not in refused.text
            samples = await scrape(client, Authorization="Bearer scrape-me-please")
            assert value(samples, "zapgate_db_up") == 1


async def test_metrics_are_open_without_a_token_configured(api: Api) -> None:
    with trio.fail_after(TIMEOUT):
        samples = await scrape(api.client)
        assert value(samples, "zapgate_build_info", version="0.1.0") == 1


async def test_the_sample_dashboard_uses_only_metrics_the_app_exposes(api: Api, server: Server) -> None:
    """ops/grafana-zapgate.json stays true to /metrics: every series it queries exists (with no traffic yet)."""
    dashboard = json.loads((Path(__file__).parents[2] / "ops" / "grafana-zapgate.json").read_text())
    queried = {name for panel in dashboard["panels"] for target in panel["targets"]
               for name in re.findall(r"\bzapgate_[a-z_]+", target["expr"])}
    assert len(queried) >= 25
    with trio.fail_after(TIMEOUT):
        server.deps.metrics.observe_ack(4, 1.0)  # histograms with labels show once observed
        await api.client.get("/version")  # one request, so the HTTP series exist
        exposed = set()
        for family in text_string_to_metric_families((await api.client.get("/metrics")).text):
            # a family with no sample yet (no session, no message) is still declared (HELP, TYPE)
            exposed.update([family.name, f"{family.name}_total" if family.type == "counter" else family.name])
            exposed.update(sample.name for sample in family.samples)
        assert queried <= exposed, sorted(queried - exposed)
