"""The composition root: builds every part, wires them, runs them in one trio supervision tree.

    serve(config)
    └─ root nursery
       ├─ signal watcher        SIGTERM/SIGINT → graceful shutdown (a second signal: immediate)
       ├─ root Supervisor       writer, scheduler, tickets, sessions, realtime, housekeeping (its budget is for bugs)
       └─ hypercorn            api.create_app(deps); drains in-flight requests on shutdown

Shutdown runs in dependency order, each step bounded, all within GRACEFUL_TIMEOUT + 1 s (`stop_in_order`):
the front stops accepting and ends its idle connections, the realtime clients are told to go; intake
stops (the sessions end: nothing new arrives); in-flight requests finish, their connections closed
after the response; the ticket actors finish their mailboxes; the writer flushes; then everything else is cancelled
and the caller closes the pool. Whatever a step could not finish in time is answered, not dropped: an
inbound event never settled is delivered again by the network at the next start.

No globals: what a part needs is passed to its constructor.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import secrets
import signal
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.middleware import ProxyFixMiddleware
from prometheus_client import CollectorRegistry

from actors.campaigns import CampaignSupervisor
from actors.dashboard_push import DashboardPush
from actors.number_check import NumberChecker
from actors.scheduler import Scheduler
from actors.schedules import ScheduledMessages
from actors.session import SessionManager, SessionPolicy, TransportFactory
from actors.ticket import Presenters, TicketRouter
from actors.webhooks import Settings as WebhookSettings
from actors.webhooks import WebhookDispatcher
from api import present, present_tickets, scheduled_messages
from api.app import Deps, build_throttle, build_tokens, create_app
from api.auth import check_password, hash_password
from api.campaigns import present_campaign
from api.contact_lists import present_item as present_list_item
from api.live import CompanyNamespaces, LiveBridge, realtime_config
from api.metrics import Metrics
from api.presence import Presence
from api.present_tickets import MessagePresenter
from api.realtime import RealtimeServer
from api.realtime.direct import DirectWebsockets
from api.runtime import Runtime
from gateway import front
from gateway.broker import Broker
from gateway.config import Config
from gateway.error_tracking import open_error_tracker
from gateway.housekeeper import Housekeeper
from gateway.redis_bridge import RedisBridge
from gateway.supervisor import ChildSpec, RestartPolicy, Supervisor
from gateway.whatsapp import transport as wa
from gateway.whatsapp.sandbox import SandboxNetwork
from gateway.whatsapp.sandbox_outbox import DatabaseOutbox
from storage import companies, invoices, migrate, plans, schedules, timers, users
from storage.db import Database, open_pool
from storage.errors import Conflict
from storage.media import MediaStore
from storage.webhooks import DeliveryStore, Disabled
from storage.whatsapps import SessionStore
from storage.writer import GroupCommitWriter

log = logging.getLogger("zapgate")

INITIAL_PASSWORD_FILE = "initial-admin-password"


@contextlib.contextmanager
def database_url(config: Config) -> Iterator[str]:
    """The configured server's URL, or the embedded PostgreSQL's for as long as the block runs."""
    if config.database_url is not None:
        yield config.database_url
        return
    from gateway.embedded import embedded_postgres

    with embedded_postgres(config.data_dir) as url:
        yield url


@contextlib.contextmanager
def open_database_sync(config: Config, url: str, *, min_size: int | None = None) -> Iterator[Database]:
    pool = open_pool(url, min_size=config.db_pool_min if min_size is None else min_size,
                     max_size=config.db_pool_max, statement_timeout_ms=config.db_statement_timeout_ms)
    try:
        yield Database(pool)
    finally:
        pool.close()


@attrs.frozen
class AdminLogin:
    email: str
    password: str | None  # None: not known to us (set by ADMIN_PASSWORD or changed since)
    created: bool


async def ensure_first_company(db: Database, config: Config) -> AdminLogin:
    """On an empty database: company "Default" and its super admin. Always: what to tell the operator."""
    password_file = config.data_dir / INITIAL_PASSWORD_FILE
    await plans.ensure_default_plan(db)
    if await companies.count_companies(db) == 0:
        password = config.admin_password or secrets.token_urlsafe(12)
        admin = {"name": "Admin", "email": config.admin_email, "super": True,
                 "password_hash": await hash_password(password, config.bcrypt_rounds)}
        try:
            await companies.create_company(db, name="Default", admin=admin)
        except Conflict:
            # another process starting on the same empty database won the race: use its admin
            return await ensure_first_company(db, config)
        log.info("created company Default and its super admin", extra={"fields": {"email": config.admin_email}})
        if config.admin_password is None:
            _write_private(password_file, password)
        return AdminLogin(config.admin_email, password, created=True)
    if config.admin_password is not None:
        return AdminLogin(config.admin_email, config.admin_password, created=False)
    if password_file.is_file():
        remembered = password_file.read_text().strip()
        user = await users.user_by_email(db, config.admin_email)
        if user is not None and await check_password(remembered, user["password_hash"]):
            return AdminLogin(config.admin_email, remembered, created=False)
        password_file.unlink(missing_ok=True)  # changed since: forget it
    return AdminLogin(config.admin_email, None, created=False)


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(text + "\n")


def print_banner(config: Config, binds: list[str], admin: AdminLogin) -> None:
    url = binds[0].replace("0.0.0.0", "localhost") if binds else f"http://localhost:{config.port}"
    database = f"embedded PostgreSQL in {config.data_dir / 'postgres'}" if config.embedded_db else "external"
    lines = [
        "",
        f"  zapgate is running at {url}",
        f"  database: {database}",
        f"  sandbox WhatsApp network: {'on' if config.sandbox else 'off'}",
        f"  admin login: {admin.email}",
    ]
    if admin.password is not None and config.admin_password is None:
        lines.append(f"  password:    {admin.password}   (change it after logging in)")
    elif config.admin_password is not None:
        lines.append("  password:    the ADMIN_PASSWORD you configured")
    else:
        lines.append("  password:    the one you set (the generated one was changed)")
    lines.append("")
    print("\n".join(lines), file=sys.stdout, flush=True)


GIL_SWITCH_INTERVAL = 0.001  # seconds; CPython's default is 0.005
GC_THRESHOLDS = (20_000, 20, 20)  # CPython's default is (700, 10, 10)


def tune_interpreter() -> None:
    """Process-wide settings for `zapgate serve` (benchmarks apply them too; tests need not).

    The trio thread and the database's worker threads share the GIL. With CPython's 5 ms switch
    interval a worker whose query answer has arrived waits up to 5 ms for the busy trio thread to
    let go, so every group commit and query took that much longer under load; at 1 ms the ingest
    throughput rose 8-25% with the same CPU per message (bench.ingest).

    Everything imported so far (modules, code, the framework's tables) lives as long as the process:
    frozen, the cyclic collector's full passes no longer walk it, which showed as request latency
    spikes (bench.api, three alternating runs each: p99 of the search 63-69 → 51-56 ms, of an
    authenticated one-row read 26-40 → 25 ms).

    Every message and request allocates thousands of short-lived containers; at CPython's threshold of
    700 the youngest generation was collected every few messages. At 20,000 (and 20 for the older
    generations) ingest CPU per message fell 108-126 → 94-103 µs on the event loop's thread (bench.ingest,
    alternating runs), API latency unchanged; uncollected cyclic garbage stays bounded by the threshold.
    """
    sys.setswitchinterval(GIL_SWITCH_INTERVAL)
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def hypercorn_config(config: Config) -> HypercornConfig:
    hc = HypercornConfig()
    hc.bind = [f"{config.host}:{config.port}"]
    hc.graceful_timeout = config.graceful_timeout
    hc.accesslog = None
    hc.errorlog = logging.getLogger("hypercorn.error")
    hc.include_server_header = False
    hc.keep_alive_timeout = 30
    # every browser reconnects at once after a restart: a short accept queue drops their SYNs, and each
    # dropped SYN costs its client a 1 s, 3 s, 7 s… retransmit (the kernel caps this at somaxconn)
    hc.backlog = 4096
    hc.websocket_max_message_size = config.realtime_max_payload
    # Large enough that an absurd URL (a megabyte of searchParam) reaches the app and gets a JSON 400
    # instead of h11's bare 431; h11 grows its buffer only as bytes arrive.
    hc.h11_max_incomplete_size = 2 * 1024 * 1024
    return hc


def present_contact(row: dict[str, Any]) -> dict[str, Any]:
    """Contacts in events: the contacts API's shape when it is there."""
    shape = getattr(present, "contact", None)
    if shape is not None:
        return shape(row)
    return {"id": row["id"], "name": row["name"], "number": row["number"], "lid": row.get("lid"),
            "isGroup": row["is_group"], "companyId": row["company_id"]}


def transport_factory(config: Config, database_url: str | None, sandbox: SandboxNetwork | None) -> TransportFactory:
    """Builds each session's transport from its connection row: the sandbox, or WhatsApp through neonize."""

    def make(row: dict[str, Any], on_device_change: Callable[[dict[str, Any] | None], Awaitable[None]]
             ) -> wa.Transport:
        device = row.get("session_data") or {}
        if row["channel"] == "sandbox":
            if sandbox is None:
                raise wa.TransportError("the sandbox is disabled (ZAPGATE_SANDBOX=off)")
            return sandbox.transport(row["id"], row.get("session_data"), on_device_change)
        if database_url is None:
            raise wa.TransportError("no database URL for the WhatsApp device store")
        from gateway.whatsapp.neonize import NeonizeTransport  # loads the Go library: only when needed

        return NeonizeTransport(f"zapgate-{row['id']}", database_url, device_jid=device.get("jid"))

    return make


async def run_app(config: Config, db: Database, *, hc: HypercornConfig | None = None,
                  shutdown: trio.Event | None = None, db_url: str | None = None, broker: Broker | None = None,
                  on_deps: Callable[[Deps], None] | None = None,
                  task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED) -> None:
    """Run the supervision tree and the HTTP server until `shutdown` is set; then drain and return.

    `task_status.started(binds)` once the server listens. The caller owns `db`.
    """
    shutdown = shutdown if shutdown is not None else trio.Event()
    broker = broker if broker is not None else Broker()
    # the sandbox keeps what WhatsApp's servers would across restarts: what was sent in PostgreSQL (its
    # outbox), the messages not yet acknowledged, LIDs and logouts in its journal in the data dir
    journal = config.data_dir / "sandbox.sqlite3" if config.sandbox_journal else None
    outbox = DatabaseOutbox(db) if config.sandbox_journal else None
    sandbox = SandboxNetwork(qr_interval=config.sandbox_qr_interval, latency=config.sandbox_latency, journal=journal,
                             outbox=outbox, crash_faults=config.sandbox_crash_faults) if config.sandbox else None
    # this app's metrics, in a registry of its own (several apps in one process never share a series)
    metrics = Metrics(CollectorRegistry())
    policy = SessionPolicy(max_qr_codes=config.session_max_qr_codes,
                           reconnect_initial=config.session_reconnect_initial,
                           reconnect_max=max(config.session_reconnect_max, config.session_reconnect_initial))
    sessions = SessionManager(store=SessionStore(db), broker=broker, policy=policy,
                              transport_factory=transport_factory(config, db_url or config.database_url, sandbox),
                              present=present.session)
    writer = GroupCommitWriter(db)
    writer.on_flush = metrics.observe_flush
    media = MediaStore(config.data_dir / "media")
    public_files = MediaStore(config.data_dir / "public", prefix="/public")  # logos, announcements' images
    messages = MessagePresenter(config.backend_url)
    tickets = TicketRouter(db=db, writer=writer, broker=broker, sessions=sessions, media=media,
                           presenters=Presenters(ticket=present_tickets.ticket, message=messages,
                                                 contact=present_contact))
    sessions.inbound = tickets.inbound
    tickets.on_ack = metrics.observe_ack
    scheduler = Scheduler(db)  # durable timers; their owners register a handler per kind
    tickets.scheduler = scheduler
    # contact lists' numbers checked on WhatsApp, paced, through the sessions
    number_check = NumberChecker(db, sessions, broker, scheduler, present=present_list_item)
    # scheduled messages: their timers are sent through the conversations' actors
    scheduled = ScheduledMessages(db, tickets, broker, media, present=scheduled_messages.shown)
    tickets.timer_kinds[schedules.KIND] = scheduled.timers_due
    # campaigns: one actor per running campaign, sending its batches itself
    campaigns = CampaignSupervisor(db, broker, scheduler, tickets, sessions, present=present_campaign)
    # outbound webhooks: the rows the triggers wrote in each change's transaction, posted signed, retried
    webhooks = WebhookDispatcher(DeliveryStore(db), webhook_settings(config),
                                 on_disabled=partial(_webhook_disabled, broker),
                                 on_outcome=metrics.count_webhook_delivery)
    tokens = build_tokens(config)
    realtime = RealtimeServer(realtime_config(config))
    # one process: no socket survived its restart, so every user starts offline; several: the others' users
    # are still connected (presence is per process: api/presence.py)
    presence = Presence(db, broker, realtime, grace=config.presence_grace, reset_at_start=not config.redis_url)
    namespaces = CompanyNamespaces(db, tokens, broker, presence,
                                   join_rate=config.realtime_join_rate, join_burst=config.realtime_join_burst)
    realtime.register_namespace_handler(namespaces)
    live = LiveBridge(realtime, namespaces, broker)
    bridge = [ChildSpec("redis-bridge", RedisBridge(broker, config.redis_url).run, RestartPolicy.PERMANENT)] \
        if config.redis_url else []  # several nodes: every node's events reach every node's sockets, once
    root = Supervisor("root", children=[
        *bridge,
        ChildSpec("housekeeper", Housekeeper(db, invoice_sweep=partial(
            invoices.create_due_invoices, days_ahead=config.invoice_days_ahead),
            prune_timers=timers.prune_finished).run, RestartPolicy.PERMANENT),
        ChildSpec("writer", writer.run, RestartPolicy.PERMANENT),
        ChildSpec("scheduler", scheduler.run, RestartPolicy.PERMANENT),
        ChildSpec("number-check", number_check.run, RestartPolicy.PERMANENT),
        ChildSpec("tickets", tickets.run, RestartPolicy.PERMANENT),
        ChildSpec("campaigns", campaigns.run, RestartPolicy.PERMANENT),
        ChildSpec("webhooks", webhooks.run, RestartPolicy.PERMANENT),
        ChildSpec("sessions", sessions.run, RestartPolicy.PERMANENT),
        ChildSpec("realtime", realtime.run, RestartPolicy.PERMANENT),
        ChildSpec("presence", presence.run, RestartPolicy.PERMANENT),
        ChildSpec("live", live.run, RestartPolicy.PERMANENT),
        # the dashboard's counters pushed to admins' sockets when events commit (at most once a second)
        ChildSpec("dashboard-push", DashboardPush(db_url or config.database_url or "", broker.publish_local).run,
                  RestartPolicy.PERMANENT),
    ])
    websockets = DirectWebsockets(realtime, trusted_proxies=config.trusted_proxies)
    async with _closing(sandbox), open_error_tracker(config) as errors, trio.open_nursery() as nursery:
        if sandbox is not None:
            await sandbox.take_over_old_outbox()  # a journal of before version 15 held it
        supervisor = await nursery.start(root.run)
        runtime = Runtime(root=supervisor, sessions=sessions, tickets=tickets, campaigns=campaigns, scheduler=scheduler,
                          number_check=number_check, scheduled=scheduled, writer=writer, broker=broker, db=db,
                          realtime=realtime, websockets=websockets)
        runtime.sections["webhooks"] = webhooks.stats  # the deliverer: posts in flight, outcomes
        metrics.watch(runtime)
        deps = Deps(config=config, db=db, tokens=tokens, throttle=build_throttle(config),
                    broker=broker, sessions=sessions, sandbox=sandbox, tickets=tickets, media=media,
                    messages=messages, realtime=realtime, presence=presence, public_files=public_files,
                    scheduler=scheduler, campaigns=campaigns, webhooks=webhooks, runtime=runtime, metrics=metrics,
                    errors=errors,
                    health=lambda: {"supervisors": {"root": supervisor.stats()}, "sessions": sessions.stats(),
                                    "tickets": tickets.stats(), "broker": broker.stats(),
                                    "scheduler": scheduler.stats(), "schedules": scheduled.stats(),
                                    "campaigns": campaigns.stats(), "webhooks": webhooks.stats(),
                                    "numberCheck": number_check.stats(),
                                    "realtime": {**live.stats(), "websockets": websockets.stats()}})
        if on_deps is not None:  # tests and benchmarks reach the parts through this
            on_deps(deps)
        app: Any = create_app(deps)
        if config.trusted_proxies:
            # behind N reverse proxies: the client address (login throttling, logs) from X-Forwarded-For
            app = ProxyFixMiddleware(app, mode="legacy", trusted_hops=config.trusted_proxies)
        # the front hands realtime websockets to their direct transport, everything else to hypercorn
        front_stopped = trio.Event()

        async def serve_front(task_status: trio.TaskStatus[list[str]]) -> None:
            try:
                await front.serve(app, hc or hypercorn_config(config), claimers=[websockets],
                                  shutdown_trigger=shutdown.wait, task_status=task_status)
            finally:
                front_stopped.set()

        binds = await nursery.start(serve_front)
        task_status.started(binds)
        await shutdown.wait()
        realtime.stop()  # every realtime client is told now (a waiting poll is a request in flight) and reconnects
        nursery.cancel_scope.deadline = trio.current_time() + config.graceful_timeout + 1  # the last resort
        with contextlib.suppress(KeyError):  # timers are intake too: none delivered while conversations drain
            supervisor.terminate_child("scheduler")  # (it hands its claims back; the next start fires them)
        await stop_in_order(config.graceful_timeout, sessions=sessions, tickets=tickets, writer=writer,
                            front_stopped=front_stopped)
        supervisor.cancel()


def webhook_settings(config: Config) -> WebhookSettings:
    return WebhookSettings(timeout=config.webhook_timeout, retry_for=config.webhook_retry_for,
                           disable_after=config.webhook_disable_after,
                           backoff_initial=config.webhook_backoff_initial,
                           backoff_max=max(config.webhook_backoff_max, config.webhook_backoff_initial),
                           max_in_flight=config.webhook_max_in_flight, poll_interval=config.webhook_poll_interval,
                           allow_private=config.webhook_allow_private)


def _webhook_disabled(broker: Broker, disabled: Disabled) -> None:
    """An open admin screen hears that zapgate disabled an endpoint (the reason is on its row too)."""
    broker.publish(disabled.company_id, f"company-{disabled.company_id}-webhook",
                   {"action": "disabled", "webhookId": disabled.webhook_id, "reason": disabled.reason})


async def stop_in_order(graceful_timeout: float, *, sessions: SessionManager, tickets: TicketRouter,
                        writer: GroupCommitWriter, front_stopped: trio.Event) -> None:
    """Intake → in-flight requests → ticket actors → writer, each step bounded by what is left of the deadline."""
    began = trio.current_time()
    deadline = began + graceful_timeout
    steps: dict[str, float] = {}

    async def step(name: str, until: float, work: Callable[[], Awaitable[Any]]) -> None:
        started = trio.current_time()
        with trio.move_on_at(until) as scope:
            await work()
        steps[name] = round(trio.current_time() - started, 3)
        if scope.cancelled_caught:
            log.warning("shutdown step cut at its deadline", extra={"fields": {"step": name}})

    await step("intake", began + min(3.0, graceful_timeout / 3), sessions.stop_all)
    await step("requests", deadline - 0.5, front_stopped.wait)  # hypercorn drains them (graceful_timeout)
    await step("conversations", deadline, tickets.drain)
    tickets.cancel_all()  # past the deadline: what is left is answered (requests) or left unsettled (events)
    await step("writer", deadline + 0.5, writer.drain)
    log.info("stopped in order", extra={"fields": {"seconds": steps}})


HARD_EXIT_AFTER = 2.0  # seconds past GRACEFUL_TIMEOUT (or after a second signal) before the process exits anyway


@contextlib.asynccontextmanager
async def _closing(sandbox: SandboxNetwork | None) -> AsyncIterator[None]:
    """The sandbox's journal is flushed and closed when the app stops (a kill -9 loses nothing either)."""
    try:
        yield
    finally:
        if sandbox is not None:
            sandbox.close()


async def _watch_signals(shutdown: trio.Event, cancel_scope: trio.CancelScope, graceful_timeout: float) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            if not shutdown.is_set():
                log.info("shutting down gracefully", extra={"fields": {"signal": signal.Signals(signum).name}})
                shutdown.set()
                _exit_after(graceful_timeout + HARD_EXIT_AFTER, "the graceful shutdown overran its deadline")
            else:
                log.warning("second signal: stopping now")
                cancel_scope.cancel()
                _exit_after(1.0, "second signal")


def _exit_after(seconds: float, why: str) -> None:
    """The last resort, on a thread of its own: a worker thread stuck in a database call cannot be cancelled,
    and must not keep the process alive. Nothing is lost: what was not committed was not settled."""

    def exit_now() -> None:
        log.error("exiting without finishing the shutdown", extra={"fields": {"why": why}})
        logging.shutdown()
        os._exit(1)

    timer = threading.Timer(seconds, exit_now)
    timer.daemon = True
    timer.start()


async def serve(config: Config) -> None:
    """`zapgate serve`: migrate, make sure an admin exists, serve until SIGTERM/SIGINT."""
    tune_interpreter()
    with database_url(config) as url:
        applied = await trio.to_thread.run_sync(migrate.migrate_url, url)
        for migration in applied:
            log.info("migrated", extra={"fields": {"version": migration.version, "name": migration.name}})
        pool = await trio.to_thread.run_sync(lambda: open_pool(
            url, min_size=config.db_pool_min, max_size=config.db_pool_max,
            statement_timeout_ms=config.db_statement_timeout_ms))
        db = Database(pool)
        try:
            admin = await ensure_first_company(db, config)
            shutdown = trio.Event()
            async with trio.open_nursery() as outer:
                outer.start_soon(_watch_signals, shutdown, outer.cancel_scope, config.graceful_timeout)
                async with trio.open_nursery() as inner:
                    binds = await inner.start(partial(run_app, config, db, shutdown=shutdown, db_url=url))
                    print_banner(config, binds, admin)
                outer.cancel_scope.cancel()  # run_app drained and returned: stop the signal watcher
        finally:
            await db.aclose()
    log.info("stopped")
