"""`/queue`: the queues (departments) of the caller's company. Any user reads them; admins manage them.

One queue's JSON (`GET /queue/:id`, the answers of POST and PUT, the `company-{id}-queue` events) carries
its `options`, the whole menu tree flat (by id, `parentId` saying where each sits); the list does not
(every screen loads it). A greeting file is uploaded as multipart `file` to `POST /queue/:id/media-upload`
and removed by `DELETE /queue/:id/media-upload`, as ticketz's queue form does.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from quart import Blueprint, Response, current_app, jsonify

from api import present
from api.app import Deps, deps_of
from api.auth import current, require_admin
from api.errors import BadRequest
from api.files import remove_media
from api.schedules import check_schedules
from api.uploads import invalid_upload, read_upload
from api.validation import Field, json_body, path_id, validate
from storage import queues
from storage.errors import NotFound

T = TypeVar("T")

blueprint = Blueprint("queues", __name__, url_prefix="/queue")

TEXT = 10_000
AUTO_ASSIGN = ("off", "round_robin", "least_busy")
QUEUE_FIELDS = {
    "name": Field("str", required=True, max_len=255),
    "color": Field("str", required=True, max_len=32),
    "greetingMessage": Field("str", nullable=True, max_len=TEXT, strip=False),
    "outOfHoursMessage": Field("str", nullable=True, max_len=TEXT, strip=False),
    "orderQueue": Field("int", nullable=True, minimum=0, maximum=2**31 - 1),
    "autoAssign": Field("str", choices=AUTO_ASSIGN),
}
COLOR = re.compile(r"#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})")
SAVED = {"mensagem": "Arquivo Salvo"}  # the family's answers to a media upload and removal
REMOVED = {"mensagem": "Arquivo excluído"}


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
    if "autoAssign" in data:
        fields["auto_assign"] = data["autoAssign"]
    if "schedules" in raw and (raw["schedules"] is not None or not partial):
        fields["schedules"] = check_schedules(raw["schedules"])
    return fields


def _publish(deps: Deps, company_id: int, payload: dict[str, Any]) -> None:
    deps.broker.publish(company_id, f"company-{company_id}-queue", payload)


async def shown_queue(deps: Deps, company_id: int, row: dict[str, Any]) -> dict[str, Any]:
    """The queue as the API shows it, with its options."""
    return present.queue((await queues.with_options(deps.db, company_id, [row]))[0])


async def announce_queue(deps: Deps, company_id: int, queue_id: int) -> dict[str, Any] | None:
    """`company-{id}-queue` `{action: "update", queue}` with the queue as it is now (its options changed);
    None when it is gone meanwhile."""
    try:
        row = await queues.show_queue(deps.db, company_id, queue_id)
    except NotFound:
        return None
    shown = await shown_queue(deps, company_id, row)
    _publish(deps, company_id, {"action": "update", "queue": shown})
    return shown


async def replace_media(deps: Deps, write: Callable[[str, str], Awaitable[T]]) -> T:
    """The request's multipart `file`, kept and written where it belongs (`write(url, name)`, which answers
    what it changed: `.replaced`, the file it replaced, is removed). A file that could not be written (its
    owner deleted meanwhile, the database away) is removed too: no file is left that nothing points to."""
    upload, _ = await read_upload()
    if upload is None:
        raise invalid_upload("file: is required (multipart/form-data)")
    stored = await deps.media.save(upload.data, upload.filename, upload.mimetype)
    changed = None
    try:
        changed = await write(stored.url, (upload.filename or stored.url.rsplit("/", 1)[-1])[:255])
    finally:
        if changed is None:
            await remove_media(deps, [stored.url])
    replaced = getattr(changed, "replaced", None)
    await remove_media(deps, [replaced] if replaced else [])
    return changed


@blueprint.get("")
async def list_queues() -> Response:
    principal = current()
    rows = await queues.list_queues(deps_of(current_app).db, principal.company_id)
    return jsonify([present.queue(row) for row in rows])  # without their options: every screen loads this list


@blueprint.post("")
async def create_queue() -> tuple[Response, int]:
    principal = require_admin()
    deps = deps_of(current_app)
    fields = await _queue_body(partial=False)
    row = await queues.create_queue(deps.db, principal.company_id, **fields)
    shown = present.queue({**row, "options": []})
    _publish(deps, principal.company_id, {"action": "update", "queue": shown})
    return jsonify(shown), 201


@blueprint.get("/<queue_id>")
async def show_queue(queue_id: str) -> Response:
    principal = current()
    deps = deps_of(current_app)
    row = await queues.show_queue(deps.db, principal.company_id, path_id(queue_id, "queue"))
    return jsonify(await shown_queue(deps, principal.company_id, row))


@blueprint.put("/<queue_id>")
async def update_queue(queue_id: str) -> Response:
    principal = current()
    deps = deps_of(current_app)
    existing = await queues.show_queue(deps.db, principal.company_id, path_id(queue_id, "queue"))  # else 404
    require_admin()
    fields = await _queue_body(partial=True)
    row = await queues.update_queue(deps.db, principal.company_id, existing["id"], fields)
    shown = await shown_queue(deps, principal.company_id, row)
    _publish(deps, principal.company_id, {"action": "update", "queue": shown})
    return jsonify(shown)


@blueprint.delete("/<queue_id>")
async def delete_queue(queue_id: str) -> Response:
    principal = current()
    deps = deps_of(current_app)
    existing = await queues.show_queue(deps.db, principal.company_id, path_id(queue_id, "queue"))  # else 404
    require_admin()
    await remove_media(deps, await queues.delete_queue(deps.db, principal.company_id, existing["id"]))
    deps.tickets.forget_profiles(principal.company_id)  # a connection may have lost its last queue
    _publish(deps, principal.company_id, {"action": "delete", "queueId": existing["id"]})
    return jsonify({"message": "queue deleted"})


@blueprint.post("/<queue_id>/media-upload")
async def upload_media(queue_id: str) -> Response:
    """The queue's greeting file (multipart `file`: any type WhatsApp takes), replacing the one it had."""
    principal = current()
    deps = deps_of(current_app)
    existing = await queues.show_queue(deps.db, principal.company_id, path_id(queue_id, "queue"))  # else 404
    require_admin()
    changed = await replace_media(deps, lambda url, name: queues.set_media(deps.db, principal.company_id,
                                                                          existing["id"], url, name))
    shown = await shown_queue(deps, principal.company_id, changed.row)
    _publish(deps, principal.company_id, {"action": "update", "queue": shown})
    return jsonify({**SAVED, "mediaPath": shown["mediaPath"], "mediaName": shown["mediaName"]})


@blueprint.delete("/<queue_id>/media-upload")
async def delete_media(queue_id: str) -> Response:
    principal = current()
    deps = deps_of(current_app)
    existing = await queues.show_queue(deps.db, principal.company_id, path_id(queue_id, "queue"))  # else 404
    require_admin()
    changed = await queues.set_media(deps.db, principal.company_id, existing["id"], None, None)
    await remove_media(deps, [changed.replaced] if changed.replaced else [])
    _publish(deps, principal.company_id, {"action": "update",
                                          "queue": await shown_queue(deps, principal.company_id, changed.row)})
    return jsonify(REMOVED)
