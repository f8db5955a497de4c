"""zapgate's realtime policy on top of `api.realtime`: company namespaces, rooms and visibility.

- Namespace `/{companyId}`, or the root namespace `/` (ticketz and the SaaS lineage: `io(BACKEND_URL,
  {query: {token}})`), where the token decides the company; the access token comes from `auth.token` or
  `query.token` (with or without `Bearer `). Expired, invalid or another company's tokens are refused
  (`connect_error`); a socket is closed when its token expires. Every accepted socket is sent `ready`
  (those frontends wait for it before their first join). Events carry the same names on both.
- Client events: `joinChatBox(ticketId)`/`leaveChatBox`, `joinNotification`/`leaveNotification`,
  `joinTickets(status)`/`leaveTickets`, `userStatus` (a heartbeat; presence follows the sockets:
  api/presence.py). A socket of a login that was ended (its access token still valid) is refused.
- Delivery (`LiveBridge`, an actor fed by the broker): a ticket's events reach the sockets that joined
  that ticket, its status room or the notifications, and only those whose user may see the ticket
  (the tickets API's rule) — also the events that name the ticket by id only (`updateUnread`,
  `delete`), whose publishers add the ticket's `ticket_audience`; company-wide events (contacts,
  connections, queues, settings) reach every socket of the company; a user's changes (presence too)
  reach the admins and that user, ticketz's `userOnlineChange` the admins; `company-{id}-auth` (ended
  logins: `logins_revoked`) reaches only that user's sockets of the ended logins, which are then closed.
  Events published for `EVERY_COMPANY` (the super
  admin's announcements) reach the sockets of every company; one marked `SUPERS` reaches only the
  super admins' sockets (True) or only the others' (False);
  the internal chat's events (`company-{id}-chat`, `company-{id}-chat-{chatId}`,
  `company-{id}-chat-user-{userId}`) reach only the sockets of the users their publisher lists in
  `PARTICIPANTS` (`chat_audience`: the chat's participants); without that list, nobody's.
  A ticket's notes (`company-{id}-ticket-note`, with the ticket's `ticket_audience`) reach the sockets that
  joined that ticket and whose user may see it; a quick message's events reach the users listed in
  `PARTICIPANTS` when its publisher lists them (a personal message), else the whole company.
- A socket's viewer (its user's queues, role, `allTicket`) is read at connect and refreshed when the
  users API announces a change of that user: at once from the event (it carries the committed row,
  and the bridge handles events in order, so every later ticket event is judged by the new rules),
  then re-read from the database (concurrent edits may announce out of order). A deleted user's
  sockets are closed. Why not a TTL: a change would show late, and every socket would cost a query
  per period whether anything changed or not; why not re-authorising: the client would reconnect
  and refetch for nothing.
- Limits: join events (`joinChatBox`, `joinTickets`, `joinNotification`) spend a per-socket token
  bucket (an empty one refuses with an error ack, `ERR_TOO_MANY_JOINS`); a socket in its maximum of
  rooms is refused with `ERR_TOO_MANY_ROOMS`; each limit logs one line per episode. `identify` vouches
  for handshakes whose query carries a valid token, so they never queue behind anonymous ones.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable, Mapping
from typing import Any

import attrs
import jwt
import trio

from api import present
from api.auth import Principal, TokenService
from api.errors import ApiError
from api.presence import Presence
from api.realtime import ConnectRefused, Handshake, RealtimeConfig, RealtimeServer, Socket, TooManyRooms
from api.realtime.limits import LimitLog, TokenBucket
from gateway.broker import Broker, Lagged
from gateway.config import Config
from storage import tickets as ticket_storage
from storage import users
from storage.db import Database
from storage.errors import NotFound, StorageError

log = logging.getLogger("zapgate.live")

STATUSES = ("pending", "open", "closed")
EXPIRY_CHECK = 1.0  # seconds between checks for expired tokens
REFRESH_RETRY = 1.0  # seconds before a viewer re-read that failed (database away) is tried again
MAX_TICKET_ID = 2**63 - 1  # a bigint: a larger id names no ticket (and must not reach the query)
AUDIENCE = "_audience"  # see ticket_audience; never sent to a client
EVERY_COMPANY = 0  # the company id of events for every company's sockets (no company has id 0)
SUPERS = "_supers"  # True: for super admins' sockets only; False: for all others; never sent to a client
PARTICIPANTS = "_participants"  # the user ids an internal chat's event is for; never sent to a client
KEEP_SESSION = "_keep_session"  # `company-{id}-auth`: the login whose sockets it spares; never sent to a client
SESSIONS = "_sessions"  # `company-{id}-auth`: the only logins whose sockets it is for; never sent to a client
PRIVATE_KEYS = (AUDIENCE, SUPERS, PARTICIPANTS, KEEP_SESSION, SESSIONS)
CHAT_EVENT = re.compile(r"company-\d+-chat(?:-.+)?")  # ticketz's chat events; not `company-1-chatbot`
# quick messages' events (ticketz's backend name, the SaaS frontend's): to the users in PARTICIPANTS when given
QUICK_MESSAGE_KINDS = ("quickmessage", "quickemessage")
TOO_MANY_JOINS = {"error": "ERR_TOO_MANY_JOINS", "message": "too many joins on this socket: slow down"}
TOO_MANY_ROOMS = {"error": "ERR_TOO_MANY_ROOMS", "message": "this socket has joined too many tickets: leave some"}


def realtime_config(config: Config) -> RealtimeConfig:
    """The realtime server's limits from zapgate's configuration."""
    return RealtimeConfig(ping_interval=config.realtime_ping_interval, ping_timeout=config.realtime_ping_timeout,
                          max_payload=config.realtime_max_payload, connect_timeout=config.realtime_connect_timeout,
                          max_pending=config.realtime_max_pending,
                          max_pending_per_client=config.realtime_pending_per_client)


def company_room(company_id: int) -> str:
    """The room of the root namespace that holds one company's sockets."""
    return f"company:{company_id}"


def ticket_audience(ticket: Mapping[str, Any]) -> dict[str, Any]:
    """What an event naming a ticket by id only (`updateUnread`, `delete`) must carry, spread into its
    payload, so the bridge applies the visibility rule to it: the ticket row's queue, user and status.
    The bridge takes it off before the event reaches any client."""
    return {AUDIENCE: {"queueId": ticket.get("queue_id"), "userId": ticket.get("user_id"),
                       "status": ticket.get("status")}}


def chat_audience(user_ids: Iterable[int]) -> dict[str, Any]:
    """What an internal chat's event must carry, spread into its payload: the users whose sockets get it
    (the chat's participants). The bridge takes it off before the event reaches any client."""
    return {PARTICIPANTS: sorted(set(user_ids))}


def logins_revoked(broker: Broker, company_id: int, user: Mapping[str, Any], reason: str, *,
                   keep_session: str | None = None, sessions: Iterable[str] | None = None) -> None:
    """Announce `company-{id}-auth` for a user whose logins were ended (password changed, user deleted,
    an admin's forced logout, a stolen refresh token): the family's frontends log out at once on it
    (whatever its `action`; the family's backends send `update`, and so does zapgate). It reaches only
    that user's sockets — all of them, all but those of `keep_session`, or only those of `sessions` —
    which are then closed. `user` is the row or its presented form (`id`, `email`)."""
    payload: dict[str, Any] = {"action": "update", "reason": reason,
                               "user": {"id": user["id"], "email": user["email"], "companyId": company_id}}
    if keep_session is not None:
        payload[KEEP_SESSION] = keep_session
    if sessions is not None:
        payload[SESSIONS] = sorted(str(session) for session in sessions)
    broker.publish(company_id, f"company-{company_id}-auth", payload)


def viewer_of(company_id: int, user: Mapping[str, Any]) -> ticket_storage.Viewer:
    """The viewer of a user as the API shows it (`present.user`: profile, super, allTicket, queues)."""
    queue_ids = sorted({queue["id"] for queue in user.get("queues") or () if isinstance(queue, Mapping)})
    return ticket_storage.Viewer(user_id=user["id"], company_id=company_id,
                                 is_admin=user.get("profile") == "admin" or bool(user.get("super")),
                                 all_ticket=user.get("allTicket") == "enable", queue_ids=tuple(queue_ids))


@attrs.define
class LiveContext:
    principal: Principal
    viewer: ticket_storage.Viewer
    expires_at: float
    joins: TokenBucket
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

    def __init__(self, db: Database, tokens: TokenService, broker: Broker, presence: Presence, *,
                 join_rate: float = 5.0, join_burst: int = 20) -> None:
        self.db = db
        self.tokens = tokens
        self.broker = broker
        self.presence = presence
        self.join_rate = join_rate
        self.join_burst = join_burst
        self.joins_refused = LimitLog(log, "realtime joins refused: too many on one socket")
        self.rooms_refused = LimitLog(log, "realtime joinChatBox refused: the socket is in too many rooms")

    def identify(self, handshake: Handshake) -> str | None:
        """The user a handshake's query token names, if it is valid (cached: cheap); None otherwise."""
        token = _token({}, handshake.query)
        if token is None:
            return None
        try:
            principal = self.tokens.verify_access(token)
        except ApiError:
            return None
        return f"user:{principal.company_id}:{principal.user_id}"

    async def connect(self, socket: Socket, auth: Mapping[str, Any], query: Mapping[str, str]) -> LiveContext:
        name = socket.namespace.lstrip("/")
        if name and not name.isdigit():
            raise ConnectRefused("unknown namespace: connect to / or /<companyId>")
        token = _token(auth, query)
        if token is None:
            raise ConnectRefused("ERR_SESSION_EXPIRED: no token")
        try:
            principal = self.tokens.verify_access(token)
        except ApiError as error:
            raise ConnectRefused(f"{error.code}: {error.message}") from None
        if name and principal.company_id != int(name):
            raise ConnectRefused("ERR_NO_PERMISSION: this token belongs to another company")
        expires = jwt.decode(token, options={"verify_signature": False}).get("exp", 0)
        try:  # the user as they are now (their role may have changed since the token was issued)
            user = await users.show_user(self.db, principal.company_id, principal.user_id)
        except NotFound:
            raise ConnectRefused("ERR_SESSION_EXPIRED: this user no longer exists") from None
        # a login ended since the token was issued (logout, password change, forced logout): its access
        # tokens still pass until they expire, but its sockets, closed when it ended, stay closed
        if principal.session_id is not None and not await users.login_is_live(self.db, principal.session_id):
            raise ConnectRefused("ERR_SESSION_EXPIRED: this login was ended")
        viewer = viewer_of(principal.company_id, present.user(user))
        context = LiveContext(principal, viewer, expires_at=float(expires),
                              joins=TokenBucket(self.join_rate, self.join_burst, trio.current_time()))
        socket.join(f"user:{principal.user_id}")
        if not name:  # the root namespace holds every company's sockets: delivery finds them by this room
            socket.join(company_room(principal.company_id))
        for event, handler in (("joinChatBox", self._join_chat), ("leaveChatBox", self._leave_chat),
                               ("joinNotification", self._join_notification),
                               ("leaveNotification", self._leave_notification),
                               ("joinTickets", self._join_tickets), ("leaveTickets", self._leave_tickets),
                               ("userStatus", self._user_status)):
            socket.on(event, handler)
        socket.emit("ready")  # sent right after the connect is acknowledged
        self.presence.connected(principal.company_id, principal.user_id)
        return context

    def disconnected(self, socket: Socket, reason: str) -> None:
        context = socket.context
        if isinstance(context, LiveContext):  # offline once the grace passes without another socket
            self.presence.disconnected(context.principal.company_id, context.principal.user_id)

    # ── client events ──

    def _may_join(self, socket: Socket) -> bool:
        """Spend one of the socket's join tokens; False (logged once per episode) when it has none left."""
        context: LiveContext = socket.context
        now = trio.current_time()
        if context.joins.take(now):
            return True
        principal = context.principal
        self.joins_refused.hit(f"user:{principal.company_id}:{principal.user_id}", now, sid=socket.sid,
                               rate=self.join_rate, burst=self.join_burst)
        return False

    async def _join_chat(self, socket: Socket, ticket_id: Any = None, *_: Any) -> Any:
        context: LiveContext = socket.context
        if not self._may_join(socket):
            return TOO_MANY_JOINS
        try:
            ticket_id = int(ticket_id)
        except (TypeError, ValueError):
            return None  # refused silently, as the contract says
        if not 0 < ticket_id <= MAX_TICKET_ID:
            return None
        if ticket_id in context.chats:
            return None  # joined already (each event is still checked against the viewer)
        try:
            await ticket_storage.show_visible(self.db, context.viewer, ticket_id)
        except NotFound:
            return None
        try:
            socket.join(f"ticket:{ticket_id}")  # first: it refuses past the per-socket room limit
        except TooManyRooms:
            principal = context.principal
            self.rooms_refused.hit(f"user:{principal.company_id}:{principal.user_id}", trio.current_time(),
                                   sid=socket.sid, rooms=len(socket.rooms))
            return TOO_MANY_ROOMS
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

    async def _join_notification(self, socket: Socket, *_: Any) -> Any:
        if not self._may_join(socket):
            return TOO_MANY_JOINS
        socket.context.notifications = True
        return None

    async def _leave_notification(self, socket: Socket, *_: Any) -> None:
        socket.context.notifications = False

    async def _join_tickets(self, socket: Socket, status: Any = None, *_: Any) -> Any:
        if not self._may_join(socket):
            return TOO_MANY_JOINS
        if status in STATUSES:
            socket.context.statuses.add(status)
        return None

    async def _leave_tickets(self, socket: Socket, status: Any = None, *_: Any) -> None:
        socket.context.statuses.discard(status)

    async def _user_status(self, socket: Socket, *_: Any) -> None:
        """The heartbeat: presence follows the sockets (api/presence.py), so it only restores a user that a
        logout of another of their logins marked offline while this socket stayed."""
        principal: Principal = socket.context.principal
        self.presence.heartbeat(principal.company_id, principal.user_id)

    def stats(self) -> dict[str, Any]:
        return {"joins_refused": self.joins_refused.stats(), "rooms_refused": self.rooms_refused.stats()}


class LiveBridge:
    """An actor: broker events → the sockets that should get them; closes sockets whose token expired."""

    def __init__(self, server: RealtimeServer, namespaces: CompanyNamespaces, broker: Broker) -> None:
        self.server = server
        self.namespaces = namespaces
        self.broker = broker
        self.delivered = 0
        self.lagged = 0
        self.viewers_refreshed = 0
        self._stale: set[tuple[int, int]] = set()  # (company, user) whose viewer is to be re-read
        self._stale_added = trio.lowlevel.ParkingLot()

    async def run(self, *, task_status: trio.TaskStatus[LiveBridge] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._expire_tokens)
            nursery.start_soon(self._refresh_viewers)
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
                        self._all_stale()  # a dropped user change would leave its viewers stale

    def deliver(self, company_id: int, name: str, payload: dict[str, Any]) -> int:
        """Emit one event to the sockets of its company that should see it; how many got it."""
        # `company-1-chat-user-5` ends in "5" and `company-1-chat-7` in "7": the chat's events are told
        # by their name's start, and go by their participants whatever their last segment
        kind = "chat" if CHAT_EVENT.fullmatch(name) else name.rsplit("-", 1)[-1]
        if kind == "user" and company_id != EVERY_COMPANY:
            self._user_changed(company_id, payload)  # even with no socket here: nothing to do then
        audience = payload.get(PARTICIPANTS if kind == "chat" or kind in QUICK_MESSAGE_KINDS else AUDIENCE)
        if kind == "auth":
            audience = {"keep": payload.get(KEEP_SESSION), "only": payload.get(SESSIONS)}
        supers = payload.get(SUPERS)
        if any(key in payload for key in PRIVATE_KEYS):
            payload = {key: value for key, value in payload.items() if key not in PRIVATE_KEYS}
        if company_id == EVERY_COMPANY:
            targets = [(namespace, self.server.sockets(namespace)) for namespace in self.server.namespaces()]
        else:
            targets = self._company_sockets(company_id)
        count = 0
        for namespace, sockets in targets:
            if supers is not None:
                sockets = [socket for socket in sockets if isinstance(socket.context, LiveContext)
                           and socket.context.principal.super == supers]
            chosen = self._choose(sockets, kind, payload, audience)
            count += self.server.emit_to_sockets(chosen, namespace, name, payload)  # encoded once per namespace
            if kind == "auth":  # their logins are over: after the event (queued before the DISCONNECT), close
                for socket in chosen:
                    self.server.close_socket(socket, "login revoked")
        self.delivered += count
        return count

    def _company_sockets(self, company_id: int) -> list[tuple[str, list[Socket]]]:
        """The company's sockets, by namespace: its own `/{id}` and its room of the root namespace."""
        found = []
        for namespace, sockets in ((f"/{company_id}", self.server.sockets(f"/{company_id}")),
                                   ("/", self.server.room_sockets("/", company_room(company_id)))):
            if sockets:
                found.append((namespace, sockets))
        return found

    @staticmethod
    def _choose(sockets: list[Socket], kind: str, payload: dict[str, Any], audience: Any) -> list[Socket]:
        if kind == "chat":  # the participants the publisher named (chat_audience); none named, nobody
            user_ids = set(audience) if isinstance(audience, list) else set()
            return [socket for socket in sockets if isinstance(socket.context, LiveContext)
                    and socket.context.principal.user_id in user_ids]
        if kind in QUICK_MESSAGE_KINDS and isinstance(audience, list):  # a personal quick message: its users
            return [socket for socket in sockets if isinstance(socket.context, LiveContext)
                    and socket.context.principal.user_id in audience]
        if kind == "note":  # a ticket's note (`company-{id}-ticket-note`): its chat's sockets that may see it
            ticket_id = payload.get("ticketId")
            if not isinstance(audience, dict):
                return []
            row = {"queue_id": audience.get("queueId"), "user_id": audience.get("userId")}
            return [socket for socket in sockets if isinstance(socket.context, LiveContext)
                    and ticket_id in socket.context.chats and socket.context.viewer.can_see(row)]
        if kind in ("ticket", "appMessage"):
            ticket = payload.get("ticket")
            if not isinstance(ticket, dict):
                ticket = audience if isinstance(audience, dict) else None
            ticket_id = payload.get("ticketId")
            if ticket_id is None and ticket is not None:
                ticket_id = ticket.get("id")
            return [socket for socket in sockets if isinstance(socket.context, LiveContext)
                    and _wants_ticket(socket.context, ticket, ticket_id)]
        if kind == "user":
            user_id = _user_id(payload)
            return [socket for socket in sockets if isinstance(socket.context, LiveContext)
                    and (socket.context.viewer.is_admin or socket.context.principal.user_id == user_id)]
        if kind == "auth":  # one user's revoked logins: only their sockets (all, or those of the named logins)
            user_id = _user_id(payload)
            return [socket for socket in sockets if isinstance(socket.context, LiveContext)
                    and socket.context.principal.user_id == user_id and _revoked(socket.context.principal, audience)]
        # ticketz's presence and its dashboard's `counter` (actors/dashboard_push.py): admins only, as ticketz does
        if kind in ("userOnlineChange", "counter"):
            return [socket for socket in sockets if isinstance(socket.context, LiveContext)
                    and socket.context.viewer.is_admin]
        return [socket for socket in sockets if isinstance(socket.context, LiveContext)]

    # ── viewers ──

    def _user_changed(self, company_id: int, payload: Mapping[str, Any]) -> None:
        """A `company-{id}-user` event: a changed user's sockets get the new rules before the next event."""
        user_id = _user_id(payload)
        if not isinstance(user_id, int):
            return
        if payload.get("action") == "delete":
            self._close_user(company_id, user_id, "user deleted")
            return
        user = payload.get("user")
        if isinstance(user, dict) and "profile" in user:
            try:
                self._set_viewer(company_id, user_id, viewer_of(company_id, user))
            except (KeyError, TypeError) as error:  # a shape we do not know: the database decides
                log.warning("user event without a usable user", extra={"fields": {"error": repr(error)}})
        self._stale.add((company_id, user_id))  # concurrent edits may announce out of order: re-read
        self._stale_added.unpark_all()

    def _sockets_of(self, company_id: int, user_id: int) -> list[Socket]:
        return [socket for _, sockets in self._company_sockets(company_id) for socket in sockets
                if isinstance(socket.context, LiveContext) and socket.context.principal.user_id == user_id]

    def _set_viewer(self, company_id: int, user_id: int, viewer: ticket_storage.Viewer) -> None:
        sockets = self._sockets_of(company_id, user_id)
        for socket in sockets:
            socket.context.viewer = viewer
        self.viewers_refreshed += len(sockets)

    def _close_user(self, company_id: int, user_id: int, reason: str) -> None:
        for socket in self._sockets_of(company_id, user_id):
            self.server.close_socket(socket, reason)

    def _all_stale(self) -> None:
        for namespace in self.server.namespaces():
            for socket in self.server.sockets(namespace):
                if isinstance(socket.context, LiveContext):
                    principal = socket.context.principal
                    self._stale.add((principal.company_id, principal.user_id))
        self._stale_added.unpark_all()

    async def _refresh_viewers(self) -> None:
        """Re-read the viewers of the users marked stale, one query per user (not per socket)."""
        while True:
            while not self._stale:
                await self._stale_added.park()
            company_id, user_id = self._stale.pop()
            if not self._sockets_of(company_id, user_id):
                continue
            try:
                user = await users.show_user(self.namespaces.db, company_id, user_id)
            except NotFound:
                self._close_user(company_id, user_id, "user deleted")
                continue
            except StorageError as error:  # the database is away: its viewers stay as they are meanwhile
                log.warning("viewer refresh failed; retrying",
                            extra={"fields": {"user_id": user_id, "error": str(error)}})
                self._stale.add((company_id, user_id))
                await trio.sleep(REFRESH_RETRY)
                continue
            if (company_id, user_id) not in self._stale:  # changed again meanwhile: the next read decides
                self._set_viewer(company_id, user_id, viewer_of(company_id, present.user(user)))

    async def _expire_tokens(self) -> None:
        while True:
            await trio.sleep(EXPIRY_CHECK)
            now = time.time()
            for namespace in self.server.namespaces():
                for socket in self.server.sockets(namespace):
                    context = socket.context
                    if isinstance(context, LiveContext) and context.expires_at <= now:
                        self.server.close_socket(socket, "token expired")

    def stats(self) -> dict[str, Any]:
        return {"delivered": self.delivered, "lagged": self.lagged, "viewers_refreshed": self.viewers_refreshed,
                "presence": self.namespaces.presence.stats(), **self.namespaces.stats(), **self.server.stats()}


def _revoked(principal: Principal, audience: Mapping[str, Any]) -> bool:
    """Whether a `company-{id}-auth` event is for a socket of this login: all the user's logins but the one
    it spares (`KEEP_SESSION`: a user who changed their own password stays in), or only those it names."""
    only = audience.get("only")
    if only is not None:
        return principal.session_id in only
    keep = audience.get("keep")
    return keep is None or principal.session_id != keep


def _user_id(payload: Mapping[str, Any]) -> Any:
    user = payload.get("user")
    return user.get("id") if isinstance(user, dict) else payload.get("userId")


def _wants_ticket(context: LiveContext, ticket: dict[str, Any] | None, ticket_id: Any) -> bool:
    """Whether a socket gets an event about this ticket: it joined it, its status or the notifications,
    and its user may see it. `ticket` is the event's ticket, or the audience of an event that names it by
    id only; without either nobody can tell whose it is, so only admins get it."""
    if ticket is None:
        if not context.viewer.is_admin:
            return False
        return ticket_id in context.chats or bool(context.statuses) or context.notifications
    row = {"queue_id": ticket.get("queueId"), "user_id": ticket.get("userId")}
    if not context.viewer.can_see(row):
        return False
    return (ticket_id in context.chats or ticket.get("status") in context.statuses or context.notifications)
