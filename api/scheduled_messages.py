"""`/schedules`: scheduled messages, one-off or recurring (ticketz's Schedules screen and modal; issue 13).

    GET    /schedules?contactId=&userId=&searchParam=&pageNumber=   → {schedules, count, hasMore} (20 a page,
                                                                      newest first, each with contact and user)
    POST   /schedules {body, sendAt, contactId, whatsappId?, saveMessage?, openTicket?, mediaPath?, mediaName?,
                       recurrence?, recurrenceEvery?, cron?, recurrenceCount?, recurrenceUntil?,
                       skipToBusinessDay?}
    GET    /schedules/:id
    PUT    /schedules/:id {…the same fields}      the schedule's author or an admin
    DELETE /schedules/:id                         the schedule's author or an admin
    POST   /schedules/:id/media-upload            multipart `file`: the file sent with the message
    DELETE /schedules/:id/media-upload

A schedule is `{id, body, sendAt, sentAt, contactId, ticketId, userId, whatsappId, companyId, status, lastError,
saveMessage, openTicket, mediaPath, mediaName, recurrence, recurrenceEvery, cron, recurrenceCount,
recurrenceUntil, skipToBusinessDay, sentCount, createdAt, updatedAt, contact: {id, name, number}, user: {id,
name}}`; `status` is PENDENTE | AGENDADA | ENVIADA | ERRO (storage/migrations/0018_schedules.sql says when).

Times: ISO 8601. One without an offset ("2030-05-10T09:30", what ticketz's datetime-local field sends) is
read in the company's zone (setting `timezone`). `sendAt` must not be more than SLACK in the past (a minute:
the modal sends whole minutes); for `recurrence: "cron"` it is where the series starts (default now) and the
first send is the expression's first time at or after it. `recurrence` none | minutes | days | weeks | months
| cron, every `recurrenceEvery` (1..; minutes up to a year) or `cron` (five fields, croniter); at most
`recurrenceCount` sends and none after `recurrenceUntil`; `skipToBusinessDay` moves an occurrence on a day the
company's business hours are closed to the same time of its next open day (actors/automation/recurrence.py).
`whatsappId` null: the company's default connection, else the contact's last ticket's, else its oldest one.
`mediaPath` names a file already stored here (`/media/<token>/<name>`, as the uploads answer); the upload
route stores a new one.

A PUT that changes `sendAt` (to another minute than the stored one: the modal sends the whole object back,
with the time cut to minutes), the contact, the connection or the recurrence, or one on a schedule in ERRO or
done, reschedules it: AGENDADA at its `sendAt`, its series started over. Fields the screens send back that are
not the schedule's own (`status`, `sentAt`, `contact`, `user`, `id`, `userId`, …) are ignored.

Every change is announced to the company as `company-{id}-schedule` `{action: create | update, schedule}`
(with contact and user: ticketz's list renders the row from it); a delete as `schedule` `{action: "delete",
scheduleId}`, ticketz's own name for it (its page breaks on a delete under the other name, and reloads the list
after its own deletes).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from quart import Blueprint, Response, current_app, jsonify, request

from actors import routing
from actors.automation import recurrence
from actors.schedules import hours_of
from api import present
from api.app import Deps, deps_of
from api.auth import Principal, current
from api.errors import BadRequest, Forbidden
from api.files import remove_media
from api.queues import REMOVED, SAVED, replace_media
from api.validation import Field, json_body, page, path_id, search_pattern, validate
from storage import schedules
from storage.db import Row

blueprint = Blueprint("scheduled_messages", __name__, url_prefix="/schedules")

PAGE_SIZE = 20  # ticketz's
SLACK = dt.timedelta(minutes=1)  # how far in the past a sendAt may be (sent at once)
MAX_AHEAD = dt.timedelta(days=3660)  # ten years
MEDIA_PATH = re.compile(r"/media/([A-Za-z0-9_-]{8,64})/([^/]{1,255})")
QUERY_ID = re.compile(r"\d{1,18}")
FIELDS = {
    "body": Field("str", max_len=10_000, strip=False),
    "contactId": Field("int", minimum=1),
    "whatsappId": Field("int", nullable=True, minimum=1),
    "saveMessage": Field("bool", nullable=True),
    "openTicket": Field("bool", nullable=True),
    "mediaPath": Field("str", nullable=True, max_len=300),
    "mediaName": Field("str", nullable=True, max_len=255),
    "recurrence": Field("str", choices=recurrence.KINDS),
    "recurrenceEvery": Field("int", minimum=1, maximum=525_600),
    "cron": Field("str", nullable=True, max_len=255),
    "recurrenceCount": Field("int", nullable=True, minimum=1, maximum=100_000),
    "skipToBusinessDay": Field("bool", nullable=True),
}
RULE_COLUMNS = ("recurrence", "recurrence_every", "cron", "recurrence_count", "recurrence_until",
                "skip_to_business_day")


def _invalid(field: str, message: str, code: str = "ERR_VALIDATION") -> BadRequest:
    return BadRequest(f"{field}: {message}", code=code, field=field)


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def shown(row: Row) -> dict[str, Any]:
    """A schedule (a schedule_show row) as the API shows it."""
    return {
        "id": row["id"], "body": row["body"], "sendAt": _iso(row["send_at"]), "sentAt": _iso(row["sent_at"]),
        "contactId": row["contact_id"], "ticketId": row["ticket_id"], "userId": row["user_id"],
        "whatsappId": row["whatsapp_id"], "companyId": row["company_id"], "status": row["status"],
        "lastError": row["last_error"], "saveMessage": row["save_message"], "openTicket": row["open_ticket"],
        "mediaPath": row["media_path"], "mediaName": row["media_name"], "recurrence": row["recurrence"],
        "recurrenceEvery": row["recurrence_every"], "cron": row["cron"], "recurrenceCount": row["recurrence_count"],
        "recurrenceUntil": _iso(row["recurrence_until"]), "skipToBusinessDay": row["skip_to_business_day"],
        "sentCount": row["sent_count"], "createdAt": _iso(row["created_at"]), "updatedAt": _iso(row["updated_at"]),
        "contact": row.get("contact"), "user": row.get("user"),
    }


# ─── request parsing ────────────────────────────────────────────────────────────────────

def _when(raw: dict[str, Any], name: str, zone: dt.tzinfo) -> dt.datetime | None:
    """An ISO time of the body (None when absent, null or ""); one without an offset is in `zone`."""
    value = raw.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > 64:
        raise _invalid(name, "must be a date and time (ISO 8601, such as 2030-05-10T09:30)")
    try:
        parsed = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace(" ", "T", 1))
    except ValueError:
        raise _invalid(name, "must be a date and time (ISO 8601, such as 2030-05-10T09:30)") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    return parsed.astimezone(dt.UTC)


def _blank_to_none(raw: dict[str, Any]) -> dict[str, Any]:
    """What the forms send for "none": "" (a select left empty), 0 for an id."""
    out = dict(raw)
    for key in ("whatsappId", "mediaPath", "mediaName", "cron", "recurrenceCount"):
        if out.get(key) in ("", 0, "0"):
            out[key] = None
    if out.get("recurrence") in ("", None):
        out.pop("recurrence", None)
    if out.get("recurrenceEvery") in ("", None):
        out.pop("recurrenceEvery", None)
    return out


async def _parse(deps: Deps, company_id: int, *, partial: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """(columns, raw body): the body's fields as storage columns (only those present when `partial`)."""
    raw = _blank_to_none(await json_body())
    data = validate(raw, FIELDS, partial=partial)
    zone_name, _hours = await schedules.calendar(deps.db, company_id)
    zone = routing.zone_of(zone_name)
    columns: dict[str, Any] = {}
    if "body" in data:
        if not data["body"].strip():
            raise _invalid("body", "must not be empty")
        columns["body"] = data["body"]
    elif not partial:
        raise _invalid("body", "is required")
    if "contactId" in data:
        columns["contact_id"] = data["contactId"]
    elif not partial:
        raise _invalid("contactId", "is required")
    for key, column in (("whatsappId", "whatsapp_id"), ("recurrence", "recurrence"),
                        ("recurrenceEvery", "recurrence_every"), ("recurrenceCount", "recurrence_count")):
        if key in data:
            columns[column] = data[key]
    for key, column in (("saveMessage", "save_message"), ("openTicket", "open_ticket"),
                        ("skipToBusinessDay", "skip_to_business_day")):
        if key in data:
            columns[column] = bool(data[key])
    if "cron" in data:
        columns["cron"] = data["cron"].strip() if data["cron"] else None
    if "recurrenceUntil" in raw:
        columns["recurrence_until"] = _when(raw, "recurrenceUntil", zone)
    send_at = _when(raw, "sendAt", zone)
    if send_at is not None:
        columns["anchor_at"] = send_at
    if "mediaPath" in data:
        columns["media_path"], columns["media_name"] = _media_path(deps, data["mediaPath"], data.get("mediaName"))
    return columns, raw


def _media_path(deps: Deps, path: str | None, name: str | None) -> tuple[str | None, str | None]:
    """A file already stored here, by its `/media/<token>/<name>` path (a full URL to it too)."""
    if path is None:
        return None, None
    found = MEDIA_PATH.search(path)
    if found is None or deps.media.find(found.group(1), found.group(2)) is None:
        raise _invalid("mediaPath", "must name a file stored here (/media/<token>/<name>, as an upload answers)")
    return found.group(0), (name or found.group(2))[:255]


def _rule(columns: dict[str, Any], anchor: dt.datetime) -> recurrence.Rule:
    rule = recurrence.Rule(anchor=anchor, kind=columns.get("recurrence", "none"),
                           every=columns.get("recurrence_every", 1), cron=columns.get("cron"),
                           count=columns.get("recurrence_count"), until=columns.get("recurrence_until"),
                           skip_to_business_day=bool(columns.get("skip_to_business_day")))
    try:
        recurrence.check_rule(rule)
    except recurrence.BadRule as error:
        field = "cron" if rule.kind == "cron" and "cron" in str(error) else \
            "recurrenceEvery" if "every" in str(error) else "recurrence"
        raise _invalid(field, str(error)) from None
    return rule


async def _first(deps: Deps, company_id: int, rule: recurrence.Rule, now: dt.datetime) -> recurrence.Occurrence:
    """The rule's first occurrence; a 400 when it is in the past or never comes."""
    if rule.anchor < now - SLACK:
        raise _invalid("sendAt", "must be in the future")
    if rule.anchor > now + MAX_AHEAD:
        raise _invalid("sendAt", "must be within ten years")
    zone_name, raw_hours = await schedules.calendar(deps.db, company_id)
    zone = routing.zone_of(zone_name)
    first = recurrence.first_send(rule, zone, hours_of(raw_hours, zone.key))
    if first is None:
        field = "recurrenceUntil" if rule.until is not None else "cron"
        raise _invalid(field, "the series has no send: its first time comes after its end" if rule.until else
                       "the cron expression never matches")
    return first


def _may_change(principal: Principal, row: Row) -> None:
    if not principal.is_admin and row["user_id"] != principal.user_id:
        raise Forbidden("only the schedule's author or an admin may change it")


def _publish(deps: Deps, company_id: int, payload: dict[str, Any]) -> None:
    deps.broker.publish(company_id, f"company-{company_id}-schedule", payload)


def _nudge(deps: Deps, due_at: dt.datetime | None) -> None:
    if due_at is not None and deps.scheduler is not None:
        deps.scheduler.nudge(due_at)


def _query_id(name: str) -> int | None:
    raw = (request.args.get(name) or "").strip()
    if raw in ("", "0", "undefined", "null"):
        return None
    if not QUERY_ID.fullmatch(raw):
        raise _invalid(name, "must be an id")
    return int(raw)


# ─── routes ─────────────────────────────────────────────────────────────────────────────

@blueprint.get("")
async def list_schedules() -> Response:
    principal = current()
    limit, offset = page(PAGE_SIZE)
    rows, count = await schedules.list_schedules(
        deps_of(current_app).db, principal.company_id, contact_id=_query_id("contactId"), user_id=_query_id("userId"),
        search=search_pattern(), limit=limit, offset=offset)
    return jsonify(present.page("schedules", [shown(row) for row in rows], count, limit, offset))


@blueprint.post("")
async def create_schedule() -> Response:
    principal = current()
    deps = deps_of(current_app)
    columns, _raw = await _parse(deps, principal.company_id, partial=False)
    now = dt.datetime.now(dt.UTC)
    if "anchor_at" not in columns:
        if columns.get("recurrence") != "cron":
            raise _invalid("sendAt", "is required")
        columns["anchor_at"] = now
    first = await _first(deps, principal.company_id, _rule(columns, columns["anchor_at"]), now)
    fields = {"user_id": principal.user_id, "whatsapp_id": None, "save_message": False, "open_ticket": False,
              "recurrence": "none", "recurrence_every": 1, "cron": None, "recurrence_count": None,
              "recurrence_until": None, "skip_to_business_day": False, **columns}
    try:
        armed = await schedules.create_schedule(deps.db, principal.company_id, fields, first.at, first.nominal)
    except schedules.TooManySchedules as error:
        raise BadRequest(str(error), code="ERR_SCHEDULE_LIMIT") from None
    _nudge(deps, armed.due_at)
    row = shown(await schedules.show_schedule(deps.db, principal.company_id, armed.row["id"]))
    _publish(deps, principal.company_id, {"action": "create", "schedule": row})
    return jsonify(row)  # 200, as ticketz answers


@blueprint.get("/<schedule_id>")
async def show_schedule(schedule_id: str) -> Response:
    principal = current()
    row = await schedules.show_schedule(deps_of(current_app).db, principal.company_id, path_id(schedule_id, "schedule"))
    return jsonify(shown(row))


@blueprint.put("/<schedule_id>")
async def update_schedule(schedule_id: str) -> Response:
    principal = current()
    deps = deps_of(current_app)
    existing = await schedules.show_schedule(deps.db, principal.company_id, path_id(schedule_id, "schedule"))
    _may_change(principal, existing)
    columns, _raw = await _parse(deps, principal.company_id, partial=True)
    anchor = columns.get("anchor_at")
    if anchor is not None and any(_same_minute(anchor, existing[c]) for c in ("anchor_at", "send_at")):
        del columns["anchor_at"]  # the modal sent the shown time back, cut to minutes: unchanged
        anchor = None
    merged = {**existing, **columns}
    moved = anchor is not None or any(
        column in columns and columns[column] != existing[column]
        for column in (*RULE_COLUMNS, "contact_id", "whatsapp_id"))
    rearm, restart = None, False
    if moved or existing["status"] in ("ERRO", "PENDENTE"):
        now = dt.datetime.now(dt.UTC)
        rule = _rule({column: merged[column] for column in RULE_COLUMNS}, merged["anchor_at"])
        if anchor is not None or merged["anchor_at"] >= now - SLACK:  # (re)start the series at its sendAt
            first = await _first(deps, principal.company_id, rule, now)
            rearm, restart = (first.at, first.nominal), True
        else:  # a series under way, changed or retried: it goes on at its next time to come
            following = await _next(deps, principal.company_id, rule, existing, now)
            rearm = (following.at, following.nominal)
    try:
        armed = await schedules.update_schedule(deps.db, principal.company_id, existing["id"], columns, rearm, restart)
    except schedules.TooManySchedules as error:
        raise BadRequest(str(error), code="ERR_SCHEDULE_LIMIT") from None
    _nudge(deps, armed.due_at)
    row = shown(await schedules.show_schedule(deps.db, principal.company_id, existing["id"]))
    _publish(deps, principal.company_id, {"action": "update", "schedule": row})
    return jsonify(row)


async def _next(deps: Deps, company_id: int, rule: recurrence.Rule, row: Row, now: dt.datetime
                ) -> recurrence.Occurrence:
    """The next occurrence to come of a series whose start is past; a 400 when there is none."""
    zone_name, raw_hours = await schedules.calendar(deps.db, company_id)
    zone = routing.zone_of(zone_name)
    last = recurrence.Occurrence(row["send_at"], row["nominal_at"])
    following = recurrence.next_send(rule, last, zone, hours_of(raw_hours, zone.key), sent=row["sent_count"],
                                     now=now) \
        if rule.recurring else None
    if following is None:
        raise _invalid("sendAt", "must be in the future: give the new time to send it")
    return following


def _same_minute(a: dt.datetime, b: dt.datetime) -> bool:
    return a == b or a.replace(second=0, microsecond=0) == b.replace(second=0, microsecond=0)


@blueprint.delete("/<schedule_id>")
async def delete_schedule(schedule_id: str) -> Response:
    principal = current()
    deps = deps_of(current_app)
    existing = await schedules.show_schedule(deps.db, principal.company_id, path_id(schedule_id, "schedule"))
    _may_change(principal, existing)
    row = await schedules.delete_schedule(deps.db, principal.company_id, existing["id"])
    if row["media_path"]:
        await remove_media(deps, [row["media_path"]])
    # under ticketz's own name for a delete: its Schedules page handles a delete arriving as
    # company-{id}-schedule with an action its list's reducer lacks, and the page stops rendering
    deps.broker.publish(principal.company_id, "schedule", {"action": "delete", "scheduleId": row["id"]})
    return jsonify({"message": "Schedule deleted"})


@blueprint.post("/<schedule_id>/media-upload")
async def upload_media(schedule_id: str) -> Response:
    """The file sent with the message (multipart `file`), replacing the one it had."""
    principal = current()
    deps = deps_of(current_app)
    existing = await schedules.show_schedule(deps.db, principal.company_id, path_id(schedule_id, "schedule"))
    _may_change(principal, existing)
    changed = await replace_media(deps, lambda url, name: schedules.set_media(
        deps.db, principal.company_id, existing["id"], url, name))
    row = shown(await schedules.show_schedule(deps.db, principal.company_id, existing["id"]))
    _publish(deps, principal.company_id, {"action": "update", "schedule": row})
    return jsonify({**SAVED, "mediaPath": changed.row["media_path"], "mediaName": changed.row["media_name"]})


@blueprint.delete("/<schedule_id>/media-upload")
async def delete_media(schedule_id: str) -> Response:
    principal = current()
    deps = deps_of(current_app)
    existing = await schedules.show_schedule(deps.db, principal.company_id, path_id(schedule_id, "schedule"))
    _may_change(principal, existing)
    changed = await schedules.set_media(deps.db, principal.company_id, existing["id"], None, None)
    await remove_media(deps, [changed.replaced] if changed.replaced else [])
    row = shown(await schedules.show_schedule(deps.db, principal.company_id, existing["id"]))
    _publish(deps, principal.company_id, {"action": "update", "schedule": row})
    return jsonify(REMOVED)
