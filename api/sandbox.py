"""`/sandbox/:whatsappId/…`: drive the simulated WhatsApp network of a sandbox connection.

For company admins, on connections whose channel is `sandbox` (others: 400). Registered only when
the sandbox is enabled (ZAPGATE_SANDBOX, on by default). `GET /sandbox/:id/outbox` is what WhatsApp
accepted, once per message id, with `attempts` and `duplicates`: how tests count sends
(`?messageId=` for one message). `PUT /sandbox/:id/registry` says which numbers have no WhatsApp account
(the connection's number checks).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from typing import Any

from quart import Blueprint, Response, current_app, jsonify, request

from api.app import Deps, deps_of
from api.auth import current, require_admin
from api.errors import ApiError, BadRequest
from api.validation import Field, check_field, json_body, path_id, validate
from gateway.whatsapp.sandbox import SandboxError, SandboxNetwork, phone_digits
from gateway.whatsapp.sandbox_messages import MESSAGE_ID
from storage import whatsapps

blueprint = Blueprint("sandbox", __name__, url_prefix="/sandbox")

MEDIA_KINDS = ("image", "video", "audio", "ptt", "document", "sticker")
INBOUND = {
    "from": Field("str", required=True, max_len=64),
    "name": Field("str", nullable=True, max_len=255),
    "lid": Field("str", nullable=True, max_len=128),
    "id": Field("str", nullable=True, max_len=128),
    "body": Field("str", max_len=65_536, strip=False),
    "quotedId": Field("str", nullable=True, max_len=128),
}
MEDIA = {
    "kind": Field("str", required=True, choices=MEDIA_KINDS),
    "mimetype": Field("str", required=True, max_len=255),
    "filename": Field("str", nullable=True, max_len=255),
    "base64": Field("str", required=True, max_len=2**31, strip=False),
}
FAULTS = ("disconnect", "logout", "ban", "send_failure", "latency", "slow_answer", "crash")


async def _sandbox_connection(raw_id: str) -> tuple[Deps, SandboxNetwork, dict[str, Any]]:
    principal = current()
    deps = deps_of(current_app)
    row = await whatsapps.show_whatsapp(deps.db, principal.company_id, path_id(raw_id, "connection"))
    require_admin()
    if row["channel"] != "sandbox":
        raise BadRequest("this connection is not a sandbox connection", code="ERR_NOT_SANDBOX")
    assert deps.sandbox is not None  # the blueprint is registered only with a sandbox
    return deps, deps.sandbox, row


# Refusals of the network that are bad input: 400, naming the field to blame (None: no single one).
# The network holding as many events as it may (queued or not yet settled): 429, retry later; its
# journal or its outbox failing: 503. The others are about the connection's state (not showing a QR, not paired): 409.
_BAD_INPUT: dict[str, str | None] = {
    "ERR_SANDBOX_BAD_SENDER": "from", "ERR_SANDBOX_BAD_ID": "id", "ERR_SANDBOX_BAD_GROUP": "group.id",
    "ERR_SANDBOX_BAD_TIMESTAMP": "timestamp", "ERR_SANDBOX_BAD_MEDIA": "media", "ERR_SANDBOX_BAD_MESSAGE": None,
    "ERR_SANDBOX_BAD_NUMBER": "number", "ERR_SANDBOX_BAD_ACK": "ack", "ERR_SANDBOX_UNKNOWN_FAULT": "kind",
    "ERR_SANDBOX_BAD_FAULT": None, "ERR_SANDBOX_CRASH_DISABLED": "kind",
}


def _sandbox_error(error: SandboxError, *, field: str | None = None) -> ApiError:
    code = getattr(error, "code", "ERR_SANDBOX")
    if code == "ERR_SANDBOX_MEDIA_TOO_LARGE":
        return ApiError(str(error), code=code, status=413, field="media.base64")
    if code in _BAD_INPUT:
        return BadRequest(str(error), code=code, field=field or _BAD_INPUT[code])
    if code == "ERR_SANDBOX_QUEUE_FULL":
        return ApiError(str(error), code=code, status=429, headers={"Retry-After": "1"})
    if code in ("ERR_SANDBOX_JOURNAL", "ERR_SANDBOX_OUTBOX"):
        return ApiError(str(error), code=code, status=503, headers={"Retry-After": "5"})
    return ApiError(str(error), code=code, status=409)


def _object(data: dict[str, Any], name: str) -> dict[str, Any] | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BadRequest(f"{name}: must be an object", code="ERR_VALIDATION", field=name)
    return value


def _nested(name: str, value: dict[str, Any], spec: dict[str, Field]) -> dict[str, Any]:
    """Validate an object inside the body; errors name `name.field`."""
    try:
        return validate(value, spec)
    except BadRequest as error:
        raise BadRequest(f"{name}.{error.message}", code=error.code, field=f"{name}.{error.field}") from None


def _timestamp(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not 0 <= value < 10**11:
            raise BadRequest("timestamp: out of range", code="ERR_VALIDATION", field="timestamp")
        return dt.datetime.fromtimestamp(value, dt.UTC)
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise BadRequest("timestamp: must be ISO 8601 or seconds since 1970", code="ERR_VALIDATION",
                             field="timestamp") from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    raise BadRequest("timestamp: must be ISO 8601 or seconds since 1970", code="ERR_VALIDATION", field="timestamp")


@blueprint.get("/<whatsapp_id>")
async def state(whatsapp_id: str) -> Response:
    _, sandbox, row = await _sandbox_connection(whatsapp_id)
    try:
        sent = await sandbox.sent_count(row["id"])
    except SandboxError as error:
        raise _sandbox_error(error) from None
    return jsonify({**sandbox.state(row["id"]), "sent": sent})


@blueprint.post("/<whatsapp_id>/pair")
async def pair(whatsapp_id: str) -> Response:
    _, sandbox, row = await _sandbox_connection(whatsapp_id)
    data = validate(await json_body(), {"number": Field("str", nullable=True, max_len=32)})
    number = data.get("number")
    if number is not None:
        number = "".join(ch for ch in number if ch.isdigit())
        if not 8 <= len(number) <= 15:
            raise BadRequest("number: must be a phone number with country code", code="ERR_VALIDATION",
                             field="number")
    try:
        return jsonify(sandbox.pair(row["id"], number))
    except SandboxError as error:
        raise _sandbox_error(error) from None


@blueprint.post("/<whatsapp_id>/inbound")
async def inbound(whatsapp_id: str) -> Response:
    _, sandbox, row = await _sandbox_connection(whatsapp_id)
    raw = await json_body()
    data = validate(raw, INBOUND)
    media = _object(raw, "media")
    if media is not None:
        checked = _nested("media", media, MEDIA)
        try:
            payload = base64.b64decode(checked["base64"], validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest("media.base64: not valid base64", code="ERR_VALIDATION", field="media.base64") from None
        media = {"kind": checked["kind"], "mimetype": checked["mimetype"], "filename": checked.get("filename"),
                 "base64": checked["base64"], "size": len(payload)}
    group = _object(raw, "group")
    if group is not None:
        group = {"id": check_field("group.id", group.get("id"), Field("str", required=True, max_len=128)),
                 "name": check_field("group.name", group.get("name", ""), Field("str", max_len=255))}
    extra: dict[str, Any] = {}
    for kind, spec in (("reaction", {"targetId": Field("str", required=True, max_len=128),
                                     "emoji": Field("str", max_len=32, strip=False)}),
                       ("edit", {"targetId": Field("str", required=True, max_len=128),
                                 "body": Field("str", required=True, max_len=65_536, strip=False)}),
                       ("revoke", {"targetId": Field("str", required=True, max_len=128)})):
        value = _object(raw, kind)
        if value is not None:
            extra[kind] = _nested(kind, value, spec)
    try:
        message_id = await sandbox.inbound(
            row["id"], sender=data["from"], name=data.get("name"), lid=data.get("lid"), id=data.get("id"),
            body=data.get("body", ""), media=media, quoted_id=data.get("quotedId"),
            timestamp=_timestamp(raw.get("timestamp")), group=group, **extra)
    except SandboxError as error:
        # a sender the network refuses while `from` is a phone number: the LID is to blame
        lid_to_blame = (error.code == "ERR_SANDBOX_BAD_SENDER" and data.get("lid") is not None
                        and phone_digits(data["from"]) is not None)
        raise _sandbox_error(error, field="lid" if lid_to_blame else None) from None
    return jsonify({"id": message_id})


@blueprint.get("/<whatsapp_id>/outbox")
async def outbox(whatsapp_id: str) -> Response:
    """What WhatsApp accepted through the connection, oldest first, each message id once (`attempts`: the sends
    that carried it; `duplicates`: those repeating it after it was accepted). `?messageId=`: that one ([] or 1)."""
    _, sandbox, row = await _sandbox_connection(whatsapp_id)
    message_id = request.args.get("messageId")
    if message_id is not None and not MESSAGE_ID.fullmatch(message_id):
        raise BadRequest("messageId: must be 1-128 letters, digits or ._:-", code="ERR_VALIDATION", field="messageId")
    try:
        return jsonify(await sandbox.outbox(row["id"], message_id=message_id))
    except SandboxError as error:
        raise _sandbox_error(error) from None


@blueprint.post("/<whatsapp_id>/ack")
async def ack(whatsapp_id: str) -> Response:
    _, sandbox, row = await _sandbox_connection(whatsapp_id)
    data = validate(await json_body(), {"id": Field("str", required=True, max_len=128),
                                        "ack": Field("str", required=True, choices=("delivered", "read"))})
    try:
        await sandbox.ack(row["id"], data["id"], data["ack"])
    except SandboxError as error:
        raise _sandbox_error(error) from None
    return jsonify({"id": data["id"], "ack": data["ack"]})


@blueprint.put("/<whatsapp_id>/registry")
async def registry(whatsapp_id: str) -> Response:
    """Who has a WhatsApp account as the connection's number checks see it (`is_on_whatsapp`): every phone
    number but `notOnWhatsapp` and those starting with one of `notOnWhatsappPrefixes` (replaces the last)."""
    _, sandbox, row = await _sandbox_connection(whatsapp_id)
    raw = await json_body()
    lists = {}
    for name in ("notOnWhatsapp", "notOnWhatsappPrefixes"):
        value = raw.get(name, [])
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise BadRequest(f"{name}: must be a list of strings", code="ERR_VALIDATION", field=name)
        lists[name] = value
    try:
        answer = sandbox.registry(row["id"], not_on_whatsapp=lists["notOnWhatsapp"],
                                  prefixes=lists["notOnWhatsappPrefixes"])
    except SandboxError as error:
        raise _sandbox_error(error, field="notOnWhatsapp") from None
    return jsonify(answer)


@blueprint.post("/<whatsapp_id>/fault")
async def fault(whatsapp_id: str) -> Response:
    _, sandbox, row = await _sandbox_connection(whatsapp_id)
    raw = await json_body()
    kind = check_field("kind", raw.get("kind"), Field("str", required=True, choices=FAULTS))
    params: dict[str, Any] = {}
    if kind == "disconnect" and "redeliver" in raw:
        params["redeliver"] = check_field("redeliver", raw["redeliver"], Field("int", minimum=0, maximum=1000))
    if kind == "crash" and "count" in raw:
        params["count"] = check_field("count", raw["count"], Field("int", minimum=1, maximum=1000))
    if kind == "send_failure":
        if "count" in raw:
            params["count"] = check_field("count", raw["count"], Field("int", minimum=1, maximum=100_000))
        if "reason" in raw:
            params["reason"] = check_field("reason", raw["reason"], Field("str", max_len=500))
    if kind in ("latency", "slow_answer"):
        seconds = raw.get("seconds")
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds <= 60:
            raise BadRequest("seconds: must be a number between 0 and 60", code="ERR_VALIDATION", field="seconds")
        params["seconds"] = float(seconds)
    if kind == "ban" and "reason" in raw:
        params["reason"] = check_field("reason", raw["reason"], Field("str", max_len=500))
    try:
        sandbox.fault(row["id"], kind, **params)
    except SandboxError as error:
        raise _sandbox_error(error) from None
    return jsonify({"kind": kind, **params})
