"""`/contacts`: the contacts of the caller's company — list and search, create, show, update, delete —
and, for admins, imports of CSV or XLSX files (`/contacts/upload`, ticketz's `/contacts/importCsv`, and
`/contacts/import`) and exports (`/contacts/export?format=csv|xlsx`, ticketz's `/contacts/exportCsv`).

The search (`searchParam`) finds a contact by its name, its number, or the value of one of its custom
fields (`extraInfo`): the fields are indexed (migration 0019), and the custom fields are the `{{name}}`
variables of every automated text (actors/automation/render.py).

Any user of the company may list, create, show, update and delete contacts, as in the original backend
(whose routes only ask for a login; its frontends hide the delete button from non-admins).
"""

from __future__ import annotations

import json
import re
from typing import Any

from quart import Blueprint, Response, current_app, jsonify, request

from api import present
from api.app import Deps, deps_of
from api.auth import current, require_admin
from api.errors import ApiError, BadRequest
from api.imports import EXPORT_SLICE, answer, export_format, export_response, run_upload, uploaded_file
from api.validation import EMAIL, Field, check_field, json_body, page, path_id, search_pattern, validate
from storage import contacts
from storage.contacts import ExtraInfo

blueprint = Blueprint("contacts", __name__, url_prefix="/contacts")

PAGE_SIZE = 20
LIST_MAX = 5000  # contacts in GET /contacts/list (a picker)
CONTACT_FIELDS = {
    "name": Field("str", required=True, max_len=255),
    "number": Field("str", required=True, max_len=64),
    "email": Field("str", nullable=True, max_len=255),
}
MAX_EXTRA_INFO = 100
EXTRA_NAME = Field("str", required=True, max_len=255)
EXTRA_VALUE = Field("str", nullable=True, max_len=10_000, strip=False)

PHONE = re.compile(r"\+?[0-9\s().\-]+")  # ASCII digits only: fullwidth or Arabic-Indic ones are refused
MIN_DIGITS, MAX_DIGITS = 8, 15


def _invalid(field: str, message: str) -> BadRequest:
    return BadRequest(f"{field}: {message}", code="ERR_VALIDATION", field=field)


class BadNumber(ValueError):
    pass


def normalise_number(raw: str) -> str:
    """A phone number as digits with its country code: "+55 (11) 98888-7777" → "5511988887777"."""
    text = raw.strip()
    if not text:
        raise BadNumber("is required")
    if not PHONE.fullmatch(text):
        raise BadNumber("must be a phone number with country code (digits, spaces, + - ( ) . only)")
    digits = "".join(ch for ch in text if ch.isdigit())
    if not MIN_DIGITS <= len(digits) <= MAX_DIGITS:
        raise BadNumber(f"must have {MIN_DIGITS} to {MAX_DIGITS} digits, country code included")
    return digits


def _check_email(value: str | None) -> str:
    value = (value or "").strip()
    if value and not EMAIL.match(value):
        raise _invalid("email", "is not a valid email address")
    return value.lower()


def _check_extra_info(value: Any) -> list[ExtraInfo]:
    """`extraInfo`: a list of `{name, value}` with distinct names (an `id` sent back is ignored)."""
    if not isinstance(value, list):
        raise _invalid("extraInfo", "must be a list of {name, value}")
    if len(value) > MAX_EXTRA_INFO:
        raise _invalid("extraInfo", f"has too many items (at most {MAX_EXTRA_INFO})")
    fields: list[ExtraInfo] = []
    seen: set[str] = set()
    for index, item in enumerate(value):
        where = f"extraInfo[{index}]"
        if not isinstance(item, dict):
            raise _invalid(where, "must be an object {name, value}")
        name = check_field(f"{where}.name", item.get("name", ""), EXTRA_NAME)
        if name in seen:
            raise _invalid(f"{where}.name", f"repeats the name {name!r}")
        seen.add(name)
        field_value = check_field(f"{where}.value", item.get("value"), EXTRA_VALUE)
        fields.append(ExtraInfo(name=name, value=field_value or ""))
    return fields


async def _contact_body(*, partial: bool) -> dict[str, Any]:
    raw = await json_body()
    if isinstance(raw.get("number"), int) and not isinstance(raw["number"], bool) and raw["number"] >= 0:
        raw["number"] = str(raw["number"])  # API clients may send the number as a JSON number
    data = validate(raw, CONTACT_FIELDS, partial=partial)
    if "email" in data:
        data["email"] = _check_email(data["email"])
    if raw.get("extraInfo") is not None:  # absent or null: the custom fields stay as they are
        data["extraInfo"] = _check_extra_info(raw["extraInfo"])
    return data


def _publish(deps: Deps, company_id: int, payload: dict[str, Any]) -> None:
    deps.broker.publish(company_id, f"company-{company_id}-contact", payload)


def _number_search() -> str | None:
    """A LIKE pattern of the search's digits when the search looks like a phone number ("+55 11 9888")."""
    raw = (request.args.get("searchParam") or "").strip()
    if raw and PHONE.fullmatch(raw) and any(ch.isdigit() for ch in raw):
        return "%" + "".join(ch for ch in raw if ch.isdigit()) + "%"
    return None


@blueprint.get("")
async def list_contacts() -> Response:
    principal = current()
    limit, offset = page(PAGE_SIZE)
    rows, count = await contacts.list_contacts(deps_of(current_app).db, principal.company_id,
                                               search=search_pattern(), number_search=_number_search(),
                                               limit=limit, offset=offset,
                                               needle=(request.args.get("searchParam") or "").strip())
    return jsonify(present.page("contacts", [present.contact(row) for row in rows], count, limit, offset))


@blueprint.get("/list")
async def list_all_contacts() -> Response:
    """Every contact of the company by name, at most LIST_MAX (ticketz's pickers: the schedule dialog);
    `name` filters as the list's search does."""
    principal = current()
    rows, _count = await contacts.list_contacts(deps_of(current_app).db, principal.company_id,
                                                search=search_pattern("name"), number_search=None,
                                                limit=LIST_MAX, offset=0,
                                                needle=(request.args.get("name") or "").strip())
    return jsonify([present.contact(row) for row in rows])


@blueprint.post("")
async def create_contact() -> tuple[Response, int]:
    principal = current()
    deps = deps_of(current_app)
    data = await _contact_body(partial=False)
    try:
        number = normalise_number(data["number"])
    except BadNumber as error:
        raise _invalid("number", str(error)) from None
    row = await contacts.create_contact(deps.db, principal.company_id, name=data["name"], number=number,
                                        email=data.get("email") or "", extra_info=data.get("extraInfo", []))
    shown = present.contact(row)
    _publish(deps, principal.company_id, {"action": "update", "contact": shown})
    return jsonify(shown), 201


@blueprint.post("/findOrInsert")
async def find_or_insert_contact() -> tuple[Response, int]:
    """`{name, number}` → the company's contact with that number, made when there is none (ticketz opens a
    chat from a contact card or a mention with it): 200 when found, 201 when made."""
    principal = current()
    deps = deps_of(current_app)
    data = validate(await json_body(), {"name": Field("str", max_len=255), "number": Field("str", required=True,
                                                                                           max_len=64)})
    try:
        number = normalise_number(data["number"])
    except BadNumber as error:
        raise _invalid("number", str(error)) from None
    row, created = await contacts.find_or_create_contact(deps.db, principal.company_id,
                                                         name=data.get("name") or number, number=number)
    shown = present.contact(row)
    if created:
        _publish(deps, principal.company_id, {"action": "update", "contact": shown})
    return jsonify(shown), 201 if created else 200


@blueprint.get("/<contact_id>")
async def show_contact(contact_id: str) -> Response:
    principal = current()
    row = await contacts.show_contact(deps_of(current_app).db, principal.company_id, path_id(contact_id, "contact"))
    return jsonify(present.contact(row))


@blueprint.put("/<contact_id>")
async def update_contact(contact_id: str) -> Response:
    principal = current()
    deps = deps_of(current_app)
    existing = await contacts.show_contact(deps.db, principal.company_id, path_id(contact_id, "contact"))
    data = await _contact_body(partial=True)
    number = None
    # The frontends send the whole contact back: an unchanged number (a group's id, say) is not re-checked.
    if "number" in data and data["number"] != existing["number"]:
        try:
            number = normalise_number(data["number"])
        except BadNumber as error:
            raise _invalid("number", str(error)) from None
    row = await contacts.update_contact(deps.db, principal.company_id, existing["id"], name=data.get("name"),
                                        number=number if number != existing["number"] else None,
                                        email=data.get("email"), extra_info=data.get("extraInfo"))
    shown = present.contact(row)
    _publish(deps, principal.company_id, {"action": "update", "contact": shown})
    return jsonify(shown)


@blueprint.delete("/<contact_id>")
async def delete_contact(contact_id: str) -> Response:
    principal = current()
    deps = deps_of(current_app)
    existing = await contacts.show_contact(deps.db, principal.company_id, path_id(contact_id, "contact"))
    await contacts.delete_contact(deps.db, principal.company_id, existing["id"])
    _publish(deps, principal.company_id, {"action": "delete", "contactId": existing["id"]})
    return jsonify({"message": "contact deleted"})


# ─── import and export (api/imports.py) ─────────────────────────────────────────────────

SEMICOLON_LOCALES = ("pt-br", "fr", "de", "it", "es-es", "nl", "pl", "ru", "sv", "fi", "da", "no")


@blueprint.post("/upload")
async def upload_contacts() -> Response:
    """A CSV or XLSX of contacts (multipart `file`; ticketz's `contacts` too), upserted by number with the
    other columns as custom fields: see api/imports.py for the answer. Admins."""
    principal = require_admin()
    deps = deps_of(current_app)
    file = await uploaded_file(("file", "contacts"))
    company_id = principal.company_id
    q = deps.db.q
    report = await run_upload(deps, company_id, file, prepare=lambda conn: contacts.ContactsTarget(company_id, q),
                              target="contacts")
    shown = answer(report)
    # the names of zapgate's first import (before issue 13) stay: `updated` is `merged`, `errorCount` `rejected`
    return jsonify({**shown, "updated": report.merged, "errorCount": report.rejected})


@blueprint.post("/importCsv")
async def import_csv() -> Response:
    """ticketz's contacts page: the CSV in the multipart field `contacts`."""
    return await upload_contacts()


@blueprint.post("/import")
async def import_contacts() -> Response:
    """A file as `/contacts/upload`. ticketz's "import from the phone" (JSON `{whatsappId}`) is not served:
    zapgate does not read the phone's address book."""
    require_admin()
    if request.mimetype == "application/json":
        raise ApiError("importing the contacts of the phone's address book is not supported; import a CSV or XLSX "
                       "file (POST /contacts/upload, multipart field `file`)", code="ERR_NOT_SUPPORTED", status=501)
    return await upload_contacts()


def _contacts_export(fmt: str, header: list[str], delimiter: str) -> Response:
    principal = require_admin()
    deps = deps_of(current_app)

    async def next_slice(after: int) -> list[Any]:
        return await deps.db.read(lambda conn: contacts.export_slice(conn, deps.db.q, principal.company_id,
                                                                     after=after, limit=EXPORT_SLICE))

    def cells(row: dict[str, Any]) -> list[Any]:
        fields = row["extra_info"] or []
        return [row["name"], row["number"], row["email"], json.dumps(fields, ensure_ascii=False) if fields else ""]

    return export_response(fmt, "contacts", header, next_slice, cells, delimiter=delimiter)


@blueprint.get("/export")
async def export_contacts() -> Response:
    """The company's contacts (not groups) as CSV or XLSX (`format`): name, number, email and extraInfo (the
    custom fields as JSON), which `/contacts/upload` reads back."""
    return _contacts_export(export_format(), ["name", "number", "email", "extraInfo"], ",")


@blueprint.get("/exportCsv")
async def export_csv() -> Response:
    """ticketz's export: columns Name, Number, Email, ExtraInfo; `;` between them for the languages that
    write decimals with a comma (Accept-Language), or as `delimiter=semicolon|comma` says."""
    wanted = (request.args.get("delimiter") or "").lower()
    language = (request.headers.get("Accept-Language") or "").lower()
    if wanted in ("semicolon", "comma"):
        delimiter = ";" if wanted == "semicolon" else ","
    else:
        delimiter = ";" if any(locale in language for locale in SEMICOLON_LOCALES) else ","
    return _contacts_export("csv", ["Name", "Number", "Email", "ExtraInfo"], delimiter)
