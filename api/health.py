"""Liveness and readiness."""

from __future__ import annotations

from quart import Blueprint, Response, current_app, jsonify

from api.app import deps_of
from api.auth import public
from gateway import __version__
from storage import migrate

blueprint = Blueprint("health", __name__)


@blueprint.get("/health")
@public
async def health() -> Response:
    """Liveness: the process answers. Runtime stats (supervisor restarts, crash loops) are included."""
    stats = deps_of(current_app).health()
    return jsonify({"status": "ok", "version": __version__, **stats})


@blueprint.get("/ready")
@public
async def ready() -> tuple[Response, int]:
    """Readiness: the database answers and its schema is the one this version expects."""
    deps = deps_of(current_app)
    expected = migrate.latest_version()
    try:
        version = await deps.db.run(migrate.current_version)
    except Exception as error:
        return jsonify({"status": "unavailable", "database": "unreachable", "reason": str(error)[:200]}), 503
    if version != expected:
        return jsonify({"status": "unavailable", "database": "ok", "schema": version, "expected": expected}), 503
    return jsonify({"status": "ready", "database": "ok", "schema": version}), 200
