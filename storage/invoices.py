"""Invoices: one per company and due date, created ahead of the due date by the daily sweep from the plan's
value; the super admin marks them paid (no payment provider), which moves the company's due date by its
recurrence in the same transaction."""

from __future__ import annotations

import psycopg

from storage.db import Database, Row
from storage.errors import NotFound

STATUSES = ("open", "paid", "cancelled")


async def list_invoices(db: Database, company_id: int | None, *, search: str | None, limit: int,
                        offset: int) -> tuple[list[Row], int]:
    """A page of invoices, of one company (or of all when `company_id` is None: the super admin's)."""
    params = {"company_id": company_id, "search": search, "limit": limit, "offset": offset}
    rows = await db.fetch_all(db.q.invoice_list, params)
    if rows:
        return rows, rows[0]["total"]
    return rows, (await db.fetch_value(db.q.invoice_count_search, params) if offset else 0)


async def get_invoice(db: Database, invoice_id: int, company_id: int | None) -> Row:
    row = await db.fetch_one(db.q.invoice_get, {"id": invoice_id, "company_id": company_id})
    if row is None:
        raise NotFound(f"invoice {invoice_id}")
    return row


async def set_status(db: Database, invoice_id: int, status: str) -> tuple[Row, bool]:
    """Set an invoice's status; (the invoice, whether its company's due date moved). Paying an open invoice
    moves the company's due date to the invoice's plus the recurrence; paying it again changes nothing."""
    q = db.q

    def work(conn: psycopg.Connection[Row]) -> tuple[Row, bool]:
        invoice = conn.execute(q.invoice_lock, {"id": invoice_id}).fetchone()
        if invoice is None:
            raise NotFound(f"invoice {invoice_id}")
        if invoice["status"] == status:
            return invoice, False
        row = conn.execute(q.invoice_set_status, {"id": invoice_id, "status": status}).fetchone()
        assert row is not None
        if status != "paid":
            return row, False
        conn.execute(q.company_extend_due_date, {"company_id": invoice["company_id"], "from": invoice["due_date"]})
        return row, True

    return await db.run(work)


async def create_due_invoices(db: Database, days_ahead: int) -> int:
    """The sweep: invoices for the companies due within `days_ahead` days that have none for that date yet."""
    rows = await db.fetch_all(db.q.invoices_create_due, {"days_ahead": days_ahead})
    return len(rows)
