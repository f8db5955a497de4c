"""`/whatsapp` (connections CRUD), `/whatsappsession/:id` (start, new QR, log out), the QR as an image."""

from __future__ import annotations

import io
import logging
import secrets

from quart import Blueprint, Response, current_app, jsonify, request

from api import present
from api.app import Deps, deps_of
from api.auth import Principal, current, require_admin
from api.errors import ApiError, BadRequest, NotFound
from api.schedules import check_schedules
from api.validation import Field, body, json_body, path_id, validate
from storage import whatsapps

log = logging.getLogger("zapgate.api.whatsapp")
blueprint = Blueprint("whatsapp", __name__)

TEXT = 10_000
MINUTES_A_YEAR = 525_600
CONNECTION_FIELDS = {
    "name": Field("str", required=True, max_len=255),
    "channel": Field("str", choices=("whatsapp", "sandbox")),
    "isDefault": Field("bool"),
    "greetingMessage": Field("str", nullable=True, max_len=TEXT, strip=False),
    "farewellMessage": Field("str", nullable=True, max_len=TEXT, strip=False),
    "complationMessage": Field("str", nullable=True, max_len=TEXT, strip=False),
    "outOfHoursMessage": Field("str", nullable=True, max_len=TEXT, strip=False),
    "token": Field("str", nullable=True, min_len=16, max_len=255),
    "queueIds": Field("list_of_int", max_items=500),
    # what routing reads (issue 12): the rating question, the transfer notice, closing a silent ticket after
    # expiresTicket minutes (0: never) with expiresInactiveMessage, the menu re-sent at most maxUseBotQueues
    # times to unknown answers, at least timeUseBotQueues minutes apart
    "ratingMessage": Field("str", nullable=True, max_len=TEXT, strip=False),
    "transferMessage": Field("str", nullable=True, max_len=TEXT, strip=False),
    "expiresTicket": Field("int", nullable=True, minimum=0, maximum=MINUTES_A_YEAR),
    "expiresInactiveMessage": Field("str", nullable=True, max_len=TEXT, strip=False),
    "maxUseBotQueues": Field("int", nullable=True, minimum=0, maximum=100),
    "timeUseBotQueues": Field("int", nullable=True, minimum=0, maximum=MINUTES_A_YEAR),
}
_COLUMNS = {"name": "name", "isDefault": "is_default", "greetingMessage": "greeting_message",
            "farewellMessage": "farewell_message", "complationMessage": "complation_message",
            "outOfHoursMessage": "out_of_hours_message", "token": "token", "queueIds": "queue_ids",
            "channel": "channel", "ratingMessage": "rating_message", "transferMessage": "transfer_message",
            "expiresTicket": "expires_ticket", "expiresInactiveMessage": "expires_inactive_message",
            "maxUseBotQueues": "max_use_bot_queues", "timeUseBotQueues": "time_use_bot_queues",
            "schedules": "schedules"}
# A blank or null number from a form: its default (the SaaS lineage keeps some of these as strings, "0").
NUMBER_DEFAULTS = {"expiresTicket": 0, "maxUseBotQueues": 3, "timeUseBotQueues": 0}


async def _connection_body(*, partial: bool) -> dict:
    """The connection fields of the body. A blank `token` means "none given": the family's connection form
    sends `token: ""` when nobody typed one; a new connection then gets a generated token, an edited one
    keeps its own (blanking it would cut off the integrations using it)."""
    raw = await json_body()
    if raw.get("token") in ("", None):
        raw = {key: value for key, value in raw.items() if key != "token"}
    for key, default in NUMBER_DEFAULTS.items():
        if key in raw and (raw[key] is None or (isinstance(raw[key], str) and not raw[key].strip())):
            raw[key] = default
    data = validate(raw, CONNECTION_FIELDS, partial=partial)
    if "schedules" in raw and (raw["schedules"] is not None or not partial):
        data["schedules"] = check_schedules(raw["schedules"])  # its hours, when scheduleType is "connection"
    return data


def _fields(data: dict) -> dict:
    return {_COLUMNS[key]: value for key, value in data.items() if key in _COLUMNS}


def _publish(deps: Deps, company_id: int, payload: dict) -> None:
    deps.broker.publish(company_id, f"company-{company_id}-whatsapp", payload)


async def _connection(deps: Deps, company_id: int, raw_id: str) -> dict:
    return await whatsapps.show_whatsapp(deps.db, company_id, path_id(raw_id, "connection"))


def _check_channel(deps: Deps, channel: str) -> None:
    if channel == "sandbox" and deps.sandbox is None:
        raise BadRequest("the sandbox is disabled on this server (ZAPGATE_SANDBOX=off)", code="ERR_SANDBOX_DISABLED",
                         field="channel")


@blueprint.get("/whatsapp")
async def list_connections() -> Response:
    principal = current()
    rows = await whatsapps.list_whatsapps(deps_of(current_app).db, principal.company_id)
    return jsonify([present.whatsapp(row, show_token=principal.is_admin) for row in rows])


@blueprint.post("/whatsapp")
async def create_connection() -> tuple[Response, int]:
    principal = require_admin()
    deps = deps_of(current_app)
    data = await _connection_body(partial=False)
    fields = _fields(data)
    fields.setdefault("channel", deps.config.default_channel)
    _check_channel(deps, fields["channel"])
    if not fields.get("token"):
        fields["token"] = secrets.token_urlsafe(24)
    row = await whatsapps.create_whatsapp(deps.db, principal.company_id, fields)  # within the plan's limit
    _publish(deps, principal.company_id, {"action": "update", "whatsapp": present.session(row)})
    # As in the original: a new connection starts at once (and shows its QR code).
    handle = await deps.sessions.start(row["id"], principal.company_id)
    return jsonify({**present.whatsapp(row, show_token=True), "status": handle.status}), 201


@blueprint.get("/whatsapp/<whatsapp_id>")
async def show_connection(whatsapp_id: str) -> Response:
    principal = current()
    row = await _connection(deps_of(current_app), principal.company_id, whatsapp_id)
    return jsonify(present.whatsapp(row, show_token=principal.is_admin))


@blueprint.put("/whatsapp/<whatsapp_id>")
async def update_connection(whatsapp_id: str) -> Response:
    principal = current()
    deps = deps_of(current_app)
    existing = await _connection(deps, principal.company_id, whatsapp_id)
    require_admin()
    data = await _connection_body(partial=True)
    if "channel" in data and data["channel"] != existing["channel"]:
        raise BadRequest("channel: cannot change once created; create another connection",
                         code="ERR_VALIDATION", field="channel")
    row = await whatsapps.update_whatsapp(deps.db, principal.company_id, existing["id"], _fields(data))
    deps.tickets.forget_profiles(principal.company_id)  # its queues and expiry, for routing
    _publish(deps, principal.company_id, {"action": "update", "whatsapp": present.session(row)})
    return jsonify(present.whatsapp(row, show_token=True))


@blueprint.delete("/whatsapp/<whatsapp_id>")
async def delete_connection(whatsapp_id: str) -> Response:
    principal = current()
    deps = deps_of(current_app)
    existing = await _connection(deps, principal.company_id, whatsapp_id)
    require_admin()
    await deps.sessions.stop(existing["id"])  # the actor first: nothing may write to a deleted row
    await whatsapps.delete_whatsapp(deps.db, principal.company_id, existing["id"])
    if deps.sandbox is not None and existing["channel"] == "sandbox":
        await deps.sandbox.forget(existing["id"])
    _publish(deps, principal.company_id, {"action": "delete", "whatsappId": existing["id"]})
    return jsonify({"message": "connection deleted"})


@blueprint.get("/whatsapp/<whatsapp_id>/qrcode")
async def qrcode_image(whatsapp_id: str) -> Response:
    """The current QR code as SVG (default) or PNG (`?format=png`), for clients that cannot draw one."""
    principal = current()
    row = await _connection(deps_of(current_app), principal.company_id, whatsapp_id)
    if row["status"] != "qrcode" or not row["qrcode"]:
        raise NotFound("this connection is not showing a QR code (start it first)", code="ERR_NO_QRCODE")
    fmt = (request.args.get("format") or "svg").lower()
    if fmt not in ("svg", "png"):
        raise BadRequest("format: must be svg or png", code="ERR_VALIDATION", field="format")
    import segno

    buffer = io.BytesIO()
    segno.make(row["qrcode"], error="l").save(buffer, kind=fmt, scale=6, border=2)
    response = Response(buffer.getvalue(), mimetype="image/svg+xml" if fmt == "svg" else "image/png")
    response.headers["Cache-Control"] = "no-store"
    return response


# ─── /whatsappsession/:id ───────────────────────────────────────────────────────────────

async def _managed_connection(whatsapp_id: str) -> tuple[Principal, Deps, dict]:
    """The caller's company's connection (404 otherwise), for an admin (403 otherwise)."""
    principal = current()
    deps = deps_of(current_app)
    row = await _connection(deps, principal.company_id, whatsapp_id)
    require_admin()
    return principal, deps, row


@blueprint.post("/whatsappsession/<whatsapp_id>")
async def start_session(whatsapp_id: str) -> Response:
    principal, deps, row = await _managed_connection(whatsapp_id)
    _check_channel(deps, row["channel"])
    handle = await deps.sessions.start(row["id"], principal.company_id)
    return jsonify({"message": "starting", "status": handle.status})


@blueprint.put("/whatsappsession/<whatsapp_id>")
async def renew_qrcode(whatsapp_id: str) -> Response:
    """A new QR code: the session starts over (a connected one keeps its device and reconnects)."""
    principal, deps, row = await _managed_connection(whatsapp_id)
    _check_channel(deps, row["channel"])
    handle = await deps.sessions.restart(row["id"], principal.company_id)
    return jsonify({"message": "restarting", "status": handle.status})


@blueprint.delete("/whatsappsession/<whatsapp_id>")
async def logout_session(whatsapp_id: str) -> Response:
    """Log out: unlink the device (a new QR is needed), status DISCONNECTED."""
    principal, deps, row = await _managed_connection(whatsapp_id)
    handle = deps.sessions.lookup(row["id"])
    if handle is not None and handle.status == "CONNECTED":
        from trio import move_on_after

        with move_on_after(10):
            await handle.logout()
            await handle.wait_ended()
    if deps.sessions.lookup(row["id"]) is not None:
        await deps.sessions.stop(row["id"])
    await deps.sessions.store.save_device(row["id"], None)
    if row["channel"] == "sandbox" and deps.sandbox is not None:
        await deps.sandbox.forget(row["id"])
    updated = await deps.sessions.store.set_status(row["id"], "DISCONNECTED", qrcode="", retries=0,
                                                   disconnect_reason="logged out from zapgate")
    deps.broker.publish(principal.company_id, f"company-{principal.company_id}-whatsappSession",
                        {"action": "update", "session": present.session(updated)})
    return jsonify({"message": "logged out"})


@blueprint.post("/whatsappsession/<whatsapp_id>/pairing-code")
async def pairing_code(whatsapp_id: str) -> Response:
    """Pair by phone number instead of a QR scan: `{number}` → `{code}` to type on the phone."""
    principal, deps, row = await _managed_connection(whatsapp_id)
    data = await body({"number": Field("str", required=True, max_len=32)})
    number = "".join(ch for ch in data["number"] if ch.isdigit())
    if not 8 <= len(number) <= 15:
        raise BadRequest("number: must be a phone number with country code", code="ERR_VALIDATION", field="number")
    handle = deps.sessions.lookup(row["id"]) or await deps.sessions.start(row["id"], principal.company_id)
    from actors.session import SessionEnded
    from gateway.whatsapp.transport import TransportError

    try:
        code = await handle.request_pairing_code(number)
    except (TransportError, SessionEnded) as error:
        raise ApiError(f"cannot request a pairing code now: {error}", code="ERR_SESSION_NOT_READY",
                       status=409) from None
    return jsonify({"code": code})
