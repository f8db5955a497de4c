"""`/messages`: a ticket's history, sending (text, replies, media), deleting and editing; and the
external `POST /api/messages/send` with a connection's API token.

Every send goes through the conversation's TicketActor: the row is written `pending` first (the
outbox) and answered to the caller; the session then sends it, and later acks update it. A private
message (`isPrivate`: an agent's internal note) is written 'private' instead: listed and announced to
the company's agents like any other, never sent; editing or deleting it stays here. A sent text (or a
file's caption) has its message variables (`{{name}}`, `{{greeting}}`, …) filled in for its ticket, as
ticketz does for every agent message; a private one is kept as written.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import shutil
import subprocess
from typing import Any

import attrs
import trio
from quart import Blueprint, Response, current_app, jsonify, request

from actors.automation.render import render, variables
from actors.routing import zone_of
from actors.session import SessionEnded
from actors.ticket import SendOut, TicketActor, chat_of_ticket
from api import subscriptions
from api.app import Deps, deps_of
from api.auth import Principal, current, public
from api.errors import ApiError, BadRequest, NotFound, Unauthorized
from api.live import ticket_audience
from api.validation import Field, check_field, json_body, page, path_id
from gateway.whatsapp import transport as wa
from storage import conversations, quick_messages, tickets
from storage.conversations import ContactIdentity

log = logging.getLogger("zapgate.api.messages")
blueprint = Blueprint("messages", __name__)

PAGE_SIZE = 20
BODY = Field("str", max_len=65_536, strip=False)
MAX_FILES = 10
KINDS = {"image": "image", "video": "video", "audio": "audio"}


async def visible_ticket(deps: Deps, principal: Principal, raw_id: str) -> dict[str, Any]:
    """The ticket if the caller may see it; 404 otherwise (another company's, or not theirs to see)."""
    ticket_id = path_id(raw_id, "ticket")
    viewer = await tickets.load_viewer(deps.db, principal.company_id, principal.user_id, principal.is_admin)
    return await tickets.show_visible(deps.db, viewer, ticket_id)  # one visibility rule for every route


def _next_id() -> int | None:
    """ticketz's cursor, `nextId`: the oldest message the client has (the `nextId` of the page before)."""
    raw = (request.args.get("nextId") or "").strip()
    if not raw or raw in ("null", "undefined"):
        return None
    if not re.fullmatch(r"\d{1,18}", raw):
        raise BadRequest("nextId: must be a message id (the nextId of the page before)", code="ERR_VALIDATION",
                         field="nextId")
    return int(raw)


@blueprint.get("/messages/<ticket_id>")
async def list_messages(ticket_id: str) -> Response:
    """A page of the ticket's history (20 messages, chronological), the ticket, `count`, `hasMore` and
    `nextId`; the first page reads the ticket. Pages go back by `pageNumber` (whaticket) or by `nextId`
    (ticketz: the messages older than that one; `pageNumber` is then ignored). The JSON of the messages and
    of the ticket comes from PostgreSQL as text (storage/queries.sql: messages_page_json, ticket_show_json)
    and is passed on as it is."""
    principal = current()
    deps = deps_of(current_app)
    raw_id = path_id(ticket_id, "ticket")
    before_id = _next_id()
    limit, offset = page(PAGE_SIZE)
    if before_id is not None:
        offset = 0
    opened = await tickets.open_ticket_messages(deps.db, principal.company_id, principal.user_id,
                                                principal.is_admin, raw_id, limit=limit, offset=offset,
                                                base_url=deps.messages.base_url, before_id=before_id)
    if offset == 0 and before_id is None:
        await _announce_read(deps, principal, opened)
    has_more = "true" if opened.more else "false"
    next_id = opened.oldest_id if opened.more and opened.oldest_id is not None else "null"
    body = (f'{{"messages":{opened.messages},"ticket":{opened.ticket["json"]},"count":{opened.count},'
            f'"hasMore":{has_more},"nextId":{next_id}}}')
    return Response(body, mimetype="application/json")


async def _announce_read(deps: Deps, principal: Principal, opened: tickets.OpenedTicket) -> None:
    """Opening a ticket reads it (storage: unread to 0, its messages read): `updateUnread` announced, read
    receipts to WhatsApp."""
    ticket = opened.ticket
    if opened.read_changed:
        deps.broker.publish(principal.company_id, f"company-{principal.company_id}-ticket",
                            {"action": "updateUnread", "ticketId": ticket["id"], **ticket_audience(ticket)})
    session = deps.sessions.lookup(ticket["whatsapp_id"])
    if session is not None and opened.read_wids and session.status == "CONNECTED":
        with trio.move_on_after(5):
            try:
                await session.mark_read(chat_of_ticket(ticket), opened.read_wids)
            except (wa.TransportError, SessionEnded) as error:
                log.info("read receipts not sent", extra={"fields": {"ticket_id": ticket["id"], "reason": str(error)}})


# ─── sending ────────────────────────────────────────────────────────────────────────────

@attrs.frozen
class SendRequest:
    body: str
    medias: list[tuple[bytes, str, str | None, str]]
    quoted_id: int | None
    private: bool  # an internal note: stored and shown to the agents, never sent


def _private_flag(raw: Any) -> bool:
    """`isPrivate` as the Gold lineage's frontends send it, the strings "true"/"false" (JSON and multipart),
    or a boolean (or 1/0) from API clients; absent or null: not private. Anything else is refused rather
    than guessed: a note taken for a normal message would reach the customer."""
    if raw is None or isinstance(raw, bool):
        return bool(raw)
    value = str(raw) if isinstance(raw, int) else raw.strip().lower() if isinstance(raw, str) else None
    if value in ("true", "1"):
        return True
    if value in ("false", "0", ""):
        return False
    raise BadRequest('isPrivate: must be true or false (or "true"/"false")', code="ERR_VALIDATION",
                     field="isPrivate")


async def _read_send_request(deps: Deps) -> SendRequest:
    """The message from JSON `{body, quotedMsg, isPrivate}` or multipart (`medias` files, `body`,
    `quotedMsgId`, `isPrivate`)."""
    medias: list[tuple[bytes, str, str | None, str]] = []
    if (request.mimetype or "").startswith("multipart/"):
        form = await request.form
        files = await request.files
        body = check_field("body", form.get("body", ""), BODY)
        private = _private_flag(form.get("isPrivate"))
        quoted_raw: Any = form.get("quotedMsgId") or None
        uploads = files.getlist("medias")
        if len(uploads) > MAX_FILES:
            raise BadRequest(f"medias: at most {MAX_FILES} files at once", code="ERR_VALIDATION", field="medias")
        for upload in uploads:
            data = upload.read()
            if not data:
                raise BadRequest(f"medias: {upload.filename or 'a file'} is empty", code="ERR_VALIDATION",
                                 field="medias")
            mimetype = (upload.mimetype or "application/octet-stream").lower()
            medias.append(await _prepare_media(data, mimetype, upload.filename))
    else:
        data = await json_body()
        body = check_field("body", data.get("body", ""), BODY) if data.get("body") is not None else ""
        private = _private_flag(data.get("isPrivate"))
        quoted = data.get("quotedMsg")
        quoted_raw = quoted.get("id") if isinstance(quoted, dict) else quoted
    quoted_id = None
    if quoted_raw not in (None, ""):
        quoted_id = check_field("quotedMsg", quoted_raw, Field("int", minimum=1))
    if not body.strip() and not medias:
        raise BadRequest("body: a message needs text or a file", code="ERR_EMPTY_MESSAGE", field="body")
    return SendRequest(body, medias, quoted_id, private)


async def _prepare_media(data: bytes, mimetype: str, filename: str | None) -> tuple[bytes, str, str | None, str]:
    """(data, mimetype, filename, kind). Audio becomes a voice note (OGG/Opus) when ffmpeg is here."""
    major = mimetype.split("/", 1)[0]
    if major == "audio":
        converted = await _to_voice_note(data)
        if converted is not None:
            return converted, "audio/ogg; codecs=opus", (filename or "audio").rsplit(".", 1)[0] + ".ogg", "ptt"
        return data, mimetype, filename, "audio"
    return data, mimetype, filename, KINDS.get(major, "document")


async def _to_voice_note(data: bytes) -> bytes | None:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        return None

    def convert() -> bytes | None:
        result = subprocess.run([ffmpeg, "-hide_banner", "-loglevel", "error", "-i", "pipe:0", "-vn", "-ac", "1",
                                 "-c:a", "libopus", "-b:a", "32k", "-f", "ogg", "pipe:1"],
                                input=data, capture_output=True, timeout=60, check=False)
        return result.stdout if result.returncode == 0 and result.stdout else None

    return await trio.to_thread.run_sync(convert)


async def rendered(deps: Deps, company_id: int, ticket_id: int, body: str, user_id: int | None) -> str:
    """The body with its message variables filled in for the ticket (actors/automation/render.py): the contact's
    name, e-mail, number and custom fields, the ticket, its queue, the sender (else the ticket's agent), the
    time in the company's zone. ticketz renders every agent message so (`formatBody`): a quick message is put
    in the chat's box as written, and filled in here. A body without `{{` is sent as written, reading nothing."""
    if "{{" not in body:
        return body
    row = await quick_messages.message_variables(deps.db, company_id, ticket_id, user_id)
    values = variables(contact_name=row["contact_name"] or "", contact_email=row["contact_email"] or "",
                       contact_number=row["contact_number"] or "", custom_fields=row["custom_fields"] or {},
                       ticket_id=ticket_id, queue=row["queue_name"] or "", user=row["user_name"] or "",
                       now=dt.datetime.now(dt.UTC), zone=zone_of(row["timezone"]))
    return render(body, values)


async def _send(deps: Deps, company_id: int, ticket: dict[str, Any], message: SendRequest,
                user_id: int | None) -> list[dict[str, Any]]:
    body, medias, quoted_id = message.body, message.medias, message.quoted_id
    if not message.private:  # an internal note is the agents' own text, never the customer's: kept as written
        body = await rendered(deps, company_id, ticket["id"], body, user_id)
    if quoted_id is not None:
        quoted = await conversations.show_message(deps.db, company_id, quoted_id)
        if quoted["ticket_id"] != ticket["id"]:
            raise NotFound(f"message {quoted_id} not found in this ticket", code="ERR_NOT_FOUND")
    sent = []
    parts: list[tuple[str, Any]] = [(body, media) for media in medias] if medias else [(body, None)]
    if len(medias) > 1:  # the caption goes with the first file only
        parts = [(body if index == 0 else "", media) for index, (_, media) in enumerate(parts)]
    for text, media in parts:
        row = await deps.tickets.send(company_id, ticket, lambda reply, text=text, media=media: SendOut(
            ticket_id=ticket["id"], body=text, user_id=user_id, reply=reply, media=media,
            quoted_message_id=quoted_id, private=message.private))
        sent.append(deps.messages(row, ticket))
    return sent


@blueprint.post("/messages/<ticket_id>")
async def send_message(ticket_id: str) -> tuple[Response, int]:
    principal = current()
    deps = deps_of(current_app)
    ticket = await visible_ticket(deps, principal, ticket_id)
    if ticket["status"] == "closed":
        raise BadRequest("this ticket is closed; reopen it to write", code="ERR_TICKET_CLOSED")
    message = await _read_send_request(deps)
    if ticket["status"] == "pending" and not message.private:
        # An agent answering a pending ticket takes it (as in the original); an internal note does not.
        ticket = await deps.tickets.call(principal.company_id, ticket, _accept_by_sender(deps, principal, ticket))
    sent = await _send(deps, principal.company_id, ticket, message, principal.user_id)
    return jsonify(sent[0] if len(sent) == 1 else sent), 201


def _accept_by_sender(deps: Deps, principal: Principal, ticket: dict[str, Any]) -> Any:
    """Accept the ticket for the sender while it is pending (one statement: the check is the write). One
    that another user took meanwhile is TicketTaken (409, nothing sent): two agents never both answer."""
    q = deps.db.q
    key = {"id": ticket["id"], "company_id": principal.company_id}

    def work(conn: Any) -> None:
        if conn.execute(q.ticket_accept_by_sender, {**key, "user_id": principal.user_id}).fetchone() is None:
            now = conn.execute(q.ticket_for_change, key).fetchone()
            if now is not None and now["status"] == "open" and now["user_id"] not in (None, principal.user_id):
                raise tickets.TicketTaken(now)
            return
        conn.execute(q.ticket_event_insert, {
            "company_id": principal.company_id, "ticket_id": ticket["id"], "kind": "accepted",
            "user_id": principal.user_id, "queue_id": ticket["queue_id"], "whatsapp_id": ticket["whatsapp_id"]})

    async def accept(actor: TicketActor) -> Any:
        await deps.db.run(work)
        return await actor.reload(ticket["id"])

    return accept


async def _own_message(deps: Deps, principal: Principal, raw_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    message = await conversations.show_message(deps.db, principal.company_id, path_id(raw_id, "message"))
    ticket = await visible_ticket(deps, principal, str(message["ticket_id"]))
    if not message["from_me"]:
        raise BadRequest("only messages sent from here can be changed", code="ERR_NOT_OWN_MESSAGE")
    if not message["wid"] and not message["is_private"]:
        raise ApiError("this message has not been sent yet", code="ERR_MESSAGE_NOT_SENT", status=409)
    if message["is_deleted"]:
        raise ApiError("this message was deleted", code="ERR_MESSAGE_DELETED", status=409)
    return message, ticket


async def _change(deps: Deps, company_id: int, ticket: dict[str, Any], message: dict[str, Any],
                  command: wa.Command, query: str, params: dict[str, Any]) -> dict[str, Any]:
    """Send a change (delete, edit, reaction) through the session — not for a private message, which WhatsApp never
    had — then store and announce it."""
    if not message["is_private"]:
        session = deps.sessions.lookup(ticket["whatsapp_id"])
        if session is None:
            raise ApiError("the connection is not running", code="ERR_WAPP_NOT_CONNECTED", status=409)
        try:
            await session.send(command)
        except wa.SendFailed as failure:
            raise ApiError(f"WhatsApp refused: {failure.reason}", code="ERR_WAPP_SEND_FAILED", status=502) from None
        except (wa.TransportError, SessionEnded):
            raise ApiError("the connection is not connected", code="ERR_WAPP_NOT_CONNECTED", status=409) from None
    row = await deps.db.fetch_one(query, {**params, "id": message["id"], "company_id": company_id})
    assert row is not None
    shown = await conversations.show_message(deps.db, company_id, row["id"])
    deps.tickets.publish_message("update", company_id, shown, ticket)
    return deps.messages(shown, ticket)


@blueprint.delete("/messages/<message_id>")
async def delete_message(message_id: str) -> Response:
    principal = current()
    deps = deps_of(current_app)
    message, ticket = await _own_message(deps, principal, message_id)
    command = wa.DeleteForEveryone(chat_of_ticket(ticket), message["wid"])
    shown = await _change(deps, principal.company_id, ticket, message, command, deps.db.q.message_revoke_own, {})
    return jsonify(shown)


@blueprint.post("/messages/edit/<message_id>")
async def edit_message(message_id: str) -> Response:
    principal = current()
    deps = deps_of(current_app)
    message, ticket = await _own_message(deps, principal, message_id)
    data = await json_body()
    body = check_field("body", data.get("body"), Field("str", required=True, max_len=65_536, strip=False))
    if not body.strip():
        raise BadRequest("body: must not be empty", code="ERR_VALIDATION", field="body")
    command = wa.EditMessage(chat_of_ticket(ticket), message["wid"], body)
    shown = await _change(deps, principal.company_id, ticket, message, command, deps.db.q.message_edit_own,
                          {"body": body})
    return jsonify(shown)


@blueprint.post("/messages/react/<message_id>")
async def react_to_message(message_id: str) -> Response:
    """An agent's reaction `{emoji}` ("" removes it) to a message of a ticket they see (ticketz also sends
    `ticketId`: the message says which ticket it is in). It goes to WhatsApp first; the message then shows it
    (one reaction a message, the last one, as for the contact's)."""
    principal = current()
    deps = deps_of(current_app)
    message = await conversations.show_message(deps.db, principal.company_id, path_id(message_id, "message"))
    ticket = await visible_ticket(deps, principal, str(message["ticket_id"]))
    data = await json_body()
    emoji = check_field("emoji", data.get("emoji"), Field("str", max_len=32))
    if message["is_private"]:
        raise BadRequest("an internal note cannot be reacted to: WhatsApp never had it", code="ERR_MESSAGE_PRIVATE")
    if message["status"] in ("pending", "failed") or not message["wid"]:
        raise ApiError("this message has not been sent", code="ERR_MESSAGE_NOT_SENT", status=409)
    if message["is_deleted"]:
        raise ApiError("this message was deleted", code="ERR_MESSAGE_DELETED", status=409)
    command = wa.SendReaction(chat_of_ticket(ticket), message["wid"], emoji, target_from_me=message["from_me"])
    shown = await _change(deps, principal.company_id, ticket, message, command, deps.db.q.message_react_own,
                          {"reaction": emoji})
    return jsonify(shown)


@blueprint.get("/messages/<message_id>/history")
async def message_history(message_id: str) -> Response:
    """The texts an edited message had before, oldest first (`oldMessages`, as ticketz's history dialog
    reads them)."""
    principal = current()
    deps = deps_of(current_app)
    message = await conversations.show_message(deps.db, principal.company_id, path_id(message_id, "message"))
    await visible_ticket(deps, principal, str(message["ticket_id"]))
    old = [{"id": index, "messageId": message["id"], "ticketId": message["ticket_id"], "body": entry.get("body"),
            "createdAt": entry.get("at"), "updatedAt": entry.get("at")}
           for index, entry in enumerate(message["edit_history"] or [], start=1) if isinstance(entry, dict)]
    return jsonify({"oldMessages": old})


# ─── external API: a connection's token ─────────────────────────────────────────────────

@blueprint.post("/api/messages/send")
@public
async def external_send() -> tuple[Response, int]:
    """Send to a number with a connection's API token (`Authorization: Bearer <token>`)."""
    deps = deps_of(current_app)
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing Authorization: Bearer <connection token>", code="ERR_SESSION_EXPIRED")
    connection = await deps.db.fetch_one(deps.db.q.whatsapp_by_token, {"token": token.strip()})
    if connection is None:
        raise Unauthorized("invalid connection token", code="ERR_INVALID_TOKEN")
    company_id = connection["company_id"]
    # the connection's company: its subscription, and the plan's `useExternalApi`
    await subscriptions.check_company(deps.access, company_id, feature="use_external_api")
    if (request.mimetype or "").startswith("multipart/"):
        number_raw = (await request.form).get("number")
    else:
        number_raw = (await json_body()).get("number")
    number = "".join(ch for ch in check_field("number", number_raw, Field("str", required=True, max_len=32))
                     if ch.isdigit())
    if not 8 <= len(number) <= 15:
        raise BadRequest("number: must be a phone number with country code", code="ERR_VALIDATION", field="number")
    message = attrs.evolve(await _read_send_request(deps), quoted_id=None)
    q = deps.db.q

    def open_conversation(conn: Any) -> dict[str, Any]:
        contact, _ = conversations.upsert_contact(conn, q, company_id, ContactIdentity(number=number))
        ticket, _ = conversations.find_or_create_ticket(conn, q, company_id, connection["id"], contact,
                                                        _now(conn))
        return ticket

    base = await deps.db.run(open_conversation)
    ticket = await conversations.show_ticket(deps.db, company_id, base["id"])
    sent = await _send(deps, company_id, ticket, message, None)
    return jsonify({"ticketId": ticket["id"], "messages": sent}), 201


def _now(conn: Any) -> Any:
    return conn.execute("SELECT now() AS now").fetchone()["now"]
