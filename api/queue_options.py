"""`/queue-options`: the menu tree of a queue (ticketz's QueueOptions), read by any user, changed by admins.

    GET    /queue-options?queueId=&parentId=&queueOptionId=   the options matching every filter, by id;
                                                              parentId -1: the queue's first level
    POST   /queue-options {queueId?, parentId?, title, option, message?, forwardQueueId?, exitChatbot?}
    GET    /queue-options/:id                                 the option with its `options` (its children)
    PUT    /queue-options/:id {…the same fields}              a new parentId (null: the first level) moves
                                                              it with its sub-options
    DELETE /queue-options/:id                                 its sub-options go with it
    POST   /queue-options/:id/media-upload   multipart `file` the file sent with its message
    DELETE /queue-options/:id/media-upload

An option is `{id, title, option, message, queueId, parentId, forwardQueueId, exitChatbot, mediaPath,
mediaName, createdAt, updatedAt}`: `option` is what the contact answers ("1"), `title` what the menu shows,
`message` what is sent when it is chosen; `forwardQueueId` moves the ticket to that queue, `exitChatbot`
hands it to a human (one or the other). A sub-option is in its parent's queue: given only `parentId`, the
queue is the parent's; neither given is a 400, a parent in another queue a 400, an id (queue, parent,
forward queue) the company has not a 404. `option` is a text or a number (ticketz's form sends numbers),
never `#` (the menu's "back to the start"). Limits (storage/queue_options.py): 10 levels, 50 options under
one parent, 1000 in a queue, title 255 characters, option 32, message 10,000: beyond them a 400.

ticketz's form sends the whole option back on save (with `children`, `edition` and the rest, ignored), the
forward queue as a string ("" for none), and after a delete renumbers the siblings with concurrent saves:
two siblings may briefly share an `option`. Every change is announced as the queue's
`company-{id}-queue` `{action: "update", queue}` (with its options), which ticketz's Queues page follows.
"""

from __future__ import annotations

import re
from typing import Any

from quart import Blueprint, Response, current_app, jsonify, request

from api import present
from api.app import Deps, deps_of
from api.auth import current, require_admin
from api.errors import BadRequest
from api.files import remove_media
from api.queues import REMOVED, SAVED, announce_queue, replace_media
from api.validation import Field, json_body, path_id, validate
from storage import queue_options, queues
from storage.queue_options import OptionRefused

blueprint = Blueprint("queue_options", __name__, url_prefix="/queue-options")

BACK = "#"  # the menus' "back to the start": never an option's key
FIELDS = {
    "title": Field("str", nullable=True, max_len=255),
    "option": Field("str", max_len=32),
    "message": Field("str", nullable=True, max_len=10_000, strip=False),
    "queueId": Field("int", minimum=1),
    "parentId": Field("int", nullable=True, minimum=1),
    "forwardQueueId": Field("int", nullable=True, minimum=1),
    "exitChatbot": Field("bool", nullable=True),
}
QUERY_ID = re.compile(r"-?\d{1,18}")


def _invalid(field: str, message: str) -> BadRequest:
    return BadRequest(f"{field}: {message}", code="ERR_VALIDATION", field=field)


def _refused(error: OptionRefused) -> BadRequest:
    return BadRequest(f"{error.field}: {error}", code="ERR_QUEUE_OPTION_INVALID", field=error.field)


async def _body(*, partial: bool) -> dict[str, Any]:
    """The body as storage columns (only the fields present when `partial`)."""
    raw = dict(await json_body())
    if isinstance(raw.get("option"), int) and not isinstance(raw.get("option"), bool):
        raw["option"] = str(raw["option"])  # ticketz's form numbers the options
    for key in ("forwardQueueId", "parentId"):
        if raw.get(key) in ("", 0, "0", -1, "-1"):
            raw[key] = None  # what the forms send for "none"
    if raw.get("queueId") in ("", None):
        raw.pop("queueId", None)
    data = validate(raw, FIELDS, partial=partial)
    if "option" not in data and not partial:
        raise _invalid("option", "is required (what the contact answers, such as 1)")
    if "option" in data:
        if not data["option"]:
            raise _invalid("option", "must not be empty (what the contact answers, such as 1)")
        if data["option"] == BACK:
            raise _invalid("option", f"{BACK} is the menu's way back to the start")
    fields: dict[str, Any] = {}
    for key, column in (("queueId", "queue_id"), ("parentId", "parent_id"), ("title", "title"),
                        ("option", "option"), ("message", "message"), ("forwardQueueId", "forward_queue_id"),
                        ("exitChatbot", "exit_chatbot")):
        if key in data:
            fields[column] = data[key]
    for column, empty in (("title", ""), ("message", ""), ("exit_chatbot", False)):
        if column in fields and fields[column] is None:
            fields[column] = empty
    if not partial and fields.get("queue_id") is None and fields.get("parent_id") is None:
        raise _invalid("queueId", "give the option's queueId, or the parentId of the option it goes under")
    return fields


def _query_id(name: str) -> int | None:
    """An id filter of the query string: None when absent, empty or 0; -1 only for parentId (the roots)."""
    raw = (request.args.get(name) or "").strip()
    if raw in ("", "0", "undefined", "null"):
        return None
    if not QUERY_ID.fullmatch(raw) or (int(raw) < 1 and not (name == "parentId" and raw == "-1")):
        raise _invalid(name, "must be an id" + (" or -1 (the first level)" if name == "parentId" else ""))
    return int(raw)


async def _announce(deps: Deps, company_id: int, *queue_ids: int) -> None:
    for queue_id in dict.fromkeys(queue_ids):
        await announce_queue(deps, company_id, queue_id)


# ─── routes ─────────────────────────────────────────────────────────────────────────────

@blueprint.get("")
async def list_options() -> Response:
    principal = current()
    db = deps_of(current_app).db
    queue_id, parent_id, option_id = _query_id("queueId"), _query_id("parentId"), _query_id("queueOptionId")
    if queue_id is not None:
        await queues.show_queue(db, principal.company_id, queue_id)  # another company's: 404
    if parent_id is not None and parent_id > 0:
        await queue_options.show_option(db, principal.company_id, parent_id)
    rows = await queue_options.list_options(db, principal.company_id, queue_id=queue_id, roots=parent_id == -1,
                                            parent_id=parent_id if parent_id is not None and parent_id > 0 else None,
                                            option_id=option_id)
    return jsonify([present.queue_option(row) for row in rows])


@blueprint.post("")
async def create_option() -> tuple[Response, int]:
    principal = require_admin()
    deps = deps_of(current_app)
    fields = await _body(partial=False)
    try:
        row = await queue_options.create_option(deps.db, principal.company_id, fields)
    except OptionRefused as error:
        raise _refused(error) from None
    await _announce(deps, principal.company_id, row["queue_id"])
    return jsonify(present.queue_option(row)), 201


@blueprint.get("/<option_id>")
async def show_option(option_id: str) -> Response:
    principal = current()
    db = deps_of(current_app).db
    row = await queue_options.show_option(db, principal.company_id, path_id(option_id, "queue option"))
    children = await queue_options.list_options(db, principal.company_id, parent_id=row["id"])
    return jsonify({**present.queue_option(row), "options": [present.queue_option(child) for child in children]})


@blueprint.put("/<option_id>")
async def update_option(option_id: str) -> Response:
    principal = current()
    deps = deps_of(current_app)
    existing = await queue_options.show_option(deps.db, principal.company_id, path_id(option_id, "queue option"))
    require_admin()
    fields = await _body(partial=True)
    try:
        row = await queue_options.update_option(deps.db, principal.company_id, existing["id"], fields)
    except OptionRefused as error:
        raise _refused(error) from None
    await _announce(deps, principal.company_id, existing["queue_id"], row["queue_id"])
    return jsonify(present.queue_option(row))


@blueprint.delete("/<option_id>")
async def delete_option(option_id: str) -> Response:
    principal = current()
    deps = deps_of(current_app)
    target = path_id(option_id, "queue option")
    await queue_options.show_option(deps.db, principal.company_id, target)  # another company's: 404 before 403
    require_admin()
    existing, media = await queue_options.delete_option(deps.db, principal.company_id, target)
    await remove_media(deps, media)
    await _announce(deps, principal.company_id, existing["queue_id"])
    return jsonify({"message": "queue option deleted"})


@blueprint.post("/<option_id>/media-upload")
async def upload_media(option_id: str) -> Response:
    """The file sent with the option's message (multipart `file`), replacing the one it had."""
    principal = current()
    deps = deps_of(current_app)
    existing = await queue_options.show_option(deps.db, principal.company_id, path_id(option_id, "queue option"))
    require_admin()
    changed = await replace_media(deps, lambda url, name: queue_options.set_option_media(
        deps.db, principal.company_id, existing["id"], url, name))
    await _announce(deps, principal.company_id, changed.row["queue_id"])
    return jsonify({**SAVED, "mediaPath": changed.row["media_path"], "mediaName": changed.row["media_name"]})


@blueprint.delete("/<option_id>/media-upload")
async def delete_media(option_id: str) -> Response:
    principal = current()
    deps = deps_of(current_app)
    existing = await queue_options.show_option(deps.db, principal.company_id, path_id(option_id, "queue option"))
    require_admin()
    changed = await queue_options.set_option_media(deps.db, principal.company_id, existing["id"], None, None)
    await remove_media(deps, [changed.replaced] if changed.replaced else [])
    await _announce(deps, principal.company_id, changed.row["queue_id"])
    return jsonify(REMOVED)
