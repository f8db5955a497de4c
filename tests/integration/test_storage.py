"""Storage against a real PostgreSQL: migrations, the schema's invariants, error mapping, the pool bridge."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
import trio

from storage import errors, migrate
from storage.db import Database, open_pool


def connect(url: str) -> psycopg.Connection:
    return psycopg.connect(url, autocommit=True)


def test_migrate_twice_applies_once(empty_database_url: str) -> None:
    with connect(empty_database_url) as conn:
        assert migrate.current_version(conn) == 0
        known = migrate.available_migrations()
        assert [m.version for m in migrate.migrate(conn)] == [m.version for m in known]
        assert migrate.migrate(conn) == []
        assert migrate.current_version(conn) == migrate.latest_version()
        rows = conn.execute("SELECT version, name FROM schema_migrations ORDER BY version").fetchall()
        assert rows == [(m.version, m.name) for m in known] and rows[0] == (1, "schema")


async def test_concurrent_migrators_apply_each_migration_once(empty_database_url: str) -> None:
    results: list[list[migrate.Migration]] = []

    async def one() -> None:
        results.append(await trio.to_thread.run_sync(migrate.migrate_url, empty_database_url))

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for _ in range(4):
                nursery.start_soon(one)
    assert sorted(len(applied) for applied in results) == [0, 0, 0, len(migrate.available_migrations())]


def test_numbered_migrations_apply_in_order_and_newer_schema_is_refused(empty_database_url: str,
                                                                         tmp_path: Path) -> None:
    (tmp_path / "0901_add_note.sql").write_text("ALTER TABLE companies ADD COLUMN note text;")
    (tmp_path / "0902_fill_note.sql").write_text("UPDATE companies SET note = 'x';")
    migrations = migrate.available_migrations(tmp_path)
    assert [m.version for m in migrations] == [1, 901, 902]
    with connect(empty_database_url) as conn:
        assert [m.version for m in migrate.migrate(conn, migrations)] == [1, 901, 902]
        assert migrate.current_version(conn) == 902
        with pytest.raises(RuntimeError, match="newer than this zapgate"):
            migrate.migrate(conn)  # this build knows fewer versions


def test_a_failing_migration_leaves_no_trace(empty_database_url: str, tmp_path: Path) -> None:
    (tmp_path / "0002_broken.sql").write_text("ALTER TABLE companies ADD COLUMN a text; SELECT no_such_function();")
    with connect(empty_database_url) as conn:
        with pytest.raises(psycopg.errors.UndefinedFunction):
            migrate.migrate(conn, migrate.available_migrations(tmp_path))
        assert migrate.current_version(conn) == 1
        columns = conn.execute("SELECT column_name FROM information_schema.columns "
                               "WHERE table_name = 'companies' AND column_name = 'a'").fetchall()
        assert columns == []


def test_bad_migration_file_names_are_refused(tmp_path: Path) -> None:
    (tmp_path / "2_oops.sql").write_text("SELECT 1")
    with pytest.raises(ValueError, match="0002_add_thing"):
        migrate.available_migrations(tmp_path)


def _seed(conn: psycopg.Connection) -> tuple[int, int, int]:
    company = conn.execute("INSERT INTO companies (name) VALUES ('C') RETURNING id").fetchone()[0]
    whatsapp = conn.execute("INSERT INTO whatsapps (company_id, name) VALUES (%s, 'w') RETURNING id",
                            (company,)).fetchone()[0]
    contact = conn.execute("INSERT INTO contacts (company_id, number) VALUES (%s, '5511999') RETURNING id",
                           (company,)).fetchone()[0]
    return company, whatsapp, contact


def test_one_active_ticket_per_contact_and_connection(database_url: str) -> None:
    with connect(database_url) as conn:
        company, whatsapp, contact = _seed(conn)
        insert = ("INSERT INTO tickets (company_id, contact_id, whatsapp_id, status) VALUES (%s, %s, %s, %s) "
                  "ON CONFLICT (company_id, contact_id, whatsapp_id) WHERE status IN ('pending', 'open') "
                  "DO NOTHING RETURNING id")
        first = conn.execute(insert, (company, contact, whatsapp, "pending")).fetchone()
        assert first is not None
        assert conn.execute(insert, (company, contact, whatsapp, "open")).fetchone() is None
        conn.execute("UPDATE tickets SET status = 'closed' WHERE id = %s", first)
        assert conn.execute(insert, (company, contact, whatsapp, "pending")).fetchone() is not None


def test_message_stored_once_per_connection_and_wid(database_url: str) -> None:
    with connect(database_url) as conn:
        company, whatsapp, contact = _seed(conn)
        ticket = conn.execute("INSERT INTO tickets (company_id, contact_id, whatsapp_id) VALUES (%s, %s, %s) "
                              "RETURNING id", (company, contact, whatsapp)).fetchone()[0]
        insert = ("INSERT INTO messages (company_id, whatsapp_id, ticket_id, wid, body) VALUES (%s, %s, %s, %s, 'hi') "
                  "ON CONFLICT (whatsapp_id, wid) WHERE wid IS NOT NULL DO NOTHING RETURNING id")
        assert conn.execute(insert, (company, whatsapp, ticket, "ABC")).fetchone() is not None
        assert conn.execute(insert, (company, whatsapp, ticket, "ABC")).fetchone() is None
        # pending outbound messages have no WhatsApp id yet: any number of them
        for _ in range(2):
            conn.execute("INSERT INTO messages (company_id, whatsapp_id, ticket_id, status) VALUES (%s, %s, %s, "
                         "'pending')", (company, whatsapp, ticket))


def test_cross_company_references_are_refused_by_the_schema(database_url: str) -> None:
    with connect(database_url) as conn:
        company_a, whatsapp_a, _ = _seed(conn)
        company_b = conn.execute("INSERT INTO companies (name) VALUES ('B') RETURNING id").fetchone()[0]
        contact_b = conn.execute("INSERT INTO contacts (company_id, number) VALUES (%s, '1') RETURNING id",
                                 (company_b,)).fetchone()[0]
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            conn.execute("INSERT INTO tickets (company_id, contact_id, whatsapp_id) VALUES (%s, %s, %s)",
                         (company_a, contact_b, whatsapp_a))


async def test_driver_errors_become_domain_errors(database_url: str) -> None:
    pool = await trio.to_thread.run_sync(lambda: open_pool(database_url, min_size=1, max_size=2,
                                                           statement_timeout_ms=200))
    db = Database(pool)
    try:
        with trio.fail_after(30):
            await db.execute("INSERT INTO companies (name) VALUES ('Dup')")
            with pytest.raises(errors.Conflict) as conflict:
                await db.execute("INSERT INTO companies (name) VALUES ('dup')")
            assert conflict.value.constraint == "companies_name_key"
            with pytest.raises(errors.InvalidReference):
                await db.execute("INSERT INTO users (company_id, name, email, password_hash) "
                                 "VALUES (999999, 'x', 'x@x.x', 'h')")
            with pytest.raises(errors.InvalidData):
                await db.execute("INSERT INTO companies (name) VALUES ('')")
            with pytest.raises(errors.QueryTimeout):
                await db.execute("SELECT pg_sleep(2)")
            # A failed transaction leaves nothing behind and the pool stays usable.
            with pytest.raises(errors.Conflict):
                await db.run(lambda conn: [conn.execute("INSERT INTO companies (name) VALUES ('Half')"),
                                           conn.execute("INSERT INTO companies (name) VALUES ('half')")])
            assert await db.fetch_value("SELECT count(*) FROM companies WHERE name ILIKE 'half'") == 0
            assert await db.ping()
    finally:
        await db.aclose()


async def test_unreachable_database_is_unavailable() -> None:
    with trio.fail_after(30):
        with pytest.raises(errors.Unavailable):
            await trio.to_thread.run_sync(lambda: open_pool("postgresql://nobody@127.0.0.1:1/none", min_size=1,
                                                            max_size=1, statement_timeout_ms=100, timeout=1))
