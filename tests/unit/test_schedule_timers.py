"""A recurring scheduled message on the Scheduler's loop, under trio's autojump clock: every minute, three
times. The handler does what the schedule kind's send does (actors/schedules.py), over the in-memory timers of
tests/unit/test_scheduler.py: complete the timer, count the send (ENVIADA), arm the next occurrence that
`actors.schedules.following` decides and nudge the scheduler — so the send count, the times and the stop are
the scheduler's and the recurrence's, together."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import trio

from actors.schedules import following
from storage.timers import Timer
from tests.unit.test_scheduler import FakeStore, at, clock, scheduler

pytestmark = pytest.mark.trio

ZONE = ZoneInfo("America/Sao_Paulo")


class ScheduleOwner:
    """One schedule row and the `schedule` kind's handler over it."""

    def __init__(self, store: FakeStore, row: dict[str, Any]) -> None:
        self.store, self.row = store, row
        self.sends: list[float] = []  # trio times of the sends
        self.statuses: list[str] = [row["status"]]
        self.sched: Any = None

    async def __call__(self, batch: list[Timer]) -> None:
        await trio.lowlevel.checkpoint()
        for timer in batch:
            if not self.store.complete(timer):  # (one transaction in actors/schedules.send_work)
                continue
            now = clock()
            upcoming = following(self.row, now, ZONE, None)
            self.sends.append(trio.current_time())
            self.row.update(status="ENVIADA", sent_count=self.row["sent_count"] + 1, sent_at=now)
            self.statuses.append("ENVIADA")
            if upcoming is not None:
                self.store.schedule("schedule", timer.key, upcoming.at, {"schedule_id": 1})
                self.row.update(send_at=upcoming.at, nominal_at=upcoming.nominal, status="AGENDADA")
                self.statuses.append("AGENDADA")
                self.sched.nudge(upcoming.at)


def a_schedule(**fields: Any) -> dict[str, Any]:
    start = at(30)
    return {"status": "AGENDADA", "sent_count": 0, "sent_at": None, "send_at": start, "nominal_at": start,
            "anchor_at": start, "recurrence": "minutes", "recurrence_every": 1, "cron": None,
            "recurrence_count": 3, "recurrence_until": None, "skip_to_business_day": False, **fields}


async def run_for(store: FakeStore, owner: ScheduleOwner, seconds: float) -> None:
    sched = scheduler(store)
    owner.sched = sched
    sched.register("schedule", owner)
    async with trio.open_nursery() as nursery:
        await nursery.start(sched.run)
        await trio.sleep(seconds)
        nursery.cancel_scope.cancel()


async def test_every_minute_three_times_sends_its_count_and_stops(autojump_clock) -> None:
    store = FakeStore()
    owner = ScheduleOwner(store, a_schedule())
    store.schedule("schedule", "schedule:1", owner.row["send_at"], {"schedule_id": 1})
    await run_for(store, owner, 3600)
    assert owner.sends == [30.0, 90.0, 150.0]  # at its time, then a minute apart, never early
    assert owner.statuses == ["AGENDADA", "ENVIADA", "AGENDADA", "ENVIADA", "AGENDADA", "ENVIADA"]
    assert owner.row["sent_count"] == 3 and owner.row["status"] == "ENVIADA"
    assert store.states() == {"done": 3}  # no timer left: it stopped


async def test_an_end_date_stops_the_series_before_its_count(autojump_clock) -> None:
    store = FakeStore()
    owner = ScheduleOwner(store, a_schedule(recurrence_count=None, recurrence_until=at(100)))
    store.schedule("schedule", "schedule:1", owner.row["send_at"], {"schedule_id": 1})
    await run_for(store, owner, 3600)
    assert owner.sends == [30.0, 90.0]
    assert store.states() == {"done": 2}


async def test_a_series_due_while_down_sends_once_then_resumes_on_its_times(autojump_clock) -> None:
    """The process was down for ten minutes past the first occurrence: it is sent once at start, and the series
    goes on at its next minute to come, not in a burst of the missed ones."""
    store = FakeStore()
    start = at(30) - dt.timedelta(minutes=10)
    owner = ScheduleOwner(store, a_schedule(send_at=start, nominal_at=start, anchor_at=start, recurrence_count=4))
    store.schedule("schedule", "schedule:1", start, {"schedule_id": 1})
    await run_for(store, owner, 3600)
    assert owner.sends == [0.0, 30.0, 90.0, 150.0]
