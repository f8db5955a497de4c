"""`/helps`: help videos the super admin lists for the users of every company (ticketz's shapes).

    GET    /helps?searchParam=&pageNumber=   {records, count, hasMore}, by title, 20 a page
    GET    /helps/list                       every help, by title (the Helps page)
    GET    /helps/:id
    POST   /helps {title, description, video, link}   super admin
    PUT    /helps/:id                                 super admin
    DELETE /helps/:id                                 super admin

`video` is a YouTube video id: the frontend embeds `https://www.youtube.com/embed/<video>`, so a
pasted YouTube link is reduced to its id here (anything else is refused rather than shown broken).
"""

from __future__ import annotations

import re
from typing import Any

from quart import Blueprint, Response, current_app, jsonify

from api import present
from api.app import deps_of
from api.auth import current, require_super
from api.errors import BadRequest
from api.validation import Field, json_body, page, path_id, search_pattern, validate
from storage import helps

blueprint = Blueprint("helps", __name__, url_prefix="/helps")

PAGE_SIZE = 20
LIST_LIMIT = 500
FIELDS = {
    "title": Field("str", required=True, min_len=3, max_len=255),
    "description": Field("str", nullable=True, max_len=10_000),
    "video": Field("str", nullable=True, max_len=2000),
    "link": Field("str", nullable=True, max_len=2000),
}
VIDEO_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
YOUTUBE_LINK = re.compile(r"https?://(?:www\.|m\.)?(?:youtube\.com/(?:watch\?(?:[^#]*&)?v=|embed/|shorts/|live/)"
                          r"|youtu\.be/)([A-Za-z0-9_-]{1,64})", re.IGNORECASE)
LINK = re.compile(r"https?://\S+", re.IGNORECASE)


def _invalid(field: str, message: str) -> BadRequest:
    return BadRequest(f"{field}: {message}", code="ERR_VALIDATION", field=field)


async def _body(*, partial: bool) -> dict[str, Any]:
    data = validate(await json_body(), FIELDS, partial=partial)
    fields: dict[str, Any] = {key: "" if value is None else value for key, value in data.items()}
    video = fields.get("video")
    if video:
        match = YOUTUBE_LINK.match(video)
        if match:
            fields["video"] = match.group(1)
        elif not VIDEO_ID.fullmatch(video):
            raise _invalid("video", "must be a YouTube video id or link")
    if fields.get("link") and not LINK.fullmatch(fields["link"]):
        raise _invalid("link", "must be an http or https URL")
    return fields


@blueprint.get("")
async def list_page() -> Response:
    current()
    limit, offset = page(PAGE_SIZE)
    rows, count = await helps.page_helps(deps_of(current_app).db, search=search_pattern(), limit=limit,
                                         offset=offset)
    return jsonify(present.page("records", [present.help_video(row) for row in rows], count, limit, offset))


@blueprint.get("/list")
async def list_all() -> Response:
    current()
    rows = await helps.all_helps(deps_of(current_app).db, limit=LIST_LIMIT)
    return jsonify([present.help_video(row) for row in rows])


@blueprint.get("/<help_id>")
async def show(help_id: str) -> Response:
    current()
    return jsonify(present.help_video(await helps.get_help(deps_of(current_app).db, path_id(help_id, "help"))))


@blueprint.post("")
async def create() -> Response:
    require_super()
    fields = await _body(partial=False)
    row = await helps.create_help(deps_of(current_app).db, **fields)
    return jsonify(present.help_video(row))


@blueprint.put("/<help_id>")
async def update(help_id: str) -> Response:
    require_super()
    target = path_id(help_id, "help")
    row = await helps.update_help(deps_of(current_app).db, target, await _body(partial=True))
    return jsonify(present.help_video(row))


@blueprint.delete("/<help_id>")
async def delete(help_id: str) -> Response:
    require_super()
    await helps.delete_help(deps_of(current_app).db, path_id(help_id, "help"))
    return jsonify({"message": "Help deleted"})
