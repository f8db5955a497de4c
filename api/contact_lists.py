"""Contact lists (`/contact-lists`) and their items (`/contact-list-items`), with ticketz's routes and shapes.

- `GET /contact-lists?searchParam=&pageNumber=` → `{records, count, hasMore}` (20 a page, by name), each list
  `{id, name, companyId, contactsCount}`; `GET /contact-lists/list` → every list; `POST /contact-lists
  {name}`, `GET/PUT/DELETE /contact-lists/:id`: any user, as in ticketz.
- `POST /contact-lists/:id/upload`: multipart `file` (ticketz's field), a CSV or XLSX imported into the list
  (api/imports.py: merged by number, bad rows reported, all or nothing). Any user, as ticketz.
- `GET /contact-lists/:id/export?format=csv|xlsx`: the list as a file that imports back as the same list;
  `POST /contact-lists/:id/check {recheck?}`: check its numbers on WhatsApp again (admins).
- `GET /contact-list-items?contactListId=&searchParam=&pageNumber=` → `{contacts, count, hasMore}`, `GET
  /contact-list-items/list?contactListId=`, `POST /contact-list-items {name, number, email?, contactListId}`,
  `GET/PUT/DELETE /contact-list-items/:id`: admins (ticketz's routes ask for an admin).

Each item `{id, name, number, email, isWhatsappValid, contactListId, companyId}`; its number is normalised as
imports do (E.164 digits; the company's `phoneRegion` for numbers without a country code) and unique within
its list (409 `ERR_DUPLICATED_CONTACT`). `isWhatsappValid` is null until the number check has answered: after
an import, an item's creation or a change of its number, the list's numbers are checked through a connected
WhatsApp connection of the company, paced (actors/number_check.py).

Events, as ticketz emits them: `company-{id}-ContactList` `{action: create | update, record}` or `{action:
delete, id}`; `company-{id}-ContactListItem` the same for items (and the number check's answers, as
updates); after an import `company-{id}-ContactListItem-{listId}` `{action: "reload", records}` (the list's
first page) and `company-{id}-import` while it runs. Another company's ids answer 404 and change nothing.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from quart import Blueprint, Response, current_app, jsonify, request

from api.app import Deps, deps_of
from api.auth import current, require_admin
from api.errors import BadRequest, Conflict
from api.imports import (
    EXPORT_SLICE,
    answer,
    export_format,
    export_response,
    region_of,
    run_upload,
    uploaded_file,
)
from api.present import _iso
from api.validation import EMAIL, Field, json_body, page, path_id, search_pattern, validate
from storage import contact_lists, imports
from storage import errors as storage_errors
from storage.db import Row

blueprint = Blueprint("contact_lists", __name__)

PAGE_SIZE = 20  # ticketz's
RELOAD_RECORDS = 20  # items sent with the "reload" event after an import (the page the screen shows first)
LIST_FIELDS = {"name": Field("str", required=True, min_len=3, max_len=255)}
ITEM_FIELDS = {
    "name": Field("str", required=True, max_len=255),
    "number": Field("str", required=True, max_len=64),
    "email": Field("str", nullable=True, max_len=255),
}
PHONE_SEARCH = re.compile(r"\+?[0-9\s().\-]+")


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# ─── shapes and events ──────────────────────────────────────────────────────────────────

def present_list(row: Row) -> dict[str, Any]:
    return {"id": row["id"], "name": row["name"], "companyId": row["company_id"],
            "contactsCount": row.get("contacts_count", 0),
            "createdAt": _iso(row.get("created_at")), "updatedAt": _iso(row.get("updated_at"))}


def present_item(row: Row) -> dict[str, Any]:
    return {"id": row["id"], "name": row["name"], "number": row["number"], "email": row["email"],
            "isWhatsappValid": row["is_whatsapp_valid"], "contactListId": row["contact_list_id"],
            "companyId": row["company_id"], "createdAt": _iso(row.get("created_at")),
            "updatedAt": _iso(row.get("updated_at"))}


def publish_list(deps: Deps, company_id: int, payload: dict[str, Any]) -> None:
    deps.broker.publish(company_id, f"company-{company_id}-ContactList", payload)


def publish_item(deps: Deps, company_id: int, payload: dict[str, Any]) -> None:
    deps.broker.publish(company_id, f"company-{company_id}-ContactListItem", payload)


def _nudge(deps: Deps, due_at: dt.datetime) -> None:
    if deps.scheduler is not None:
        deps.scheduler.nudge(due_at)


async def _number(deps: Deps, company_id: int, raw: str) -> str:
    try:
        return imports.Numbers(await region_of(deps, company_id)).normalise(raw)
    except imports.BadNumber as error:
        raise BadRequest(f"number: {error}", code="ERR_VALIDATION", field="number") from None


def _email(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if value and not EMAIL.match(value):
        raise BadRequest("email: is not a valid email address", code="ERR_VALIDATION", field="email")
    return value.lower()


def _duplicate() -> Conflict:
    return Conflict("a contact with this number is in the list already", code="ERR_DUPLICATED_CONTACT")


def _number_search() -> str | None:
    raw = (request.args.get("searchParam") or "").strip()
    if raw and PHONE_SEARCH.fullmatch(raw) and any(ch.isdigit() for ch in raw):
        return "%" + "".join(ch for ch in raw if ch.isdigit()) + "%"
    return None


# ─── lists ──────────────────────────────────────────────────────────────────────────────

@blueprint.get("/contact-lists")
async def list_lists() -> Response:
    principal = current()
    limit, offset = page(PAGE_SIZE)
    rows, count = await contact_lists.list_lists(deps_of(current_app).db, principal.company_id,
                                                 search=search_pattern(), limit=limit, offset=offset)
    items = [present_list(row) for row in rows]
    return jsonify({"records": items, "count": count, "hasMore": offset + len(items) < count})


@blueprint.get("/contact-lists/list")
async def all_lists() -> Response:
    principal = current()
    rows = await contact_lists.all_lists(deps_of(current_app).db, principal.company_id)
    return jsonify([present_list(row) for row in rows])


@blueprint.get("/contact-lists/<list_id>")
async def show_list(list_id: str) -> Response:
    principal = current()
    row = await contact_lists.show_list(deps_of(current_app).db, principal.company_id, path_id(list_id, "list"))
    return jsonify(present_list(row))


def _list_name(raw: dict[str, Any]) -> str:
    try:
        return validate(raw, LIST_FIELDS)["name"]
    except BadRequest as error:
        raise BadRequest(error.message, code="ERR_CONTACTLIST_INVALID_NAME", field="name") from None


@blueprint.post("/contact-lists")
async def create_list() -> tuple[Response, int]:
    principal = current()
    deps = deps_of(current_app)
    name = _list_name(await json_body())
    shown = present_list(await contact_lists.create_list(deps.db, principal.company_id, name))
    publish_list(deps, principal.company_id, {"action": "create", "record": shown})
    return jsonify(shown), 201


@blueprint.put("/contact-lists/<list_id>")
async def update_list(list_id: str) -> Response:
    principal = current()
    deps = deps_of(current_app)
    list_id_ = path_id(list_id, "list")
    await contact_lists.show_list(deps.db, principal.company_id, list_id_)  # another company's: 404 first
    name = _list_name(await json_body())
    shown = present_list(await contact_lists.update_list(deps.db, principal.company_id, list_id_, name))
    publish_list(deps, principal.company_id, {"action": "update", "record": shown})
    return jsonify(shown)


@blueprint.delete("/contact-lists/<list_id>")
async def delete_list(list_id: str) -> Response:
    principal = current()
    deps = deps_of(current_app)
    list_id_ = path_id(list_id, "list")
    await contact_lists.delete_list(deps.db, principal.company_id, list_id_)
    publish_list(deps, principal.company_id, {"action": "delete", "id": list_id_})
    return jsonify({"message": "Contact list deleted"})


@blueprint.post("/contact-lists/<list_id>/upload")
async def upload(list_id: str) -> Response:
    """ticketz's import of a list (multipart `file`); the answer is the import's report (api/imports.py)."""
    principal = current()
    deps = deps_of(current_app)
    company_id = principal.company_id
    list_id_ = path_id(list_id, "list")
    await contact_lists.show_list(deps.db, company_id, list_id_)  # 404 before reading a foreign upload
    file = await uploaded_file(("file",))
    check_at = utc_now()

    def prepare(conn: Any) -> imports.Target:
        contact_lists.lock_list(conn, company_id, list_id_)
        return contact_lists.ItemsTarget(company_id, list_id_)

    def finish(conn: Any, report: imports.Report) -> None:
        if report.created or report.merged:
            contact_lists.schedule_check(conn, company_id, list_id_, check_at)

    report = await run_upload(deps, company_id, file, prepare=prepare, finish=finish, target="contactList",
                              event_fields={"contactListId": list_id_})
    _nudge(deps, check_at)
    rows, _ = await contact_lists.list_items(deps.db, company_id, list_id_, search=None, number_search=None,
                                             limit=RELOAD_RECORDS, offset=0)
    deps.broker.publish(company_id, f"company-{company_id}-ContactListItem-{list_id_}",
                        {"action": "reload", "records": [present_item(row) for row in rows]})
    shown = present_list(await contact_lists.show_list(deps.db, company_id, list_id_))
    publish_list(deps, company_id, {"action": "update", "record": shown})
    return jsonify(answer(report))


@blueprint.get("/contact-lists/<list_id>/export")
async def export_list(list_id: str) -> Response:
    """The list's items as CSV or XLSX (`format`), columns name, number, email, whatsapp (the last is what
    the number check found: true, false or empty; an import ignores it)."""
    principal = require_admin()
    deps = deps_of(current_app)
    row = await contact_lists.show_list(deps.db, principal.company_id, path_id(list_id, "list"))
    fmt = export_format()

    async def next_slice(after: int) -> list[Row]:
        return await deps.db.read(lambda conn: contact_lists.export_slice(
            conn, principal.company_id, row["id"], after=after, limit=EXPORT_SLICE))

    def cells(item: Row) -> list[Any]:
        valid = item["is_whatsapp_valid"]
        return [item["name"], item["number"], item["email"], "" if valid is None else str(valid).lower()]

    filename = re.sub(r"[^A-Za-z0-9._-]+", "-", row["name"]).strip("-") or f"contact-list-{row['id']}"
    return export_response(fmt, filename, ["name", "number", "email", "whatsapp"], next_slice, cells)


@blueprint.post("/contact-lists/<list_id>/check")
async def check_list(list_id: str) -> tuple[Response, int]:
    """Check the list's numbers on WhatsApp now: those not checked yet, or all of them with `recheck`."""
    principal = require_admin()
    deps = deps_of(current_app)
    list_id_ = path_id(list_id, "list")
    await contact_lists.show_list(deps.db, principal.company_id, list_id_)
    raw = await json_body()
    recheck = validate(raw, {"recheck": Field("bool")}).get("recheck", False)
    check_at = utc_now()
    waiting = await contact_lists.recheck(deps.db, principal.company_id, list_id_, everything=recheck,
                                          check_at=check_at)
    _nudge(deps, check_at)
    return jsonify({"contactListId": list_id_, "waiting": waiting}), 202


# ─── items ──────────────────────────────────────────────────────────────────────────────

def _list_param(required: bool) -> int | None:
    raw = (request.args.get("contactListId") or "").strip()
    if not raw:
        if required:
            raise BadRequest("contactListId: is required", code="ERR_VALIDATION", field="contactListId")
        return None
    if not re.fullmatch(r"\d{1,18}", raw):
        raise BadRequest("contactListId: must be an id", code="ERR_VALIDATION", field="contactListId")
    return int(raw)


@blueprint.get("/contact-list-items")
async def list_items() -> Response:
    principal = require_admin()
    deps = deps_of(current_app)
    list_id = _list_param(required=True)
    assert list_id is not None
    await contact_lists.show_list(deps.db, principal.company_id, list_id)
    limit, offset = page(PAGE_SIZE)
    rows, count = await contact_lists.list_items(deps.db, principal.company_id, list_id, search=search_pattern(),
                                                 number_search=_number_search(), limit=limit, offset=offset)
    items = [present_item(row) for row in rows]
    return jsonify({"contacts": items, "count": count, "hasMore": offset + len(items) < count})


@blueprint.get("/contact-list-items/list")
async def all_items() -> Response:
    principal = require_admin()
    deps = deps_of(current_app)
    list_id = _list_param(required=False)
    if list_id is not None:
        await contact_lists.show_list(deps.db, principal.company_id, list_id)
    rows = await contact_lists.all_items(deps.db, principal.company_id, list_id)
    return jsonify([present_item(row) for row in rows])


@blueprint.get("/contact-list-items/<item_id>")
async def show_item(item_id: str) -> Response:
    principal = require_admin()
    row = await contact_lists.show_item(deps_of(current_app).db, principal.company_id, path_id(item_id, "item"))
    return jsonify(present_item(row))


@blueprint.post("/contact-list-items")
async def create_item() -> tuple[Response, int]:
    principal = require_admin()
    deps = deps_of(current_app)
    raw = await json_body()
    data = validate(raw, {**ITEM_FIELDS, "contactListId": Field("int", required=True, minimum=1)})
    await contact_lists.show_list(deps.db, principal.company_id, data["contactListId"])
    number = await _number(deps, principal.company_id, data["number"])
    check_at = utc_now()
    try:
        row = await contact_lists.create_item(deps.db, principal.company_id, data["contactListId"],
                                              name=data["name"], number=number,
                                              email=_email(data.get("email")) or "", check_at=check_at)
    except storage_errors.Conflict:
        raise _duplicate() from None
    _nudge(deps, check_at)
    shown = present_item(row)
    publish_item(deps, principal.company_id, {"action": "create", "record": shown})
    return jsonify(shown), 201


@blueprint.put("/contact-list-items/<item_id>")
async def update_item(item_id: str) -> Response:
    principal = require_admin()
    deps = deps_of(current_app)
    existing = await contact_lists.show_item(deps.db, principal.company_id, path_id(item_id, "item"))
    data = validate(await json_body(), ITEM_FIELDS, partial=True)
    number = None
    if "number" in data and data["number"] != existing["number"]:
        number = await _number(deps, principal.company_id, data["number"])
    check_at = utc_now()
    try:
        row = await contact_lists.update_item(deps.db, principal.company_id, existing["id"], name=data.get("name"),
                                              number=number, email=_email(data.get("email")), check_at=check_at)
    except storage_errors.Conflict:
        raise _duplicate() from None
    if row["is_whatsapp_valid"] is None:
        _nudge(deps, check_at)
    shown = present_item(row)
    publish_item(deps, principal.company_id, {"action": "update", "record": shown})
    return jsonify(shown)


@blueprint.delete("/contact-list-items/<item_id>")
async def delete_item(item_id: str) -> Response:
    principal = require_admin()
    deps = deps_of(current_app)
    row = await contact_lists.delete_item(deps.db, principal.company_id, path_id(item_id, "item"))
    publish_item(deps, principal.company_id, {"action": "delete", "id": row["id"]})
    return jsonify({"message": "Contact deleted"})
