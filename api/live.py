"""zapgate's realtime policy on top of `api.realtime`: company namespaces, rooms and visibility.

- Namespace `/{companyId}`; the access token comes from `auth.token` or `query.token` (with or
  without `Bearer `). Expired, invalid or another company's tokens are refused (`connect_error`); a
  socket is closed when its token expires.
- Client events: `joinChatBox(ticketId)`/`leaveChatBox`, `joinNotification`/`leaveNotification`,
  `joinTickets(status)`/`leaveTickets`, `userStatus` (heartbeat: the user is online).
- Delivery (`LiveBridge`, an actor fed by the broker): a ticket's events reach the sockets that joined
  that ticket, its status room or the notifications, and only those whose user may see the ticket
  (the tickets API's rule); company-wide events (contacts, connections, queues, users, settings)
  reach every socket of the company.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import attrs
import jwt
import trio

from api.auth import Principal, TokenService
from api.errors import ApiError
from api.realtime import ConnectRefused, RealtimeServer, Socket
from gateway.broker import Broker, Lagged
from storage import tickets as ticket_storage
from storage import users
from storage.db import Database
from storage.errors import NotFound

log = logging.getLogger("zapgate.live")

STATUSES = ("pending", "open", "closed")
EXPIRY_CHECK = 1.0  # seconds between checks for expired tokens
OFFLINE_SWEEP = 10.0


@attrs.define
class LiveContext:
    principal: Principal
    viewer: ticket_storage.Viewer
    expires_at: float
    chats: set[int] = attrs.field(factory=set)
    statuses: set[str] = attrs.field(factory=set)
    notifications: bool = False


def _token(auth: Mapping[str, Any], query: Mapping[str, str]) -> str | None:
    raw = auth.get("token") if isinstance(auth, Mapping) else None
    if not isinstance(raw, str) or not raw.strip():
        raw = query.get("token")
    if not isinstance(raw, str) or not raw.strip():
        return None
    raw = raw.strip()
    return raw[7:].strip() if raw.lower().startswith("bearer ") else raw


class CompanyNamespaces:
    """The namespace handler: who may connect where, and the client events."""

    def __init__(self, db: Database, tokens: TokenService, broker: Broker, *, offline_after: float = 60.0) -> None:
        self.db = db
        self.tokens = tokens
        self.broker = broker
        self.offline_after = offline_after
        self.last_seen: dict[tuple[int, int], float] = {}  # (company, user) → monotonic time of the last heartbeat

    async def connect(self, socket: Socket, auth: Mapping[str, Any], query: Mapping[str, str]) -> LiveContext:
        name = socket.namespace.lstrip("/")
        if not name.isdigit():
            raise ConnectRefused("unknown namespace: connect to /<companyId>")
        token = _token(auth, query)
        if token is None:
            raise ConnectRefused("ERR_SESSION_EXPIRED: no token")
        try:
            principal = self.tokens.verify_access(token)
        except ApiError as error:
            raise ConnectRefused(f"{error.code}: {error.message}") from None
        if principal.company_id != int(name):
            raise ConnectRefused("ERR_NO_PERMISSION: this token belongs to another company")
        expires = jwt.decode(token, options={"verify_signature": False}).get("exp", 0)
        viewer = await ticket_storage.load_viewer(self.db, principal.company_id, principal.user_id, principal.is_admin)
        context = LiveContext(principal, viewer, expires_at=float(expires))
        socket.join(f"user:{principal.user_id}")
        for event, handler in (("joinChatBox", self._join_chat), ("leaveChatBox", self._leave_chat),
                               ("joinNotification", self._join_notification),
                               ("leaveNotification", self._leave_notification),
                               ("joinTickets", self._join_tickets), ("leaveTickets", self._leave_tickets),
                               ("userStatus", self._user_status)):
            socket.on(event, handler)
        return context

    def disconnected(self, socket: Socket, reason: str) -> None:
        return None  # offline is decided by the heartbeat sweep, not by one socket closing

    # ── client events ──

    async def _join_chat(self, socket: Socket, ticket_id: Any = None, *_: Any) -> Any:
        context: LiveContext = socket.context
        try:
            ticket_id = int(ticket_id)
            await ticket_storage.show_visible(self.db, context.viewer, ticket_id)
        except (TypeError, ValueError, NotFound):
            return None  # refused silently, as the contract says
        socket.join(f"ticket:{ticket_id}")  # first: it refuses past the per-socket room limit
        context.chats.add(ticket_id)
        return None

    async def _leave_chat(self, socket: Socket, ticket_id: Any = None, *_: Any) -> None:
        context: LiveContext = socket.context
        try:
            ticket_id = int(ticket_id)
        except (TypeError, ValueError):
            return
        context.chats.discard(ticket_id)
        socket.leave(f"ticket:{ticket_id}")

    async def _join_notification(self, socket: Socket, *_: Any) -> None:
        socket.context.notifications = True

    async def _leave_notification(self, socket: Socket, *_: Any) -> None:
        socket.context.notifications = False

    async def _join_tickets(self, socket: Socket, status: Any = None, *_: Any) -> None:
        if status in STATUSES:
            socket.context.statuses.add(status)

    async def _leave_tickets(self, socket: Socket, status: Any = None, *_: Any) -> None:
        socket.context.statuses.discard(status)

    async def _user_status(self, socket: Socket, *_: Any) -> None:
        principal: Principal = socket.context.principal
        key = (principal.company_id, principal.user_id)
        was_online = key in self.last_seen
        self.last_seen[key] = time.monotonic()
        if not was_online:
            await self._set_online(principal.company_id, principal.user_id, True)

    async def _set_online(self, company_id: int, user_id: int, online: bool) -> None:
        await users.set_online(self.db, user_id, online)
        self.broker.publish(company_id, f"company-{company_id}-user",
                            {"action": "update", "user": {"id": user_id, "online": online}})

    async def sweep_offline(self) -> None:
        """Users silent for `offline_after` seconds go offline (run periodically)."""
        horizon = time.monotonic() - self.offline_after
        for key, seen in list(self.last_seen.items()):
            if seen < horizon:
                del self.last_seen[key]
                await self._set_online(key[0], key[1], False)


class LiveBridge:
    """An actor: broker events → the sockets that should get them; closes sockets whose token expired."""

    def __init__(self, server: RealtimeServer, namespaces: CompanyNamespaces, broker: Broker) -> None:
        self.server = server
        self.namespaces = namespaces
        self.broker = broker
        self.delivered = 0
        self.lagged = 0

    async def run(self, *, task_status: trio.TaskStatus[LiveBridge] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._expire_tokens)
            nursery.start_soon(self._sweep)
            while True:
                with self.broker.subscribe(None, maxsize=50_000) as events:
                    if task_status is not trio.TASK_STATUS_IGNORED:
                        task_status.started(self)
                        task_status = trio.TASK_STATUS_IGNORED
                    try:
                        async for event in events:
                            self.deliver(event.company_id, event.name, event.payload)
                    except Lagged:
                        self.lagged += 1
                        log.error("the realtime bridge lagged behind the broker; events were dropped")

    def deliver(self, company_id: int, name: str, payload: dict[str, Any]) -> int:
        """Emit one event to the sockets of its company that should see it; how many got it."""
        namespace = f"/{company_id}"
        sockets = self.server.sockets(namespace)
        if not sockets:
            return 0
        kind = name.rsplit("-", 1)[-1]
        ticket = payload.get("ticket") if kind in ("ticket", "appMessage") else None
        ticket_id = (ticket or {}).get("id") if isinstance(ticket, dict) else None
        if ticket_id is None and kind in ("ticket", "appMessage"):
            ticket_id = payload.get("ticketId")
        chosen = [socket for socket in sockets if isinstance(socket.context, LiveContext)
                  and (kind not in ("ticket", "appMessage") or _wants_ticket(socket.context, ticket, ticket_id))]
        count = self.server.emit_to_sockets(chosen, namespace, name, payload)  # encoded once for all of them
        self.delivered += count
        return count

    async def _expire_tokens(self) -> None:
        while True:
            await trio.sleep(EXPIRY_CHECK)
            now = time.time()
            for namespace in self.server.namespaces():
                for socket in self.server.sockets(namespace):
                    context = socket.context
                    if isinstance(context, LiveContext) and context.expires_at <= now:
                        self.server.close_socket(socket, "token expired")

    async def _sweep(self) -> None:
        while True:
            await trio.sleep(min(OFFLINE_SWEEP, max(0.2, self.namespaces.offline_after / 2)))
            await self.namespaces.sweep_offline()

    def stats(self) -> dict[str, Any]:
        return {"delivered": self.delivered, "lagged": self.lagged, **self.server.stats()}


def _wants_ticket(context: LiveContext, ticket: Any, ticket_id: Any) -> bool:
    """Whether a socket gets an event about this ticket: it joined it, its status or the notifications,
    and its user may see it."""
    if not isinstance(ticket, dict):
        # updateUnread / delete carry only the id: the sockets that joined the ticket, or list a status
        return ticket_id in context.chats or bool(context.statuses) or context.notifications
    row = {"queue_id": ticket.get("queueId"), "user_id": ticket.get("userId")}
    if not context.viewer.can_see(row):
        return False
    return (ticket_id in context.chats or ticket.get("status") in context.statuses or context.notifications)
