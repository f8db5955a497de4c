"""Supervisors for trio actors, in Erlang/OTP terms.

A :class:`Supervisor` owns a nursery and keeps its children alive. Strategy: **one_for_one only** —
a crashed child is restarted on its own; its siblings never notice. Each child lives in one task
of the supervisor's nursery, and every incarnation of the child runs inside that task, so one
child's exception is caught there and never cancels the nursery.

- Restart policy per child (:class:`RestartPolicy`): permanent, transient or temporary.
- Backoff per child: ``backoff_initial * backoff_factor ** n`` capped at ``backoff_max``, jittered,
  where ``n`` counts the child's consecutive short runs; it is reset once the child has run for
  ``max_seconds``.
- Restart budget per supervisor: more than ``max_restarts`` restarts within ``max_seconds`` and the
  supervisor gives up — it stops all children and ``run`` raises :class:`RestartBudgetExhausted`
  (escalation to whatever nursery or supervisor runs it). A restart is counted when it is decided,
  before the backoff sleep.
- Restart budget per child (``ChildSpec.max_restarts``/``max_seconds``), for dynamic children (one per
  connection, one per conversation): such a child's restarts count against its own budget only, never
  the supervisor's, and a child over its own budget is given up — logged, counted in ``stats()``
  (``given_up_total``, ``given_up_recent``) — while the supervisor and its other children go on. A
  fault common to many children (an outage) can then never add up to the whole supervisor giving up.
- Shutdown (``handle.cancel()``, or the budget spent): every child's cancel scope is cancelled at
  once (one_for_one children are independent; ordered shutdown belongs in how nurseries nest).
  A child still running ``ChildSpec.shutdown`` seconds after its cancel is logged as a warning;
  children still running ``shutdown_timeout`` seconds after the stop began are logged as an error.
  Trio cannot abandon a task: cancellation does not reach a shielded scope, and a nursery waits
  for all its tasks. So ``run`` returns as soon as the last child has returned, which for children
  that follow STYLE rule 8 (shielded cleanup is short and bounded) is within the deadline; a child
  shielded beyond the deadline is reported at the deadline and ``run`` returns when it returns.
- Cancelled from outside (the parent's scope), a supervisor does not run its own deadline: the
  children are cancelled by the same scope and the parent's deadline governs.

Only ``Exception`` counts as a crash. ``trio.Cancelled`` and other ``BaseException``\\ s are never
caught; errors that arrive in a group together with ``Cancelled`` while a child is being stopped
are logged and the cancellation goes on.
"""

from __future__ import annotations

import collections
import enum
import logging
import random
from collections.abc import Awaitable, Callable, Hashable, Iterable
from typing import Any

import attrs
import trio

logger = logging.getLogger("zapgate.supervisor")

PROPORTIONAL_JITTER = 0.2
"""Spread of :attr:`Jitter.PROPORTIONAL`: a delay ``d`` becomes uniform in ``[0.8 d, 1.2 d]``."""


class RestartPolicy(enum.Enum):
    PERMANENT = "permanent"  # always restarted, also after a normal return
    TRANSIENT = "transient"  # restarted only after a crash (an Exception)
    TEMPORARY = "temporary"  # never restarted; a crash is only logged


class Jitter(enum.Enum):
    NONE = "none"  # exactly the exponential delay
    FULL = "full"  # uniform in [0, delay]
    PROPORTIONAL = "proportional"  # uniform in delay * [1 - PROPORTIONAL_JITTER, 1 + PROPORTIONAL_JITTER]


class ChildState(enum.Enum):
    STARTING = "starting"
    RUNNING = "running"
    RESTARTING = "restarting"  # waiting out its backoff
    STOPPING = "stopping"  # cancelled, not yet returned


class RestartBudgetExhausted(Exception):
    """More than ``max_restarts`` restarts within ``max_seconds``: the supervisor gave up."""

    def __init__(self, supervisor: str, child_id: Hashable, last_error: BaseException | None) -> None:
        super().__init__(f"supervisor {supervisor!r} gave up: restart budget spent, last by child {child_id!r}")
        self.supervisor = supervisor
        self.child_id = child_id
        self.last_error = last_error


class ChildAlreadyStarted(Exception):
    """A child with this id is already supervised."""


class StartAborted(RuntimeError):
    """The supervisor stopped, or the child was terminated, before the child finished starting."""


GIVEN_UP_KEPT = 20  # children given up on that stats() lists

StartFn = Callable[..., Awaitable[object]]


@attrs.frozen
class ChildSpec:
    """How to run one child: ``start`` is an actor's ``run(*, task_status)``."""

    id: Hashable
    start: StartFn
    restart: RestartPolicy = RestartPolicy.PERMANENT
    shutdown: float = 5.0  # seconds this child may take to return once cancelled
    # A budget of the child's own (both set): over it the child is given up, the supervisor goes on.
    max_restarts: int | None = None
    max_seconds: float | None = None
    # Called (sync) once the child has ended for good, however: returned, crashed and not restarted, given
    # up, or cancelled. Where a child whose state outlives its incarnations (a mailbox) answers what is left.
    on_exit: Callable[[], None] | None = None


@attrs.define(eq=False)
class _Child:
    spec: ChildSpec
    state: ChildState = ChildState.STARTING
    handle: Any = None
    restarts: int = 0
    short_runs: int = 0  # consecutive runs shorter than max_seconds: the backoff exponent
    # A list, empty for the many children that never restart (a deque costs 760 bytes even when empty).
    restart_times: list[float] = attrs.field(factory=list)
    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    stopped: trio.Event = attrs.field(factory=trio.Event)
    cancelled_at: float | None = None

    def cancel(self) -> None:
        if self.cancelled_at is None:
            self.cancelled_at = trio.current_time()
        self.state = ChildState.STOPPING
        self.scope.cancel()


@attrs.define(eq=False)
class _StartProbe:
    """The ``task_status`` given to one incarnation of a child; the first one reports to ``start_child``."""

    child: _Child
    outer: trio.TaskStatus[Any] | None
    has_started: bool = False
    start_error: Exception | None = None

    def started(self, value: Any = None) -> None:
        if self.has_started:
            raise RuntimeError("called 'started' twice on the same task status")
        self.has_started = True
        self.child.handle = value
        if not self.child.scope.cancel_called:
            self.child.state = ChildState.RUNNING
        if self.outer is not None:
            self.outer.started(value)

    @property
    def start_failed(self) -> bool:
        return self.outer is not None and not self.has_started


def _prune(times: collections.deque[float] | list[float], horizon: float) -> None:
    if isinstance(times, collections.deque):
        while times and times[0] <= horizon:
            times.popleft()
        return
    stale = 0
    while stale < len(times) and times[stale] <= horizon:
        stale += 1
    del times[:stale]


class Supervisor:
    """A one_for_one supervisor; run it with ``handle = await nursery.start(supervisor.run)``."""

    def __init__(
        self,
        name: str,
        children: Iterable[ChildSpec] = (),
        *,
        max_restarts: int = 5,
        max_seconds: float = 10.0,
        backoff_initial: float = 0.1,
        backoff_max: float = 10.0,
        backoff_factor: float = 2.0,
        jitter: Jitter = Jitter.PROPORTIONAL,
        rng: random.Random | None = None,
        shutdown_timeout: float = 10.0,
    ) -> None:
        if max_restarts < 0 or max_seconds <= 0:
            raise ValueError("max_restarts must be >= 0 and max_seconds > 0")
        if backoff_initial < 0 or backoff_max < backoff_initial or backoff_factor < 1:
            raise ValueError("need 0 <= backoff_initial <= backoff_max and backoff_factor >= 1")
        if shutdown_timeout < 0:
            raise ValueError("shutdown_timeout must be >= 0")
        self.name = name
        self._initial = tuple(children)
        self._max_restarts = max_restarts
        self._max_seconds = max_seconds
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._backoff_factor = backoff_factor
        self._jitter = jitter
        self._rng = rng if rng is not None else random.Random()
        self._shutdown_timeout = shutdown_timeout
        self._children: dict[Hashable, _Child] = {}
        self._restart_times: collections.deque[float] = collections.deque()
        self._restarts_total = 0
        self._given_up_total = 0
        self._given_up_recent: collections.deque[tuple[float, Hashable]] = collections.deque(maxlen=GIVEN_UP_KEPT)
        self._nursery: trio.Nursery | None = None
        self._ran = False
        self._stopping = False
        self._stop_requested = trio.Event()
        self._stopped = trio.Event()
        self._failure: RestartBudgetExhausted | None = None

    async def run(self, *, task_status: trio.TaskStatus[SupervisorHandle] = trio.TASK_STATUS_IGNORED) -> None:
        """Start the initial children in order, hand back a handle, supervise until stopped.

        Raises the first initial child's start error (before ``started``), or
        :class:`RestartBudgetExhausted` once all children have stopped after the budget was spent.
        """
        if self._ran:
            raise RuntimeError(f"supervisor {self.name!r} has already run")
        self._ran = True
        start_error: Exception | None = None
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                try:
                    for spec in self._initial:
                        await self._start_child(spec)
                except Exception as exc:
                    start_error = exc
                    self._request_stop()
                else:
                    task_status.started(SupervisorHandle(self))
                    await self._stop_requested.wait()
                await self._wait_children_stopped()
        finally:
            self._stopping = True
            self._stopped.set()
        if self._failure is not None:
            raise self._failure
        if start_error is not None:
            raise start_error

    # -- starting and supervising one child ------------------------------------------------------

    async def _start_child(self, spec: ChildSpec) -> Any:
        if self._nursery is None or self._stopping:
            raise StartAborted(f"supervisor {self.name!r} is not running; child {spec.id!r} not started")
        if spec.id in self._children:
            raise ChildAlreadyStarted(spec.id)
        child = _Child(spec)
        self._children[spec.id] = child
        return await self._nursery.start(self._watch, child)

    async def _watch(self, child: _Child, *, task_status: trio.TaskStatus[Any]) -> None:
        """The child's task: runs every incarnation; its first start reports to ``start_child``."""
        first = _StartProbe(child, task_status)
        try:
            try:
                with child.scope:
                    await self._supervise(child, first)
            except* Exception as group:
                # Only while stopping: errors raised together with Cancelled. The Cancelled goes on.
                self._log(logging.ERROR, child, "failed while being stopped", exc_info=group)
            if first.start_error is not None:
                raise first.start_error
            if not first.has_started:
                raise StartAborted(f"child {child.spec.id!r} was stopped before it called task_status.started()")
        finally:
            if self._children.get(child.spec.id) is child:
                del self._children[child.spec.id]
            child.stopped.set()
            if child.spec.on_exit is not None:
                try:
                    child.spec.on_exit()
                except Exception as exc:  # a bug in the hook must not take the supervisor down
                    self._log(logging.ERROR, child, "on_exit failed", exc_info=exc)

    async def _supervise(self, child: _Child, probe: _StartProbe) -> None:
        spec = child.spec
        while True:
            began = trio.current_time()
            crash = await self._run_once(child, probe)
            if probe.start_failed:
                return  # _watch raises it in the caller of start_child
            ran_for = trio.current_time() - began
            if self._stopping or child.scope.cancel_called:
                if crash is not None:
                    self._log(logging.ERROR, child, "crashed while being stopped", exc_info=crash)
                return
            if spec.restart is RestartPolicy.TEMPORARY or (spec.restart is RestartPolicy.TRANSIENT and crash is None):
                if crash is not None:
                    self._log(logging.ERROR, child, "crashed (temporary: not restarted)", exc_info=crash)
                return
            if spec.max_restarts is not None and spec.max_seconds is not None:
                if not self._count_own_restart(child):
                    self._give_up(child, crash)
                    return
            elif not self._count_restart(child):
                self._escalate(child, crash)
                return
            delay = self._backoff(child, ran_for)
            if crash is not None:
                self._log(logging.ERROR, child, f"crashed; restart #{child.restarts} in {delay:.3f}s", exc_info=crash)
            else:
                self._log(logging.WARNING, child, f"returned (permanent); restart #{child.restarts} in {delay:.3f}s")
            child.state = ChildState.RESTARTING
            await trio.sleep(delay)
            child.state = ChildState.STARTING
            probe = _StartProbe(child, None)

    async def _run_once(self, child: _Child, probe: _StartProbe) -> Exception | None:
        """Run one incarnation; return its crash, or None when it returned."""
        try:
            await child.spec.start(task_status=probe)
        except Exception as exc:
            if probe.start_failed:
                probe.start_error = exc
                return None
            return exc
        return None

    # -- restart budget, backoff, escalation -------------------------------------------------------

    def _count_restart(self, child: _Child) -> bool:
        """Record a restart; False when it would be one too many within ``max_seconds``."""
        now = trio.current_time()
        _prune(self._restart_times, now - self._max_seconds)
        if len(self._restart_times) >= self._max_restarts:
            return False
        self._restart_times.append(now)
        child.restart_times.append(now)
        child.restarts += 1
        self._restarts_total += 1
        return True

    def _count_own_restart(self, child: _Child) -> bool:
        """Record a restart against the child's own budget; False when it is spent."""
        spec = child.spec
        assert spec.max_restarts is not None and spec.max_seconds is not None
        now = trio.current_time()
        _prune(child.restart_times, now - spec.max_seconds)
        if len(child.restart_times) >= spec.max_restarts:
            return False
        child.restart_times.append(now)
        child.restarts += 1
        self._restarts_total += 1
        return True

    def _give_up(self, child: _Child, crash: Exception | None) -> None:
        spec = child.spec
        self._given_up_total += 1
        self._given_up_recent.append((trio.current_time(), spec.id))
        self._log(logging.ERROR, child, f"exceeded its own restart budget ({spec.max_restarts} in {spec.max_seconds}s);"
                  " given up (the supervisor goes on)", exc_info=crash)

    def _backoff(self, child: _Child, ran_for: float) -> float:
        if ran_for >= (child.spec.max_seconds or self._max_seconds):
            child.short_runs = 0
        delay = min(self._backoff_max, self._backoff_initial * self._backoff_factor**child.short_runs)
        if delay < self._backoff_max:
            child.short_runs += 1
        if self._jitter is Jitter.FULL:
            delay *= self._rng.random()
        elif self._jitter is Jitter.PROPORTIONAL:
            delay *= 1 - PROPORTIONAL_JITTER + 2 * PROPORTIONAL_JITTER * self._rng.random()
        return min(delay, self._backoff_max)

    def _escalate(self, child: _Child, crash: Exception | None) -> None:
        self._log(
            logging.ERROR,
            child,
            f"exceeded the restart budget ({self._max_restarts} in {self._max_seconds}s); stopping all children",
            exc_info=crash,
        )
        if self._failure is None:
            failure = RestartBudgetExhausted(self.name, child.spec.id, crash)
            failure.__cause__ = crash
            failure.__suppress_context__ = True
            self._failure = failure
        self._request_stop()

    # -- stopping ----------------------------------------------------------------------------------

    def _request_stop(self) -> None:
        self._stopping = True
        for child in list(self._children.values()):
            child.cancel()
        self._stop_requested.set()

    async def _wait_children_stopped(self) -> None:
        children = list(self._children.values())
        with trio.move_on_after(self._shutdown_timeout) as deadline:
            async with trio.open_nursery() as waiters:
                for child in children:
                    waiters.start_soon(self._wait_child_stopped, child)
        if deadline.cancelled_caught:
            stuck = [child.spec.id for child in children if not child.stopped.is_set()]
            logger.error(
                "supervisor %r: children %r still running %.1fs after shutdown began; waiting for them",
                self.name,
                stuck,
                self._shutdown_timeout,
                extra={"fields": {"supervisor": self.name}},
            )

    async def _wait_child_stopped(self, child: _Child) -> None:
        assert child.cancelled_at is not None
        with trio.move_on_at(child.cancelled_at + child.spec.shutdown):
            await child.stopped.wait()
            return
        self._log(logging.WARNING, child, f"still running {child.spec.shutdown}s after it was cancelled")
        await child.stopped.wait()

    def _terminate_child(self, child_id: Hashable) -> None:
        child = self._children.get(child_id)
        if child is None:
            raise KeyError(child_id)
        if child.scope.cancel_called:
            return
        child.cancel()
        if self._nursery is not None and not self._stopping:
            self._nursery.start_soon(self._wait_child_stopped, child)

    # -- introspection -----------------------------------------------------------------------------

    def _looping(self, child: _Child, now: float) -> bool:
        """Whether the child restarted more than half its budget (its own, or the supervisor's) recently."""
        spec = child.spec
        if spec.max_restarts is not None and spec.max_seconds is not None:
            _prune(child.restart_times, now - spec.max_seconds)
            return len(child.restart_times) > spec.max_restarts / 2
        _prune(child.restart_times, now - self._max_seconds)
        return len(child.restart_times) > self._max_restarts / 2

    def _stats(self) -> dict[str, Any]:
        horizon = trio.current_time() - self._max_seconds
        _prune(self._restart_times, horizon)
        now = trio.current_time()
        looping = [child.spec.id for child in self._children.values() if self._looping(child, now)]
        while self._given_up_recent and self._given_up_recent[0][0] <= horizon:
            self._given_up_recent.popleft()
        return {
            "name": self.name,
            "running": self._ran and not self._stopped.is_set(),
            "children": len(self._children),
            "restarts_total": self._restarts_total,
            "restarts_recent": len(self._restart_times),
            "crash_loop": bool(looping) or bool(self._given_up_recent),
            "crash_looping": looping[:GIVEN_UP_KEPT],
            "given_up_total": self._given_up_total,
            "given_up_recent": [repr(child_id) for _, child_id in self._given_up_recent],
        }

    def _describe_children(self) -> list[ChildInfo]:
        now = trio.current_time()
        return [ChildInfo(child.spec.id, child.state, child.restarts, self._looping(child, now), child.handle)
                for child in self._children.values()]

    def _log(self, level: int, child: _Child, what: str, exc_info: BaseException | None = None) -> None:
        logger.log(
            level,
            "supervisor %r: child %r %s",
            self.name,
            child.spec.id,
            what,
            exc_info=exc_info,
            extra={"fields": {"supervisor": self.name, "child": repr(child.spec.id)}},
        )


@attrs.frozen(eq=False)
class ChildInfo:
    """One child as its supervisor sees it now (`SupervisorHandle.describe_children`)."""

    id: Hashable
    state: ChildState
    restarts: int  # since it was started
    crash_looping: bool  # restarted more than half its budget within the budget's period
    handle: Any  # the current incarnation's handle (None while it restarts)


@attrs.frozen(eq=False)
class SupervisorHandle:
    """What ``Supervisor.run`` hands back: start, stop and inspect children, stop the supervisor."""

    _supervisor: Supervisor

    @property
    def name(self) -> str:
        return self._supervisor.name

    async def start_child(self, spec: ChildSpec) -> Any:
        """Start a child in the supervisor's nursery; returns its handle, raises if its start fails."""
        return await self._supervisor._start_child(spec)

    def terminate_child(self, child_id: Hashable) -> None:
        """Cancel a child for good (it is not restarted). Raises KeyError for an unknown id."""
        self._supervisor._terminate_child(child_id)

    def which_children(self) -> list[tuple[Hashable, ChildState, int]]:
        """``(id, state, restarts)`` of each child, in start order."""
        return [(c.spec.id, c.state, c.restarts) for c in self._supervisor._children.values()]

    def child_handle(self, child_id: Hashable) -> Any:
        """The current incarnation's handle (it changes on restart), or None."""
        child = self._supervisor._children.get(child_id)
        return None if child is None else child.handle

    def describe_children(self) -> list[ChildInfo]:
        """Every child now, in start order: its state, restarts and whether it crash-loops (the runtime view)."""
        return self._supervisor._describe_children()

    def stats(self) -> dict[str, Any]:
        """Counters for a health endpoint; a child restarted more than half the budget recently is looping."""
        return self._supervisor._stats()

    def cancel(self) -> None:
        """Stop the supervisor: all children are cancelled, then ``run`` returns (see module docstring)."""
        self._supervisor._request_stop()

    async def wait_stopped(self) -> None:
        await self._supervisor._stopped.wait()
