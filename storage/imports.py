"""Importing a spreadsheet of contacts (CSV or XLSX) into contacts or into a contact list: one engine.

`open_table(file)` reads what was uploaded as rows of text cells, streaming: a CSV through the `csv` module
(the delimiter — `,` `;` or tab — from the header line; the encoding UTF-8, with or without BOM, UTF-16 with a
BOM, else Windows-1252 / Latin-1), an XLSX through openpyxl in read-only mode (the first sheet; a file whose
parts unpack to more than `XLSX_MAX_UNPACKED` bytes is refused before it is read). The first row that is not
blank is the header: its cells name the columns in any case and with or without accents (`nome`/`name`,
`número`/`numero`/`number`/`telefone`/`phone`/`celular`/`whatsapp`, `email`/`e-mail`; `HEADER_ALIASES`);
a number column is required. The other columns are custom fields for contacts (a cell left empty sets
nothing), and so is `ExtraInfo`, a JSON list of `{name, value}` (what ticketz's contacts export writes).

`run_import(conn, table, target, …)` goes through the rows once: each number is normalised to E.164 digits
with `phonenumbers` (`Numbers`: the company's region for numbers written without their country code), a bad
row is reported (`Rejected`: row, field, value, why) and skipped, and the good ones go to the database in
batches of `BATCH` rows, one statement each (`Target.merge`), inside the caller's transaction: a file is
imported whole or not at all. A number met again — later in the file, or already there — is merged (the
file's name and e-mail replace the stored ones when it has them). Memory holds one batch and the first
`MAX_REPORTED` rejected rows, whatever the size of the file; the rows are capped at `MAX_ROWS`.

Everything here is synchronous, for a worker thread: `progress` and `check_cancelled` are how the caller
hears of it and stops it (between batches).
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
import unicodedata
import zipfile
from collections.abc import Callable, Iterator, Sequence
from typing import IO, Any, Protocol

import attrs
import phonenumbers
import psycopg

from storage.db import Row

BATCH = 1_000  # good rows written per statement
MAX_ROWS = 100_000  # data rows in one file (beyond: TooManyRows, nothing written)
MAX_LINES = 2 * MAX_ROWS  # rows read, blank ones included (openpyxl's reader keeps ~100 bytes per row it read)
MAX_LINE = 1024 * 1024  # characters in one line of a CSV
MAX_REPORTED = 1_000  # rejected rows described in the report (all are counted)
MAX_COLUMNS = 100  # columns read (the rest of a wider row is ignored)
MAX_CELL = 10_000  # characters in one cell (a custom field's longest value)
MAX_NAME = 255
XLSX_MAX_UNPACKED = 512 * 1024 * 1024  # bytes the parts of an XLSX may unpack to (a zip bomb is refused)
SCAN_CHUNK = 1024 * 1024
EMAIL_MAX = 255
FORMULA_STARTS = ("=", "+", "-", "@")
EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")  # the rule of api/validation.EMAIL

HEADER_ALIASES = {
    "name": "name", "nome": "name", "nome completo": "name", "full name": "name", "contato": "name",
    "contact": "name",
    "number": "number", "numero": "number", "telefone": "number", "phone": "number", "celular": "number",
    "whatsapp": "number", "fone": "number", "phone number": "number", "mobile": "number", "tel": "number",
    "email": "email", "e-mail": "email", "e mail": "email", "mail": "email",
    "extrainfo": "extra_info", "extra info": "extra_info",
}


class InvalidFile(Exception):
    """The file cannot be imported at all (not a CSV or XLSX, no header, no number column)."""


class TooManyRows(Exception):
    """More than MAX_ROWS data rows."""


class BadNumber(ValueError):
    """Not a phone number that WhatsApp could have; the message says why."""


# ─── numbers ────────────────────────────────────────────────────────────────────────────

@attrs.frozen
class Numbers:
    """Phone numbers to E.164 digits without "+" ("+55 (11) 98888-7777" → "5511988887777"), as contacts are
    stored. A number without "+" is read as written in `region` ("(11) 98888-7777" in BR) and, when that is
    not a valid number there, as one with its country code ("14155552671"). Only numbers valid in their
    country's numbering plan pass (libphonenumber's metadata)."""

    region: str = "BR"

    def normalise(self, raw: str) -> str:
        text = raw.strip()
        if not text:
            raise BadNumber("is missing")
        if len(text) > 64 or not any(ch.isdigit() for ch in text):
            raise BadNumber("is not a phone number")
        candidates = [text] if text.startswith("+") else [text, "+" + "".join(ch for ch in text if ch.isdigit())]
        for candidate in candidates:
            try:
                parsed = phonenumbers.parse(candidate, None if candidate.startswith("+") else self.region)
            except phonenumbers.NumberParseException:
                continue
            if phonenumbers.is_valid_number(parsed):
                return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)[1:]
        raise BadNumber(f"is not a valid phone number (in {self.region}, or with its country code)")


def region_or_default(value: str | None, default: str = "BR") -> str:
    region = (value or "").strip().upper()
    return region if region in phonenumbers.SUPPORTED_REGIONS else default


# ─── reading ────────────────────────────────────────────────────────────────────────────

@attrs.define
class Table:
    """An uploaded file as rows: `rows` yields (row number as a spreadsheet shows it, cells), blank rows
    included; `total` is how many rows the file has when that is known cheaply (else None)."""

    rows: Iterator[tuple[int, list[str]]]
    kind: str  # "csv" | "xlsx"
    total: int | None
    close: Callable[[], None] = lambda: None


def open_table(file: IO[bytes]) -> Table:
    """The rows of an uploaded CSV or XLSX (told apart by their first bytes). The file must be seekable."""
    file.seek(0)
    head = file.read(8)
    file.seek(0)
    if not head:
        raise InvalidFile("the file is empty")
    if head.startswith(b"PK\x03\x04"):
        return _open_xlsx(file)
    if head.startswith((b"\xd0\xcf\x11\xe0", b"%PDF", b"\x89PNG", b"\xff\xd8\xff", b"GIF8")):
        raise InvalidFile("the file is neither CSV text nor an XLSX workbook (an old .xls? save it as .xlsx or CSV)")
    return _open_csv(file)


def _open_csv(file: IO[bytes]) -> Table:
    encoding, lines, first_line = _scan_text(file)
    text = io.TextIOWrapper(file, encoding=encoding, newline="")  # type: ignore[arg-type]

    def text_lines() -> Iterator[str]:
        """The text's lines, none longer than MAX_LINE (a longer one is not a row of contacts: refused
        before it is held in memory whole)."""
        while line := text.readline(MAX_LINE + 1):
            if len(line) > MAX_LINE:
                raise InvalidFile(f"a line is longer than {MAX_LINE:,} characters")
            yield line

    reader = csv.reader(text_lines(), delimiter=_delimiter(first_line), strict=False)

    def rows() -> Iterator[tuple[int, list[str]]]:
        number = 0
        try:
            for record in reader:
                number = reader.line_num
                yield number, record[:MAX_COLUMNS]
        except csv.Error as error:
            raise InvalidFile(f"row {number + 1}: {error}") from None

    def close() -> None:
        text.detach()  # the upload's file is the caller's to close

    return Table(rows(), "csv", lines, close)


def _scan_text(file: IO[bytes]) -> tuple[str, int, str]:
    """The encoding of a CSV, about how many lines it has and its first line that is not blank, in one pass
    of bounded memory: UTF-16 (with a BOM), UTF-8 (with or without BOM) when every byte decodes as UTF-8,
    else Windows-1252 (what spreadsheet programs save on Windows), else Latin-1. NUL bytes: not text."""
    start = file.read(4)
    file.seek(0)
    utf16 = start.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
    decoder: codecs.IncrementalDecoder | None = codecs.getincrementaldecoder("utf-16" if utf16 else "utf-8")()
    cp1252: codecs.IncrementalDecoder | None = codecs.getincrementaldecoder("cp1252")()
    lines = 0
    pending, first = "", ""
    while True:
        chunk = file.read(SCAN_CHUNK)
        final = not chunk
        if not utf16:
            if b"\x00" in chunk:
                raise InvalidFile("the file is binary, not CSV text")
            lines += chunk.count(b"\n")
            if cp1252 is not None:
                try:
                    cp1252.decode(chunk, final)
                except UnicodeDecodeError:
                    cp1252 = None
        if decoder is not None:
            try:
                decoded = decoder.decode(chunk, final)
            except UnicodeDecodeError:
                if utf16:
                    raise InvalidFile("the file is not text (invalid UTF-16)") from None
                decoder, decoded = None, ""
            if utf16:
                lines += decoded.count("\n")
            if not first:
                pending, first = _first_line(pending + decoded, final)
        if final:
            break
    if utf16:
        encoding = "utf-16"
    elif decoder is not None:
        encoding = "utf-8-sig"
    else:
        encoding = "cp1252" if cp1252 is not None else "latin-1"
        file.seek(0)
        pending, first = "", ""
        while not first:
            chunk = file.read(64 * 1024)
            pending, first = _first_line(pending + chunk.decode(encoding, errors="replace"), not chunk)
            if not chunk:
                break
    file.seek(0)
    if not first.strip().strip("\ufeff"):
        raise InvalidFile("the file has no header row")
    return encoding, lines, first


def _first_line(text: str, final: bool) -> tuple[str, str]:
    """(the text of a line not ended yet, the first line that is not blank or ""); `final`: no more text."""
    while "\n" in text:
        line, text = text.split("\n", 1)
        if line.strip().strip("\ufeff"):
            return "", line
    if final:
        return "", text
    return text[-64 * 1024:], ""


def _delimiter(header: str) -> str:
    counts = {sep: header.count(sep) for sep in (",", ";", "\t")}
    best = max(counts, key=lambda sep: counts[sep])
    return best if counts[best] else ","


def _open_xlsx(file: IO[bytes]) -> Table:
    import openpyxl  # a few hundred milliseconds to import: only when a workbook comes
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        with zipfile.ZipFile(file) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError) as error:
        raise InvalidFile(f"the file is not a valid XLSX workbook ({error})") from None
    if unpacked > XLSX_MAX_UNPACKED:
        raise InvalidFile(f"the workbook unpacks to more than {XLSX_MAX_UNPACKED // 2**20} MiB")
    file.seek(0)
    try:
        workbook = openpyxl.load_workbook(file, read_only=True, data_only=True)
    except (InvalidFileException, zipfile.BadZipFile, KeyError, ValueError, OSError, TypeError) as error:
        raise InvalidFile(f"the file is not a valid XLSX workbook ({type(error).__name__}: {error})") from None
    if not workbook.worksheets:
        workbook.close()
        raise InvalidFile("the workbook has no sheet")
    sheet = workbook.worksheets[0]
    total = sheet.max_row if isinstance(sheet.max_row, int) and sheet.max_row > 0 else None

    def rows() -> Iterator[tuple[int, list[str]]]:
        number = 0
        try:
            for cells in sheet.iter_rows():
                numbered = next((cell.row for cell in cells if getattr(cell, "row", None)), None)
                number = numbered if isinstance(numbered, int) and numbered > number else number + 1
                yield number, [_cell_text(cell.value) for cell in cells[:MAX_COLUMNS]]
        except (KeyError, ValueError, TypeError, OSError, zipfile.BadZipFile) as error:
            raise InvalidFile(f"row {number + 1}: the workbook is damaged ({type(error).__name__})") from None
        except Exception as error:  # the XML parser's own errors
            if type(error).__name__ in ("ParseError", "XMLSyntaxError"):
                raise InvalidFile(f"row {number + 1}: the workbook is damaged ({error})") from None
            raise

    return Table(rows(), "xlsx", total, workbook.close)


def _cell_text(value: Any) -> str:
    """A cell as text: whole numbers without ".0" (a phone number typed into a numeric cell)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def header_key(cell: str) -> str | None:
    """What a header cell names (`HEADER_ALIASES`), in any case, with or without accents; None otherwise."""
    return HEADER_ALIASES.get(fold(cell))


def fold(text: str) -> str:
    plain = unicodedata.normalize("NFKD", text.strip().strip("\ufeff").strip().lower())
    return " ".join("".join(ch for ch in plain if not unicodedata.combining(ch)).replace("_", " ").split())


# ─── the import ─────────────────────────────────────────────────────────────────────────

@attrs.frozen
class ImportRow:
    """A good row: its row number in the file and its normalised values; `fields` its custom fields."""

    row: int
    name: str
    number: str
    email: str
    fields: tuple[tuple[str, str], ...] = ()


@attrs.frozen
class Rejected:
    row: int
    field: str
    value: str
    message: str

    def shown(self) -> dict[str, Any]:
        return {"row": self.row, "field": self.field, "value": self.value[:200], "message": self.message}


@attrs.define
class Report:
    """What an import did. processed = created + merged + rejected (blank rows are not counted)."""

    kind: str = ""
    total: int | None = None  # rows of the file, when known before reading it (header included)
    processed: int = 0
    created: int = 0
    merged: int = 0
    rejected: int = 0
    errors: list[Rejected] = attrs.field(factory=list)  # the first MAX_REPORTED of the rejected rows

    def counts(self) -> dict[str, Any]:
        return {"processed": self.processed, "created": self.created, "merged": self.merged,
                "rejected": self.rejected, "total": self.total}


class Target(Protocol):
    """Where the good rows go: `merge` writes one batch (numbers unique within it) in one statement and
    answers (created, merged)."""

    custom_fields: bool  # the other columns are custom fields

    def merge(self, conn: psycopg.Connection[Row], rows: Sequence[ImportRow]) -> tuple[int, int]: ...


@attrs.frozen
class _Columns:
    name: int | None
    number: int
    email: int | None
    extra_info: int | None
    fields: tuple[tuple[int, str], ...]  # (index, field name) of the other named columns


def _columns(cells: list[str], *, custom_fields: bool) -> _Columns:
    found: dict[str, int] = {}
    fields: list[tuple[int, str]] = []
    seen_fields: set[str] = set()
    for index, cell in enumerate(cells):
        key = header_key(cell)
        if key is not None:
            found.setdefault(key, index)
        elif custom_fields:
            name = cell.strip().strip("\ufeff").strip()[:MAX_NAME]
            if name and name.casefold() not in seen_fields:
                seen_fields.add(name.casefold())
                fields.append((index, name))
    if "number" not in found:
        raise InvalidFile("the first row must be a header naming the columns: a number column (número, numero, "
                          "number, telefone, phone…) is required, name (nome) and email (e-mail) are optional")
    return _Columns(found.get("name"), found["number"], found.get("email"), found.get("extra_info"),
                    tuple(fields))


def _cell(cells: list[str], index: int | None) -> str:
    """A cell's text; a leading quote before = + - @ (how exports keep such text from being taken for a
    formula, api/imports.py) is dropped."""
    value = cells[index].strip() if index is not None and index < len(cells) else ""
    return value[1:] if value[:1] == "'" and value[1:2] in FORMULA_STARTS else value


class _RowError(Exception):
    def __init__(self, field: str, value: str, message: str) -> None:
        super().__init__(message)
        self.field, self.value, self.message = field, value, message


def _extra_info(raw: str) -> list[tuple[str, str]]:
    """ticketz's ExtraInfo column: a JSON list of {name, value}."""
    try:
        items = json.loads(raw)
    except (ValueError, RecursionError):
        raise _RowError("extraInfo", raw, "is not a JSON list of {name, value}") from None
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise _RowError("extraInfo", raw, "is not a JSON list of {name, value}")
    pairs = []
    for item in items:
        name, value = item.get("name"), item.get("value", "")
        if not isinstance(name, str) or not name.strip() or not isinstance(value, str | int | float | None):
            raise _RowError("extraInfo", raw, "is not a JSON list of {name, value}")
        pairs.append((name.strip(), "" if value is None else str(value)))
    return pairs


def _parse(cells: list[str], columns: _Columns, numbers: Numbers, row: int) -> ImportRow:
    raw_number = _cell(cells, columns.number)
    try:
        number = numbers.normalise(raw_number)
    except BadNumber as error:
        raise _RowError("number", raw_number, f"number {error}") from None
    name = _cell(cells, columns.name)
    if len(name) > MAX_NAME:
        raise _RowError("name", name, f"name is too long (at most {MAX_NAME} characters)")
    email = _cell(cells, columns.email)
    if len(email) > EMAIL_MAX or (email and not EMAIL.match(email)):
        raise _RowError("email", email, "email is not a valid email address")
    fields: dict[str, tuple[str, str]] = {}  # casefolded name → (name, value)
    if columns.extra_info is not None and (raw := _cell(cells, columns.extra_info)):
        for field_name, value in _extra_info(raw):
            fields[field_name.casefold()] = (field_name[:MAX_NAME], value)
    for index, field_name in columns.fields:
        value = _cell(cells, index)
        if value:
            fields[field_name.casefold()] = (field_name, value)
    for field_name, value in fields.values():
        if len(value) > MAX_CELL:
            raise _RowError(field_name, value, f"{field_name} is too long (at most {MAX_CELL} characters)")
    if len(fields) > MAX_COLUMNS:
        raise _RowError("extraInfo", "", f"has more than {MAX_COLUMNS} custom fields")
    return ImportRow(row, name, number, email.lower(), tuple(fields.values()))


def _combine(earlier: ImportRow, later: ImportRow) -> ImportRow:
    """The same number twice in a batch: the later row's values where it has them."""
    fields = {name.casefold(): (name, value) for name, value in earlier.fields}
    fields.update({name.casefold(): (name, value) for name, value in later.fields})
    return ImportRow(later.row, later.name or earlier.name, later.number, later.email or earlier.email,
                     tuple(fields.values()))


def run_import(conn: psycopg.Connection[Row], table: Table, target: Target, *, numbers: Numbers,
               progress: Callable[[Report], None] = lambda report: None,
               check_cancelled: Callable[[], None] = lambda: None, batch_size: int = BATCH,
               max_rows: int = MAX_ROWS, max_lines: int = MAX_LINES) -> Report:
    """Import `table` into `target` inside the caller's transaction (see the module's docstring)."""
    report = Report(kind=table.kind, total=table.total)
    columns: _Columns | None = None
    batch: dict[str, ImportRow] = {}

    def flush() -> None:
        check_cancelled()
        if batch:
            created, merged = target.merge(conn, list(batch.values()))
            report.created += created
            report.merged += merged
            batch.clear()
        progress(report)

    lines = 0
    for row_number, cells in table.rows:
        lines += 1
        if lines > max_lines:
            raise TooManyRows(f"the file has more than {max_lines} rows, blank ones included")
        if not any(cell.strip() for cell in cells):
            continue
        if columns is None:
            columns = _columns(cells, custom_fields=target.custom_fields)
            continue
        report.processed += 1
        if report.processed > max_rows:
            raise TooManyRows(f"the file has more than {max_rows} rows")
        try:
            parsed = _parse(cells, columns, numbers, row_number)
        except _RowError as error:
            report.rejected += 1
            if len(report.errors) < MAX_REPORTED:
                report.errors.append(Rejected(row_number, error.field, error.value, error.message))
            continue
        earlier = batch.get(parsed.number)
        if earlier is not None:
            report.merged += 1
            parsed = _combine(earlier, parsed)
        batch[parsed.number] = parsed
        if len(batch) >= batch_size:
            flush()
    if columns is None:
        raise InvalidFile("the file has no header row")
    flush()
    return report
