"""The Housekeeper rides out the database (issue 22, item 6): in-memory stand-ins, autojump clock."""

from __future__ import annotations

import itertools
import logging
import random

import pytest
import trio

from gateway.housekeeper import Housekeeper
from storage.db import DatabaseHealth
from storage.errors import QueryTimeout, Unavailable

pytestmark = pytest.mark.trio


class FakeDb:
    """`probe` and `health` as storage.db.Database has them; `down` makes every call raise Unavailable."""

    def __init__(self) -> None:
        self.health = DatabaseHealth(clock=trio.current_time)
        self.down = False
        self.probes: list[float] = []

    def check(self) -> None:
        if self.down:
            error = Unavailable("connection to server at 127.0.0.1 failed: Connection refused")
            self.health.mark_down(error)
            raise error
        self.health.mark_up()

    async def probe(self) -> None:
        await trio.lowlevel.checkpoint()
        self.probes.append(trio.current_time())
        self.check()


async def test_a_purge_that_fails_is_logged_once_and_retried_never_a_crash(autojump_clock, caplog) -> None:
    db = FakeDb()
    purges: list[float] = []

    async def purge(_: FakeDb) -> int:
        await trio.lowlevel.checkpoint()
        purges.append(trio.current_time())
        if len(purges) == 2:
            raise QueryTimeout("canceling statement due to statement timeout")
        db.check()
        return 7

    housekeeper = Housekeeper(db, period=3600, purge=purge, rng=random.Random(1))  # type: ignore[arg-type]
    caplog.set_level(logging.INFO, logger="zapgate.housekeeper")
    with trio.fail_after(10_000):
        async with trio.open_nursery() as nursery:
            await nursery.start(housekeeper.run)
            await trio.sleep(3000)
            db.down = True  # the hourly purge comes during a 30 s outage
            await trio.sleep(630)
            assert len(purges) >= 4  # 3600 s: fails (timeout), then retries refused by the outage
            db.down = False
            await trio.sleep(100)
            nursery.cancel_scope.cancel()

    assert purges[0] == 0 and purges[1] == 3600
    gaps = [later - earlier for earlier, later in itertools.pairwise(purges[1:])]
    assert all(0.8 <= gap <= 60 * 1.2 for gap in gaps), gaps  # a short backoff, not the hour
    assert all(later >= earlier * 0.8 for earlier, later in itertools.pairwise(gaps))  # growing
    assert purges[-1] >= 3630  # it ran again once the database was back
    failed = [r for r in caplog.records if r.getMessage().startswith("purging old logins failed")]
    assert len(failed) == housekeeper.purge_failures == len(purges) - 2  # one line per failure, no traceback
    assert all(r.exc_info is None for r in failed)
    assert [r.getMessage() for r in caplog.records].count("purged old logins") == 2


async def test_the_watch_notices_an_outage_and_its_end_without_traffic(autojump_clock) -> None:
    db = FakeDb()

    async def purge(_: FakeDb) -> int:
        return 0

    housekeeper = Housekeeper(db, purge=purge, watch_period=15, watch_period_down=2)  # type: ignore[arg-type]
    with trio.fail_after(10_000):
        async with trio.open_nursery() as nursery:
            await nursery.start(housekeeper.run)
            await trio.sleep(20)
            assert not db.health.down and len(db.probes) == 1
            db.down = True
            await trio.sleep(15)
            assert db.health.down and db.health.outages == 1
            probes_before = len(db.probes)
            await trio.sleep(10)
            assert len(db.probes) >= probes_before + 4  # every 2 s while down
            db.down = False
            await trio.sleep(3)
            assert not db.health.down and db.health.recovered_at is not None
            nursery.cancel_scope.cancel()


async def test_the_invoice_sweep_runs_at_start_then_daily_and_rides_out_failures(autojump_clock) -> None:
    db = FakeDb()
    sweeps: list[float] = []

    async def purge(_: FakeDb) -> int:
        return 0

    async def sweep(_: FakeDb) -> int:
        await trio.lowlevel.checkpoint()
        sweeps.append(trio.current_time())
        if len(sweeps) == 2:
            raise Unavailable("connection refused")
        return 1

    housekeeper = Housekeeper(db, purge=purge, invoice_sweep=sweep, rng=random.Random(1))  # type: ignore[arg-type]
    with trio.fail_after(10 * 86400):
        async with trio.open_nursery() as nursery:
            await nursery.start(housekeeper.run)
            await trio.sleep(2 * 86400 + 100)
            nursery.cancel_scope.cancel()
    assert sweeps[0] == 0 and sweeps[1] == 86400  # at start, then a day later
    assert 86400 < sweeps[2] < 86400 + 5  # the failed one is retried after a short backoff, not a day
    assert housekeeper.sweep_failures == 1 and len(sweeps) == 4
