"""Media files, kept in the data dir and served at unguessable URLs.

A file lives at `<root>/<token>/<name>`, where the token is 128 random bits; its URL is
`<prefix>/<token>/<name>`. A browser can load it without a header (an <img> or <audio> tag), but
nobody can guess or enumerate one. The mimetype and original filename sit beside it in `meta.json`.
Two stores: messages' media (`<data dir>/media`, `/media`) and the super admin's public files —
logos, the login page's pictures, announcements' images (`<data dir>/public`, `/public`, where the
family's frontends load them from: `<backend>/public/<setting value>`).
"""

from __future__ import annotations

import json
import mimetypes
import os
import re
import secrets
from pathlib import Path

import attrs
import trio

_TOKEN = re.compile(r"^[A-Za-z0-9_-]{22,64}$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@attrs.frozen
class StoredMedia:
    url: str  # path part: /media/<token>/<name>
    filename: str
    mimetype: str
    size: int


@attrs.frozen
class MediaFile:
    path: Path
    filename: str
    mimetype: str


def safe_name(filename: str | None, mimetype: str) -> str:
    """A file name safe in a URL and on disk, keeping the extension."""
    name = Path(filename or "").name
    stem, ext = os.path.splitext(name)
    stem = _UNSAFE.sub("_", stem).strip("._")[:80] or "file"
    ext = _UNSAFE.sub("", ext)[:10]
    if not ext:
        ext = mimetypes.guess_extension(mimetype.split(";")[0].strip()) or ".bin"
    return f"{stem}{ext}"


class MediaStore:
    def __init__(self, root: Path, *, prefix: str = "/media") -> None:
        self.root = root
        self.prefix = prefix

    def _save(self, data: bytes, filename: str | None, mimetype: str) -> StoredMedia:
        token = secrets.token_urlsafe(16)
        name = safe_name(filename, mimetype)
        directory = self.root / token
        directory.mkdir(parents=True, mode=0o750)
        (directory / name).write_bytes(data)
        (directory / "meta.json").write_text(json.dumps({"filename": filename or name, "mimetype": mimetype}))
        return StoredMedia(url=f"{self.prefix}/{token}/{name}", filename=filename or name, mimetype=mimetype,
                           size=len(data))

    async def save(self, data: bytes, filename: str | None, mimetype: str) -> StoredMedia:
        return await trio.to_thread.run_sync(self._save, data, filename, mimetype)

    def _remove(self, token: str, name: str) -> bool:
        if self.find(token, name) is None:
            return False
        directory = self.root / token
        for path in directory.iterdir():
            path.unlink()
        directory.rmdir()
        return True

    async def remove(self, token: str, name: str) -> bool:
        """Delete a stored file (its token's directory); False when there was no such file."""
        return await trio.to_thread.run_sync(self._remove, token, name)

    def find(self, token: str, name: str) -> MediaFile | None:
        """The file behind a URL, or None (bad token, unknown file, name not matching)."""
        if not _TOKEN.match(token) or name != Path(name).name or name.startswith("."):
            return None
        directory = self.root / token
        path = directory / name
        try:
            meta = json.loads((directory / "meta.json").read_text())
        except (OSError, ValueError):
            return None
        if name == "meta.json" or not path.is_file():
            return None
        return MediaFile(path=path, filename=meta.get("filename") or name,
                         mimetype=meta.get("mimetype") or "application/octet-stream")
