"""The dashboard push's debouncer (actors/dashboard_push.py), on trio's autojump clock: at most one push per
company per interval, the first at once, nothing folded away for good, companies independent."""

from __future__ import annotations

import itertools

import trio

from actors.dashboard_push import Debouncer


async def test_a_burst_is_pushed_at_once_then_once_per_interval(autojump_clock: trio.abc.Clock) -> None:
    pushed: list[tuple[int, float]] = []
    debouncer = Debouncer(lambda company: pushed.append((company, trio.current_time())), interval=1.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(debouncer.run)
        start = trio.current_time()
        for _ in range(50):  # 50 changes over 2.5 s
            debouncer.mark(7)
            await trio.sleep(0.05)
        await trio.sleep(3)
        times = [at - start for company, at in pushed if company == 7]
        assert times[0] < 0.01  # the first change at once
        assert all(later - earlier >= 1.0 for earlier, later in itertools.pairwise(times))
        assert 3 <= len(times) <= 4  # ≤ 1/s over 2.5 s of changes, and the last change was pushed
        assert times[-1] >= 2.45  # the last change (at 2.45 s) was not lost
        count = len(pushed)
        await trio.sleep(10)  # quiet: nothing more
        assert len(pushed) == count
        nursery.cancel_scope.cancel()


async def test_companies_are_debounced_apart(autojump_clock: trio.abc.Clock) -> None:
    pushed: list[int] = []
    debouncer = Debouncer(pushed.append, interval=1.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(debouncer.run)
        debouncer.mark(1)
        debouncer.mark(2)
        await trio.sleep(0.1)
        assert sorted(pushed) == [1, 2]
        debouncer.mark(1)  # within the interval: waits for its end
        await trio.sleep(0.1)
        assert sorted(pushed) == [1, 2]
        debouncer.mark(3)  # another company: at once
        await trio.sleep(0.01)
        assert pushed[-1] == 3
        await trio.sleep(1)
        assert sorted(pushed) == [1, 1, 2, 3]
        nursery.cancel_scope.cancel()
