"""The ticket lists: GET /tickets' filters, pages and counts, for what the caller may see.

Lists are the one genuinely dynamic query of the tickets: pypika builds the page query from the filters
(always with `%(name)s` parameters, never values in the text), once per shape of the filters (which are
present, not their values), and the static `tickets_page` query of queries.sql turns that page into the
JSON the API answers, with the count, in one statement. The page query is shaped for the indexes:

- with a status, one ordered scan of `tickets_status_idx (company_id, status, last_message_at DESC, id DESC)`
  (or `tickets_user_idx` when only the caller's own tickets of that status are listed) that stops after
  the page;
- without a status, one such scan per status, merged (`UNION ALL` of ordered, limited branches: a Merge
  Append), instead of sorting every ticket of the company;
- keyset pagination (`Cursor`: `(last_message_at, id) < (…, …)`) is an index condition, so any page
  costs the same; `pageNumber` (OFFSET) is fine for the first pages only;
- a search finds the contacts whose name or number contains the text through their trigram indexes and
  the tickets whose last message has words starting with the search's words through a full-text index
  (schema version 3), and sorts what it found; the page and the count share that set;
- the tags filter does the same through the tags' indexes (ticket_tags and contact_tags by tag): the
  tickets carrying every tag given are found, then sorted (a rare tag costs its few tickets, not a walk
  of the whole list).

The count has the same filters (and no cursor).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
from typing import Any

import attrs
import psycopg
from pypika import Criterion, CustomFunction, Field, Order, Query, Table, Tuple
from pypika import functions as fn
from pypika.enums import Comparator
from pypika.queries import QueryBuilder
from pypika.terms import BasicCriterion, PyformatParameter, Term

from storage.db import QUERIES_FILE, Database, Row
from storage.sql import load_queries
from storage.tickets import ACTIVE, STATUSES, Viewer, read_viewer

_T = Table("tickets", alias="t")
_C = Table("contacts", alias="c")
_TT = Table("ticket_tags", alias="tt")
_CT = Table("contact_tags", alias="ct")  # schema version 8
_TAGGED = Table("tagged")  # WITH items of a list with common tags (_tagged_ctes)
_TAGGED_CONTACTS = Table("tagged_contacts")
_ANY = CustomFunction("ANY", ["values"])
_ARRAY = CustomFunction("ARRAY", ["query"])
_GRAMS = CustomFunction("search_grams", ["text"])  # schema version 3
_TSVECTOR = CustomFunction("to_tsvector", ["config", "text"])
_PREFIX_QUERY = CustomFunction("search_prefix_query", ["text"])  # schema version 3


COMMON_TAGS = 5000  # tickets: above this the tags filter walks the list's order (tags_common)


def _p(name: str) -> Term:
    return PyformatParameter(name)


# ─── lists ──────────────────────────────────────────────────────────────────────────────

@attrs.frozen
class TicketFilters:
    """The filters of `GET /tickets`; None (or an empty tuple) is "no filter"."""

    status: str | None = None
    # A LIKE pattern (`%text%`, its own wildcards escaped): the contact's name (substring, any case) and the
    # last message (word prefixes: see `search_text`).
    search: str | None = None
    number_search: str | None = None  # a LIKE pattern of digits for the contact's number (default: search)
    created_on: dt.date | None = None
    updated_on: dt.date | None = None
    show_all: bool = False  # False: the caller's own tickets, plus the pending ones
    unread_only: bool = False
    queue_ids: tuple[int, ...] = ()  # these queues, plus queue-less tickets (the frontends expect them)
    tag_ids: tuple[int, ...] = ()  # tickets carrying every one of these tags, or whose contact carries them all
    user_ids: tuple[int, ...] = ()  # tickets assigned to one of these users
    active_only: bool = False  # without a status: the pending and open tickets only (the kanban's cards)


@attrs.frozen
class Cursor:
    """Where a keyset page starts: after the ticket (last_message_at, id), in list order."""

    at: dt.datetime
    id: int

    def encode(self) -> str:
        raw = f"{self.at.isoformat()},{self.id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        """The cursor an earlier page handed out; ValueError when it is not one."""
        if not text or len(text) > 200:
            raise ValueError("not a cursor")
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("ascii")
            at_text, id_text = raw.rsplit(",", 1)
            at = dt.datetime.fromisoformat(at_text)
            ticket_id = int(id_text)
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise ValueError("not a cursor") from None
        if at.tzinfo is None or not 0 < ticket_id < 2**63:
            raise ValueError("not a cursor")
        return cls(at, ticket_id)


@attrs.frozen
class TicketPage:
    """One page of a list: `tickets` is the JSON array of the page's tickets (as tickets_json shows them),
    text to pass on as it is."""

    tickets: str
    count: int
    has_more: bool
    next_cursor: Cursor | None


@attrs.frozen
class ListQuery:
    """The SQL of one list request and its parameters: `sql` is the statement the API runs (the page as
    JSON, and for a search the count); without a search, `count_sql` runs next (`count_apart`).
    `page_sql` is the page on its own (for EXPLAIN)."""

    sql: str
    page_sql: str
    count_sql: str
    params: dict[str, Any]
    count_apart: bool

    def statements(self) -> list[str]:
        """What the API runs, in order."""
        return [self.sql, self.count_sql] if self.count_apart else [self.sql]


@attrs.frozen
class ListShape:
    """What the text of a list's SQL depends on: which filters are present, never their values. The text
    is built once per shape (`_list_sql`); the values travel as parameters (`_list_params`)."""

    is_admin: bool
    viewer_queues: bool
    viewer_all_ticket: bool
    status: str | None
    search: bool
    name_grams: bool  # the search is a plain substring of 3+ characters: the name trigram index can serve it
    number_search: bool
    number_grams: bool
    created_on: bool
    updated_on: bool
    show_all: bool
    unread_only: bool
    queues: bool
    users: bool
    tags: bool
    one_tag: bool  # a single tag: its entries are the tagged set (no grouping to find who carries them all)
    common_tags: bool  # the tags filter matches many tickets: walk the list's order rather than the tags' indexes
    active_only: bool
    after: bool
    limit: int
    offset: int

    @property
    def narrowed(self) -> bool:
        """The tickets are found through an index of their own (the search's, the tags') and then sorted,
        rather than by walking the lists' order: what matches is a few of the company's tickets."""
        return self.search or (self.tags and not self.common_tags)


def search_text(pattern: str) -> str | None:
    """The literal text of a `%text%` LIKE pattern whose own wildcards are escaped (api.validation's
    search patterns); None when the pattern is anything else."""
    if len(pattern) < 2 or not (pattern.startswith("%") and pattern.endswith("%")):
        return None
    text: list[str] = []
    escaped = False
    for ch in pattern[1:-1]:
        if escaped:
            text.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch in "%_":
            return None
        else:
            text.append(ch)
    return None if escaped else "".join(text)


def _shape(viewer: Viewer, filters: TicketFilters, limit: int, offset: int, after: Cursor | None,
           common_tags: bool) -> ListShape:
    text = search_text(filters.search) if filters.search is not None else None
    digits = search_text(filters.number_search) if filters.number_search is not None else None
    return ListShape(
        is_admin=viewer.is_admin, viewer_queues=not viewer.is_admin and bool(viewer.queue_ids),
        viewer_all_ticket=not viewer.is_admin and viewer.all_ticket, status=filters.status,
        search=filters.search is not None, name_grams=text is not None and len(text) >= 3,
        number_search=filters.number_search is not None, number_grams=digits is not None and len(digits) >= 3,
        created_on=filters.created_on is not None, updated_on=filters.updated_on is not None,
        show_all=filters.show_all, unread_only=filters.unread_only, queues=bool(filters.queue_ids),
        users=bool(filters.user_ids), tags=bool(filters.tag_ids), one_tag=len(set(filters.tag_ids)) == 1,
        common_tags=bool(filters.tag_ids) and common_tags,
        active_only=filters.active_only and filters.status is None, after=after is not None, limit=limit,
        offset=0 if after is not None else offset)


def _list_params(viewer: Viewer, filters: TicketFilters, after: Cursor | None) -> dict[str, Any]:
    """Every parameter any list SQL names (each statement takes the ones it uses)."""
    params: dict[str, Any] = {"company_id": viewer.company_id, "viewer_id": viewer.user_id,
                              **{f"status_{status}": status for status in STATUSES}}
    if viewer.queue_ids:
        params["viewer_queue_ids"] = list(viewer.queue_ids)
    if filters.search is not None:
        params["search"] = filters.search
        params["search_text"] = search_text(filters.search) or filters.search.strip("%")
    if filters.number_search is not None:
        params["number_search"] = filters.number_search
        params["number_text"] = search_text(filters.number_search) or ""
    if filters.created_on is not None:
        params["created_on"] = filters.created_on
    if filters.updated_on is not None:
        params["updated_on"] = filters.updated_on
    if filters.queue_ids:
        params["queue_ids"] = sorted(set(filters.queue_ids))
    if filters.user_ids:
        params["user_ids"] = sorted(set(filters.user_ids))
    if filters.tag_ids:
        params["tag_ids"] = sorted(set(filters.tag_ids))
        params["tag_count"] = len(params["tag_ids"])
    if after is not None:
        params["after_at"], params["after_id"] = after.at, after.id
    return params


class _Op(Comparator):
    contains = "@>"
    matches = "@@"


def _criteria(shape: ListShape, status: str | None) -> list[Criterion]:
    """The WHERE of one scan: `status` is the branch's status (None: every status, as the count needs)."""
    t = _T
    where: list[Criterion] = [t.company_id == _p("company_id")]
    if status is not None:
        where.append(t.status == _p(f"status_{status}"))
    elif shape.active_only:
        where.append(t.status.isin([_p(f"status_{active}") for active in ACTIVE]))
    if not shape.is_admin:
        sees: Criterion = t.user_id == _p("viewer_id")
        if shape.viewer_queues:
            sees = sees | (t.queue_id == _ANY(_p("viewer_queue_ids")))
        if shape.viewer_all_ticket:
            sees = sees | t.queue_id.isnull()
        where.append(sees)
    if not shape.show_all:
        # The caller's own tickets, and the pending ones (waiting for anybody to accept them).
        if status is None:
            where.append((t.user_id == _p("viewer_id")) | (t.status == _p("status_pending")))
        elif status != "pending":
            where.append(t.user_id == _p("viewer_id"))
    if shape.search:
        # The contacts whose name (or number) contains the text, found through their trigram indexes (then
        # LIKE rechecks), and their tickets by tickets_contact_idx; or the tickets whose last message has
        # words starting with the search's words (the full-text index). `= ANY(ARRAY(…))` rather than
        # `IN (…)` lets PostgreSQL OR the two index scans together (a BitmapOr).
        named: Criterion = fn.Lower(_C.name).like(fn.Lower(_p("search")))
        if shape.name_grams:
            named = BasicCriterion(_Op.contains, _GRAMS(fn.Lower(_C.name)), _GRAMS(fn.Lower(_p("search_text")))) & named
        if shape.number_search:  # only a search with digits can match a number
            numbered: Criterion = _C.number.like(_p("number_search"))
            if shape.number_grams:
                numbered = BasicCriterion(_Op.contains, _GRAMS(_C.number), _GRAMS(_p("number_text"))) & numbered
            named = named | numbered
        contacts = Query.from_(_C).select(_C.id).where((_C.company_id == _p("company_id")) & named)
        words = BasicCriterion(_Op.matches, _TSVECTOR("simple", t.last_message), _PREFIX_QUERY(_p("search_text")))
        where.append((t.contact_id == _ANY(_ARRAY(contacts))) | words)
    if shape.created_on:
        day = fn.Cast(_p("created_on"), "DATE")
        where.append((t.created_at >= day) & (t.created_at < day + 1))
    if shape.updated_on:
        day = fn.Cast(_p("updated_on"), "DATE")
        where.append((t.updated_at >= day) & (t.updated_at < day + 1))
    if shape.unread_only:
        where.append(t.unread_messages > 0)
    if shape.queues:
        where.append((t.queue_id == _ANY(_p("queue_ids"))) | t.queue_id.isnull())
    if shape.users:
        where.append(t.user_id == _ANY(_p("user_ids")))
    if shape.tags:
        # The tickets carrying every tag, and the contacts carrying every tag (ticketz's tagsMode = contact),
        # found through the tags' indexes (tag_id, ticket_id) and (tag_id, contact_id). The ids of a tag of
        # another company find only that company's tickets, which the company excludes.
        if shape.common_tags:
            # Many tickets match: the list's order is walked (the first page is soon full) and each ticket
            # looked up in the two sets (`_tagged_ctes`, built once per statement), hashed (`IN` under an
            # OR: hashed subplans).
            where.append(t.id.isin(Query.from_(_TAGGED).select(_TAGGED.ticket_id))
                         | t.contact_id.isin(Query.from_(_TAGGED_CONTACTS).select(_TAGGED_CONTACTS.contact_id)))
        else:
            tagged, tagged_contacts = _tagged_sets(shape)
            # Few match: they are fetched by the primary key and tickets_contact_idx, ORed together (a
            # BitmapOr) as the search's contacts are, then sorted.
            where.append((t.id == _ANY(_ARRAY(tagged))) | (t.contact_id == _ANY(_ARRAY(tagged_contacts))))
    return where


def _tagged_sets(shape: ListShape) -> tuple[QueryBuilder, QueryBuilder]:
    """The tickets and the contacts carrying every tag of the filter (one tag: simply its entries)."""
    tagged = Query.from_(_TT).select(_TT.ticket_id).where(_TT.tag_id == _ANY(_p("tag_ids")))
    tagged_contacts = Query.from_(_CT).select(_CT.contact_id).where(_CT.tag_id == _ANY(_p("tag_ids")))
    if not shape.one_tag:
        tagged = tagged.groupby(_TT.ticket_id).having(fn.Count("*") == _p("tag_count"))
        tagged_contacts = tagged_contacts.groupby(_CT.contact_id).having(fn.Count("*") == _p("tag_count"))
    return tagged, tagged_contacts


def _tagged_ctes(shape: ListShape) -> str:
    """The WITH items a list walking its order with common tags looks its tickets up in (empty otherwise)."""
    if not shape.common_tags:
        return ""
    tagged, tagged_contacts = _tagged_sets(shape)
    return (f"tagged AS MATERIALIZED ({tagged.get_sql()}),\n"
            f"tagged_contacts AS MATERIALIZED ({tagged_contacts.get_sql()})")


def _scan(shape: ListShape, status: str | None, *, after: bool) -> QueryBuilder:
    where = _criteria(shape, status)
    if after:
        where.append(Tuple(_T.last_message_at, _T.id) < Tuple(_p("after_at"), _p("after_id")))
    return Query.from_(_T).select(_T.id, _T.last_message_at).where(Criterion.all(where))


def _newest_first(query: QueryBuilder, *, qualified: bool) -> QueryBuilder:
    at, ticket_id = (_T.last_message_at, _T.id) if qualified else (Field("last_message_at"), Field("id"))
    return query.orderby(at, order=Order.desc).orderby(ticket_id, order=Order.desc)


def _limited(query: QueryBuilder, limit: int, offset: int) -> QueryBuilder:
    return query.limit(limit).offset(offset) if offset else query.limit(limit)


@functools.lru_cache(maxsize=512)
def _list_sql(shape: ListShape, template: str) -> tuple[str, str, str]:
    """(statement, page, count) for a shape (the statement holds the count for a search only); `template`
    is queries.sql's tickets_page. The page fetches `limit + 1` rows (the extra one tells whether there is
    more).

    LIMIT and OFFSET are written as integers (they are ours, not the client's text): a prepared
    statement's generic plan with a parameter there would guess the row count and may sort instead of
    walking the index.
    """
    limit, offset = shape.limit, shape.offset
    count = Query.from_(_T).select(fn.Count("*").as_("n")).where(Criterion.all(_criteria(shape, shape.status)))
    if shape.narrowed:
        # A search (or the tags filter) finds its tickets through the search (or tags) indexes, then sorts
        # them: the page and the count share that one set (`matched`).
        scan = _scan(shape, shape.status, after=shape.after)
        page = _limited(_newest_first(scan, qualified=True), limit + 1, offset)
        matched = Query.from_(_T).select(_T.id, _T.last_message_at).where(
            Criterion.all(_criteria(shape, shape.status)))
        after = " WHERE (last_message_at, id) < (%(after_at)s, %(after_id)s)" if shape.after else ""
        window = f" OFFSET {offset}" if offset else ""
        ctes = (f"matched AS MATERIALIZED ({matched.get_sql()}),\n"
                f"page AS MATERIALIZED (SELECT id, last_message_at FROM matched{after}"
                f" ORDER BY last_message_at DESC, id DESC LIMIT {limit + 1}{window})")
        counted = "SELECT count(*) FROM matched"  # the set the page was taken from
    else:
        # One ordered scan per status, merged (a Merge Append) instead of sorting every ticket of the company.
        statuses = (shape.status,) if shape.status is not None else ACTIVE if shape.active_only else STATUSES
        branches = [_newest_first(_scan(shape, status, after=shape.after), qualified=True) for status in statuses]
        if len(branches) == 1:
            page = _limited(branches[0], limit + 1, offset)
        else:
            merged = branches[0].limit(offset + limit + 1)
            for branch in branches[1:]:
                merged = merged.union_all(branch.limit(offset + limit + 1))
            page = _limited(_newest_first(merged, qualified=False), limit + 1, offset)
        ctes = f"page AS MATERIALIZED ({page.get_sql()})"
        # The count runs as a statement of its own: its estimate depends on the status (a parameter), so
        # with it inside PostgreSQL would plan the whole statement again for every request (a custom plan,
        # ~1 ms); alone, the page and its JSON keep their cached generic plan, and the count is cheap to plan.
        counted = "NULL::bigint"
    tagged = _tagged_ctes(shape)
    if tagged:
        ctes = f"{tagged},\n{ctes}"
    prefix = f"WITH {tagged}\n" if tagged else ""
    statement = (template.replace("/*ctes*/", ctes).replace("/*limit*/", str(limit))
                 .replace("/*count*/", counted))
    return statement, prefix + page.get_sql(), prefix + count.get_sql()


@functools.cache
def _default_template() -> str:
    return load_queries(QUERIES_FILE).tickets_page


def build_list_query(viewer: Viewer, filters: TicketFilters, *, limit: int, offset: int = 0,
                     after: Cursor | None = None, template: str | None = None, common_tags: bool = False) -> ListQuery:
    """The SQL of a list request (built once per shape) and its parameters. `template`: queries.sql's
    tickets_page (default: this package's); `common_tags`: the tags filter matches many tickets
    (`tags_common`)."""
    if not isinstance(limit, int) or not isinstance(offset, int) or limit < 1 or offset < 0:
        raise ValueError("limit and offset must be integers")
    shape = _shape(viewer, filters, limit, offset, after, common_tags)
    statement, page, count = _list_sql(shape, template if template is not None else _default_template())
    return ListQuery(statement, page, count, _list_params(viewer, filters, after), count_apart=not shape.narrowed)


def tags_common(conn: psycopg.Connection[Row], q: Any, tag_ids: tuple[int, ...]) -> bool:
    """Whether the tags filter may match more than COMMON_TAGS tickets (queries.sql: tags_reach, which reads
    at most that many entries of each tag's index): then the list walks its order and looks each ticket up
    in the tagged sets, else it fetches the few tagged tickets and sorts them. Measured at 100,000 tickets
    (bench/tags.py): fetching costs about 1 ms per 1,000 matches, walking a few ms whatever the tags."""
    row = conn.execute(q.tags_reach, {"tag_ids": sorted(set(tag_ids)), "cap": COMMON_TAGS}).fetchone()
    return row is not None and row["n"] > COMMON_TAGS


def fetch_list(conn: psycopg.Connection[Row], built: ListQuery, limit: int) -> TicketPage:
    """Run a built list query: the page of tickets as JSON text, the count, whether there is more."""
    row = conn.execute(built.sql, built.params).fetchone()
    assert row is not None
    if built.count_apart:
        counted = conn.execute(built.count_sql, built.params).fetchone()
        assert counted is not None
        row["count"] = counted["n"]
    has_more = row["fetched"] > limit
    cursor = Cursor(row["last_at"], row["last_id"]) if has_more and row["last_id"] is not None else None
    return TicketPage(row["tickets"], row["count"], has_more, cursor)


async def list_tickets(db: Database, company_id: int, user_id: int, is_admin: bool, filters: TicketFilters, *,
                       limit: int, offset: int = 0, after: Cursor | None = None) -> TicketPage:
    """One page of tickets the caller may see, newest activity first, with the total count: the caller's
    queues (plain users only), then the page and the count, on one connection in autocommit (each statement
    has a snapshot of its own, as it had at READ COMMITTED in one transaction)."""
    q = db.q

    def work(conn: psycopg.Connection[Row]) -> TicketPage:
        viewer = read_viewer(conn, q, company_id, user_id, is_admin)
        common = bool(filters.tag_ids) and tags_common(conn, q, filters.tag_ids)
        built = build_list_query(viewer, filters, limit=limit, offset=offset, after=after, template=q.tickets_page,
                                 common_tags=common)
        return fetch_list(conn, built, limit)

    return await db.read(work)
