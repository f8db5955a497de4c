"""The receipt batcher's own rules, over an in-memory stand-in of the database: a full queue makes the sessions
wait, a batch takes what arrived meanwhile, and a receipt is settled only after its batch's write returned."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace
from typing import Any

import trio
import trio.testing

from actors.receipts import ReceiptBatcher
from gateway.whatsapp import transport as wa


class SlowDatabase:
    """Answers each batch's write after `delay` (the statements themselves are PostgreSQL's business: tested
    in tests/integration/test_receipt_batches.py); counts the writes and what was settled before each."""

    q = SimpleNamespace(message_ack_many="", tickets_show="")

    def __init__(self, delay: float, settled: list[str]) -> None:
        self.delay = delay
        self.settled = settled
        self.writes: list[int] = []  # how many receipts were settled when each write began

    async def run(self, work: Any) -> list[Any]:
        self.writes.append(len(self.settled))
        await trio.sleep(self.delay)
        return []


def receipt(name: str, settled: list[str]) -> wa.Receipt:
    return wa.Receipt(f"{name}@s.whatsapp.net", (f"W{name}",), wa.Ack.READ, dt.datetime.now(dt.UTC),
                      settle=lambda: settled.append(name))


async def test_a_full_queue_makes_the_sender_wait_and_batches_take_what_arrived(
        autojump_clock: trio.testing.MockClock) -> None:
    settled: list[str] = []
    db = SlowDatabase(1.0, settled)
    batcher = ReceiptBatcher(db, lambda *args: None, max_waiting=3, batch=2)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        for name in ("1", "2", "3"):
            await batcher.put(1, 7, receipt(name, settled))
        with trio.move_on_after(5) as waited:  # the fourth waits: nobody takes from the queue yet
            await batcher.put(1, 7, receipt("4", settled))
        assert waited.cancelled_caught and batcher.waiting == 3
        await nursery.start(batcher.run)
        await batcher.put(1, 7, receipt("4", settled))  # room as soon as the first batch is taken
        while len(settled) < 4:
            await trio.sleep(0.1)
        # batches of at most 2; none settled before the write of its batch returned
        assert settled == ["1", "2", "3", "4"]
        assert db.writes == [0, 2]
        assert batcher.stats()["batches"] == 2 and batcher.stats()["receipts"] == 4
        nursery.cancel_scope.cancel()


async def test_a_bug_in_a_batch_leaves_its_receipts_unsettled_and_the_batcher_running(
        autojump_clock: trio.testing.MockClock) -> None:
    settled: list[str] = []

    class Broken(SlowDatabase):
        async def run(self, work: Any) -> list[Any]:
            if not self.writes:
                self.writes.append(0)
                raise RuntimeError("a bug")
            return await super().run(work)

    db = Broken(0.1, settled)
    batcher = ReceiptBatcher(db, lambda *args: None)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        await nursery.start(batcher.run)
        await batcher.put(1, 7, receipt("1", settled))
        await trio.sleep(1)
        await batcher.put(1, 7, receipt("2", settled))
        await trio.sleep(1)
        assert settled == ["2"]  # the first not settled: the network sends it again
        assert batcher.stats()["errors"] == 1
        nursery.cancel_scope.cancel()
