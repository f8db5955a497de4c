"""The HTTP application: `create_app(deps)` builds a Quart-trio app around the composition root's parts.

Cross-cutting behaviour lives here: request ids and one log line per request, authentication of
every non-public route, CORS for FRONTEND_URL, security headers, body-size limits, JSON errors.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import trio
from quart import Response, g, request
from quart_trio import QuartTrio

from actors.campaigns import CampaignSupervisor
from actors.scheduler import Scheduler
from actors.session import SessionManager
from actors.ticket import TicketRouter
from actors.webhooks import WebhookDispatcher
from api import auth as auth_module
from api.auth import LoginThrottle, TokenService
from api.errors import register_error_handlers
from api.metrics import Metrics
from api.presence import Presence
from api.present_tickets import MessagePresenter
from api.realtime import RealtimeServer
from api.runtime import Runtime
from api.subscriptions import AccessCache, check_request
from gateway.broker import Broker
from gateway.config import Config
from gateway.error_tracking import ErrorTracker
from gateway.whatsapp.sandbox import SandboxNetwork
from storage.db import Database
from storage.media import MediaStore

log = logging.getLogger("zapgate.http")

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
CORS_METHODS = "GET, POST, PUT, PATCH, DELETE, OPTIONS"
CORS_MAX_AGE = "600"


@attrs.define
class Deps:
    """What the API needs from the composition root."""

    config: Config
    db: Database
    tokens: TokenService
    throttle: LoginThrottle
    broker: Broker
    sessions: SessionManager
    tickets: TicketRouter
    media: MediaStore
    messages: MessagePresenter
    sandbox: SandboxNetwork | None = None
    realtime: RealtimeServer | None = None
    presence: Presence | None = None  # who is online, by their sockets (None: no realtime server)
    scheduler: Scheduler | None = None  # durable timers (actors/scheduler.py)
    campaigns: CampaignSupervisor | None = None  # runs campaigns; `nudge(company_id, campaign_id)` after a commit
    webhooks: WebhookDispatcher | None = None  # posts webhook deliveries; `nudge()` after a test delivery
    health: Callable[[], dict[str, Any]] = dict  # runtime stats (supervisors) for /health
    runtime: Runtime | None = None  # the supervision tree, read live (GET /admin/runtime, /metrics)
    metrics: Metrics = attrs.field(factory=Metrics)  # this app's Prometheus registry (GET /metrics)
    errors: ErrorTracker = attrs.field(factory=ErrorTracker)  # unhandled errors to Sentry (SENTRY_DSN)
    # the super admin's public files (logos, announcements' images), served at /public
    public_files: MediaStore = attrs.field(
        default=attrs.Factory(lambda self: MediaStore(self.config.data_dir / "public", prefix="/public"),
                              takes_self=True))
    # each company's due date and plan features, checked on every request (api/subscriptions.py)
    access: AccessCache = attrs.field(default=attrs.Factory(lambda self: AccessCache(self.db), takes_self=True))
    # imports of spreadsheets running at once (api/imports.py)
    import_slots: trio.CapacityLimiter = attrs.field(factory=lambda: trio.CapacityLimiter(2))
    # the public signup's rate limit: attempts per address per hour
    signup_throttle: LoginThrottle = attrs.field(default=attrs.Factory(
        lambda self: LoginThrottle(max_failures=self.config.signup_max_per_ip,
                                   max_per_ip=self.config.signup_max_per_ip, window=3600), takes_self=True))


def build_tokens(config: Config) -> TokenService:
    return TokenService(secret=config.jwt_secret, refresh_secret=config.jwt_refresh_secret,
                        access_ttl=config.access_token_ttl, refresh_ttl=config.refresh_token_ttl,
                        expired_status=config.expired_token_status)


def build_throttle(config: Config) -> LoginThrottle:
    return LoginThrottle(max_failures=config.login_max_failures, max_per_ip=config.login_max_failures_per_ip,
                         window=config.login_window)


def create_app(deps: Deps) -> QuartTrio:
    app = QuartTrio("zapgate", static_folder=None)  # no /static route: zapgate serves no static folder
    app.config["MAX_CONTENT_LENGTH"] = deps.config.upload_max_size
    app.config["MAX_FORM_MEMORY_SIZE"] = deps.config.json_max_size
    app.config["JSON_SORT_KEYS"] = False
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = True
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["zapgate"] = deps
    allowed_origins = set(deps.config.frontend_urls)

    @app.before_request
    async def start_request() -> Response | None:
        g.started = time.perf_counter()
        incoming = request.headers.get("X-Request-Id", "")
        g.request_id = incoming if 0 < len(incoming) <= 64 and incoming.isprintable() else uuid.uuid4().hex
        if request.method == "OPTIONS":
            return Response("", status=204)
        length = request.content_length
        if length is not None and length > deps.config.json_max_size and _is_json():
            from api.errors import error_response

            return error_response(413, "ERR_PAYLOAD_TOO_LARGE",
                                  f"JSON bodies are limited to {deps.config.json_max_size} bytes")
        view = app.view_functions.get(request.endpoint or "")
        if view is not None and not getattr(view, "_zapgate_public", False):
            auth_module.authenticate_request(deps.tokens)
            await check_request(deps.access, view)
        return None

    @app.after_request
    async def finish_request(response: Response) -> Response:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        response.headers["X-Request-Id"] = g.get("request_id", "")
        if response.status_code >= 400 and _has_body():
            # A refused request's body may still be arriving, unread; the server would stop reading the
            # connection, and a keep-alive client's next request on it would hang. Close it instead.
            response.headers["Connection"] = "close"
        origin = request.headers.get("Origin")
        if origin and origin.rstrip("/") in allowed_origins:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Allow-Credentials"] = "true"
            # Date: the frontends compare it with the client's clock on every load (a skew warning)
            response.headers["Access-Control-Expose-Headers"] = "X-Request-Id, Retry-After, Date"
            response.headers.add("Vary", "Origin")
            if request.method == "OPTIONS":
                response.headers["Access-Control-Allow-Methods"] = CORS_METHODS
                response.headers["Access-Control-Allow-Headers"] = (
                    request.headers.get("Access-Control-Request-Headers") or "Authorization, Content-Type"
                )
                response.headers["Access-Control-Max-Age"] = CORS_MAX_AGE
        _log_request(response)
        rule = request.url_rule
        deps.metrics.observe_request(request.method, rule.rule if rule is not None else None, response.status_code,
                                     time.perf_counter() - g.get("started", time.perf_counter()))
        return response

    register_error_handlers(app, report=deps.errors.report)
    app.asgi_app = _without_trailing_slash(app.asgi_app)  # type: ignore[method-assign]

    from api import (
        announcements,
        auth_routes,
        campaigns,
        chats,
        companies,
        contact_lists,
        contacts,
        dashboard,
        files,
        health,
        helps,
        invoices,
        media,
        messages,
        metrics,
        openapi,
        plans,
        queue_options,
        queues,
        quick_messages,
        ratings,
        reports,
        runtime_view,
        sandbox,
        scheduled_messages,
        settings,
        tags,
        ticket_notes,
        tickets,
        users,
        version,
        webhooks,
        whatsapp,
    )

    for module in (version, health, auth_routes, users, companies, settings, whatsapp, queues, contacts, media,
                   tickets, messages, announcements, helps, chats, tags, files, plans, invoices, queue_options,
                   ratings, quick_messages, ticket_notes, scheduled_messages):
        app.register_blueprint(module.blueprint)
    app.register_blueprint(contact_lists.blueprint)
    app.register_blueprint(campaigns.blueprint)
    app.register_blueprint(webhooks.blueprint)
    app.register_blueprint(metrics.blueprint)
    app.register_blueprint(runtime_view.blueprint)
    app.register_blueprint(dashboard.blueprint)
    app.register_blueprint(reports.blueprint)
    app.register_blueprint(openapi.blueprint)  # /openapi.json and /docs: every route must be in the spec
    if deps.sandbox is not None:
        app.register_blueprint(sandbox.blueprint)
    if deps.realtime is not None:
        app.register_blueprint(deps.realtime.blueprint())
    return app


def _without_trailing_slash(asgi_app: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """One rule for every route: `/tickets/` is `/tickets` (the family's frontends call both forms).

    Routes are declared without a trailing slash; a request path ending in slashes (other than `/`) is
    routed as the path without them, keeping its query string. No redirect: a 308 would cost a round
    trip per call, and a preflighted CORS request cannot follow one.
    """

    async def app(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        path = scope.get("path", "")
        if scope["type"] in ("http", "websocket") and len(path) > 1 and path.endswith("/"):
            path = path.rstrip("/") or "/"
            scope = {**scope, "path": path}  # raw_path stays what the client sent
        await asgi_app(scope, receive, send)

    return app


def _is_json() -> bool:
    mimetype = request.mimetype or ""
    return mimetype == "application/json" or mimetype.endswith("+json")


def _has_body() -> bool:
    return bool(request.content_length) or "transfer-encoding" in request.headers


def _log_request(response: Response) -> None:
    duration_ms = round((time.perf_counter() - g.get("started", time.perf_counter())) * 1000, 2)
    principal = g.get("principal")
    fields = {
        "request_id": g.get("request_id"), "method": request.method, "path": request.path,
        "status": response.status_code, "duration_ms": duration_ms,
        "remote": request.remote_addr, "user_id": principal.user_id if principal else None,
    }
    level = logging.WARNING if response.status_code >= 500 else logging.INFO
    log.log(level, "%s %s %s %.1fms", request.method, request.path, response.status_code, duration_ms,
            extra={"fields": fields})


def deps_of(app: Any) -> Deps:
    return app.extensions["zapgate"]
