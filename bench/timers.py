"""Durable timers (issue 12): timers fired per second, and their lateness, with 100,000 pending.

The Scheduler (actors/scheduler.py) runs in-process over a fresh database, with one handler that does
what an owner does at the least: completes its batch in one statement (`timers.complete_many`, its own
transaction). Two phases, each over N timers (full size: 100,000) loaded with SQL:

- **backlog**: all N are already due when the scheduler starts (as after a downtime); `timers_per_s` is
  N over the time until the last one's completion committed;
- **steady**: N are due spread evenly over the next N / 2,000 seconds (the target rate), all pending when
  the scheduler starts; `lateness` is each timer's completion commit minus its `due_at` (p50, p99, max).

References, the same N rows in the same run, without the scheduler: `raw_update_per_s` — psycopg marking
them done by id, one `UPDATE … WHERE id = ANY(…)` per batch (one transaction each); `sql_ceiling_per_s` —
the scheduler's own two statements per batch (claim with SKIP LOCKED, then complete), back to back on
one connection.
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
import trio

from actors.scheduler import BATCH, Scheduler
from bench.common import (
    COMPANY_ID,
    Check,
    Progress,
    app_logging,
    environment,
    finish,
    fresh_database,
    ms,
    parser,
    percentile,
    run,
)
from gateway.bootstrap import tune_interpreter
from storage import timers
from storage.db import Database, open_pool
from storage.timers import Timer

NAME = "bench.timers"
SIZES = {"tiny": 2_000, "quick": 20_000, "full": 100_000}  # timers per phase
RATE = 2_000  # timers due per second in the steady phase (the target throughput)
LEAD = 1.0  # seconds between the steady phase's start and its first due timer
TARGET_PER_S = 2_000.0
TARGET_P99_MS = 1_000.0
KIND = "bench"

LOAD = """
INSERT INTO timers (company_id, kind, key, due_at, payload)
SELECT %(company)s, %(kind)s, 'timer:' || g, %(start)s::timestamptz + make_interval(secs => (g - 1) * %(step)s),
       jsonb_build_object('n', g)
FROM generate_series(1, %(count)s) g
"""


def load(url: str, count: int, start: dt.datetime, step: float) -> None:
    """`count` pending timers, the first due at `start`, one every `step` seconds; the table emptied first."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE timers")
        conn.execute(LOAD, {"company": COMPANY_ID, "kind": KIND, "start": start, "step": step, "count": count})
        conn.execute("VACUUM ANALYZE timers")


def raw_update(url: str, batch: int) -> float:
    """The reference: every pending row marked done by id, one UPDATE per batch; rows per second."""
    with psycopg.connect(url, autocommit=True) as conn:
        ids = [row[0] for row in conn.execute("SELECT id FROM timers WHERE state = 'pending' ORDER BY due_at")]
        started = time.perf_counter()
        for first in range(0, len(ids), batch):
            with conn.transaction():
                conn.execute("UPDATE timers SET state = 'done', done_at = now(), updated_at = now()"
                             " WHERE id = ANY(%s)", (ids[first:first + batch],))
        return len(ids) / (time.perf_counter() - started)


def sql_ceiling(url: str, batch: int) -> float:
    """The scheduler's statements alone: claim a batch, complete it, until none is due; timers per second."""
    from storage.db import interned_dict_row

    with psycopg.connect(url, autocommit=True, row_factory=interned_dict_row) as conn:
        count = 0
        started = time.perf_counter()
        while True:
            with conn.transaction():
                claimed = timers.claim_due(conn, now=dt.datetime.now(dt.UTC), limit=batch, kinds=[KIND])
            if not claimed:
                break
            with conn.transaction():
                count += len(timers.complete_many(conn, claimed))
        return count / (time.perf_counter() - started)


class Owner:
    """The handler: completes each batch in one statement; notes when each completion committed."""

    def __init__(self, db: Database, expected: int) -> None:
        self.db = db
        self.expected = expected
        self.lateness: list[float] = []
        self.batches = 0
        self.all_done = trio.Event()
        self.last_commit = 0.0

    async def __call__(self, batch: list[Timer]) -> None:
        done = await self.db.run(lambda conn: timers.complete_many(conn, batch))
        committed = dt.datetime.now(dt.UTC)
        self.last_commit = time.perf_counter()
        self.batches += 1
        self.lateness.extend((committed - timer.due_at).total_seconds() for timer in batch if timer.id in done)
        if len(self.lateness) >= self.expected:
            self.all_done.set()


async def run_scheduler(db: Database, expected: int, progress: Progress, label: str) -> tuple[Owner, float, Scheduler]:
    """Start a scheduler over what is loaded; (the owner, seconds until the last completion, the scheduler)."""
    owner = Owner(db, expected)
    scheduler = Scheduler(db)
    scheduler.register(KIND, owner)
    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        await nursery.start(scheduler.run)

        async def report() -> None:
            while True:
                await trio.sleep(5)
                progress(f"{label}: {len(owner.lateness):,} of {expected:,} fired")

        nursery.start_soon(report)
        await owner.all_done.wait()
        nursery.cancel_scope.cancel()
    return owner, owner.last_commit - started, scheduler


async def main(args: argparse.Namespace) -> None:
    progress = Progress(NAME)
    count = SIZES[args.mode]
    with fresh_database(progress) as database, tempfile.TemporaryDirectory(prefix="zapgate-bench-timers-") as tmp, \
            app_logging(Path(tmp) / "zapgate.log"):
        url = database.url
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("INSERT INTO companies (id, name) OVERRIDING SYSTEM VALUE VALUES (%s, 'Bench')", (COMPANY_ID,))
        tune_interpreter()  # as `zapgate serve` does
        pool = await trio.to_thread.run_sync(lambda: open_pool(url, min_size=2, max_size=10,
                                                               statement_timeout_ms=30_000))
        db = Database(pool)
        try:
            # references first: the same rows, the same batch size
            past = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
            await trio.to_thread.run_sync(load, url, count, past, 1.0 / count)
            raw_per_s = await trio.to_thread.run_sync(raw_update, url, BATCH)
            progress(f"reference: raw UPDATE by id, {raw_per_s:,.0f} rows/s")
            await trio.to_thread.run_sync(load, url, count, past, 1.0 / count)
            ceiling_per_s = await trio.to_thread.run_sync(sql_ceiling, url, BATCH)
            progress(f"reference: claim + complete SQL alone, {ceiling_per_s:,.0f} timers/s")

            # backlog: all due at start
            await trio.to_thread.run_sync(load, url, count, past, 1.0 / count)
            progress(f"backlog: {count:,} timers due, starting the scheduler")
            owner, seconds, scheduler = await run_scheduler(db, count, progress, "backlog")
            per_s = count / seconds
            progress(f"backlog: {per_s:,.0f} timers/s ({owner.batches} batches)")

            # steady: due at RATE per second from LEAD seconds on, all pending at start
            start = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=LEAD)
            await trio.to_thread.run_sync(load, url, count, start, 1.0 / RATE)
            progress(f"steady: {count:,} timers pending, due at {RATE:,}/s over {count / RATE:.0f}s")
            steady, _, steady_scheduler = await run_scheduler(db, count, progress, "steady")
            late = steady.lateness
            progress(f"steady: lateness p50 {ms(percentile(late, 50))} ms, p99 {ms(percentile(late, 99))} ms")
            left = await db.fetch_value("SELECT count(*) FROM timers WHERE state <> 'done'")
        finally:
            await db.aclose()
        env = environment(database)
    figures: dict[str, Any] = {
        "timers_per_s": round(per_s, 1),
        "lateness_p50_ms": ms(percentile(late, 50)),
        "lateness_p99_ms": ms(percentile(late, 99)),
        "lateness_max_ms": ms(max(late)),
        "raw_update_per_s": round(raw_per_s, 1),
        "sql_ceiling_per_s": round(ceiling_per_s, 1),
        "ratio": round(per_s / ceiling_per_s, 2),
        "timers": count,
        "steady_rate_per_s": RATE,
        "batch": BATCH,
        "backlog_batches": owner.batches,
        "steady_batches": steady.batches,
        "steady_mean_batch": round(count / steady.batches, 1),
        "not_done": left,
        "fired_twice": (scheduler.fired - count) + (steady_scheduler.fired - count),
    }
    reference = (f"raw_update_per_s = {raw_per_s:,.0f} (psycopg UPDATE by id, {BATCH} per statement); claim + "
                 f"complete SQL alone: {ceiling_per_s:,.0f}/s")
    checks = [
        Check("timers_per_s", figures["timers_per_s"], TARGET_PER_S, ">=", "/s", reference),
        Check("lateness_p99_ms", figures["lateness_p99_ms"], TARGET_P99_MS, "<=", "ms",
              f"p50 = {figures['lateness_p50_ms']} ms, max = {figures['lateness_max_ms']} ms; {count:,} pending, "
              f"due at {RATE:,}/s"),
    ]
    notes = [f"{count:,} timers per phase, one company, one kind; the handler completes each batch in one statement "
             f"(its own transaction); lateness = completion commit - due_at",
             f"{left} timers not done at the end, {figures['fired_twice']} delivered twice"]
    finish(progress, args, figures, checks, notes, env)


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    return parser(__doc__.splitlines()[0]).parse_args(argv)


if __name__ == "__main__":
    run(main, arguments())
