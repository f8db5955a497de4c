"""The group-commit writer: many actors' small writes flushed together in one transaction.

A TicketActor hands `submit` its write, one of two kinds:
- a sync function of a connection (its few statements), run as it is;
- a `Batched` write: one statement and its parameters. All the batched writes of a flush that share
  the same SQL run as one `executemany` in pipeline mode (one round trip for the lot instead of one
  each); each caller gets the row its own parameters returned, passed through its `finish(conn, row)`
  in the same transaction (for the rare case that needs more statements).

The writer collects what arrives while the previous flush runs (up to `max_batch`), runs them all in
one transaction on a worker thread — one commit, one fsync, for the lot — and wakes each caller with
its own result once the transaction is durable: as soon as the next flush is running (at once when
there is none), so that the callers' own work overlaps with the next transaction. The writes of one
flush are concurrent (none of their callers has been answered yet), so the writer may run them in any
order: the plain ones first, in order of arrival, then each group of batched ones. If the flush fails,
it is retried one write per transaction, so a bad write fails alone and the others still commit —
unless the database was unreachable (`Unavailable`): then every write of the flush gets that error at
once (its outcome may be unknown — a COMMIT cut off — so the callers retry writes that are keyed:
intake by WhatsApp id, the outbox by the id chosen before the write).

Every caller is answered, whatever happens: `drain()` (shutdown, once the actors are done) flushes
what is queued and stops taking writes; a cancelled writer answers what is left with `Unavailable`;
a flush is not interrupted by a cancel, but it is bounded (`flush_timeout`): past it the thread is
abandoned and its callers told so.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar, overload

import attrs
import outcome
import psycopg
import trio
from psycopg.rows import tuple_row

from storage.db import Database, Row
from storage.errors import Unavailable

log = logging.getLogger("zapgate.writer")

T = TypeVar("T")
Write = Callable[[psycopg.Connection[Row]], Any]

QUEUE_SIZE = 10_000  # writes waiting for a flush; a full queue makes submitters wait (backpressure)
MAX_BATCH = 500
FLUSH_TIMEOUT = 30.0  # seconds a flush may take (the pool's wait for a connection included) before it is abandoned


@attrs.frozen
class Batched(Generic[T]):
    """One statement that returns at most one row, run in an `executemany` with the others of its SQL.

    `finish(conn, row)` (row is None when the statement returned none) runs in the same transaction and
    its value is the caller's result; without `finish` the result is the row itself.
    """

    sql: str
    params: Mapping[str, Any]
    finish: Callable[[psycopg.Connection[Row], Row | None], T] | None = None
    # runs the whole group (the parameter sets of a flush's writes of this SQL) at once, returning the row of
    # each in order: e.g. one set-based statement instead of an executemany of `sql`
    many: Callable[[psycopg.Connection[Row], list[Mapping[str, Any]]], list[Row | None]] | None = None


@attrs.define
class _Pending:
    write: Write | Batched[Any]
    result: outcome.Outcome | None = None
    task: trio.lowlevel.Task | None = None  # the submitter, once parked waiting for the result
    woken: bool = False


class GroupCommitWriter:
    """An actor: start with `await nursery.start(writer.run)`; then `await writer.submit(write)`."""

    def __init__(self, db: Database, *, max_batch: int = MAX_BATCH, queue_size: int = QUEUE_SIZE,
                 flush_timeout: float = FLUSH_TIMEOUT) -> None:
        self.db = db
        self.max_batch = max_batch
        self.flush_timeout = flush_timeout
        self._closed = False
        self._idle = trio.Event()  # set whenever nothing is queued or in flight
        self._send, self._receive = trio.open_memory_channel[_Pending](queue_size)
        self.flushes = 0
        self.writes = 0
        self.batched_writes = 0
        self.largest_batch = 0
        self.queue_size = queue_size
        # called after each flush with its number of writes and its seconds (metrics; set by the composition root)
        self.on_flush: Callable[[int, float], None] | None = None

    @property
    def queued(self) -> int:
        """Writes waiting for a flush, and submitters waiting for room in the queue."""
        stats = self._send.statistics()
        return stats.current_buffer_used + stats.tasks_waiting_send

    @overload
    async def submit(self, write: Batched[T]) -> T: ...

    @overload
    async def submit(self, write: Callable[[psycopg.Connection[Row]], T]) -> T: ...

    async def submit(self, write: Any) -> Any:
        """Run `write` in the next group transaction; return its result once committed.

        Raises `Unavailable` when the writer has stopped (shutdown) or the database could not be reached.
        """
        if self._closed:
            raise Unavailable("the writer has stopped (shutting down)")
        pending = _Pending(write)
        self._idle = trio.Event() if self._idle.is_set() else self._idle
        try:
            self._send.send_nowait(pending)
        except trio.WouldBlock:
            await self._send.send(pending)  # backpressure: the queue is full
        if pending.woken:  # committed while we waited for room in the queue
            assert pending.result is not None
            return pending.result.unwrap()
        # Not cancellable once queued: the caller learns the fate of a write it started. A bare park
        # rather than a shielded Event.wait: this runs for every message, and a cancel scope and an
        # event per write were a tenth of a ticket actor's time.
        pending.task = trio.lowlevel.current_task()
        return await trio.lowlevel.wait_task_rescheduled(_not_abortable)

    async def drain(self) -> None:
        """Shutdown: take no more writes, flush what is queued, return once every caller is answered."""
        self._closed = True
        while self._receive.statistics().current_buffer_used or self._send.statistics().tasks_waiting_send \
                or not self._idle.is_set():
            await self._idle.wait()
            await trio.lowlevel.checkpoint()

    async def run(self, *, task_status: trio.TaskStatus[GroupCommitWriter] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started(self)
        committed: list[_Pending] = []  # the last flush: durable, its callers not woken yet
        batch: list[_Pending] = []
        try:
            while True:
                await trio.lowlevel.checkpoint_if_cancelled()  # cancelled: stop between flushes (see finally)
                batch = self._take_nowait([])
                if not batch:  # nothing to flush next: wake the last flush's callers now, then wait
                    _wake(committed)
                    committed = []
                    self._idle.set()
                    batch = self._take_nowait([await self._receive.receive()])
                # A flush is not interrupted halfway by a cancel (its callers are waiting for it), but it is
                # bounded: a database that hangs is abandoned after flush_timeout.
                began = time.perf_counter()
                with trio.CancelScope(shield=True, deadline=trio.current_time() + self.flush_timeout):
                    await self._flush(batch, committed)
                if self.on_flush is not None:
                    self.on_flush(len(batch), time.perf_counter() - began)
                committed, batch = batch, []
        finally:
            _wake(committed)
            # Stopped (cancelled): whatever is left is answered, never left waiting.
            left = [pending for pending in batch if pending.result is None]
            while True:
                try:
                    left.append(self._receive.receive_nowait())
                except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                    break
            for pending in left:  # an outcome each: an outcome is unwrapped once
                pending.result = outcome.Error(Unavailable("the writer stopped before this write ran"))
            _wake(left)
            self._closed = True
            self._idle.set()

    def _take_nowait(self, batch: list[_Pending]) -> list[_Pending]:
        while len(batch) < self.max_batch:
            try:
                batch.append(self._receive.receive_nowait())
            except trio.WouldBlock:
                break
        return batch

    async def _flush(self, batch: list[_Pending], previous: list[_Pending]) -> None:
        """Run `batch`, setting each one's result; wake the callers of `previous` once this runs.

        Woken, the previous flush's callers do their next piece of work (publishing, then submitting
        their next write) while this flush is in the database, rather than before it starts: the trio
        scheduler would otherwise run hundreds of them ahead of the writer.
        """
        self.flushes += 1
        self.writes += len(batch)
        self.batched_writes += sum(isinstance(pending.write, Batched) for pending in batch)
        self.largest_batch = max(self.largest_batch, len(batch))
        token = trio.lowlevel.current_trio_token()

        def run_together() -> list[outcome.Outcome]:
            token.run_sync_soon(_wake, previous)
            return self._run_together(batch)

        try:
            results = await trio.to_thread.run_sync(run_together, limiter=self.db.limiter, abandon_on_cancel=True)
        except trio.Cancelled:
            # past flush_timeout (or a hard stop): the thread goes on alone; its outcome is unknown
            reason = f"the database did not answer within {self.flush_timeout:g}s"
            for pending in batch:
                pending.result = outcome.Error(Unavailable(reason))
            raise
        except Exception as error:
            if len(batch) == 1 or isinstance(error, Unavailable):
                # unreachable: trying each alone would only wait longer (an outcome each: unwrapped once)
                results = [outcome.Error(error) for _ in batch]
            else:
                log.info("group commit failed; retrying its writes one by one", exc_info=True,
                         extra={"fields": {"batch": len(batch)}})
                results = await trio.to_thread.run_sync(self._run_alone, batch, limiter=self.db.limiter)
        finally:
            _wake(previous)  # already done, unless the thread never ran
        for pending, result in zip(batch, results, strict=True):
            pending.result = result

    def _run_together(self, batch: list[_Pending]) -> list[outcome.Outcome]:
        with self.db.connection() as conn, conn.transaction():  # errors mapped, the database's health marked
            return [outcome.Value(value) for value in _run_writes(conn, [pending.write for pending in batch])]

    def _run_alone(self, batch: list[_Pending]) -> list[outcome.Outcome]:
        results: list[outcome.Outcome] = []
        for pending in batch:
            try:
                with self.db.connection() as conn, conn.transaction():
                    results.append(outcome.Value(_run_writes(conn, [pending.write])[0]))
            except Exception as error:
                results.append(outcome.Error(error))
        return results

    def stats(self) -> dict[str, float]:
        return {"flushes": self.flushes, "writes": self.writes, "batched_writes": self.batched_writes,
                "largest_batch": self.largest_batch,
                "mean_batch": round(self.writes / self.flushes, 2) if self.flushes else 0.0}


def _wake(committed: list[_Pending]) -> None:
    """Hand each caller its result (once: a flush's callers may be woken from two places)."""
    for pending in committed:
        if pending.woken:
            continue
        pending.woken = True
        if pending.task is not None:
            trio.lowlevel.reschedule(pending.task, pending.result)


def _not_abortable(_: Any) -> trio.lowlevel.Abort:
    return trio.lowlevel.Abort.FAILED


def _run_writes(conn: psycopg.Connection[Row], writes: list[Write | Batched[Any]]) -> list[Any]:
    """Run the writes of one transaction; their results, in the order of `writes`."""
    results: list[Any] = [None] * len(writes)
    groups: dict[str, list[tuple[int, Batched[Any]]]] = {}  # SQL → its batched writes, in order of arrival
    for index, write in enumerate(writes):
        if isinstance(write, Batched):
            groups.setdefault(write.sql, []).append((index, write))
        else:
            results[index] = write(conn)
    for sql, group in groups.items():
        params = [batched.params for _, batched in group]
        many = group[0][1].many
        rows = many(conn, params) if many is not None else execute_many(conn, sql, params)
        if len(rows) != len(params):
            raise RuntimeError(f"a batch of {len(params)} writes returned {len(rows)} results")
        for (index, batched), row in zip(group, rows, strict=True):
            results[index] = row if batched.finish is None else batched.finish(conn, row)
    return results


def execute_many(conn: psycopg.Connection[Row], sql: str, params: list[Mapping[str, Any]]) -> list[Row | None]:
    """One statement for each parameter set, in one round trip; the row each returned (None: no row).

    Rows are fetched as tuples and named once: every parameter set has its own result, and the
    connection's dict rows would read the column names of each of them again.
    """
    with conn.pipeline(), conn.cursor(row_factory=tuple_row) as cursor:
        cursor.executemany(sql, params, returning=True)
        values = [cursor.fetchone() for _ in cursor.results()]
        names = [sys.intern(column.name) for column in cursor.description or ()]
    if len(values) != len(params):  # each parameter set yields one result, even an empty one
        raise RuntimeError(f"executemany returned {len(values)} results for {len(params)} parameter sets")
    return [None if row is None else dict(zip(names, row, strict=True)) for row in values]
