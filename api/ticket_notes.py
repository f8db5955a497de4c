"""`/ticket-notes`: what agents write about a conversation for each other (ticketz's contact drawer, under
"notes"). Internal: a note is never sent to WhatsApp, and is no message of the ticket.

    GET    /ticket-notes/list?ticketId=&contactId=   the notes of a ticket (or of a contact's tickets, or
                                                     both filters), newest first: an array
    GET    /ticket-notes?searchParam=&pageNumber=    {ticketNotes, count, hasMore} (ticketz's shape), 20 a page
    POST   /ticket-notes {note, ticketId, contactId?}
    GET    /ticket-notes/:id
    PUT    /ticket-notes/:id {note}
    DELETE /ticket-notes/:id

A note is `{id, note, userId, ticketId, contactId, companyId, createdAt, updatedAt, user: {id, name, email},
contact: {id, name}, ticket: {id, status, createdAt}}` (`user` null once its author is deleted).

Who: a note is seen by whoever may see its ticket (the tickets' rule: storage/tickets.py `Viewer`) — the
others, and other companies, get 404 for its id, its ticket's or contact's notes are left out of their lists,
and they cannot add one to that ticket. Its author and the admins change or delete it; any other who sees it
gets a 403 (ticketz lets anybody edit, and only admins delete, even their own notes). Its contact is its
ticket's: a `contactId` naming another is a 400.

Event `company-{id}-ticket-note` `{action: create | update, note, ticketId}` or `{action: delete, id,
ticketId}`, to the sockets that joined that ticket (the chat open) and whose user may see it (ticketz has no
such event: its drawer refetches).
"""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response, current_app, jsonify, request

from api import present
from api.app import Deps, deps_of
from api.auth import Principal, current
from api.errors import BadRequest, Forbidden, NotFound
from api.live import ticket_audience
from api.validation import Field, check_field, json_body, page, path_id, search_pattern, validate
from storage import contacts, ticket_notes, tickets
from storage.db import Row
from storage.tickets import Viewer

blueprint = Blueprint("ticket_notes", __name__, url_prefix="/ticket-notes")

PAGE_SIZE = 20  # ticketz's
NOTE = {"note": Field("str", required=True, max_len=10_000)}
ID = Field("int", required=True, minimum=1)


def shown(row: Row) -> dict[str, Any]:
    return {
        "id": row["id"], "note": row["note"], "userId": row["user_id"], "ticketId": row["ticket_id"],
        "contactId": row["contact_id"], "companyId": row["company_id"],
        "createdAt": row["created_at"].isoformat(), "updatedAt": row["updated_at"].isoformat(),
        "user": row["user"], "contact": row["contact"], "ticket": row["ticket"],
    }


async def _viewer(deps: Deps, principal: Principal) -> Viewer:
    return await tickets.load_viewer(deps.db, principal.company_id, principal.user_id, principal.is_admin)


async def _seen(deps: Deps, principal: Principal, raw_id: str) -> Row:
    """The note if the caller may see its ticket; a 404 otherwise, as for another company's."""
    row = await ticket_notes.show(deps.db, principal.company_id, path_id(raw_id, "ticket note"))
    if not ticket_notes.visible(await _viewer(deps, principal), row):
        raise NotFound(f"ticket note {raw_id} not found")
    return row


def _may_change(principal: Principal, row: Row) -> None:
    if not (principal.is_admin or row["user_id"] == principal.user_id):
        raise Forbidden("only its author or an admin may change a note")


def _publish(deps: Deps, company_id: int, row: Row, payload: dict[str, Any]) -> None:
    """To the sockets in the ticket's room whose user may see it (api/live.py: events of kind `note`)."""
    audience = ticket_audience({"queue_id": row["ticket_queue_id"], "user_id": row["ticket_user_id"],
                                "status": row["ticket_status"]})
    deps.broker.publish(company_id, f"company-{company_id}-ticket-note",
                        {**payload, "ticketId": row["ticket_id"], **audience})


def _query_id(name: str) -> int | None:
    raw = (request.args.get(name) or "").strip()
    if raw in ("", "null", "undefined"):
        return None
    return check_field(name, raw, ID)


# ─── routes ─────────────────────────────────────────────────────────────────────────────

@blueprint.get("/list")
async def list_notes() -> Response:
    """A ticket's notes (`ticketId`: 404 unless the caller may see it), a contact's (`contactId`: the notes of
    those of their tickets the caller may see), or the notes matching both."""
    principal = current()
    deps = deps_of(current_app)
    ticket_id, contact_id = _query_id("ticketId"), _query_id("contactId")
    viewer = await _viewer(deps, principal)
    if ticket_id is not None:
        await tickets.show_visible(deps.db, viewer, ticket_id)
    elif contact_id is not None:
        await contacts.show_contact(deps.db, principal.company_id, contact_id)  # another company's: 404
    else:
        raise BadRequest("ticketId or contactId is required", code="ERR_VALIDATION", field="ticketId")
    rows = await ticket_notes.list_for(deps.db, viewer, ticket_id=ticket_id, contact_id=contact_id)
    return jsonify([shown(row) for row in rows])


@blueprint.get("")
async def list_page() -> Response:
    principal = current()
    deps = deps_of(current_app)
    limit, offset = page(PAGE_SIZE)
    rows, count = await ticket_notes.list_page(deps.db, await _viewer(deps, principal), search=search_pattern(),
                                               limit=limit, offset=offset)
    return jsonify(present.page("ticketNotes", [shown(row) for row in rows], count, limit, offset))


@blueprint.post("")
async def create() -> tuple[Response, int]:
    principal = current()
    deps = deps_of(current_app)
    raw = await json_body()
    note = validate(raw, NOTE)["note"]
    ticket_id = check_field("ticketId", raw.get("ticketId"), ID)
    contact_id = check_field("contactId", raw["contactId"], ID) if raw.get("contactId") not in (None, "") else None
    ticket = await tickets.show_visible(deps.db, await _viewer(deps, principal), ticket_id)
    if contact_id is not None and contact_id != ticket["contact_id"]:
        raise BadRequest("contactId: is not the contact of this ticket", code="ERR_VALIDATION", field="contactId")
    row = await ticket_notes.create(deps.db, principal.company_id, ticket_id=ticket["id"],
                                    contact_id=ticket["contact_id"], user_id=principal.user_id, note=note)
    record = shown(row)
    _publish(deps, principal.company_id, row, {"action": "create", "note": record})
    return jsonify(record), 201


@blueprint.get("/<note_id>")
async def show(note_id: str) -> Response:
    return jsonify(shown(await _seen(deps_of(current_app), current(), note_id)))


@blueprint.put("/<note_id>")
async def update(note_id: str) -> Response:
    principal = current()
    deps = deps_of(current_app)
    existing = await _seen(deps, principal, note_id)
    _may_change(principal, existing)
    note = validate(await json_body(), NOTE)["note"]
    row = await ticket_notes.update(deps.db, principal.company_id, existing["id"], note)
    record = shown(row)
    _publish(deps, principal.company_id, row, {"action": "update", "note": record})
    return jsonify(record)


@blueprint.delete("/<note_id>")
async def delete(note_id: str) -> Response:
    principal = current()
    deps = deps_of(current_app)
    existing = await _seen(deps, principal, note_id)
    _may_change(principal, existing)
    await ticket_notes.delete(deps.db, principal.company_id, existing["id"])
    _publish(deps, principal.company_id, existing, {"action": "delete", "id": existing["id"]})
    return jsonify({"message": "ticket note deleted"})
