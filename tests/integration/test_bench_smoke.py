"""The benchmarks still run: each one, at its tiny size, as `make bench` runs it (its own process, --json).

No timing is asserted: only that the last line of stdout is one JSON object carrying the benchmark's
figures, each a positive number (bench/common.py describes the conventions). The benchmarks create
their own databases on the tests' PostgreSQL server (DATABASE_URL).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 240

FIGURES = {
    "ingest": ["messages_per_s", "p50_ms", "p99_ms", "raw_insert_per_s", "ratio"],
    "api": [f"{endpoint}.{figure}" for endpoint in ("tickets_open", "tickets_search", "messages")
            for figure in ("rps", "p50_ms", "p99_ms", "raw_query_p50_ms")],
    "memory": ["kib_per_ticket_actor", "kib_per_session"],
    "fanout": ["deliveries_per_s", "p50_ms", "p99_ms"],
    "tags": [f"{case}.p50_ms" for case in ("unfiltered", "rare", "common", "both", "contact", "open_common")],
    "timers": ["timers_per_s", "lateness_p50_ms", "lateness_p99_ms", "raw_update_per_s", "sql_ceiling_per_s"],
    "imports": [f"{fmt}.{figure}" for fmt in ("csv", "xlsx") for figure in ("rows_per_s", "seconds", "created")],
    "dashboard": [f"{route}.{figure}" for route in ("tickets", "users", "counters_tickets", "counters_users",
                                                     "raw_tickets", "raw_users") for figure in ("p50_ms", "p99_ms")]
    + ["raw_tickets.ratio", "raw_users.ratio", "keeping.on_events_per_s", "keeping.off_events_per_s"],
    "campaign": ["sends_per_s", "cpu_ms_per_1000", "ten.sends_per_s", "ten.cpu_ms_per_1000", "paced.on_sends_per_s",
                 "paced.off_sends_per_s", "pacing_cost_ratio"],
    "webhooks": ["messages_per_s_with", "messages_per_s_without", "ratio", "intake_sql_per_s_no_triggers",
                 "intake_sql_per_s_without", "intake_sql_per_s_with", "sql_ratio_with"],
}


def figure(document: dict[str, Any], dotted: str) -> Any:
    value: Any = document
    for part in dotted.split("."):
        assert isinstance(value, dict) and part in value, f"no figure {dotted!r} in {sorted(document)}"
        value = value[part]
    return value


@pytest.mark.parametrize("name", sorted(FIGURES))
async def test_the_benchmark_runs_and_reports_its_figures(name: str, pg_server_url: str) -> None:
    if name in ("fanout", "memory") and shutil.which("node") is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("node must be on PATH when CI=true")
        pytest.skip(f"bench.{name} needs node for the stock socket.io-client")
    env = {**os.environ, "DATABASE_URL": pg_server_url}
    with trio.fail_after(TIMEOUT):
        done = await trio.run_process([sys.executable, "-m", f"bench.{name}", "--tiny", "--json"], cwd=ROOT, env=env,
                                      capture_stdout=True, capture_stderr=True, check=False)
    stderr = done.stderr.decode(errors="replace")
    assert done.returncode == 0, stderr[-4000:]
    lines = done.stdout.decode().strip().splitlines()
    assert lines, "no output"
    document = json.loads(lines[-1])
    assert document["benchmark"] == f"bench.{name}" and document["mode"] == "tiny"
    for dotted in FIGURES[name]:
        value = figure(document, dotted)
        assert isinstance(value, int | float) and not isinstance(value, bool), (dotted, value)
        assert math.isfinite(value) and value > 0, (dotted, value)
    assert {check["figure"] for check in document["checks"]} <= {*FIGURES[name], "kib_per_socket", *(
        f"{endpoint}.p99_ms" for endpoint in ("tickets_open", "tickets_search", "messages")), *(
        f"{fmt}.peak_rss_growth_mib" for fmt in ("csv", "xlsx")),  # memory: a number, maybe 0 at the tiny size
        "same_figures", "keeping.rollup_matches_trigger"}  # dashboard: yes/no checks
    if name in ("fanout", "memory"):  # memory growth over a handful of sockets is noise: a number, maybe <= 0
        assert isinstance(document["kib_per_socket"], int | float)
    if name == "fanout":
        assert document["received"] == document["expected"] > 0
    if name == "dashboard":  # the counters answer what the raw events answer; the rollup what the trigger counted
        assert document["same_figures"] is True and document["keeping"]["rollup_matches_trigger"] is True
    if name == "timers":  # every timer fired, none twice
        assert document["not_done"] == 0 and document["fired_twice"] == 0
    assert "[bench." in stderr  # progress is shown while it runs
