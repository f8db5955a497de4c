"""Registries: a key maps to the handle of the one actor that owns it (Elixir's ``Registry``, in-process).

A registry is passed in explicitly (no globals). An actor registers itself from its ``run`` with
:func:`registered`, so its entry disappears when it ends, however it ends::

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED):
        async with registered(self.registry, self.key, handle):
            task_status.started(handle)
            ...

:meth:`Registry.get_or_start` finds the actor for a key or starts it; concurrent callers for the same
key share one start. The registry is plain trio-task state: no locks, only one ``trio.Event`` per
start in progress.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from typing import Generic, TypeVar

import attrs
import trio

K = TypeVar("K", bound=Hashable)
H = TypeVar("H")


class AlreadyRegistered(Exception):
    """The key already has a handle."""

    def __init__(self, key: Hashable) -> None:
        super().__init__(f"key {key!r} is already registered")
        self.key = key


@attrs.define(eq=False)
class _PendingStart:
    done: trio.Event = attrs.field(factory=trio.Event)
    registered: object = None  # what got registered under the key while the start ran


class Registry(Generic[K, H]):
    """Key → handle. Handles are never None: ``lookup`` answers None for "nobody"."""

    def __init__(self) -> None:
        self._entries: dict[K, H] = {}
        self._pending: dict[K, _PendingStart] = {}

    def register(self, key: K, handle: H) -> None:
        """Register ``handle`` under ``key``; raises :class:`AlreadyRegistered` if the key is taken."""
        if handle is None:
            raise ValueError("a registry handle must not be None")
        if key in self._entries:
            raise AlreadyRegistered(key)
        self._entries[key] = handle
        pending = self._pending.get(key)
        if pending is not None and pending.registered is None:
            pending.registered = handle

    def lookup(self, key: K) -> H | None:
        return self._entries.get(key)

    def unregister(self, key: K, handle: H | None = None) -> None:
        """Drop ``key`` (no-op if absent); with ``handle``, only while that handle is the registered one."""
        if handle is not None and self._entries.get(key) is not handle:
            return
        self._entries.pop(key, None)

    def keys(self) -> list[K]:
        return list(self._entries)

    def handles(self) -> list[H]:
        return list(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def has(self, key: K) -> bool:
        """Someone has ``key``: registered, or being started."""
        return key in self._entries or key in self._pending

    async def get_or_start(self, key: K, start_fn: Callable[[], Awaitable[H]]) -> H:
        """The handle for ``key``, starting it with ``await start_fn()`` if nobody has it.

        Callers arriving while a start is in progress wait for it and get the same handle; if that
        start fails (or its caller is cancelled), they try again. The started handle is registered
        here unless the actor registered that same handle itself (with :func:`registered`) during
        the start — then its own entry is authoritative, even if it has already ended. If another
        handle took the key meanwhile, :class:`AlreadyRegistered` is raised and the started actor
        is the caller's to stop.
        """
        while (handle := self._entries.get(key)) is None:
            pending = self._pending.get(key)
            if pending is None:
                return await self._start(key, start_fn)
            await pending.done.wait()
        return handle

    async def _start(self, key: K, start_fn: Callable[[], Awaitable[H]]) -> H:
        pending = self._pending[key] = _PendingStart()
        try:
            handle = await start_fn()
            if pending.registered is None:
                self.register(key, handle)
            elif pending.registered is not handle:
                raise AlreadyRegistered(key)
            return handle
        finally:
            del self._pending[key]
            pending.done.set()


@contextlib.asynccontextmanager
async def registered(registry: Registry[K, H], key: K, handle: H) -> AsyncIterator[H]:
    """Hold ``key`` → ``handle`` for the body; the entry is dropped on return, crash or cancellation."""
    registry.register(key, handle)
    try:
        yield handle
    finally:
        registry.unregister(key, handle)
