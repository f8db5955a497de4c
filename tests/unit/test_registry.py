"""Registry: key → handle, entries dropped when their actor ends, shared get_or_start."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import attrs
import pytest
import trio

from gateway.registry import AlreadyRegistered, Registry, registered
from gateway.supervisor import ChildSpec, Jitter, RestartPolicy, Supervisor


class Boom(Exception):
    pass


@attrs.define(eq=False)
class Handle:
    key: str


@attrs.define(eq=False)
class Worker:
    """An actor that registers its handle for its whole run, then does ``step``."""

    registry: Registry[str, Handle]
    key: str
    step: Callable[[], Awaitable[None]] = trio.sleep_forever
    handles: list[Handle] = attrs.field(factory=list)

    async def run(self, *, task_status: trio.TaskStatus[Handle] = trio.TASK_STATUS_IGNORED) -> None:
        handle = Handle(self.key)
        self.handles.append(handle)
        async with registered(self.registry, self.key, handle):
            task_status.started(handle)
            await self.step()


def test_register_lookup_and_unregister() -> None:
    registry: Registry[str, Handle] = Registry()
    a, b = Handle("a"), Handle("b")
    registry.register("a", a)
    registry.register("b", b)
    assert (registry.lookup("a"), registry.lookup("missing")) == (a, None)
    assert (len(registry), sorted(registry.keys()), "a" in registry) == (2, ["a", "b"], True)
    with pytest.raises(AlreadyRegistered) as info:
        registry.register("a", Handle("a2"))
    assert info.value.key == "a" and registry.lookup("a") is a
    registry.unregister("a", Handle("someone else"))  # not the registered handle: kept
    assert registry.lookup("a") is a
    registry.unregister("a")
    registry.unregister("a")  # absent: no-op
    assert (registry.lookup("a"), len(registry), registry.keys()) == (None, 1, ["b"])
    with pytest.raises(ValueError):
        registry.register("c", None)  # type: ignore[arg-type]


async def _returns() -> None:
    await trio.sleep(1)


async def _crashes() -> None:
    await trio.sleep(1)
    raise Boom("crash")


@pytest.mark.trio
@pytest.mark.parametrize("ending", ["returns", "crashes", "cancelled"])
async def test_entry_is_dropped_when_the_actor_ends(autojump_clock: trio.abc.Clock, ending: str) -> None:
    registry: Registry[str, Handle] = Registry()
    step = {"returns": _returns, "crashes": _crashes, "cancelled": trio.sleep_forever}[ending]
    worker = Worker(registry, "chat-1", step)

    async def run_it() -> None:
        async with trio.open_nursery() as nursery:
            handle = await nursery.start(worker.run)
            assert registry.lookup("chat-1") is handle
            if ending == "cancelled":
                await trio.sleep(1)
                nursery.cancel_scope.cancel()

    if ending == "crashes":
        with pytest.RaisesGroup(Boom):
            await run_it()
    else:
        await run_it()
    assert (registry.lookup("chat-1"), len(registry)) == (None, 0)


@pytest.mark.trio
async def test_a_restarted_actor_registers_its_new_handle(autojump_clock: trio.abc.Clock) -> None:
    registry: Registry[str, Handle] = Registry()
    crashes = 0

    async def crash_once() -> None:
        nonlocal crashes
        await trio.sleep(1)
        if crashes == 0:
            crashes += 1
            raise Boom("once")
        await trio.sleep_forever()

    worker = Worker(registry, "conn-1", crash_once)
    sup = Supervisor("s", [ChildSpec("conn-1", worker.run)], jitter=Jitter.NONE)
    async with trio.open_nursery() as nursery:
        handle = await nursery.start(sup.run)
        await trio.sleep(10)
        assert len(worker.handles) == 2
        assert registry.lookup("conn-1") is worker.handles[1] is handle.child_handle("conn-1")
        handle.cancel()
    assert len(registry) == 0


@pytest.mark.trio
async def test_get_or_start_concurrent_callers_share_one_start(autojump_clock: trio.abc.Clock) -> None:
    registry: Registry[str, Handle] = Registry()
    starts = 0
    results: list[Handle] = []

    async def start() -> Handle:
        nonlocal starts
        starts += 1
        await trio.sleep(1)
        return Handle("k")

    async def caller() -> None:
        results.append(await registry.get_or_start("k", start))

    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(caller)
    assert starts == 1
    assert len(results) == 5 and all(r is results[0] for r in results)
    assert registry.lookup("k") is results[0]
    assert await registry.get_or_start("k", start) is results[0] and starts == 1


@pytest.mark.trio
async def test_get_or_start_waiters_retry_when_the_shared_start_fails(autojump_clock: trio.abc.Clock) -> None:
    registry: Registry[str, Handle] = Registry()
    attempts = 0
    results: list[Handle | Exception] = []

    async def start() -> Handle:
        nonlocal attempts
        attempts += 1
        await trio.sleep(1)
        if attempts == 1:
            raise Boom("first start fails")
        return Handle("k")

    async def caller() -> None:
        try:
            results.append(await registry.get_or_start("k", start))
        except Boom as exc:
            results.append(exc)

    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(caller)
    assert attempts == 2
    errors = [r for r in results if isinstance(r, Boom)]
    handles = [r for r in results if isinstance(r, Handle)]
    assert len(errors) == 1 and len(handles) == 2 and handles[0] is handles[1]
    assert registry.lookup("k") is handles[0]


@pytest.mark.trio
async def test_get_or_start_with_a_self_registering_actor(autojump_clock: trio.abc.Clock) -> None:
    registry: Registry[str, Handle] = Registry()

    async def dies_at_once() -> None:
        raise Boom("dies before its starter even resumes")

    async with trio.open_nursery() as nursery:
        sup = await nursery.start(Supervisor("tickets", jitter=Jitter.NONE).run)

        def starter(worker: Worker) -> Callable[[], Awaitable[Handle]]:
            return lambda: sup.start_child(ChildSpec(worker.key, worker.run, RestartPolicy.TEMPORARY))

        # The actor registered the very handle it handed back: no AlreadyRegistered, no double entry.
        living = Worker(registry, "t1", _returns)
        handle = await registry.get_or_start("t1", starter(living))
        assert registry.lookup("t1") is handle is living.handles[0]
        await trio.sleep(2)  # it ends: its own entry goes, nothing stale is left behind
        assert registry.lookup("t1") is None

        # It registered and was gone again before get_or_start resumed: the dead handle is not re-added.
        doomed = Worker(registry, "t2", dies_at_once)
        handle = await registry.get_or_start("t2", starter(doomed))
        assert handle is doomed.handles[0]
        assert registry.lookup("t2") is None and len(registry) == 0
        sup.cancel()
