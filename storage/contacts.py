"""Contacts of a company as the agents manage them (`/contacts`): CRUD, custom fields, bulk import (the
engine is storage/imports.py; `ContactsTarget` writes its batches) and export.

The WhatsApp side of contacts (upserts by number or LID from inbound messages) lives with the intake
queries; both honour `name_set_by_agent`: a name an agent chose is never replaced by a push name.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import psycopg

from storage.db import Database, Row
from storage.errors import Conflict, NotFound
from storage.imports import ImportRow


@attrs.frozen
class ExtraInfo:
    """A custom field of a contact (`extraInfo` item)."""

    name: str
    value: str


def _show(conn: psycopg.Connection[Row], q: Any, company_id: int, contact_id: int) -> Row:
    row = conn.execute(q.contact_show, {"id": contact_id, "company_id": company_id}).fetchone()
    if row is None:
        raise NotFound(f"contact {contact_id}")
    return row


def _set_extra_info(conn: psycopg.Connection[Row], q: Any, company_id: int, contact_id: int,
                    extra_info: Sequence[ExtraInfo]) -> None:
    """Make the contact's custom fields exactly `extra_info` (names are unique; matched by name)."""
    names = [field.name for field in extra_info]
    conn.execute(q.contact_fields_prune, {"contact_id": contact_id, "company_id": company_id, "names": names})
    if extra_info:
        conn.execute(q.contact_fields_upsert, {"company_id": company_id, "contact_id": contact_id, "names": names,
                                               "values": [field.value for field in extra_info]})


async def show_contact(db: Database, company_id: int, contact_id: int) -> Row:
    return await db.run(lambda conn: _show(conn, db.q, company_id, contact_id))


async def list_contacts(db: Database, company_id: int, *, search: str | None, number_search: str | None,
                        limit: int, offset: int, needle: str = "") -> tuple[list[Row], int]:
    """A page of contacts by name and the count of all that match. `search` is an ILIKE pattern matched
    against the name, the number and the values of the custom fields (`needle`: the searched text itself,
    which narrows the fields through their index), `number_search` a LIKE pattern of digits for the number."""
    params = {"company_id": company_id, "search": search, "number_search": number_search, "limit": limit,
              "offset": offset, "needle": needle}
    rows = await db.fetch_all(db.q.contact_list, params)
    if rows:
        return rows, rows[0]["total"]
    return rows, (await db.fetch_value(db.q.contact_count, params) if offset else 0)  # a page past the end


async def create_contact(db: Database, company_id: int, *, name: str, number: str, email: str = "",
                         extra_info: Sequence[ExtraInfo] = ()) -> Row:
    """A new contact (its name counts as chosen by an agent); a number already in the company is a
    Conflict on `contacts_company_number_key`."""
    q = db.q

    def work(conn: psycopg.Connection[Row]) -> Row:
        row = conn.execute(q.contact_insert, {"company_id": company_id, "name": name, "number": number,
                                              "email": email}).fetchone()
        assert row is not None
        if extra_info:
            _set_extra_info(conn, q, company_id, row["id"], extra_info)
        return _show(conn, q, company_id, row["id"])

    return await db.run(work)


async def find_or_create_contact(db: Database, company_id: int, *, name: str, number: str) -> tuple[Row, bool]:
    """The company's contact with `number`, created with `name` when there is none; and whether it was."""
    q = db.q

    def work(conn: psycopg.Connection[Row]) -> tuple[Row, bool]:
        for _ in range(3):  # a concurrent insert of the same number: the next statement sees it
            found = conn.execute(q.contact_find_or_insert, {"company_id": company_id, "name": name,
                                                            "number": number}).fetchone()
            if found is not None:
                return _show(conn, q, company_id, found["id"]), found["created"]
        raise Conflict(f"contact {number} is being created concurrently")

    return await db.run(work)


async def update_contact(db: Database, company_id: int, contact_id: int, *, name: str | None = None,
                         number: str | None = None, email: str | None = None,
                         extra_info: Sequence[ExtraInfo] | None = None) -> Row:
    """Change the given values (None keeps one); `extra_info`, when given, replaces the custom fields.
    A new name marks the name as the agent's."""
    q = db.q
    params = {"id": contact_id, "company_id": company_id, "name": name, "number": number, "email": email}

    def work(conn: psycopg.Connection[Row]) -> Row:
        if conn.execute(q.contact_update, params).fetchone() is None:
            raise NotFound(f"contact {contact_id}")
        if extra_info is not None:
            _set_extra_info(conn, q, company_id, contact_id, extra_info)
        return _show(conn, q, company_id, contact_id)

    return await db.run(work)


async def delete_contact(db: Database, company_id: int, contact_id: int) -> None:
    """Remove a contact with its custom fields, tickets and messages (foreign keys cascade)."""
    if await db.execute(db.q.contact_delete, {"id": contact_id, "company_id": company_id}) == 0:
        raise NotFound(f"contact {contact_id}")


@attrs.frozen
class ContactsTarget:
    """Where an import of contacts writes (storage/imports.py `Target`): contacts upserted by number with the
    custom fields of the file's other columns (see the query `contact_import_merge`)."""

    company_id: int
    q: Any
    custom_fields: bool = True

    def merge(self, conn: psycopg.Connection[Row], rows: Sequence[ImportRow]) -> tuple[int, int]:
        fields = [(row.number, name, value) for row in rows for name, value in row.fields]
        counts = conn.execute(self.q.contact_import_merge, {
            "company_id": self.company_id, "numbers": [row.number for row in rows],
            "names": [row.name for row in rows], "emails": [row.email for row in rows],
            "field_numbers": [field[0] for field in fields], "field_names": [field[1] for field in fields],
            "field_values": [field[2] for field in fields]}).fetchone()
        assert counts is not None
        return counts["created"], counts["merged"]


def export_slice(conn: psycopg.Connection[Row], q: Any, company_id: int, *, after: int, limit: int) -> list[Row]:
    """The company's contacts after id `after` (keyset), with `extra_info`; for exports."""
    return conn.execute(q.contact_export, {"company_id": company_id, "after": after, "limit": limit}).fetchall()
