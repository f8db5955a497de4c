"""`/users`: the users of the caller's company. Admins manage them; a user may read and edit themself."""

from __future__ import annotations

from quart import Blueprint, Response, current_app, jsonify

from api import present
from api.app import deps_of
from api.auth import Principal, current, hash_password, require_admin
from api.errors import BadRequest, Forbidden
from api.live import logins_revoked
from api.validation import Field, json_body, page, path_id, search_pattern, validate
from storage import users

blueprint = Blueprint("users", __name__, url_prefix="/users")
PAGE_SIZE = 40

USER_FIELDS = {
    "name": Field("str", required=True, max_len=255),
    "email": Field("email", required=True, max_len=255),
    "password": Field("str", required=True, min_len=6, max_len=72, strip=False),
    "profile": Field("str", choices=("admin", "user")),
    "allTicket": Field("str", choices=("enable", "disable")),
    "whatsappId": Field("int", nullable=True, minimum=1),
    "queueIds": Field("list_of_int", max_items=500),
    "super": Field("bool"),
    # open tickets auto-assignment may give the user (null: no limit); admins set it
    "maxTickets": Field("int", nullable=True, minimum=0, maximum=100_000),
}
SELF_EDITABLE = ("name", "email", "password")


def _unchanged(row: dict, key: str, value: object) -> bool:
    """Whether `value` of a USER_FIELDS key is the user's present one (a field sent back, not a change)."""
    shown = present.user(row)
    if key == "queueIds" and isinstance(value, list):
        return sorted(value) == sorted(queue["id"] for queue in shown["queues"])
    return shown.get(key) == value


def _blank_is_null(raw: dict) -> dict:
    """A form's empty `maxTickets` field ("") is no limit (null)."""
    return {**raw, "maxTickets": None} if raw.get("maxTickets") == "" else raw


def _publish(company_id: int, payload: dict) -> None:
    """`company-{id}-user`, as the original announces user changes (delivered to admins and that user)."""
    deps_of(current_app).broker.publish(company_id, f"company-{company_id}-user", payload)


def _check_super_flag(principal: Principal, data: dict) -> None:
    if data.get("super") and not principal.super:
        raise Forbidden("only a super admin can grant super")


@blueprint.get("")
async def list_users() -> Response:
    principal = require_admin()
    limit, offset = page(PAGE_SIZE)
    rows, count = await users.list_users(deps_of(current_app).db, principal.company_id, search=search_pattern(),
                                         limit=limit, offset=offset)
    return jsonify(present.page("users", [present.user(row) for row in rows], count, limit, offset))


@blueprint.get("/list")
async def list_colleagues() -> Response:
    """Every user of the company, short form (any user: the transfer dialogs need it)."""
    principal = current()
    rows, _ = await users.list_users(deps_of(current_app).db, principal.company_id, search=None, limit=5000, offset=0)
    return jsonify([{"id": row["id"], "name": row["name"], "profile": row["profile"], "online": row["online"],
                     "queues": row["queues"]} for row in rows])


@blueprint.post("")
async def create_user() -> tuple[Response, int]:
    principal = require_admin()
    deps = deps_of(current_app)
    data = validate(_blank_is_null(await json_body()), USER_FIELDS)
    _check_super_flag(principal, data)
    created = await users.create_user(
        deps.db, principal.company_id, name=data["name"], email=data["email"],
        password_hash=await hash_password(data["password"], deps.config.bcrypt_rounds),
        profile=data.get("profile", "user"), super_=data.get("super", False),
        all_ticket=data.get("allTicket", "disable"), whatsapp_id=data.get("whatsappId"),
        queue_ids=data.get("queueIds", []), max_tickets=data.get("maxTickets"),
    )
    shown = present.user(created)
    _publish(principal.company_id, {"action": "create", "user": shown})
    return jsonify(shown), 201


def _check_may_manage(principal: Principal, target: dict) -> None:
    """A super user is changed or removed by a super admin only (else an admin of its company could
    set its password and log in as super)."""
    if target["super"] and not principal.super:
        raise Forbidden("only a super admin can change a super admin")


@blueprint.get("/<user_id>")
async def show_user(user_id: str) -> Response:
    principal = current()
    # Looked up first, in the caller's company: another tenant's id is a 404 whatever the caller's role.
    shown = await users.show_user(deps_of(current_app).db, principal.company_id, path_id(user_id, "user"))
    if shown["id"] != principal.user_id and not principal.is_admin:
        raise Forbidden("only admins can see other users")
    return jsonify(present.user(shown))


@blueprint.put("/<user_id>")
async def update_user(user_id: str) -> Response:
    principal = current()
    deps = deps_of(current_app)
    target = path_id(user_id, "user")
    existing = await users.show_user(deps.db, principal.company_id, target)
    raw = _blank_is_null(await json_body())
    if raw.get("password") in ("", None):  # the family's user form sends "" when the password is not changed
        raw = {key: value for key, value in raw.items() if key != "password"}
    data = validate(raw, USER_FIELDS, partial=True)
    if not principal.is_admin:
        if target != principal.user_id:
            raise Forbidden("only admins can edit other users")
        # the profile form sends the whole user back: only a change of a field is refused
        forbidden = sorted(key for key in set(data) - set(SELF_EDITABLE) if not _unchanged(existing, key, data[key]))
        if forbidden:
            raise Forbidden(f"only admins can change {', '.join(forbidden)}")
    _check_super_flag(principal, data)
    _check_may_manage(principal, existing)
    if target == principal.user_id and data.get("profile") == "user" and principal.profile == "admin":
        raise BadRequest("an admin cannot demote themself", code="ERR_CANNOT_DEMOTE_SELF")
    password_hash = None
    if "password" in data:
        password_hash = await hash_password(data["password"], deps.config.bcrypt_rounds)
    fields = {
        "name": data.get("name"), "email": data.get("email"), "profile": data.get("profile"),
        "all_ticket": data.get("allTicket"),
    }
    fields = {key: value for key, value in fields.items() if value is not None}
    if "super" in data:
        fields["super"] = data["super"]  # only a super admin gets here with it (_check_super_flag)
    if "whatsappId" in data:
        fields["whatsapp_id"] = data["whatsappId"]
    if "queueIds" in data:
        fields["queue_ids"] = data["queueIds"]
    if "maxTickets" in data:
        fields["max_tickets"] = data["maxTickets"]
    # a user who changes their own password stays in on this login; every other login of theirs ends
    keep = principal.session_id if target == principal.user_id else None
    updated = await users.update_user(deps.db, principal.company_id, target, fields, password_hash=password_hash,
                                      keep_login=keep)
    shown = present.user(updated)
    _publish(principal.company_id, {"action": "update", "user": shown})  # sockets refresh its viewer (api/live.py)
    if password_hash is not None:
        logins_revoked(deps.broker, principal.company_id, shown, "password changed", keep_session=keep)
    return jsonify(shown)


@blueprint.delete("/<user_id>")
async def delete_user(user_id: str) -> Response:
    principal = current()
    db = deps_of(current_app).db
    target = path_id(user_id, "user")
    existing = await users.show_user(db, principal.company_id, target)  # another tenant's id: 404
    require_admin()
    if target == principal.user_id:
        raise BadRequest("you cannot delete yourself", code="ERR_CANNOT_DELETE_SELF")
    _check_may_manage(principal, existing)
    await users.delete_user(db, principal.company_id, target)  # its logins go with it (ON DELETE CASCADE)
    logins_revoked(deps_of(current_app).broker, principal.company_id, existing, "user deleted")
    _publish(principal.company_id, {"action": "delete", "userId": target})  # its sockets are closed
    return jsonify({"message": "user deleted"})


@blueprint.post("/<user_id>/logout")
async def force_logout(user_id: str) -> Response:
    """An admin ends every login of a user of their company (a lost device, a dismissed agent): the
    refresh tokens stop working, the user's frontends log out at once (`company-{id}-auth`) and they
    show offline. Their access tokens stay valid until they expire (ACCESS_TOKEN_TTL), as any JWT."""
    principal = current()
    deps = deps_of(current_app)
    target = path_id(user_id, "user")
    existing = await users.show_user(deps.db, principal.company_id, target)  # another tenant's id: 404
    require_admin()
    _check_may_manage(principal, existing)
    revoked = await users.revoke_logins(deps.db, principal.company_id, target, "forced logout")
    logins_revoked(deps.broker, principal.company_id, existing, "forced logout")
    if deps.presence is not None:
        await deps.presence.logged_out(principal.company_id, target, None)
    else:
        await users.set_online(deps.db, target, False)
    return jsonify({"userId": target, "revoked": revoked})
