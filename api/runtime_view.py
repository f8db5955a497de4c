"""`GET /admin/runtime`: the live supervision view (super admins), the Bull Board of zapgate.

One route, two shapes: JSON for programs (`?format=json`, or an `Accept` preferring `application/json` —
httpx's and curl's `*/*` get JSON), a small server-rendered HTML page for browsers (`?format=html`, or an
`Accept` preferring `text/html`), rendered by api/runtime_page.py with no build step.

Authentication is the API's (a super admin's bearer token; 401 without one, 403 for anyone else), with one
exception for the browser: a page request with no `Authorization` header gets the page with a sign-in form
and no data. Its script signs in through `/auth/login` (the token kept in the tab's sessionStorage, renewed
through `/auth/refresh_token` and its cookie), or takes a token handed in the URL's fragment
(`/admin/runtime#token=…`, never sent to the server), then fetches the rendered page with the token every
`REFRESH_SECONDS` and swaps its content in: the view refreshes itself.

The view: api/runtime.py's snapshot (the supervision tree, the parts' figures, the database pool) and the
durable timers by kind — pending, due now, claimed — from one query bounded by `TIMERS_DEADLINE`.
"""

from __future__ import annotations

import datetime as dt
import secrets
from functools import partial
from typing import Any

import trio
from quart import Blueprint, Response, current_app, jsonify, request

from api import runtime_page
from api.app import Deps, deps_of
from api.auth import authenticate_request, public, require_super
from api.errors import ApiError, BadRequest
from storage import timers
from storage.errors import StorageError

blueprint = Blueprint("runtime", __name__)

TIMERS_DEADLINE = 3.0  # seconds the view waits for the timers' counts before showing it without them
FORMATS = ("json", "html")


@blueprint.get("/admin/runtime")
@public  # it authenticates itself: a browser's first visit (no token yet) gets the sign-in page
async def runtime() -> Response:
    deps = deps_of(current_app)
    html = _wants_html()
    if html and not request.headers.get("Authorization", "").strip():
        return _page(runtime_page.sign_in)
    authenticate_request(deps.tokens)
    require_super()
    if deps.runtime is None:
        raise ApiError("the supervision tree is not running", code="ERR_NOT_RUNNING", status=503)
    timers_by_kind = await _timers(deps)  # first: a database found away shows in the snapshot's health
    view = deps.runtime.snapshot()
    view["timers"] = timers_by_kind
    if html:
        return _page(partial(runtime_page.render, view))
    return jsonify(view)


def _wants_html() -> bool:
    chosen = request.args.get("format")
    if chosen is not None:
        if chosen not in FORMATS:
            raise BadRequest("format: must be json or html", code="ERR_VALIDATION", field="format")
        return chosen == "html"
    return request.accept_mimetypes.best_match(["application/json", "text/html"]) == "text/html"


async def _timers(deps: Deps) -> dict[str, Any]:
    """The live timers by kind (all companies): one query, bounded."""
    with trio.move_on_after(TIMERS_DEADLINE):
        try:
            rows = await deps.db.read(partial(timers.overview, now=dt.datetime.now(dt.UTC)))
        except StorageError as error:
            return {"error": (str(error) or type(error).__name__)[:200]}
        kinds = [{"kind": row["kind"], "pending": row["pending"], "due": row["due"], "claimed": row["claimed"],
                  "nextDueAt": _iso(row["next_due_at"]), "oldestClaimAt": _iso(row["oldest_claim_at"])}
                 for row in rows]
        return {"due": sum(k["due"] for k in kinds), "pending": sum(k["pending"] for k in kinds),
                "claimed": sum(k["claimed"] for k in kinds), "byKind": kinds}
    return {"error": f"the database did not answer within {TIMERS_DEADLINE:g}s"}


def _page(render: Any) -> Response:
    """The page with a nonce for its one script and one style block, and a policy allowing nothing else."""
    nonce = secrets.token_urlsafe(16)
    response = Response(render(nonce=nonce), status=200, content_type="text/html; charset=utf-8")
    response.headers["Content-Security-Policy"] = (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; connect-src 'self'; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
    response.headers["Cache-Control"] = "no-store"
    response.headers["Vary"] = "Accept, Authorization"
    return response


def _iso(when: dt.datetime | None) -> str | None:
    return None if when is None else when.isoformat(timespec="seconds")
