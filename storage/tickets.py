"""Tickets as agents work them: the filtered lists, who may see what, a conversation started by an agent,
the status machine (accept, transfer, close, reopen) with its `ticket_events`, and deletion.

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
  (schema version 3), and sorts what it found; the page and the count share that set.

The count has the same filters (and no cursor).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
from collections.abc import Sequence
from typing import Any

import attrs
import psycopg
from pypika import Criterion, CustomFunction, Field, Order, Query, Table, Tuple
from pypika import functions as fn
from pypika.enums import Comparator
from pypika.queries import QueryBuilder
from pypika.terms import BasicCriterion, PyformatParameter, Term

from storage.db import QUERIES_FILE, Database, Row
from storage.errors import Conflict, NotFound, StorageError
from storage.sql import load_queries

STATUSES = ("pending", "open", "closed")
ACTIVE = ("pending", "open")

_T = Table("tickets", alias="t")
_C = Table("contacts", alias="c")
_TT = Table("ticket_tags", alias="tt")
_ANY = CustomFunction("ANY", ["values"])
_ARRAY = CustomFunction("ARRAY", ["query"])
_GRAMS = CustomFunction("search_grams", ["text"])  # schema version 3
_TSVECTOR = CustomFunction("to_tsvector", ["config", "text"])
_PREFIX_QUERY = CustomFunction("search_prefix_query", ["text"])  # schema version 3


def _p(name: str) -> Term:
    return PyformatParameter(name)


# ─── errors ─────────────────────────────────────────────────────────────────────────────

class InvalidTransition(StorageError):
    """The requested change makes no sense for the ticket's status."""


class OtherActiveTicket(Conflict):
    """The contact already has an active (pending or open) ticket on that connection."""

    def __init__(self, ticket_id: int) -> None:
        super().__init__(f"the contact already has an active ticket ({ticket_id}) on this connection",
                         "tickets_one_active_key")
        self.ticket_id = ticket_id


# ─── who sees what ──────────────────────────────────────────────────────────────────────

@attrs.frozen
class Viewer:
    """A caller as the ticket rules see them. Admins see every ticket of their company; a user sees the
    tickets of their queues, queue-less ones when `all_ticket` is enabled, and those assigned to them."""

    user_id: int
    company_id: int
    is_admin: bool
    all_ticket: bool = False
    queue_ids: tuple[int, ...] = ()

    def can_see(self, ticket: Row) -> bool:
        if self.is_admin:
            return True
        queue_id = ticket["queue_id"]
        return (ticket["user_id"] == self.user_id or (queue_id is not None and queue_id in self.queue_ids)
                or (queue_id is None and self.all_ticket))


def _load_viewer(conn: psycopg.Connection[Row], q: Any, company_id: int, user_id: int, is_admin: bool) -> Viewer:
    if is_admin:
        return Viewer(user_id, company_id, True)
    row = conn.execute(q.ticket_viewer, {"user_id": user_id, "company_id": company_id}).fetchone()
    if row is None:  # deleted meanwhile: their own tickets at most (there are none left)
        return Viewer(user_id, company_id, False)
    return Viewer(user_id, company_id, False, row["all_ticket"] == "enable", tuple(row["queue_ids"]))


async def load_viewer(db: Database, company_id: int, user_id: int, is_admin: bool) -> Viewer:
    if is_admin:
        return Viewer(user_id, company_id, True)
    return await db.run(lambda conn: _load_viewer(conn, db.q, company_id, user_id, is_admin))


async def show_visible(db: Database, viewer: Viewer, ticket_id: int) -> Row:
    """The ticket (ticket_show view) if the viewer may see it; NotFound otherwise, as for another
    company's ticket."""
    row = await db.fetch_one(db.q.ticket_show, {"id": ticket_id, "company_id": viewer.company_id})
    if row is None or not viewer.can_see(row):
        raise NotFound(f"ticket {ticket_id}")
    return row


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
    tag_ids: tuple[int, ...] = ()  # tickets carrying every one of these tags
    user_ids: tuple[int, ...] = ()  # tickets assigned to one of these users


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
    after: bool
    limit: int
    offset: int


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


def _shape(viewer: Viewer, filters: TicketFilters, limit: int, offset: int, after: Cursor | None) -> ListShape:
    text = search_text(filters.search) if filters.search is not None else None
    digits = search_text(filters.number_search) if filters.number_search is not None else None
    return ListShape(
        is_admin=viewer.is_admin, viewer_queues=not viewer.is_admin and bool(viewer.queue_ids),
        viewer_all_ticket=not viewer.is_admin and viewer.all_ticket, status=filters.status,
        search=filters.search is not None, name_grams=text is not None and len(text) >= 3,
        number_search=filters.number_search is not None, number_grams=digits is not None and len(digits) >= 3,
        created_on=filters.created_on is not None, updated_on=filters.updated_on is not None,
        show_all=filters.show_all, unread_only=filters.unread_only, queues=bool(filters.queue_ids),
        users=bool(filters.user_ids), tags=bool(filters.tag_ids), after=after is not None, limit=limit,
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
        carried = (Query.from_(_TT).select(fn.Count("*"))
                   .where(_TT.ticket_id == t.id).where(_TT.tag_id == _ANY(_p("tag_ids"))))
        where.append(_p("tag_count") == carried)
    return where


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
    if shape.search:
        # A search finds its tickets through the search indexes, then sorts them: the page and the count
        # share that one set (`matched`).
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
        statuses = STATUSES if shape.status is None else (shape.status,)
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
    statement = (template.replace("/*ctes*/", ctes).replace("/*limit*/", str(limit))
                 .replace("/*count*/", counted))
    return statement, page.get_sql(), count.get_sql()


@functools.cache
def _default_template() -> str:
    return load_queries(QUERIES_FILE).tickets_page


def build_list_query(viewer: Viewer, filters: TicketFilters, *, limit: int, offset: int = 0,
                     after: Cursor | None = None, template: str | None = None) -> ListQuery:
    """The SQL of a list request (built once per shape) and its parameters. `template`: queries.sql's
    tickets_page (default: this package's)."""
    if not isinstance(limit, int) or not isinstance(offset, int) or limit < 1 or offset < 0:
        raise ValueError("limit and offset must be integers")
    shape = _shape(viewer, filters, limit, offset, after)
    statement, page, count = _list_sql(shape, template if template is not None else _default_template())
    return ListQuery(statement, page, count, _list_params(viewer, filters, after), count_apart=not shape.search)


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
        viewer = _load_viewer(conn, q, company_id, user_id, is_admin)
        built = build_list_query(viewer, filters, limit=limit, offset=offset, after=after, template=q.tickets_page)
        return fetch_list(conn, built, limit)

    return await db.read(work)


# ─── a ticket opened: its messages ──────────────────────────────────────────────────────

@attrs.frozen
class OpenedTicket:
    """GET /messages/:ticketId's reads: the ticket (the ticket_show columns the route needs, with `json`),
    a page of its messages as JSON text (chronological), and what reading it changed."""

    ticket: Row
    messages: str
    shown: int  # messages in the page
    count: int  # messages of the ticket
    read_changed: bool  # its unread count went to 0 (an `updateUnread` to announce)
    read_wids: tuple[str, ...]  # the WhatsApp ids of the messages just read (for the read receipts)


async def open_ticket_messages(db: Database, company_id: int, user_id: int, is_admin: bool, ticket_id: int, *,
                               limit: int, offset: int, base_url: str) -> OpenedTicket:
    """The ticket if the caller may see it (NotFound otherwise, as for another company's), a page of its
    messages, and — on the first page — the ticket read: one worker thread, one connection in autocommit,
    one statement each (the page is read before it is marked read, as it was shown)."""
    q = db.q

    def work(conn: psycopg.Connection[Row]) -> OpenedTicket:
        viewer = _load_viewer(conn, q, company_id, user_id, is_admin)
        ticket = conn.execute(q.ticket_show_json, {"id": ticket_id, "company_id": company_id}).fetchone()
        if ticket is None or not viewer.can_see(ticket):
            raise NotFound(f"ticket {ticket_id}")
        page = conn.execute(q.messages_page_json, {"ticket_id": ticket_id, "company_id": company_id, "limit": limit,
                                                   "offset": offset, "base_url": base_url}).fetchone()
        assert page is not None
        changed, wids = False, ()
        if offset == 0:
            read = conn.execute(q.ticket_read, {"id": ticket_id, "company_id": company_id}).fetchone()
            assert read is not None
            changed, wids = read["changed"], tuple(read["wids"])
        return OpenedTicket(ticket, page["messages"], page["shown"], page["count"], changed, wids)

    return await db.read(work)


# ─── changes ────────────────────────────────────────────────────────────────────────────

@attrs.frozen
class TicketChange:
    """What `PUT /tickets/:id` asks for; user and queue change only when their `set_` flag is on
    (None then means "nobody" / "no queue")."""

    status: str | None = None
    set_user: bool = False
    user_id: int | None = None
    set_queue: bool = False
    queue_id: int | None = None


@attrs.frozen
class Plan:
    status: str
    user_id: int | None
    queue_id: int | None
    events: tuple[str, ...]  # ticket_events kinds, in order

    def changes(self, ticket: Row) -> bool:
        return (self.status, self.user_id, self.queue_id) != (ticket["status"], ticket["user_id"], ticket["queue_id"])


def plan_change(ticket: Row, change: TicketChange, caller_id: int) -> Plan:
    """The status machine. pending→open accepts (taken by the caller unless a user is named); →closed
    closes; closed→pending|open reopens (open: taken by the caller unless named); a changed queue or user
    otherwise is a transfer (open→pending gives the ticket back to its queue: a transfer too)."""
    old = ticket["status"]
    new = change.status or old
    if new not in STATUSES:
        raise InvalidTransition(f"status must be one of {', '.join(STATUSES)}")
    user_id = change.user_id if change.set_user else ticket["user_id"]
    queue_id = change.queue_id if change.set_queue else ticket["queue_id"]
    events: list[str] = []
    if old == "closed" and new == "closed":
        if (user_id, queue_id) != (ticket["user_id"], ticket["queue_id"]):
            raise InvalidTransition("a closed ticket cannot be transferred; reopen it first")
        return Plan(new, user_id, queue_id, ())
    assigns = False  # the status change itself decides the user: no transfer event for it
    if old == "pending" and new == "open":
        events.append("accepted")
        assigns = True
    elif old == "closed":
        events.append("reopened")
        assigns = True
    elif new == "closed":
        events.append("closed")
        assigns = True
    if new == "open" and user_id is None:
        if not assigns and change.set_user:
            raise InvalidTransition("an open ticket needs a user; set status pending to give it back to its queue")
        user_id = caller_id
    moved = queue_id != ticket["queue_id"] or (not assigns and user_id != ticket["user_id"]) or \
        (old == "open" and new == "pending")
    if moved:  # a transfer comes before a close (it happened first), after an accept or a reopen
        events.insert(0 if new == "closed" else len(events), "transferred")
    return Plan(new, user_id, queue_id, tuple(events))


def _check_targets(conn: psycopg.Connection[Row], q: Any, company_id: int, user_id: int | None,
                   queue_id: int | None) -> None:
    if user_id is not None and conn.execute(q.ticket_user_exists, {"id": user_id,
                                                                   "company_id": company_id}).fetchone() is None:
        raise NotFound(f"user {user_id}")
    if queue_id is not None and conn.execute(q.ticket_queue_exists, {"id": queue_id,
                                                                     "company_id": company_id}).fetchone() is None:
        raise NotFound(f"queue {queue_id}")


async def check_targets(db: Database, company_id: int, user_id: int | None, queue_id: int | None) -> None:
    """NotFound unless the user and the queue (each when not None) belong to the company."""
    if user_id is not None or queue_id is not None:
        await db.run(lambda conn: _check_targets(conn, db.q, company_id, user_id, queue_id))


def _record(conn: psycopg.Connection[Row], q: Any, ticket: Row, kinds: Sequence[str]) -> None:
    """ticket_events rows: each carries the ticket's user, queue and connection after the change."""
    for kind in kinds:
        conn.execute(q.ticket_event_insert, {"company_id": ticket["company_id"], "ticket_id": ticket["id"],
                                             "kind": kind, "user_id": ticket["user_id"],
                                             "queue_id": ticket["queue_id"], "whatsapp_id": ticket["whatsapp_id"]})


@attrs.frozen
class Changed:
    ticket: Row  # the tickets row after the change
    events: tuple[str, ...]


async def change_ticket(db: Database, company_id: int, ticket_id: int, change: TicketChange,
                        caller_id: int) -> Changed:
    """Apply a change (locked row, planned on its current state), with its events, in one transaction.
    Run it inside the conversation's TicketActor. Raises NotFound (ticket, user or queue),
    InvalidTransition, OtherActiveTicket (a reopen while the contact has another active ticket)."""
    q = db.q

    def work(conn: psycopg.Connection[Row]) -> Changed:
        ticket = conn.execute(q.ticket_for_change, {"id": ticket_id, "company_id": company_id}).fetchone()
        if ticket is None:
            raise NotFound(f"ticket {ticket_id}")
        plan = plan_change(ticket, change, caller_id)
        if not plan.changes(ticket):
            return Changed(ticket, ())
        _check_targets(conn, q, company_id, plan.user_id if plan.user_id != ticket["user_id"] else None,
                       plan.queue_id if plan.queue_id != ticket["queue_id"] else None)
        if ticket["status"] == "closed" and plan.status in ACTIVE:
            other = conn.execute(q.ticket_other_active, {**_key(ticket), "id": ticket_id}).fetchone()
            if other is not None:
                raise OtherActiveTicket(other["id"])
        updated = conn.execute(q.ticket_set_assignment, {"id": ticket_id, "company_id": company_id,
                                                         "status": plan.status, "user_id": plan.user_id,
                                                         "queue_id": plan.queue_id}).fetchone()
        assert updated is not None
        _record(conn, q, updated, plan.events)
        return Changed(updated, plan.events)

    return await db.run(work)


def _key(ticket: Row) -> dict[str, Any]:
    return {"company_id": ticket["company_id"], "contact_id": ticket["contact_id"],
            "whatsapp_id": ticket["whatsapp_id"]}


async def open_ticket(db: Database, company_id: int, *, contact: Row, whatsapp_id: int, status: str,
                      user_id: int | None, queue_id: int | None) -> Row:
    """A ticket an agent starts with a contact; OtherActiveTicket when the contact already has an active
    one on that connection. Events: `created`, and `accepted` when it starts open."""
    if status not in ACTIVE:
        raise InvalidTransition("a new ticket is open or pending")
    q = db.q

    def work(conn: psycopg.Connection[Row]) -> Row:
        _check_targets(conn, q, company_id, user_id, queue_id)
        key = {"company_id": company_id, "contact_id": contact["id"], "whatsapp_id": whatsapp_id}
        row = conn.execute(q.ticket_insert_by_agent, {**key, "status": status, "user_id": user_id,
                                                      "queue_id": queue_id,
                                                      "is_group": contact["is_group"]}).fetchone()
        if row is None:
            other = conn.execute(q.ticket_other_active, {**key, "id": 0}).fetchone()
            raise OtherActiveTicket(other["id"] if other else 0)
        _record(conn, q, row, ("created", "accepted") if status == "open" else ("created",))
        return row

    return await db.run(work)


async def default_whatsapp(db: Database, company_id: int) -> int | None:
    """The company's default connection, else its only one; None when there is no such single choice."""
    rows = await db.fetch_all(db.q.ticket_default_whatsapp, {"company_id": company_id})
    if rows and (rows[0]["is_default"] or len(rows) == 1):
        return rows[0]["id"]
    return None


async def delete_ticket(db: Database, company_id: int, ticket_id: int) -> None:
    if await db.fetch_one(db.q.ticket_delete, {"id": ticket_id, "company_id": company_id}) is None:
        raise NotFound(f"ticket {ticket_id}")
