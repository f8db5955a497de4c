"""Authentication: JWT access and refresh tokens, bcrypt passwords, login throttling, route guards.

Every route needs a valid access token unless its view is marked `@public`; the token's company
scopes every query the view makes (`current()` gives it). Roles: `super` (all companies), company
`admin`, `user`.
"""

from __future__ import annotations

import collections
import functools
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import attrs
import bcrypt
import jwt
import trio
from quart import g, request

from api.errors import Forbidden, TooManyRequests, Unauthorized

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])
ALGORITHM = "HS256"
_BCRYPT_LIMITER = trio.CapacityLimiter(2)  # hashing is CPU work: never more than the cores at once


@attrs.frozen
class Principal:
    """Who is calling, from a verified access token."""

    user_id: int
    company_id: int
    profile: str
    super: bool
    session_id: str | None

    @property
    def is_admin(self) -> bool:
        return self.profile == "admin" or self.super


def public(view: F) -> F:
    """Mark a view as reachable without a token."""
    view._zapgate_public = True  # type: ignore[attr-defined]
    return view


def current() -> Principal:
    principal = g.get("principal")
    if principal is None:  # a public view asked for a user: a programming error, not a client one
        raise RuntimeError("current() called in a view without authentication")
    return principal


def require_admin() -> Principal:
    principal = current()
    if not principal.is_admin:
        raise Forbidden("this action needs an admin")
    return principal


def require_super() -> Principal:
    principal = current()
    if not principal.super:
        raise Forbidden("this action needs a super admin")
    return principal


VERIFIED_CACHE_SIZE = 4096  # access tokens whose signature was checked, kept until they expire


@attrs.define
class TokenService:
    secret: str
    refresh_secret: str
    access_ttl: int
    refresh_ttl: int
    # The family's backends answer 403 for an expired or unusable token (their frontends refresh on 403 and
    # log out on 401) and 401 only when there is none; `AUTH_EXPIRED_STATUS=401` for clients that want 401.
    expired_status: int = 403
    # token → (principal, exp): a token seen before skips the HMAC and JSON decoding (a few percent of every
    # request); only tokens that passed verification get in, and each is still refused once expired
    _verified: dict[str, tuple[Principal, int]] = attrs.field(factory=dict, init=False, repr=False)

    def access_token(self, user: dict[str, Any], session_id: uuid.UUID | str | None) -> str:
        now = int(time.time())
        claims = {
            "id": user["id"], "username": user["name"], "profile": user["profile"],
            "companyId": user["company_id"], "super": bool(user["super"]),
            "sid": str(session_id) if session_id else None,
            "type": "access", "iat": now, "exp": now + self.access_ttl,
        }
        return jwt.encode(claims, self.secret, algorithm=ALGORITHM)

    def refresh_token(self, user_id: int, session_id: uuid.UUID, jti: uuid.UUID) -> str:
        now = int(time.time())
        claims = {"id": user_id, "sid": str(session_id), "jti": str(jti), "type": "refresh",
                  "iat": now, "exp": now + self.refresh_ttl}
        return jwt.encode(claims, self.refresh_secret, algorithm=ALGORITHM)

    def verify_access(self, token: str) -> Principal:
        cached = self._verified.get(token)
        if cached is not None and cached[1] > time.time():
            return cached[0]
        try:
            claims = jwt.decode(token, self.secret, algorithms=[ALGORITHM], options={"require": ["exp", "id"]})
        except jwt.ExpiredSignatureError:
            raise Unauthorized("the access token has expired; refresh it", code="ERR_SESSION_EXPIRED",
                               status=self.expired_status) from None
        except jwt.PyJWTError:
            raise self._invalid() from None
        if claims.get("type") != "access" or not isinstance(claims.get("companyId"), int):
            raise self._invalid()
        principal = Principal(user_id=claims["id"], company_id=claims["companyId"],
                              profile=claims.get("profile", "user"), super=bool(claims.get("super")),
                              session_id=claims.get("sid"))
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            self._verified.pop(next(iter(self._verified)))  # the oldest entry
        self._verified[token] = (principal, int(claims["exp"]))
        return principal

    def _invalid(self) -> Unauthorized:
        return Unauthorized("invalid access token", code="ERR_INVALID_TOKEN", status=self.expired_status)

    def verify_refresh(self, token: str) -> tuple[int, uuid.UUID, uuid.UUID]:
        """(user id, login id, token id) of a refresh token; Unauthorized when unusable."""
        try:
            claims = jwt.decode(token, self.refresh_secret, algorithms=[ALGORITHM],
                                options={"require": ["exp", "sid", "jti"]})
            if claims.get("type") != "refresh":
                raise jwt.InvalidTokenError("not a refresh token")
            return int(claims["id"]), uuid.UUID(claims["sid"]), uuid.UUID(claims["jti"])
        except jwt.ExpiredSignatureError:
            raise Unauthorized("the session has expired; log in again", code="ERR_SESSION_EXPIRED") from None
        except (jwt.PyJWTError, ValueError, KeyError, TypeError):
            raise Unauthorized("invalid refresh token", code="ERR_SESSION_EXPIRED") from None


def bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def authenticate_request(tokens: TokenService) -> None:
    """Verify the bearer token of the current request (a before_request hook of the app).

    No `Authorization` header (or an empty one): 401 (the family's frontends log out). A header that carries no usable
    token (another scheme, `Bearer` alone, `Bearer null` after a frontend dropped its token): the
    token's status, as the family answers a token that fails verification, so the frontend refreshes.
    """
    if not request.headers.get("Authorization", "").strip():
        raise Unauthorized("missing Authorization: Bearer token", code="ERR_SESSION_EXPIRED")
    token = bearer_token()
    if token is None:
        raise Unauthorized("the Authorization header carries no Bearer token", code="ERR_INVALID_TOKEN",
                           status=tokens.expired_status)
    g.principal = tokens.verify_access(token)


# ─── passwords ──────────────────────────────────────────────────────────────────────────

async def hash_password(password: str, rounds: int) -> str:
    salt = bcrypt.gensalt(rounds)
    hashed = await trio.to_thread.run_sync(bcrypt.hashpw, password.encode()[:72], salt, limiter=_BCRYPT_LIMITER)
    return hashed.decode()


@functools.cache
def _dummy_hash(rounds: int) -> bytes:
    """A valid hash of cost `rounds`, checked when the email is unknown so both paths take the same time."""
    return bcrypt.hashpw(b"zapgate-timing-equaliser", bcrypt.gensalt(rounds))


async def check_password(password: str, password_hash: str | None, *, rounds: int = 10) -> bool:
    """Whether `password` matches `password_hash`; with no hash (unknown user) it still spends the time of
    checking a hash of cost `rounds` (pass the configured cost), then answers False."""
    if password_hash is None:
        candidate = await trio.to_thread.run_sync(_dummy_hash, rounds, limiter=_BCRYPT_LIMITER)
    else:
        candidate = password_hash.encode()
    try:
        ok = await trio.to_thread.run_sync(bcrypt.checkpw, password.encode()[:72], candidate,
                                           limiter=_BCRYPT_LIMITER)
    except ValueError:  # not a bcrypt hash
        return False
    return ok and password_hash is not None


# ─── login throttling ───────────────────────────────────────────────────────────────────

class LoginThrottle:
    """Sliding-window failure counts per email and per client address (in this process).

    After `max_failures` failures for one email (or `max_per_ip` from one address) within `window`
    seconds, logins for it answer 429 until the oldest failure leaves the window.
    """

    MAX_KEYS = 100_000  # bound on memory: the oldest keys are dropped first

    def __init__(self, *, max_failures: int, max_per_ip: int, window: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_failures = max_failures
        self.max_per_ip = max_per_ip
        self.window = window
        self.clock = clock
        self._failures: collections.OrderedDict[str, collections.deque[float]] = collections.OrderedDict()

    def _recent(self, key: str) -> collections.deque[float]:
        now = self.clock()
        entries = self._failures.get(key)
        if entries is None:
            return collections.deque()
        while entries and entries[0] <= now - self.window:
            entries.popleft()
        if not entries:
            del self._failures[key]
        return entries

    def check(self, email: str, ip: str) -> None:
        """Raise 429 when either key is over its limit."""
        for key, limit in ((f"email:{email.lower()}", self.max_failures), (f"ip:{ip}", self.max_per_ip)):
            recent = self._recent(key)
            if len(recent) >= limit:
                retry_after = max(1, int(recent[0] + self.window - self.clock()) + 1)
                raise TooManyRequests("too many failed logins; try again later",
                                      headers={"Retry-After": str(retry_after)})

    def failed(self, email: str, ip: str) -> None:
        now = self.clock()
        for key in (f"email:{email.lower()}", f"ip:{ip}"):
            entries = self._failures.setdefault(key, collections.deque())
            entries.append(now)
            self._failures.move_to_end(key)
            limit = max(self.max_failures, self.max_per_ip)
            while len(entries) > limit:
                entries.popleft()
        while len(self._failures) > self.MAX_KEYS:
            self._failures.popitem(last=False)

    def succeeded(self, email: str) -> None:
        self._failures.pop(f"email:{email.lower()}", None)
