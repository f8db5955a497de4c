"""Schema migrations: `schema.sql` is version 1; `storage/migrations/NNNN_name.sql` follow in order.

Applied versions are recorded in `schema_migrations`. Each migration runs in its own transaction
under an advisory lock, so several processes starting at once apply each migration exactly once.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import attrs
import psycopg

from storage.errors import map_errors

log = logging.getLogger("zapgate.migrate")

_LOCK_KEY = 0x7A617067  # "zapg": the advisory lock serialising migrators
_MIGRATION_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_PACKAGE_DIR = Path(__file__).parent


@attrs.frozen
class Migration:
    version: int
    name: str
    path: Path


def schema_file() -> Path:
    """`schema.sql`: inside the installed package (wheel), else at the repository root (editable)."""
    for candidate in (_PACKAGE_DIR / "schema.sql", _PACKAGE_DIR.parent / "schema.sql"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("schema.sql not found next to the storage package or at the project root")


def available_migrations(directory: Path | None = None) -> list[Migration]:
    directory = directory if directory is not None else _PACKAGE_DIR / "migrations"
    migrations = [Migration(1, "schema", schema_file())]
    for path in sorted(directory.glob("*.sql")) if directory.is_dir() else []:
        match = _MIGRATION_FILE.match(path.name)
        if not match:
            raise ValueError(f"migration file name must look like 0002_add_thing.sql: {path.name}")
        version = int(match.group(1))
        if version <= migrations[-1].version:
            raise ValueError(f"migration {path.name} is out of order or duplicated")
        migrations.append(Migration(version, match.group(2), path))
    return migrations


def latest_version(migrations: list[Migration] | None = None) -> int:
    return (migrations or available_migrations())[-1].version


def _ensure_table(conn: psycopg.Connection) -> None:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
    )


def current_version(conn: psycopg.Connection) -> int:
    """The highest applied version (0 on an empty database)."""
    exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL AS present").fetchone()
    if not _value(exists):
        return 0
    return _value(conn.execute("SELECT coalesce(max(version), 0) AS v FROM schema_migrations").fetchone())


def _value(row: object) -> int:
    if isinstance(row, dict):
        return next(iter(row.values()))
    return row[0]  # type: ignore[index]


def migrate(conn: psycopg.Connection, migrations: list[Migration] | None = None) -> list[Migration]:
    """Apply what is missing, in order; the migrations applied now (empty when up to date).

    Blocking; `conn` must be in autocommit mode (each migration gets its own transaction).
    """
    migrations = migrations if migrations is not None else available_migrations()
    applied: list[Migration] = []
    with map_errors():
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            _ensure_table(conn)
            done = {_value(row) for row in conn.execute("SELECT version FROM schema_migrations").fetchall()}
            if done and max(done) > migrations[-1].version:
                raise RuntimeError(
                    f"the database schema (version {max(done)}) is newer than this zapgate "
                    f"(version {migrations[-1].version}); upgrade zapgate"
                )
            for migration in migrations:
                if migration.version in done:
                    continue
                log.info("applying migration %04d_%s", migration.version, migration.name)
                with conn.transaction():
                    conn.execute(migration.path.read_text(encoding="utf-8"))  # type: ignore[arg-type]
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                        (migration.version, migration.name),
                    )
                applied.append(migration)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return applied


def migrate_url(url: str) -> list[Migration]:
    with map_errors(), psycopg.connect(url, autocommit=True) as conn:
        return migrate(conn)
