"""Campaigns (issue 14): sends per second of one campaign and of 10 at once, CPU per 1,000 sends, and the cost
of pacing's bookkeeping.

zapgate runs in-process (bench.common.open_app) over a fresh database with paired sandbox connections. A
campaign is written by SQL (a contact list of N numbers, two variants with a variable) as the API writes it,
and the supervisor is nudged as the API does. A phase's time runs from the nudge until every campaign is
FINALIZADA — every send claimed, written to the outbox, handed to its conversation's actor, accepted by the
sandbox, and the shippings settled. Phases:

- **one**: one campaign, pacing off, on one connection — `sends_per_s` (target ≥ 500) and `cpu_ms_per_1000`
  (this process's CPU: zapgate's Python, not PostgreSQL's), to FINALIZADA; `with_receipts`: on until every
  message's read receipt (delivered after 0.5 s, read 1.5 s later) is recorded, its CPU included;
- **ten**: 10 campaigns at once on 10 connections, pacing off — `ten.sends_per_s` (all sends together);
- **paced**: one campaign with pacing on but zero waits (interval 0, a daily cap never reached: the cap's
  and the hours' reads, one claim per transaction) against pacing off — `pacing_cost_ratio` is the paced
  phase's time per send over the unpaced one's.

The sandbox outbox counts what WhatsApp took: the benchmark checks every number got one message.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

from bench.common import (
    COMPANY_ID,
    App,
    Check,
    Progress,
    app_logging,
    environment,
    finish,
    fresh_database,
    open_app,
    paired_sandboxes,
    parser,
    run,
    start_sessions,
)

NAME = "bench.campaign"
SIZES = {"tiny": (200, 30, 100), "quick": (3_000, 300, 1_000), "full": (10_000, 1_000, 3_000)}
TARGET_PER_S = 500.0


async def _sql(app: App, query: str, params: Any = None) -> list[Any]:
    def work(conn: Any) -> list[Any]:
        cursor = conn.execute(query, params)
        return cursor.fetchall() if cursor.description else []
    return await app.db.run(work)


async def _settings(app: App, **values: Any) -> None:
    await _sql(app, "DELETE FROM campaign_settings WHERE company_id = %s", (COMPANY_ID,))
    for key, value in values.items():
        await _sql(app, "INSERT INTO campaign_settings (company_id, key, value) VALUES (%s, %s, %s)",
                   (COMPANY_ID, key, json.dumps(value)))


async def _campaign(app: App, whatsapp_id: int, first: int, count: int, name: str) -> int:
    [row] = await _sql(app, "INSERT INTO contact_lists (company_id, name) VALUES (%s, %s) RETURNING id",
                       (COMPANY_ID, name))
    numbers = [f"55218{first + index:08d}" for index in range(count)]
    await _sql(app, "INSERT INTO contact_list_items (company_id, contact_list_id, name, number) "
                    "SELECT %s, %s, 'Cliente ' || n, n FROM unnest(%s::text[]) AS n", (COMPANY_ID, row["id"], numbers))
    [campaign] = await _sql(app, "INSERT INTO campaigns (company_id, name, status, whatsapp_id, contact_list_id, "
                                 "message1, message2) VALUES (%s, %s, 'EM_ANDAMENTO', %s, %s, 'Oi {{firstname}}!', "
                                 "'Olá {{name}}, novidades') RETURNING id",
                            (COMPANY_ID, name, whatsapp_id, row["id"]))
    return int(campaign["id"])


async def _run(app: App, campaigns: list[int]) -> tuple[float, float, float, float]:
    """Nudge them, wait until all are FINALIZADA, then until WhatsApp's read receipts for all their messages
    are recorded: (seconds, CPU seconds of this process) to each."""
    assert app.deps.campaigns is not None
    cpu, started = time.process_time(), time.perf_counter()
    for campaign_id in campaigns:
        app.deps.campaigns.nudge(COMPANY_ID, campaign_id)
    while True:
        rows = await _sql(app, "SELECT count(*) AS n FROM campaigns WHERE id = ANY(%s) AND status <> 'FINALIZADA'",
                          (campaigns,))
        if rows[0]["n"] == 0:
            break
        await trio.sleep(0.02)
    finished = time.perf_counter() - started, time.process_time() - cpu
    while True:  # the sandbox sends delivered after 0.5 s and read after 1.5 s more
        rows = await _sql(app, "SELECT count(*) AS n FROM campaign_shippings s JOIN messages m ON m.id = s.message_id "
                               "WHERE s.campaign_id = ANY(%s) AND m.ack < 4", (campaigns,))
        if rows[0]["n"] == 0:
            return (*finished, time.perf_counter() - started, time.process_time() - cpu)
        await trio.sleep(0.05)


async def _received(app: App, whatsapp_id: int) -> int:
    assert app.deps.sandbox is not None
    return len({entry["to"] for entry in await app.deps.sandbox.outbox(whatsapp_id) if entry["ack"] != "failed"})


async def main(args: argparse.Namespace) -> None:
    progress = Progress(NAME)
    one_size, per_campaign, paced_size = SIZES[args.mode]
    figures: dict[str, Any] = {}
    notes: list[str] = []
    with fresh_database(progress) as database, tempfile.TemporaryDirectory() as tmp:
        with app_logging(Path(tmp) / "zapgate.log", level="WARNING"):
            async with open_app(database.url, Path(tmp) / "data") as app:
                connections = await paired_sandboxes(app, 12)
                await start_sessions(app, connections)
                progress(f"{len(connections)} sandbox connections connected")

                await _settings(app, pacing=False)
                campaign = await _campaign(app, connections[0], 0, one_size, "one")
                seconds, cpu, read_seconds, read_cpu = await _run(app, [campaign])
                got = await _received(app, connections[0])
                figures["sends"] = one_size
                figures["sends_per_s"] = round(one_size / seconds, 1)
                figures["cpu_ms_per_1000"] = round(cpu / one_size * 1000 * 1000, 1)
                figures["with_receipts"] = {"seconds": round(read_seconds, 2),
                                            "cpu_ms_per_1000": round(read_cpu / one_size * 1000 * 1000, 1)}
                progress(f"one campaign: {one_size} sends in {seconds:.2f}s ({got} numbers reached)")
                if got != one_size:
                    raise SystemExit(f"one campaign: {got} numbers reached, expected {one_size}")

                ten = [await _campaign(app, connections[1 + index], 1_000_000 * (index + 1), per_campaign,
                                       f"ten {index}") for index in range(10)]
                seconds, cpu, read_seconds, read_cpu = await _run(app, ten)
                total = 10 * per_campaign
                reached = sum([await _received(app, connections[1 + index]) for index in range(10)])
                figures["ten"] = {"sends": total, "sends_per_s": round(total / seconds, 1),
                                  "cpu_ms_per_1000": round(cpu / total * 1000 * 1000, 1),
                                  "with_receipts": {"seconds": round(read_seconds, 2),
                                                    "cpu_ms_per_1000": round(read_cpu / total * 1000 * 1000, 1)}}
                progress(f"ten campaigns: {total} sends in {seconds:.2f}s ({reached} numbers reached)")
                if reached != total:
                    raise SystemExit(f"ten campaigns: {reached} numbers reached, expected {total}")

                unpaced = await _campaign(app, connections[11], 50_000_000, paced_size, "unpaced")
                off_seconds, *_ = await _run(app, [unpaced])
                await _settings(app, pacing=True, messageInterval=0, longerIntervalAfter=0,
                                dailyLimit=10_000_000, businessHoursOnly=False)
                paced = await _campaign(app, connections[11], 60_000_000, paced_size, "paced")
                on_seconds, *_ = await _run(app, [paced])
                figures["paced"] = {"sends": paced_size, "off_sends_per_s": round(paced_size / off_seconds, 1),
                                    "on_sends_per_s": round(paced_size / on_seconds, 1)}
                figures["pacing_cost_ratio"] = round(on_seconds / off_seconds, 2)
                progress(f"pacing on with zero waits: {on_seconds:.2f}s against {off_seconds:.2f}s off")
    notes.append("CPU is this process's (zapgate's Python, every actor); PostgreSQL's is not counted")
    notes.append("sends/s runs to FINALIZADA; with_receipts runs on until every message's read receipt is recorded "
                 "(the sandbox acks 0.5 s and 2 s after a send), CPU included")
    notes.append("pacing on claims one shipping per transaction (off: 50), which is most of its cost")
    checks = [Check("sends_per_s", figures["sends_per_s"], TARGET_PER_S, ">=", "/s",
                    reference=f"ten campaigns together: {figures['ten']['sends_per_s']}/s")]
    finish(progress, args, figures, checks, notes, environment(database))


if __name__ == "__main__":
    run(main, parser("Campaign sends per second, CPU per 1,000 sends, the cost of pacing").parse_args())
