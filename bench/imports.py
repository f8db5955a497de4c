"""Spreadsheet imports (storage/imports.py) of 50,000 rows, CSV and XLSX: time and peak memory, run directly.

The files are generated (`sheet_rows`: every 25th number bad, every other 10th row a duplicate of a row
before it, numbers written as international, national or bare digits, mixed headers; in the XLSX half the
numbers are numeric cells), written to temporary files, and imported into a contact list of a fresh
database by the engine the API runs (`open_table` + `run_import` in one transaction, batches of 1,000),
each in a fresh process (spawned) whose resident memory is sampled every 10 ms while it runs.

Figures, per format: `seconds`, `rows_per_s`, `peak_rss_growth_mib` (the largest resident memory seen while
the import ran, less the memory before it), and the counts it reported. The reference: the file's size, and
the same import of a tenth of the rows (`small`): memory that does not grow with the rows is bounded.
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import openpyxl
import psutil
import psycopg
import trio
from psycopg.rows import dict_row

from bench.common import COMPANY_ID, Check, Progress, environment, finish, fresh_database, parser, rss_bytes, run
from storage import contact_lists, imports

NAME = "bench.imports"
SIZES = {"tiny": 2_000, "quick": 50_000, "full": 100_000}
TARGETS = {"peak_rss_growth_mib": 64.0, "rows_per_s": 5_000.0}


def sheet_rows(rows: int) -> tuple[list[list[Any]], dict[str, int]]:
    """Data rows (name, number, email, note) and the counts they must give: every 25th row's number is bad,
    every other 10th repeats the number of the row 3 before it (merged), the rest are new. Numbers are
    written in several ways (international, national, digits only)."""
    data: list[list[Any]] = []
    numbers: list[str] = []
    for i in range(rows):
        digits = f"55119{i:08d}"
        if i % 25 == 0:
            number: Any = "12-34" if i % 50 else "abc"
            digits = ""
        elif i % 10 == 0:
            digits = numbers[i - 3]
            number = digits
        elif i % 3 == 0:
            number = f"+55 (11) 9{digits[5:9]}-{digits[9:]}"
        elif i % 3 == 1:
            number = f"(11) 9{digits[5:9]}-{digits[9:]}"  # national: the company's region (BR)
        else:
            number = digits
        numbers.append(digits)
        data.append([f"Pessoa {i}", number, f"p{i}@x.test" if i % 2 else "", "nota"])
    rejected = sum(1 for i in range(rows) if i % 25 == 0)
    merged = sum(1 for i in range(rows) if i % 10 == 0 and i % 25 != 0)
    return data, {"created": rows - rejected - merged, "merged": merged, "rejected": rejected, "processed": rows}


def as_csv(header: list[str], data: list[list[Any]]) -> bytes:
    lines = [";".join(header)] + [";".join(str(cell) for cell in row) for row in data]
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def as_xlsx(header: list[str], data: list[list[Any]]) -> bytes:
    workbook = openpyxl.Workbook(write_only=True)
    sheet = workbook.create_sheet("Contatos")
    sheet.append(header)
    for index, row in enumerate(data):
        number = row[1]
        if isinstance(number, str) and number.isdigit() and index % 2:
            row = [row[0], int(number), *row[2:]]  # a number typed into a numeric cell
        sheet.append(row)
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


CSV_HEADER = ["Nome", "Telefone", "E-MAIL", "Observação"]
XLSX_HEADER = ["NAME", "Número", "e-mail", "Observação"]


def import_file(url: str, path: Path, list_name: str) -> imports.Report:
    """The API's import of one file into a new list of the company (open_table + run_import, one transaction)."""
    with psycopg.connect(url, row_factory=dict_row) as conn:
        list_id = conn.execute("INSERT INTO contact_lists (company_id, name) VALUES (%s, %s) RETURNING id",
                               (COMPANY_ID, list_name)).fetchone()["id"]
        conn.commit()
        with path.open("rb") as file:
            table = imports.open_table(file)
            try:
                with conn.transaction():
                    contact_lists.lock_list(conn, COMPANY_ID, list_id)
                    return imports.run_import(conn, table, contact_lists.ItemsTarget(COMPANY_ID, list_id),
                                              numbers=imports.Numbers("BR"))
            finally:
                table.close()


def measured(url: str, path: Path, list_name: str) -> dict[str, Any]:
    """Import while a thread samples the resident memory: seconds, rows/s, peak growth, the counts."""
    process = psutil.Process()
    baseline = rss_bytes()
    peak = [baseline]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            done.wait(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    try:
        report = import_file(url, path, list_name)
    finally:
        elapsed = time.perf_counter() - started
        done.set()
        sampler.join()
    peak[0] = max(peak[0], process.memory_info().rss)
    return {"seconds": round(elapsed, 2), "rows_per_s": round(report.processed / elapsed),
            "peak_rss_growth_mib": round((peak[0] - baseline) / 2**20, 1), "file_mib": round(path.stat().st_size
                                                                                           / 2**20, 2),
            **{key: value for key, value in report.counts().items() if key != "total"}}


def in_fresh_process(url: str, path: Path, list_name: str) -> dict[str, Any]:
    """`measured` in a new interpreter: its memory figure owes nothing to an earlier import's heap."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(measured, (url, path, list_name))


def seed(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO companies (id, name) OVERRIDING SYSTEM VALUE VALUES (%s, 'Bench')", (COMPANY_ID,))


async def main(args: argparse.Namespace) -> None:
    progress = Progress(NAME)
    rows = SIZES[args.mode]
    figures: dict[str, Any] = {"rows": rows}
    with fresh_database(progress) as database, tempfile.TemporaryDirectory() as directory:
        await trio.to_thread.run_sync(seed, database.url)
        for size, label in ((rows // 10, "small"), (rows, "")):
            data, expected = sheet_rows(size)
            files = {"csv": Path(directory) / f"{size}.csv", "xlsx": Path(directory) / f"{size}.xlsx"}
            files["csv"].write_bytes(as_csv(CSV_HEADER, data))
            files["xlsx"].write_bytes(as_xlsx(XLSX_HEADER, data))
            del data
            for fmt, path in files.items():
                name = f"{label}_{fmt}" if label else fmt
                figures[name] = await trio.to_thread.run_sync(in_fresh_process, database.url, path, f"{name} {size}")
                got = {key: figures[name][key] for key in expected}
                if got != expected:
                    raise SystemExit(f"{name}: counts {got} != expected {expected}")
                progress(f"{name}: {figures[name]}")
        env = environment(database)
    checks = []
    for fmt in ("csv", "xlsx"):
        small = figures[f"small_{fmt}"]
        for figure, target in TARGETS.items():
            op = "<=" if figure == "peak_rss_growth_mib" else ">="
            unit = "MiB" if figure == "peak_rss_growth_mib" else "rows/s"
            checks.append(Check(f"{fmt}.{figure}", figures[fmt][figure], target, op, unit,
                                f"{rows // 10:,} rows: {small[figure]:,} {unit}; file {figures[fmt]['file_mib']} MiB"))
    notes = [f"{rows:,} rows per file; the engine alone (no HTTP): open_table + run_import into a contact list, "
             "one transaction, batches of 1,000; each in a fresh process, its memory sampled every 10 ms"]
    finish(progress, args, figures, checks, notes, env)


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    return parser(__doc__.splitlines()[0]).parse_args(argv)


if __name__ == "__main__":
    run(main, arguments())
