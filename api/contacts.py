"""`/contacts`: the contacts of the caller's company — list and search, create, show, update, delete —
and `/contacts/import`, a bulk upsert from a CSV file (admins).

Any user of the company may list, create, show, update and delete contacts, as in the original backend
(whose routes only ask for a login; its frontends hide the delete button from non-admins).
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import unicodedata
from typing import Any

import attrs
import trio
from quart import Blueprint, Response, current_app, jsonify, request

from api import present
from api.app import Deps, deps_of
from api.auth import current, require_admin
from api.errors import ApiError, BadRequest
from api.validation import EMAIL, Field, check_field, json_body, page, path_id, search_pattern, validate
from storage import contacts
from storage.contacts import ExtraInfo, ImportRow

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
                                               limit=limit, offset=offset)
    return jsonify(present.page("contacts", [present.contact(row) for row in rows], count, limit, offset))


@blueprint.get("/list")
async def list_all_contacts() -> Response:
    """Every contact of the company by name, at most LIST_MAX (ticketz's pickers: the schedule dialog);
    `name` filters as the list's search does."""
    principal = current()
    rows, _count = await contacts.list_contacts(deps_of(current_app).db, principal.company_id,
                                                search=search_pattern("name"), number_search=None,
                                                limit=LIST_MAX, offset=0)
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


# ─── CSV import ─────────────────────────────────────────────────────────────────────────

MAX_IMPORT_ROWS = 50_000
MAX_REPORTED_ERRORS = 1_000
HEADER_ALIASES = {
    "name": "name", "nome": "name", "nome completo": "name",
    "number": "number", "numero": "number", "telefone": "number", "phone": "number", "celular": "number",
    "whatsapp": "number",
    "email": "email", "e-mail": "email",
}


class InvalidCsv(Exception):
    pass


class TooManyRows(Exception):
    pass


@attrs.frozen
class ParsedCsv:
    rows: list[ImportRow]
    errors: list[dict[str, Any]]  # {row, message}, in file order


def _decode(data: bytes) -> str:
    """The file's text: UTF-8 (with or without BOM), UTF-16 with a BOM, or Windows-1252 (what spreadsheet
    programs on Windows save as "CSV"); binary data is refused."""
    if not data.strip():
        raise InvalidCsv("the file is empty")
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            text = data.decode("utf-16")
        except UnicodeDecodeError:
            raise InvalidCsv("the file is not text (invalid UTF-16)") from None
    else:
        if b"\x00" in data:
            raise InvalidCsv("the file is binary, not CSV text")
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            try:
                text = data.decode("cp1252")
            except UnicodeDecodeError:
                raise InvalidCsv("the file is not UTF-8 text") from None
    if "\x00" in text:
        raise InvalidCsv("the file is binary, not CSV text")
    return text


def _header_key(cell: str) -> str | None:
    plain = unicodedata.normalize("NFKD", cell.strip().strip("\ufeff").strip().lower())
    plain = "".join(ch for ch in plain if not unicodedata.combining(ch))
    return HEADER_ALIASES.get(plain)


def _delimiter(text: str) -> str:
    header = next((line for line in text.splitlines() if line.strip()), "")
    counts = {sep: header.count(sep) for sep in (",", ";", "\t")}
    best = max(counts, key=lambda sep: counts[sep])
    return best if counts[best] else ","


def _cell(cells: list[str], columns: dict[str, int], key: str) -> str:
    index = columns.get(key)
    return cells[index] if index is not None and index < len(cells) else ""


def parse_csv(data: bytes) -> ParsedCsv:
    """Check every row of a contacts CSV. Rows are numbered as a spreadsheet shows them: the header is
    row 1. Blank rows are skipped; a number seen on an earlier row makes a row an error."""
    text = _decode(data)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(text), strict=False)
    columns: dict[str, int] | None = None
    rows: list[ImportRow] = []
    errors: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    data_rows = 0
    row_number = 0
    try:
        for record in reader:
            row_number += 1
            cells = [cell.strip() for cell in record]
            if not any(cells):
                continue
            if columns is None:
                columns = {}
                for index, cell in enumerate(cells):
                    key = _header_key(cell)
                    if key is not None:
                        columns.setdefault(key, index)
                if "number" not in columns:
                    raise InvalidCsv("the first row must be a header naming the columns name, number and email "
                                     "(nome, número or telefone are accepted too); no number column found")
                continue
            data_rows += 1
            if data_rows > MAX_IMPORT_ROWS:
                raise TooManyRows(f"the file has more than {MAX_IMPORT_ROWS} rows")
            message = None
            name, raw_number, email = (_cell(cells, columns, key) for key in ("name", "number", "email"))
            number = ""
            try:
                number = normalise_number(raw_number)
            except BadNumber as error:
                message = f"number: {error}" if raw_number else "number: is missing"
            if message is None and len(name) > 255:
                message = "name: is too long (at most 255 characters)"
            if message is None and len(email) > 255:
                message = "email: is too long (at most 255 characters)"
            if message is None and email and not EMAIL.match(email):
                message = "email: is not a valid email address"
            if message is None and number in seen:
                message = f"number: {number} is already on row {seen[number]}"
            if message is not None:
                errors.append({"row": row_number, "message": message})
                continue
            seen[number] = row_number
            rows.append(ImportRow(row_number=row_number, name=name, number=number, email=email.lower()))
    except csv.Error as error:
        raise InvalidCsv(f"row {row_number + 1}: {error}") from None
    if columns is None:
        raise InvalidCsv("the file has no header row")
    return ParsedCsv(rows=rows, errors=errors)


@blueprint.post("/import")
async def import_contacts() -> Response:
    """Multipart field `file`: a CSV with a header (name, number, email). Good rows are upserted by number in
    one transaction; bad ones are listed as `{row, message}`. An existing contact keeps a name an agent
    chose, takes the file's name otherwise, and takes the file's email when the file has one."""
    principal = require_admin()
    deps = deps_of(current_app)
    if request.mimetype != "multipart/form-data":
        if await request.get_data(cache=True):
            raise ApiError("send the CSV as multipart/form-data in the field `file`",
                           code="ERR_UNSUPPORTED_MEDIA_TYPE", status=415)
        raise _invalid("file", "is required (a CSV file in the multipart field `file`)")
    files = await request.files
    upload = files.get("file")
    if upload is None:
        raise _invalid("file", "is required (a CSV file in the multipart field `file`)")
    data = await trio.to_thread.run_sync(upload.read)
    try:
        parsed = await trio.to_thread.run_sync(parse_csv, data)
    except InvalidCsv as error:
        raise BadRequest(f"invalid CSV: {error}", code="ERR_INVALID_CSV", field="file") from None
    except TooManyRows as error:
        raise ApiError(f"{error}; split it into files of at most {MAX_IMPORT_ROWS} rows",
                       code="ERR_CSV_TOO_MANY_ROWS", status=413) from None
    created, updated = await contacts.import_contacts(deps.db, principal.company_id, parsed.rows)
    return jsonify({"created": created, "updated": updated, "errors": parsed.errors[:MAX_REPORTED_ERRORS],
                    "errorCount": len(parsed.errors)})
