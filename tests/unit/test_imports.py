"""The import engine without a database (storage/imports.py): reading CSV and XLSX from memory, headers,
numbers, the per-row report, merging within the file, batches, the caps."""

from __future__ import annotations

import codecs
import io
import zipfile
from collections.abc import Sequence
from typing import Any

import attrs
import openpyxl
import pytest

from storage import imports
from storage.imports import ImportRow, InvalidFile, Numbers, TooManyRows, open_table, run_import


@attrs.define
class FakeTarget:
    """A target that keeps what it is given: numbers seen before count as merged."""

    custom_fields: bool = True
    stored: dict[str, ImportRow] = attrs.field(factory=dict)
    batches: list[int] = attrs.field(factory=list)

    def merge(self, conn: Any, rows: Sequence[ImportRow]) -> tuple[int, int]:
        assert len({row.number for row in rows}) == len(rows), "numbers must be unique within a batch"
        self.batches.append(len(rows))
        created = sum(1 for row in rows if row.number not in self.stored)
        for row in rows:
            self.stored[row.number] = row
        return created, len(rows) - created


def table_rows(content: bytes) -> list[tuple[int, list[str]]]:
    table = open_table(io.BytesIO(content))
    try:
        return list(table.rows)
    finally:
        table.close()


def run(content: bytes, target: FakeTarget | None = None, **options: Any) -> tuple[imports.Report, FakeTarget]:
    target = target or FakeTarget()
    table = open_table(io.BytesIO(content))
    try:
        return run_import(None, table, target, numbers=Numbers("BR"), **options), target  # type: ignore[arg-type]
    finally:
        table.close()


def workbook(rows: list[list[Any]]) -> bytes:
    book = openpyxl.Workbook()
    for row in rows:
        book.active.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


# ─── numbers ────────────────────────────────────────────────────────────────────────────

@pytest.mark.parametrize(("raw", "expected"), [
    ("5511988887777", "5511988887777"), ("+55 (11) 98888-7777", "5511988887777"), ("(11) 98888-7777", "5511988887777"),
    ("11988887777", "5511988887777"), ("+1 415 555 2671", "14155552671"), ("14155552671", "14155552671"),
    ("351 912 345 678", "351912345678"), ("55.11.98888.7777", "5511988887777"),
])
def test_numbers_become_e164_digits(raw: str, expected: str) -> None:
    assert Numbers("BR").normalise(raw) == expected


@pytest.mark.parametrize("raw", ["", "   ", "abc", "123", "12-34", "5511988887777999999", "551188887777", "x" * 100])
def test_bad_numbers_say_why(raw: str) -> None:
    with pytest.raises(imports.BadNumber) as error:
        Numbers("BR").normalise(raw)
    assert str(error.value)


def test_the_region_reads_national_numbers() -> None:
    assert Numbers("PT").normalise("912 345 678") == "351912345678"
    assert Numbers("US").normalise("(415) 555-2671") == "14155552671"
    assert imports.region_or_default("pt") == "PT" and imports.region_or_default("XX") == "BR"


# ─── reading ────────────────────────────────────────────────────────────────────────────

def test_csv_delimiters_and_encodings() -> None:
    text = "nome;número\nJoão;5511988887777\n"
    for data in (text.encode("utf-8"), codecs.BOM_UTF8 + text.encode("utf-8"), text.encode("cp1252"),
                 text.encode("utf-16")):
        assert table_rows(data) == [(1, ["nome", "número"]), (2, ["João", "5511988887777"])], data[:8]
    assert table_rows(b"a\tb\n1\t2\n") == [(1, ["a", "b"]), (2, ["1", "2"])]
    assert table_rows(b"a,b;c\n") == [(1, ["a", "b;c"])]  # the commas are the delimiter here
    # \x81 is not Windows-1252: Latin-1 then
    assert table_rows(b"name,number\n\x81,5511988887777\n")[1] == (2, ["\x81", "5511988887777"])
    # UTF-8 for 2 MiB, then one byte that is not: the whole file is read as Windows-1252
    big = b"name,number\n" + b"\xc3\xa9,5511988887777\n" * 120_000 + b"\xe9,5511988887778\n"
    rows = table_rows(big)
    assert rows[1] == (2, ["Ã©", "5511988887777"]) and rows[-1] == (120_002, ["é", "5511988887778"])


def test_csv_row_numbers_follow_the_lines() -> None:
    rows = table_rows(b'name,number\n"two\nlines",1\n\nx,2\n')
    assert rows == [(1, ["name", "number"]), (3, ["two\nlines", "1"]), (4, []), (5, ["x", "2"])]


@pytest.mark.parametrize(("content", "message"), [
    (b"", "empty"), (b"\n\n  \n", "no header"), (b"name\x00,number\n", "binary"),
    (b"\x89PNG\r\n\x1a\n....", "neither"), (b"\xd0\xcf\x11\xe0" + bytes(20), "xls"),
    (b"PK\x03\x04garbage", "XLSX"), (b"\xff\xfe" + b"\x00\xd8", "UTF-16"),
])
def test_what_is_not_a_sheet_is_refused(content: bytes, message: str) -> None:
    with pytest.raises(InvalidFile, match=message):
        table_rows(content)


def test_xlsx_cells_become_text() -> None:
    content = workbook([["Nome", "Número"], ["Ana", 5511988887777], [None, None], ["Bia", 5511988887778.0],
                        ["Cid", True]])
    assert table_rows(content) == [(1, ["Nome", "Número"]), (2, ["Ana", "5511988887777"]), (3, ["", ""]),
                                   (4, ["Bia", "5511988887778"]), (5, ["Cid", "true"])]


def test_an_xlsx_that_unpacks_too_large_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("xl/worksheets/sheet1.xml", b"<" + b" " * 3_000_000)
    monkeypatch.setattr(imports, "XLSX_MAX_UNPACKED", 1_000_000)
    with pytest.raises(InvalidFile, match="unpacks"):
        table_rows(out.getvalue())


# ─── the import ─────────────────────────────────────────────────────────────────────────

def test_headers_in_any_case_and_accents_and_the_report() -> None:
    content = ("E-MAIL,NÚMERO,Nome Completo,Plano,Cidade\n"
               "a@x.test,5511988880001,Ana,Ouro,\n"
               ",12,Bad,,\n"
               "bad-email,5511988880002,Bia,,\n"
               f",5511988880003,{'x' * 256},,\n"
               ",(11) 98888-0001,Ana Maria,,Recife\n").encode()
    report, target = run(content)
    assert (report.processed, report.created, report.merged, report.rejected) == (5, 1, 1, 3)
    assert [(e.row, e.field, e.value) for e in report.errors] == [
        (3, "number", "12"), (4, "email", "bad-email"), (5, "name", "x" * 256)]
    ana = target.stored["5511988880001"]
    assert (ana.name, ana.email, ana.row) == ("Ana Maria", "a@x.test", 6)  # merged: later values win, kept ones stay
    assert dict(ana.fields) == {"Plano": "Ouro", "Cidade": "Recife"}


def test_extra_info_json_and_formula_quotes() -> None:
    content = (b'number,name,ExtraInfo\n'
               b'5511988880001,\'=SUM(1),"[{""name"": ""CPF"", ""value"": 123}]"\n'
               b'5511988880002,x,"{""not"": ""a list""}"\n')
    report, target = run(content)
    assert report.rejected == 1 and report.errors[0].field == "extraInfo"
    row = target.stored["5511988880001"]
    assert row.name == "=SUM(1)" and row.fields == (("CPF", "123"),)
    lists, _ = run(content, FakeTarget(custom_fields=False))
    assert lists.rejected == 1  # ExtraInfo is read (and checked) either way; other columns only for contacts


def test_batches_hold_unique_numbers_and_duplicates_across_batches_merge() -> None:
    across = ["number"] + [f"55119{i % 1500:08d}" for i in range(4_000)]  # a number comes back 1,500 rows later
    report, target = run(("\n".join(across) + "\n").encode(), batch_size=1_000)
    assert (report.created, report.merged, report.rejected) == (1_500, 2_500, 0)
    assert target.batches == [1_000, 1_000, 1_000, 1_000] and len(target.stored) == 1_500
    within = ["number"] + [f"55119{i % 600:08d}" for i in range(4_000)]  # ... 600 rows later: within a batch
    report, target = run(("\n".join(within) + "\n").encode(), batch_size=1_000)
    assert (report.created, report.merged, report.rejected) == (600, 3_400, 0)
    assert target.batches == [600] and target.stored["5511900000000"].row == 3_602  # the last one's values


def test_progress_after_each_batch_and_cancellation_between_them() -> None:
    lines = "number\n" + "".join(f"55119{i:08d}\n" for i in range(2_500))
    seen: list[int] = []
    report, _ = run(lines.encode(), batch_size=1_000, progress=lambda r: seen.append(r.processed))
    assert seen == [1_000, 2_000, 2_500] and report.created == 2_500

    class Stop(Exception):
        pass

    calls = []

    def check() -> None:
        calls.append(1)
        if len(calls) == 2:
            raise Stop

    target = FakeTarget()
    with pytest.raises(Stop):
        run(lines.encode(), target, batch_size=1_000, check_cancelled=check)
    assert target.batches == [1_000]  # stopped before the second batch was written


def test_caps() -> None:
    with pytest.raises(TooManyRows):
        run(("number\n" + "x\n" * 11).encode(), max_rows=10)
    report, _ = run(("number\n" + "x\n" * 2_000).encode())
    assert report.rejected == 2_000 and len(report.errors) == imports.MAX_REPORTED == 1_000
    with pytest.raises(InvalidFile, match="number column"):
        run(b"name,email\nAna,a@x.test\n")
    with pytest.raises(TooManyRows, match="blank"):
        run(("number\n5511988880001\n" + "\n" * 30).encode(), max_lines=20)
    with pytest.raises(InvalidFile, match="longer than"):
        run(b"number\n" + b"," * (imports.MAX_LINE + 10) + b"\n")
    wide = ",".join(["number"] + [f"c{i}" for i in range(150)]) + "\n" + ",".join(["5511988880001"] + ["v"] * 150)
    report, target = run(wide.encode())
    assert report.created == 1 and len(target.stored["5511988880001"].fields) == imports.MAX_COLUMNS - 1
