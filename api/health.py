"""Liveness and readiness.

`/health` (liveness) always answers 200 while the process runs: `"status": "ok"`, or `"degraded"` with
the reason while the database is down (`Database.health`: since when, the last error, counters of
outages and unavailable errors for metrics) or conversations' actors crash-loop (given up recently).
`/ready` (readiness) asks the database itself, bounded, and answers 503 with `Retry-After` while it
cannot be reached or its schema is not this version's.
"""

from __future__ import annotations

import logging

import trio
from quart import Blueprint, Response, current_app, jsonify

from api.app import deps_of
from api.auth import public
from gateway import __version__
from storage import migrate

log = logging.getLogger("zapgate.health")

blueprint = Blueprint("health", __name__)

READY_DEADLINE = 3.0  # seconds /ready waits for the database before it answers 503
RETRY_AFTER = "5"  # seconds, in the 503s of /ready


@blueprint.get("/health")
@public
async def health() -> Response:
    """Liveness: the process answers. Runtime stats (supervisor restarts, crash loops) are included."""
    deps = deps_of(current_app)
    stats = deps.health()
    database = deps.db.health.snapshot()
    body: dict[str, object] = {"status": "ok", "version": __version__, **stats, "database": database}
    reasons = []
    if database["status"] == "down":
        reasons.append(f"database unavailable since {database['downSince']}: {database['lastError']}")
    tickets = stats.get("tickets")
    if isinstance(tickets, dict) and tickets.get("crash_loop"):
        given_up = tickets.get("given_up_recent") or []
        reasons.append(f"conversations crash-looping ({len(given_up)} given up recently: {', '.join(given_up[:3])})")
    if reasons:
        body["status"] = "degraded"
        body["reason"] = "; ".join(reasons)
    return jsonify(body)


@blueprint.get("/ready")
@public
async def ready() -> Response:
    """Readiness: the database answers and its schema is the one this version expects."""
    deps = deps_of(current_app)
    expected = migrate.latest_version()
    version: int | None = None
    reason = f"no answer within {READY_DEADLINE:g}s"
    with trio.move_on_after(READY_DEADLINE):
        try:
            version = await deps.db.probe(migrate.current_version)
        except Exception as error:  # whatever keeps it from answering: not ready
            reason = (str(error).strip() or type(error).__name__)[:200]
    if version is None:
        since = deps.db.health.snapshot()["downSince"]
        return _unavailable({"status": "unavailable", "database": "unreachable", "reason": reason, "since": since})
    if version != expected:
        return _unavailable({"status": "unavailable", "database": "ok", "schema": version, "expected": expected})
    return jsonify({"status": "ready", "database": "ok", "schema": version})


def _unavailable(body: dict[str, object]) -> Response:
    response = jsonify(body)
    response.status_code = 503
    response.headers["Retry-After"] = RETRY_AFTER
    return response
