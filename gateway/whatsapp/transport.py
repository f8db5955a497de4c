"""What a WhatsApp session needs from WhatsApp, whatever carries it (neonize or the sandbox).

A transport is started by its SessionActor with `await nursery.start(transport.run, events)`: it
connects, reports everything as events on the `events` channel (awaited sends: a full mailbox makes
the transport wait — backpressure, not loss), and returns or raises when the connection ends.
Commands (send, download, mark read, presence, logout) are async methods, callable once `run`
has called `task_status.started()`.

**Settling (the intake invariant).** An `InboundMessage` or `Receipt` may carry `settle`, a sync
callback the consumer calls once the event is committed (or deliberately ignored). Until then the
network keeps it and delivers it again after a reconnect or a restart: a transport acknowledges to
WhatsApp only what was settled, where the library lets it (see DESIGN.md for the window that remains
with neonize). `settle` is idempotent and cheap; call it through `settle(event)`.

**Idempotent sends.** `SendText`/`SendMedia` carry `id`, the WhatsApp message id chosen by zapgate
when the outbox row is written (`new_message_id()`): a transport given the same id twice sends once
and answers the first `Sent` again, so a send retried after a crash never reaches the contact twice.

Events and commands are `attrs.frozen` classes named as facts (`InboundMessage`) or commands
(`SendText`). Ids are WhatsApp's: a message id is a string, a chat or user is a JID such as
`5511999990000@s.whatsapp.net`, `123456789@lid` or `1203630@g.us`.
"""

from __future__ import annotations

import datetime as dt
import enum
import secrets
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import attrs
import trio


class TransportError(Exception):
    """The transport failed (network, protocol); the session reconnects with backoff."""


class SendFailed(TransportError):
    """WhatsApp refused one command; `reason` says why. The session stays connected."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PairingTimeout(TransportError):
    """Nobody scanned the QR codes (or typed the pairing code) in time: the session stops waiting (TIMEOUT)."""


class InjectedCrash(Exception):
    """A fault injected on purpose (the sandbox's "crash", only with SANDBOX_CRASH_FAULTS=on): not a transport
    failure to ride out, but a stand-in for a bug in the session's own code, which the session lets crash it so
    that its supervisor restarts it (how supervision, crash loops and the runtime view are tested end to end)."""


def injected_crash(error: BaseException) -> bool:
    """Whether `error` is, or is a group holding, an :class:`InjectedCrash`."""
    if isinstance(error, BaseExceptionGroup):
        return error.subgroup(InjectedCrash) is not None
    return isinstance(error, InjectedCrash)


class NotConnected(TransportError):
    """A command was given while the transport is not connected."""


class NotSupported(TransportError):
    """The transport cannot do this at all (not a failure of this one call: asking again will not help)."""


class MessageKind(enum.StrEnum):
    TEXT = "chat"
    IMAGE = "image"
    AUDIO = "audio"
    VOICE = "ptt"
    VIDEO = "video"
    DOCUMENT = "document"
    STICKER = "sticker"
    LOCATION = "location"
    CONTACT = "vcard"
    REACTION = "reaction"
    EDIT = "edit"
    REVOKE = "revoke"
    UNKNOWN = "unknown"


class Ack(enum.IntEnum):
    """A message's `ack`, on the scale the Whaticket family's Baileys backends store (ticketz, whaticket-saas:
    Baileys' `WAMessageStatus`, with -1 for a send that failed) and their frontends draw: ticketz shows -1 as
    an error, 1 a clock, 2 one tick, 3 two ticks, 4 two blue ticks (5 no icon; whaticket-saas draws it blue).

    NONE is Baileys' ERROR, which those backends never store for a failure (that is -1): they store 0 for a
    message that has no status of ours, a contact's (`msg.status || 0`: Baileys sets a status only on our
    own messages). A private note is 2 (SENT), as the Gold lineage's backends store their internal notes."""

    FAILED = -1
    NONE = 0
    PENDING = 1
    SENT = 2
    DELIVERED = 3
    READ = 4
    PLAYED = 5


# ─── events ─────────────────────────────────────────────────────────────────────────────

@attrs.frozen
class QrCode:
    """Show this to be scanned; `index` counts the codes shown since the start."""

    code: str
    index: int


@attrs.frozen
class PairingCode:
    """Type this code on the phone (pairing by phone number instead of a QR)."""

    code: str


@attrs.frozen
class Connected:
    jid: str  # our own JID
    push_name: str = ""


@attrs.frozen
class Disconnected:
    """The connection dropped; the session reconnects."""

    reason: str


@attrs.frozen
class LoggedOut:
    """The device was unlinked (or the number banned): the device store is cleared; a new QR is needed."""

    reason: str
    banned: bool = False


@attrs.frozen
class MediaRef:
    """Where to download an inbound message's media from (opaque to everyone but the transport)."""

    kind: MessageKind
    mimetype: str
    filename: str | None = None
    size: int | None = None
    key: str = ""  # transport-specific handle


@attrs.frozen
class InboundMessage:
    """A message in a chat: from a contact, or sent by us from another device (`from_me`)."""

    id: str
    chat: str
    sender: str
    kind: MessageKind
    timestamp: dt.datetime
    from_me: bool = False
    body: str = ""
    media: MediaRef | None = None
    quoted_id: str | None = None
    push_name: str = ""
    sender_lid: str | None = None
    sender_phone: str | None = None
    is_group: bool = False
    group_name: str | None = None
    participant: str | None = None  # the sender inside a group
    target_id: str | None = None  # reaction / edit / revoke: the message it acts on
    reaction: str | None = None  # the emoji ("" removes a reaction)
    latitude: float | None = None
    longitude: float | None = None
    vcard: str | None = None
    # called once the message is committed (or ignored on purpose): the network may forget it then
    settle: Callable[[], None] | None = attrs.field(default=None, eq=False, repr=False)


@attrs.frozen
class Receipt:
    chat: str
    ids: tuple[str, ...]
    ack: Ack
    timestamp: dt.datetime
    sender: str | None = None  # who read or received (a group member in groups); None: the chat's contact
    settle: Callable[[], None] | None = attrs.field(default=None, eq=False, repr=False)


def settle(event: Any) -> None:
    """Tell the network that `event` is committed (no-op for events without a `settle`)."""
    callback = getattr(event, "settle", None)
    if callback is not None:
        callback()


def new_message_id() -> str:
    """A WhatsApp-style id for a message we send ("3EB0" + 18 hex digits, as whatsmeow makes them)."""
    return "3EB0" + secrets.token_hex(9).upper()


@attrs.frozen
class ContactUpdate:
    jid: str
    push_name: str | None = None
    lid: str | None = None
    phone: str | None = None


Event = QrCode | PairingCode | Connected | Disconnected | LoggedOut | InboundMessage | Receipt | ContactUpdate


# ─── commands ───────────────────────────────────────────────────────────────────────────

@attrs.frozen
class SendText:
    to: str
    body: str
    quoted_id: str | None = None
    id: str | None = None  # the message id to send under (idempotency key); None: the transport picks one


@attrs.frozen
class SendMedia:
    to: str
    kind: MessageKind  # IMAGE, VIDEO, AUDIO, VOICE, DOCUMENT, STICKER
    data: bytes = attrs.field(repr=lambda data: f"<{len(data)} bytes>")
    mimetype: str = "application/octet-stream"
    filename: str | None = None
    caption: str = ""
    quoted_id: str | None = None
    id: str | None = None  # the message id to send under (idempotency key); None: the transport picks one


@attrs.frozen
class SendReaction:
    to: str
    target_id: str
    emoji: str  # "" removes it
    target_from_me: bool = False


@attrs.frozen
class EditMessage:
    to: str
    target_id: str
    body: str


@attrs.frozen
class DeleteForEveryone:
    to: str
    target_id: str


Command = SendText | SendMedia | SendReaction | EditMessage | DeleteForEveryone


@attrs.frozen
class Sent:
    """WhatsApp took the command: the id of the message it created and when."""

    id: str
    timestamp: dt.datetime


@attrs.frozen
class OnWhatsApp:
    """Whether a phone number has a WhatsApp account (`is_on_whatsapp`): `number` as asked (digits with the
    country code), `jid` the account's when it has one (WhatsApp's own form of the number, which may differ:
    Brazil's older mobiles answer without their ninth digit)."""

    number: str
    exists: bool
    jid: str | None = None


class Presence(enum.StrEnum):
    AVAILABLE = "available"
    UNAVAILABLE = "unavailable"
    COMPOSING = "composing"
    RECORDING = "recording"
    PAUSED = "paused"


@runtime_checkable
class Transport(Protocol):
    """One WhatsApp connection."""

    async def run(self, events: trio.MemorySendChannel[Event], *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect (pairing first when there is no device) and report events until stopped.

        Calls `task_status.started()` once commands may be given. Returns when `logout` ends the
        connection; raises TransportError when the connection fails (the session decides to retry).
        """
        ...

    async def send(self, command: Command) -> Sent: ...

    async def download(self, media: MediaRef) -> bytes: ...

    async def mark_read(self, chat: str, ids: tuple[str, ...], sender: str | None = None) -> None: ...

    async def set_presence(self, chat: str, presence: Presence) -> None: ...

    async def is_on_whatsapp(self, numbers: Sequence[str]) -> list[OnWhatsApp]:
        """Which of `numbers` (digits with the country code) have a WhatsApp account: one answer per number,
        in their order. Callers keep the calls small and paced (WhatsApp limits these queries); raises
        NotConnected, TransportError, or NotSupported when the transport cannot ask."""
        ...

    async def request_pairing_code(self, phone: str) -> str:
        """Pair by phone number: the code to type on the phone (also reported as a PairingCode event)."""
        ...

    async def logout(self) -> None:
        """Unlink the device and clear the device store."""
        ...
