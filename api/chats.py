"""`/chats`: the internal chat — the agents of one company talking to each other (ticketz's routes and
shapes); nothing here is ever sent to WhatsApp.

    GET    /chats?pageNumber=                {records, count, hasMore}: the caller's chats, latest message
                                             first, 20 a page (`searchParam` is accepted and ignored, as ticketz)
    GET    /chats/:id                        one chat (`:id` is its id or its uuid, everywhere)
    GET    /chats/:id/messages?pageNumber=   {records, count, hasMore}: newest page first, each page oldest first
    POST   /chats {title, users: [{id}]}     a chat of the caller with those users of the company
    PUT    /chats/:id {title?, users?}       the owner or an admin; `users` replaces the participants
    DELETE /chats/:id                        the owner or an admin
    POST   /chats/:id/messages {message}     or multipart `medias` files (one message each)
    POST   /chats/:id/read                   the caller has read the chat (their `unreads` becomes 0)

Only participants read a chat, post in it or mark it read; a chat of another company is a 404, one of the
caller's company they are not in a 403. The owner always takes part in their chat.

Realtime (ticketz's names and payloads), delivered to the participants' sockets only (`chat_audience`):
`company-{id}-chat-user-{userId}` `{action: "create"|"update", record}` to each participant;
`company-{id}-chat-{chatId}` and `company-{id}-chat` `{action: "new-message", newMessage, chat}` and
`{action: "update", chat}` (read); `company-{id}-chat` `{action: "delete", id}` when the chat is deleted,
and to those an edit removed from it.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import trio
from quart import Blueprint, Response, current_app, jsonify, request

from api import present, subscriptions
from api.app import Deps, deps_of
from api.auth import Principal, current
from api.errors import BadRequest, Forbidden, NotFound
from api.live import chat_audience
from api.messages import MAX_FILES
from api.validation import Field, check_field, json_body, page, validate
from storage import chats
from storage.chats import ChatAccess, NewMessage

blueprint = Blueprint("chats", __name__, url_prefix="/chats")

PAGE_SIZE = 20  # ticketz's, for chats and messages
MAX_USERS = 500
MEDIA_CLEANUP = 5.0  # seconds at most to delete the files of messages not written
MAX_ID = 2**63 - 1
UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
TITLE = Field("str", required=True, min_len=1, max_len=255)
MESSAGE = Field("str", required=True, max_len=65_536, strip=False)
USER_ID = Field("int", minimum=1)


def _key(raw: str) -> int | uuid.UUID:
    """A chat's id or uuid from the path; anything else names no chat (404)."""
    if raw.isascii() and raw.isdigit() and len(raw) <= 19 and 0 < int(raw) <= MAX_ID:
        return int(raw)
    if UUID.fullmatch(raw):
        return uuid.UUID(raw)
    raise NotFound(f"chat {raw!r} not found", code="ERR_NO_CHAT_FOUND")


async def _access(deps: Deps, principal: Principal, raw: str) -> ChatAccess:
    return await chats.find_chat(deps.db, principal.company_id, principal.user_id, _key(raw))


def _participant(access: ChatAccess) -> None:
    if not access.joined:
        raise Forbidden("only the chat's participants can see it or write in it")


def _manager(principal: Principal, access: ChatAccess) -> None:
    if access.owner_id != principal.user_id and not principal.is_admin:
        raise Forbidden("only the chat's owner or an admin can change or delete it")


def _user_ids(raw: Any) -> list[int]:
    """`users`: a non-empty list of `{id}` (the frontend sends `{id, name}`), or of bare ids."""
    if not isinstance(raw, list) or not raw:
        raise BadRequest("users: must be a non-empty list of users ({id})", code="ERR_VALIDATION", field="users")
    if len(raw) > MAX_USERS:
        raise BadRequest(f"users: at most {MAX_USERS}", code="ERR_VALIDATION", field="users")
    ids = []
    for index, item in enumerate(raw):
        value = item.get("id") if isinstance(item, dict) else item
        ids.append(check_field(f"users[{index}].id", value, USER_ID))
    return ids


def _participants(row: dict[str, Any]) -> list[int]:
    return [member["userId"] for member in row["users"]]


def _publish(deps: Deps, company_id: int, name: str, payload: dict[str, Any], user_ids: list[int]) -> None:
    if user_ids:
        deps.broker.publish(company_id, f"company-{company_id}-{name}", {**payload, **chat_audience(user_ids)})


def _announce_record(deps: Deps, company_id: int, action: str, record: dict[str, Any]) -> None:
    """`company-{id}-chat-user-{userId}` to each participant, as ticketz announces a chat made or changed."""
    for user_id in _participants(record):
        _publish(deps, company_id, f"chat-user-{user_id}", {"action": action, "record": record}, [user_id])


def _announce_chat(deps: Deps, company_id: int, payload: dict[str, Any]) -> None:
    """A chat's own room and the company's chat channel (the menu's badge, the popover), participants only."""
    chat = payload["chat"]
    for name in (f"chat-{chat['id']}", "chat"):
        _publish(deps, company_id, name, payload, _participants(chat))


@blueprint.before_request
async def internal_chat_in_plan() -> Response | None:
    """The plan's `useInternalChat`: without it every route answers 403 `ERR_PLAN_FEATURE_DISABLED`, but the
    list, which the SaaS menu calls on every page load whatever the plan, answers an empty page."""
    deps = deps_of(current_app)
    principal = current()
    if await subscriptions.has_feature(deps.access, principal.company_id, "use_internal_chat"):
        return None
    if request.method == "GET" and request.endpoint == "chats.list_chats":
        return jsonify(present.page("records", [], 0, PAGE_SIZE, 0))
    raise subscriptions.plan_lacks("use_internal_chat")


@blueprint.get("")
async def list_chats() -> Response:
    principal = current()
    limit, offset = page(PAGE_SIZE)
    rows, count = await chats.page_chats(deps_of(current_app).db, principal.company_id, principal.user_id,
                                         limit=limit, offset=offset)
    return jsonify(present.page("records", [present.chat(row) for row in rows], count, limit, offset))


@blueprint.get("/<chat_key>")
async def show_chat(chat_key: str) -> Response:
    principal = current()
    deps = deps_of(current_app)
    access = await _access(deps, principal, chat_key)
    _participant(access)
    return jsonify(present.chat(await chats.show_chat(deps.db, principal.company_id, access.id)))


@blueprint.post("")
async def create_chat() -> Response:
    principal = current()
    deps = deps_of(current_app)
    raw = await json_body()
    title = validate(raw, {"title": TITLE})["title"]
    user_ids = _user_ids(raw.get("users"))
    row = await chats.create_chat(deps.db, principal.company_id, principal.user_id, title=title, user_ids=user_ids)
    record = present.chat(row)
    _announce_record(deps, principal.company_id, "create", record)
    return jsonify(record)


@blueprint.put("/<chat_key>")
async def update_chat(chat_key: str) -> Response:
    principal = current()
    deps = deps_of(current_app)
    access = await _access(deps, principal, chat_key)
    _manager(principal, access)
    raw = await json_body()
    title = validate(raw, {"title": TITLE}, partial=True).get("title")
    user_ids = _user_ids(raw["users"]) if raw.get("users") is not None else None
    row, left = await chats.update_chat(deps.db, principal.company_id, access.id, title=title, user_ids=user_ids)
    record = present.chat(row)
    _announce_record(deps, principal.company_id, "update", record)
    _publish(deps, principal.company_id, "chat", {"action": "delete", "id": access.id}, left)
    return jsonify(record)


@blueprint.delete("/<chat_key>")
async def delete_chat(chat_key: str) -> Response:
    principal = current()
    deps = deps_of(current_app)
    access = await _access(deps, principal, chat_key)
    _manager(principal, access)
    deleted = await chats.delete_chat(deps.db, principal.company_id, access.id)
    await _remove_media(deps, deleted.media_urls)
    _publish(deps, principal.company_id, "chat", {"action": "delete", "id": access.id}, deleted.participants)
    return jsonify({"message": "Chat deleted"})


@blueprint.get("/<chat_key>/messages")
async def list_messages(chat_key: str) -> Response:
    principal = current()
    deps = deps_of(current_app)
    access = await _access(deps, principal, chat_key)
    _participant(access)
    limit, offset = page(PAGE_SIZE)
    rows, count = await chats.page_messages(deps.db, principal.company_id, access.id, limit=limit, offset=offset)
    records = [present.chat_message(row, deps.messages.base_url) for row in rows]
    return jsonify({"records": records, "count": count, "hasMore": offset + len(records) < count})


@blueprint.post("/<chat_key>/messages")
async def send_message(chat_key: str) -> Response:
    principal = current()
    deps = deps_of(current_app)
    access = await _access(deps, principal, chat_key)
    _participant(access)
    messages = await _read_messages(deps)
    stored = None
    try:
        stored = await chats.add_messages(deps.db, principal.company_id, access.id, principal.user_id, messages)
    finally:
        if stored is None:  # not written: the files are nobody's
            await _remove_media(deps, [message.media_url for message in messages])
    if stored is None:  # removed from the chat meanwhile
        raise Forbidden("only the chat's participants can write in it")
    rows, chat_row = stored
    chat = present.chat(chat_row)
    shown = [present.chat_message(row, deps.messages.base_url) for row in rows]
    for message in shown:
        _announce_chat(deps, principal.company_id, {"action": "new-message", "newMessage": message, "chat": chat})
    return jsonify(shown[-1])


@blueprint.post("/<chat_key>/read")
async def mark_read(chat_key: str) -> Response:
    """The caller has read the chat. (ticketz takes the reader from the body's `userId`, so anyone could
    clear anyone's count; here it is always the caller, and the body is ignored.)"""
    principal = current()
    deps = deps_of(current_app)
    access = await _access(deps, principal, chat_key)
    _participant(access)
    row = await chats.mark_read(deps.db, principal.company_id, access.id, principal.user_id)
    if row is None:
        raise Forbidden("only the chat's participants can read it")
    chat = present.chat(row)
    _announce_chat(deps, principal.company_id, {"action": "update", "chat": chat})
    return jsonify(chat)


async def _read_messages(deps: Deps) -> list[NewMessage]:
    """JSON `{message}`, or multipart `medias` (each file a message named after it, as ticketz does)."""
    if not (request.mimetype or "").startswith("multipart/"):
        raw = await json_body()
        text = check_field("message", raw.get("message"), MESSAGE) if "message" in raw else ""
        if not text.strip():
            raise BadRequest("message: must not be empty", code="ERR_VALIDATION", field="message")
        return [NewMessage(text=text)]
    files = await request.files
    uploads = files.getlist("medias")
    if not uploads:
        raise BadRequest("medias: a file is required", code="ERR_VALIDATION", field="medias")
    if len(uploads) > MAX_FILES:
        raise BadRequest(f"medias: at most {MAX_FILES} files at once", code="ERR_VALIDATION", field="medias")
    messages: list[NewMessage] = []
    try:
        for upload in uploads:
            data = upload.read()
            if not data:
                raise BadRequest(f"medias: {upload.filename or 'a file'} is empty", code="ERR_VALIDATION",
                                 field="medias")
            mimetype = (upload.mimetype or "application/octet-stream").split(";")[0].strip().lower()
            saved = await deps.media.save(data, upload.filename, mimetype)
            name = saved.filename[:255]
            messages.append(NewMessage(text=name, media_url=saved.url, media_name=name,
                                       media_type=mimetype.split("/", 1)[0][:64] or "application"))
    except BaseException:
        await _remove_media(deps, [message.media_url for message in messages])
        raise
    return messages


async def _remove_media(deps: Deps, urls: list[str | None]) -> None:
    """Delete stored files of chat messages (`/media/<token>/<name>`). Shielded and bounded: it also runs
    as the cleanup of a request being cancelled."""
    with trio.move_on_after(MEDIA_CLEANUP) as scope:
        scope.shield = True
        for url in urls:
            parts = (url or "").removeprefix(deps.media.prefix + "/").split("/")
            if url and len(parts) == 2:
                await deps.media.remove(*parts)
