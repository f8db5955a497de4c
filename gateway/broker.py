"""Event fan-out: `publish` never blocks; every subscriber has a bounded queue and is cut off when it lags.

An event is `(company_id, name, payload)` — for example `(7, "company-7-whatsappSession",
{"action": "update", "session": {...}})`. Subscribers choose a company (or all of them). A subscriber
whose queue is full when an event arrives is disconnected: its next `receive` raises `Lagged` (it
reconnects and refetches), and the publisher and the other subscribers go on undisturbed (tractor's
`Lagged`, STYLE.md rule 7).

Several processes (DESIGN.md §8): with `REDIS_URL` set, a running `RedisBridge` (`gateway.redis_bridge`)
attaches itself to the broker; every `publish` is then also offered to it, and the events it receives
from the other processes come in through `_deliver` (local fan-out only).
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import attrs
import trio

if TYPE_CHECKING:
    from gateway.redis_bridge import RedisBridge

log = logging.getLogger("zapgate.broker")

DEFAULT_QUEUE_SIZE = 1024


@attrs.frozen
class Event:
    company_id: int
    name: str
    payload: dict[str, Any]


class Lagged(Exception):
    """The subscriber fell behind and was disconnected; events were dropped for it."""


class Subscription:
    """One subscriber's bounded queue. Use as an async iterator or call `receive()`."""

    def __init__(self, broker: Broker, company_id: int | None, maxsize: int) -> None:
        self._broker = broker
        self.company_id = company_id
        self.maxsize = maxsize
        self._queue: collections.deque[Event] = collections.deque()
        self._wakeup = trio.Event()
        self.lagged = False
        self.closed = False

    def _offer(self, event: Event) -> bool:
        """Queue `event`; False when the subscriber is over its bound (it is then cut off)."""
        if self.closed:
            return True
        if len(self._queue) >= self.maxsize:
            self.lagged = True
            self.closed = True
            self._queue.clear()
            self._wakeup.set()
            return False
        self._queue.append(event)
        self._wakeup.set()
        return True

    def receive_nowait(self) -> Event | None:
        if self._queue:
            return self._queue.popleft()
        if self.lagged:
            raise Lagged(f"subscriber lagged more than {self.maxsize} events behind and was disconnected")
        if self.closed:
            raise trio.EndOfChannel
        return None

    async def receive(self) -> Event:
        while True:
            event = self.receive_nowait()
            if event is not None:
                return event
            self._wakeup = trio.Event()
            await self._wakeup.wait()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        try:
            return await self.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None

    def close(self) -> None:
        self.closed = True
        self._wakeup.set()
        self._broker._remove(self)

    def __len__(self) -> int:
        return len(self._queue)


class Broker:
    """In-process fan-out; a running `RedisBridge` attaches itself to carry events between processes."""

    def __init__(self, *, queue_size: int = DEFAULT_QUEUE_SIZE) -> None:
        self.queue_size = queue_size
        self._by_company: dict[int | None, set[Subscription]] = collections.defaultdict(set)
        self._bridge: RedisBridge | None = None
        self.published = 0
        self.lagged_total = 0

    def publish(self, company_id: int, name: str, payload: dict[str, Any]) -> None:
        """Deliver to every subscriber of the company (and of all companies), and to Redis; never blocks."""
        event = Event(company_id, name, payload)
        self.published += 1
        self._deliver(event)
        if self._bridge is not None:
            self._bridge.offer(event)

    def publish_local(self, company_id: int, name: str, payload: dict[str, Any]) -> None:
        """Deliver to this process's subscribers only: for events every node produces by itself (the
        dashboard's `counter`, which each node hears from PostgreSQL)."""
        self.published += 1
        self._deliver(Event(company_id, name, payload))

    def _deliver(self, event: Event) -> None:
        """Local fan-out only (events from other processes come in here)."""
        for key in (event.company_id, None):
            for subscription in list(self._by_company.get(key, ())):
                if not subscription._offer(event):
                    self.lagged_total += 1
                    self._remove(subscription)
                    log.warning("subscriber lagged and was disconnected",
                                extra={"fields": {"company_id": key, "queue_size": subscription.maxsize}})

    @contextmanager
    def subscribe(self, company_id: int | None, *, maxsize: int | None = None) -> Iterator[Subscription]:
        """Subscribe to a company's events (None: every company's) for the duration of the block."""
        subscription = Subscription(self, company_id, maxsize or self.queue_size)
        self._by_company[company_id].add(subscription)
        try:
            yield subscription
        finally:
            subscription.close()

    def _remove(self, subscription: Subscription) -> None:
        subscribers = self._by_company.get(subscription.company_id)
        if subscribers is not None:
            subscribers.discard(subscription)
            if not subscribers:
                del self._by_company[subscription.company_id]

    def _attach(self, bridge: RedisBridge) -> None:
        if self._bridge is not None and self._bridge is not bridge:
            raise RuntimeError("this broker already has a running Redis bridge")
        self._bridge = bridge

    def _detach(self, bridge: RedisBridge) -> None:
        if self._bridge is bridge:
            self._bridge = None

    def subscriber_count(self) -> int:
        return sum(len(subscribers) for subscribers in self._by_company.values())

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = {"subscribers": self.subscriber_count(), "published": self.published,
                                 "lagged": self.lagged_total}
        if self._bridge is not None:
            stats["redis"] = self._bridge.stats()
        return stats
