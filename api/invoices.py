"""`/invoices`: a company's bills (the SaaS lineage's Financeiro screen). The daily sweep creates them
(gateway/housekeeper.py); a super admin marks them paid, which moves the company's due date. Payment
providers are not part of zapgate. Every route here stays open to a company whose subscription expired:
it is how it sees what to pay.
"""

from __future__ import annotations

from quart import Blueprint, Response, current_app, jsonify, request

from api import present
from api.app import deps_of
from api.auth import current, require_super
from api.subscriptions import unpaid_ok
from api.validation import Field, body, page, path_id, query_int, search_pattern
from storage import invoices

blueprint = Blueprint("invoices", __name__, url_prefix="/invoices")
PAGE_SIZE = 20  # the lineage's
ALL_LIMIT = 1000  # /invoices/all: one a month for most companies; the newest this many
STATUS = {"status": Field("str", required=True, choices=invoices.STATUSES)}


@blueprint.get("")
@unpaid_ok
async def list_invoices() -> Response:
    """`{invoices, count, hasMore}`: the caller's company's; a super admin's: every company's, or one's with
    `companyId`."""
    principal = current()
    company_id: int | None = principal.company_id
    if principal.super:
        company_id = query_int("companyId", 0, minimum=1, maximum=2**62) if request.args.get("companyId") else None
    limit, offset = page(PAGE_SIZE)
    rows, count = await invoices.list_invoices(deps_of(current_app).db, company_id, search=search_pattern(),
                                               limit=limit, offset=offset)
    return jsonify(present.page("invoices", [present.invoice(row) for row in rows], count, limit, offset))


@blueprint.get("/all")
@unpaid_ok
async def company_invoices() -> Response:
    """Every invoice of the caller's company, as an array: the lineage's Financeiro screen reads this route
    (whoever calls it, super admins included) and appends what it gets."""
    principal = current()
    rows, _ = await invoices.list_invoices(deps_of(current_app).db, principal.company_id,
                                           search=search_pattern(), limit=ALL_LIMIT, offset=0)
    return jsonify([present.invoice(row) for row in rows])


@blueprint.get("/<invoice_id>")
@unpaid_ok
async def show_invoice(invoice_id: str) -> Response:
    principal = current()
    row = await invoices.get_invoice(deps_of(current_app).db, path_id(invoice_id, "invoice"),
                                     None if principal.super else principal.company_id)
    return jsonify(present.invoice(row))


@blueprint.put("/<invoice_id>")
@unpaid_ok
async def update_invoice(invoice_id: str) -> Response:
    """`{status}` (super admin): `paid` moves the company's due date by its recurrence and lets it in."""
    require_super()
    deps = deps_of(current_app)
    data = await body(STATUS)
    row, moved = await invoices.set_status(deps.db, path_id(invoice_id, "invoice"), data["status"])
    if moved:
        deps.access.forget(row["company_id"])
    return jsonify(present.invoice(row))
