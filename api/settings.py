"""Settings: the company's (`/settings`), the installation's (the super admin's), and the public ones.

    GET  /settings                     every setting of the caller's company, defaults included; a super
                                       admin also gets the installation's; credentials only for admins
    GET  /settings/:key                the value itself, a JSON string (ticketz's `useSettings` reads it so)
    PUT  /settings/:key {value}        admins (the installation's keys and tenant limits: super admins);
                                       the value is checked against the key's spec (storage/settings.py)
    GET  /public-settings/:key         no token: the branding the login page and the splash screen need;
                                       null for an unset value and for any key that is not public
    POST /settings/logo                super admin, multipart `file` + `mode` (Light, Dark, Favicon)
    POST /settings/publicFile          super admin, multipart `file` + `settingKey` (the login page's pictures)

A change of a company setting is announced as `company-{id}-settings` `{action: "update", setting}`
(credentials never), and, for ticketz's "safe" keys (groupsTab, tagsMode, ...) that every user's screen
follows, as `settings` `{key, value}` — the event ticketz's frontend listens to.
"""

from __future__ import annotations

import json
import re
from typing import Any

from quart import Blueprint, Response, current_app, jsonify

from api import present
from api.app import Deps, deps_of
from api.auth import current, public, require_admin, require_super
from api.errors import BadRequest, Forbidden, NotFound
from api.schedules import known_zone
from api.uploads import invalid_upload, public_exists, read_upload, remove_public, store_public
from api.validation import Field, check_field, json_body
from storage import errors as storage_errors
from storage import queues, settings
from storage.settings import Spec

blueprint = Blueprint("settings", __name__)
VALUE = Field("str", max_len=10_000, strip=False)
COLOR = re.compile(r"#(?:[0-9a-fA-F]{3,4}|[0-9a-fA-F]{6}|[0-9a-fA-F]{8})")  # what the frontends' theme accepts
LANGUAGE = re.compile(r"[a-z]{2,3}(?:[-_][A-Za-z]{2,4})?")
LINK_URL = re.compile(r"(?:https?://|mailto:)[^\s\x00-\x1f]+", re.IGNORECASE)
MAX_LINKS = 20
LOGO_MODES = ("Light", "Dark", "Favicon")
PUBLIC_FILE_TYPES = {"loginSidePanelImage": ("image/",), "loginBackgroundContent": ("image/", "video/")}


def _spec(key: str) -> Spec:
    spec = settings.SPECS.get(key)
    if spec is None:
        raise NotFound(f"no setting named {key[:100]!r}", code="ERR_NO_SETTING_FOUND")
    return spec


def _invalid(message: str) -> BadRequest:
    return BadRequest(f"value: {message}", code="ERR_VALIDATION", field="value")


@blueprint.get("/settings")
async def list_settings() -> Response:
    principal = current()
    db = deps_of(current_app).db
    rows = await settings.list_settings(db, principal.company_id)
    if not principal.is_admin:
        rows = [row for row in rows if not _is_secret(row["key"])]
    if principal.super:
        rows += await settings.list_platform_settings(db)
    return jsonify([present.setting(row) for row in rows])


@blueprint.get("/settings/<key>")
async def show_setting(key: str) -> Response:
    principal = current()
    spec = _spec(key)
    if spec.secret and not principal.is_admin:
        raise Forbidden(f"only an admin can read {key}")
    db = deps_of(current_app).db
    if settings.is_platform(key):
        return jsonify(await settings.get_platform_setting(db, key))
    return jsonify(await settings.get_setting(db, principal.company_id, key))


@blueprint.put("/settings/<key>")
async def update_setting(key: str) -> Response:
    principal = require_admin()
    spec = _spec(key)
    platform = settings.is_platform(key)
    if (platform or key in settings.SUPER_ONLY) and not principal.super:
        raise Forbidden(f"only a super admin can change {key}")
    data = await json_body()
    if "value" not in data:
        raise BadRequest("value: is required", code="ERR_VALIDATION", field="value")
    deps = deps_of(current_app)
    value = await _checked(deps, principal.company_id, spec, data["value"])
    if platform:
        row = await _set_platform(deps, key, value)
        return jsonify(present.setting(row))
    row = await settings.set_setting(deps.db, principal.company_id, key, value)
    deps.tickets.forget_profiles(principal.company_id)  # routing reads it from the next message on
    shown = present.setting(row)
    company = principal.company_id
    if not spec.secret:
        deps.broker.publish(company, f"company-{company}-settings", {"action": "update", "setting": shown})
    if spec.safe:
        deps.broker.publish(company, "settings", {"key": key, "value": value})
    return jsonify(shown)


@blueprint.get("/public-settings/<key>")
@public
async def public_setting(key: str) -> Response:
    """ticketz's public keys, from the installation's settings; null when unset, unknown or not public."""
    if key not in settings.PUBLIC_KEYS or not settings.is_platform(key):
        return jsonify(None)
    value = await settings.get_platform_setting(deps_of(current_app).db, key)
    return jsonify(value or None)


@blueprint.post("/settings/logo")
async def upload_logo() -> Response:
    """A logo (multipart `file`, an image, and `mode`): sets appLogo{mode}; answers the new value."""
    require_super()
    upload, form = await read_upload()
    mode = form.get("mode")
    if mode not in LOGO_MODES:
        raise BadRequest(f"mode: must be one of {', '.join(LOGO_MODES)}", code="ERR_VALIDATION", field="mode")
    if upload is None or not upload.mimetype.startswith("image/"):
        raise invalid_upload("file: an image is required")
    deps = deps_of(current_app)
    row = await _set_platform(deps, f"appLogo{mode}", await store_public(deps, upload))
    return jsonify(row["value"])


@blueprint.post("/settings/publicFile")
async def upload_public_file() -> Response:
    """A picture of the login page (multipart `file` and `settingKey`); answers the new value."""
    require_super()
    upload, form = await read_upload()
    key = form.get("settingKey") or ""
    if upload is None or not key:
        raise invalid_upload("a file and its settingKey are required")
    types = PUBLIC_FILE_TYPES.get(key)
    if types is None:
        raise invalid_upload(f"settingKey: must be one of {', '.join(PUBLIC_FILE_TYPES)}",
                             code="ERR_INVALID_SETTING", field="settingKey")
    if not upload.mimetype.startswith(types):
        raise invalid_upload(f"file: {key} takes {' or '.join(t.rstrip('/') for t in types)} files")
    deps = deps_of(current_app)
    row = await _set_platform(deps, key, await store_public(deps, upload))
    return jsonify(row["value"])


def _is_secret(key: str) -> bool:
    spec = settings.SPECS.get(key)
    return spec is not None and spec.secret


async def _set_platform(deps: Deps, key: str, value: str) -> dict[str, Any]:
    """Set an installation setting; a public file it named and no setting names any more is deleted."""
    previous = await settings.get_platform_setting(deps.db, key)
    row = await settings.set_platform_setting(deps.db, key, value)
    if key == "gracePeriod":
        deps.access.forget()  # every company's expiry moved
    if previous and previous != value and settings.PLATFORM_SPECS[key].kind == "file":
        in_use = {other["value"] for other in await settings.list_platform_settings(deps.db)}
        if previous not in in_use:
            await remove_public(deps, previous)
    return row


async def _checked(deps: Deps, company_id: int, spec: Spec, raw: Any) -> str:
    """The value as stored, or a 400 naming what the key accepts."""
    if isinstance(raw, bool):  # some frontends send switches as booleans
        raw = "enabled" if raw else "disabled"
    elif isinstance(raw, int):  # and numbers (minutes, a queue id) as numbers
        raw = str(raw)
    value: str = check_field("value", raw, VALUE)
    if len(value) > spec.max_len:
        raise _invalid(f"is too long (at most {spec.max_len} characters)")
    if spec.kind == "choice":
        if value.strip() not in spec.choices:
            raise _invalid(f"must be one of {', '.join(spec.choices)}")
        return value.strip()
    if spec.kind == "count":
        if not value.strip().isdigit() or not value.strip().isascii():
            raise _invalid("must be a whole number")
        return str(int(value.strip()))
    if spec.kind == "queue":
        return await _checked_queue(deps, company_id, value.strip())
    if spec.kind == "color":
        if value.strip() and not COLOR.fullmatch(value.strip()):
            raise _invalid("must be a hex color (#RGB, #RRGGBB, #RRGGBBAA) or empty")
        return value.strip()
    if spec.kind == "file":
        if value.strip() and not public_exists(deps, value.strip()):
            raise _invalid("must name an uploaded public file (<token>/<name>) or be empty")
        return value.strip()
    if spec.kind == "links":
        return _checked_links(value)
    if spec.kind == "timezone":
        if not known_zone(value.strip()):
            raise _invalid("must be a known IANA time zone such as America/Sao_Paulo")
        return value.strip()
    if spec.kind == "language":
        if not LANGUAGE.fullmatch(value.strip()):
            raise _invalid("must be a language code such as en, pt or pt-BR")
        return value.strip()
    return value


async def _checked_queue(deps: Deps, company_id: int, value: str) -> str:
    """"0" (no queue: the ticket is closed), or the id of a queue of the company."""
    if not value.isascii() or not value.isdigit() or len(value) > 18:
        raise _invalid('must be "0" or the id of a queue')
    if int(value) == 0:
        return "0"
    try:
        await queues.show_queue(deps.db, company_id, int(value))
    except storage_errors.NotFound:
        raise _invalid(f"this company has no queue {int(value)}") from None
    return str(int(value))


def _checked_links(value: str) -> str:
    """The login page's links: JSON `[{title, url}]` (http, https or mailto URLs), stored compact."""
    if not value.strip():
        return ""
    try:
        links = json.loads(value)
    except ValueError:
        raise _invalid("must be a JSON list of {title, url}") from None
    if not isinstance(links, list) or len(links) > MAX_LINKS:
        raise _invalid(f"must be a JSON list of at most {MAX_LINKS} {{title, url}}")
    checked = []
    for index, link in enumerate(links):
        title = link.get("title") if isinstance(link, dict) else None
        url = link.get("url") if isinstance(link, dict) else None
        if not isinstance(title, str) or not 0 < len(title.strip()) <= 100:
            raise _invalid(f"link {index}: title must be a text of 1 to 100 characters")
        if not isinstance(url, str) or len(url.strip()) > 2000 or not LINK_URL.fullmatch(url.strip()):
            raise _invalid(f"link {index}: url must be an http, https or mailto URL")
        checked.append({"title": title.strip(), "url": url.strip()})
    return json.dumps(checked, ensure_ascii=False, separators=(",", ":"))
