"""Supervisor: restarts with backoff, restart budget and escalation, policies, isolation, shutdown."""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable

import attrs
import pytest
import trio

from gateway.supervisor import (
    ChildAlreadyStarted,
    ChildSpec,
    ChildState,
    Jitter,
    RestartBudgetExhausted,
    RestartPolicy,
    StartAborted,
    Supervisor,
)

Step = Callable[[], Awaitable[None]]


class Boom(Exception):
    pass


def crash(after: float = 0.0) -> Step:
    async def step() -> None:
        await trio.sleep(after)
        raise Boom(f"crash after {after}s")

    return step


def exit_after(after: float = 0.0) -> Step:
    async def step() -> None:
        await trio.sleep(after)

    return step


forever: Step = trio.sleep_forever


@attrs.define(eq=False)
class Actor:
    """A scripted child: incarnation n runs ``script[n]`` (the last step repeats); its handle is n."""

    script: list[Step]
    starts: list[float] = attrs.field(factory=list)
    finals: int = 0

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        n = len(self.starts)
        self.starts.append(trio.current_time())
        step = self.script[min(n, len(self.script) - 1)]
        task_status.started(n)
        try:
            await step()
        finally:
            self.finals += 1

    def deltas(self) -> list[float]:
        return [b - a for a, b in zip(self.starts, self.starts[1:], strict=False)]


class FixedRandom(random.Random):
    """An rng whose every draw is ``value``: pins the jitter to one end of its range."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


async def failing_start(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    await trio.sleep(1)
    raise Boom("cannot start")


@pytest.mark.trio
async def test_crash_is_logged_and_restarted_after_jittered_backoff(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    actor = Actor([crash(after=2), forever])
    sup = Supervisor("sessions", [ChildSpec("a", actor.run)], backoff_initial=1.0, rng=random.Random(1234))
    async with trio.open_nursery() as nursery:
        handle = await nursery.start(sup.run)
        assert handle.child_handle("a") == 0
        await trio.sleep(10)
        (delta,) = actor.deltas()
        assert 2 + 0.8 <= delta <= 2 + 1.2  # ran 2 s, then backoff 1 s ± 20 %
        assert handle.which_children() == [("a", ChildState.RUNNING, 1)]
        assert handle.child_handle("a") == 1  # the restarted incarnation's handle
        handle.cancel()
    crashes = [r for r in caplog.records if r.name == "zapgate.supervisor" and r.levelno == logging.ERROR]
    assert len(crashes) == 1
    assert "'a'" in crashes[0].getMessage()
    assert crashes[0].exc_info is not None and crashes[0].exc_info[0] is Boom


@pytest.mark.trio
@pytest.mark.parametrize(
    ("jitter", "draw", "expected"),
    [
        (Jitter.NONE, 0.9, 1.0),
        (Jitter.PROPORTIONAL, 0.0, 0.8),
        (Jitter.PROPORTIONAL, 0.5, 1.0),
        (Jitter.PROPORTIONAL, 0.99, 1.196),
        (Jitter.FULL, 0.25, 0.25),
    ],
)
async def test_backoff_jitter_comes_from_the_injected_rng(
    autojump_clock: trio.abc.Clock, jitter: Jitter, draw: float, expected: float
) -> None:
    actor = Actor([crash(), forever])
    sup = Supervisor("s", [ChildSpec("a", actor.run)], backoff_initial=1.0, jitter=jitter, rng=FixedRandom(draw))
    async with trio.open_nursery() as nursery:
        handle = await nursery.start(sup.run)
        await trio.sleep(5)
        assert actor.deltas() == [pytest.approx(expected)]
        handle.cancel()


@pytest.mark.trio
async def test_backoff_grows_exponentially_up_to_its_cap(autojump_clock: trio.abc.Clock) -> None:
    actor = Actor([crash()] * 6 + [forever])
    sup = Supervisor(
        "s",
        [ChildSpec("a", actor.run)],
        backoff_initial=1.0,
        backoff_factor=2.0,
        backoff_max=10.0,
        jitter=Jitter.NONE,
        max_restarts=100,
        max_seconds=1000.0,
    )
    async with trio.open_nursery() as nursery:
        handle = await nursery.start(sup.run)
        await trio.sleep(100)
        assert actor.deltas() == pytest.approx([1, 2, 4, 8, 10, 10])
        handle.cancel()


@pytest.mark.trio
async def test_backoff_resets_after_a_stable_run(autojump_clock: trio.abc.Clock) -> None:
    actor = Actor([crash(), crash(), crash(after=30), crash(), forever])
    sup = Supervisor(
        "s", [ChildSpec("a", actor.run)], backoff_initial=1.0, jitter=Jitter.NONE, max_restarts=10, max_seconds=20.0
    )
    async with trio.open_nursery() as nursery:
        handle = await nursery.start(sup.run)
        await trio.sleep(100)
        # 1 s, 2 s, then a 30 s run (>= max_seconds) resets the backoff: 1 s again, then 2 s.
        assert actor.deltas() == pytest.approx([1, 2, 30 + 1, 2])
        handle.cancel()


@pytest.mark.trio
async def test_spent_budget_escapes_run_and_cancels_siblings(autojump_clock: trio.abc.Clock) -> None:
    steady, flaky = Actor([forever]), Actor([crash()])
    sup = Supervisor(
        "sessions",
        [ChildSpec("steady", steady.run), ChildSpec("flaky", flaky.run)],
        max_restarts=3,
        max_seconds=10.0,
        backoff_initial=0.1,
        jitter=Jitter.NONE,
    )
    t0 = trio.current_time()
    with pytest.raises(RestartBudgetExhausted) as info:
        await sup.run()
    assert trio.current_time() - t0 == pytest.approx(0.1 + 0.2 + 0.4)  # the 4th crash gives up at once
    assert (info.value.supervisor, info.value.child_id) == ("sessions", "flaky")
    assert isinstance(info.value.__cause__, Boom) and info.value.last_error is info.value.__cause__
    assert len(flaky.starts) == 1 + 3
    assert (len(steady.starts), steady.finals) == (1, 1)


@pytest.mark.trio
async def test_spent_budget_escalates_into_the_parent_nursery(autojump_clock: trio.abc.Clock) -> None:
    parent_sibling_cancelled = False

    async def parent_sibling() -> None:
        nonlocal parent_sibling_cancelled
        try:
            await trio.sleep_forever()
        finally:
            parent_sibling_cancelled = True

    sup = Supervisor("s", [ChildSpec("a", Actor([crash(after=1)]).run)], max_restarts=2, jitter=Jitter.NONE)
    with pytest.RaisesGroup(RestartBudgetExhausted):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(parent_sibling)
            await nursery.start(sup.run)
    assert parent_sibling_cancelled


@pytest.mark.trio
async def test_restarts_spread_wider_than_the_period_never_spend_the_budget(autojump_clock: trio.abc.Clock) -> None:
    actor = Actor([crash(after=6)])
    sup = Supervisor("s", [ChildSpec("a", actor.run)], max_restarts=1, max_seconds=5.0, jitter=Jitter.NONE)
    async with trio.open_nursery() as nursery:
        handle = await nursery.start(sup.run)
        await trio.sleep(100)
        assert handle.which_children()[0][2] >= 15  # each crash 6 s after the previous restart
        handle.cancel()


@pytest.mark.trio
@pytest.mark.parametrize(
    ("policy", "first_run", "restarted"),
    [
        (RestartPolicy.PERMANENT, exit_after(1), True),
        (RestartPolicy.PERMANENT, crash(after=1), True),
        (RestartPolicy.TRANSIENT, exit_after(1), False),
        (RestartPolicy.TRANSIENT, crash(after=1), True),
        (RestartPolicy.TEMPORARY, exit_after(1), False),
        (RestartPolicy.TEMPORARY, crash(after=1), False),
    ],
)
async def test_restart_policy(
    autojump_clock: trio.abc.Clock, policy: RestartPolicy, first_run: Step, restarted: bool
) -> None:
    actor = Actor([first_run, forever])
    sup = Supervisor("s", jitter=Jitter.NONE)
    async with trio.open_nursery() as nursery:
        handle = await nursery.start(sup.run)
        await handle.start_child(ChildSpec("a", actor.run, policy))
        await trio.sleep(10)
        if restarted:
            assert len(actor.starts) == 2
            assert handle.which_children() == [("a", ChildState.RUNNING, 1)]
        else:
            assert len(actor.starts) == 1
            assert handle.which_children() == []
        assert handle.stats()["restarts_total"] == (1 if restarted else 0)
        handle.cancel()


@pytest.mark.trio
async def test_a_crashing_child_does_not_disturb_its_sibling(autojump_clock: trio.abc.Clock) -> None:
    steady, flaky = Actor([forever]), Actor([crash(after=1)] * 3 + [forever])
    sup = Supervisor("s", [ChildSpec("steady", steady.run), ChildSpec("flaky", flaky.run)], jitter=Jitter.NONE)
    async with trio.open_nursery() as nursery:
        handle = await nursery.start(sup.run)
        await trio.sleep(30)
        assert (len(steady.starts), steady.finals) == (1, 0)
        assert handle.which_children() == [("steady", ChildState.RUNNING, 0), ("flaky", ChildState.RUNNING, 3)]
        assert handle.stats()["restarts_total"] == 3
        handle.cancel()
    assert steady.finals == 1


@pytest.mark.trio
async def test_stats_report_a_crash_loop_until_it_calms_down(autojump_clock: trio.abc.Clock) -> None:
    flaky = Actor([crash()] * 4 + [forever])
    sup = Supervisor("s", [ChildSpec("flaky", flaky.run)], max_restarts=6, max_seconds=10.0, jitter=Jitter.NONE)
    async with trio.open_nursery() as nursery:
        handle = await nursery.start(sup.run)
        await trio.sleep(3)  # 4 restarts (> 6 / 2) within the last 10 s
        stats = handle.stats()
        assert (stats["crash_loop"], stats["crash_looping"], stats["restarts_total"]) == (True, ["flaky"], 4)
        assert stats["running"] is True
        await trio.sleep(20)
        stats = handle.stats()
        assert (stats["crash_loop"], stats["restarts_recent"], stats["restarts_total"]) == (False, 0, 4)
        handle.cancel()
    assert handle.stats()["running"] is False


@pytest.mark.trio
async def test_cancel_stops_every_child_and_runs_their_finally_blocks(autojump_clock: trio.abc.Clock) -> None:
    cleaned = False

    async def slow_cleanup(*, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        nonlocal cleaned
        task_status.started("slow")
        try:
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):  # bounded cleanup, shorter than the deadline
                await trio.sleep(2)
            cleaned = True

    actors = [Actor([forever]) for _ in range(3)]
    specs = [ChildSpec(i, a.run) for i, a in enumerate(actors)] + [ChildSpec("slow", slow_cleanup)]
    sup = Supervisor("s", specs, shutdown_timeout=10.0)
    async with trio.open_nursery() as nursery:
        handle = await nursery.start(sup.run)
        t0 = trio.current_time()
        handle.cancel()
        await handle.wait_stopped()
        assert trio.current_time() - t0 == pytest.approx(2)
    assert [a.finals for a in actors] == [1, 1, 1] and cleaned
    assert handle.which_children() == []
    with pytest.raises(StartAborted):
        await handle.start_child(ChildSpec("late", Actor([forever]).run))


@pytest.mark.trio
async def test_a_child_shielded_past_the_deadline_is_reported_and_waited_for(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    # Documented behaviour: trio cannot abandon a task, so the deadline logs the stuck child and
    # run() returns when that child returns; well-behaved siblings stop at once.
    caplog.set_level(logging.WARNING, logger="zapgate.supervisor")

    async def stubborn(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await trio.sleep(30)

    def logged(level: int) -> list[str]:
        return [r.getMessage() for r in caplog.records if r.levelno == level]

    polite = Actor([forever])
    sup = Supervisor(
        "s",
        [ChildSpec("polite", polite.run), ChildSpec("stubborn", stubborn, shutdown=1.0)],
        shutdown_timeout=5.0,
    )
    async with trio.open_nursery() as nursery:
        handle = await nursery.start(sup.run)
        t0 = trio.current_time()
        handle.cancel()
        await trio.sleep(0.5)
        assert polite.finals == 1
        assert handle.which_children() == [("stubborn", ChildState.STOPPING, 0)]
        assert logged(logging.WARNING) == []
        await trio.sleep(1)  # t0 + 1.5: past the child's own shutdown allowance
        assert any("'stubborn'" in m and "after it was cancelled" in m for m in logged(logging.WARNING))
        assert logged(logging.ERROR) == []
        await trio.sleep(4)  # t0 + 5.5: past the supervisor's deadline
        assert any("['stubborn']" in m and "after shutdown began" in m for m in logged(logging.ERROR))
        assert handle.stats()["running"] is True
        await handle.wait_stopped()
        assert trio.current_time() - t0 == pytest.approx(30)


@pytest.mark.trio
async def test_a_failing_start_raises_in_the_caller_of_start_child(autojump_clock: trio.abc.Clock) -> None:
    steady = Actor([forever])
    sup = Supervisor("s", [ChildSpec("steady", steady.run)])
    async with trio.open_nursery() as nursery:
        handle = await nursery.start(sup.run)
        with pytest.raises(Boom, match="cannot start"):
            await handle.start_child(ChildSpec("bad", failing_start))
        assert handle.which_children() == [("steady", ChildState.RUNNING, 0)]
        assert handle.stats()["restarts_total"] == 0
        # The supervisor carries on, and the id is free again.
        again = Actor([forever])
        assert await handle.start_child(ChildSpec("bad", again.run)) == 0
        with pytest.raises(ChildAlreadyStarted):
            await handle.start_child(ChildSpec("bad", again.run))
        assert len(again.starts) == 1
        handle.cancel()
    assert steady.finals == 1


@pytest.mark.trio
async def test_a_failing_initial_child_fails_run_and_stops_the_started_ones(autojump_clock: trio.abc.Clock) -> None:
    first = Actor([forever])
    sup = Supervisor("s", [ChildSpec("first", first.run), ChildSpec("bad", failing_start)])
    async with trio.open_nursery() as nursery:
        with pytest.raises(Boom):
            await nursery.start(sup.run)
    assert (len(first.starts), first.finals) == (1, 1)


@pytest.mark.trio
async def test_terminate_child_stops_it_for_good(autojump_clock: trio.abc.Clock) -> None:
    keep, drop = Actor([forever]), Actor([forever])
    sup = Supervisor("s", [ChildSpec("keep", keep.run), ChildSpec("drop", drop.run)])
    async with trio.open_nursery() as nursery:
        handle = await nursery.start(sup.run)
        handle.terminate_child("drop")
        await trio.sleep(10)
        assert (len(drop.starts), drop.finals) == (1, 1)  # permanent, yet not restarted
        assert handle.which_children() == [("keep", ChildState.RUNNING, 0)]
        with pytest.raises(KeyError):
            handle.terminate_child("drop")
        handle.cancel()


@pytest.mark.trio
async def test_terminate_child_reports_a_child_overrunning_its_shutdown_allowance(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="zapgate.supervisor")

    async def slow_to_stop(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await trio.sleep(3)

    sup = Supervisor("s", [ChildSpec("slow", slow_to_stop, shutdown=1.0)])
    async with trio.open_nursery() as nursery:
        handle = await nursery.start(sup.run)
        handle.terminate_child("slow")
        await trio.sleep(2)
        assert handle.which_children() == [("slow", ChildState.STOPPING, 0)]
        assert [r.levelno for r in caplog.records] == [logging.WARNING]
        assert "'slow' still running 1.0s after it was cancelled" in caplog.records[0].getMessage()
        await trio.sleep(2)
        assert handle.which_children() == []
        handle.cancel()


@pytest.mark.trio
async def test_a_child_with_its_own_budget_is_given_up_alone(autojump_clock: trio.abc.Clock) -> None:
    """Dynamic children spend their own budgets: many crashing at once never stop the supervisor."""
    steady = Actor([forever])
    looping = [Actor([crash()] * 100) for _ in range(10)]
    sup = Supervisor("s", [ChildSpec("steady", steady.run)], max_restarts=3, max_seconds=10.0, jitter=Jitter.NONE)
    async with trio.open_nursery() as nursery:
        handle = await nursery.start(sup.run)
        for index, actor in enumerate(looping):
            await handle.start_child(ChildSpec(("conv", index), actor.run, RestartPolicy.TRANSIENT,
                                               max_restarts=2, max_seconds=60.0))
        await trio.sleep(5)
        stats = handle.stats()
        # 10 children x 2 restarts: 20 restarts, far over the supervisor's 3, and it still runs
        assert stats["running"] is True
        assert (stats["restarts_total"], stats["given_up_total"]) == (20, 10)
        assert stats["crash_loop"] is True and len(stats["given_up_recent"]) == 10
        assert handle.which_children() == [("steady", ChildState.RUNNING, 0)]
        assert all(len(actor.starts) == 3 for actor in looping)
        handle.cancel()
