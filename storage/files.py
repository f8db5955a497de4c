"""File lists of a company (`/files`): a named list of uploaded files, each with a description.

Every statement is scoped by company: an option is only reached through its list, and every change
first locks the list (`file_lock`, by id and company), so another company's list is a NotFound and
concurrent changes of one list are serialised. Changes that drop stored files return their URLs
(`/media/<token>/<name>`): the caller removes them from disk once the change is committed, never before.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import psycopg

from storage.db import Database, Row
from storage.errors import NotFound


@attrs.frozen
class OptionChange:
    """An option as a list's form sends it: an existing one (`id`) or a new one (`id` None)."""

    name: str
    id: int | None = None


@attrs.frozen
class OptionMedia:
    """An option's newly stored file; `name` None keeps its description."""

    id: int
    path: str
    media_type: str
    media_url: str
    name: str | None = None


@attrs.frozen
class Changed:
    row: Row  # the list as file_show reads it
    dropped_media: list[str]  # stored files it no longer uses


async def page_files(db: Database, company_id: int, *, search: str | None, limit: int,
                     offset: int) -> tuple[list[Row], int]:
    """A page of lists by name, and how many match in all."""
    params = {"company_id": company_id, "search": search, "limit": limit, "offset": offset}
    rows = await db.fetch_all(db.q.file_page, params)
    if rows:
        return rows, rows[0]["total"]
    return rows, (await db.fetch_value(db.q.file_count, params) if offset else 0)  # a page past the end


async def all_files(db: Database, company_id: int, *, search: str | None, limit: int) -> list[Row]:
    return await db.fetch_all(db.q.file_all, {"company_id": company_id, "search": search, "limit": limit})


async def show_file(db: Database, company_id: int, file_id: int) -> Row:
    row = await db.fetch_one(db.q.file_show, {"id": file_id, "company_id": company_id})
    if row is None:
        raise NotFound(f"file list {file_id}")
    return row


def _show(conn: psycopg.Connection[Row], db: Database, company_id: int, file_id: int) -> Row:
    row = conn.execute(db.q.file_show, {"id": file_id, "company_id": company_id}).fetchone()
    assert row is not None  # locked or made in this transaction
    return row


def _lock(conn: psycopg.Connection[Row], db: Database, company_id: int, file_id: int) -> None:
    if conn.execute(db.q.file_lock, {"id": file_id, "company_id": company_id}).fetchone() is None:
        raise NotFound(f"file list {file_id}")


async def create_file(db: Database, company_id: int, *, name: str, message: str, options: Sequence[str]) -> Row:
    """A new list with options of these descriptions, in this order (their files come by upload).
    A name the company has (any case) is a Conflict on `files_company_name_key`."""
    q = db.q

    def work(conn: psycopg.Connection[Row]) -> Row:
        made = conn.execute(q.file_insert, {"company_id": company_id, "name": name, "message": message}).fetchone()
        assert made is not None
        with conn.cursor() as cursor:
            cursor.executemany(q.file_option_insert, [{"file_id": made["id"], "position": position, "name": text}
                                                      for position, text in enumerate(options)])
        return _show(conn, db, company_id, made["id"])

    return await db.run(work)


async def update_file(db: Database, company_id: int, file_id: int, *, name: str | None, message: str | None,
                      options: Sequence[OptionChange] | None) -> Changed:
    """Change the name and message given; `options`, when given, become the list's options in that
    order: listed ids keep their files (and take the new description), the others are deleted, those
    without id are added. An id that is not one of this list's options is a NotFound, and nothing changes."""
    q = db.q

    def work(conn: psycopg.Connection[Row]) -> Changed:
        _lock(conn, db, company_id, file_id)
        conn.execute(q.file_update, {"id": file_id, "company_id": company_id, "name": name, "message": message})
        dropped: list[str] = []
        if options is not None:
            existing = {row["id"]: row["media_url"] for row in conn.execute(q.file_option_ids, {"file_id": file_id})}
            kept = {option.id for option in options if option.id is not None}
            unknown = kept - existing.keys()
            if unknown:
                raise NotFound(f"option {min(unknown)} of file list {file_id}")
            for option_id, media_url in existing.items():
                if option_id not in kept:
                    conn.execute(q.file_option_delete, {"id": option_id, "file_id": file_id})
                    if media_url:
                        dropped.append(media_url)
            for position, option in enumerate(options):
                params = {"file_id": file_id, "position": position, "name": option.name, "id": option.id}
                conn.execute(q.file_option_insert if option.id is None else q.file_option_rename, params)
        return Changed(_show(conn, db, company_id, file_id), dropped)

    return await db.run(work)


async def set_media(db: Database, company_id: int, file_id: int, media: Sequence[OptionMedia]) -> Changed:
    """Give options their newly stored files, all or none: an option that is not this list's is a
    NotFound. `dropped_media` are the files they had before."""
    q = db.q

    def work(conn: psycopg.Connection[Row]) -> Changed:
        _lock(conn, db, company_id, file_id)
        dropped: list[str] = []
        for item in media:
            row = conn.execute(q.file_option_set_media, {
                "id": item.id, "file_id": file_id, "path": item.path, "media_type": item.media_type,
                "media_url": item.media_url, "name": item.name}).fetchone()
            if row is None:
                raise NotFound(f"option {item.id} of file list {file_id}")
            if row["replaced_media_url"]:
                dropped.append(row["replaced_media_url"])
        if media:
            conn.execute(q.file_update, {"id": file_id, "company_id": company_id, "name": None, "message": None})
        return Changed(_show(conn, db, company_id, file_id), dropped)

    return await db.run(work)


async def delete_file(db: Database, company_id: int, file_id: int) -> list[str]:
    """Remove the list and its options; the stored files they used (to be removed by the caller)."""
    q = db.q

    def work(conn: psycopg.Connection[Row]) -> list[str]:
        _lock(conn, db, company_id, file_id)
        urls = [row["media_url"] for row in conn.execute(q.file_option_ids, {"file_id": file_id}) if row["media_url"]]
        conn.execute(q.file_delete, {"id": file_id, "company_id": company_id})
        return urls

    return await db.run(work)


async def delete_all_files(db: Database, company_id: int) -> list[str]:
    """Remove every list of the company; the stored files they used."""
    q = db.q

    def work(conn: psycopg.Connection[Row]) -> list[str]:
        conn.execute(q.file_lock_company, {"company_id": company_id})  # no upload lands in between
        urls = [row["media_url"] for row in conn.execute(q.file_media_of_company, {"company_id": company_id})]
        conn.execute(q.file_delete_all, {"company_id": company_id})
        return urls

    return await db.run(work)
