"""The embedded PostgreSQL: a private server from the `pgserver` package in the data directory.

Used when neither DATABASE_URL nor DB_HOST is configured, so that `zapgate serve` needs nothing
installed. The server listens on a Unix socket only, inside the data dir; it is stopped when the
last zapgate process using it exits (pgserver counts the processes sharing one data dir).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import psycopg

log = logging.getLogger("zapgate.embedded")

DATABASE = "zapgate"


@contextlib.contextmanager
def embedded_postgres(data_dir: Path, database: str = DATABASE) -> Iterator[str]:
    """Start (or join) the data dir's PostgreSQL; yield the URL of `database` (created if missing).

    Blocking: run it before the event loop, or on a worker thread.
    """
    os.environ.setdefault("XDG_RUNTIME_DIR", str(Path(data_dir).resolve() / "run"))
    Path(os.environ["XDG_RUNTIME_DIR"]).mkdir(parents=True, exist_ok=True, mode=0o700)
    import pgserver  # imported late: it touches the runtime dir at import time

    pgdata = Path(data_dir).resolve() / "postgres"
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    log.info("starting the embedded PostgreSQL", extra={"fields": {"pgdata": str(pgdata)}})
    server = pgserver.get_server(pgdata, cleanup_mode="stop")
    try:
        admin_url = server.get_uri()
        with psycopg.connect(admin_url, autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{database}"')
        yield server.get_uri(database)
    finally:
        log.info("stopping the embedded PostgreSQL")
        server.cleanup()
