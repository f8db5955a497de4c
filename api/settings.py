"""`/settings`: the per-company settings (read by any user, changed by admins)."""

from __future__ import annotations

from quart import Blueprint, Response, current_app, jsonify

from api import present
from api.app import deps_of
from api.auth import current, require_admin
from api.errors import BadRequest, Forbidden, NotFound
from api.validation import Field, check_field, json_body
from storage import settings

blueprint = Blueprint("settings", __name__, url_prefix="/settings")
VALUE = Field("str", max_len=10_000, strip=False)


def _known(key: str) -> str:
    if key not in settings.DEFAULTS:
        raise NotFound(f"no setting named {key[:100]!r}", code="ERR_NO_SETTING_FOUND")
    return key


@blueprint.get("")
async def list_settings() -> Response:
    principal = current()
    rows = await settings.list_settings(deps_of(current_app).db, principal.company_id)
    return jsonify([present.setting(row) for row in rows])


@blueprint.get("/<key>")
async def show_setting(key: str) -> Response:
    principal = current()
    value = await settings.get_setting(deps_of(current_app).db, principal.company_id, _known(key))
    return jsonify({"key": key, "value": value})


@blueprint.put("/<key>")
async def update_setting(key: str) -> Response:
    principal = require_admin()
    _known(key)
    if key in settings.SUPER_ONLY and not principal.super:
        raise Forbidden(f"only a super admin can change {key}")
    data = await json_body()
    raw = data.get("value")
    if isinstance(raw, bool):  # some frontends send switches as booleans
        raw = "enabled" if raw else "disabled"
    elif isinstance(raw, int):
        raw = str(raw)
    if "value" not in data:
        raise BadRequest("value: is required", code="ERR_VALIDATION", field="value")
    value = check_field("value", raw, VALUE)
    if key in settings.SUPER_ONLY and not value.isdigit():
        raise BadRequest("value: must be a whole number", code="ERR_VALIDATION", field="value")
    row = await settings.set_setting(deps_of(current_app).db, principal.company_id, key, value)
    return jsonify(present.setting(row))
