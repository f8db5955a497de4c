"""Prometheus metrics at `GET /metrics` (README "Metrics").

One `Metrics` per app, built by the composition root around its own `CollectorRegistry` (no module
globals, STYLE 14: several apps in one process — the tests — never share a series). Two kinds:

- **observed where they happen**, a few per request or per flush, never per message on the intake path:
  HTTP requests by route template and status with their latency (`observe_request`, the app's
  after-request hook), the writer's flushes (`observe_flush`: batch size and seconds), receipts
  (`observe_ack`: how long the contact's phone took), webhook deliveries by outcome (`count_webhook_delivery`);
- **read from live state when scraped** (`RuntimeCollector` over api/runtime.py's `Runtime`): messages in and
  out by connection (plain counters the conversations keep), ticket actors and their mailboxes, sessions
  by status, supervisor restarts and crash loops, broker subscribers and lagged ones, realtime sockets,
  timers, the database pool.

Routes are labelled by their template (`/tickets/<ticket_id>`), never the raw path: the number of series
stays bounded whatever clients ask for; a request no route matched is labelled `UNMATCHED`.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from quart import Blueprint, Response, current_app, request

from api.auth import public
from api.errors import Unauthorized
from gateway import __version__
from gateway.whatsapp.transport import Ack

if TYPE_CHECKING:
    from api.runtime import Runtime

UNMATCHED = "<unmatched>"  # the route label of a request no route matched (404s of unknown paths)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})  # others: "other"
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000)
FLUSH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0)
ACK_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0, 86400.0)
WEBHOOK_OUTCOMES = ("delivered", "retried", "failed", "disabled")

blueprint = Blueprint("metrics", __name__)


class Metrics:
    """The app's metrics: its registry, what is observed as it happens, and the live-state collector."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.http_requests = Counter("zapgate_http_requests", "HTTP requests answered, by route template and status",
                                     ["method", "route", "status"], registry=r)
        self.http_seconds = Histogram("zapgate_http_request_duration_seconds",
                                      "Time to answer an HTTP request, by route template",
                                      ["method", "route"], buckets=HTTP_BUCKETS, registry=r)
        self.writer_batch = Histogram("zapgate_writer_batch_size", "Writes per group commit of the writer",
                                      buckets=BATCH_BUCKETS, registry=r)
        self.writer_flush = Histogram("zapgate_writer_flush_seconds",
                                      "Time of one group commit (the transaction and its wait for a connection)",
                                      buckets=FLUSH_BUCKETS, registry=r)
        self.ack_seconds = Histogram("zapgate_ack_latency_seconds",
                                     "From a message sent to its receipt (delivered, read, played), by ack",
                                     ["ack"], buckets=ACK_BUCKETS, registry=r)
        self.webhook_deliveries = Counter("zapgate_webhook_deliveries", "Webhook delivery attempts, by outcome",
                                          ["outcome"], registry=r)
        # the labelled children made once: a receipt costs a dict lookup and an observe
        self._acks = {int(ack): self.ack_seconds.labels(ack=ack.name.lower()) for ack in Ack if ack > Ack.SENT}
        for outcome in WEBHOOK_OUTCOMES:  # every outcome shown from the start (0), so rates work at once
            self.webhook_deliveries.labels(outcome=outcome)

    def watch(self, runtime: Runtime) -> None:
        """Read the process's live state at every scrape (once, when the supervision tree runs)."""
        self.registry.register(RuntimeCollector(runtime))

    def observe_request(self, method: str, route: str | None, status: int, seconds: float) -> None:
        method = method if method in METHODS else "other"
        route = route or UNMATCHED
        self.http_requests.labels(method, route, str(status)).inc()
        self.http_seconds.labels(method, route).observe(seconds)

    def observe_flush(self, writes: int, seconds: float) -> None:
        """The writer's hook (`GroupCommitWriter.on_flush`)."""
        self.writer_batch.observe(writes)
        self.writer_flush.observe(seconds)

    def observe_ack(self, ack: int, seconds: float) -> None:
        """The conversations' hook (`TicketRouter.on_ack`)."""
        child = self._acks.get(ack)
        if child is not None:
            child.observe(seconds)

    def count_webhook_delivery(self, outcome: str) -> None:
        """One webhook delivery attempt ended: `delivered` (2xx), `retried` (it will be tried again), `failed`
        (given up after its retries) or `disabled` (its endpoint was disabled for failing)."""
        if outcome not in WEBHOOK_OUTCOMES:
            raise ValueError(f"webhook outcome must be one of {', '.join(WEBHOOK_OUTCOMES)}, not {outcome!r}")
        self.webhook_deliveries.labels(outcome=outcome).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class RuntimeCollector(Collector):
    """The live state, read at scrape time (api/runtime.py): no instrumentation on the hot paths."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def collect(self) -> Iterator[Metric]:
        rt = self.runtime
        info = GaugeMetricFamily("zapgate_build_info", "The running version", labels=["version"])
        info.add_metric([__version__], 1)
        yield info
        yield GaugeMetricFamily("zapgate_uptime_seconds", "Seconds since the supervision tree started",
                                value=rt.uptime())
        yield from self._messages(rt)
        yield from self._actors(rt)
        yield from self._supervisors(rt)
        yield from self._fanout(rt)
        yield from self._timers(rt)
        yield from self._database(rt)

    def _messages(self, rt: Runtime) -> Iterator[Metric]:
        messages = CounterMetricFamily(
            "zapgate_messages", "WhatsApp messages received (in) and handed to WhatsApp (out), by connection",
            labels=["direction", "company", "connection"])
        for direction, counts in (("in", rt.tickets.received), ("out", rt.tickets.sent)):
            for (company_id, whatsapp_id), count in sorted(counts.items()):
                messages.add_metric([direction, str(company_id), str(whatsapp_id)], count)
        yield messages

    def _actors(self, rt: Runtime) -> Iterator[Metric]:
        tickets = rt.tickets.describe(deepest=0)
        alive = GaugeMetricFamily("zapgate_ticket_actors", "Conversations' actors alive, by company",
                                  labels=["company"])
        for company, count in tickets["byCompany"].items():
            alive.add_metric([company], count)
        yield alive
        yield GaugeMetricFamily("zapgate_ticket_mailbox_messages", "Messages waiting in the conversations' mailboxes",
                                value=tickets["mailboxWaiting"])
        sessions = GaugeMetricFamily("zapgate_sessions", "WhatsApp sessions running, by status", labels=["status"])
        for status, count in sorted(rt.sessions.stats()["by_status"].items()):
            sessions.add_metric([status], count)
        yield sessions
        yield GaugeMetricFamily("zapgate_campaign_actors", "Campaigns running", value=len(rt.campaigns.actors))
        yield GaugeMetricFamily("zapgate_writer_queue", "Writes waiting for the writer's next group commit",
                                value=rt.writer.queued)

    def _supervisors(self, rt: Runtime) -> Iterator[Metric]:
        restarts = CounterMetricFamily("zapgate_supervisor_restarts", "Children restarted by each supervisor",
                                       labels=["supervisor"])
        given_up = CounterMetricFamily("zapgate_supervisor_given_up", "Children given up (over their own budget)",
                                       labels=["supervisor"])
        looping = GaugeMetricFamily("zapgate_supervisor_crash_loop", "1 while a child crash-loops (or was given up "
                                    "recently)", labels=["supervisor"])
        children = GaugeMetricFamily("zapgate_supervisor_children", "Children supervised", labels=["supervisor"])
        for stats in rt.supervisor_stats():
            name = [stats["name"]]
            restarts.add_metric(name, stats["restarts_total"])
            given_up.add_metric(name, stats["given_up_total"])
            looping.add_metric(name, int(stats["crash_loop"]))
            children.add_metric(name, stats["children"])
        yield from (restarts, given_up, looping, children)

    def _fanout(self, rt: Runtime) -> Iterator[Metric]:
        broker = rt.broker.stats()
        yield GaugeMetricFamily("zapgate_broker_subscribers", "Event subscribers (sockets' feeds, bridges)",
                                value=broker["subscribers"])
        yield CounterMetricFamily("zapgate_broker_published", "Events published", value=broker["published"])
        yield CounterMetricFamily("zapgate_broker_lagged", "Subscribers cut off for lagging", value=broker["lagged"])
        realtime = rt.realtime_figures()
        sockets = GaugeMetricFamily("zapgate_realtime_sockets", "Realtime (Socket.IO) clients connected",
                                    labels=["kind"])
        sockets.add_metric(["socket"], realtime.get("sockets", 0))
        sockets.add_metric(["engine_session"], realtime.get("sessions", 0))
        sockets.add_metric(["websocket"], realtime.get("websockets", {}).get("open", 0))
        yield sockets

    def _timers(self, rt: Runtime) -> Iterator[Metric]:
        stats = rt.scheduler.stats()
        yield GaugeMetricFamily("zapgate_timers_backlog", "Pending durable timers (counted every few seconds)",
                                value=stats["backlog"] or 0)
        yield GaugeMetricFamily("zapgate_timers_overdue_seconds", "How late the earliest pending timer is",
                                value=rt.timers_overdue_seconds())
        fired = CounterMetricFamily("zapgate_timers", "Timers handled by the scheduler, by outcome", labels=["outcome"])
        for outcome in ("fired", "retried", "failed"):
            fired.add_metric([outcome], stats[outcome])
        yield fired

    def _database(self, rt: Runtime) -> Iterator[Metric]:
        figures = rt.database_figures()
        pool = figures["pool"]
        connections = GaugeMetricFamily("zapgate_db_pool_connections", "The database pool's connections",
                                        labels=["state"])
        connections.add_metric(["open"], pool["size"])
        connections.add_metric(["idle"], pool["available"])
        connections.add_metric(["in_use"], max(0, pool["size"] - pool["available"]))
        connections.add_metric(["max"], pool["max"])
        yield connections
        yield GaugeMetricFamily("zapgate_db_pool_waiting", "Callers waiting for a connection", value=pool["waiting"])
        yield GaugeMetricFamily("zapgate_db_threads_busy", "Worker threads running database calls",
                                value=figures["threadsBusy"])
        health = figures["health"]
        yield GaugeMetricFamily("zapgate_db_up", "1 while the database answers", value=int(health["status"] == "up"))
        yield CounterMetricFamily("zapgate_db_outages", "Database outages seen", value=health["outages"])


@blueprint.get("/metrics")
@public
async def metrics() -> Response:
    """The Prometheus text format; with METRICS_TOKEN set, only for `Authorization: Bearer <METRICS_TOKEN>`."""
    from api.app import deps_of

    deps = deps_of(current_app)
    expected = deps.config.metrics_token
    if expected is not None:
        scheme, _, supplied = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(supplied.strip().encode(), expected.encode()):
            raise Unauthorized("/metrics needs Authorization: Bearer <METRICS_TOKEN>", code="ERR_METRICS_TOKEN")
    return Response(deps.metrics.render(), status=200, content_type=CONTENT_TYPE_LATEST)
