"""One uploaded file of a multipart request, and the public files the super admin uploads.

A public file (a logo, a login page picture, an announcement's image) is stored in `Deps.public_files`
and named, in settings and announcements, by `<token>/<name>`: the family's frontends load it from
`<backend>/public/<that value>`, which `GET /public/<token>/<name>` (api/media.py) serves.
"""

from __future__ import annotations

import re

import attrs
from quart import request
from werkzeug.datastructures import MultiDict

from api.app import Deps
from api.errors import ApiError

PUBLIC_VALUE = re.compile(r"([A-Za-z0-9_-]{22,64})/([A-Za-z0-9_-][A-Za-z0-9._-]{0,99})")


@attrs.frozen
class Upload:
    data: bytes
    filename: str | None
    mimetype: str


def invalid_upload(message: str, *, code: str = "ERR_INVALID_UPLOAD", field: str | None = "file") -> ApiError:
    """The family answers a refused upload with 406 (`ERR_INVALID_UPLOAD`, `ERR_INVALID_SETTING`)."""
    return ApiError(message, code=code, status=406, field=field)


async def read_upload(field: str = "file") -> tuple[Upload | None, MultiDict[str, str]]:
    """The first file of `field` (None when there is none) and the form's other fields."""
    if not (request.mimetype or "").startswith("multipart/"):
        raise invalid_upload("the body must be multipart/form-data with a file")
    form = await request.form
    files = await request.files
    uploads = files.getlist(field)
    if not uploads:
        return None, form
    upload = uploads[0]
    data = upload.read()
    if not data:
        raise invalid_upload(f"{field}: {upload.filename or 'the file'} is empty")
    mimetype = (upload.mimetype or "application/octet-stream").split(";")[0].strip().lower()
    return Upload(data=data, filename=upload.filename or None, mimetype=mimetype), form


async def store_public(deps: Deps, upload: Upload) -> str:
    """Keep the file among the public files; its value `<token>/<name>`."""
    stored = await deps.public_files.save(upload.data, upload.filename, upload.mimetype)
    return stored.url.removeprefix(deps.public_files.prefix + "/")


def public_parts(value: str | None) -> tuple[str, str] | None:
    """(token, name) of a public file's value; None when it names no public file."""
    match = PUBLIC_VALUE.fullmatch(value or "")
    return (match.group(1), match.group(2)) if match else None


def public_exists(deps: Deps, value: str) -> bool:
    parts = public_parts(value)
    return parts is not None and deps.public_files.find(*parts) is not None


async def remove_public(deps: Deps, value: str | None) -> None:
    """Delete a public file nothing uses any more (a value naming none is ignored)."""
    parts = public_parts(value)
    if parts is not None:
        await deps.public_files.remove(*parts)
