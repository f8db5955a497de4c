"""`/announcements`: the super admin's notices to the users of every company (ticketz's shapes).

    GET    /announcements?searchParam=&pageNumber=   {records, count, hasMore}, newest first, 20 a page
    GET    /announcements/list?companyId=            every notice (each with its author's `company`)
    GET    /announcements/:id
    POST   /announcements {title, text, priority 1-3, status}          super admin
    PUT    /announcements/:id                                          super admin
    DELETE /announcements/:id                                          super admin
    POST   /announcements/:id/media-upload  multipart `file` (image)   super admin
    DELETE /announcements/:id/media-upload                             super admin

Every user reads them — the bell on every page lists them; a notice with `status` false is a draft that
only super admins see (ticketz lists active notices only, so its own management page loses the drafts).
Changes are announced to every company's sockets as `company-announcement` `{action, record}` or
`{action: "delete", id}`; a draft reaches the super admins as the record and everybody else as a delete.
"""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response, current_app, jsonify

from api import present
from api.app import Deps, deps_of
from api.auth import current, require_super
from api.live import EVERY_COMPANY, SUPERS
from api.uploads import invalid_upload, read_upload, remove_public, store_public
from api.validation import Field, json_body, page, path_id, query_int, search_pattern, validate
from storage import announcements
from storage.errors import NotFound

blueprint = Blueprint("announcements", __name__, url_prefix="/announcements")

PAGE_SIZE = 20
LIST_LIMIT = 200
EVENT = "company-announcement"
FIELDS = {
    "title": Field("str", required=True, max_len=255),
    "text": Field("str", required=True, max_len=10_000),
    "priority": Field("int", minimum=1, maximum=3),  # 1 high, 2 medium, 3 low
    "status": Field("bool"),  # false: a draft
}


async def _body(*, partial: bool) -> dict[str, Any]:
    raw = await json_body()
    if raw.get("status") in ("true", "false"):  # a form's select may send it as text
        raw["status"] = raw["status"] == "true"
    return validate(raw, FIELDS, partial=partial)


def _announce(deps: Deps, action: str, row: dict[str, Any]) -> None:
    record = present.announcement(row)
    if row["status"]:
        deps.broker.publish(EVERY_COMPANY, EVENT, {"action": action, "record": record})
        return
    deps.broker.publish(EVERY_COMPANY, EVENT, {"action": action, "record": record, SUPERS: True})
    deps.broker.publish(EVERY_COMPANY, EVENT, {"action": "delete", "id": row["id"], SUPERS: False})


@blueprint.get("")
async def list_page() -> Response:
    principal = current()
    limit, offset = page(PAGE_SIZE)
    rows, count = await announcements.page_announcements(deps_of(current_app).db, everything=principal.super,
                                                         search=search_pattern(), limit=limit, offset=offset)
    return jsonify(present.page("records", [present.announcement(row) for row in rows], count, limit, offset))


@blueprint.get("/list")
async def list_all() -> Response:
    principal = current()
    company_id = query_int("companyId", 0, maximum=2**62) or None
    rows = await announcements.list_announcements(deps_of(current_app).db, everything=principal.super,
                                                  company_id=company_id, limit=LIST_LIMIT)
    return jsonify([present.announcement(row) for row in rows])


@blueprint.get("/<announcement_id>")
async def show(announcement_id: str) -> Response:
    principal = current()
    row = await announcements.get_announcement(deps_of(current_app).db, path_id(announcement_id, "announcement"),
                                               everything=principal.super)
    return jsonify(present.announcement(row))


@blueprint.post("")
async def create() -> Response:
    principal = require_super()
    deps = deps_of(current_app)
    data = await _body(partial=False)
    row = await announcements.create_announcement(deps.db, company_id=principal.company_id, title=data["title"],
                                                  text=data["text"], priority=data.get("priority", 3),
                                                  status=data.get("status", True))
    _announce(deps, "create", row)
    return jsonify(present.announcement(row))


@blueprint.put("/<announcement_id>")
async def update(announcement_id: str) -> Response:
    require_super()
    deps = deps_of(current_app)
    target = path_id(announcement_id, "announcement")
    row = await announcements.update_announcement(deps.db, target, await _body(partial=True))
    _announce(deps, "update", row)
    return jsonify(present.announcement(row))


@blueprint.delete("/<announcement_id>")
async def delete(announcement_id: str) -> Response:
    require_super()
    deps = deps_of(current_app)
    target = path_id(announcement_id, "announcement")
    media_path = await announcements.delete_announcement(deps.db, target)
    await remove_public(deps, media_path)
    deps.broker.publish(EVERY_COMPANY, EVENT, {"action": "delete", "id": target})
    return jsonify({"message": "Announcement deleted"})


@blueprint.post("/<announcement_id>/media-upload")
async def upload_media(announcement_id: str) -> Response:
    """The notice's picture (multipart `file`, an image); it replaces the previous one."""
    require_super()
    deps = deps_of(current_app)
    target = path_id(announcement_id, "announcement")
    await announcements.get_announcement(deps.db, target, everything=True)  # 404 before reading the file
    upload, _ = await read_upload()
    if upload is None or not upload.mimetype.startswith("image/"):
        raise invalid_upload("file: an image is required")
    value = await store_public(deps, upload)
    try:
        row = await announcements.set_media(deps.db, target, value, (upload.filename or value)[:255])
    except NotFound:
        await remove_public(deps, value)  # deleted meanwhile
        raise
    await remove_public(deps, row["replaced_media_path"])
    _announce(deps, "update", row)
    return jsonify({"mensagem": "Mensagem enviada"})


@blueprint.delete("/<announcement_id>/media-upload")
async def delete_media(announcement_id: str) -> Response:
    require_super()
    deps = deps_of(current_app)
    row = await announcements.set_media(deps.db, path_id(announcement_id, "announcement"), None, None)
    await remove_public(deps, row["replaced_media_path"])
    _announce(deps, "update", row)
    return jsonify({"mensagem": "Arquivo excluído"})

