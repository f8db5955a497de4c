"""`/quick-messages`: the texts agents keep for the chat's "/" shortcuts (ticketz's Quick Responses page).

    GET    /quick-messages?searchParam=&pageNumber=&userId=   {records, count, hasMore}, 20 a page
    GET    /quick-messages/list?searchParam=                  every one the caller lists (the chat's shortcuts)
    POST   /quick-messages {shortcode, message, geral?}       the caller's; 201
    GET    /quick-messages/:id
    PUT    /quick-messages/:id {shortcode?, message?, geral?}
    DELETE /quick-messages/:id                                its file goes with it
    POST   /quick-messages/:id/media-upload   multipart `file` the file sent with it (replaces the one it had)
    DELETE /quick-messages/:id/media-upload

A message is `{id, shortcode, message, mediaPath, mediaName, userId, companyId, geral, createdAt,
updatedAt}`; `mediaPath` is its file's full URL (the SaaS frontend fetches it and sends it as the chat's
file), `geral` the SaaS lineage's "for everybody".

Who lists what (ticketz's FindService, and the setting `quickMessages`): `company` — every message of the
company; `individual` (the default) — the caller's own and the global ones (`geral`; ticketz has no such
flag: its messages are never global, so its rule holds as it is). The paginated page lists the same, and an
admin every message of the company (admins manage them all); `userId` narrows it to one author's. A
message the caller does not list is a 404 to them (an admin's: none). Changing one (PUT, DELETE, its file) is
its author's or an admin's: anybody else who lists it gets a 403. An edit keeps the author (ticketz makes the
editor its author: an admin fixing a typo would take a colleague's message away from them).

A shortcode is unique per author, in any case (409 `ERR_QUICKMESSAGE_ALREADY_EXISTS`): ticketz's default
mode gives each agent their own set, so two agents may each have "/oi", and nobody is refused a shortcode
because of a message they cannot see. A global one and the caller's own may then share a shortcode; the
chat lists both, each with its text.

The texts' variables (`{{name}}`, `{{greeting}}`, …) are rendered when a message is sent (api/messages.py):
the chat puts the text in the box as written, the server fills it in for the ticket it is sent in.

Events, with both names the lineage listens to — `company-{id}-quickmessage` (ticketz's backend; its page
refetches instead) and `company{id}-quickemessage` (sic, the SaaS frontend's): `{action: create | update,
record}` and `{action: delete, id}`. A personal message's events, in `individual` mode, reach only its author
and the admin who changed it; the others' reach the company.
"""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response, current_app, jsonify

from api import present
from api.app import Deps, deps_of
from api.auth import Principal, current
from api.errors import ApiError, BadRequest, Forbidden, NotFound
from api.files import remove_media
from api.live import chat_audience
from api.queues import replace_media
from api.validation import Field, json_body, page, path_id, query_int, search_pattern, validate
from storage import quick_messages, settings
from storage.db import Row
from storage.errors import Conflict

blueprint = Blueprint("quick_messages", __name__, url_prefix="/quick-messages")

PAGE_SIZE = 20  # ticketz's
FIELDS = {
    "shortcode": Field("str", required=True, max_len=255),
    "message": Field("str", required=True, max_len=10_000, strip=False),
}
ATTACHED = {"mensagem": "Arquivo Anexado"}  # the SaaS lineage's answers to a file upload and removal
REMOVED = {"mensagem": "Arquivo Excluído"}


# ─── shapes ─────────────────────────────────────────────────────────────────────────────

def shown(row: Row, base_url: str) -> dict[str, Any]:
    media = row.get("media_path")
    return {
        "id": row["id"], "shortcode": row["shortcode"], "message": row["message"],
        "mediaPath": f"{base_url}{media}" if media else None, "mediaName": row.get("media_name"),
        "userId": row["user_id"], "companyId": row["company_id"], "geral": row["is_global"],
        "createdAt": row["created_at"].isoformat(), "updatedAt": row["updated_at"].isoformat(),
    }


def _geral(value: Any) -> bool:
    """`geral`: a boolean, 0/1 or "true"/"false" (a form's value); anything else is refused."""
    if isinstance(value, bool):
        return value
    if value in (0, 1, "0", "1"):
        return value in (1, "1")
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise BadRequest("geral: must be true or false", code="ERR_VALIDATION", field="geral")


async def _body(*, partial: bool) -> dict[str, Any]:
    """The fields the body gives, as storage's arguments. The frontends send the whole record back on an
    edit (`id`, `userId`, `mediaPath`, …): only these three are read."""
    raw = await json_body()
    data = validate(raw, FIELDS, partial=partial)
    if "message" in data and not data["message"].strip():
        raise BadRequest("message: must not be empty", code="ERR_VALIDATION", field="message")
    fields: dict[str, Any] = {key: data[key] for key in ("shortcode", "message") if key in data}
    if raw.get("geral") is not None:
        fields["is_global"] = _geral(raw["geral"])
    return fields


def _shortcode_taken(error: Conflict) -> ApiError:
    if error.constraint == "quick_messages_user_shortcode_key":
        return ApiError("you have a quick message with this shortcode already", code="ERR_QUICKMESSAGE_ALREADY_EXISTS",
                        status=409, field="shortcode")
    return ApiError("the record already exists", code="ERR_CONFLICT", status=409)


# ─── who lists, who changes ─────────────────────────────────────────────────────────────

async def _company_wide(deps: Deps, company_id: int) -> bool:
    """The setting `quickMessages`: `company` lists every message to everybody."""
    return await settings.get_setting(deps.db, company_id, "quickMessages") == "company"


async def _listed(deps: Deps, principal: Principal, raw_id: str) -> tuple[Row, bool]:
    """The message if the caller lists it (an admin: any of the company's), and whether the company lists
    every message; a 404 otherwise, as for another company's."""
    row = await quick_messages.show(deps.db, principal.company_id, path_id(raw_id, "quick message"))
    company_wide = await _company_wide(deps, principal.company_id)
    if principal.is_admin or company_wide or row["is_global"] or row["user_id"] == principal.user_id:
        return row, company_wide
    raise NotFound(f"quick message {raw_id} not found")


def _may_change(principal: Principal, row: Row) -> None:
    if not (principal.is_admin or row["user_id"] == principal.user_id):
        raise Forbidden("only its author or an admin may change a quick message")


def _publish(deps: Deps, principal: Principal, row: Row, company_wide: bool, payload: dict[str, Any]) -> None:
    """Both names of the event; a personal message (in `individual` mode) only to its author and the caller."""
    company_id = principal.company_id
    if not (company_wide or row["is_global"]):
        payload = {**payload, **chat_audience([u for u in (row["user_id"], principal.user_id) if u is not None])}
    deps.broker.publish(company_id, f"company-{company_id}-quickmessage", payload)
    deps.broker.publish(company_id, f"company{company_id}-quickemessage", payload)


# ─── routes ─────────────────────────────────────────────────────────────────────────────

@blueprint.get("")
async def list_page() -> Response:
    principal = current()
    deps = deps_of(current_app)
    limit, offset = page(PAGE_SIZE)
    owner = query_int("userId", 0, minimum=0, maximum=2**62) or None
    everything = principal.is_admin or await _company_wide(deps, principal.company_id)
    rows, count = await quick_messages.list_page(deps.db, principal.company_id, user_id=principal.user_id,
                                                 everything=everything, owner=owner, search=search_pattern(),
                                                 limit=limit, offset=offset)
    base_url = deps.messages.base_url
    return jsonify(present.page("records", [shown(row, base_url) for row in rows], count, limit, offset))


@blueprint.get("/list")
async def list_all() -> Response:
    """The chat's shortcuts: what the caller lists (an admin too: the chat shows one's own set)."""
    principal = current()
    deps = deps_of(current_app)
    rows = await quick_messages.list_all(deps.db, principal.company_id, user_id=principal.user_id,
                                         everything=await _company_wide(deps, principal.company_id),
                                         search=search_pattern())
    return jsonify([shown(row, deps.messages.base_url) for row in rows])


@blueprint.post("")
async def create() -> tuple[Response, int]:
    principal = current()
    deps = deps_of(current_app)
    fields = await _body(partial=False)
    try:
        row = await quick_messages.create(deps.db, principal.company_id, principal.user_id,
                                          shortcode=fields["shortcode"], message=fields["message"],
                                          is_global=fields.get("is_global", False))
    except Conflict as error:
        raise _shortcode_taken(error) from None
    record = shown(row, deps.messages.base_url)
    _publish(deps, principal, row, await _company_wide(deps, principal.company_id),
             {"action": "create", "record": record})
    return jsonify(record), 201


@blueprint.get("/<message_id>")
async def show(message_id: str) -> Response:
    deps = deps_of(current_app)
    row, _ = await _listed(deps, current(), message_id)
    return jsonify(shown(row, deps.messages.base_url))


@blueprint.put("/<message_id>")
async def update(message_id: str) -> Response:
    principal = current()
    deps = deps_of(current_app)
    existing, company_wide = await _listed(deps, principal, message_id)
    _may_change(principal, existing)
    fields = await _body(partial=True)
    try:
        row = await quick_messages.update(deps.db, principal.company_id, existing["id"], **fields)
    except Conflict as error:
        raise _shortcode_taken(error) from None
    record = shown(row, deps.messages.base_url)
    _publish(deps, principal, row, company_wide, {"action": "update", "record": record})
    return jsonify(record)


@blueprint.delete("/<message_id>")
async def delete(message_id: str) -> Response:
    principal = current()
    deps = deps_of(current_app)
    existing, company_wide = await _listed(deps, principal, message_id)
    _may_change(principal, existing)
    media = await quick_messages.delete(deps.db, principal.company_id, existing["id"])
    await remove_media(deps, [media] if media else [])
    _publish(deps, principal, existing, company_wide, {"action": "delete", "id": existing["id"]})
    return jsonify({"message": "quick message deleted"})


@blueprint.post("/<message_id>/media-upload")
async def upload_media(message_id: str) -> Response:
    """The file sent with the message (multipart `file`, any type WhatsApp takes), replacing the one it had."""
    principal = current()
    deps = deps_of(current_app)
    existing, company_wide = await _listed(deps, principal, message_id)
    _may_change(principal, existing)
    changed = await replace_media(deps, lambda url, name: quick_messages.set_media(
        deps.db, principal.company_id, existing["id"], url, name))
    record = shown(changed.row, deps.messages.base_url)
    _publish(deps, principal, changed.row, company_wide, {"action": "update", "record": record})
    return jsonify({**ATTACHED, "mediaPath": record["mediaPath"], "mediaName": record["mediaName"]})


@blueprint.delete("/<message_id>/media-upload")
async def delete_media(message_id: str) -> Response:
    principal = current()
    deps = deps_of(current_app)
    existing, company_wide = await _listed(deps, principal, message_id)
    _may_change(principal, existing)
    changed = await quick_messages.set_media(deps.db, principal.company_id, existing["id"], None, None)
    await remove_media(deps, [changed.replaced] if changed.replaced else [])
    record = shown(changed.row, deps.messages.base_url)
    _publish(deps, principal, changed.row, company_wide, {"action": "update", "record": record})
    return jsonify(REMOVED)

