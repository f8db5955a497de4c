"""Ticket actors: one TicketActor per conversation (connection, chat), routed to by the TicketRouter.

Every inbound event of a session goes to the actor of its chat, which handles one message at a time
(so the order within a chat is kept) while different chats proceed in parallel. The actor caches its
contact and current ticket, writes through the group-commit writer (durable before anything is
announced), then publishes `company-{id}-appMessage`, `-ticket` and `-contact` events. It also owns
the chat's outbound path: the message row is written `pending` first (the outbox), then handed to the
session; a connection that is down leaves it pending until the session is back.

Actors stop after `idle_timeout` without work (the router's reaper looks every quarter of it, so an
actor's receive carries no timer of its own); the registry keeps at most `max_alive` of them,
passivating the least recently used idle ones.

Life cycle without loss (DESIGN.md §3, STYLE rule 7b):
- A stop (idle, passivation, shutdown) first takes the actor out of the registry, then lets it finish
  what its mailbox holds; the next message for its chat starts a successor once it has ended (so one
  chat never has two actors, and the order of its messages is kept). Senders blocked on its full
  mailbox are refused when it closes and deliver to the successor.
- A crash restarts the actor (its own restart budget): the mailbox and its handle outlive the
  incarnation, the message it crashed on is tried again (at most `MAX_ATTEMPTS` times, then set aside,
  logged and counted — never settled, so the network delivers it again after a reconnect).
- An actor that ends for good (given up, or cancelled at the shutdown deadline) answers every request
  left in its mailbox with `ActorUnavailable` (503 + Retry-After); inbound events left there are not
  settled, so the network delivers them again. Every request to an actor has a bound (`ASK_TIMEOUT`).
- A full mailbox never blocks the session that delivers: its events wait in the handle's overflow
  (bounded for all chats together by `OVERFLOW_MAX`; past it, the session waits — backpressure).
- An inbound event is settled with the network (`wa.settle`) only once committed; a database that is
  away is retried with backoff, the event held, rather than crashing the actor.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import attrs
import trio
import trio.lowlevel

from actors import campaign_replies, routing
from actors.automation import rules
from actors.receipts import ReceiptBatcher
from actors.session import SessionEnded, SessionManager
from gateway.broker import Broker
from gateway.registry import Registry
from gateway.supervisor import ChildSpec, RestartPolicy, Supervisor, SupervisorHandle
from gateway.whatsapp import transport as wa
from storage import conversations, settings, timers
from storage import routing as routing_rows
from storage.conversations import ContactIdentity, IncomingRow, Reuse
from storage.db import Database, Row
from storage.errors import DB_AWAY, InvalidReference, NotFound, Unavailable
from storage.media import MediaStore
from storage.writer import GroupCommitWriter

log = logging.getLogger("zapgate.ticket")

MAILBOX = 256
IDLE_TIMEOUT = 120.0
MAX_ALIVE = 10_000
ASK_TIMEOUT = 30.0  # seconds an API request waits for a conversation's actor before a 503
OVERFLOW_MAX = 50_000  # events waiting beyond full mailboxes, all chats together; past it the session waits
MAX_ATTEMPTS = 3  # tries of one message that crash its actor, before it is set aside
RESTART_BUDGET = (5, 60.0)  # an actor's own restarts per seconds; past it, it is given up
STOP_TIMEOUT = 5.0  # seconds a stopping actor has to finish its mailbox before it is cancelled
RETRY_INITIAL, RETRY_MAX = 0.2, 5.0  # backoff while the database is unavailable
SEND_RETRY_FOR = 10.0  # seconds an outbox write is retried (same key) before the caller gets a 503
SETTINGS_TTL = 5.0  # seconds a company's intake settings are cached
MEDIA_KINDS = {wa.MessageKind.IMAGE, wa.MessageKind.AUDIO, wa.MessageKind.VOICE, wa.MessageKind.VIDEO,
               wa.MessageKind.DOCUMENT, wa.MessageKind.STICKER}

Key = tuple[int, str]  # (whatsapp id, chat JID)
T = TypeVar("T")
_WAKE = object()  # put in a waiting actor's mailbox by a stop: nothing to handle, only a wake-up


class ActorUnavailable(Exception):
    """The conversation's actor could not answer (stopping, overloaded, given up): retry later (503)."""


def user_part(jid: str | None) -> str:
    """The user of a JID without device or agent: '5511999:3@s.whatsapp.net' → '5511999'."""
    if not jid:
        return ""
    return jid.split("@", 1)[0].split(":", 1)[0].split(".", 1)[0]


def chat_of_contact(contact: Row) -> str:
    if contact["is_group"]:
        return f"{contact['number']}@g.us"
    if contact["number"]:
        return f"{contact['number']}@s.whatsapp.net"
    return f"{contact['lid']}@lid"


def chat_of_ticket(ticket: Row) -> str:
    """The chat of a ticket as ticket_show shows it (its contact as JSON)."""
    contact = ticket["contact"]
    return chat_of_contact({"is_group": contact["isGroup"], "number": contact["number"], "lid": contact["lid"]})


def chat_key(event: wa.InboundMessage | wa.Receipt) -> str:
    """The conversation a message belongs to: the group, else the contact's phone JID (LID when unknown)."""
    if isinstance(event, wa.Receipt) or event.is_group:
        return event.chat
    if event.sender_phone or event.chat.endswith("@s.whatsapp.net"):
        phone = user_part(event.sender_phone) if event.sender_phone and not event.from_me else user_part(event.chat)
        return f"{phone}@s.whatsapp.net"
    return event.chat


@attrs.frozen
class Presenters:
    ticket: Callable[[Row], dict[str, Any]]
    message: Callable[[Row, Row | None], dict[str, Any]]  # a message row and its ticket (tickets_shown)
    contact: Callable[[Row], dict[str, Any]]


# ─── mailbox messages ───────────────────────────────────────────────────────────────────

@attrs.frozen
class Deliver:
    event: wa.InboundMessage | wa.Receipt


@attrs.frozen
class SendOut:
    ticket_id: int
    body: str
    user_id: int | None
    reply: trio.MemorySendChannel[Any]
    media: tuple[bytes, str, str | None, str] | None = None  # (data, mimetype, filename, kind)
    quoted_message_id: int | None = None
    private: bool = False  # an internal note: stored ('private') and announced, never sent
    sent_by: str | None = None  # an automated text sent for the agent (the farewell: 'system'); not a human reply


@attrs.frozen
class FlushOutbox:
    ticket_id: int


@attrs.frozen
class TimerFired:
    """One of the conversation's ticket timers is due (storage.timers; kinds in actors.automation.rules)."""

    timer: timers.Timer


@attrs.frozen
class RunStep:
    """Another automation's step for this conversation (a scheduled message, actors/schedules.py): `work` runs
    as one transaction and answers a `routing.Outcome`, or a result carrying one as `.outcome`; what it wrote
    is announced and sent as routing's is (in order with the chat's other messages), then `done(result)` runs.
    A step whose rows are already committed (a campaign's claim) comes as `written`, with no `work`."""

    work: Callable[[Any], Any] | None = None
    done: Callable[[Any], Awaitable[None]] | None = None
    written: Any = None


@attrs.frozen
class RoutingProfile:
    """What a conversation's intake needs to know of its company and connection to decide whether a message
    needs a routing step at all (cached briefly by the router): most messages, to a ticket an agent serves
    with no hours or timeouts configured, need none."""

    settings: dict[str, str]
    has_queues: bool
    expires_ticket: int
    has_greeting: bool = False
    always: bool = False  # hours or timeouts configured: every message of the contact's is routed

    @classmethod
    def of(cls, settings: dict[str, str], has_queues: bool, expires_ticket: int, has_greeting: bool
           ) -> RoutingProfile:
        always = (settings.get("scheduleType", "disabled") != "disabled" or expires_ticket > 0
                  or any(settings.get(key, "0").strip() not in ("", "0") for key in
                         ("chatbotTicketTimeout", "noQueueTimeout", "openTicketTimeout")))
        return cls(settings, has_queues, expires_ticket, has_greeting, always)

    @property
    def reopen_minutes(self) -> int:
        value = self.settings.get("autoReopenTimeout", "0").strip()
        return int(value) if value.isdigit() else 0

    def routes(self, ticket: Row, created: bool) -> bool:
        """Whether this message needs a routing step (run for every message of the contact's: kept cheap)."""
        if self.always:
            return True
        status = ticket["status"]
        if created:  # a new conversation on a connection with neither queues nor a greeting: nothing to do (its
            return self.has_queues or self.has_greeting  # routed_message_id stays empty: routed as new later)
        if status == "closed":
            return ticket.get("rating_at") is not None
        return bool(ticket.get("chatbot")) or (status == "pending" and self.has_queues
                                               and ticket.get("queue_id") is None and ticket.get("user_id") is None)


@attrs.frozen
class Call:
    """Run `fn(actor)` inside the actor (ticket updates by the API) and answer its result."""

    fn: Callable[[TicketActor], Any]
    reply: trio.MemorySendChannel[Any]


@attrs.define(eq=False)
class TicketHandle:
    key: Key
    _mailbox: trio.MemorySendChannel[Any]
    _cancel_scope: trio.CancelScope | None = None
    last_used: float = 0.0
    busy_sending: bool = False
    dispatching: bool = False  # handling a message: stopping it now could cut a write from its announcement
    to_flush: dict[int, None] = attrs.field(factory=dict)  # the actor's tickets with outbox work waiting
    overflow: collections.deque[Any] = attrs.field(factory=collections.deque)  # beyond the full mailbox, in order
    stopping: bool = False  # out of the registry: finishing what it holds
    closed: bool = False  # ended for good: takes nothing more
    ended: trio.Event = attrs.field(factory=trio.Event)
    _router: Any = None  # the TicketRouter: its retire hook and overflow gauge
    company_id: int = 0

    @property
    def mailbox_depth(self) -> int:
        """Messages waiting in its mailbox (of MAILBOX), and beyond it in its overflow."""
        return self._mailbox.statistics().current_buffer_used + len(self.overflow)

    def idle(self) -> bool:
        """Nothing to do and nothing under way: stopping the actor now costs nothing."""
        stats = self._mailbox.statistics()
        return (stats.current_buffer_used == 0 and stats.tasks_waiting_send == 0 and not self.busy_sending
                and not self.dispatching and not self.to_flush and not self.overflow)

    def stop(self) -> None:
        """Out of the registry at once; the actor finishes its mailbox, then ends."""
        if self.stopping:
            return
        self.stopping = True
        if self._router is not None:
            self._router._retire(self)
        try:  # wake it if it waits for mail (a cancel scope around every wait cost more, per message)
            self._mailbox.send_nowait(_WAKE)
        except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # full (it is not waiting) or ended

    def cancel(self) -> None:
        """Stop now (the shutdown deadline): what is left is answered with ActorUnavailable."""
        self.stop()
        if self._cancel_scope is not None:
            self._cancel_scope.cancel()


class TicketActor:
    def __init__(self, router: TicketRouter, company_id: int, whatsapp_id: int, chat: str) -> None:
        self.router = router
        self.company_id = company_id
        self.whatsapp_id = whatsapp_id
        self.chat = chat
        self.contact: Row | None = None
        self.ticket: Row | None = None  # the ticket_show view of the current ticket
        self._to_flush: dict[int, None] = {}  # tickets with outbox messages to send, in order of request
        self._wake_sender = trio.Event()
        self._handle: TicketHandle | None = None
        self._receive: trio.MemoryReceiveChannel[Any] | None = None
        self._nursery: trio.Nursery | None = None
        self._sender_started = False
        self._current: Any = None  # the message being handled (tried again by the next incarnation on a crash)
        self._attempts = 0

    async def run(self, *, task_status: trio.TaskStatus[TicketHandle] = trio.TASK_STATUS_IGNORED) -> None:
        """One incarnation. The first creates the mailbox and registers; a restart (after a crash) reuses them."""
        if self._handle is None:
            send, self._receive = trio.open_memory_channel[Any](MAILBOX)
            self._handle = TicketHandle((self.whatsapp_id, self.chat), send, last_used=trio.current_time(),
                                        to_flush=self._to_flush, router=self.router,
                                        company_id=self.company_id)
            self.router.registry.register(self._handle.key, self._handle)
        else:  # restarted: whatever the last incarnation cached may be what made it crash
            self.contact = self.ticket = None
        handle, receive = self._handle, self._receive
        assert receive is not None
        if handle.closed:
            task_status.started(handle)
            return
        with trio.CancelScope() as scope:
            handle._cancel_scope = scope
            async with trio.open_nursery() as nursery:
                # The sender hands the outbox to WhatsApp on its own task, started on the first send: a slow
                # WhatsApp never delays writing (and acknowledging) the next message, and the many actors
                # that only receive carry no second task.
                self._nursery = nursery
                self._sender_started = False
                if self._to_flush:
                    self._request_flush(next(iter(self._to_flush)))
                task_status.started(handle)
                await self._serve(handle, receive)
                nursery.cancel_scope.cancel()  # finished: the sender too

    async def _serve(self, handle: TicketHandle, receive: trio.MemoryReceiveChannel[Any]) -> None:
        """Handle messages one at a time until stopped and drained (returns) or cancelled."""
        while True:
            message = self._current
            if message is not None:  # the last incarnation crashed on it
                self._attempts += 1
                if self._attempts >= MAX_ATTEMPTS:
                    self.router._set_aside(self, message)
                    self._current, self._attempts = None, 0
                    continue
            else:
                message = _next_nowait(handle, receive)
                if message is None:
                    if handle.stopping:
                        # Drained: closed in the same step, so nothing more can reach this mailbox (senders are
                        # refused and go to the successor). Outbox rows still to send stay pending in the
                        # database: the successor, or the next connect, sends them (under the same ids).
                        receive.close()
                        return
                    message = await receive.receive()
                if message is _WAKE:  # a stop's wake-up: look again
                    continue
                self._current = message
            handle.last_used = trio.current_time()
            handle.dispatching = True
            try:
                await self._dispatch(message)
            finally:
                handle.dispatching = False
            self._current, self._attempts = None, 0

    def _ended(self) -> None:
        """The supervisor's on_exit: this actor ended for good. Answer what is left; never drop it silently."""
        handle, receive = self._handle, self._receive
        if handle is None or receive is None or handle.closed:
            return
        handle.closed = True
        handle.stopping = True
        self.router.registry.unregister(handle.key, handle)
        receive.close()  # senders waiting for room are refused: they deliver to a successor
        left: list[Any] = []
        if self._current is not None:
            left.append(self._current)
            self._current = None
        while True:
            try:
                message = receive.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                break
            if message is not _WAKE:
                left.append(message)
        left.extend(handle.overflow)
        self.router._overflowed -= len(handle.overflow)
        handle.overflow.clear()
        self.router._left_behind(self, left)
        if self.router._retiring.get(handle.key) is handle:
            del self.router._retiring[handle.key]
        handle.ended.set()

    def _request_flush(self, ticket_id: int) -> None:
        self._to_flush[ticket_id] = None
        self._wake_sender.set()
        if not self._sender_started and self._nursery is not None:
            self._sender_started = True
            self._nursery.start_soon(self._sender)

    async def _sender(self) -> None:
        assert self._handle is not None
        while True:  # sends that fail for the database are left pending: the next (re)connect sends them
            await self._wake_sender.wait()
            self._wake_sender = trio.Event()
            while self._to_flush:
                ticket_id = next(iter(self._to_flush))
                del self._to_flush[ticket_id]
                self._handle.busy_sending = True
                try:
                    await self._flush_outbox(ticket_id)
                finally:
                    self._handle.busy_sending = False

    async def _dispatch(self, message: Any) -> None:
        if isinstance(message, Deliver):
            if isinstance(message.event, wa.Receipt):
                await self._while_unavailable(lambda: self._on_receipt(message.event))
            else:
                await self._on_inbound(message.event)
            wa.settle(message.event)  # committed (or a duplicate, or nothing to change): the network may forget it
        elif isinstance(message, SendOut):
            await self._on_send(message)
        elif isinstance(message, FlushOutbox):
            self._request_flush(message.ticket_id)
        elif isinstance(message, TimerFired):
            outcome = await self._while_unavailable(
                lambda: self.router.db.run(routing.timer_work(message.timer, self.router.clock)))
            await self._after_routing(outcome)
        elif isinstance(message, RunStep):
            work = message.work
            result = message.written if work is None else \
                await self._while_unavailable(lambda: self.router.db.run(work))
            await self._after_routing(getattr(result, "outcome", result))
            if message.done is not None:
                await message.done(result)
        elif isinstance(message, Call):
            try:
                result: Any = await message.fn(self)
            except Exception as error:
                result = error
            _answer(message.reply, result)

    async def _while_unavailable(self, step: Callable[[], Awaitable[T]]) -> T:
        """Run `step` until the database takes it: an outage is waited out here (the event held, unsettled).

        Only for steps that may run twice: intake is idempotent by (connection, WhatsApp id), updates by
        their keys. A stop cancels the wait; the event, unsettled, comes again from the network.
        """
        delay = RETRY_INITIAL
        while True:
            try:
                return await step()
            except DB_AWAY as error:
                self.router.note_unavailable(error)
                await trio.sleep(delay)
                delay = min(RETRY_MAX, delay * 2)

    # ── inbound ──

    async def _on_inbound(self, event: wa.InboundMessage) -> None:
        router = self.router
        if event.kind in (wa.MessageKind.REACTION, wa.MessageKind.EDIT, wa.MessageKind.REVOKE):
            await self._while_unavailable(lambda: self._on_change(event))
            return
        media_url = media_name = media_mimetype = None
        if event.media is not None and event.kind in MEDIA_KINDS:
            if await self._while_unavailable(lambda: router.db.fetch_one(
                    router.db.q.message_exists, {"whatsapp_id": self.whatsapp_id, "wid": event.id})):
                return  # redelivered: stored already, no second download
            stored = await self._download(event.media)
            if stored is not None:
                media_url, media_name, media_mimetype = stored.url, stored.filename, stored.mimetype
        row = IncomingRow(
            wid=event.id, from_me=event.from_me, body=_body_of(event), media_type=str(event.kind), at=event.timestamp,
            media_url=media_url, media_name=media_name or (event.media.filename if event.media else None),
            media_mimetype=media_mimetype or (event.media.mimetype if event.media else None),
            quoted_wid=event.quoted_id, participant=user_part(event.participant) or None,
            # ours from another device: WhatsApp's server has it (Baileys' SERVER_ACK); a contact's: no status
            ack=int(wa.Ack.SENT if event.from_me else wa.Ack.NONE),
            **_coordinates(event),
        )
        who = self._identity(event)
        q = router.db.q
        contact, ticket = self.contact, self.ticket
        automated = not event.from_me and not event.is_group
        profile = (router.cached_profile(self.company_id, self.whatsapp_id)
                   or await router.routing_profile(self.company_id, self.whatsapp_id)) if automated else None
        # (a ticket waits for a rating only while the company asks for them: no lookup otherwise)
        reuse = Reuse(rating_answer=profile.settings.get("userRating") == "enabled"
                      and rules.rating_answer(row.body) is not None,
                      reopen_minutes=profile.reopen_minutes) if profile is not None else None
        # Known contact and active ticket (nearly every message): one statement, batched with other chats'.
        # The first try is made straight (this runs for every message); a database that is away is then
        # waited out, each later try on the slow path (the cached contact and ticket may be stale).
        def write(contact: Row | None, ticket: Row | None) -> Awaitable[conversations.Intake]:
            return router.writer.submit(conversations.intake_write(
                q, company_id=self.company_id, whatsapp_id=self.whatsapp_id, who=who, contact=contact,
                ticket=ticket, message=row, reuse=reuse))

        try:
            try:
                result = await write(contact, ticket)
            except InvalidReference:
                # The cached contact or ticket was deleted meanwhile (DELETE /contacts/:id takes its tickets):
                # the message starts over from what the database holds, as a first message does — a new
                # contact and ticket — instead of crashing the actor on a foreign key.
                self.contact = self.ticket = None
                result = await write(None, None)
        except DB_AWAY as error:
            router.note_unavailable(error)
            result = await self._while_unavailable(lambda: write(None, None))
        self.contact = result.contact
        if result.message is None:  # the same WhatsApp message again: stored once, announced once —
            if profile is not None:  # and routed once: a crash may have come between its commit and its routing
                await self._route_stored(event.id, row.body)
            return
        full = (result.ticket_created or self.ticket is None or self.ticket["id"] != result.ticket["id"]
                or result.contact_changed)
        try:
            shown = await self._refresh_ticket(result.ticket, full=full)
        except DB_AWAY as error:
            router.note_unavailable(error)
            shown = await self._while_unavailable(lambda: self._refresh_ticket(result.ticket, full=full))
        message = result.message
        if message.get("quoted_msg_id"):  # a reply: announced with its quote (only replies pay the read)
            message = await self._while_unavailable(lambda: self._with_quote(result.message))
        router.publish_message("create", self.company_id, message, self.ticket, shown)
        if result.contact_changed:
            router.publish(self.company_id, "contact", {"action": "update",
                                                        "contact": router.presenters.contact(result.contact)})
        if automated and campaign_replies.may_apply(self.company_id) is not False:
            await self._campaign_reply(result.ticket["id"], result.message, result.contact)
        if profile is not None and profile.routes(result.ticket, result.ticket_created):
            await self._route(result.ticket["id"], result.message["id"], row.body)

    async def _campaign_reply(self, ticket_id: int, message: Row, contact: Row) -> None:
        """Campaigns' side of a contact's message (actors/campaign_replies.py): opt-out, replied, confirmed."""
        router = self.router
        outcome = await self._while_unavailable(lambda: router.db.run(campaign_replies.reply_work(
            self.company_id, ticket_id, message, contact, router.clock)))
        await self._after_routing(outcome)

    # ── routing (actors/routing.py: one transaction a step; sends through the outbox, after the message) ──

    async def _route(self, ticket_id: int, message_id: int, body: str) -> None:
        router = self.router
        outcome = await self._while_unavailable(lambda: router.db.run(routing.route_work(
            self.company_id, ticket_id, message_id, body, router.clock)))
        await self._after_routing(outcome)

    async def _route_stored(self, wid: str, body: str) -> None:
        """A redelivered message: routed now if its routing step did not commit before (it is a no-op if it did)."""
        db = self.router.db
        stored = await self._while_unavailable(lambda: db.fetch_one(db.q.message_by_wid, {
            "whatsapp_id": self.whatsapp_id, "wid": wid, "company_id": self.company_id}))
        if stored is not None and not stored["from_me"]:
            await self._route(stored["ticket_id"], stored["id"], body)

    async def _after_routing(self, outcome: routing.Outcome) -> None:
        """Announce and send what a routing step wrote: the ticket, then its messages in order."""
        router = self.router
        for due in outcome.due:
            if router.scheduler is not None:
                router.scheduler.nudge(due)
        if outcome.empty:
            return
        ticket_id = outcome.ticket_id or outcome.messages[0]["ticket_id"]
        await self._while_unavailable(lambda: self.reload(ticket_id))
        for row in outcome.messages:
            shown = await self._while_unavailable(
                lambda row=row: conversations.show_message(router.db, self.company_id, row["id"]))
            router.publish_message("create", self.company_id, shown, self.ticket)
        if outcome.messages:
            self._request_flush(ticket_id)

    async def after_close(self, ticket_id: int) -> Row:
        """An agent closed the ticket: the rating question if the company asks for ratings, every wait of
        the ticket stopped; the ticket as it is then (announced)."""
        outcome = await self.router.db.run(routing.close_work(self.company_id, ticket_id, self.router.clock))
        if outcome.empty:  # no question asked (and so no timer started): the close itself is to announce
            return await self.reload(ticket_id)
        await self._after_routing(outcome)  # (it re-read and announced the ticket)
        assert self.ticket is not None
        return self.ticket

    async def _with_quote(self, row: Row) -> Row:
        """A message as announced: one that quotes another is read again with what is shown of the quoted one
        (message_show), so that a frontend that replaces the message it has by an update keeps the quote.
        Only replies pay the read."""
        if not row.get("quoted_msg_id") or "quoted_wid" in row:
            return row
        return await conversations.show_message(self.router.db, self.company_id, row["id"])

    def _identity(self, event: wa.InboundMessage) -> ContactIdentity:
        if event.is_group:
            return ContactIdentity(number=user_part(event.chat), name=event.group_name or "", is_group=True)
        phone = user_part(event.sender_phone) if event.sender_phone else ""
        if not phone and self.chat.endswith("@s.whatsapp.net"):
            phone = user_part(self.chat)
        lid = user_part(event.sender_lid) if event.sender_lid else None
        if lid is None and event.chat.endswith("@lid"):
            lid = user_part(event.chat)
        return ContactIdentity(number=phone, lid=lid, name="" if event.from_me else event.push_name)

    async def _download(self, media: wa.MediaRef) -> Any:
        session = self.router.sessions.lookup(self.whatsapp_id)
        if session is None:
            return None
        try:
            data = await session.download(media)
        except (wa.TransportError, SessionEnded) as error:
            log.warning("media download failed", extra={"fields": {"whatsapp_id": self.whatsapp_id,
                                                                   "reason": str(error)}})
            return None
        return await self.router.media.save(data, media.filename, media.mimetype)

    async def _on_change(self, event: wa.InboundMessage) -> None:
        """A reaction, edit or deletion: it updates the message it targets, if that is a message of this chat
        and, for an edit or a deletion, one its sender wrote (the contact's — in a group, the participant's —
        or, from our other device, ours). Anything else is ignored and logged, never raised."""
        db = self.router.db
        sender = () if event.from_me else (event.sender_phone, event.sender_lid)
        params = {**conversations.chat_scope(self.company_id, self.whatsapp_id, self.chat, also=sender),
                  "wid": event.target_id, "from_me": event.from_me,
                  "participants": [user_part(jid) for jid in (event.participant, *sender) if jid]}
        if event.kind == wa.MessageKind.REACTION:
            row = await db.fetch_one(db.q.message_react, {**params, "reaction": event.reaction or ""})
        elif event.kind == wa.MessageKind.EDIT:
            row = await db.fetch_one(db.q.message_edit, {**params, "body": event.body})
        else:
            row = await db.fetch_one(db.q.message_revoke, params)
        if row is None:
            log.info("%s ignored: not a message of this chat by its sender", event.kind, extra={"fields": {
                "whatsapp_id": self.whatsapp_id, "chat": self.chat, "target": event.target_id,
                "kind": str(event.kind), "from_me": event.from_me}})
        elif self.ticket is not None and row["ticket_id"] == self.ticket["id"]:
            self.router.publish_message("update", self.company_id, await self._with_quote(row), self.ticket)
        else:
            ticket = await conversations.show_ticket(db, self.company_id, row["ticket_id"])
            self.router.publish_message("update", self.company_id, await self._with_quote(row), ticket)

    async def _on_receipt(self, event: wa.Receipt) -> None:
        """Acks for our messages of this chat; ids that are not (another chat's messages, a contact's own)
        are ignored and logged."""
        db = self.router.db
        params = {**conversations.chat_scope(self.company_id, self.whatsapp_id, self.chat), "wids": list(event.ids),
                  "ack": int(event.ack)}
        known = self.ticket["id"] if self.ticket is not None else None

        def work(conn: Any) -> tuple[list[Row], dict[int, Row]]:
            # the acks and, in the same round trip, the tickets to announce them with (not the cached one)
            rows = conn.execute(db.q.message_ack, params).fetchall()
            wanted = list({row["ticket_id"] for row in rows if row["id"] is not None} - {known})
            tickets = {ticket["id"]: ticket for ticket in conn.execute(
                db.q.tickets_show, {"ids": wanted, "company_id": self.company_id})} if wanted else {}
            return rows, tickets

        rows, tickets = await db.run(work)  # one commit, then the announcements
        ours = {row["target"] for row in rows}
        foreign = [wid for wid in event.ids if wid not in ours]
        if foreign:
            log.info("receipt ignored: not our message of this chat", extra={"fields": {
                "whatsapp_id": self.whatsapp_id, "chat": self.chat, "target": ",".join(foreign[:20])}})
        for row in rows:
            if row["id"] is None:
                continue  # ours, but its ack was already there (or further)
            if self.router.on_ack is not None:  # how long the contact's phone took (metrics)
                since = row.get("wa_timestamp") or row["created_at"]
                self.router.on_ack(int(event.ack), max(0.0, (event.timestamp - since).total_seconds()))
            ticket = self.ticket if self.ticket and self.ticket["id"] == row["ticket_id"] else \
                tickets.get(row["ticket_id"]) or await conversations.show_ticket(db, self.company_id, row["ticket_id"])
            self.router.publish_message("update", self.company_id, await self._with_quote(row), ticket)

    async def _refresh_ticket(self, base: Row, *, full: bool) -> dict[str, Any]:
        """Bring the cached ticket up to date with `base` and announce it; its JSON, for reuse."""
        if full or self.ticket is None:
            self.ticket = await conversations.show_ticket(self.router.db, self.company_id, base["id"])
        else:
            self.ticket = {**self.ticket, **{k: base[k] for k in ("status", "unread_messages", "last_message",
                                                                  "last_message_at", "updated_at", "queue_id",
                                                                  "user_id")}}
        shown = self.router.presenters.ticket(self.ticket)
        self.router.publish(self.company_id, "ticket", {"action": "update", "ticket": shown})
        return shown

    def forget(self, ticket_id: int) -> None:
        """The ticket was deleted: the conversation's next message opens a new one."""
        if self.ticket is not None and self.ticket["id"] == ticket_id:
            self.ticket = None
        self._to_flush.pop(ticket_id, None)

    async def reload(self, ticket_id: int) -> Row:
        """Re-read the ticket (after the API changed it) and announce it."""
        self.ticket = await conversations.show_ticket(self.router.db, self.company_id, ticket_id)
        self.router.publish(self.company_id, "ticket", {"action": "update",
                                                        "ticket": self.router.presenters.ticket(self.ticket)})
        return self.ticket

    # ── outbound ──

    async def _on_send(self, request: SendOut) -> None:
        """An agent's message into the outbox, then handed to the sender; a private one (an internal note) is
        stored and announced only: no flush, and the ticket's last message and counters stay the customer
        conversation's."""
        router, db = self.router, self.router.db
        wid = wa.new_message_id()  # the outbox row's key, and the id WhatsApp gets: a retried write or send is one
        try:
            ticket = await conversations.show_ticket(db, self.company_id, request.ticket_id)
            media_url = media_name = media_mimetype = None
            media_type = "chat"
            if request.media is not None:
                data, mimetype, filename, kind = request.media
                stored = await router.media.save(data, filename, mimetype)
                media_url, media_name, media_mimetype, media_type = stored.url, stored.filename, mimetype, kind
            params = {"company_id": self.company_id, "whatsapp_id": self.whatsapp_id, "ticket_id": ticket["id"],
                      "contact_id": ticket["contact_id"], "body": request.body, "media_type": media_type,
                      "media_url": media_url, "media_name": media_name, "media_mimetype": media_mimetype,
                      "quoted_msg_id": request.quoted_message_id, "user_id": request.user_id,
                      "wid": None if request.private else wid, "is_private": request.private,
                      "sent_by": request.sent_by}
            last = conversations.last_message_text(IncomingRow(
                wid="", from_me=True, body=request.body, media_type=media_type, at=ticket["last_message_at"],
                media_name=media_name))

            def write(conn: Any) -> Row:
                row = conn.execute(db.q.outbox_message_insert, params).fetchone()
                if row is None:  # written by an earlier try whose commit we did not hear of
                    return conn.execute(db.q.message_by_wid, params).fetchone()
                if not request.private:
                    conn.execute("UPDATE tickets SET last_message = %(last)s, last_message_at = now(), "
                                 "updated_at = now() WHERE id = %(id)s", {"last": last, "id": ticket["id"]})
                return row

            with trio.move_on_after(SEND_RETRY_FOR) as patience:
                message = await self._while_unavailable(lambda: router.writer.submit(write))
            if patience.cancelled_caught:
                raise Unavailable("the database is unavailable: the message was not stored")
        except Exception as error:
            _answer(request.reply, error)
            return
        self.ticket = ticket
        message = await self._while_unavailable(lambda: conversations.show_message(db, self.company_id, message["id"]))
        _answer(request.reply, message)  # durable in the outbox: the caller may go
        if request.private:
            router.publish_message("create", self.company_id, message, self.ticket)
            return  # never sent: nothing for the sender
        await self._while_unavailable(lambda: self.reload(ticket["id"]))
        router.publish_message("create", self.company_id, message, self.ticket)
        self._request_flush(ticket["id"])

    async def _flush_outbox(self, ticket_id: int) -> None:
        """Send this ticket's pending messages, in order, while the connection is up."""
        router, db = self.router, self.router.db
        session = router.sessions.lookup(self.whatsapp_id)
        if session is None or session.status != "CONNECTED":
            return
        pending = await db.fetch_all(db.q.outbox_pending_for_ticket, {"ticket_id": ticket_id})
        for row in pending:
            command = await self._command_for(row)
            # A campaign's send is marked in flight, then checked still pending: a cancel that committed before
            # the check failed it (skipped here); one that commits after waits for the flight to end before it
            # answers (TicketRouter.settled). So no campaign send leaves after its cancel was answered.
            guarded = row.get("sent_by") == "campaign"
            if guarded:
                router.in_flight[row["id"]] = trio.Event()
            try:
                if guarded:
                    still = await db.fetch_one("SELECT status FROM messages WHERE id = %(id)s AND company_id = %(c)s",
                                               {"id": row["id"], "c": self.company_id})
                    if still is None or still["status"] != "pending":
                        continue
                sent = await session.send(command)
                router.sent[self.company_id, self.whatsapp_id] += 1
            except wa.SendFailed as failure:
                updated = await db.fetch_one(db.q.outbox_failed, {"id": row["id"], "error": failure.reason[:500]})
            except (wa.NotConnected, wa.TransportError, SessionEnded):
                return  # still pending: sent when the connection is back
            else:
                # WhatsApp has it: record that, however long the database takes (until then the row stays
                # pending, and a resend after a restart goes out under the same id: WhatsApp keeps one)
                updated = await self._while_unavailable(lambda row=row, sent=sent: db.fetch_one(
                    db.q.outbox_sent, {"id": row["id"], "wid": sent.id, "at": sent.timestamp}))
            finally:
                if guarded:
                    router.in_flight.pop(row["id"]).set()
            if updated is not None:
                shown = await conversations.show_message(db, self.company_id, updated["id"])
                ticket = self.ticket if self.ticket and self.ticket["id"] == ticket_id else \
                    await conversations.show_ticket(db, self.company_id, ticket_id)
                router.publish_message("update", self.company_id, shown, ticket)

    async def _command_for(self, row: Row) -> wa.Command:
        quoted_wid = None
        if row["quoted_msg_id"]:
            quoted = await conversations.show_message(self.router.db, self.company_id, row["quoted_msg_id"])
            quoted_wid = quoted["wid"]
        if row["media_url"]:
            token, name = row["media_url"].split("/")[2:4]
            found = self.router.media.find(token, name)
            if found is not None:
                data = await trio.to_thread.run_sync(found.path.read_bytes)
                return wa.SendMedia(self.chat, wa.MessageKind(row["media_type"]), data, row["media_mimetype"] or
                                    found.mimetype, found.filename, row["body"], quoted_wid, id=row["wid"])
        return wa.SendText(self.chat, row["body"], quoted_wid, id=row["wid"])


def _body_of(event: wa.InboundMessage) -> str:
    if event.kind == wa.MessageKind.LOCATION and event.latitude is not None:
        return event.body or f"{event.latitude},{event.longitude}"
    if event.kind == wa.MessageKind.CONTACT and event.vcard:
        return event.vcard
    return event.body


def _coordinates(event: wa.InboundMessage) -> dict[str, float]:
    """A location's degrees (kept beside its body, which holds its name or address); nothing for other kinds,
    nor for degrees off the globe (a sender's bad data must not make the message unstorable)."""
    latitude, longitude = event.latitude, event.longitude
    if (event.kind == wa.MessageKind.LOCATION and latitude is not None and longitude is not None
            and -90 <= latitude <= 90 and -180 <= longitude <= 180):
        return {"latitude": latitude, "longitude": longitude}
    return {}


def _next_nowait(handle: TicketHandle, receive: trio.MemoryReceiveChannel[Any]) -> Any:
    """The next message without waiting: the mailbox first, then what overflowed it (it came later)."""
    try:
        return receive.receive_nowait()
    except trio.WouldBlock:
        pass
    if handle.overflow:
        message = handle.overflow.popleft()
        router = handle._router
        router._overflowed -= 1
        if router._overflowed < OVERFLOW_MAX:
            router._overflow_room.set()
        return message
    return None


def _answer(reply: trio.MemorySendChannel[Any], result: Any) -> None:
    try:
        reply.send_nowait(result)
    except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
        pass


# ─── the router ─────────────────────────────────────────────────────────────────────────

@attrs.define
class TicketRouter:
    """Routes session events and API requests to the TicketActor of each conversation."""

    db: Database
    writer: GroupCommitWriter
    broker: Broker
    sessions: SessionManager
    media: MediaStore
    presenters: Presenters
    idle_timeout: float = IDLE_TIMEOUT
    max_alive: int = MAX_ALIVE
    ask_timeout: float = ASK_TIMEOUT
    scheduler: Any = None  # actors.scheduler.Scheduler, set by the composition root (durable timers)
    registry: Registry[Key, TicketHandle] = attrs.field(factory=Registry)
    _supervisor: SupervisorHandle | None = None
    _nursery: trio.Nursery | None = None
    _spawned: int = 0
    _group_policy: dict[int, tuple[float, bool]] = attrs.field(factory=dict)
    _retiring: dict[Key, TicketHandle] = attrs.field(factory=dict)  # stopping actors: successors wait for them
    _overflowed: int = 0  # events in the handles' overflows, all chats
    _overflow_room: trio.Event = attrs.field(factory=trio.Event)
    _closing: bool = False
    _set_aside_total: int = 0
    _left_behind_total: int = 0
    _unavailable_total: int = 0
    _last_unavailable_log: float = -1e9
    scheduler: Any = None  # actors.scheduler.Scheduler: ticket timers (set by bootstrap)
    clock: Callable[[], Any] = routing.utc_now  # routing's wall clock (tests move it)
    # other owners' timer kinds whose handlers deliver into conversations (`run_step`): registered with the
    # scheduler once the conversations run, as the ticket kinds are (kind → handler; set by bootstrap)
    timer_kinds: dict[str, Any] = attrs.field(factory=dict)
    _profiles: dict[tuple[int, int], tuple[float, RoutingProfile]] = attrs.field(factory=dict)
    # campaign messages being handed to WhatsApp now (by id), each with the event set when its flight ends
    in_flight: dict[int, trio.Event] = attrs.field(factory=dict)
    _receipts: ReceiptBatcher | None = None  # the receipts of chats without an actor, written in bulk
    # for metrics, read when scraped: messages from WhatsApp routed, and handed to WhatsApp, by (company, connection)
    received: collections.Counter[tuple[int, int]] = attrs.field(factory=collections.Counter)
    sent: collections.Counter[tuple[int, int]] = attrs.field(factory=collections.Counter)
    on_ack: Callable[[int, float], None] | None = None  # (ack, seconds since sent) of each receipt that moved one

    async def settled(self, message_ids: set[int], patience: float = 10.0) -> bool:
        """Wait until none of `message_ids` is being handed to WhatsApp (a cancel answers after that); False
        if some still were when `patience` ran out."""
        with trio.move_on_after(patience):
            for message_id in message_ids:
                flight = self.in_flight.get(message_id)
                if flight is not None:
                    await flight.wait()
            return True
        return False

    async def run(self, *, task_status: trio.TaskStatus[TicketRouter] = trio.TASK_STATUS_IGNORED) -> None:
        # Ticket actors have restart budgets of their own (RESTART_BUDGET): this one counts only for bugs
        # in the router itself, never for a fault shared by many conversations.
        supervisor = Supervisor("tickets", max_restarts=100, max_seconds=60, shutdown_timeout=8)
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self._supervisor = await nursery.start(supervisor.run)
            self._receipts = await nursery.start(ReceiptBatcher(
                self.db, self.publish_message, on_ack=lambda ack, seconds: self.on_ack and self.on_ack(ack, seconds)
            ).run)
            nursery.start_soon(self._reap_idle)
            if self.scheduler is not None:
                for kind in rules.KINDS:
                    self.scheduler.register(kind, self.timers_due)
                for kind, handler in self.timer_kinds.items():
                    self.scheduler.register(kind, handler)
            try:
                task_status.started(self)
                await trio.sleep_forever()
            finally:
                self._supervisor = None
                self._receipts = None
                self._nursery = None

    # ── entry points ──

    async def inbound(self, company_id: int, whatsapp_id: int, event: wa.Event) -> None:
        """The sessions' inbound sink. Never waits for one chat (only, past OVERFLOW_MAX, for room)."""
        if isinstance(event, wa.InboundMessage | wa.Receipt):
            if isinstance(event, wa.InboundMessage):
                if event.chat.endswith(("@broadcast", "@newsletter")):
                    wa.settle(event)
                    return
                if event.is_group and await self._ignores_groups(company_id):
                    wa.settle(event)
                    return
                self.received[company_id, whatsapp_id] += 1
            chat = chat_key(event)
            if isinstance(event, wa.Receipt) and self._receipts is not None and not self._is_live((whatsapp_id, chat)):
                await self._receipts.put(company_id, whatsapp_id, event)  # no conversation running: in bulk
                return
            await self._deliver(company_id, whatsapp_id, chat, Deliver(event), wait=False)
        elif isinstance(event, wa.Connected) and self._nursery is not None:
            self._nursery.start_soon(self._flush_connection, company_id, whatsapp_id)

    def _is_live(self, key: Key) -> bool:
        """A conversation has an actor (running, starting or stopping): its receipts go to it, in order."""
        return self.registry.has(key) or key in self._retiring

    async def send(self, company_id: int, ticket: Row, request: Callable[[trio.MemorySendChannel[Any]], SendOut]
                   ) -> Row:
        """Write an outbound message to the outbox (through the ticket's actor); the stored row."""
        return await self._ask(company_id, ticket, request)

    async def call(self, company_id: int, ticket: Row, fn: Callable[[TicketActor], Any]) -> Any:
        return await self._ask(company_id, ticket, lambda reply: Call(fn, reply))

    async def run_step(self, company_id: int, whatsapp_id: int, chat: str, step: RunStep) -> None:
        """Hand an automation's step to the conversation's actor; never waits for it (timer handlers)."""
        await self._deliver(company_id, whatsapp_id, chat, step, wait=False)

    async def drain(self) -> None:
        """Shutdown, once intake has stopped: every actor finishes its mailbox and ends. The caller bounds it
        (`move_on_at`); then `cancel_all` answers what is left."""
        self._closing = True
        handles = self.registry.handles() + list(self._retiring.values())
        for handle in handles:
            handle.stop()
        for handle in handles:
            await handle.ended.wait()

    def cancel_all(self) -> None:
        self._closing = True
        for handle in self.registry.handles() + list(self._retiring.values()):
            handle.cancel()

    # ── plumbing ──

    async def timers_due(self, due: list[timers.Timer]) -> None:
        """The scheduler's handler for ticket timers: each to its conversation's actor, which completes it in
        the transaction of its effect. A ticket that is gone completes nothing: the claim lapses and the
        scheduler's retries end it."""
        for timer in due:
            ticket_id = int(timer.payload.get("ticket_id") or 0)
            try:
                ticket = await conversations.show_ticket(self.db, timer.company_id, ticket_id)
            except NotFound:
                await self.db.run(lambda conn, timer=timer: timers.complete(conn, timer))
                continue
            await self._deliver(timer.company_id, ticket["whatsapp_id"], chat_of_ticket(ticket), TimerFired(timer),
                                wait=False)

    def cached_profile(self, company_id: int, whatsapp_id: int) -> RoutingProfile | None:
        cached = self._profiles.get((company_id, whatsapp_id))
        return cached[1] if cached is not None and cached[0] > trio.current_time() else None

    async def routing_profile(self, company_id: int, whatsapp_id: int) -> RoutingProfile:
        """The company's routing settings and the connection's queues, cached for SETTINGS_TTL (a database
        that is away: the last one, or none configured)."""
        now = trio.current_time()
        cached = self._profiles.get((company_id, whatsapp_id))
        if cached is not None and cached[0] > now:
            return cached[1]

        def read(conn: Any) -> RoutingProfile:
            keys = (*rules.SETTING_KEYS, "autoReopenTimeout")
            found = conn.execute("SELECT (SELECT count(*) FROM whatsapp_queues WHERE whatsapp_id = %(w)s "
                                 "AND company_id = %(c)s) AS queues, w.expires_ticket, "
                                 "btrim(w.greeting_message) <> '' AS greets "
                                 "FROM whatsapps w WHERE w.id = %(w)s AND w.company_id = %(c)s",
                                 {"w": whatsapp_id, "c": company_id}).fetchone()
            if found is None:  # the connection is gone: nothing to route
                return RoutingProfile({}, False, 0)
            return RoutingProfile.of(routing_rows.read_settings(conn, company_id, keys), bool(found["queues"]),
                                     int(found["expires_ticket"] or 0), bool(found["greets"]))

        try:
            profile = await self.db.run(read)
        except DB_AWAY as error:
            self.note_unavailable(error)
            return cached[1] if cached is not None else RoutingProfile({}, False, 0)
        self._profiles[(company_id, whatsapp_id)] = (now + SETTINGS_TTL, profile)
        return profile

    def forget_profiles(self, company_id: int) -> None:
        """The company changed a setting, a queue or a connection: the next message reads them again."""
        for key in [key for key in self._profiles if key[0] == company_id]:
            del self._profiles[key]

    async def _ignores_groups(self, company_id: int) -> bool:
        """The company setting CheckMsgIsGroup ("enabled": group messages are ignored), cached briefly."""
        now = trio.current_time()
        cached = self._group_policy.get(company_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            ignore = await settings.get_setting(self.db, company_id, "CheckMsgIsGroup") == "enabled"
        except DB_AWAY as error:  # the database is away: keep the last answer (or store it)
            self.note_unavailable(error)
            return cached[1] if cached is not None else False
        self._group_policy[company_id] = (now + SETTINGS_TTL, ignore)
        return ignore

    async def _ask(self, company_id: int, ticket: Row, make: Callable[[trio.MemorySendChannel[Any]], Any]) -> Any:
        """Send a request to the ticket's actor and wait for its answer, at most `ask_timeout` seconds."""
        reply_send, reply_receive = trio.open_memory_channel[Any](1)
        contact = ticket.get("contact")
        chat = chat_of_ticket(ticket) if isinstance(contact, dict) and "isGroup" in contact else \
            chat_of_contact(await self._contact(company_id, ticket))
        with trio.move_on_after(self.ask_timeout):
            await self._deliver(company_id, ticket["whatsapp_id"], chat, make(reply_send), wait=True)
            async with reply_receive:
                result = await reply_receive.receive()
            if isinstance(result, BaseException):
                raise result
            return result
        raise ActorUnavailable(f"the conversation did not answer within {self.ask_timeout:g}s")

    async def _contact(self, company_id: int, ticket: Row) -> Row:
        contact = ticket.get("contact")
        if isinstance(contact, dict) and "is_group" in contact:
            return contact
        row = await self.db.fetch_one(self.db.q.contact_get, {"id": ticket["contact_id"], "company_id": company_id})
        assert row is not None
        return row

    async def _deliver(self, company_id: int, whatsapp_id: int, chat: str, message: Any, *, wait: bool) -> None:
        """Put `message` in the chat's actor's mailbox (starting the actor when there is none).

        `wait=False` (the sessions): a full mailbox parks it in the handle's overflow instead of waiting;
        only when OVERFLOW_MAX events wait in overflows does the caller wait for room. `wait=True` (requests):
        waits for room in the mailbox (the caller's own deadline bounds it).
        """
        key = (whatsapp_id, chat)
        while True:
            if self._closing:
                raise ActorUnavailable("shutting down")
            handle = await self.registry.get_or_start(key, lambda: self._spawn(company_id, whatsapp_id, chat))
            if handle.closed:  # ended between lookup and now: its successor takes it
                await trio.lowlevel.checkpoint()
                continue
            if not handle.overflow:
                try:
                    handle._mailbox.send_nowait(message)
                    return
                except trio.WouldBlock:
                    pass
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    await trio.lowlevel.checkpoint()
                    continue
            if wait and not handle.overflow:
                try:
                    await handle._mailbox.send(message)
                    return
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    await trio.lowlevel.checkpoint()
                    continue
            if self._overflowed >= OVERFLOW_MAX:  # the last resort: the session waits (the network holds it)
                self._overflow_room = trio.Event() if self._overflow_room.is_set() else self._overflow_room
                await self._overflow_room.wait()
                continue
            handle.overflow.append(message)
            self._overflowed += 1
            return

    async def _spawn(self, company_id: int, whatsapp_id: int, chat: str) -> TicketHandle:
        if self._supervisor is None or self._closing:
            raise ActorUnavailable("the conversations are not running")
        key = (whatsapp_id, chat)
        previous = self._retiring.get(key)
        if previous is not None:  # one actor per chat at a time, and its mail handled in order
            await previous.ended.wait()
        self._passivate_if_full()
        self._spawned += 1
        actor = TicketActor(self, company_id, whatsapp_id, chat)
        max_restarts, max_seconds = RESTART_BUDGET
        return await self._supervisor.start_child(ChildSpec(
            ("ticket", whatsapp_id, chat, self._spawned), actor.run, RestartPolicy.TRANSIENT, shutdown=2.0,
            max_restarts=max_restarts, max_seconds=max_seconds, on_exit=actor._ended))

    def _retire(self, handle: TicketHandle) -> None:
        """A handle is stopping: out of the registry now; its successor waits until it has ended."""
        self.registry.unregister(handle.key, handle)
        if not handle.ended.is_set():
            self._retiring[handle.key] = handle  # until its actor's _ended

    def _set_aside(self, actor: TicketActor, message: Any) -> None:
        """A message its actor crashed on MAX_ATTEMPTS times: logged and counted, its caller answered; an
        inbound event is not settled (the network delivers it again after a reconnect)."""
        self._set_aside_total += 1
        log.error("message set aside after crashing its conversation's actor %d times", MAX_ATTEMPTS,
                  extra={"fields": {"whatsapp_id": actor.whatsapp_id, "chat": actor.chat,
                                    "message": type(message).__name__,
                                    "id": getattr(getattr(message, "event", None), "id", None)}})
        reply = getattr(message, "reply", None)
        if reply is not None:
            _answer(reply, ActorUnavailable("this request crashed its conversation's actor; it was set aside"))
        self._overflow_room.set()

    def _left_behind(self, actor: TicketActor, messages: list[Any]) -> None:
        """What an actor that ended for good still held: requests answered, events left unsettled."""
        self._overflow_room.set()
        if not messages:
            return
        events = 0
        for message in messages:
            reply = getattr(message, "reply", None)
            if reply is not None:
                _answer(reply, ActorUnavailable("the conversation's actor stopped; retry"))
            elif isinstance(message, Deliver):
                events += 1
        self._left_behind_total += events
        log.warning("a conversation's actor ended with messages left", extra={"fields": {
            "whatsapp_id": actor.whatsapp_id, "chat": actor.chat, "events_unsettled": events,
            "requests_answered": len(messages) - events}})

    def note_unavailable(self, error: BaseException) -> None:
        """The database was away for an actor: counted, logged at most every 5 seconds."""
        self._unavailable_total += 1
        now = trio.current_time()
        if now - self._last_unavailable_log >= 5.0:
            self._last_unavailable_log = now
            log.warning("database unavailable: conversations wait and retry", extra={"fields": {
                "reason": str(error)[:200], "retries_so_far": self._unavailable_total}})

    async def _reap_idle(self) -> None:
        """Stop the actors idle for `idle_timeout`, looking every quarter of it (at most every second)."""
        while True:
            await trio.sleep(min(max(self.idle_timeout / 4, 0.01), 1.0))
            limit = trio.current_time() - self.idle_timeout
            for handle in self.registry.handles():
                if handle.last_used <= limit and handle.idle():
                    handle.stop()
            if self._overflowed < OVERFLOW_MAX:
                self._overflow_room.set()

    def _passivate_if_full(self) -> None:
        if len(self.registry) < self.max_alive:
            return
        handles = [handle for handle in self.registry.handles() if handle.idle()]
        for handle in sorted(handles, key=lambda h: h.last_used)[: max(1, len(handles) // 10)]:
            handle.stop()  # out of the registry at once; it ends when what reached it in the meantime is done

    async def _flush_connection(self, company_id: int, whatsapp_id: int) -> None:
        """After a (re)connect: every ticket with pending messages sends them, in order."""
        try:
            rows = await self.db.fetch_all(self.db.q.outbox_pending, {"whatsapp_id": whatsapp_id})
            for ticket_id in dict.fromkeys(row["ticket_id"] for row in rows):
                ticket = await conversations.show_ticket(self.db, company_id, ticket_id)
                chat = chat_of_ticket(ticket)
                await self._deliver(company_id, whatsapp_id, chat, FlushOutbox(ticket_id), wait=True)
        except (*DB_AWAY, ActorUnavailable) as error:  # the next connect tries again
            log.warning("outbox not flushed after connect", extra={"fields": {"whatsapp_id": whatsapp_id,
                                                                               "reason": str(error)[:200]}})

    def publish(self, company_id: int, kind: str, payload: dict[str, Any]) -> None:
        self.broker.publish(company_id, f"company-{company_id}-{kind}", payload)

    def publish_message(self, action: str, company_id: int, message: Row, ticket: Row | None,
                        shown_ticket: dict[str, Any] | None = None) -> None:
        """Announce a message with its ticket (`shown_ticket`: the ticket's JSON when the caller has it)."""
        payload: dict[str, Any] = {"action": action, "message": self.presenters.message(message, ticket)}
        if ticket is not None:
            payload["ticket"] = shown_ticket if shown_ticket is not None else self.presenters.ticket(ticket)
            payload["contact"] = ticket.get("contact")
        self.publish(company_id, "appMessage", payload)

    def supervisor_stats(self) -> dict[str, Any]:
        """Its supervisor's counters (restarts, crash loops, children given up); {} while not running."""
        return self._supervisor.stats() if self._supervisor is not None else {}

    def describe(self, *, deepest: int = 10) -> dict[str, Any]:
        """The conversations' actors now (the runtime view): how many per company, the `deepest` mailboxes, and
        the actors crash-looping (restarted more than half their own budget recently)."""
        by_company: collections.Counter[int] = collections.Counter()
        depths: list[tuple[int, TicketHandle]] = []
        for handle in self.registry.handles():
            by_company[handle.company_id] += 1
            depth = handle.mailbox_depth
            if depth:
                depths.append((depth, handle))
        depths.sort(key=lambda item: item[0], reverse=True)
        looping = []
        if self._supervisor is not None:
            looping = [{"whatsappId": child.id[1], "chat": child.id[2], "restarts": child.restarts,
                        "state": child.state.value} for child in self._supervisor.describe_children()
                       if child.crash_looping and isinstance(child.id, tuple) and len(child.id) == 4]
        return {"alive": len(self.registry), "stopping": len(self._retiring), "overflowed": self._overflowed,
                "byCompany": {str(company): count for company, count in sorted(by_company.items())},
                "mailboxSize": MAILBOX, "mailboxWaiting": sum(depth for depth, _ in depths),
                "deepestMailboxes": [{"whatsappId": handle.key[0], "chat": handle.key[1],
                                      "companyId": handle.company_id, "depth": depth}
                                     for depth, handle in depths[:deepest]],
                "crashLooping": looping[:deepest]}

    def stats(self) -> dict[str, Any]:
        supervisor = self._supervisor.stats() if self._supervisor is not None else {}
        return {"alive": len(self.registry), "spawned": self._spawned, "stopping": len(self._retiring),
                "overflowed": self._overflowed, "set_aside_total": self._set_aside_total,
                "left_unsettled_total": self._left_behind_total, "db_unavailable_retries": self._unavailable_total,
                "crash_loop": bool(supervisor.get("crash_loop")),
                "given_up_total": supervisor.get("given_up_total", 0),
                "given_up_recent": supervisor.get("given_up_recent", []),
                "restarts_total": supervisor.get("restarts_total", 0),
                "writer": self.writer.stats(),
                "receipts": self._receipts.stats() if self._receipts is not None else {}}
