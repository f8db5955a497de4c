"""What every benchmark shares: flags and sizes, a fresh database, zapgate in-process, figures and checks.

Conventions (bench/run_all.py and tests/integration/test_bench_smoke.py rely on them):

- `python -m bench.<name>` runs the full size; `--quick` a size that finishes in under 2 minutes on
  2 cores; `--tiny` a size that only proves the benchmark still runs (the smoke test);
- progress goes to stderr; stdout gets a readable report, and with `--json` its last line is one JSON
  object: the figures by name at the top level, plus `benchmark`, `mode`, `checks` (each figure next to
  its target and its reference), `notes` and `environment`;
- the database is DATABASE_URL's server (a fresh database is created there and dropped after), else an
  embedded PostgreSQL (pgserver) in a temporary directory, as the tests do;
- zapgate's own logs go to a file at INFO (the production default, so its cost is paid) and, from
  WARNING up, to stderr too.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import math
import os
import shutil
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import psutil
import psycopg
import trio
from psycopg.conninfo import make_conninfo

from api.app import Deps
from gateway.bootstrap import AdminLogin, ensure_first_company, hypercorn_config, run_app, tune_interpreter
from gateway.broker import Broker
from gateway.config import Config
from gateway.logs import JsonFormatter, TextFormatter
from storage import migrate, whatsapps
from storage.db import Database, open_pool
from storage.whatsapps import SessionStore

MODES = ("tiny", "quick", "full")
COMPANY_ID = 1  # the "Default" company that ensure_first_company creates on the fresh database
ADMIN_EMAIL = "admin@bench.zapgate"
ADMIN_PASSWORD = "bench-admin-password"


# ─── flags, progress, figures ───────────────────────────────────────────────────────────

def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_const", const="quick", dest="mode",
                      help="a size that finishes in under 2 minutes on 2 cores")
    size.add_argument("--tiny", action="store_const", const="tiny", dest="mode",
                      help="a size that only proves the benchmark runs (smoke test)")
    p.set_defaults(mode="full")
    p.add_argument("--json", action="store_true", help="end stdout with one JSON line of the figures")
    return p


class Progress:
    """Progress lines on stderr, each with the time since the benchmark started."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.started = time.perf_counter()

    def __call__(self, message: str) -> None:
        print(f"[{self.name} +{time.perf_counter() - self.started:6.1f}s] {message}", file=sys.stderr, flush=True)

    def elapsed(self) -> float:
        return time.perf_counter() - self.started


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of `values`; nan when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


@attrs.frozen
class Check:
    """A figure next to its target and the reference measured in the same run."""

    figure: str
    value: float | None
    target: float
    op: str  # ">=" or "<="
    unit: str = ""
    reference: str | None = None  # e.g. "raw_insert_per_s = 9120.4 (psycopg executemany, pipeline mode)"

    @property
    def met(self) -> bool | None:
        if self.value is None or math.isnan(self.value):
            return None
        return self.value >= self.target if self.op == ">=" else self.value <= self.target

    def as_dict(self) -> dict[str, Any]:
        return {"figure": self.figure, "value": self.value, "target": self.target, "op": self.op,
                "unit": self.unit, "reference": self.reference, "met": self.met}

    def line(self) -> str:
        verdict = {True: "met", False: "MISSED", None: "n/a"}[self.met]
        value = "n/a" if self.value is None else f"{self.value:,.2f}"
        text = f"  {self.figure:<34} {value:>12} {self.unit:<6} target {self.op} {self.target:<8g} {verdict:<6}"
        return text + (f"  (reference: {self.reference})" if self.reference else "")


def finish(progress: Progress, args: argparse.Namespace, figures: dict[str, Any], checks: list[Check],
           notes: list[str], environment: dict[str, Any]) -> None:
    """Print the report (and with --json the JSON line, last)."""
    print(f"{progress.name} ({args.mode} mode, {progress.elapsed():.1f}s)")
    for check in checks:
        print(check.line())
    shown = {c.figure for c in checks}
    others = {k: v for k, v in figures.items() if k not in shown}
    if others:
        print("  other figures: " + json.dumps(others, default=str))
    for note in notes:
        print(f"  note: {note}")
    sys.stdout.flush()
    if args.json:
        document = {"benchmark": progress.name, "mode": args.mode, **figures,
                    "checks": [c.as_dict() for c in checks], "notes": notes, "environment": environment,
                    "elapsed_s": round(progress.elapsed(), 1)}
        print(json.dumps(document, default=str), flush=True)


def rss_bytes() -> int:
    """Resident memory of this process after a full garbage collection."""
    gc.collect()
    gc.collect()
    return psutil.Process().memory_info().rss


# ─── the database ───────────────────────────────────────────────────────────────────────

@attrs.frozen
class BenchDatabase:
    url: str
    where: str  # "embedded pgserver" or "DATABASE_URL"
    server_version: str


@contextlib.contextmanager
def fresh_database(progress: Progress) -> Iterator[BenchDatabase]:
    """A new, migrated database on DATABASE_URL's server (dropped afterwards), else on an embedded one."""
    server_url = os.environ.get("DATABASE_URL", "").strip()
    if server_url:
        name = f"zapgate_bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        url = make_conninfo(server_url, dbname=name)
        try:
            yield _migrated(url, "DATABASE_URL", progress)
        finally:
            with psycopg.connect(server_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        return
    from gateway.embedded import embedded_postgres

    data_dir = Path(tempfile.mkdtemp(prefix="zapgate-bench-pg-"))
    try:
        progress("starting an embedded PostgreSQL (pgserver)")
        with embedded_postgres(data_dir, database="zapgate_bench") as url:
            yield _migrated(url, "embedded pgserver", progress)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def _migrated(url: str, where: str, progress: Progress) -> BenchDatabase:
    with psycopg.connect(url, autocommit=True) as conn:
        migrate.migrate(conn)
        version = conn.execute("SHOW server_version").fetchone()
    progress(f"fresh database migrated ({where}, PostgreSQL {version[0] if version else '?'})")
    return BenchDatabase(url, where, version[0] if version else "?")


def environment(database: BenchDatabase) -> dict[str, Any]:
    return {"postgres": database.server_version, "database": database.where, "python": sys.version.split()[0],
            "cpus": os.cpu_count()}


# ─── zapgate in-process ─────────────────────────────────────────────────────────────────

def bench_config(database_url: str, data_dir: Path, **overrides: Any) -> Config:
    """The production defaults, but a loopback port, fixed secrets and fast password hashing."""
    values: dict[str, Any] = {
        "port": 0, "host": "127.0.0.1", "database_url": database_url,
        "jwt_secret": "bench-secret-" + "x" * 32, "jwt_refresh_secret": "bench-refresh-" + "y" * 32,
        "access_token_ttl": 3 * 3600, "data_dir": data_dir, "admin_email": ADMIN_EMAIL,
        "admin_password": ADMIN_PASSWORD, "bcrypt_rounds": 4, "log_format": "json", "graceful_timeout": 2.0,
        "sandbox_journal": False,  # the simulator's durability (~25+ µs/message, trio thread) is not zapgate's
        # the benchmarks' thousands of sockets share one user's token, standing for as many browsers: the
        # per-user cap on handshakes in flight (50) would make them queue behind each other
        "realtime_pending_per_client": 10_000,
    }
    values.update(overrides)
    return Config(**values)


@contextlib.contextmanager
def app_logging(log_file: Path, level: str = "INFO") -> Iterator[None]:
    """zapgate's logs as production writes them (JSON, `level`) into a file; WARNING and up on stderr too."""
    root = logging.getLogger()
    to_file = logging.FileHandler(log_file)
    to_file.setFormatter(JsonFormatter())
    to_stderr = logging.StreamHandler(sys.stderr)
    to_stderr.setFormatter(TextFormatter())
    to_stderr.setLevel(logging.WARNING)
    saved = root.level, list(root.handlers)
    for handler in saved[1]:
        root.removeHandler(handler)
    root.addHandler(to_file)
    root.addHandler(to_stderr)
    root.setLevel(level)
    logging.getLogger("hypercorn.access").disabled = True
    try:
        yield
    finally:
        root.removeHandler(to_file)
        root.removeHandler(to_stderr)
        to_file.close()
        root.setLevel(saved[0])
        for handler in saved[1]:
            root.addHandler(handler)


@attrs.define
class App:
    url: str  # http://127.0.0.1:PORT
    port: int
    config: Config
    db: Database
    admin: AdminLogin
    deps: Deps

    @property
    def broker(self) -> Broker:
        return self.deps.broker


@contextlib.asynccontextmanager
async def open_app(database_url: str, data_dir: Path, **overrides: Any) -> AsyncIterator[App]:
    """zapgate's whole supervision tree and HTTP server (gateway.bootstrap.run_app) on a free loopback port."""
    config = bench_config(database_url, data_dir, **overrides)
    config.data_dir.mkdir(parents=True, exist_ok=True)
    pool = await trio.to_thread.run_sync(partial(open_pool, database_url, min_size=config.db_pool_min,
                                                 max_size=config.db_pool_max,
                                                 statement_timeout_ms=config.db_statement_timeout_ms))
    db = Database(pool)
    try:
        admin = await ensure_first_company(db, config)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        tune_interpreter()  # as `zapgate serve` does
        hc = hypercorn_config(config)
        hc.bind = [f"fd://{os.dup(sock.fileno())}"]  # hypercorn owns (and closes) the duplicate
        built: list[Deps] = []
        shutdown = trio.Event()
        async with trio.open_nursery() as nursery:
            await nursery.start(partial(run_app, config, db, hc=hc, broker=Broker(), shutdown=shutdown,
                                        on_deps=built.append))
            sock.close()
            try:
                yield App(f"http://127.0.0.1:{port}", port, config, db, admin, built[0])
            finally:
                shutdown.set()  # run_app drains and returns
    finally:
        await db.aclose()


async def paired_sandboxes(app: App, count: int, first: int = 0) -> list[int]:
    """`count` sandbox connections already paired (a device in the row: they connect without a QR); ids."""
    ids = []
    for index in range(first, first + count):
        number = f"55319{index:08d}"
        row = await whatsapps.create_whatsapp(app.db, COMPANY_ID, {"name": f"bench {index}", "channel": "sandbox"})
        await SessionStore(app.db).save_device(row["id"], {"jid": f"{number}@s.whatsapp.net", "number": number,
                                                           "pushName": f"bench {index}"})
        ids.append(row["id"])
    return ids


async def start_sessions(app: App, ids: list[int]) -> None:
    """Start the connections' sessions and wait until each has announced CONNECTED."""
    waiting = set(ids)
    with app.broker.subscribe(COMPANY_ID, maxsize=10 * len(ids) + 100) as events:
        for whatsapp_id in ids:
            await app.deps.sessions.start(whatsapp_id, COMPANY_ID)
        while waiting:
            event = await events.receive()
            session = event.payload.get("session") if event.name.endswith("-whatsappSession") else None
            if session is not None and session.get("status") == "CONNECTED":
                waiting.discard(session.get("id"))


def sql(url: str, query: str, params: Any = None) -> list[tuple[Any, ...]]:
    """Run SQL directly (blocking)."""
    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(query, params)
        return cursor.fetchall() if cursor.description else []


def run(main: Any, args: argparse.Namespace) -> None:
    """trio.run(main, args); a failure propagates (traceback on stderr, exit status 1)."""
    try:
        trio.run(main, args)
    except KeyboardInterrupt:
        sys.exit(130)
