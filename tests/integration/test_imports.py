"""The import acceptance (issue 13): a 50,000-row XLSX and CSV with bad numbers, duplicates and mixed headers
give the counts of created, merged and rejected rows they should, in bounded memory (the growth of this
process's resident memory while each import runs is measured and printed); an export imports back as the
same list.

The files are bench/imports.py's (`sheet_rows`: the counts they must give). `ZAPGATE_IMPORT_ROWS` changes the
size (50,000 by default); `python -m bench.imports` measures the engine alone, each import in a fresh
process, for the README's figures.
"""

from __future__ import annotations

import os

import httpx
import psutil
import trio

from bench.imports import CSV_HEADER, XLSX_HEADER, as_csv, as_xlsx, sheet_rows
from tests.integration.conftest import Api, Server, auth
from tests.integration.test_contact_lists import create_list, items_of

ROWS = int(os.environ.get("ZAPGATE_IMPORT_ROWS", "50000"))
TIMEOUT = 120
MEMORY_BOUND = 96 * 2**20  # bytes the process may grow by while one import runs


async def upload_measured(api: Api, token: str, list_id: int, content: bytes, filename: str) -> tuple[httpx.Response,
                                                                                                      int]:
    """Upload while sampling this process's resident memory; (the answer, its peak growth in bytes)."""
    process = psutil.Process()
    baseline = process.memory_info().rss
    peak = baseline
    response: httpx.Response | None = None

    async def sample(cancel: trio.CancelScope) -> None:
        nonlocal peak
        with cancel:
            while True:
                peak = max(peak, process.memory_info().rss)
                await trio.sleep(0.02)

    async with trio.open_nursery() as nursery:
        sampler = trio.CancelScope()
        nursery.start_soon(sample, sampler)
        response = await api.client.post(f"/contact-lists/{list_id}/upload", files={"file": (filename, content)},
                                         headers=auth(token), timeout=TIMEOUT)
        peak = max(peak, process.memory_info().rss)
        sampler.cancel()
    assert response is not None
    return response, peak - baseline


async def test_import_of_a_large_csv_and_xlsx_and_export_round_trip(api: Api, server: Server) -> None:
    token = await api.admin_token()
    data, expected = sheet_rows(ROWS)
    csv_file = as_csv(CSV_HEADER, data)
    xlsx_file = as_xlsx(XLSX_HEADER, data)
    del data
    with trio.fail_after(TIMEOUT * 2):
        from_csv = await create_list(api, token, "Da planilha CSV")
        from_xlsx = await create_list(api, token, "Da planilha XLSX")
        figures = {}
        for target, content, name in ((from_csv, csv_file, "contatos.csv"), (from_xlsx, xlsx_file, "contatos.xlsx")):
            response, growth = await upload_measured(api, token, target["id"], content, name)
            assert response.status_code == 200, response.text
            body = response.json()
            assert {key: body[key] for key in expected} == expected, body
            assert body["errorsShown"] == min(expected["rejected"], 1_000)
            assert {e["value"] for e in body["errors"]} == {"12-34", "abc"}
            figures[name] = growth
            assert growth < MEMORY_BOUND, f"{name}: the process grew by {growth / 2**20:.1f} MiB"
        print(f"\n{ROWS} rows: peak RSS growth while importing: "
              + ", ".join(f"{name} {growth / 2**20:.1f} MiB" for name, growth in figures.items())
              + f" (files: CSV {len(csv_file) / 2**20:.1f} MiB, XLSX {len(xlsx_file) / 2**20:.1f} MiB)")
        csv_items = await trio.to_thread.run_sync(items_of, server, from_csv["id"])
        assert len(csv_items) == expected["created"]
        assert await trio.to_thread.run_sync(items_of, server, from_xlsx["id"]) == csv_items
        # export → import: the same list
        exported = await api.client.get(f"/contact-lists/{from_xlsx['id']}/export", params={"format": "xlsx"},
                                        headers=auth(token), timeout=TIMEOUT)
        assert exported.status_code == 200
        copy = await create_list(api, token, "Cópia")
        again = await api.client.post(f"/contact-lists/{copy['id']}/upload",
                                      files={"file": ("copia.xlsx", exported.content)}, headers=auth(token),
                                      timeout=TIMEOUT)
        assert (again.json()["created"], again.json()["merged"], again.json()["rejected"]) == (
            expected["created"], 0, 0)
        assert await trio.to_thread.run_sync(items_of, server, copy["id"]) == csv_items
