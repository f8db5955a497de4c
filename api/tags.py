"""Tags (`/tags`), their place on tickets (`/tags/sync`, `/ticket-tags`) and the kanban board.

- `GET /tags?searchParam=&pageNumber=` → `{tags, count, hasMore}`, each tag with `ticketsCount` and
  `contactsCount`; the search ignores accents and case ("acao" finds "Ação"). `GET /tags/list` → every
  tag (the pickers: the chat page's tag box, the tickets' tags filter); `?kanban=1` the kanban ones.
- `POST /tags {name, color?, kanban?}`: any user (ticketz's chat page creates the tags typed in its tag
  box); a name the company has already answers that tag (200) when the colour and kanban asked match it,
  else 409 `ERR_TAG_NAME_ALREADY_EXISTS`; a new one is 201. Without a colour, one derived from the name.
  `PUT` / `DELETE /tags/:id`: admins (ticketz lets admins and supervisors edit; zapgate has no supervisors,
  and a deletion takes the tag off every ticket, so deleting is an admin's too).
- `POST /tags/sync {ticketId | contactId, tags: [{id}]}` replaces the set, following the setting
  `tagsMode`: `ticket` tags tickets, `contact` their contacts (a ticketId then tags its contact), `both`
  either; a contactId in `ticket` mode is 400 `ERR_INVALID_TAGMODE`. Answers the ticket (or contact).
- `PUT /ticket-tags/:ticketId/:tagId` adds one (201); a kanban tag replaces the ticket's other kanban tags
  in the same statement: that is a card moved between lanes. `DELETE /ticket-tags/:ticketId/:tagId`
  removes one, `DELETE /ticket-tags/:ticketId` all.
- Kanban: the lanes are the kanban tags (`GET /tag/kanban` or `/tags/kanban` → `{lista}`, the SaaS
  frontends' shape); `GET /ticket/kanban` lists tickets with the filters of `GET /tickets` (pending and
  open ones unless a `status` is given).

A ticket's tags are changed by the caller who may see the ticket (else 404) and inside its conversation's
actor, which re-reads it and announces `company-{id}-ticket` `update` (the list items show the tags). Tag
changes are announced as `tag` (what ticketz's Tags screen listens to) and `company-{id}-tag`, with
`{action: create | update, tag}` or `{action: delete, tagId}`; a contact's new tags as
`company-{id}-contact` `update`. Another company's tag, ticket or contact id is a 404 and changes nothing.
"""

from __future__ import annotations

import colorsys
import re
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
from quart import Blueprint, Response, current_app, jsonify, request

from actors.ticket import TicketActor
from api import present, subscriptions
from api.app import Deps, deps_of
from api.auth import Principal, current, require_admin
from api.errors import BadRequest
from api.present_tickets import ticket as present_ticket
from api.tickets import answer_list, list_filters
from api.validation import Field, check_field, json_body, page, path_id, search_pattern, validate
from storage import contacts, conversations, settings, tags, tickets
from storage.db import Row

blueprint = Blueprint("tags", __name__)

PAGE_SIZE = 40
MAX_SYNC = 500  # tags in one POST /tags/sync
COLOR = re.compile(r"#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})")
TAG_FIELDS = {"name": Field("str", required=True, min_len=3, max_len=255)}
ID = Field("int", required=True, minimum=1)


# ─── request parsing ────────────────────────────────────────────────────────────────────

def _invalid(field: str, message: str, code: str = "ERR_VALIDATION") -> BadRequest:
    return BadRequest(f"{field}: {message}", code=code, field=field)


def _kanban(value: Any) -> bool | None:
    """`kanban`: ticketz sends 0 or 1 (its model's number), others true or false; null is "not said"."""
    if value is None:
        return None
    if value in (0, 1, "0", "1") or isinstance(value, bool):
        return value in (1, "1", True)
    raise _invalid("kanban", "must be 0 or 1 (or true or false)")


def _color(value: Any) -> str | None:
    """A hex colour; empty or null is "not said" (ticketz's form sends "" when none was picked)."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not COLOR.fullmatch(value.strip()):
        raise _invalid("color", "must be a hex color #RRGGBB or #RGB", "ERR_TAG_INVALID_COLOR")
    return value.strip()


def color_for(name: str) -> str:
    """A colour of its own for a tag created without one: the same name always gets the same one."""
    hue = zlib.crc32(name.strip().lower().encode()) % 360 / 360
    red, green, blue = colorsys.hls_to_rgb(hue, 0.45, 0.6)
    return f"#{round(red * 255):02X}{round(green * 255):02X}{round(blue * 255):02X}"


async def _tag_body(*, partial: bool) -> dict[str, Any]:
    raw = await json_body()
    data = validate(raw, TAG_FIELDS, partial=partial)
    return {"name": data.get("name"), "color": _color(raw.get("color")), "kanban": _kanban(raw.get("kanban"))}


def _tag_ids(value: Any) -> list[int]:
    """`tags` of /tags/sync: a list of tags (`{id, …}`, as the tag box sends its selection) or of ids."""
    if not isinstance(value, list):
        raise _invalid("tags", "must be a list of tags [{id}]")
    if len(value) > MAX_SYNC:
        raise _invalid("tags", f"has too many items (at most {MAX_SYNC})")
    ids = []
    for index, item in enumerate(value):
        raw = item.get("id") if isinstance(item, dict) else item
        ids.append(check_field(f"tags[{index}].id" if isinstance(item, dict) else f"tags[{index}]", raw, ID))
    return sorted(set(ids))


# ─── helpers ────────────────────────────────────────────────────────────────────────────

def _publish_tag(deps: Deps, company_id: int, payload: dict[str, Any]) -> None:
    """`tag` is the name ticketz's Tags screen listens to; `company-{id}-tag` the family's usual form."""
    deps.broker.publish(company_id, "tag", payload)
    deps.broker.publish(company_id, f"company-{company_id}-tag", payload)


async def _visible_ticket(deps: Deps, principal: Principal, ticket_id: int) -> Row:
    viewer = await tickets.load_viewer(deps.db, principal.company_id, principal.user_id, principal.is_admin)
    return await tickets.show_visible(deps.db, viewer, ticket_id)


@attrs.frozen
class Retagged:
    changed: bool
    ticket: Row


async def _retag(deps: Deps, principal: Principal, ticket: Row,
                 change: Callable[[], Awaitable[bool]]) -> Retagged:
    """Run `change` (True when it changed something) inside the ticket's actor; a change is re-read and
    announced there (`actor.reload`), in order with the conversation's other events."""

    async def apply(actor: TicketActor) -> Retagged:
        if await change():
            return Retagged(True, await actor.reload(ticket["id"]))
        return Retagged(False, await conversations.show_ticket(deps.db, principal.company_id, ticket["id"]))

    return await deps.tickets.call(principal.company_id, ticket, apply)


# ─── tags ───────────────────────────────────────────────────────────────────────────────

@blueprint.get("/tags")
async def list_tags() -> Response:
    principal = current()
    limit, offset = page(PAGE_SIZE)
    rows, count = await tags.list_tags(deps_of(current_app).db, principal.company_id, search=search_pattern(),
                                       limit=limit, offset=offset)
    return jsonify(present.page("tags", [present.tag(row) for row in rows], count, limit, offset))


@blueprint.get("/tags/list")
async def list_all_tags() -> Response:
    principal = current()
    kanban_only = (request.args.get("kanban") or "").strip().lower() in ("1", "true")
    rows = await tags.all_tags(deps_of(current_app).db, principal.company_id, search=search_pattern(),
                               kanban_only=kanban_only)
    return jsonify([present.tag(row) for row in rows])


@blueprint.get("/tag/kanban")
@blueprint.get("/tags/kanban")
async def kanban_lanes() -> Response:
    """The board's lanes: the kanban tags, as `{lista}` (the SaaS frontends' Kanban page; the plan's `useKanban`)."""
    principal = current()
    await subscriptions.require_feature(deps_of(current_app).access, principal.company_id, "use_kanban")
    rows = await tags.all_tags(deps_of(current_app).db, principal.company_id, kanban_only=True)
    return jsonify({"lista": [present.tag(row) for row in rows]})


@blueprint.post("/tags")
async def create_tag() -> tuple[Response, int]:
    principal = current()
    deps = deps_of(current_app)
    data = await _tag_body(partial=False)
    made = await tags.create_tag(deps.db, principal.company_id, name=data["name"], color=data["color"],
                                 kanban=data["kanban"], default_color=color_for(data["name"]))
    shown = present.tag(made.row)
    if made.created:
        _publish_tag(deps, principal.company_id, {"action": "create", "tag": shown})
    return jsonify(shown), 201 if made.created else 200


@blueprint.get("/tags/<tag_id>")
async def show_tag(tag_id: str) -> Response:
    principal = current()
    row = await tags.show_tag(deps_of(current_app).db, principal.company_id, path_id(tag_id, "tag"))
    return jsonify(present.tag(row))


@blueprint.put("/tags/<tag_id>")
async def update_tag(tag_id: str) -> Response:
    principal = current()
    deps = deps_of(current_app)
    existing = await tags.show_tag(deps.db, principal.company_id, path_id(tag_id, "tag"))  # else 404
    require_admin()
    data = await _tag_body(partial=True)
    row = await tags.update_tag(deps.db, principal.company_id, existing["id"], data)
    shown = present.tag(row)
    _publish_tag(deps, principal.company_id, {"action": "update", "tag": shown})
    return jsonify(shown)


@blueprint.delete("/tags/<tag_id>")
async def delete_tag(tag_id: str) -> Response:
    principal = current()
    deps = deps_of(current_app)
    existing = await tags.show_tag(deps.db, principal.company_id, path_id(tag_id, "tag"))  # else 404
    require_admin()
    await tags.delete_tag(deps.db, principal.company_id, existing["id"])
    _publish_tag(deps, principal.company_id, {"action": "delete", "tagId": existing["id"]})
    return jsonify({"message": "tag deleted"})


# ─── tags on tickets and contacts ───────────────────────────────────────────────────────

@blueprint.post("/tags/sync")
async def sync_tags() -> Response:
    principal = current()
    deps = deps_of(current_app)
    raw = await json_body()
    tag_ids = _tag_ids(raw.get("tags", []))
    ticket_id = check_field("ticketId", raw["ticketId"], ID) if raw.get("ticketId") not in (None, "") else None
    contact_id = check_field("contactId", raw["contactId"], ID) if raw.get("contactId") not in (None, "") else None
    mode = await settings.get_setting(deps.db, principal.company_id, "tagsMode")
    if ticket_id is not None:
        ticket = await _visible_ticket(deps, principal, ticket_id)
        if mode == "contact":  # the tags are the contact's: the ticket's contact gets them
            await tags.set_contact_tags(deps.db, principal.company_id, ticket["contact_id"], tag_ids)
            await _announce_contact(deps, principal.company_id, ticket["contact_id"])

            async def change() -> bool:
                return True  # its contact's tags are part of the ticket as shown
        else:
            async def change() -> bool:
                await tags.set_ticket_tags(deps.db, principal.company_id, ticket["id"], tag_ids)
                return True

        retagged = await _retag(deps, principal, ticket, change)
        return jsonify(present_ticket(retagged.ticket))
    if contact_id is not None:
        if mode not in ("contact", "both"):
            raise BadRequest("contacts are not tagged: the setting tagsMode is 'ticket'", code="ERR_INVALID_TAGMODE")
        await contacts.show_contact(deps.db, principal.company_id, contact_id)  # another company's: 404
        await tags.set_contact_tags(deps.db, principal.company_id, contact_id, tag_ids)
        return jsonify(await _announce_contact(deps, principal.company_id, contact_id))
    raise BadRequest("name the ticketId or the contactId whose tags these are", code="ERR_NO_TICKET_OR_CONTACT")


async def _announce_contact(deps: Deps, company_id: int, contact_id: int) -> dict[str, Any]:
    shown = present.contact(await contacts.show_contact(deps.db, company_id, contact_id))
    deps.broker.publish(company_id, f"company-{company_id}-contact", {"action": "update", "contact": shown})
    return shown


@blueprint.put("/ticket-tags/<ticket_id>/<tag_id>")
async def add_ticket_tag(ticket_id: str, tag_id: str) -> tuple[Response, int]:
    principal = current()
    deps = deps_of(current_app)
    ticket = await _visible_ticket(deps, principal, path_id(ticket_id, "ticket"))
    target = path_id(tag_id, "tag")

    async def change() -> bool:
        added = await tags.add_ticket_tag(deps.db, principal.company_id, ticket["id"], target)
        return added.added or bool(added.removed)

    retagged = await _retag(deps, principal, ticket, change)
    return jsonify({"ticketId": ticket["id"], "tagId": target, "ticket": present_ticket(retagged.ticket)}), 201


@blueprint.delete("/ticket-tags/<ticket_id>/<tag_id>")
async def remove_ticket_tag(ticket_id: str, tag_id: str) -> Response:
    principal = current()
    deps = deps_of(current_app)
    ticket = await _visible_ticket(deps, principal, path_id(ticket_id, "ticket"))
    target = path_id(tag_id, "tag")
    await _retag(deps, principal, ticket,
                 lambda: tags.remove_ticket_tag(deps.db, principal.company_id, ticket["id"], target))
    return jsonify({"message": "ticket tag removed"})


@blueprint.delete("/ticket-tags/<ticket_id>")
async def clear_ticket_tags(ticket_id: str) -> Response:
    principal = current()
    deps = deps_of(current_app)
    ticket = await _visible_ticket(deps, principal, path_id(ticket_id, "ticket"))

    async def change() -> bool:
        return await tags.clear_ticket_tags(deps.db, principal.company_id, ticket["id"]) > 0

    await _retag(deps, principal, ticket, change)
    return jsonify({"message": "ticket tags removed"})


# ─── kanban ─────────────────────────────────────────────────────────────────────────────

@blueprint.get("/ticket/kanban")
async def kanban_tickets() -> Response:
    """The board's cards: GET /tickets with its filters, the pending and open tickets unless `status` says
    (the plan's `useKanban`)."""
    await subscriptions.require_feature(deps_of(current_app).access, current().company_id, "use_kanban")
    filters = list_filters()
    if filters.status is None:
        filters = attrs.evolve(filters, active_only=True)
    return await answer_list(filters)
