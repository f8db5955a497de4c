"""`/queue`: the queues (departments) of the caller's company. Any user reads them; admins manage them."""

from __future__ import annotations

import re
from typing import Any

from quart import Blueprint, Response, current_app, jsonify

from api import present
from api.app import Deps, deps_of
from api.auth import current, require_admin
from api.errors import BadRequest
from api.validation import Field, json_body, path_id, validate
from storage import queues

blueprint = Blueprint("queues", __name__, url_prefix="/queue")

TEXT = 10_000
QUEUE_FIELDS = {
    "name": Field("str", required=True, max_len=255),
    "color": Field("str", required=True, max_len=32),
    "greetingMessage": Field("str", nullable=True, max_len=TEXT, strip=False),
    "outOfHoursMessage": Field("str", nullable=True, max_len=TEXT, strip=False),
    "orderQueue": Field("int", nullable=True, minimum=0, maximum=2**31 - 1),
}
COLOR = re.compile(r"#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})")
TIME = re.compile(r"([01]\d|2[0-3]):[0-5]\d")
WEEKDAYS_EN = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")
MAX_SCHEDULES = 50
# Time ranges of a schedule entry: our `startTime`/`endTime`, and the two shifts (A, B) some
# Whaticket-family frontends send. An empty or null pair means "closed".
TIME_PAIRS = (("startTime", "endTime"), ("startTimeA", "endTimeA"), ("startTimeB", "endTimeB"))


def _invalid(field: str, message: str) -> BadRequest:
    return BadRequest(f"{field}: {message}", code="ERR_VALIDATION", field=field)


def _check_schedules(value: Any) -> list[dict[str, Any]]:
    """`schedules`: a list of `{weekday, startTime "HH:MM", endTime "HH:MM"}` (plus the optional `weekdayEn`
    and shift pairs of the Whaticket frontends); only these keys are kept. `{}` is none: ticketz's queue form
    sends it when the company's schedules are off."""
    if value == {}:
        return []
    if not isinstance(value, list):
        raise _invalid("schedules", "must be a list of {weekday, startTime, endTime}")
    if len(value) > MAX_SCHEDULES:
        raise _invalid("schedules", f"has too many items (at most {MAX_SCHEDULES})")
    checked = []
    for index, item in enumerate(value):
        where = f"schedules[{index}]"
        if not isinstance(item, dict):
            raise _invalid(where, "must be an object {weekday, startTime, endTime}")
        weekday = item.get("weekday")
        if isinstance(weekday, bool) or not (
            (isinstance(weekday, int) and 0 <= weekday <= 6)
            or (isinstance(weekday, str) and 0 < len(weekday.strip()) <= 32)
        ):
            raise _invalid(f"{where}.weekday", "must be a day name or a number from 0 (Sunday) to 6")
        entry: dict[str, Any] = {"weekday": weekday.strip() if isinstance(weekday, str) else weekday}
        if "weekdayEn" in item:
            english = item["weekdayEn"]
            if not isinstance(english, str) or english.lower() not in WEEKDAYS_EN:
                raise _invalid(f"{where}.weekdayEn", f"must be one of {', '.join(WEEKDAYS_EN)}")
            entry["weekdayEn"] = english.lower()
        for start_key, end_key in TIME_PAIRS:
            if start_key not in item and end_key not in item:
                continue
            start, end = item.get(start_key), item.get(end_key)
            start, end = "" if start is None else start, "" if end is None else end
            for key, time in ((start_key, start), (end_key, end)):
                if not isinstance(time, str) or (time and not TIME.fullmatch(time)):
                    raise _invalid(f"{where}.{key}", "must be a time HH:MM (00:00 to 23:59) or empty")
            if bool(start) != bool(end):
                raise _invalid(f"{where}.{end_key if start else start_key}",
                               f"{start_key} and {end_key} are both set or both empty")
            if start and start >= end:
                raise _invalid(f"{where}.{end_key}", f"must be later than {start_key}")
            entry[start_key], entry[end_key] = start, end
        if not any(key in entry for pair in TIME_PAIRS for key in pair):
            raise _invalid(f"{where}.startTime", "is required")
        checked.append(entry)
    return checked


async def _queue_body(*, partial: bool) -> dict[str, Any]:
    """The body as storage columns; only the fields present when `partial`."""
    raw = await json_body()
    if raw.get("orderQueue") == "":
        raw["orderQueue"] = None  # the frontends send an empty field as ""
    data = validate(raw, QUEUE_FIELDS, partial=partial)
    if "color" in data and not COLOR.fullmatch(data["color"]):
        raise BadRequest("color: must be a hex color #RRGGBB or #RGB", code="ERR_QUEUE_INVALID_COLOR",
                         field="color")
    fields: dict[str, Any] = {}
    for key, column in (("name", "name"), ("color", "color"), ("greetingMessage", "greeting_message"),
                        ("outOfHoursMessage", "out_of_hours_message")):
        if key in data:
            fields[column] = data[key] if data[key] is not None else ""
    if "orderQueue" in data:
        fields["order_queue"] = data["orderQueue"]
    if "schedules" in raw and (raw["schedules"] is not None or not partial):
        fields["schedules"] = _check_schedules(raw["schedules"] if raw["schedules"] is not None else [])
    return fields


def _publish(deps: Deps, company_id: int, payload: dict[str, Any]) -> None:
    deps.broker.publish(company_id, f"company-{company_id}-queue", payload)


@blueprint.get("")
async def list_queues() -> Response:
    principal = current()
    rows = await queues.list_queues(deps_of(current_app).db, principal.company_id)
    return jsonify([present.queue(row) for row in rows])


@blueprint.post("")
async def create_queue() -> tuple[Response, int]:
    principal = require_admin()
    deps = deps_of(current_app)
    fields = await _queue_body(partial=False)
    row = await queues.create_queue(deps.db, principal.company_id, **fields)
    shown = present.queue(row)
    _publish(deps, principal.company_id, {"action": "update", "queue": shown})
    return jsonify(shown), 201


@blueprint.get("/<queue_id>")
async def show_queue(queue_id: str) -> Response:
    principal = current()
    row = await queues.show_queue(deps_of(current_app).db, principal.company_id, path_id(queue_id, "queue"))
    return jsonify(present.queue(row))


@blueprint.put("/<queue_id>")
async def update_queue(queue_id: str) -> Response:
    principal = current()
    deps = deps_of(current_app)
    existing = await queues.show_queue(deps.db, principal.company_id, path_id(queue_id, "queue"))  # else 404
    require_admin()
    fields = await _queue_body(partial=True)
    row = await queues.update_queue(deps.db, principal.company_id, existing["id"], fields)
    shown = present.queue(row)
    _publish(deps, principal.company_id, {"action": "update", "queue": shown})
    return jsonify(shown)


@blueprint.delete("/<queue_id>")
async def delete_queue(queue_id: str) -> Response:
    principal = current()
    deps = deps_of(current_app)
    existing = await queues.show_queue(deps.db, principal.company_id, path_id(queue_id, "queue"))  # else 404
    require_admin()
    await queues.delete_queue(deps.db, principal.company_id, existing["id"])
    _publish(deps, principal.company_id, {"action": "delete", "queueId": existing["id"]})
    return jsonify({"message": "queue deleted"})
