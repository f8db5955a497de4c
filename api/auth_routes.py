"""`/auth`: login, refresh (rotating, with reuse detection), logout, me."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from quart import Blueprint, Response, current_app, jsonify, make_response, request

from api import present
from api.app import deps_of
from api.auth import check_password, current, public
from api.errors import Forbidden, Unauthorized
from api.live import logins_revoked
from api.subscriptions import unpaid_ok
from api.validation import Field, body, json_body
from storage import settings, users
from storage.db import Database
from storage.errors import NotFound

log = logging.getLogger("zapgate.auth")
blueprint = Blueprint("auth", __name__, url_prefix="/auth")

COOKIE = "jrt"
LOGIN = {"email": Field("str", required=True, max_len=255), "password": Field("str", required=True, max_len=1024,
                                                                              strip=False)}


def _client_ip() -> str:
    return request.remote_addr or "unknown"


def _with_refresh_cookie(response: Response, token: str) -> Response:
    config = deps_of(current_app).config
    response.set_cookie(COOKIE, token, max_age=config.refresh_token_ttl, httponly=True, path="/",
                        secure=config.secure_cookies, samesite="None" if config.secure_cookies else "Lax")
    return response


def _clear_refresh_cookie(response: Response) -> Response:
    config = deps_of(current_app).config
    response.delete_cookie(COOKIE, path="/", httponly=True, secure=config.secure_cookies,
                           samesite="None" if config.secure_cookies else "Lax")
    return response


def _is_credential(key: str) -> bool:
    spec = settings.SPECS.get(key)
    return spec is not None and spec.secret


async def _session_user(db: Database, company_id: int, user_id: int) -> dict[str, Any]:
    """The user as login, refresh and /auth/me answer it: `company.settings` is the company's settings as
    `[{key, value}]` (with defaults; credentials left out), which the SaaS lineage reads at login
    (`campaignsEnabled`: whether its campaign screens exist). NotFound when the user is gone."""
    shown = present.user(await users.show_user(db, company_id, user_id))
    rows = await settings.list_settings(db, company_id)
    company = dict(shown.get("company") or {})
    company["settings"] = [{"key": row["key"], "value": row["value"], "companyId": company_id}
                           for row in rows if not _is_credential(row["key"])]
    shown["company"] = company
    return shown


@blueprint.post("/login")
@public
async def login() -> Response:
    deps = deps_of(current_app)
    data = await body(LOGIN)
    email, ip = data["email"].lower(), _client_ip()
    deps.throttle.check(email, ip)
    user = await users.user_by_email(deps.db, email)
    if not await check_password(data["password"], user["password_hash"] if user else None,
                                rounds=deps.config.bcrypt_rounds) or user is None:
        deps.throttle.failed(email, ip)
        log.info("login failed", extra={"fields": {"email": email, "remote": ip}})
        raise Unauthorized("invalid email or password", code="ERR_INVALID_CREDENTIALS")
    if not user["company_status"]:
        raise Forbidden("this company is disabled", code="ERR_COMPANY_INACTIVE")
    deps.throttle.succeeded(email)
    session_id, jti = await users.open_login(deps.db, user_id=user["id"], company_id=user["company_id"],
                                             ttl=deps.config.refresh_token_ttl,
                                             user_agent=request.headers.get("User-Agent"), ip=ip)
    shown = await _session_user(deps.db, user["company_id"], user["id"])
    response = jsonify({"token": deps.tokens.access_token(user, session_id), "user": shown})
    log.info("login", extra={"fields": {"user_id": user["id"], "company_id": user["company_id"], "remote": ip}})
    return _with_refresh_cookie(response, deps.tokens.refresh_token(user["id"], session_id, jti))


@blueprint.post("/refresh_token")
@public
async def refresh_token() -> Response:
    deps = deps_of(current_app)
    supplied = (await json_body()).get("refreshToken")  # a malformed body is a 400 even beside a cookie
    token = request.cookies.get(COOKIE) or (supplied if isinstance(supplied, str) else None)
    if not token:
        raise Unauthorized("no refresh token (cookie jrt or body refreshToken)", code="ERR_SESSION_EXPIRED")
    user_id, session_id, jti = deps.tokens.verify_refresh(token)
    try:
        login_row, new_jti = await users.rotate_login(deps.db, session_id=session_id, jti=jti,
                                                      ttl=deps.config.refresh_token_ttl,
                                                      grace=deps.config.refresh_reuse_grace)
    except users.RefreshRejected as rejected:
        if rejected.reuse:
            log.warning("refresh token reused: login revoked",
                        extra={"fields": {"user_id": user_id, "session_id": str(session_id), "remote": _client_ip()}})
            owner = await users.user_by_id(deps.db, user_id)
            if owner is not None:  # whoever holds that login's sockets (the thief's or the owner's) is out
                logins_revoked(deps.broker, owner["company_id"], owner, "refresh token reused",
                               sessions=[str(session_id)])
        response = await make_response(jsonify({"error": "ERR_SESSION_EXPIRED",
                                                "message": f"the session is no longer valid ({rejected})"}), 401)
        return _clear_refresh_cookie(response)
    user = await users.user_by_id(deps.db, login_row["user_id"])
    if user is None or user["company_id"] != login_row["company_id"] or not user["company_status"]:
        await users.revoke_login(deps.db, session_id, "user removed or company disabled")
        raise Unauthorized("the user no longer exists", code="ERR_SESSION_EXPIRED")
    shown = await _session_user(deps.db, user["company_id"], user["id"])
    response = jsonify({"token": deps.tokens.access_token(user, session_id), "user": shown})
    return _with_refresh_cookie(response, deps.tokens.refresh_token(user["id"], session_id, new_jti))


@blueprint.delete("/logout")
@unpaid_ok
async def logout() -> Response:
    deps = deps_of(current_app)
    principal = current()
    if principal.session_id:
        await users.revoke_login(deps.db, uuid.UUID(principal.session_id), "logout")
    # No `company-{id}-auth` here: the frontend that logs out would get it too, and the family's frontends
    # answer it with "your account was accessed on another computer". Offline now, unless another login of
    # the user still has a socket here.
    if deps.presence is not None:
        await deps.presence.logged_out(principal.company_id, principal.user_id, principal.session_id)
    else:
        await users.set_online(deps.db, principal.user_id, False)
    return _clear_refresh_cookie(Response("", status=204))


@blueprint.get("/me")
@unpaid_ok
async def me() -> Response:
    deps = deps_of(current_app)
    principal = current()
    try:
        shown = await _session_user(deps.db, principal.company_id, principal.user_id)
    except NotFound:  # deleted since the token was issued: the session is over, not a missing resource
        raise Unauthorized("the user no longer exists", code="ERR_SESSION_EXPIRED") from None
    return jsonify(shown)
