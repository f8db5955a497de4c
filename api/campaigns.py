"""Campaigns (`/campaigns`) and their settings (`/campaign-settings`), with ticketz's routes and shapes, plus
zapgate's pause/resume, delivery report, shipping rows and export. Any user of the company (ticketz's routes
ask only for a login); the company's plan must include `useCampaigns` (403 `ERR_PLAN_FEATURE_DISABLED`).

    GET    /campaigns?searchParam=&pageNumber=   {records, count, hasMore} (20 a page, by name)
    GET    /campaigns/list                       every campaign
    POST   /campaigns                            {name, whatsappId, contactListId | tagId, scheduledAt,
                                                  message1..5, confirmation, confirmationMessage1..5}
    GET    /campaigns/:id                        {campaign, valids, delivered, confirmationRequested, confirmed}
    PUT    /campaigns/:id                        INATIVA or PROGRAMADA only
    DELETE /campaigns/:id                        not while EM_ANDAMENTO
    POST   /campaigns/:id/cancel | restart       204 (ticketz's)
    POST   /campaigns/:id/pause {reason?} | resume   the campaign (status stays EM_ANDAMENTO)
    POST/DELETE /campaigns/:id/media-upload      multipart `file`
    GET    /campaigns/:id/report                 {total, queued, sending, sent, delivered, read, failed,
                                                  failedReasons, skipped, replied, optedOut,
                                                  confirmationRequested, confirmed}
    GET    /campaigns/:id/shippings?pageNumber=&state=   {records, count, hasMore}
    GET    /campaigns/:id/export?format=csv|xlsx the shipping rows, streamed
    GET    /campaign-settings                    [{key, value}] (value: JSON text; defaults for unsaved keys)
    POST   /campaign-settings {settings: {...}}  the same array after saving

Events `company-{id}-campaign`: `{action: "create" | "update", record}` (the list screen) carrying also
ticketz's report fields `{campaign, valids, delivered, confirmationRequested, confirmed}` (the report
screen); `{action: "delete", id}`. Settings: `company-{id}-campaignSettings` `{action: "create", record}`.
After every change the campaign core is nudged (`deps.campaigns.nudge(company_id, campaign_id)`).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from typing import Any

from quart import Blueprint, Response, current_app, jsonify, request

from actors import campaign_replies
from actors.routing import zone_of
from api import subscriptions
from api.app import Deps, deps_of
from api.auth import Principal, current
from api.errors import BadRequest, NotFound
from api.files import remove_media
from api.imports import EXPORT_SLICE, export_format, export_response
from api.present import _iso
from api.queues import REMOVED, SAVED, replace_media
from api.validation import Field, json_body, page, path_id, search_pattern, validate
from storage import campaigns, schedules
from storage.db import Row

blueprint = Blueprint("campaigns", __name__)
log = logging.getLogger("zapgate.campaigns")

PAGE_SIZE = 20  # ticketz's
SHIPPINGS_PAGE = 50
TEXT = 10_000
MESSAGES = tuple(f"message{n}" for n in range(1, 6))
CONFIRMATIONS = tuple(f"confirmationMessage{n}" for n in range(1, 6))
CAMPAIGN_FIELDS: dict[str, Field] = {
    "name": Field("str", required=True, min_len=3, max_len=255),
    "whatsappId": Field("int", nullable=True, minimum=1),
    "contactListId": Field("int", nullable=True, minimum=1),
    "tagId": Field("int", nullable=True, minimum=1),
    "confirmation": Field("bool", nullable=True),
    **{name: Field("str", nullable=True, max_len=TEXT, strip=False) for name in (*MESSAGES, *CONFIRMATIONS)},
}
COLUMNS = {"name": "name", "whatsappId": "whatsapp_id", "contactListId": "contact_list_id", "tagId": "tag_id",
           "confirmation": "confirmation", **{name: name for name in MESSAGES},
           **{name: f"confirmation_message{name[-1]}" for name in CONFIRMATIONS}}
INTEGER_SETTINGS = {"messageInterval": (0, 86_400), "longerIntervalAfter": (0, 1_000_000),
                    "greaterInterval": (0, 86_400), "dailyLimit": (0, 1_000_000), "warmupDays": (0, 365),
                    "warmupStart": (1, 1_000_000), "breakerFailures": (1, 10_000)}
MAX_VARIABLES = 100
VARIABLE_KEY = re.compile(r"[\w.\-]{1,50}")
EXPORT_HEADER = ["id", "number", "name", "state", "variant", "message", "error", "attempts", "sentAt", "deliveredAt",
                 "readAt", "repliedAt", "confirmationRequestedAt", "confirmedAt", "optedOut"]


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# ─── shapes and events ──────────────────────────────────────────────────────────────────

def present_campaign(row: Row) -> dict[str, Any]:
    """A campaign as ticketz's screens read it (camelCase, `contactList` and `whatsapp` as {id, name}); the
    report counts when the row carries them (storage.campaigns.show_in)."""
    shown: dict[str, Any] = {
        "id": row["id"], "name": row["name"], "status": row["status"], "confirmation": row["confirmation"],
        **{name: row[name] for name in MESSAGES},
        **{name: row[f"confirmation_message{name[-1]}"] for name in CONFIRMATIONS},
        "mediaPath": row["media_path"], "mediaName": row["media_name"],
        "scheduledAt": _iso(row["scheduled_at"]), "startedAt": _iso(row["started_at"]),
        "completedAt": _iso(row["completed_at"]), "pausedAt": _iso(row["paused_at"]),
        "pauseReason": row["pause_reason"], "paused": row["paused_at"] is not None,
        "companyId": row["company_id"], "whatsappId": row["whatsapp_id"], "contactListId": row["contact_list_id"],
        "tagId": row["tag_id"],
        "whatsapp": ({"id": row["whatsapp_id"], "name": row.get("whatsapp_name")}
                     if row["whatsapp_id"] is not None else None),
        "contactList": ({"id": row["contact_list_id"], "name": row.get("contact_list_name")}
                        if row["contact_list_id"] is not None else None),
        "tag": {"id": row["tag_id"], "name": row.get("tag_name")} if row["tag_id"] is not None else None,
        "createdAt": _iso(row["created_at"]), "updatedAt": _iso(row["updated_at"]),
    }
    if "valids" in row:
        shown.update(contactsCount=row["valids"], delivered=row["delivered"], sent=row["sent"],
                     confirmationRequested=row["confirmation_requested"], confirmed=row["confirmed"])
    return shown


def campaign_event(row: Row, action: str = "update") -> dict[str, Any]:
    """`company-{id}-campaign`'s payload: the list screen's `{action, record}` and the report screen's
    `{campaign, valids, delivered, confirmationRequested, confirmed}` in one (row: storage.campaigns.show_in)."""
    shown = present_campaign(row)
    return {"action": action, "record": shown, **_report_fields(shown)}


def _report_fields(shown: dict[str, Any]) -> dict[str, Any]:
    return {"campaign": shown, "valids": shown.get("contactsCount", 0), "delivered": shown.get("delivered", 0),
            "confirmationRequested": shown.get("confirmationRequested", 0), "confirmed": shown.get("confirmed", 0)}


def present_shipping(row: Row) -> dict[str, Any]:
    ack = row.get("ack")
    return {
        "id": row["id"], "campaignId": row["campaign_id"], "number": row["number"], "name": row["name"],
        "contactId": row["contact_id"], "contactListItemId": row["contact_list_item_id"], "variant": row["variant"],
        "state": row["state"], "message": row["message"], "confirmation": row["confirmation"],
        "confirmationMessage": row["confirmation_message"], "error": row["error"], "attempts": row["attempts"],
        "messageId": row["message_id"], "ack": ack, "sentAt": _iso(row["sent_at"]),
        "deliveredAt": _iso(row["delivered_at"]), "readAt": _iso(row["read_at"]),
        "delivered": row["delivered_at"] is not None or row["read_at"] is not None or (ack or 0) >= 3,
        "read": row["read_at"] is not None or (ack or 0) >= 4,
        "repliedAt": _iso(row["replied_at"]), "confirmationRequestedAt": _iso(row["confirmation_requested_at"]),
        "confirmedAt": _iso(row["confirmed_at"]), "optedOut": bool(row.get("opted_out")),
        "createdAt": _iso(row["created_at"]), "updatedAt": _iso(row["updated_at"]),
    }


def _publish(deps: Deps, company_id: int, payload: dict[str, Any]) -> None:
    deps.broker.publish(company_id, f"company-{company_id}-campaign", payload)


def _changed(deps: Deps, company_id: int, row: Row, action: str = "update") -> dict[str, Any]:
    """Announce the campaign and nudge the core (until the core is wired, `deps.campaigns` may be absent)."""
    _publish(deps, company_id, campaign_event(row, action))
    campaign_replies.forget(company_id)
    core = getattr(deps, "campaigns", None)
    if core is not None:
        core.nudge(company_id, row["id"])
    return present_campaign(row)


async def _guard() -> tuple[Principal, Deps]:
    principal = current()
    deps = deps_of(current_app)
    await subscriptions.require_feature(deps.access, principal.company_id, "use_campaigns")
    return principal, deps


def _invalid(field: str, message: str) -> BadRequest:
    return BadRequest(f"{field}: {message}", code="ERR_VALIDATION", field=field)


def _not_editable(error: campaigns.NotEditable) -> BadRequest:
    return BadRequest(f"{error} (the campaign is {error.status})", code="ERR_CAMPAIGN_NOT_EDITABLE")


# ─── request parsing ────────────────────────────────────────────────────────────────────

async def _parse(deps: Deps, company_id: int, *, partial: bool, existing: Row | None = None) -> dict[str, Any]:
    raw = await json_body()
    raw = {key: (None if value == "" and key != "name" else value) for key, value in raw.items()}
    for key in ("whatsappId", "contactListId", "tagId"):
        if raw.get(key) in (0, "0"):
            raw[key] = None
    checked = validate(raw, CAMPAIGN_FIELDS, partial=partial)
    fields = {COLUMNS[key]: ("" if value is None and (key in MESSAGES or key in CONFIRMATIONS) else value)
              for key, value in checked.items()}
    if fields.get("confirmation") is None and "confirmation" in fields:
        fields["confirmation"] = False
    if "scheduledAt" in raw:
        fields["scheduled_at"] = await _scheduled_at(deps, company_id, raw["scheduledAt"])
    merged = {**(existing or {}), **fields}
    if merged.get("contact_list_id") is not None and merged.get("tag_id") is not None:
        raise _invalid("tagId", "give a contactListId or a tagId, not both")
    if not any((merged.get(f"message{n}") or "").strip() for n in range(1, 6)):
        raise _invalid("message1", "at least one message is required")
    if merged.get("confirmation") and not any((merged.get(f"confirmation_message{n}") or "").strip()
                                              for n in range(1, 6)):
        raise _invalid("confirmationMessage1", "a confirmation campaign needs at least one confirmation message")
    missing = await campaigns.references(deps.db, company_id, whatsapp_id=fields.get("whatsapp_id"),
                                         contact_list_id=fields.get("contact_list_id"), tag_id=fields.get("tag_id"))
    if missing is not None:
        raise NotFound(f"{missing} {raw[missing]} not found")
    return fields


async def _scheduled_at(deps: Deps, company_id: int, value: Any) -> dt.datetime | None:
    """ticketz's form sends "YYYY-MM-DD HH:mm:ss" in the user's zone (the company's setting `timezone` here);
    ISO with an offset is taken as is. Must be in the future (or empty)."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > 64:
        raise _invalid("scheduledAt", "must be a date and time (such as 2030-05-10 09:30:00)")
    try:
        parsed = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace(" ", "T", 1))
    except ValueError:
        raise _invalid("scheduledAt", "must be a date and time (such as 2030-05-10 09:30:00)") from None
    if parsed.tzinfo is None:
        zone_name, _hours = await schedules.calendar(deps.db, company_id)
        parsed = parsed.replace(tzinfo=zone_of(zone_name))
    parsed = parsed.astimezone(dt.UTC)
    if parsed <= utc_now():
        raise _invalid("scheduledAt", "must be in the future (or empty: the campaign waits, INATIVA)")
    if parsed > utc_now() + dt.timedelta(days=3660):
        raise _invalid("scheduledAt", "must be within ten years")
    return parsed


# ─── campaigns ──────────────────────────────────────────────────────────────────────────

@blueprint.get("/campaigns")
async def list_campaigns() -> Response:
    principal, deps = await _guard()
    limit, offset = page(PAGE_SIZE)
    rows, count = await campaigns.list_campaigns(deps.db, principal.company_id, search=search_pattern(),
                                                 limit=limit, offset=offset)
    records = [present_campaign(row) for row in rows]
    return jsonify({"records": records, "count": count, "hasMore": offset + len(records) < count})


@blueprint.get("/campaigns/list")
async def all_campaigns() -> Response:
    principal, deps = await _guard()
    return jsonify([present_campaign(row) for row in await campaigns.all_campaigns(deps.db, principal.company_id)])


@blueprint.post("/campaigns")
async def create_campaign() -> Response:
    principal, deps = await _guard()
    fields = await _parse(deps, principal.company_id, partial=False)
    row = await campaigns.create(deps.db, principal.company_id, fields, user_id=principal.user_id)
    return jsonify(_changed(deps, principal.company_id, row, "create"))  # 200, as ticketz


@blueprint.get("/campaigns/<campaign_id>")
async def show_campaign(campaign_id: str) -> Response:
    principal, deps = await _guard()
    row = await campaigns.show(deps.db, principal.company_id, path_id(campaign_id, "campaign"))
    return jsonify(_report_fields(present_campaign(row)))


@blueprint.put("/campaigns/<campaign_id>")
async def update_campaign(campaign_id: str) -> Response:
    principal, deps = await _guard()
    existing = await campaigns.show(deps.db, principal.company_id, path_id(campaign_id, "campaign"))
    fields = await _parse(deps, principal.company_id, partial=True, existing=existing)
    try:
        row = await campaigns.update(deps.db, principal.company_id, existing["id"], fields)
    except campaigns.NotEditable as error:
        raise _not_editable(error) from None
    return jsonify(_changed(deps, principal.company_id, row))


@blueprint.delete("/campaigns/<campaign_id>")
async def delete_campaign(campaign_id: str) -> Response:
    principal, deps = await _guard()
    the_id = path_id(campaign_id, "campaign")
    try:
        media = await campaigns.delete(deps.db, principal.company_id, the_id)
    except campaigns.NotEditable as error:
        raise _not_editable(error) from None
    await remove_media(deps, [media] if media else [])
    _publish(deps, principal.company_id, {"action": "delete", "id": the_id})
    core = getattr(deps, "campaigns", None)
    if core is not None:
        core.nudge(principal.company_id, the_id)
    return jsonify({"message": "Campaign deleted"})


@blueprint.post("/campaigns/<campaign_id>/cancel")
async def cancel_campaign(campaign_id: str) -> Response:
    principal, deps = await _guard()
    try:
        row = await campaigns.cancel(deps.db, principal.company_id, path_id(campaign_id, "campaign"), now=utc_now())
    except campaigns.NotEditable as error:
        raise _not_editable(error) from None
    # the sends already being handed to WhatsApp finish first: after this answer, none leaves (the nudge makes
    # the campaign's actor check its batch again before its next send)
    core = getattr(deps, "campaigns", None)
    if core is not None:
        core.nudge(principal.company_id, row["id"])
    flying = await campaigns.in_flight_messages(deps.db, principal.company_id, row["id"])
    if flying and not await deps.tickets.settled(flying):
        log.warning("campaign cancelled with sends still in flight", extra={"fields": {"campaign_id": row["id"]}})
    _changed(deps, principal.company_id, row)
    return Response("", status=204)  # ticketz answers 204


@blueprint.post("/campaigns/<campaign_id>/restart")
async def restart_campaign(campaign_id: str) -> Response:
    principal, deps = await _guard()
    try:
        row, _requeued = await campaigns.restart(deps.db, principal.company_id, path_id(campaign_id, "campaign"),
                                                 now=utc_now())
    except campaigns.NotEditable as error:
        raise _not_editable(error) from None
    _changed(deps, principal.company_id, row)
    return Response("", status=204)


@blueprint.post("/campaigns/<campaign_id>/pause")
async def pause_campaign(campaign_id: str) -> Response:
    principal, deps = await _guard()
    the_id = path_id(campaign_id, "campaign")
    await campaigns.check_exists(deps.db, principal.company_id, the_id)
    raw = await json_body()
    reason = validate(raw, {"reason": Field("str", nullable=True, max_len=500)}).get("reason") or "paused by a user"
    try:
        row = await campaigns.pause(deps.db, principal.company_id, the_id, now=utc_now(), reason=reason)
    except campaigns.NotEditable as error:
        raise _not_editable(error) from None
    return jsonify(_changed(deps, principal.company_id, row))


@blueprint.post("/campaigns/<campaign_id>/resume")
async def resume_campaign(campaign_id: str) -> Response:
    principal, deps = await _guard()
    try:
        row = await campaigns.resume(deps.db, principal.company_id, path_id(campaign_id, "campaign"))
    except campaigns.NotEditable as error:
        raise _not_editable(error) from None
    return jsonify(_changed(deps, principal.company_id, row))


@blueprint.post("/campaigns/<campaign_id>/media-upload")
async def upload_media(campaign_id: str) -> Response:
    principal, deps = await _guard()
    the_id = path_id(campaign_id, "campaign")
    await campaigns.check_exists(deps.db, principal.company_id, the_id)  # else 404, before reading the file
    await replace_media(deps, lambda url, name: campaigns.set_media(deps.db, principal.company_id, the_id, url, name))
    row = await campaigns.show(deps.db, principal.company_id, the_id)
    _changed(deps, principal.company_id, row)
    return jsonify({**SAVED, "mediaPath": row["media_path"], "mediaName": row["media_name"]})


@blueprint.delete("/campaigns/<campaign_id>/media-upload")
async def delete_media(campaign_id: str) -> Response:
    principal, deps = await _guard()
    the_id = path_id(campaign_id, "campaign")
    changed = await campaigns.set_media(deps.db, principal.company_id, the_id, None, None)
    await remove_media(deps, [changed.replaced] if changed.replaced else [])
    _changed(deps, principal.company_id, await campaigns.show(deps.db, principal.company_id, the_id))
    return jsonify(REMOVED)


# ─── reports ────────────────────────────────────────────────────────────────────────────

@blueprint.get("/campaigns/<campaign_id>/report")
async def campaign_report(campaign_id: str) -> Response:
    principal, deps = await _guard()
    counts, failures = await campaigns.report(deps.db, principal.company_id, path_id(campaign_id, "campaign"))
    return jsonify({
        "total": counts["total"], "queued": counts["queued"], "sending": counts["sending"], "sent": counts["sent"],
        "delivered": counts["delivered"], "read": counts["read"], "failed": counts["failed"],
        "failedReasons": [{"reason": row["reason"], "count": row["count"]} for row in failures],
        "skipped": counts["skipped"], "replied": counts["replied"], "optedOut": counts["opted_out"],
        "confirmationRequested": counts["confirmation_requested"], "confirmed": counts["confirmed"],
    })


def _state_filter() -> str | None:
    state = (request.args.get("state") or "").strip() or None
    if state is not None and state not in campaigns.SHIPPING_FILTERS:
        raise _invalid("state", f"must be one of {', '.join(campaigns.SHIPPING_FILTERS)}")
    return state


@blueprint.get("/campaigns/<campaign_id>/shippings")
async def campaign_shippings(campaign_id: str) -> Response:
    principal, deps = await _guard()
    the_id = path_id(campaign_id, "campaign")
    state = _state_filter()
    limit, offset = page(SHIPPINGS_PAGE)
    rows, count = await campaigns.shippings(deps.db, principal.company_id, the_id, state=state, limit=limit,
                                            offset=offset)
    records = [present_shipping(row) for row in rows]
    return jsonify({"records": records, "count": count, "hasMore": offset + len(records) < count})


@blueprint.get("/campaigns/<campaign_id>/export")
async def export_shippings(campaign_id: str) -> Response:
    principal, deps = await _guard()
    the_id = path_id(campaign_id, "campaign")
    fmt = export_format()
    state = _state_filter()
    await campaigns.check_exists(deps.db, principal.company_id, the_id)
    company_id = principal.company_id

    async def next_slice(after: int) -> list[Row]:
        return await deps.db.read(lambda conn: campaigns.shippings_in(conn, company_id, the_id, state=state,
                                                                       after=after, limit=EXPORT_SLICE))

    def cells(row: Row) -> list[Any]:
        shown = present_shipping(row)
        return [shown[name] for name in EXPORT_HEADER]

    return export_response(fmt, f"campaign-{the_id}", EXPORT_HEADER, next_slice, cells)


# ─── settings ───────────────────────────────────────────────────────────────────────────

def _settings_answer(rows: list[Row], company_id: int) -> list[dict[str, Any]]:
    """Every known key (its default until saved, as JSON text: ticketz's screen JSON.parses each value)."""
    import json

    stored = {row["key"]: row for row in rows}
    answer = [{"key": row["key"], "value": row["value"], "companyId": company_id,
               "createdAt": _iso(row["created_at"]), "updatedAt": _iso(row["updated_at"])} for row in rows]
    answer += [{"key": key, "value": json.dumps(value, ensure_ascii=False), "companyId": company_id,
                "createdAt": None, "updatedAt": None}
               for key, value in campaigns.SETTING_DEFAULTS.items() if key not in stored]
    return answer


def _check_settings(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise _invalid("settings", "must be an object {messageInterval, longerIntervalAfter, greaterInterval, ...}")
    checked: dict[str, Any] = {}
    for key, value in raw.items():
        where = f"settings.{key}"
        if key in INTEGER_SETTINGS:
            low, high = INTEGER_SETTINGS[key]
            if isinstance(value, str) and re.fullmatch(r"\s*\d{1,9}\s*", value):
                value = int(value)  # the screen's text fields send text
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise _invalid(where, f"must be an integer from {low} to {high}")
            checked[key] = value
        elif key == "variables":
            checked[key] = _check_variables(value)
        elif key == "businessHoursOnly":
            if value in ("true", "false"):
                value = value == "true"
            if not isinstance(value, bool):
                raise _invalid(where, "must be true or false")
            checked[key] = value
        elif key == "pacing":
            if value is True or value is False:
                value = "on" if value else "off"
            if value not in ("on", "off"):
                raise _invalid(where, "must be on or off")
            checked[key] = value
        elif key == "stopWords":
            if not isinstance(value, str) or len(value) > 1000:
                raise _invalid(where, "must be a comma-separated text of at most 1000 characters")
            words = [word.strip() for word in value.split(",") if word.strip()]
            if not words or any(len(word) > 100 for word in words):
                raise _invalid(where, "must name at least one word (each at most 100 characters)")
            checked[key] = ",".join(words)
        elif key == "optOutReply":
            if not isinstance(value, str) or len(value) > 1000:
                raise _invalid(where, "must be a text of at most 1000 characters")
            checked[key] = value.strip()
        else:
            raise _invalid(where, "is not a campaign setting (known: "
                                  + ", ".join(campaigns.SETTING_DEFAULTS) + ")")
    return checked


def _check_variables(value: Any) -> list[dict[str, str]]:
    if not isinstance(value, list) or len(value) > MAX_VARIABLES:
        raise _invalid("settings.variables", f"must be a list of at most {MAX_VARIABLES} {{key, value}}")
    variables = []
    for index, item in enumerate(value):
        where = f"settings.variables[{index}]"
        if not isinstance(item, dict) or not isinstance(item.get("key"), str) \
                or not isinstance(item.get("value", ""), str):
            raise _invalid(where, "must be an object {key, value} of texts")
        key = item["key"].strip()
        if not VARIABLE_KEY.fullmatch(key):
            raise _invalid(f"{where}.key", "must be 1 to 50 letters, digits, _ . or -")
        if len(item.get("value", "")) > TEXT:
            raise _invalid(f"{where}.value", f"is too long (at most {TEXT} characters)")
        variables.append({"key": key, "value": item.get("value", "")})
    return variables


@blueprint.get("/campaign-settings")
async def list_settings() -> Response:
    principal, deps = await _guard()
    rows = await campaigns.settings_rows(deps.db, principal.company_id)
    return jsonify(_settings_answer(rows, principal.company_id))


@blueprint.post("/campaign-settings")
async def save_settings() -> Response:
    principal, deps = await _guard()
    raw = await json_body()
    values = _check_settings(raw.get("settings"))
    rows = await campaigns.save_settings(deps.db, principal.company_id, values)
    answer = _settings_answer(rows, principal.company_id)
    deps.broker.publish(principal.company_id, f"company-{principal.company_id}-campaignSettings",
                        {"action": "create", "record": answer})
    return jsonify(answer)
