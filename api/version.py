"""`GET /`: what the family's frontends probe on every load; `GET /version`: the same answer.

The ticketz frontend calls `GET /?cb=<time>` before it renders anything ("Backend unreachable"
otherwise) and compares the response's `Date` header (exposed to it by CORS, api/app.py) with the
client's clock; its About box (super admins) shows `tagName` and `buildTimestamp`, or `commitHash`,
`branchName` and `commitTimestamp`. The body is the family's version shape plus our `version`.
Both are public and cheap: the name comes from the installation's `appName` when the database answers
within a second, else it is "zapgate" — the probe says the process is up, `/ready` says the rest.
"""

from __future__ import annotations

from typing import Any

import psycopg
import trio
from quart import Blueprint, Response, current_app, jsonify

from api.app import deps_of
from api.auth import public
from gateway import __version__
from storage.errors import StorageError

blueprint = Blueprint("version", __name__)

NAME = "zapgate"
NAME_DEADLINE = 1.0  # seconds the probe waits for the installation's name before answering without it


@blueprint.get("/")
@public
async def probe() -> Response:
    return jsonify(await _version())


@blueprint.get("/version")
@public
async def version() -> Response:
    return jsonify(await _version())


async def _version() -> dict[str, str]:
    name = ""
    db = deps_of(current_app).db
    with trio.move_on_after(NAME_DEADLINE):
        try:
            name = await db.probe(lambda conn: _app_name(conn, db.q.platform_setting_get)) or ""
        except StorageError:
            pass  # the database is away: the process still answers
    return {"name": name or NAME, "version": __version__, "tagName": f"v{__version__}", "commitHash": "",
            "commitTimestamp": "", "branchName": "", "buildTimestamp": ""}


def _app_name(conn: psycopg.Connection[Any], query: str) -> str | None:
    row = conn.execute(query, {"key": "appName"}).fetchone()
    return None if row is None else row["value"]
