"""Who is online: a user while one of their sockets is connected, and for a grace after the last one closes.

Why sockets and not heartbeats: the family's frontends emit `userStatus` every 5 minutes (the SaaS
lineage) or not at all while a page is idle, and ticketz's own backend counts socket sessions; a
heartbeat window shorter than their rate showed connected agents offline. The grace covers what is
not a departure: a page reload, a socket closed because its token expired (the frontend refreshes and
reconnects within seconds), a network blip (Engine.IO's ping timeout closes a dead socket).

State is kept here, in memory; the truth about which sockets exist is the realtime server's (every
accepted socket is in the room `user:{userId}` of its namespace), so a socket that was accepted and
then dropped before it counted, or a count that drifted, cannot leave a user online: each change is
checked against the server once its grace has passed.

Writes (`users.online`) and announcements are made by one task, in order, one user at a time, and
always of the user's *current* state, so a flapping connection converges instead of racing:
`company-{id}-user` `update` with the whole user (what both frontends expect of that event: they
replace their copy of the user with it) for the company's admins and that user, and ticketz's
`userOnlineChange` `{userId, online}` for the company's admins (its dashboard).

Per process: with several processes (REDIS_URL), each knows its own sockets only; a user connected
to two processes goes offline when either one's sockets are all gone. A shared presence (Redis) is
issue 19's. A single process starts by marking every user offline (no socket survives a restart; those
that reconnect are online again at once); several do not, since the others' users are still connected.
"""

from __future__ import annotations

import logging
from typing import Any

import trio

from api import present
from api.realtime import RealtimeServer
from gateway.broker import Broker
from storage import users
from storage.db import Database
from storage.errors import NotFound, StorageError

log = logging.getLogger("zapgate.presence")

Key = tuple[int, int]  # (company id, user id)
SWEEP_MAX = 5.0  # seconds between checks of users whose grace ended, at most
RETRY = 1.0  # seconds before a write that failed (database away) is tried again


class Presence:
    """An actor: the online state of the users of this process's sockets, written and announced in order."""

    def __init__(self, db: Database, broker: Broker, server: RealtimeServer, *, grace: float = 30.0,
                 reset_at_start: bool = False) -> None:
        self.db = db
        self.broker = broker
        self.server = server
        self.grace = grace
        self.reset_at_start = reset_at_start
        self.online: set[Key] = set()  # who is online now, by this process's sockets
        self._announced: set[Key] = set()  # who the database and the clients were last told is online
        self._checks: dict[Key, float] = {}  # users to check for sockets at that (trio) time
        self._dirty: set[Key] = set()  # users whose state is to be written
        self._forced: set[Key] = set()  # written even when it looks unchanged (a logout: the row may be stale)
        self._dirty_added = trio.lowlevel.ParkingLot()
        self._write_lock = trio.Lock()
        self.writes = 0

    # ── what the realtime side tells ──

    def connected(self, company_id: int, user_id: int) -> None:
        """A socket of the user is being accepted: online now; checked once the grace has passed, in case
        the socket did not stay (refused after this call, or closed at once)."""
        key = (company_id, user_id)
        self._checks[key] = trio.current_time() + self.grace
        if key not in self.online:
            self.online.add(key)
            self._mark(key)

    def disconnected(self, company_id: int, user_id: int) -> None:
        """A socket of the user closed: they stay online for the grace, then go offline without sockets."""
        self._checks[(company_id, user_id)] = trio.current_time() + self.grace

    def heartbeat(self, company_id: int, user_id: int) -> None:
        """`userStatus`: the frontend says its user is here (online again if a logout elsewhere said not)."""
        key = (company_id, user_id)
        if key not in self.online and self.has_sockets(company_id, user_id):
            self.online.add(key)
            self._mark(key)

    async def logged_out(self, company_id: int, user_id: int, session_id: str | None) -> None:
        """The user ended a login (`/auth/logout`, or an admin ended them all: `session_id` None): offline
        now unless a socket of another of their live logins is still connected here. Written before returning."""
        key = (company_id, user_id)
        if session_id is not None and await self._has_other_logins(company_id, user_id, session_id):
            return
        self.online.discard(key)
        self._checks.pop(key, None)
        self._forced.add(key)
        await self._write(key)

    def has_sockets(self, company_id: int, user_id: int) -> bool:
        return bool(self._sockets(company_id, user_id))

    def _sockets(self, company_id: int, user_id: int) -> list[Any]:
        room = f"user:{user_id}"  # user ids are unique across companies: the root namespace's room is theirs
        return [*self.server.room_sockets(f"/{company_id}", room), *self.server.room_sockets("/", room)]

    async def _has_other_logins(self, company_id: int, user_id: int, session_id: str) -> bool:
        """Whether a socket here belongs to a live login of the user other than `session_id` (a tab of a
        login that ended keeps its socket until it closes it, or until its access token expires)."""
        others = set()
        for socket in self._sockets(company_id, user_id):
            principal = getattr(socket.context, "principal", None)
            if principal is not None and principal.session_id not in (None, session_id):
                others.add(principal.session_id)
        return bool(others) and bool(await users.live_logins(self.db, sorted(others)))

    def _mark(self, key: Key) -> None:
        self._dirty.add(key)
        self._dirty_added.unpark_all()

    # ── the actor ──

    async def run(self, *, task_status: trio.TaskStatus[Presence] = trio.TASK_STATUS_IGNORED) -> None:
        if self.reset_at_start:
            await self._reset()
            # a restart of this actor (not of the process) keeps who is online here: tell the database again
            self._announced.clear()
            self._dirty.update(self.online)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._sweep)
            task_status.started(self)
            while True:
                while not self._dirty:
                    await self._dirty_added.park()
                key = self._dirty.pop()
                try:
                    await self._write(key)
                except StorageError as error:  # the database is away: the state is written once it is back
                    log.warning("presence write failed; retrying",
                                extra={"fields": {"user_id": key[1], "error": str(error)}})
                    self._dirty.add(key)
                    await trio.sleep(RETRY)

    async def _reset(self) -> None:
        while True:
            try:
                count = await users.set_everyone_offline(self.db)
            except StorageError as error:
                log.warning("presence reset failed; retrying", extra={"fields": {"error": str(error)}})
                await trio.sleep(RETRY)
                continue
            if count:
                log.info("presence reset: users marked offline", extra={"fields": {"users": count}})
            return

    async def _sweep(self) -> None:
        while True:
            await trio.sleep(min(SWEEP_MAX, max(0.1, self.grace / 4)))
            self.sweep(trio.current_time())

    def sweep(self, now: float) -> None:
        """Users whose grace has passed: offline when none of their sockets is left."""
        for key, at in list(self._checks.items()):
            if at > now:
                continue
            del self._checks[key]
            if key in self.online and not self.has_sockets(*key):
                self.online.discard(key)
                self._mark(key)

    async def _write(self, key: Key) -> None:
        """Write and announce the user's current state, if it is not what was announced last."""
        async with self._write_lock:
            company_id, user_id = key
            online = key in self.online
            if online == (key in self._announced) and key not in self._forced:
                return
            await users.set_online(self.db, user_id, online)
            self._forced.discard(key)
            if online:
                self._announced.add(key)
            else:
                self._announced.discard(key)
            self.writes += 1
            try:
                user = await users.show_user(self.db, company_id, user_id)
            except NotFound:  # deleted meanwhile: nobody to announce
                return
            # the whole user: both frontends replace their copy of a user with the one of an `update`
            self.broker.publish(company_id, f"company-{company_id}-user",
                                {"action": "update", "user": present.user(user)})
            self.broker.publish(company_id, "userOnlineChange", {"userId": user_id, "online": online})

    def stats(self) -> dict[str, Any]:
        return {"online": len(self.online), "grace_pending": len(self._checks), "writes": self.writes}
