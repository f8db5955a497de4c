"""`/plans`: what a company may have and use (the SaaS lineage's Plans screen; the super admin's).

`/plans/list` and `/plans/all` also answer without a token — the signup page lists the plans it offers
from them — with the public plans only; a super admin's token gets every plan from `/plans/all`.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from quart import Blueprint, Response, current_app, g, jsonify

from api import present
from api.app import deps_of
from api.auth import authenticate_request, bearer_token, current, public, require_super
from api.errors import BadRequest, Conflict
from api.subscriptions import unpaid_ok
from api.validation import Field, json_body, page, path_id, search_pattern, validate
from storage import companies, plans
from storage.errors import NotFound

blueprint = Blueprint("plans", __name__, url_prefix="/plans")
PAGE_SIZE = 20  # the lineage's
LIMIT = Field("int", minimum=0, maximum=1_000_000)  # 0: no limit
PLAN_FIELDS = {
    "name": Field("str", required=True, min_len=1, max_len=255),
    "users": LIMIT, "connections": LIMIT, "queues": LIMIT,
    "recurrence": Field("str", choices=plans.RECURRENCES),
    "isPublic": Field("bool"),
    **{api: Field("bool") for api in ("useCampaigns", "useSchedules", "useInternalChat", "useExternalApi",
                                      "useKanban", "useOpenAi", "useIntegrations")},
}
API_NAMES = {"isPublic": "is_public", "useCampaigns": "use_campaigns", "useSchedules": "use_schedules",
             "useInternalChat": "use_internal_chat", "useExternalApi": "use_external_api",
             "useKanban": "use_kanban", "useOpenAi": "use_open_ai", "useIntegrations": "use_integrations"}
THOUSANDS = re.compile(r"\d{1,3}(\.\d{3})+")
MAX_VALUE = Decimal("9999999999.99")


def _value(raw: Any) -> Decimal:
    """A price: a number, or the text the Plans screen sends back (its pt-BR formatting: "1.234,50")."""
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        raise BadRequest("value: must be a number", code="ERR_VALIDATION", field="value")
    text = str(raw).strip()
    if isinstance(raw, str):
        if "," in text:
            text = text.replace(".", "").replace(",", ".")
        elif THOUSANDS.fullmatch(text):
            text = text.replace(".", "")
    try:
        value = Decimal(text or "0")
    except InvalidOperation:
        raise BadRequest("value: must be a number", code="ERR_VALIDATION", field="value") from None
    if not value.is_finite() or not Decimal(0) <= value <= MAX_VALUE:
        raise BadRequest(f"value: must be between 0 and {MAX_VALUE}", code="ERR_VALIDATION", field="value")
    return value.quantize(Decimal("0.01"))


async def _plan_body(*, partial: bool) -> dict[str, Any]:
    raw = await json_body()
    data = validate(raw, PLAN_FIELDS, partial=partial)
    fields = {API_NAMES.get(key, key): value for key, value in data.items()}
    if raw.get("value") is not None:
        fields["value"] = _value(raw["value"])
    return fields


def _optional_super() -> bool:
    """Whether the request carries a super admin's valid token (on a view that also answers without one)."""
    if bearer_token() is None:
        return False
    authenticate_request(deps_of(current_app).tokens)
    return bool(g.principal.super)


@blueprint.get("")
@unpaid_ok
async def list_plans() -> Response:
    require_super()
    limit, offset = page(PAGE_SIZE)
    rows, count = await plans.list_plans(deps_of(current_app).db, search=search_pattern(), limit=limit,
                                         offset=offset)
    return jsonify(present.page("plans", [present.plan(row) for row in rows], count, limit, offset))


@blueprint.get("/list")
@blueprint.get("/listpublic")
@public
async def public_plans() -> Response:
    """The plans the signup offers (`isPublic`), for anyone (`/plans/listpublic`: ticketz's signup page)."""
    rows = await plans.all_plans(deps_of(current_app).db, public_only=True)
    return jsonify([present.plan(row) for row in rows])


@blueprint.get("/all")
@public
async def all_plans() -> Response:
    """Every plan for a super admin (the Plans and Companies screens); the public ones for anyone else (the
    lineage's signup page calls this route without a token)."""
    rows = await plans.all_plans(deps_of(current_app).db, public_only=not _optional_super())
    return jsonify([present.plan(row) for row in rows])


@blueprint.get("/<plan_id>")
@unpaid_ok
async def show_plan(plan_id: str) -> Response:
    """A plan: any for a super admin; for others their company's plan or a public one (the checkout page)."""
    principal = current()
    deps = deps_of(current_app)
    plan = await plans.get_plan(deps.db, path_id(plan_id, "plan"))
    if not principal.super and not plan["is_public"]:
        company = await companies.get_company(deps.db, principal.company_id)
        if company["plan_id"] != plan["id"]:
            raise NotFound(f"plan {plan_id}")
    return jsonify(present.plan(plan))


@blueprint.post("")
async def create_plan() -> tuple[Response, int]:
    require_super()
    row = await plans.create_plan(deps_of(current_app).db, await _plan_body(partial=False))
    return jsonify(present.plan(row)), 201


@blueprint.put("/<plan_id>")
async def update_plan(plan_id: str) -> Response:
    require_super()
    deps = deps_of(current_app)
    target = path_id(plan_id, "plan")
    row = await plans.update_plan(deps.db, target, await _plan_body(partial=True))
    deps.access.forget()  # its companies' features changed
    return jsonify(present.plan(row))


@blueprint.delete("/<plan_id>")
async def delete_plan(plan_id: str) -> Response:
    require_super()
    try:
        await plans.delete_plan(deps_of(current_app).db, path_id(plan_id, "plan"))
    except plans.PlanInUse as in_use:
        raise Conflict(str(in_use), code="ERR_PLAN_IN_USE") from None
    return jsonify({"message": "plan deleted"})
