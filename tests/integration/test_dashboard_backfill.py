"""Migration 0021 on a database that already has tickets: the events they lack are backfilled (a `created`
for tickets older than the events, a `closed` for closed ones, `rated` from user_ratings, `first_reply`
from the agents' messages), every event gets its durations, and the counters hold what the events say."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from storage import migrate


@pytest.fixture
def database_at_20(pg_server_url: str) -> Iterator[str]:
    name = f"zapgate_t_backfill_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_conninfo(pg_server_url, dbname=name)
    with psycopg.connect(url, autocommit=True) as conn:
        migrate.migrate(conn, [m for m in migrate.available_migrations() if m.version <= 20])
    yield url
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


HISTORY = """
INSERT INTO companies (id, name) OVERRIDING SYSTEM VALUE VALUES (1, 'Old');
INSERT INTO users (id, company_id, name, email, password_hash) OVERRIDING SYSTEM VALUE
VALUES (1, 1, 'Agent', 'agent@old.test', 'x');
INSERT INTO whatsapps (id, company_id, name) OVERRIDING SYSTEM VALUE VALUES (1, 1, 'line');
INSERT INTO contacts (id, company_id, name, number) OVERRIDING SYSTEM VALUE
VALUES (1, 1, 'A', '551100000001'), (2, 1, 'B', '551100000002');
-- ticket 1: lived with events (created 10:00, accepted 10:05, closed 11:05), an agent's replies, a rating
INSERT INTO tickets (id, company_id, contact_id, whatsapp_id, user_id, status, created_at, updated_at)
OVERRIDING SYSTEM VALUE VALUES (1, 1, 1, 1, 1, 'closed', '2024-03-01 10:00Z', '2024-03-01 11:05Z');
INSERT INTO ticket_events (company_id, ticket_id, kind, user_id, created_at) VALUES
    (1, 1, 'created', NULL, '2024-03-01 10:00Z'), (1, 1, 'accepted', 1, '2024-03-01 10:05Z'),
    (1, 1, 'closed', 1, '2024-03-01 11:05Z');
INSERT INTO messages (company_id, whatsapp_id, ticket_id, from_me, body, sent_by_user_id, created_at) VALUES
    (1, 1, 1, false, 'help', NULL, '2024-03-01 10:00Z'), (1, 1, 1, true, 'hello', 1, '2024-03-01 10:07Z'),
    (1, 1, 1, true, 'again', 1, '2024-03-01 10:20Z');
INSERT INTO user_ratings (company_id, ticket_id, user_id, rate, created_at) VALUES (1, 1, 1, 4, '2024-03-01 11:10Z');
-- ticket 2: older than the events table's use: no event at all, closed
INSERT INTO tickets (id, company_id, contact_id, whatsapp_id, user_id, status, created_at, updated_at)
OVERRIDING SYSTEM VALUE VALUES (2, 1, 2, 1, 1, 'closed', '2024-03-01 12:00Z', '2024-03-01 15:00Z');
"""


def test_the_migration_backfills_events_durations_and_counters(database_at_20: str) -> None:
    with psycopg.connect(database_at_20, autocommit=True) as conn:
        for statement in HISTORY.split(";\n"):
            if statement.strip():
                conn.execute(statement)
        migrate.migrate(conn)
        events = conn.execute("SELECT ticket_id, kind, user_id, wait_s, first_reply_s, resolution_s, service_s, rate "
                              "FROM ticket_events ORDER BY ticket_id, created_at, id").fetchall()
        assert events == [
            (1, "created", None, None, None, None, None, None),
            (1, "accepted", 1, 300.0, None, None, None, None),
            (1, "first_reply", 1, None, 420.0, None, None, None),  # the first reply only
            (1, "closed", 1, None, None, 3900.0, 3600.0, None),
            (1, "rated", 1, None, None, None, None, 4),
            (2, "created", None, None, None, None, None, None),
            (2, "closed", 1, None, None, 3 * 3600.0, None, None),  # nobody accepted it: no service time
        ]
        counters = conn.execute(
            "SELECT sum(created), sum(accepted), sum(closed), sum(rated), sum(first_replies), sum(wait_s), "
            "sum(service_n), sum(resolution_s), sum(rating_sum) FROM dashboard_counters").fetchone()
        assert counters == (2, 1, 2, 1, 1, 300.0, 1, 3900.0 + 3 * 3600.0, 4)
        for table in ("dashboard_user_hours", "dashboard_hours", "dashboard_user_days"):  # the coarser copies
            assert conn.execute(f"SELECT sum(created), sum(closed), sum(wait_s) FROM {table}").fetchone() == \
                   (2, 2, 300.0), table
        assert conn.execute("SELECT day::text, user_id, closed FROM dashboard_user_days ORDER BY 2").fetchall() == \
               [("2024-03-01", 0, 0), ("2024-03-01", 1, 2)]
        by_hour = conn.execute("SELECT hour, created, closed FROM dashboard_user_hours WHERE user_id = 0 "
                               "ORDER BY hour").fetchall()
        assert [(row[0].isoformat()[:16], row[1]) for row in by_hour] == \
               [("2024-03-01T10:00", 1), ("2024-03-01T12:00", 1)]
        # from now on the trigger counts: a new event lands in the counters in its own transaction
        conn.execute("INSERT INTO ticket_events (company_id, ticket_id, kind, created_at) "
                     "VALUES (1, 2, 'reopened', '2024-03-02 09:00Z')")
        assert conn.execute("SELECT sum(reopened) FROM dashboard_counters").fetchone() == (1,)
