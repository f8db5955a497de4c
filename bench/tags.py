"""The tickets list filtered by tags (GET /tickets?tags=[…]), at 100,000 tickets, run directly.

A generated dataset (full and quick size: 100,000 tickets over 50,000 contacts, two each: an older one
closed, and a third of the newer ones pending, a third open; tags on tickets: `rare` on 0.5% of them,
`common` on 30%, `second` on 20% — `common` and `second` together on 10% —; and a contact tag `customer`
on 1% of the contacts) is loaded with SQL into a fresh database and ANALYZEd. The statements GET /tickets
runs for an admin's list with `showAll=true` (storage/ticket_lists.py chooses and builds them, as the API
does: `tags_common`, then the page of 40 tickets as JSON and the count), run one after another by one
client in autocommit, as the endpoint runs them.

Figures (p50 and p99 over the runs, ms): `rare`, `common`, `both` (`common` and `second`: tickets carrying
both), `contact` (the contact tag), `open_common` (`common` among the open tickets), and `unfiltered`: the
same list without tags, the reference.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import psycopg
import trio
from psycopg.rows import dict_row

from bench.common import (
    COMPANY_ID,
    Check,
    Progress,
    environment,
    finish,
    fresh_database,
    ms,
    parser,
    percentile,
    run,
)
from storage.db import QUERIES_FILE
from storage.sql import load_queries
from storage.ticket_lists import TicketFilters, build_list_query, fetch_list, tags_common
from storage.tickets import Viewer

NAME = "bench.tags"
SIZES = {"tiny": (2_000, 30), "quick": (100_000, 200), "full": (100_000, 1000)}  # tickets, runs per case
# p50 targets (ms): a rare tag costs its few tickets; a common one the walk and the count of the whole list
TARGETS = {"rare": 10.0, "contact": 10.0, "common": 50.0, "both": 50.0, "open_common": 50.0}

SEED = """
INSERT INTO whatsapps (company_id, name) VALUES (%(company)s, 'bench');
INSERT INTO contacts (company_id, name, number)
SELECT %(company)s, 'Contact ' || g, (5511900000000 + g)::text FROM generate_series(1, %(contacts)s) g;
INSERT INTO tickets (company_id, contact_id, whatsapp_id, status, user_id, last_message, last_message_at)
SELECT %(company)s, c.id, w.id,
       CASE WHEN g > %(contacts)s THEN 'closed' ELSE (ARRAY['pending', 'open', 'closed'])[1 + g %% 3] END,
       NULL, 'message ' || g,
       now() - make_interval(secs => g)
FROM generate_series(1, %(tickets)s) g
JOIN contacts c ON c.id = (SELECT min(id) FROM contacts) + (g %% %(contacts)s)
CROSS JOIN (SELECT id FROM whatsapps WHERE name = 'bench') w;
INSERT INTO tags (company_id, name, kanban) VALUES
    (%(company)s, 'rare', false), (%(company)s, 'common', false), (%(company)s, 'second', false),
    (%(company)s, 'customer', false), (%(company)s, 'lane', true);
INSERT INTO ticket_tags (company_id, ticket_id, tag_id)
SELECT %(company)s, t.id, tg.id FROM tickets t JOIN tags tg ON tg.company_id = t.company_id
WHERE (tg.name = 'rare' AND t.id %% 200 = 7) OR (tg.name = 'common' AND t.id %% 10 < 3)
   OR (tg.name = 'second' AND t.id %% 5 = 1) OR (tg.name = 'lane' AND t.id %% 4 = 0);
INSERT INTO contact_tags (company_id, contact_id, tag_id)
SELECT %(company)s, c.id, tg.id FROM contacts c JOIN tags tg ON tg.name = 'customer' AND tg.company_id = c.company_id
WHERE c.id %% 100 = 3;
VACUUM ANALYZE;
"""


def seed(url: str, tickets: int) -> dict[str, int]:
    """The dataset; the tags' ids by name."""
    params = {"company": COMPANY_ID, "tickets": tickets, "contacts": max(1, tickets // 2)}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO companies (id, name) OVERRIDING SYSTEM VALUE VALUES (%s, 'Bench')", (COMPANY_ID,))
        for statement in SEED.split(";\n"):
            if statement.strip():
                conn.execute(statement, params)
        return {name: tag_id for tag_id, name in conn.execute("SELECT id, name FROM tags").fetchall()}


def cases(tag: dict[str, int]) -> dict[str, TicketFilters]:
    return {
        "unfiltered": TicketFilters(show_all=True),
        "rare": TicketFilters(show_all=True, tag_ids=(tag["rare"],)),
        "common": TicketFilters(show_all=True, tag_ids=(tag["common"],)),
        "both": TicketFilters(show_all=True, tag_ids=(tag["common"], tag["second"])),
        "contact": TicketFilters(show_all=True, tag_ids=(tag["customer"],)),
        "open_common": TicketFilters(show_all=True, status="open", tag_ids=(tag["common"],)),
    }


def measure(url: str, filters: TicketFilters, runs: int) -> dict[str, Any]:
    """p50 / p99 of the list's statements for an admin, and how many tickets matched."""
    viewer = Viewer(1, COMPANY_ID, True)
    q = load_queries(QUERIES_FILE)

    def listed(conn: psycopg.Connection[Any]) -> Any:
        common = bool(filters.tag_ids) and tags_common(conn, q, filters.tag_ids)
        built = build_list_query(viewer, filters, limit=40, template=q.tickets_page, common_tags=common)
        return fetch_list(conn, built, 40)

    samples = []
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        for _ in range(max(3, runs // 10)):  # warm-up (plans cached, pages in memory)
            found = listed(conn)
        for _ in range(runs):
            started = time.perf_counter()
            found = listed(conn)
            samples.append(time.perf_counter() - started)
    return {"p50_ms": ms(percentile(samples, 50)), "p99_ms": ms(percentile(samples, 99)), "matching": found.count}


async def main(args: argparse.Namespace) -> None:
    progress = Progress(NAME)
    tickets, runs = SIZES[args.mode]
    with fresh_database(progress) as database:
        started = time.perf_counter()
        tag = await trio.to_thread.run_sync(seed, database.url, tickets)
        figures: dict[str, Any] = {"dataset": {"tickets": tickets, "load_s": round(time.perf_counter() - started, 2)}}
        progress(f"{tickets:,} tickets loaded")
        for name, filters in cases(tag).items():
            figures[name] = await trio.to_thread.run_sync(measure, database.url, filters, runs)
            progress(f"{name}: {figures[name]}")
        env = environment(database)
    unfiltered = figures["unfiltered"]["p50_ms"]
    checks = [Check(f"{name}.p50_ms", figures[name]["p50_ms"], target, "<=", "ms",
                    f"unfiltered p50 = {unfiltered} ms; {figures[name]['matching']:,} tickets match")
              for name, target in TARGETS.items()]
    notes = [f"{runs} runs per case, one client, the statements of GET /tickets (page of 40 as JSON and the count)"]
    finish(progress, args, figures, checks, notes, env)


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    return parser(__doc__.splitlines()[0]).parse_args(argv)


if __name__ == "__main__":
    run(main, arguments())
