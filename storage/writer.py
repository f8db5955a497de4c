"""The group-commit writer: many actors' small writes flushed together in one transaction.

A TicketActor hands `submit` a sync function of a connection (its few statements). The writer
collects what arrives while the previous flush runs (up to `max_batch`), runs them all in one
transaction on a worker thread — one commit, one fsync, for the lot — and wakes each caller with
its own result once the transaction is durable. If the batch fails, it is retried one write per
transaction, so a bad write fails alone and the others still commit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

import attrs
import outcome
import psycopg
import trio

from storage.db import Database, Row
from storage.errors import map_errors

log = logging.getLogger("zapgate.writer")

T = TypeVar("T")
Write = Callable[[psycopg.Connection[Row]], Any]

QUEUE_SIZE = 10_000  # writes waiting for a flush; a full queue makes submitters wait (backpressure)
MAX_BATCH = 500


@attrs.define
class _Pending:
    write: Write
    done: trio.Event = attrs.field(factory=trio.Event)
    result: outcome.Outcome | None = None


class GroupCommitWriter:
    """An actor: start with `await nursery.start(writer.run)`; then `await writer.submit(fn)`."""

    def __init__(self, db: Database, *, max_batch: int = MAX_BATCH, queue_size: int = QUEUE_SIZE) -> None:
        self.db = db
        self.max_batch = max_batch
        self._send, self._receive = trio.open_memory_channel[_Pending](queue_size)
        self.flushes = 0
        self.writes = 0
        self.largest_batch = 0

    async def submit(self, write: Callable[[psycopg.Connection[Row]], T]) -> T:
        """Run `write(conn)` in the next group transaction; return its result once committed."""
        pending = _Pending(write)
        await self._send.send(pending)
        # Not cancellable once queued: the caller learns the fate of a write it started.
        with trio.CancelScope(shield=True):
            await pending.done.wait()
        assert pending.result is not None
        return pending.result.unwrap()

    async def run(self, *, task_status: trio.TaskStatus[GroupCommitWriter] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started(self)
        while True:
            batch = [await self._receive.receive()]
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._receive.receive_nowait())
                except trio.WouldBlock:
                    break
            # A flush is not interrupted halfway: its callers are waiting for it.
            with trio.CancelScope(shield=True):
                await self._flush(batch)

    async def _flush(self, batch: list[_Pending]) -> None:
        self.flushes += 1
        self.writes += len(batch)
        self.largest_batch = max(self.largest_batch, len(batch))
        try:
            results = await trio.to_thread.run_sync(self._run_together, batch, limiter=self.db.limiter)
        except Exception as error:
            if len(batch) == 1:
                results = [outcome.Error(error)]
            else:
                log.info("group commit failed; retrying its writes one by one", exc_info=True,
                         extra={"fields": {"batch": len(batch)}})
                results = await trio.to_thread.run_sync(self._run_alone, batch, limiter=self.db.limiter)
        for pending, result in zip(batch, results, strict=True):
            pending.result = result
            pending.done.set()

    def _run_together(self, batch: list[_Pending]) -> list[outcome.Outcome]:
        with map_errors(), self.db.pool.connection() as conn, conn.transaction():
            return [outcome.Value(pending.write(conn)) for pending in batch]

    def _run_alone(self, batch: list[_Pending]) -> list[outcome.Outcome]:
        results: list[outcome.Outcome] = []
        for pending in batch:
            try:
                with map_errors(), self.db.pool.connection() as conn, conn.transaction():
                    results.append(outcome.Value(pending.write(conn)))
            except Exception as error:
                results.append(outcome.Error(error))
        return results

    def stats(self) -> dict[str, float]:
        return {"flushes": self.flushes, "writes": self.writes, "largest_batch": self.largest_batch,
                "mean_batch": round(self.writes / self.flushes, 2) if self.flushes else 0.0}
