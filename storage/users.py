"""Users of a company, their queues, and the logins (auth sessions) that hold their refresh tokens."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import psycopg

from storage import plans
from storage.db import Database, Row
from storage.errors import NotFound


async def user_by_email(db: Database, email: str) -> Row | None:
    return await db.fetch_one(db.q.user_by_email, {"email": email})


async def user_by_id(db: Database, user_id: int) -> Row | None:
    return await db.fetch_one(db.q.user_by_id, {"id": user_id})


async def show_user(db: Database, company_id: int, user_id: int) -> Row:
    row = await db.fetch_one(db.q.user_show, {"id": user_id, "company_id": company_id})
    if row is None:
        raise NotFound(f"user {user_id}")
    return row


async def list_users(db: Database, company_id: int, *, search: str | None, limit: int,
                     offset: int) -> tuple[list[Row], int]:
    params = {"company_id": company_id, "search": search, "limit": limit, "offset": offset}
    rows = await db.fetch_all(db.q.user_list, params)
    if rows:
        return rows, rows[0]["total"]
    return rows, (await db.fetch_value(db.q.user_count, params) if offset else 0)  # a page past the end


def _set_queues(conn: psycopg.Connection[Row], q: Any, company_id: int, user_id: int,
                queue_ids: Sequence[int]) -> None:
    conn.execute(q.user_queues_clear, {"user_id": user_id, "company_id": company_id})
    if queue_ids:
        added = conn.execute(q.user_queues_add, {"company_id": company_id, "user_id": user_id,
                                                 "queue_ids": list(queue_ids)}).rowcount
        if added != len(set(queue_ids)):
            raise NotFound("queue")  # a queue id of another company, or none at all


async def create_user(db: Database, company_id: int, *, name: str, email: str, password_hash: str,
                      profile: str = "user", super_: bool = False, all_ticket: str = "disable",
                      whatsapp_id: int | None = None, queue_ids: Sequence[int] = (), limited: bool = True,
                      max_tickets: int | None = None) -> Row:
    """A new user; `limited`: refused (`plans.LimitReached`) when the company has its plan's number of users
    (the operator's command line is not limited)."""
    q = db.q

    def work(conn: psycopg.Connection[Row]) -> Row:
        if limited:
            plans.check_limit(conn, q, company_id, "users")
        row = conn.execute(q.user_insert, {
            "company_id": company_id, "name": name, "email": email, "password_hash": password_hash,
            "profile": profile, "super": super_, "all_ticket": all_ticket, "whatsapp_id": whatsapp_id,
        }).fetchone()
        assert row is not None
        _set_queues(conn, q, company_id, row["id"], queue_ids)
        if max_tickets is not None:
            conn.execute(q.user_update, {
                "id": row["id"], "company_id": company_id, "set_whatsapp_id": False, "whatsapp_id": None,
                "set_max_tickets": True, "max_tickets": max_tickets,
                **dict.fromkeys(("name", "email", "profile", "all_ticket", "super"))})
        shown = conn.execute(q.user_show, {"id": row["id"], "company_id": company_id}).fetchone()
        assert shown is not None
        return shown

    return await db.run(work)


async def update_user(db: Database, company_id: int, user_id: int, fields: dict[str, Any], *,
                      password_hash: str | None = None, keep_login: str | None = None) -> Row:
    """Update the given fields; a new password hash also revokes every login of the user but `keep_login`
    (a login id: the one of a user who changed their own password), in the same transaction."""
    q = db.q
    params = {key: fields.get(key) for key in ("name", "email", "profile", "all_ticket", "whatsapp_id", "super")}
    params.update(id=user_id, company_id=company_id, set_whatsapp_id="whatsapp_id" in fields,
                  set_max_tickets="max_tickets" in fields, max_tickets=fields.get("max_tickets"))

    def work(conn: psycopg.Connection[Row]) -> Row:
        if conn.execute(q.user_update, params).fetchone() is None:
            raise NotFound(f"user {user_id}")
        if "queue_ids" in fields:
            _set_queues(conn, q, company_id, user_id, fields["queue_ids"])
        if password_hash is not None:
            conn.execute(q.user_set_password, {"id": user_id, "company_id": company_id,
                                               "password_hash": password_hash})
            conn.execute(q.auth_sessions_revoke_user, {"user_id": user_id, "company_id": company_id,
                                                       "reason": "password changed", "keep": keep_login})
        shown = conn.execute(q.user_show, {"id": user_id, "company_id": company_id}).fetchone()
        assert shown is not None
        return shown

    return await db.run(work)


async def revoke_logins(db: Database, company_id: int, user_id: int, reason: str) -> int:
    """End every live login of the user (an admin's forced logout); how many there were."""
    rows = await db.fetch_all(db.q.auth_sessions_revoke_user, {"user_id": user_id, "company_id": company_id,
                                                               "reason": reason, "keep": None})
    return len(rows)


async def delete_user(db: Database, company_id: int, user_id: int) -> None:
    if await db.execute(db.q.user_delete, {"id": user_id, "company_id": company_id}) == 0:
        raise NotFound(f"user {user_id}")


async def set_online(db: Database, user_id: int, online: bool) -> None:
    await db.execute(db.q.user_set_online, {"id": user_id, "online": online})


async def set_everyone_offline(db: Database) -> int:
    return await db.execute(db.q.users_set_offline)


# ─── logins ─────────────────────────────────────────────────────────────────────────────

async def open_login(db: Database, *, user_id: int, company_id: int, ttl: int, user_agent: str | None,
                     ip: str | None) -> tuple[uuid.UUID, uuid.UUID]:
    """Record a new login; its (session id, first refresh-token id)."""
    session_id, jti = uuid.uuid4(), uuid.uuid4()
    await db.execute(db.q.auth_session_insert, {
        "id": session_id, "user_id": user_id, "company_id": company_id, "jti": jti,
        "user_agent": (user_agent or "")[:512], "ip": ip, "ttl": ttl,
    })
    return session_id, jti


class RefreshRejected(Exception):
    """The refresh token cannot be used; `reuse` is true when it had already been rotated."""

    def __init__(self, reason: str, *, reuse: bool = False) -> None:
        super().__init__(reason)
        self.reuse = reuse


async def rotate_login(db: Database, *, session_id: uuid.UUID, jti: uuid.UUID, ttl: int,
                       grace: float = 0) -> tuple[Row, uuid.UUID]:
    """Exchange refresh token `jti` of a login for a new one; (the login row, the new jti).

    A token that was already rotated revokes the whole login (reuse detection) and is refused, except
    the one rotated last, within `grace` seconds: browsers refresh in parallel (once per request that
    failed with an expired access token), so that one is answered with the current token.
    """
    q = db.q
    new_jti = uuid.uuid4()

    def work(conn: psycopg.Connection[Row]) -> tuple[Row, uuid.UUID] | RefreshRejected:
        login = conn.execute(q.auth_session_get, {"id": session_id, "grace": grace}).fetchone()
        if login is None:
            return RefreshRejected("unknown login")
        if login["revoked_at"] is not None:
            return RefreshRejected("login revoked")
        if login["current_jti"] != jti and login["previous_jti"] == jti and login["in_grace"]:
            # A parallel refresh of the same browser (one per failed request): hand it the current token.
            return login, login["current_jti"]
        if login["current_jti"] != jti:
            conn.execute(q.auth_session_revoke, {"id": session_id, "reason": "refresh token reused"})
            return RefreshRejected("refresh token reused", reuse=True)
        if conn.execute(q.auth_session_rotate, {"id": session_id, "jti": jti, "new_jti": new_jti,
                                                "ttl": ttl}).fetchone() is None:
            return RefreshRejected("login expired")
        return login, new_jti

    # The revocation must commit, so the rejection is returned from the transaction, then raised.
    result = await db.run(work)
    if isinstance(result, RefreshRejected):
        raise result
    return result


async def revoke_login(db: Database, session_id: uuid.UUID, reason: str) -> None:
    await db.execute(db.q.auth_session_revoke, {"id": session_id, "reason": reason})


async def login_is_live(db: Database, session_id: str) -> bool:
    """Whether a login (the `sid` of its access tokens) was neither revoked nor left to expire."""
    try:
        parsed = uuid.UUID(session_id)
    except ValueError:
        return False
    return bool(await db.fetch_value(db.q.auth_session_live, {"id": parsed}))


async def live_logins(db: Database, session_ids: Sequence[str]) -> set[str]:
    """Those of the logins named that were neither revoked nor left to expire."""
    parsed = []
    for session_id in session_ids:
        try:
            parsed.append(uuid.UUID(session_id))
        except ValueError:
            continue
    if not parsed:
        return set()
    return {str(row["id"]) for row in await db.fetch_all(db.q.auth_sessions_live, {"ids": parsed})}


async def purge_logins(db: Database) -> int:
    return await db.execute(db.q.auth_sessions_purge)
