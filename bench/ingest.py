"""Inbound messages through the real pipeline, against raw inserts on the same server.

    sandbox.inbound ─▶ SandboxTransport ─▶ SessionActor ─▶ TicketRouter ─▶ TicketActor (one per contact)
        ─▶ GroupCommitWriter (contact/ticket/message in group transactions) ─▶ Broker ─▶ subscribers

Phases, all on one fresh database and one zapgate (run_app, the code path of `zapgate serve`):
1. warm-up: every simulated contact writes once (contacts, tickets and ticket actors are created);
2. throughput: `messages` more, injected as fast as the pipeline takes them (at most WINDOW waiting);
   `messages_per_s` = messages / (time from the first injection to the last delivery to a subscriber);
   every delivered message is committed (the actor announces only after the commit), which is checked;
3. latency: a fixed offered load (`--rate`, 1,000 msg/s) for `--seconds`; each message's latency runs
   from its scheduled injection time to its delivery to a subscriber (so a stall is not hidden);
4. reference: the same number of message rows inserted straight with psycopg — `executemany` in
   pipeline mode, the intake's own INSERT (storage/queries.sql `message_insert`), in transactions of
   the writer's MAX_BATCH rows, one connection — `raw_insert_per_s`; `ratio` = messages_per_s / that;
5. ceiling: zapgate's own statement for known conversations (`message_intake_batch`: the messages, and
   their tickets' counters under row locks; MAX_BATCH a statement, as the writer runs it) straight from
   one connection — `intake_sql_per_s`, the most the pipeline could reach if Python cost nothing;
   `sql_ceiling_ratio` = that / raw_insert_per_s (where `ratio` can go at best), `share_of_sql_ceiling`
   = messages_per_s / intake_sql_per_s.
"""

from __future__ import annotations

import argparse
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
    App,
    Check,
    Progress,
    app_logging,
    environment,
    finish,
    fresh_database,
    ms,
    open_app,
    paired_sandboxes,
    parser,
    percentile,
    run,
    sql,
    start_sessions,
)
from gateway.broker import Broker
from storage import conversations
from storage.writer import MAX_BATCH

NAME = "bench.ingest"
WINDOW = 5_000  # messages injected but not yet delivered, at most (the sandbox queue holds 100,000)


@attrs.frozen
class Sizes:
    contacts: int
    messages: int
    rate: float
    seconds: float
    subscribers: int = 4


SIZES = {
    "tiny": Sizes(contacts=20, messages=400, rate=200, seconds=1.0, subscribers=2),
    "quick": Sizes(contacts=1_000, messages=30_000, rate=1_000, seconds=5.0),
    "full": Sizes(contacts=5_000, messages=200_000, rate=1_000, seconds=30.0),
}


def contact_number(index: int) -> str:
    return f"55119{index:08d}"


class Deliveries:
    """What the measuring subscriber saw: message creations, and the latency of those being timed."""

    def __init__(self) -> None:
        self.received = 0
        self.timed: dict[str, float] = {}  # wid → when it was (scheduled to be) injected
        self.latencies: list[float] = []
        self._waiters = trio.lowlevel.ParkingLot()

    def on_event(self, name: str, payload: dict[str, Any]) -> None:
        if name.endswith("-appMessage") and payload.get("action") == "create":
            self.received += 1
            started = self.timed.pop(payload["message"]["wid"], None)
            if started is not None:
                self.latencies.append(time.perf_counter() - started)
            if self._waiters:
                self._waiters.unpark_all()

    async def wait_received(self, count: int) -> None:
        """Until `count` message creations have been delivered."""
        while self.received < count:
            await self._waiters.park()


async def wait_delivered(deliveries: Deliveries, count: int, what: str, seconds: float) -> None:
    with trio.move_on_after(seconds) as waited:
        await deliveries.wait_received(count)
    if waited.cancelled_caught:
        raise RuntimeError(f"{what}: only {deliveries.received} of {count} messages delivered after {seconds:.0f}s")


async def subscriber(broker: Broker, deliveries: Deliveries | None, *,
                     task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """A subscriber of the company, as a frontend's socket is: drains its queue (the first one also counts)."""
    with broker.subscribe(COMPANY_ID) as subscription:
        task_status.started()
        async for event in subscription:
            if deliveries is not None:
                deliveries.on_event(event.name, event.payload)


async def inject_as_fast_as_taken(app: App, wid: int, sizes: Sizes, deliveries: Deliveries, first: int,
                                  count: int, tag: str) -> None:
    sandbox = app.deps.sandbox
    assert sandbox is not None
    already = deliveries.received
    for k in range(count):
        if k >= WINDOW:  # at most WINDOW in flight: injected, not yet delivered
            await deliveries.wait_received(already + k - WINDOW + 1)
        contact = (first + k) % sizes.contacts
        await sandbox.inbound(wid, sender=contact_number(contact), name=f"Cliente {contact}",
                              body=f"{tag} message {first + k}", id=f"{tag}{first + k:010d}")


async def report_progress(progress: Progress, deliveries: Deliveries, already: int, count: int,
                          started: float) -> None:
    while True:
        await trio.sleep(2)
        done = deliveries.received - already
        progress(f"  {done:,}/{count:,} delivered ({done / (time.perf_counter() - started):,.0f} msg/s)")


async def inject_at_rate(app: App, wid: int, sizes: Sizes, deliveries: Deliveries, first: int) -> int:
    """Offer `rate` messages a second for `seconds`; each timed from its scheduled time. Returns the count."""
    sandbox = app.deps.sandbox
    assert sandbox is not None
    count = max(1, int(sizes.rate * sizes.seconds))
    start = time.perf_counter() + 0.01
    for k in range(count):
        scheduled = start + k / sizes.rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await trio.sleep(delay)
        wid_text = f"LAT{first + k:010d}"
        deliveries.timed[wid_text] = scheduled
        contact = (first + k) % sizes.contacts
        await sandbox.inbound(wid, sender=contact_number(contact), name=f"Cliente {contact}",
                              body=f"latency message {k}", id=wid_text)
    return count


def message_rows(wid: int, tickets: list[tuple[int, int]], count: int, tag: str) -> list[dict[str, Any]]:
    """`count` incoming message rows for the connection's tickets, as the intake's statements take them."""
    import datetime as dt

    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    rows = []
    for k in range(count):
        ticket_id, contact_id = tickets[k % len(tickets)]
        rows.append({
            "company_id": COMPANY_ID, "whatsapp_id": wid, "ticket_id": ticket_id, "contact_id": contact_id,
            "wid": f"{tag}{k:010d}", "from_me": False, "body": f"raw message {k}", "media_type": "text",
            "media_url": None, "media_name": None, "media_mimetype": None, "ack": 0, "status": "received",
            "quoted_wid": None, "participant": None, "wa_timestamp": now, "read": False, "sent_by_user_id": None,
            "unread": 1, "last_message": f"raw message {k}", "latitude": None, "longitude": None,
        })
    return rows


def raw_inserts(url: str, query: str, wid: int, tickets: list[tuple[int, int]], count: int) -> float:
    """Insert `count` message rows straight (executemany, pipeline mode, MAX_BATCH per transaction); rows/s."""
    rows = message_rows(wid, tickets, count, "RAW")
    with psycopg.connect(url, autocommit=True) as conn:
        started = time.perf_counter()
        for offset in range(0, count, MAX_BATCH):
            with conn.transaction(), conn.pipeline(), conn.cursor() as cursor:
                cursor.executemany(query, rows[offset:offset + MAX_BATCH])
        elapsed = time.perf_counter() - started
    return count / elapsed


def intake_statements(url: str, q: Any, wid: int, tickets: list[tuple[int, int]], count: int) -> float:
    """zapgate's own intake of `count` messages of known conversations, straight: what the group-commit writer
    runs (conversations.intake_many: one set-based statement per MAX_BATCH, one transaction each); rows/s."""
    rows = message_rows(wid, tickets, count, "SQL")
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        started = time.perf_counter()
        for offset in range(0, count, MAX_BATCH):
            with conn.transaction():
                stored = conversations.intake_many(q, conn, rows[offset:offset + MAX_BATCH])
            if any(row is None for row in stored):
                raise RuntimeError("the intake statement stored fewer rows than it was given")
        elapsed = time.perf_counter() - started
    return count / elapsed


async def main(args: argparse.Namespace) -> None:
    progress = Progress(NAME)
    base = SIZES[args.mode]
    sizes = attrs.evolve(base, **{k: v for k, v in (("contacts", args.contacts), ("messages", args.messages),
                                                    ("rate", args.rate), ("seconds", args.seconds)) if v})
    notes: list[str] = []
    with fresh_database(progress) as database, tempfile.TemporaryDirectory(prefix="zapgate-bench-") as tmp, \
            app_logging(Path(tmp) / "zapgate.log"):
        async with open_app(database.url, Path(tmp) / "data") as app, trio.open_nursery() as nursery:
            wid = (await paired_sandboxes(app, 1))[0]
            await start_sessions(app, [wid])
            deliveries = Deliveries()
            await nursery.start(subscriber, app.broker, deliveries)
            for _ in range(sizes.subscribers - 1):
                await nursery.start(subscriber, app.broker, None)
            progress(f"connection {wid} CONNECTED; {sizes.subscribers} subscribers attached")

            progress(f"warm-up: {sizes.contacts:,} contacts write once (tickets and actors are created)")
            started = time.perf_counter()
            await inject_as_fast_as_taken(app, wid, sizes, deliveries, 0, sizes.contacts, "WARM")
            await wait_delivered(deliveries, sizes.contacts, "warm-up", 120)
            new_per_s = sizes.contacts / (time.perf_counter() - started)
            progress(f"warm-up done: {new_per_s:,.0f} new conversations/s")

            progress(f"throughput: {sizes.messages:,} messages from {sizes.contacts:,} contacts, as fast as taken")
            writer = app.deps.tickets.writer
            flushes_before, writes_before = writer.flushes, writer.writes
            target = deliveries.received + sizes.messages
            started = time.perf_counter()
            cpu_started, thread_started = time.process_time(), time.thread_time()
            async with trio.open_nursery() as injecting:
                injecting.start_soon(inject_as_fast_as_taken, app, wid, sizes, deliveries, 0, sizes.messages, "TPUT")
                injecting.start_soon(report_progress, progress, deliveries, target - sizes.messages, sizes.messages,
                                     started)
                await wait_delivered(deliveries, target, "throughput", 600)
                elapsed = time.perf_counter() - started
                # CPU per message: steadier than rates on a shared machine (another process's load
                # slows us down but does not add to our CPU time much)
                process_us = (time.process_time() - cpu_started) / sizes.messages * 1e6
                thread_us = (time.thread_time() - thread_started) / sizes.messages * 1e6
                injecting.cancel_scope.cancel()  # the progress reports
            messages_per_s = sizes.messages / elapsed
            flushes = writer.flushes - flushes_before
            mean_batch = (writer.writes - writes_before) / flushes if flushes else 0.0
            stored = (await trio.to_thread.run_sync(sql, database.url,
                                                    "SELECT count(*) FROM messages WHERE wid LIKE 'TPUT%%'"))[0][0]
            if stored != sizes.messages:
                raise RuntimeError(f"throughput: {stored} messages committed, {sizes.messages} expected")
            progress(f"throughput: {messages_per_s:,.0f} msg/s, all {stored:,} committed "
                     f"({flushes:,} group commits, {mean_batch:.1f} writes each); CPU per message: "
                     f"{thread_us:.0f} µs on the trio thread, {process_us:.0f} µs in the process")

            progress(f"latency: {sizes.rate:,.0f} msg/s offered for {sizes.seconds:g}s")
            target = deliveries.received + int(sizes.rate * sizes.seconds)
            offered_started = time.perf_counter()
            count = await inject_at_rate(app, wid, sizes, deliveries, 0)
            offered_for = time.perf_counter() - offered_started
            await wait_delivered(deliveries, target, "latency", 120)
            latencies = deliveries.latencies
            p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
            progress(f"latency: p50 {ms(p50)} ms, p99 {ms(p99)} ms, max {ms(max(latencies))} ms over {count:,}")
            if offered_for > sizes.seconds * 1.1:
                notes.append(f"the injector fell behind the offered load: {count} messages took {offered_for:.1f}s "
                             f"instead of {sizes.seconds:g}s (latencies are measured from the scheduled time)")

            progress(f"reference: {sizes.messages:,} rows inserted straight (executemany, pipeline mode)")
            tickets = [(row[0], row[1]) for row in await trio.to_thread.run_sync(
                sql, database.url, "SELECT id, contact_id FROM tickets WHERE whatsapp_id = %s ORDER BY id", (wid,))]
            raw_per_s = await trio.to_thread.run_sync(raw_inserts, database.url, app.db.q.message_insert, wid,
                                                      tickets, sizes.messages)
            progress(f"reference: {raw_per_s:,.0f} rows/s")
            progress(f"ceiling: zapgate's intake statement (messages + ticket counters) for {sizes.messages:,} rows, "
                     f"{MAX_BATCH} a statement")
            sql_per_s = await trio.to_thread.run_sync(intake_statements, database.url, app.db.q, wid, tickets,
                                                      sizes.messages)
            progress(f"ceiling: {sql_per_s:,.0f} rows/s ({sql_per_s / raw_per_s:.2f} of the plain insert)")
            lagged = app.broker.stats()["lagged"]
            nursery.cancel_scope.cancel()
    if lagged:
        notes.append(f"{lagged} subscriber(s) lagged and were cut off by the broker")
    ratio = messages_per_s / raw_per_s
    figures = {"messages_per_s": round(messages_per_s, 1), "p50_ms": ms(p50), "p99_ms": ms(p99),
               "raw_insert_per_s": round(raw_per_s, 1), "ratio": round(ratio, 3),
               "intake_sql_per_s": round(sql_per_s, 1), "sql_ceiling_ratio": round(sql_per_s / raw_per_s, 3),
               "share_of_sql_ceiling": round(messages_per_s / sql_per_s, 3),
               "trio_thread_cpu_us_per_message": round(thread_us, 1),
               "process_cpu_us_per_message": round(process_us, 1),
               "new_conversations_per_s": round(new_per_s, 1), "max_ms": ms(max(latencies)),
               "offered_rate": sizes.rate, "mean_group_commit": round(mean_batch, 1),
               "contacts": sizes.contacts, "messages": sizes.messages, "subscribers": sizes.subscribers}
    reference = (f"raw_insert_per_s = {raw_per_s:,.0f} (psycopg executemany, pipeline mode); zapgate's intake "
                 f"SQL alone: {sql_per_s:,.0f}/s = {sql_per_s / raw_per_s:.2f} of it")
    checks = [
        Check("messages_per_s", figures["messages_per_s"], 5_000, ">=", "msg/s", reference),
        Check("ratio", figures["ratio"], 0.5, ">=", "", reference),
        Check("p99_ms", figures["p99_ms"], 50, "<=", "ms", f"at {sizes.rate:,.0f} msg/s offered; p50 = {ms(p50)} ms"),
    ]
    finish(progress, args, figures, checks, notes, environment(database))


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--contacts", type=int, help="simulated contacts (conversations)")
    p.add_argument("--messages", type=int, help="messages of the throughput phase")
    p.add_argument("--rate", type=float, help="offered load of the latency phase, msg/s")
    p.add_argument("--seconds", type=float, help="length of the latency phase")
    return p.parse_args(argv)


if __name__ == "__main__":
    run(main, arguments())
