"""`/companies`: tenants, for super admins. Creating one with an email and password creates its admin."""

from __future__ import annotations

from quart import Blueprint, Response, current_app, jsonify

from api import present
from api.app import deps_of
from api.auth import hash_password, require_super
from api.errors import BadRequest
from api.validation import Field, body, page, path_id, search_pattern
from storage import companies, settings

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
    "connectionLimit": Field("int", minimum=0, maximum=100_000),  # 0: no limit
}


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
    data = await body(COMPANY_FIELDS)
    admin = None
    if "password" in data:
        if not data.get("email"):
            raise BadRequest("email: is required to create the company's admin", code="ERR_VALIDATION", field="email")
        admin = {"name": data.get("adminName") or data["name"], "email": data["email"],
                 "password_hash": await hash_password(data["password"], deps.config.bcrypt_rounds)}
    company, admin_id = await companies.create_company(
        deps.db, name=data["name"], email=data.get("email"), phone=data.get("phone"),
        document=data.get("document"), status=data.get("status", True), due_date=data.get("dueDate"), admin=admin,
    )
    return jsonify({**present.company(company), "adminId": admin_id}), 201


@blueprint.get("/<company_id>")
async def show_company(company_id: str) -> Response:
    require_super()
    return jsonify(present.company(await companies.get_company(deps_of(current_app).db,
                                                               path_id(company_id, "company"))))


@blueprint.put("/<company_id>")
async def update_company(company_id: str) -> Response:
    principal = require_super()
    target = path_id(company_id, "company")
    data = await body(COMPANY_FIELDS, partial=True)
    if target == principal.company_id and data.get("status") is False:
        raise BadRequest("you cannot disable your own company", code="ERR_CANNOT_DISABLE_OWN_COMPANY")
    fields = {key: data[api] for api, key in (("name", "name"), ("email", "email"), ("phone", "phone"),
                                               ("document", "document"), ("status", "status"), ("dueDate", "due_date"))
              if api in data}
    db = deps_of(current_app).db
    updated = await companies.update_company(db, target, fields)
    if "connectionLimit" in data:
        await settings.set_setting(db, target, "connectionLimit", str(data["connectionLimit"]))
    return jsonify({**present.company(updated),
                    "connectionLimit": await settings.get_int_setting(db, target, "connectionLimit")})


@blueprint.delete("/<company_id>")
async def delete_company(company_id: str) -> Response:
    principal = require_super()
    target = path_id(company_id, "company")
    if target == principal.company_id:
        raise BadRequest("you cannot delete your own company", code="ERR_CANNOT_DELETE_OWN_COMPANY")
    await companies.delete_company(deps_of(current_app).db, target)
    return jsonify({"message": "company deleted"})
