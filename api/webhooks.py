"""`/webhooks`: a company's outbound webhooks (admins only), their secret, test and delivery log.

- `GET /webhooks?pageNumber=` → `{webhooks, count, hasMore}` (20 a page)
- `POST /webhooks` `{url, events[], enabled?, description?}` → 201, the webhook with its `secret` (`whsec_…`),
  the only answer that shows it (with `POST /webhooks/:id/rotate-secret`)
- `GET|PUT|DELETE /webhooks/:id` (PUT: any of the four fields; `enabled: true` clears a disabled reason)
- `POST /webhooks/:id/test` → 202, a `webhook.test` delivery, posted by the same actor as the others
- `GET /webhooks/:id/deliveries?pageNumber=&status=` → `{deliveries, count, hasMore}`, newest first

A URL is refused with 400 `ERR_WEBHOOK_URL` when it is not http(s) or (unless WEBHOOK_ALLOW_PRIVATE=on) its
host resolves to a loopback, link-local or private address; the delivery actor checks again at each post.
Events and payloads: README "Webhooks". The rows and triggers: storage/webhooks.py, migration 0023.
"""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response, current_app, jsonify, request

from api.app import deps_of
from api.auth import require_admin
from api.errors import BadRequest
from api.validation import Field, json_body, page, path_id, validate
from gateway.ssrf import RefusedDestination, check_destination
from storage import webhooks
from storage.db import Row

blueprint = Blueprint("webhooks", __name__, url_prefix="/webhooks")

PAGE_SIZE = 20
STATUSES = ("pending", "delivered", "failed")
FIELDS = {
    "url": Field("str", required=True, max_len=2000),
    "enabled": Field("bool"),
    "description": Field("str", nullable=True, max_len=500),
}


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def present(row: Row, *, secret: bool = False) -> dict[str, Any]:
    shown = {"id": row["id"], "companyId": row["company_id"], "url": row["url"], "events": list(row["events"]),
             "enabled": row["enabled"], "description": row["description"],
             "disabledReason": row["disabled_reason"], "disabledAt": _iso(row["disabled_at"]),
             "failingSince": _iso(row["failing_since"]), "createdAt": _iso(row["created_at"]),
             "updatedAt": _iso(row["updated_at"])}
    if secret:
        shown["secret"] = row["secret"]
    return shown


def present_delivery(row: Row) -> dict[str, Any]:
    pending = row["status"] == "pending"
    return {"id": row["id"], "webhookId": row["webhook_id"], "messageId": f"msg_{row['uid'].hex}",
            "event": row["event"], "status": row["status"], "attempts": row["attempts"],
            "lastStatusCode": row["last_status_code"], "lastResponse": row["last_response"],
            "lastError": row["last_error"], "lastAttemptAt": _iso(row["last_attempt_at"]),
            "nextAttemptAt": _iso(row["next_attempt_at"]) if pending else None,
            "createdAt": _iso(row["created_at"]), "finishedAt": _iso(row["finished_at"]),
            "payload": row["payload"]}


def _events(value: Any) -> list[str]:
    if not isinstance(value, list) or not value:
        raise BadRequest("events: must be a non-empty list of event names", code="ERR_VALIDATION", field="events")
    if len(value) > len(webhooks.EVENTS):
        raise BadRequest("events: too many", code="ERR_VALIDATION", field="events")
    unknown = [event for event in value if event not in webhooks.EVENTS]
    if unknown:
        raise BadRequest(f"events: unknown event {str(unknown[0])[:50]!r} (known: {', '.join(webhooks.EVENTS)})",
                         code="ERR_VALIDATION", field="events")
    return sorted(set(value), key=webhooks.EVENTS.index)


async def _body(*, partial: bool) -> dict[str, Any]:
    raw = await json_body()
    data = validate(raw, FIELDS, partial=partial)
    if "events" in raw or not partial:
        data["events"] = _events(raw.get("events"))
    if "url" in data:
        try:
            await check_destination(data["url"], allow_private=deps_of(current_app).config.webhook_allow_private)
        except RefusedDestination as error:
            raise BadRequest(f"url: {error}", code="ERR_WEBHOOK_URL", field="url") from None
    if "description" in data:
        data["description"] = data["description"] or ""
    return data


@blueprint.get("")
async def list_webhooks() -> Response:
    principal = require_admin()
    limit, offset = page(PAGE_SIZE)
    rows, count = await webhooks.list_webhooks(deps_of(current_app).db, principal.company_id, limit=limit,
                                               offset=offset)
    return jsonify({"webhooks": [present(row) for row in rows], "count": count,
                    "hasMore": offset + len(rows) < count})


@blueprint.post("")
async def create_webhook() -> tuple[Response, int]:
    principal = require_admin()
    data = await _body(partial=False)
    row = await webhooks.create_webhook(deps_of(current_app).db, principal.company_id, url=data["url"],
                                        events=data["events"], enabled=data.get("enabled", True),
                                        description=data.get("description", ""))
    return jsonify(present(row, secret=True)), 201


@blueprint.get("/<webhook_id>")
async def show_webhook(webhook_id: str) -> Response:
    principal = require_admin()
    row = await webhooks.show_webhook(deps_of(current_app).db, principal.company_id, path_id(webhook_id, "webhook"))
    return jsonify(present(row))


@blueprint.put("/<webhook_id>")
async def update_webhook(webhook_id: str) -> Response:
    principal = require_admin()
    deps = deps_of(current_app)
    existing = await webhooks.show_webhook(deps.db, principal.company_id, path_id(webhook_id, "webhook"))
    data = await _body(partial=True)
    row = await webhooks.update_webhook(deps.db, principal.company_id, existing["id"], data)
    if deps.webhooks is not None and row["enabled"]:
        deps.webhooks.nudge()  # re-enabled: its waiting deliveries go now
    return jsonify(present(row))


@blueprint.delete("/<webhook_id>")
async def delete_webhook(webhook_id: str) -> Response:
    principal = require_admin()
    await webhooks.delete_webhook(deps_of(current_app).db, principal.company_id, path_id(webhook_id, "webhook"))
    return jsonify({"message": "webhook deleted"})


@blueprint.post("/<webhook_id>/rotate-secret")
async def rotate_secret(webhook_id: str) -> Response:
    """A new secret, shown once; the deliveries still pending are signed with it."""
    principal = require_admin()
    row = await webhooks.rotate_secret(deps_of(current_app).db, principal.company_id, path_id(webhook_id, "webhook"))
    return jsonify(present(row, secret=True))


@blueprint.post("/<webhook_id>/test")
async def test_webhook(webhook_id: str) -> tuple[Response, int]:
    principal = require_admin()
    deps = deps_of(current_app)
    row = await webhooks.test_delivery(deps.db, principal.company_id, path_id(webhook_id, "webhook"))
    if deps.webhooks is not None:
        deps.webhooks.nudge()
    return jsonify(present_delivery(row)), 202


@blueprint.get("/<webhook_id>/deliveries")
async def list_deliveries(webhook_id: str) -> Response:
    principal = require_admin()
    deps = deps_of(current_app)
    existing = await webhooks.show_webhook(deps.db, principal.company_id, path_id(webhook_id, "webhook"))
    status = request.args.get("status") or None
    if status is not None and status not in STATUSES:
        raise BadRequest(f"status: must be one of {', '.join(STATUSES)}", code="ERR_VALIDATION", field="status")
    limit, offset = page(PAGE_SIZE)
    rows, count = await webhooks.deliveries_page(deps.db, principal.company_id, existing["id"], status=status,
                                                 limit=limit, offset=offset)
    return jsonify({"deliveries": [present_delivery(row) for row in rows], "count": count,
                    "hasMore": offset + len(rows) < count})
