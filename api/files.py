"""`/files`: file lists — a named list of uploaded files, each with a description (the SaaS lineage's
Files screen; its campaigns pick a list and send its files).

    GET    /files?searchParam=&pageNumber=    {files, count, hasMore}, by name, 20 a page
    GET    /files/list?searchParam=           every list, by name (the campaign form's picker)
    GET    /files/:id                         one list with its `options`
    POST   /files {name, message, options: [{name}]}              any user
    PUT    /files/:id {name?, message?, options?: [{id?, name}]}   admin
    DELETE /files/:id                                             any user
    DELETE /files                                                 admin: every list of the company
    POST   /files/uploadList/:id   multipart `files`, with `id` (the option each file is for), `mediaType`
                                   and `name` (its description) repeated once per file, in the same order

A list is `{id, name, message, companyId, createdAt, updatedAt}`, shown one at a time with `options`:
`{id, fileId, name, path, mediaType, mediaUrl, createdAt, updatedAt}` — `path` the uploaded file's name (what
the form shows), `mediaUrl` its full URL (null until its upload). The form saves the list first, then
uploads the files its options picked, pairing them with the options it got back by index: options keep
the order they were sent in. Names are unique in the company (any case): 409 `ERR_FILE_NAME_ALREADY_EXISTS`.

Who may do what follows the lineage: any user of the company lists, creates, uploads and deletes, an admin
edits. (The lineage's `DELETE /files` deletes every company's lists, for anyone; here it is an admin's,
for their company.) A client never sets an option's `path` or `mediaType` by JSON — only an upload does —
and an option id of another list is a 404 that changes nothing (the lineage's upsert would move it).

Files are kept in the message media store (`/media/<token>/<name>`, storage/media.py); a file replaced,
an option dropped or a list deleted loses its file once the change is committed. The request size is
bounded by `UPLOAD_MAX_SIZE`. Changes are announced to the company's sockets as `company-{id}-file`:
`{action: "create" | "update", files: <list>, fileList: <list>}` (the Files screen reads `files`, the
lineage's backend sent `fileList`), `{action: "delete", fileId}`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import trio
from quart import Blueprint, Response, current_app, jsonify, request
from werkzeug.datastructures import FileStorage, MultiDict

from api import present
from api.app import Deps, deps_of
from api.auth import current, require_admin
from api.errors import BadRequest
from api.validation import Field, check_field, json_body, page, path_id, search_pattern, validate
from storage import files
from storage.files import OptionChange, OptionMedia

blueprint = Blueprint("files", __name__, url_prefix="/files")

PAGE_SIZE = 20  # the lineage's
LIST_LIMIT = 1000
MAX_OPTIONS = 100  # options in a list, and files in one upload
MEDIA_CLEANUP = 5.0  # seconds at most to delete stored files nothing uses
UPLOADED = {"mensagem": "Arquivos atualizados"}  # the lineage's answer to an upload
FIELDS = {
    "name": Field("str", required=True, min_len=3, max_len=255),
    "message": Field("str", nullable=True, max_len=10_000, strip=False),
}
OPTION_NAME = Field("str", nullable=True, max_len=1024)
OPTION_ID = Field("int", minimum=1)
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MIMETYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}")


def _invalid(field: str, message: str) -> BadRequest:
    return BadRequest(f"{field}: {message}", code="ERR_VALIDATION", field=field)


# ─── request parsing ────────────────────────────────────────────────────────────────────

def _options(value: Any, *, with_ids: bool) -> list[OptionChange]:
    """`options` as the form sends them (`[{name, path, mediaType, file, …}]`): only the description and,
    when editing, the id are taken."""
    if not isinstance(value, list):
        raise _invalid("options", "must be a list of options [{name}]")
    if len(value) > MAX_OPTIONS:
        raise _invalid("options", f"has too many items (at most {MAX_OPTIONS})")
    changes = []
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise _invalid(f"options[{index}]", "must be an object {name}")
        name = check_field(f"options[{index}].name", item.get("name"), OPTION_NAME) or ""
        raw_id = item.get("id") if with_ids else None
        option_id = None if raw_id in (None, "") else check_field(f"options[{index}].id", raw_id, OPTION_ID)
        changes.append(OptionChange(name=name, id=option_id))
    if len({change.id for change in changes if change.id is not None}) < sum(c.id is not None for c in changes):
        raise _invalid("options", "names an option twice")
    return changes


async def _body(*, partial: bool) -> tuple[dict[str, Any], list[OptionChange] | None]:
    raw = await json_body()
    data = validate(raw, FIELDS, partial=partial)
    if "message" in data and data["message"] is None:
        data["message"] = ""
    options = None if raw.get("options") is None else _options(raw["options"], with_ids=partial)
    return data, options


def _per_file(form: MultiDict[str, str], name: str, count: int) -> list[str] | None:
    """A field the form repeats once per file (`id`, `mediaType`, `name`); None when it is not sent."""
    values = form.getlist(name)
    if not values:
        return None
    if len(values) != count:
        raise _invalid(name, f"must be given once per file ({count}), not {len(values)} times")
    return values


def _media_type(declared: str | None, upload: FileStorage) -> str:
    """The mediaType the form declares (the browser's `file.type`, "" when it does not know the type),
    else the part's own, else application/octet-stream."""
    value = (declared or "").strip().lower()
    if value and not MIMETYPE.fullmatch(value):
        raise _invalid("mediaType", f"{value[:60]!r} is not a media type (type/subtype)")
    own = (upload.mimetype or "").lower()
    return value or (own if MIMETYPE.fullmatch(own) else "application/octet-stream")


def _shown_name(filename: str, url: str) -> str:
    """An option's `path`: the name of the file the user picked, as the form shows it (the lineage kept
    the uploaded name, `/` made `-`); the stored name when nothing printable is left of it."""
    name = CONTROL.sub("", filename.replace("/", "-").replace("\\", "-")).strip()[:255]
    return name or url.rsplit("/", 1)[-1]


# ─── helpers ────────────────────────────────────────────────────────────────────────────

def _announce(deps: Deps, company_id: int, payload: dict[str, Any]) -> None:
    deps.broker.publish(company_id, f"company-{company_id}-file", payload)


def _changed(deps: Deps, company_id: int, action: str, row: dict[str, Any]) -> dict[str, Any]:
    shown = present.file_list(row, deps.messages.base_url)
    _announce(deps, company_id, {"action": action, "files": shown, "fileList": shown})
    return shown


async def remove_media(deps: Deps, urls: Sequence[str]) -> None:
    """Delete stored files (`/media/<token>/<name>`) nothing uses any more. Shielded and bounded: it also
    runs as the cleanup of a request being cancelled."""
    with trio.move_on_after(MEDIA_CLEANUP) as scope:
        scope.shield = True
        for url in urls:
            parts = url.removeprefix(deps.media.prefix + "/").split("/")
            if len(parts) == 2:
                await deps.media.remove(*parts)


# ─── routes ─────────────────────────────────────────────────────────────────────────────

@blueprint.get("")
async def list_page() -> Response:
    principal = current()
    deps = deps_of(current_app)
    limit, offset = page(PAGE_SIZE)
    rows, count = await files.page_files(deps.db, principal.company_id, search=search_pattern(), limit=limit,
                                         offset=offset)
    shown = [present.file_list(row, deps.messages.base_url) for row in rows]
    return jsonify(present.page("files", shown, count, limit, offset))


@blueprint.get("/list")
async def list_all() -> Response:
    principal = current()
    deps = deps_of(current_app)
    rows = await files.all_files(deps.db, principal.company_id, search=search_pattern(), limit=LIST_LIMIT)
    return jsonify([present.file_list(row, deps.messages.base_url) for row in rows])


@blueprint.get("/<file_id>")
async def show(file_id: str) -> Response:
    principal = current()
    deps = deps_of(current_app)
    row = await files.show_file(deps.db, principal.company_id, path_id(file_id, "file list"))
    return jsonify(present.file_list(row, deps.messages.base_url))


@blueprint.post("")
async def create() -> Response:
    principal = current()
    deps = deps_of(current_app)
    data, options = await _body(partial=False)
    row = await files.create_file(deps.db, principal.company_id, name=data["name"], message=data.get("message", ""),
                                  options=[option.name for option in options or ()])
    return jsonify(_changed(deps, principal.company_id, "create", row))


@blueprint.put("/<file_id>")
async def update(file_id: str) -> Response:
    principal = current()
    deps = deps_of(current_app)
    target = path_id(file_id, "file list")
    await files.show_file(deps.db, principal.company_id, target)  # another company's: 404 before 403
    require_admin()
    data, options = await _body(partial=True)
    changed = await files.update_file(deps.db, principal.company_id, target, name=data.get("name"),
                                      message=data.get("message"), options=options)
    await remove_media(deps, changed.dropped_media)
    return jsonify(_changed(deps, principal.company_id, "update", changed.row))


@blueprint.delete("/<file_id>")
async def delete(file_id: str) -> Response:
    principal = current()
    deps = deps_of(current_app)
    target = path_id(file_id, "file list")
    await remove_media(deps, await files.delete_file(deps.db, principal.company_id, target))
    _announce(deps, principal.company_id, {"action": "delete", "fileId": target})
    return jsonify({"message": "File List deleted"})


@blueprint.delete("")
async def delete_all() -> Response:
    principal = require_admin()
    deps = deps_of(current_app)
    await remove_media(deps, await files.delete_all_files(deps.db, principal.company_id))
    return jsonify({"message": "File Lists deleted"})


@blueprint.post("/uploadList/<file_id>")
async def upload(file_id: str) -> Response:
    """The files the form's options picked. Without files (the form posts even when none was picked) it
    changes nothing. All or nothing: a bad field, an empty file or an option of another list writes
    nothing and keeps no file."""
    principal = current()
    deps = deps_of(current_app)
    target = path_id(file_id, "file list")
    await files.show_file(deps.db, principal.company_id, target)  # 404 before reading the files
    if not (request.mimetype or "").startswith("multipart/"):
        raise _invalid("files", "the body must be multipart/form-data with the files")
    form = await request.form
    uploads = (await request.files).getlist("files")
    if not uploads:
        return jsonify(UPLOADED)
    if len(uploads) > MAX_OPTIONS:
        raise _invalid("files", f"at most {MAX_OPTIONS} files at once")
    ids = _per_file(form, "id", len(uploads))
    if ids is None:
        raise _invalid("id", "name the option of each file")
    option_ids = [check_field("id", value, OPTION_ID) for value in ids]
    types = _per_file(form, "mediaType", len(uploads)) or [None] * len(uploads)
    names = _per_file(form, "name", len(uploads)) or [None] * len(uploads)
    media_types = [_media_type(declared, part) for declared, part in zip(types, uploads, strict=True)]
    descriptions = [None if name is None else check_field("name", name, OPTION_NAME) for name in names]
    stored: list[OptionMedia] = []
    changed = None
    try:
        for option_id, part, media_type, description in zip(option_ids, uploads, media_types, descriptions,
                                                             strict=True):
            data = part.read()
            if not data:
                raise _invalid("files", f"{part.filename or 'a file'} is empty")
            saved = await deps.media.save(data, part.filename, media_type)
            stored.append(OptionMedia(id=option_id, path=_shown_name(saved.filename, saved.url), media_type=media_type,
                                      media_url=saved.url, name=description))
        changed = await files.set_media(deps.db, principal.company_id, target, stored)
    finally:
        if changed is None:  # not written: the files are nobody's
            await remove_media(deps, [item.media_url for item in stored])
    await remove_media(deps, changed.dropped_media)
    _changed(deps, principal.company_id, "update", changed.row)
    return jsonify(UPLOADED)
