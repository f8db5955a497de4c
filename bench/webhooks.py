"""Intake with a dead webhook endpoint attached, against intake without it, in the same run (issue 18:
"a dead endpoint never delays intake: within 10% of without").

One zapgate (run_app), one paired sandbox line, `contacts` conversations warmed up; then rounds that
alternate (so a drift of the shared machine falls on both sides alike):
- without: no enabled webhook — the triggers' one probe of `webhooks` finds none;
- with: one enabled webhook of the company subscribed to `message.created`, its URL a loopback port that
  listens and never answers (a backlog nobody accepts): every delivery row is written in the intake's
  transactions (one multi-row insert per group commit) and the delivery actor holds its 4 in-flight posts
  for the 10 s timeout each, retrying with backoff — the worst a receiver can do.
Each round injects `messages` as fast as the pipeline takes them (bench.ingest's injector, at most 5,000
waiting) and measures messages/s from the first injection to the last delivery to a subscriber (each
announced only after its commit). The figures are the medians; `ratio` = with / without (target >= 0.90).
The rows the "with" rounds wrote are counted: one per message, or the run fails.

The pipeline's rate on a shared 2-core machine varies from round to round by more than the effect being
measured, so the SQL underneath is measured too, steadier (one connection, no Python in the loop): zapgate's
intake statement for known conversations (bench.ingest's ceiling: `message_intake_batch`, 500 a statement)
with the webhook triggers disabled (`no_triggers`: what the intake cost before them), with no webhook (the
triggers' probe only), and with the dead webhook (one delivery row per message in the same statement),
alternating, medians of `rounds` each.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import attrs
import psycopg
import trio
from psycopg.rows import dict_row

from bench.common import (
    COMPANY_ID,
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
    sql,
    start_sessions,
)
from bench.ingest import Deliveries, inject_as_fast_as_taken, message_rows, subscriber, wait_delivered
from storage import conversations
from storage.writer import MAX_BATCH

NAME = "bench.webhooks"


@attrs.frozen
class Sizes:
    contacts: int
    messages: int  # per round
    rounds: int  # of each kind


SIZES = {
    "tiny": Sizes(contacts=20, messages=300, rounds=1),
    "quick": Sizes(contacts=1_000, messages=8_000, rounds=5),
    "full": Sizes(contacts=5_000, messages=50_000, rounds=5),
}


# the webhook triggers the intake's statement fires (messages inserted, tickets' counters updated): off or on
TRIGGERS = {off: f"ALTER TABLE messages {verb} TRIGGER webhooks_messages_inserted, "
                 f"{verb} TRIGGER webhooks_messages_updated; "
                 f"ALTER TABLE tickets {verb} TRIGGER webhooks_tickets_inserted, "
                 f"{verb} TRIGGER webhooks_tickets_updated"
            for off, verb in ((True, "DISABLE"), (False, "ENABLE"))}


def intake_statements(url: str, q: Any, wid: int, tickets: list[tuple[int, int]], count: int, tag: str) -> float:
    """bench.ingest's ceiling (zapgate's intake statement for known conversations, MAX_BATCH a statement and a
    transaction, one connection), its message ids tagged `tag` so that runs add up instead of colliding; rows/s."""
    rows = message_rows(wid, tickets, count, tag)
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        started = time.perf_counter()
        for offset in range(0, count, MAX_BATCH):
            with conn.transaction():
                stored = conversations.intake_many(q, conn, rows[offset:offset + MAX_BATCH])
            if any(row is None for row in stored):
                raise RuntimeError("the intake statement stored fewer rows than it was given")
        return count / (time.perf_counter() - started)


def dead_endpoint() -> socket.socket:
    """A loopback port that takes connections into its backlog and never answers (nobody accepts)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    return sock


async def main(args: argparse.Namespace) -> None:
    progress = Progress(NAME)
    sizes = SIZES[args.mode]
    notes: list[str] = []
    dead = dead_endpoint()
    url = f"http://127.0.0.1:{dead.getsockname()[1]}/hook"
    with dead, fresh_database(progress) as database, tempfile.TemporaryDirectory(prefix="zapgate-bench-") as tmp, \
            app_logging(Path(tmp) / "zapgate.log", level="WARNING"):
        async with open_app(database.url, Path(tmp) / "data", webhook_allow_private=True) as app, \
                trio.open_nursery() as nursery:
            wid = (await paired_sandboxes(app, 1))[0]
            await start_sessions(app, [wid])
            deliveries = Deliveries()
            await nursery.start(subscriber, app.broker, deliveries)
            hook_id = (await trio.to_thread.run_sync(
                sql, database.url, "INSERT INTO webhooks (company_id, url, events, enabled, secret) VALUES "
                "(%s, %s, '{message.created}', false, 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw') RETURNING id",
                (COMPANY_ID, url)))[0][0]
            progress(f"warm-up: {sizes.contacts:,} contacts write once; the webhook to {url} is disabled")
            await inject_as_fast_as_taken(app, wid, sizes, deliveries, 0, sizes.contacts, "WARM")
            await wait_delivered(deliveries, sizes.contacts, "warm-up", 120)

            rates: dict[str, list[float]] = {"without": [], "with": []}
            cpu: dict[str, list[float]] = {"without": [], "with": []}
            first = sizes.contacts
            for round_ in range(sizes.rounds):
                for kind in ("without", "with") if round_ % 2 == 0 else ("with", "without"):
                    await trio.to_thread.run_sync(sql, database.url, "UPDATE webhooks SET enabled = %s WHERE id = %s",
                                                  (kind == "with", hook_id))
                    rows_before = (await trio.to_thread.run_sync(
                        sql, database.url, "SELECT count(*) FROM webhook_deliveries"))[0][0]
                    target = deliveries.received + sizes.messages
                    started, cpu_started = time.perf_counter(), time.process_time()
                    await inject_as_fast_as_taken(app, wid, sizes, deliveries, first, sizes.messages,
                                                  f"R{round_}{kind[:2].upper()}")
                    await wait_delivered(deliveries, target, kind, 600)
                    elapsed = time.perf_counter() - started
                    cpu[kind].append((time.process_time() - cpu_started) / sizes.messages * 1e6)
                    first += sizes.messages
                    written = (await trio.to_thread.run_sync(
                        sql, database.url, "SELECT count(*) FROM webhook_deliveries"))[0][0] - rows_before
                    expected = sizes.messages if kind == "with" else 0
                    if written != expected:
                        raise RuntimeError(f"{kind}: {written} delivery rows written, {expected} expected")
                    rates[kind].append(sizes.messages / elapsed)
                    progress(f"round {round_ + 1} {kind:>7}: {rates[kind][-1]:,.0f} msg/s, {written:,} delivery rows, "
                             f"{cpu[kind][-1]:.0f} µs CPU per message")
            stats = app.deps.webhooks.stats() if app.deps.webhooks is not None else {}

            tickets = [(row[0], row[1]) for row in await trio.to_thread.run_sync(
                sql, database.url, "SELECT id, contact_id FROM tickets WHERE whatsapp_id = %s ORDER BY id", (wid,))]
            statement: dict[str, list[float]] = {"no_triggers": [], "without": [], "with": []}
            for round_ in range(sizes.rounds):
                for kind in statement:
                    await trio.to_thread.run_sync(sql, database.url, TRIGGERS[kind == "no_triggers"])
                    await trio.to_thread.run_sync(sql, database.url, "UPDATE webhooks SET enabled = %s WHERE id = %s",
                                                  (kind == "with", hook_id))
                    statement[kind].append(await trio.to_thread.run_sync(
                        intake_statements, database.url, app.db.q, wid, tickets, sizes.messages,
                        f"S{round_}{kind}"))
                progress("intake statement, rows/s: " + ", ".join(f"{k} {v[-1]:,.0f}" for k, v in statement.items()))
            await trio.to_thread.run_sync(sql, database.url, TRIGGERS[False])
            nursery.cancel_scope.cancel()
    without, with_ = statistics.median(rates["without"]), statistics.median(rates["with"])
    ratio = with_ / without
    if stats.get("delivered"):
        notes.append(f"{stats['delivered']} deliveries reached the dead endpoint: it was not dead")
    sql_rates = {kind: statistics.median(values) for kind, values in statement.items()}
    figures = {"messages_per_s_with": round(with_, 1), "messages_per_s_without": round(without, 1),
               "ratio": round(ratio, 3),
               "intake_sql_per_s_no_triggers": round(sql_rates["no_triggers"], 1),
               "intake_sql_per_s_without": round(sql_rates["without"], 1),
               "intake_sql_per_s_with": round(sql_rates["with"], 1),
               "sql_ratio_with": round(sql_rates["with"] / sql_rates["without"], 3),
               "sql_ratio_triggers_unused": round(sql_rates["without"] / sql_rates["no_triggers"], 3),
               "cpu_us_per_message_with": round(statistics.median(cpu["with"]), 1),
               "cpu_us_per_message_without": round(statistics.median(cpu["without"]), 1),
               "rounds": sizes.rounds, "messages_per_round": sizes.messages, "contacts": sizes.contacts,
               "attempts_in_flight_at_end": stats.get("inFlight", 0), "retried": stats.get("retried", 0)}
    reference = f"messages_per_s_without = {without:,.0f} (the same intake, no webhook; alternating rounds)"
    sql_reference = (f"intake_sql_per_s_without = {sql_rates['without']:,.0f} rows/s (the intake statement, no "
                     f"webhook); with the triggers disabled: {sql_rates['no_triggers']:,.0f}")
    checks = [Check("ratio", figures["ratio"], 0.9, ">=", "", reference),
              Check("sql_ratio_with", figures["sql_ratio_with"], 0.9, ">=", "", sql_reference)]
    finish(progress, args, figures, checks, notes, environment(database))


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    return parser(__doc__.splitlines()[0]).parse_args(argv)


if __name__ == "__main__":
    run(main, arguments())
