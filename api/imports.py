"""Import and export of spreadsheets over HTTP: one path for contacts and for contact lists.

**Import** (`run_upload`): a multipart upload (field `file`, or the name the family's frontend uses) of a
CSV or XLSX, kept by the form parser in a temporary file (in memory up to 500 KiB), read and written in
batches by storage/imports.py inside one transaction, on a worker thread: all of a file or nothing. At most
two imports run at once in the process (`Deps.import_slots`: each holds a database connection while it
runs); more wait their turn. The answer comes when the import is done (50,000 rows take a few seconds; the rows
are capped at `imports.MAX_ROWS`):

    {"processed", "created", "merged", "rejected", "total", "errors": [{row, field, value, message}],
     "errorsShown", "kind": "csv" | "xlsx"}

`errors` describes the first `imports.MAX_REPORTED` rejected rows. Meanwhile `company-{id}-import` events
tell how far it is after every batch: `{action: "progress", target, contactListId?, processed, created,
merged, rejected, total}`, then `{action: "done", …}` once committed (or `{action: "failed", message}`).

**Export** (`export_response`): a list's items or the company's contacts as CSV (UTF-8 with a BOM, so
spreadsheet programs read the accents; streamed slice by slice) or XLSX (built in a temporary file by
openpyxl's write-only workbook, then streamed). What an export writes, an import reads back unchanged.
"""

from __future__ import annotations

import csv
import io
import logging
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from functools import partial
from typing import IO, Any

import psycopg
import trio
from quart import Response, request

from api.app import Deps
from api.errors import ApiError, BadRequest
from storage import imports, settings
from storage.db import Row
from storage.errors import NotFound

log = logging.getLogger("zapgate.imports")

EXPORT_SLICE = 1_000  # rows read per statement by an export
STREAM_CHUNK = 256 * 1024  # bytes of an XLSX export sent at a time
FORMATS = {"csv": "text/csv; charset=utf-8",
           "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}


async def uploaded_file(fields: Sequence[str] = ("file",)) -> IO[bytes]:
    """The first file of the first of `fields` the multipart request has (400 naming `fields[0]` when none;
    415 for a body that is not multipart)."""
    if (request.mimetype or "") != "multipart/form-data":
        if await request.get_data(cache=True):
            raise ApiError(f"send the file as multipart/form-data in the field `{fields[0]}`",
                           code="ERR_UNSUPPORTED_MEDIA_TYPE", status=415)
        raise BadRequest(f"{fields[0]}: is required (a CSV or XLSX file in the multipart field `{fields[0]}`)",
                         code="ERR_VALIDATION", field=fields[0])
    files = await request.files
    for field in fields:
        uploads = files.getlist(field)
        if uploads:
            return uploads[0].stream
    raise BadRequest(f"{fields[0]}: is required (a CSV or XLSX file in the multipart field `{fields[0]}`)",
                     code="ERR_VALIDATION", field=fields[0])


async def region_of(deps: Deps, company_id: int) -> str:
    """The company's `phoneRegion`: where numbers written without a country code are (BR by default)."""
    return imports.region_or_default(await settings.get_setting(deps.db, company_id, "phoneRegion"))


Prepare = Callable[[psycopg.Connection[Row]], imports.Target]  # in the import's transaction, before any row
Finish = Callable[[psycopg.Connection[Row], imports.Report], None]  # in it too, after the last row


async def run_upload(deps: Deps, company_id: int, file: IO[bytes], *, prepare: Prepare,
                     finish: Finish = lambda conn, report: None, target: str,
                     event_fields: dict[str, Any] | None = None) -> imports.Report:
    """Import `file` (see the module's docstring): 400 `ERR_INVALID_FILE` for a file that cannot be
    imported, 413 `ERR_IMPORT_TOO_MANY_ROWS` beyond the cap; nothing is written then."""
    numbers = imports.Numbers(await region_of(deps, company_id))
    event = f"company-{company_id}-import"
    shown = {"target": target, **(event_fields or {})}

    def progress(report: imports.Report) -> None:
        trio.from_thread.run_sync(deps.broker.publish, company_id, event,
                                  {"action": "progress", **shown, **report.counts()})

    def work(conn: psycopg.Connection[Row], table: imports.Table) -> imports.Report:
        into = prepare(conn)
        report = imports.run_import(conn, table, into, numbers=numbers, progress=progress,
                                    check_cancelled=trio.from_thread.check_cancelled)
        finish(conn, report)
        return report

    try:
        async with deps.import_slots:
            table = await trio.to_thread.run_sync(imports.open_table, file)
            try:
                report = await deps.db.run(partial(work, table=table))
            finally:
                table.close()
    except imports.InvalidFile as error:
        _failed(deps, company_id, event, shown, str(error))
        raise BadRequest(f"the file cannot be imported: {error}", code="ERR_INVALID_FILE", field="file") from None
    except imports.TooManyRows as error:
        _failed(deps, company_id, event, shown, str(error))
        raise ApiError(f"{error}; split it into files of at most {imports.MAX_ROWS} rows",
                       code="ERR_IMPORT_TOO_MANY_ROWS", status=413, field="file") from None
    except NotFound:
        raise
    except Exception as error:
        _failed(deps, company_id, event, shown, "the import failed; nothing was imported")
        log.info("import failed", extra={"fields": {"company_id": company_id, "target": target,
                                                    "reason": str(error)[:300]}})
        raise
    deps.broker.publish(company_id, event, {"action": "done", **shown, **report.counts()})
    return report


def _failed(deps: Deps, company_id: int, event: str, shown: dict[str, Any], message: str) -> None:
    deps.broker.publish(company_id, event, {"action": "failed", **shown, "message": message})


def answer(report: imports.Report) -> dict[str, Any]:
    return {**report.counts(), "kind": report.kind, "errors": [error.shown() for error in report.errors],
            "errorsShown": len(report.errors)}


# ─── export ─────────────────────────────────────────────────────────────────────────────

def export_format(default: str = "csv") -> str:
    value = (request.args.get("format") or default).strip().lower()
    if value not in FORMATS:
        raise BadRequest("format: must be csv or xlsx", code="ERR_VALIDATION", field="format")
    return value


Slice = Callable[[int], Awaitable[list[Row]]]  # the rows after this id (keyset), EXPORT_SLICE at most


async def _rows(next_slice: Slice, cells: Callable[[Row], list[Any]]) -> AsyncIterator[list[list[Any]]]:
    after = 0
    while True:
        rows = await next_slice(after)
        if not rows:
            return
        yield [cells(row) for row in rows]
        if len(rows) < EXPORT_SLICE:
            return
        after = rows[-1]["id"]


def export_response(fmt: str, filename: str, header: list[str], next_slice: Slice,
                    cells: Callable[[Row], list[Any]], *, delimiter: str = ",") -> Response:
    """A download of `header` and the rows `next_slice` gives, as `fmt` (csv | xlsx), streamed."""
    if fmt == "csv":
        body: AsyncIterator[bytes] = _csv_body(header, _rows(next_slice, cells), delimiter)
    else:
        body = _xlsx_body(header, _rows(next_slice, cells))
    response = Response(body, mimetype=FORMATS[fmt].split(";")[0])
    if fmt == "csv":
        response.headers["Content-Type"] = FORMATS["csv"]
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}.{fmt}"'
    response.headers["Cache-Control"] = "no-store"
    return response


def _csv_line(rows: list[list[Any]], delimiter: str) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\r\n")
    writer.writerows([[_safe_cell(cell) for cell in row] for row in rows])
    return out.getvalue().encode("utf-8")


def _safe_cell(cell: Any) -> str:
    """A cell as text; one that a spreadsheet program would take for a formula (= + - @ first) gets a
    leading quote, which the import drops again (storage/imports.py)."""
    text = "" if cell is None else str(cell)
    return "'" + text if text[:1] in imports.FORMULA_STARTS and not text.lstrip("+-").isdigit() else text


async def _csv_body(header: list[str], slices: AsyncIterator[list[list[Any]]], delimiter: str) -> AsyncIterator[bytes]:
    yield b"\xef\xbb\xbf" + _csv_line([header], delimiter)
    async for rows in slices:
        yield _csv_line(rows, delimiter)


async def _xlsx_body(header: list[str], slices: AsyncIterator[list[list[Any]]]) -> AsyncIterator[bytes]:
    import openpyxl  # only when a workbook is asked for

    workbook = openpyxl.Workbook(write_only=True)  # rows go to a temporary file as they come
    sheet = workbook.create_sheet("Contacts")
    sheet.append(header)
    async for rows in slices:
        await trio.to_thread.run_sync(_append_all, sheet, rows)
    with tempfile.TemporaryFile() as out:
        await trio.to_thread.run_sync(workbook.save, out)
        await trio.to_thread.run_sync(out.seek, 0)
        while chunk := await trio.to_thread.run_sync(out.read, STREAM_CHUNK):
            yield chunk


def _append_all(sheet: Any, rows: list[list[Any]]) -> None:
    for row in rows:
        sheet.append([_safe_cell(cell) for cell in row])
