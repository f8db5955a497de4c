"""`/companies`: tenants, for super admins. Creating one with an email and password creates its admin.

Also the SaaS lineage's company routes: `/companies/list` (every company with its plan and settings),
`/companies/listPlan/:id` (a company with its plan: the menu shows features from it; a user may read their
own company's), and the public signup `POST /companies/cadastro` (only while the installation's
`allowSignup` is enabled; rate-limited per address).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from quart import Blueprint, Response, current_app, jsonify, request

from api import present
from api.app import deps_of
from api.auth import current, hash_password, public, require_admin, require_super
from api.errors import BadRequest, Forbidden
from api.schedules import check_schedules
from api.subscriptions import today, unpaid_ok
from api.validation import Field, json_body, page, path_id, search_pattern, validate
from storage import companies, plans, settings
from storage.errors import NotFound

blueprint = Blueprint("companies", __name__, url_prefix="/companies")
PAGE_SIZE = 40

COMPANY_FIELDS = {
    "name": Field("str", required=True, max_len=255),
    "email": Field("email", nullable=True, max_len=255),
    "phone": Field("str", nullable=True, max_len=64),
    "document": Field("str", nullable=True, max_len=64),
    "status": Field("bool"),
    "dueDate": Field("date", nullable=True),
    "password": Field("str", min_len=6, max_len=72, strip=False),
    "adminName": Field("str", max_len=255),
    "connectionLimit": Field("int", minimum=0, maximum=100_000),  # 0: the plan's; else this company's own limit
    "planId": Field("int", minimum=1),
    "recurrence": Field("str", choices=plans.RECURRENCES),
}
SIGNUP_FIELDS = {
    "name": Field("str", required=True, min_len=2, max_len=255),
    "email": Field("email", required=True, max_len=255),
    "phone": Field("str", nullable=True, max_len=64),
    "password": Field("str", required=True, min_len=6, max_len=72, strip=False),
    "planId": Field("int", required=True, minimum=1),
}
# what the lineage's forms send for "not chosen": an empty string
BLANK_IS_ABSENT = ("planId", "recurrence")
BLANK_IS_NULL = ("email", "phone", "document", "dueDate")


async def _company_body(spec: dict[str, Field], *, partial: bool = False) -> dict[str, Any]:
    raw = dict(await json_body())
    for key in BLANK_IS_ABSENT:
        if raw.get(key) == "":
            del raw[key]
    for key in BLANK_IS_NULL:
        if raw.get(key) == "":
            raw[key] = None
    return validate(raw, spec, partial=partial)


def _own_or_super(company_id: int) -> None:
    principal = current()
    if not principal.super and principal.company_id != company_id:
        raise Forbidden("a user may only read their own company")


@blueprint.get("")
async def list_companies() -> Response:
    require_super()
    limit, offset = page(PAGE_SIZE)
    rows, count = await companies.list_companies(deps_of(current_app).db, search=search_pattern(), limit=limit,
                                                 offset=offset)
    return jsonify(present.page("companies", [present.company(row) for row in rows], count, limit, offset))


@blueprint.post("")
async def create_company() -> tuple[Response, int]:
    require_super()
    deps = deps_of(current_app)
    data = await _company_body(COMPANY_FIELDS)
    admin = None
    if "password" in data:
        if not data.get("email"):
            raise BadRequest("email: is required to create the company's admin", code="ERR_VALIDATION", field="email")
        admin = {"name": data.get("adminName") or data["name"], "email": data["email"],
                 "password_hash": await hash_password(data["password"], deps.config.bcrypt_rounds)}
    company, admin_id = await companies.create_company(
        deps.db, name=data["name"], email=data.get("email"), phone=data.get("phone"),
        document=data.get("document"), status=data.get("status", True), due_date=data.get("dueDate"),
        plan_id=data.get("planId"), recurrence=data.get("recurrence"), admin=admin,
    )
    return jsonify({**present.company(company), "adminId": admin_id}), 201


@blueprint.get("/list")
async def list_all_companies() -> Response:
    """Every company with its `plan` and `settings` (the SaaS Companies screen's one list)."""
    require_super()
    rows = await companies.list_all_companies(deps_of(current_app).db)
    return jsonify([present.company(row) for row in rows])


@blueprint.get("/listPlan/<company_id>")
@unpaid_ok
async def company_plan(company_id: str) -> Response:
    """A company with its `plan`: a user's own, any for a super admin (the SaaS menu reads the features)."""
    target = path_id(company_id, "company")
    _own_or_super(target)
    row = await companies.get_company(deps_of(current_app).db, target)
    shown = present.company(row)
    return jsonify({key: shown[key] for key in ("id", "name", "email", "phone", "status", "dueDate", "recurrence",
                                                "planId", "createdAt", "plan")})


@blueprint.post("/cadastro")
@public
async def signup() -> tuple[Response, int]:
    """The public signup: a company on a public plan, let in for SIGNUP_TRIAL_DAYS, with its admin."""
    deps = deps_of(current_app)
    if await settings.get_platform_setting(deps.db, "allowSignup") != "enabled":
        raise Forbidden("signup is disabled on this installation", code="ERR_SIGNUP_DISABLED")
    ip = request.remote_addr or "unknown"
    data = await _company_body(SIGNUP_FIELDS)
    deps.signup_throttle.check(data["email"], ip)
    deps.signup_throttle.failed(data["email"], ip)  # every attempt counts, the ones that succeed too
    try:
        plan = await plans.get_plan(deps.db, data["planId"])
    except NotFound:
        plan = None
    if plan is None or not plan["is_public"]:
        raise BadRequest("planId: not a plan offered to signups", code="ERR_PLAN_NOT_AVAILABLE", field="planId")
    admin = {"name": data["name"], "email": data["email"],
             "password_hash": await hash_password(data["password"], deps.config.bcrypt_rounds)}
    company, admin_id = await companies.create_company(
        deps.db, name=data["name"], email=data["email"], phone=data.get("phone"), status=True,
        due_date=today() + dt.timedelta(days=deps.config.signup_trial_days), plan_id=plan["id"],
        recurrence=plan["recurrence"], admin=admin,
    )
    return jsonify({**present.company(company), "adminId": admin_id}), 201


@blueprint.get("/<company_id>")
@unpaid_ok
async def show_company(company_id: str) -> Response:
    """A company: any for a super admin, their own for a user (the lineage's checkout page reads its plan)."""
    target = path_id(company_id, "company")
    _own_or_super(target)
    return jsonify(present.company(await companies.get_company(deps_of(current_app).db, target)))


@blueprint.put("/<company_id>")
async def update_company(company_id: str) -> Response:
    principal = require_super()
    target = path_id(company_id, "company")
    data = await _company_body(COMPANY_FIELDS, partial=True)
    if target == principal.company_id and data.get("status") is False:
        raise BadRequest("you cannot disable your own company", code="ERR_CANNOT_DISABLE_OWN_COMPANY")
    fields = {key: data[api] for api, key in (("name", "name"), ("email", "email"), ("phone", "phone"),
                                               ("document", "document"), ("status", "status"), ("dueDate", "due_date"),
                                               ("planId", "plan_id"), ("recurrence", "recurrence"))
              if api in data}
    deps = deps_of(current_app)
    db = deps.db
    updated = await companies.update_company(db, target, fields)
    deps.access.forget(target)
    if "connectionLimit" in data:
        await settings.set_setting(db, target, "connectionLimit", str(data["connectionLimit"]))
    return jsonify({**present.company(updated),
                    "connectionLimit": await settings.get_int_setting(db, target, "connectionLimit")})


@blueprint.put("/<company_id>/schedules")
async def update_schedules(company_id: str) -> Response:
    """The company's business hours (setting scheduleType "company"): `{schedules}` in any of the three
    shapes api/schedules.py takes; an admin of that company or a super admin. Answers the company."""
    target = path_id(company_id, "company")
    _own_or_super(target)
    require_admin()
    raw = await json_body()
    if "schedules" not in raw:
        raise BadRequest("schedules: is required", code="ERR_VALIDATION", field="schedules")
    deps = deps_of(current_app)
    row = await companies.set_schedules(deps.db, target, check_schedules(raw["schedules"]))
    return jsonify(present.company(row))


@blueprint.delete("/<company_id>")
async def delete_company(company_id: str) -> Response:
    principal = require_super()
    target = path_id(company_id, "company")
    if target == principal.company_id:
        raise BadRequest("you cannot delete your own company", code="ERR_CANNOT_DELETE_OWN_COMPANY")
    deps = deps_of(current_app)
    await companies.delete_company(deps.db, target)
    deps.access.forget(target)
    return jsonify({"message": "company deleted"})
