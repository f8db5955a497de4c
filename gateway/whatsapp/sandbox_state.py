"""The sandbox network's state: what it keeps per connection id (`_Line`) and per transport run (`_Run`).

A `_Line` outlives its runs: the events waiting for the connection (inbound messages and receipts, in
order), the messages it delivered (kept for `redeliver`), what it sent (the outbox), the receipts
scheduled for later, its inbound media, and the faults injected into it. A `_Run` is one
`SandboxTransport.run` as WhatsApp's server sees it (connected, or showing a QR or pairing code) and
why it ends (`_Ending`). Every structure is bounded by the constants below. Plain trio state, changed
only from trio tasks (no threads, no locks). `SandboxError` is what the network's control calls raise.
"""

from __future__ import annotations

import collections
from typing import Any, Literal

import attrs
import trio

from gateway.whatsapp.transport import Ack, Event, InboundMessage, Receipt

OUTBOX_MAX = 10_000  # sent messages kept per connection (oldest dropped)
QUEUE_MAX = 100_000  # events waiting for a connection (inbound beyond it: ERR_SANDBOX_QUEUE_FULL)
DELIVERED_HISTORY = 1_000  # delivered inbound messages kept for `redeliver`
MEDIA_MAX_ITEMS = 1_000  # inbound media kept per connection for `download` (oldest expire)
MEDIA_MAX_BYTES = 256 * 1024 * 1024  # ... and their total size
READ_BY_US_MAX = 1_000  # mark_read calls remembered per connection

SEND_FAILURE_REASON = "sandbox: injected send failure"


class SandboxError(Exception):
    """A control call that cannot apply (e.g. ``pair`` while no QR is shown)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _Signal:
    """Wake every task waiting for "something changed" (no value, no memory: check, then wait)."""

    def __init__(self) -> None:
        self._lot = trio.lowlevel.ParkingLot()

    def notify(self) -> None:
        self._lot.unpark_all()

    async def wait(self) -> None:
        await self._lot.park()


@attrs.frozen
class _Ending:
    """Why a run stops: the connection was lost, the device was unlinked (phone/ban), or we logged out."""

    kind: Literal["lost", "unlinked", "logout"]
    reason: str = ""
    banned: bool = False


@attrs.define(eq=False)
class _Run:
    """One `SandboxTransport.run`: the connection as WhatsApp's server sees it."""

    line: _Line
    events: trio.MemorySendChannel[Event]
    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    wake: _Signal = attrs.field(factory=_Signal)
    connected: bool = False
    waiting_for_scan: bool = False
    qr: str | None = None
    qr_index: int = 0
    pairing_phone: str | None = None  # digits given to request_pairing_code
    pairing_code: str | None = None
    code_to_emit: str | None = None
    paired: dict[str, Any] | None = None  # set by pair(): the device to persist
    ending: _Ending | None = None

    def stop(self, ending: _Ending) -> None:
        if self.ending is None:
            self.ending = ending
        self.connected = False
        self.scope.cancel()


@attrs.define(eq=False)
class _Line:
    """Everything the network knows about one connection id (outlives its runs)."""

    connection_id: int
    device: dict[str, Any] | None = None
    run: _Run | None = None
    queue: collections.deque[InboundMessage | Receipt] = attrs.field(factory=collections.deque)
    pending_inbound: int = 0
    changed: _Signal = attrs.field(factory=_Signal)  # the queue or the scheduled receipts changed
    delivered: collections.deque[InboundMessage] = attrs.field(
        factory=lambda: collections.deque(maxlen=DELIVERED_HISTORY))
    delivered_total: int = 0
    outbox: collections.OrderedDict[str, dict[str, Any]] = attrs.field(factory=collections.OrderedDict)
    scheduled: list[tuple[float, int, str, Ack]] = attrs.field(factory=list)  # heap: (due, seq, id, ack)
    media: collections.OrderedDict[str, bytes] = attrs.field(factory=collections.OrderedDict)
    media_bytes: int = 0
    read_by_us: collections.deque[dict[str, Any]] = attrs.field(
        factory=lambda: collections.deque(maxlen=READ_BY_US_MAX))
    presence: collections.OrderedDict[str, str] = attrs.field(factory=collections.OrderedDict)
    extra_latency: float = 0.0
    send_failures: int = 0
    send_failure_reason: str = SEND_FAILURE_REASON
    pending_unlink: _Ending | None = None

    def enqueue(self, event: InboundMessage | Receipt) -> bool:
        if len(self.queue) >= QUEUE_MAX:
            return False
        self.queue.append(event)
        if isinstance(event, InboundMessage):
            self.pending_inbound += 1
        self.changed.notify()
        return True

    def taken(self, event: InboundMessage | Receipt) -> None:
        """The session took `event`: it leaves the queue (found by identity, normally at the head)."""
        for index, queued in enumerate(self.queue):
            if queued is event:
                del self.queue[index]
                break
        else:
            return
        if isinstance(event, InboundMessage):
            self.pending_inbound -= 1
            self.delivered.append(event)
            self.delivered_total += 1

    def requeue_delivered(self, count: int) -> int:
        """Put the last `count` delivered messages back at the head of the queue, in their order."""
        count = min(count, len(self.delivered))
        again = [self.delivered.pop() for _ in range(count)]  # newest first
        self.queue.extendleft(again)  # extendleft reverses: oldest ends up first
        self.pending_inbound += count
        if count:
            self.changed.notify()
        return count

    def keep_media(self, key: str, data: bytes) -> None:
        self.media[key] = data
        self.media_bytes += len(data)
        while len(self.media) > MEDIA_MAX_ITEMS or self.media_bytes > MEDIA_MAX_BYTES:
            _, dropped = self.media.popitem(last=False)
            self.media_bytes -= len(dropped)

    def record(self, entry: dict[str, Any]) -> None:
        self.outbox[entry["id"]] = entry
        while len(self.outbox) > OUTBOX_MAX:
            self.outbox.popitem(last=False)
