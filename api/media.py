"""Files served without a token but at unguessable URLs (see storage/media.py).

`GET /media/<token>/<name>`: message media. `GET /public/<token>/<name>`: the super admin's public
files (logos, the login page's pictures, announcements' images), which the family's frontends load
from `<backend>/public/<setting value>`.
"""

from __future__ import annotations

from urllib.parse import quote

import trio
from quart import Blueprint, Response, current_app

from api.app import deps_of
from api.auth import public
from api.errors import NotFound
from storage.media import MediaStore

blueprint = Blueprint("media", __name__)
INLINE = ("image/", "audio/", "video/")


@blueprint.get("/media/<token>/<name>")
@public
async def media(token: str, name: str) -> Response:
    return await _serve(deps_of(current_app).media, token, name)


@blueprint.get("/public/<token>/<name>")
@public
async def public_file(token: str, name: str) -> Response:
    return await _serve(deps_of(current_app).public_files, token, name)


async def _serve(store: MediaStore, token: str, name: str) -> Response:
    found = store.find(token, name)
    if found is None:
        raise NotFound("no such media", code="ERR_NO_MEDIA")
    data = await trio.to_thread.run_sync(found.path.read_bytes)
    response = Response(data, mimetype=found.mimetype)
    disposition = "inline" if found.mimetype.startswith(INLINE) else "attachment"
    response.headers["Content-Disposition"] = f"{disposition}; filename*=UTF-8''{quote(found.filename)}"
    response.headers["Cache-Control"] = "private, max-age=86400, immutable"
    # Loaded by the frontend from another origin (<img src>): allow that, and nothing active.
    response.headers["Cross-Origin-Resource-Policy"] = "cross-origin"
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response
