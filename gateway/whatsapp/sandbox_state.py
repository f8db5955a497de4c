"""The sandbox network's state: what it keeps per connection id (`_Line`) and per transport run (`_Run`).

A `_Line` outlives its runs: the events waiting for the connection (inbound messages and receipts, in
order, each with its sequence number), the events delivered but not yet settled by the consumer
(delivered again first at every connect), the messages it delivered lately (kept for `redeliver`),
the receipts scheduled for later, its inbound media, and the faults injected into it. What it sent is
not here: the network's outbox store holds it (``sandbox_outbox.py``). A `_Run` is one
`SandboxTransport.run` as WhatsApp's server sees it (connected, or showing a QR or pairing code) and
why it ends (`_Ending`). Every structure is bounded by the constants below. Plain trio state, changed
only from trio tasks (no threads, no locks). `SandboxError` is what the network's control calls raise.
What must survive a restart is also written to the journal (``sandbox_journal.py``) by the network;
this module only holds memory.
"""

from __future__ import annotations

import collections
import math
from typing import Any, Literal

import attrs
import trio

from gateway.whatsapp.transport import Ack, Event, InboundMessage, Receipt

QUEUE_MAX = 100_000  # events queued + delivered and not settled (inbound beyond it: ERR_SANDBOX_QUEUE_FULL)
DELIVERED_HISTORY = 1_000  # delivered inbound messages kept for `redeliver` (settled or not)
MEDIA_MAX_ITEMS = 1_000  # inbound media kept per connection for `download` (oldest expire)
MEDIA_MAX_BYTES = 256 * 1024 * 1024  # ... and their total size
READ_BY_US_MAX = 1_000  # mark_read calls remembered per connection
NOT_ON_WHATSAPP_MAX = 10_000  # numbers a connection's `registry` says have no WhatsApp account
NOT_ON_WHATSAPP_PREFIXES_MAX = 100  # ... and prefixes of such numbers

SEND_FAILURE_REASON = "sandbox: injected send failure"

# The sandbox speaks of acks by name (its outbox, ``POST /sandbox/:id/ack``, its journal): names do not
# move when the numbers' scale does.
ACK_NAMES: dict[Ack, str] = {
    Ack.FAILED: "failed",
    Ack.PENDING: "pending",
    Ack.SENT: "sent",
    Ack.DELIVERED: "delivered",
    Ack.READ: "read",
    Ack.PLAYED: "played",
}
ACK_BY_NAME = {name: ack for ack, name in ACK_NAMES.items()}


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

    kind: Literal["lost", "unlinked", "logout", "crash"]
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
    # events not yet delivered, in order: (seq, event)
    queue: collections.deque[tuple[int, InboundMessage | Receipt]] = attrs.field(factory=collections.deque)
    # delivered and not settled, by seq (delivered again, in seq order, at the next connect)
    unsettled: dict[int, InboundMessage | Receipt] = attrs.field(factory=dict)
    changed: _Signal = attrs.field(factory=_Signal)  # the queue, the scheduled receipts or the settles changed
    history: collections.OrderedDict[int, InboundMessage] = attrs.field(factory=collections.OrderedDict)
    delivered_total: int = 0
    scheduled: list[tuple[float, int, str, Ack]] = attrs.field(factory=list)  # heap: (due, seq, id, ack)
    # new in this process, with a durable outbox: the receipts it still misses (sent before a restart) are due again
    receipts_to_reschedule: bool = False
    retry_at: float = -math.inf  # ... not before (the outbox could not answer)
    media: collections.OrderedDict[str, bytes] = attrs.field(factory=collections.OrderedDict)
    media_bytes: int = 0
    read_by_us: collections.deque[dict[str, Any]] = attrs.field(
        factory=lambda: collections.deque(maxlen=READ_BY_US_MAX))
    presence: collections.OrderedDict[str, str] = attrs.field(factory=collections.OrderedDict)
    extra_latency: float = 0.0
    answer_delay: float = 0.0  # fault "slow_answer": seconds between accepting a send and answering it
    send_failures: int = 0
    crashes: int = 0  # fault "crash": runs that still crash the session (InjectedCrash), one each
    send_failure_reason: str = SEND_FAILURE_REASON
    pending_unlink: _Ending | None = None
    # `is_on_whatsapp`: every phone number has an account except these (control `registry`), and the calls
    not_on_whatsapp: frozenset[str] = frozenset()
    not_on_whatsapp_prefixes: tuple[str, ...] = ()
    number_checks: int = 0  # is_on_whatsapp calls answered
    numbers_checked: int = 0  # ... and the numbers they asked about
    largest_number_check: int = 0  # the most numbers one call asked about
    forgotten: bool = False  # the connection was deleted: late settles change nothing

    def held(self) -> int:
        """Events the network holds for the connection: queued, or delivered and not settled."""
        return len(self.queue) + len(self.unsettled)

    def enqueue(self, seq: int, event: InboundMessage | Receipt) -> None:
        self.queue.append((seq, event))
        self.changed.notify()

    def take(self) -> tuple[int, InboundMessage | Receipt]:
        """The next queued event, now delivered and unsettled (recorded before it is handed over, so
        that a settle that comes at once finds it)."""
        seq, event = self.queue.popleft()
        self.unsettled[seq] = event
        return seq, event

    def delivered(self, seq: int, event: InboundMessage | Receipt) -> None:
        """`event` was handed to the session (again, maybe)."""
        self.delivered_total += 1
        if isinstance(event, InboundMessage):
            self.history.pop(seq, None)
            self.history[seq] = event
            while len(self.history) > DELIVERED_HISTORY:
                self.history.popitem(last=False)

    def settle(self, seq: int) -> bool:
        """The consumer committed event `seq`: the network forgets it. False if it was not unsettled."""
        return self.unsettled.pop(seq, None) is not None

    def requeue_delivered(self, count: int) -> list[tuple[int, InboundMessage]]:
        """The last `count` delivered messages become unsettled again (delivered again at the next connect,
        in their order); returns those that were settled already."""
        again = []
        for seq in list(self.history)[-count:] if count else []:
            if seq not in self.unsettled:
                event = self.history[seq]
                self.unsettled[seq] = event
                again.append((seq, event))
        if again:
            self.changed.notify()
        return again

    def counts(self) -> tuple[int, int]:
        """(inbound messages, receipts) the network holds for the connection."""
        messages = sum(1 for _, event in self.queue if isinstance(event, InboundMessage))
        messages += sum(1 for event in self.unsettled.values() if isinstance(event, InboundMessage))
        return messages, self.held() - messages

    def keep_media(self, key: str, data: bytes) -> None:
        self.media[key] = data
        self.media_bytes += len(data)
        while len(self.media) > MEDIA_MAX_ITEMS or self.media_bytes > MEDIA_MAX_BYTES:
            _, dropped = self.media.popitem(last=False)
            self.media_bytes -= len(dropped)

