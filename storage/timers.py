"""Durable timers (DESIGN §7b "Every wait is a durable timer"): rows that say what fires when.

A timer belongs to a company and is named by its `kind` (which owner handles it: the scheduler hands the
claimed timers of a kind to that kind's handler, actors/scheduler.py) and its `key` (what it is about,
e.g. ``ticket:42:inactivity``). A key has at most one live timer (pending or claimed):

- `schedule` creates it, or moves it (new due_at and payload, pending again, `generation` + 1);
- `cancel` deletes it (a cancelled timer leaves no row);
- the scheduler claims it when due (`claim_due`: pending → claimed, `attempts` + 1) and hands it over;
- its owner calls `complete` **in the same transaction as the effect** the timer causes, and does the
  effect only when `complete` returns True: it does so only while the timer is still claimed in the
  generation the owner was handed. A timer cancelled or rescheduled while its owner handled it does not
  complete, so the effect is dropped with the transaction — and a rescheduled one fires again at its new
  time. Whatever the number of deliveries (a lease that ran out, a restart), an effect commits once.
- `fail` gives it up (`last_error`); done and failed rows are pruned a week later (`prune_finished`).

Every function but the async `prune_finished` is synchronous over a psycopg connection, run by the caller
inside its own transaction (`Database.run(fn)`, or the group-commit writer's `submit(fn)`). Times are
timezone-aware datetimes; the scheduler compares them with the application's clock, so callers compute
`due_at` from the same clock (`datetime.now(UTC)` plus the wait).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import psycopg
from psycopg.types.json import Jsonb

from storage.db import Database, Row
from storage.sql import load_queries

Q = load_queries(Path(__file__).with_name("timers.sql"))

PRUNE_AFTER = dt.timedelta(days=7)  # done and failed timers are kept this long (what happened, for support)
PRUNE_SLICE = 10_000  # rows deleted per statement by the prune


@attrs.frozen
class Timer:
    """A claimed (or just scheduled) timer, as its owner is handed it."""

    id: int
    company_id: int
    kind: str
    key: str
    due_at: dt.datetime
    payload: dict[str, Any]
    generation: int
    attempts: int


@attrs.frozen
class Upcoming:
    """What the scheduler sleeps for."""

    next_due_at: dt.datetime | None  # the earliest pending timer (of the kinds asked for)
    oldest_claim_at: dt.datetime | None  # the oldest claim not completed yet (its lease ends after it)


def _timer(row: Row) -> Timer:
    return Timer(id=row["id"], company_id=row["company_id"], kind=row["kind"], key=row["key"], due_at=row["due_at"],
                 payload=row["payload"] if isinstance(row["payload"], dict) else {}, generation=row["generation"],
                 attempts=row["attempts"])


def _aware(when: dt.datetime) -> dt.datetime:
    if when.tzinfo is None:
        raise ValueError("timer times must be timezone-aware")
    return when


def _claims(timers: Sequence[Timer]) -> dict[str, Any]:
    """A batch's claims as the batch statements take them (storage/timers.sql, timer_complete_many)."""
    return {"ids": [t.id for t in timers], "claims": Jsonb({str(t.id): [t.company_id, t.generation] for t in timers})}


# ─── the owners' side ───────────────────────────────────────────────────────────────────

def schedule(conn: psycopg.Connection[Row], *, company_id: int, kind: str, key: str, due_at: dt.datetime,
             payload: dict[str, Any] | None = None) -> Timer:
    """Create the live timer of (company, kind, key), or reschedule it: new due_at and payload, pending
    again, generation + 1 (a claim of it being handled now will not complete)."""
    row = conn.execute(Q.timer_schedule, {"company_id": company_id, "kind": kind, "key": key,
                                          "due_at": _aware(due_at), "payload": Jsonb(payload or {})}).fetchone()
    assert row is not None
    return _timer(row)


def live(conn: psycopg.Connection[Row], *, company_id: int, kind: str, key: str) -> Timer | None:
    """The live (pending or claimed) timer of that key, if any."""
    row = conn.execute(Q.timer_live, {"company_id": company_id, "kind": kind, "key": key}).fetchone()
    return None if row is None else _timer(row)


def cancel(conn: psycopg.Connection[Row], *, company_id: int, kind: str, key: str) -> bool:
    """Delete the live timer of that key; True when there was one. A claim of it being handled will not
    complete."""
    return conn.execute(Q.timer_cancel, {"company_id": company_id, "kind": kind, "key": key}).fetchone() is not None


def complete(conn: psycopg.Connection[Row], timer: Timer) -> bool:
    """Mark `timer` done if it is still claimed in its generation; False when it was cancelled, rescheduled
    or already completed meanwhile. Call it in the transaction of the timer's effect; do the effect only on
    True (a False leaves the transaction's other writes to the caller: roll back, or write nothing)."""
    params = {"id": timer.id, "company_id": timer.company_id, "generation": timer.generation}
    return conn.execute(Q.timer_complete, params).fetchone() is not None


def complete_many(conn: psycopg.Connection[Row], timers: Sequence[Timer]) -> set[int]:
    """`complete` for a batch in one statement; the ids of those that completed."""
    if not timers:
        return set()
    return {row["id"] for row in conn.execute(Q.timer_complete_many, _claims(timers)).fetchall()}


def fail(conn: psycopg.Connection[Row], timer: Timer, error: str) -> None:
    """Give `timer` up (state failed, `last_error`), if it is still claimed in its generation."""
    conn.execute(Q.timer_fail, {"id": timer.id, "company_id": timer.company_id, "generation": timer.generation,
                                "error": error})


# ─── the scheduler's side ───────────────────────────────────────────────────────────────

def claim_due(conn: psycopg.Connection[Row], *, now: dt.datetime, limit: int,
              kinds: Sequence[str] | None = None) -> list[Timer]:
    """Claim up to `limit` timers due at `now` (of `kinds`; None: any), earliest first, skipping rows that
    another transaction holds. Each claim counts as an attempt."""
    rows = conn.execute(Q.timer_claim_due, {"now": _aware(now), "limit": limit,
                                            "kinds": None if kinds is None else list(kinds)}).fetchall()
    return sorted((_timer(row) for row in rows), key=lambda t: (t.due_at, t.id))


def next_due(conn: psycopg.Connection[Row], *, kinds: Sequence[str] | None = None) -> Upcoming:
    """The earliest pending due_at (of `kinds`; None: any) and the oldest claim, in one statement."""
    row = conn.execute(Q.timer_next_due, {"kinds": None if kinds is None else list(kinds)}).fetchone()
    assert row is not None
    return Upcoming(row["next_due_at"], row["oldest_claim_at"])


def next_due_at(conn: psycopg.Connection[Row], *, kinds: Sequence[str] | None = None) -> dt.datetime | None:
    return next_due(conn, kinds=kinds).next_due_at


def release(conn: psycopg.Connection[Row], timers: Sequence[Timer], *, now: dt.datetime, counted: bool,
            error: str | None = None, max_attempts: int = 5, backoff_initial: float = 5.0,
            backoff_max: float = 300.0) -> dict[str, int]:
    """Hand claims back (those still claimed in their generation).

    `counted`: the claim was a failed attempt (its handler raised): pending again after a backoff
    (`backoff_initial` seconds doubling per attempt, at most `backoff_max`), or failed with `error` once it
    has had `max_attempts`. Not counted (the database was away, the scheduler stopped): pending again, due
    as before, the attempt taken back. How many went each way: ``{"pending": n, "failed": n}``.
    """
    if not timers:
        return {"pending": 0, "failed": 0}
    params = {**_claims(timers), "now": _aware(now), "counted": counted, "error": error, "max_attempts": max_attempts,
              "backoff_initial": backoff_initial, "backoff_max": backoff_max}
    states = [row["state"] for row in conn.execute(Q.timer_release, params).fetchall()]
    return {"pending": states.count("pending"), "failed": states.count("failed")}


def release_stale(conn: psycopg.Connection[Row], *, before: dt.datetime | None = None,
                  max_attempts: int | None = None, error: str | None = None) -> dict[str, int]:
    """Claims made at or before `before` (None: every claim) that nobody completed: pending again, due at
    once — or failed once they have had `max_attempts` (None: never). ``{"pending": n, "failed": n}``."""
    params = {"before": _aware(before) if before is not None else dt.datetime.max.replace(tzinfo=dt.UTC),
              "max_attempts": max_attempts, "error": error}
    states = [row["state"] for row in conn.execute(Q.timer_release_stale, params).fetchall()]
    return {"pending": states.count("pending"), "failed": states.count("failed")}


def count_pending(conn: psycopg.Connection[Row]) -> int:
    row = conn.execute(Q.timer_count_pending).fetchone()
    return 0 if row is None else int(row["pending"])


def overview(conn: psycopg.Connection[Row], *, now: dt.datetime) -> list[Row]:
    """The live timers of all companies by kind: pending, due (pending and due by `now`), claimed, the next
    due and the oldest claim (the super admin's runtime view)."""
    return conn.execute(Q.timer_overview, {"now": now}).fetchall()


async def prune_finished(db: Database, *, older_than: dt.timedelta = PRUNE_AFTER) -> int:
    """Delete done and failed timers finished more than `older_than` ago (the housekeeper, hourly)."""
    before = dt.datetime.now(dt.UTC) - older_than
    deleted = 0
    while True:
        count = await db.execute(Q.timer_prune, {"before": before, "limit": PRUNE_SLICE})
        deleted += count
        if count < PRUNE_SLICE:
            return deleted
