"""api/metrics.py's `Metrics` without a server: a registry per app, bounded labels, the hooks' series."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from api.metrics import UNMATCHED, WEBHOOK_OUTCOMES, Metrics
from gateway.whatsapp.transport import Ack


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(metrics.render().decode()) for s in family.samples}


def test_two_apps_in_one_process_have_registries_of_their_own() -> None:
    first, second = Metrics(), Metrics()  # the same metric names twice: no "Duplicated timeseries"
    first.observe_request("GET", "/tickets/<ticket_id>", 200, 0.01)
    first.observe_flush(3, 0.002)
    assert samples(first)["zapgate_http_requests_total", (("method", "GET"), ("route", "/tickets/<ticket_id>"),
                                                          ("status", "200"))] == 1
    assert samples(first)["zapgate_writer_batch_size_sum", ()] == 3
    assert not any(name == "zapgate_http_requests_total" for name, _ in samples(second))
    assert samples(second)["zapgate_writer_batch_size_count", ()] == 0


def test_labels_stay_bounded() -> None:
    metrics = Metrics()
    metrics.observe_request("BREW", None, 404, 0.001)  # an unknown method, a path no route matched
    got = samples(metrics)
    assert got["zapgate_http_requests_total", (("method", "other"), ("route", UNMATCHED), ("status", "404"))] == 1


def test_acks_are_observed_by_their_name_and_others_ignored() -> None:
    metrics = Metrics()
    metrics.observe_ack(int(Ack.DELIVERED), 1.5)
    metrics.observe_ack(int(Ack.READ), 40.0)
    metrics.observe_ack(int(Ack.FAILED), 1.0)  # not a receipt of the phone: no series
    got = samples(metrics)
    assert got["zapgate_ack_latency_seconds_count", (("ack", "delivered"),)] == 1
    assert got["zapgate_ack_latency_seconds_sum", (("ack", "read"),)] == 40.0
    assert not any(dict(labels).get("ack") == "failed" for _, labels in got)


def test_webhook_outcomes() -> None:
    metrics = Metrics()
    for outcome in WEBHOOK_OUTCOMES:
        metrics.count_webhook_delivery(outcome)
    metrics.count_webhook_delivery("delivered")
    got = samples(metrics)
    assert got["zapgate_webhook_deliveries_total", (("outcome", "delivered"),)] == 2
    assert got["zapgate_webhook_deliveries_total", (("outcome", "disabled"),)] == 1
    with pytest.raises(ValueError):
        metrics.count_webhook_delivery("lost")
