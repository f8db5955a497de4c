"""`/tickets`: the conversations agents work — lists with the Whaticket filters, show (by id or uuid),
start one with a contact, accept / transfer / close / reopen, delete (admins).

Who sees what: admins every ticket of their company; a user the tickets of their queues, queue-less
ones when their `allTicket` is enabled, and those assigned to them. A ticket the caller may not see
answers 404, exactly as another company's.

`GET /tickets` query parameters:
- `status` (pending | open | closed), `searchParam` (contact name or number, last message),
  `date` / `updatedAt` (YYYY-MM-DD: created / updated that day, in the database's time zone),
  `withUnreadMessages=true`, `showAll=true` (without it: the caller's own tickets plus the pending ones;
  with it: every ticket the caller may see), `queueIds`, `tags`, `users` (JSON arrays of ids:
  `queueIds=[1,2]`, or repeated `queueIds[]=1`; `queueIds` keeps queue-less tickets in the list, as the
  Whaticket frontends expect; `tags` keeps tickets carrying all the tags; an empty array is no filter);
- `pageNumber` (1-based, 40 a page) — OFFSET paging, for the first pages;
- `cursor`: the `nextCursor` of the previous answer (opaque); the next page then starts right after the
  last ticket of that one, at the cost of any first page however deep (`pageNumber` is then ignored).
Answer: `{tickets, count, hasMore, nextCursor}` (`count` counts every matching ticket; `nextCursor` is
null on the last page).

Every change of a ticket runs inside its conversation's TicketActor (`deps.tickets.call`), which
re-reads the ticket after the commit and publishes `company-{id}-ticket` `update`.

One winner per accept: the stock accept `{status: "open", userId: <me>}` carries no previous state, so
it is read as "pending → mine". On a ticket another user has open it answers 409
`{"error": "ERR_TICKET_ALREADY_ACCEPTED", "message": "… accepted by <name>", "userId", "userName",
"ticketId", "ticketStatus"}` and writes nothing; the write itself is conditional (storage.tickets.change_ticket),
so of any number of simultaneous accepts exactly one wins. A transfer (`isTransfered: true`, or a user
other than the caller) of a ticket closed meanwhile answers 409 `ERR_TICKET_CLOSED_MEANWHILE`. A close, a
return to the queue and a transfer of an open ticket say nothing of what the caller saw: they apply as
they are (closing twice changes nothing).
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from typing import Any

from quart import Blueprint, Response, current_app, jsonify, request
from werkzeug.datastructures import MultiDict

from actors.automation.render import render, variables
from actors.routing import utc_now, zone_of
from actors.ticket import SendOut, TicketActor
from api.app import Deps, deps_of
from api.auth import Principal, current, require_admin
from api.errors import BadRequest, NotFound, error_response
from api.live import ticket_audience
from api.present_tickets import ticket as present_ticket
from api.validation import Field, check_field, json_body, page, path_id, search_pattern, validate
from storage import conversations, settings, ticket_lists, tickets, whatsapps
from storage import errors as storage_errors
from storage import routing as routing_store
from storage.db import Row
from storage.ticket_lists import Cursor
from storage.tickets import ACTIVE, STATUSES, InvalidTransition, OtherActiveTicket, TicketChange

log = logging.getLogger("zapgate.api.tickets")
blueprint = Blueprint("tickets", __name__, url_prefix="/tickets")

PAGE_SIZE = 40
MAX_IDS = 500
ID_LIST = Field("list_of_int", max_items=MAX_IDS)
PHONE_SEARCH = re.compile(r"\+?[\d\s().\-]+")
REFERENCE = Field("int", nullable=True, minimum=1)
CREATE_FIELDS = {"contactId": Field("int", required=True, minimum=1), "whatsappId": REFERENCE,
                 "queueId": REFERENCE, "userId": REFERENCE}
UPDATE_FIELDS = {"queueId": REFERENCE, "userId": REFERENCE}


# ─── request parsing ────────────────────────────────────────────────────────────────────

def _status(value: Any, allowed: tuple[str, ...] = STATUSES) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise BadRequest(f"status: must be one of {', '.join(allowed)}", code="ERR_INVALID_STATUS", field="status")
    return value


# The request's query arguments are read once (`request` is a context-local proxy) and handed on.
Args = MultiDict[str, str]


def _flag(args: Args, name: str) -> bool:
    return (args.get(name) or "").strip().lower() in ("true", "1")


def _id_list(args: Args, name: str) -> tuple[int, ...]:
    """A JSON array of ids in the query string (`queueIds=[1,2]`), or the repeated form `queueIds[]=1`."""
    raw = args.get(name)
    if raw is None or not raw.strip():
        values: Any = args.getlist(f"{name}[]")
        if not values:
            return ()
    else:
        try:
            values = json.loads(raw)
        except (ValueError, RecursionError):
            raise BadRequest(f"{name}: must be a JSON array of integers, like [1,2]", code="ERR_VALIDATION",
                             field=name) from None
        if isinstance(values, int) and not isinstance(values, bool):
            values = [values]
    return tuple(check_field(name, values, ID_LIST))


def _day(args: Args, name: str) -> Any:
    raw = args.get(name)
    if raw is None or not raw.strip():
        return None
    return check_field(name, raw.strip(), Field("date"))


def _number_search(args: Args) -> str | None:
    raw = (args.get("searchParam") or "").strip()
    if raw and PHONE_SEARCH.fullmatch(raw) and any(ch.isdigit() for ch in raw):
        return "%" + "".join(ch for ch in raw if ch.isdigit()) + "%"
    return None


def list_filters() -> ticket_lists.TicketFilters:
    """The list filters of the request's query string (GET /tickets, GET /ticket/kanban)."""
    args = request.args
    status = args.get("status")
    search = search_pattern("searchParam") if args.get("searchParam") else None
    return ticket_lists.TicketFilters(
        status=_status(status) if status else None, search=search,
        number_search=_number_search(args) if search else None, created_on=_day(args, "date"),
        updated_on=_day(args, "updatedAt"), show_all=_flag(args, "showAll"),
        unread_only=_flag(args, "withUnreadMessages"), queue_ids=_id_list(args, "queueIds"),
        tag_ids=_id_list(args, "tags"), user_ids=_id_list(args, "users"))


def _cursor() -> Cursor | None:
    raw = request.args.get("cursor")
    if raw is None or not raw.strip():
        return None
    try:
        return Cursor.decode(raw.strip())
    except ValueError:
        raise BadRequest("cursor: not a cursor this server handed out (use nextCursor as it is)",
                         code="ERR_VALIDATION", field="cursor") from None


# ─── helpers ────────────────────────────────────────────────────────────────────────────

async def _visible(deps: Deps, principal: Principal, ticket_id: int) -> Row:
    viewer = await tickets.load_viewer(deps.db, principal.company_id, principal.user_id, principal.is_admin)
    return await tickets.show_visible(deps.db, viewer, ticket_id)


def _other_active(ticket_id: int | None) -> Response:
    which = f" ({ticket_id})" if ticket_id else ""
    return error_response(409, "ERR_OTHER_OPEN_TICKET",
                          f"the contact already has an open or pending ticket{which} on this connection",
                          ticketId=ticket_id or None)


def _invalid(error: InvalidTransition) -> BadRequest:
    return BadRequest(str(error), code="ERR_INVALID_STATUS", field="status")


async def _send_farewell(deps: Deps, principal: Principal, ticket: Row) -> None:
    """The connection's farewell message, through the outbox, before the ticket closes. A failure is
    logged and the ticket closes all the same."""
    if ticket["is_group"]:
        return
    connection = await whatsapps.show_whatsapp(deps.db, principal.company_id, ticket["whatsapp_id"])
    text = connection.get("farewell_message") or ""
    if not text.strip():
        return
    contact = ticket.get("contact") or {}
    # the variables of every automated text (actors/automation/render.py), the contact's custom fields with them
    fields = await deps.db.read(lambda conn: routing_store.custom_fields(conn, principal.company_id,
                                                                         ticket["contact_id"]))
    zone = zone_of(await settings.get_setting(deps.db, principal.company_id, "timezone"))
    body = render(text, variables(contact_name=contact.get("name") or "", contact_email=contact.get("email") or "",
                                  contact_number=contact.get("number") or "", custom_fields=fields,
                                  ticket_id=ticket["id"], queue=(ticket.get("queue") or {}).get("name") or "",
                                  user=(ticket.get("user") or {}).get("name") or "", now=utc_now(), zone=zone))
    try:
        await deps.tickets.send(principal.company_id, ticket, lambda reply: SendOut(
            ticket_id=ticket["id"], body=body, user_id=principal.user_id, reply=reply, sent_by="system"))
    except Exception as error:
        log.warning("farewell message not sent; closing the ticket anyway", exc_info=error,
                    extra={"fields": {"ticket_id": ticket["id"], "whatsapp_id": ticket["whatsapp_id"]}})


# ─── routes ─────────────────────────────────────────────────────────────────────────────

@blueprint.get("")
async def list_tickets() -> Response:
    """The tickets' JSON comes from PostgreSQL as text (storage/queries.sql: tickets_page) and is passed on
    as it is; only the envelope is written here."""
    return await answer_list(list_filters())


async def answer_list(filters: ticket_lists.TicketFilters) -> Response:
    """A page of the tickets the caller may see with `filters`, as GET /tickets answers it."""
    principal = current()
    deps = deps_of(current_app)
    limit, offset = page(PAGE_SIZE)
    after = _cursor()
    result = await ticket_lists.list_tickets(deps.db, principal.company_id, principal.user_id, principal.is_admin,
                                        filters, limit=limit, offset=offset, after=after)
    cursor = json.dumps(result.next_cursor.encode()) if result.next_cursor else "null"
    body = (f'{{"tickets":{result.tickets},"count":{result.count},'
            f'"hasMore":{"true" if result.has_more else "false"},"nextCursor":{cursor}}}')
    return Response(body, mimetype="application/json")


async def _detailed(deps: Deps, principal: Principal, row: Row) -> dict[str, Any]:
    """One ticket as its page shows it: the list's shape, with the contact's custom fields (`extraInfo`, the
    contact drawer's) — read here, not in every list."""
    shown = present_ticket(row)
    fields = await deps.db.fetch_all(deps.db.q.contact_extra_info, {"contact_id": row["contact_id"],
                                                                    "company_id": principal.company_id})
    shown["contact"] = {**(shown["contact"] or {}), "extraInfo": [dict(field) for field in fields]}
    return shown


@blueprint.get("/<ticket_id>")
async def show_ticket(ticket_id: str) -> Response:
    principal = current()
    deps = deps_of(current_app)
    row = await _visible(deps, principal, path_id(ticket_id, "ticket"))
    return jsonify(await _detailed(deps, principal, row))


@blueprint.get("/u/<ticket_uuid>")
async def show_ticket_by_uuid(ticket_uuid: str) -> Response:
    """The ticket's page (ticketz's `/tickets/:uuid`) loads its ticket by uuid."""
    principal = current()
    deps = deps_of(current_app)
    try:
        parsed = uuid.UUID(ticket_uuid)
    except ValueError:
        raise NotFound(f"ticket {ticket_uuid!r} not found") from None
    ticket_id = await conversations.ticket_id_by_uuid(deps.db, principal.company_id, str(parsed))
    return jsonify(await _detailed(deps, principal, await _visible(deps, principal, ticket_id)))


@blueprint.post("")
async def create_ticket() -> Response | tuple[Response, int]:
    """An agent starts a conversation with a contact: open and theirs (or pending), on the connection named
    or the company's default one."""
    principal = current()
    deps = deps_of(current_app)
    raw = await json_body()
    data = validate(raw, CREATE_FIELDS)
    status = _status(raw.get("status") or "open", ACTIVE)
    contact = await deps.db.fetch_one(deps.db.q.contact_get, {"id": data["contactId"],
                                                              "company_id": principal.company_id})
    if contact is None:
        raise NotFound(f"contact {data['contactId']} not found")
    whatsapp_id = data.get("whatsappId")
    if whatsapp_id is not None:
        whatsapp_id = (await whatsapps.show_whatsapp(deps.db, principal.company_id, whatsapp_id))["id"]
    else:
        whatsapp_id = await tickets.default_whatsapp(deps.db, principal.company_id)
        if whatsapp_id is None:
            raise BadRequest("no default connection: name one in whatsappId", code="ERR_NO_DEF_WAPP_FOUND",
                             field="whatsappId")
    user_id = data.get("userId")
    if status == "open" and user_id is None:
        user_id = principal.user_id

    async def start(actor: TicketActor) -> Row:
        row = await tickets.open_ticket(deps.db, principal.company_id, contact=contact, whatsapp_id=whatsapp_id,
                                        status=status, user_id=user_id, queue_id=data.get("queueId"))
        return await actor.reload(row["id"])

    route = {"whatsapp_id": whatsapp_id, "contact_id": contact["id"], "contact": contact}
    try:
        shown = await deps.tickets.call(principal.company_id, route, start)
    except OtherActiveTicket as error:
        return _other_active(error.ticket_id)
    except storage_errors.Conflict as error:
        if error.constraint == "tickets_one_active_key":
            return _other_active(None)
        raise
    return jsonify(present_ticket(shown)), 201


@blueprint.put("/<ticket_id>")
async def update_ticket(ticket_id: str) -> Response:
    """Accept, transfer, close (with the connection's farewell message), reopen: see
    `storage.tickets.plan_change` for the status machine and the ticket_events each change writes."""
    principal = current()
    deps = deps_of(current_app)
    ticket = await _visible(deps, principal, path_id(ticket_id, "ticket"))
    raw = await json_body()
    data = validate(raw, UPDATE_FIELDS)
    change = TicketChange(status=_status(raw["status"]) if raw.get("status") is not None else None,
                          set_user="userId" in data, user_id=data.get("userId"),
                          set_queue="queueId" in data, queue_id=data.get("queueId"),
                          transfer=raw.get("isTransfered") in (True, "true", 1, "1"))
    try:
        # Planned here on the row just read, so that nonsense is refused before anything is sent; planned
        # again inside the actor on the ticket as it is then, and written only if it is still so: that is
        # what counts (a lost accept is refused there, with the name of whoever has the ticket).
        plan: tickets.Plan | None = tickets.plan_change(ticket, change, principal.user_id)
    except InvalidTransition as error:
        raise _invalid(error) from None
    except tickets.TicketConflict:
        plan = None
    if plan is not None:
        await tickets.check_targets(deps.db, principal.company_id,
                                    plan.user_id if plan.user_id != ticket["user_id"] else None,
                                    plan.queue_id if plan.queue_id != ticket["queue_id"] else None)
        if plan.status == "closed" and ticket["status"] != "closed":
            await _send_farewell(deps, principal, ticket)

    async def apply(actor: TicketActor) -> Row:
        changed = await tickets.change_ticket(deps.db, principal.company_id, ticket["id"], change,
                                              principal.user_id)
        if not changed.wrote:  # already as asked (an accept clicked twice): nothing to announce
            return await conversations.show_ticket(deps.db, principal.company_id, ticket["id"])
        if "closed" in changed.events:  # the rating question, and the ticket's waits stopped (actors/routing.py)
            return await actor.after_close(ticket["id"])
        return await actor.reload(ticket["id"])

    try:
        shown = await deps.tickets.call(principal.company_id, ticket, apply)
    except InvalidTransition as error:
        raise _invalid(error) from None
    except OtherActiveTicket as error:
        return _other_active(error.ticket_id)
    except storage_errors.Conflict as error:
        if error.constraint == "tickets_one_active_key":
            return _other_active(None)
        raise
    return jsonify(present_ticket(shown))


@blueprint.delete("/<ticket_id>")
async def delete_ticket(ticket_id: str) -> Response:
    principal = current()
    deps = deps_of(current_app)
    # Looked up first, in the caller's company: another tenant's id is a 404 whatever the caller's role.
    ticket = await conversations.show_ticket(deps.db, principal.company_id, path_id(ticket_id, "ticket"))
    require_admin()

    async def remove(actor: TicketActor) -> None:
        await tickets.delete_ticket(deps.db, principal.company_id, ticket["id"])
        actor.forget(ticket["id"])

    await deps.tickets.call(principal.company_id, ticket, remove)
    deps.broker.publish(principal.company_id, f"company-{principal.company_id}-ticket",
                        {"action": "delete", "ticketId": ticket["id"], **ticket_audience(ticket)})
    return jsonify({"message": "ticket deleted"})
