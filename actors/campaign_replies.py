"""A contact's message, as campaigns see it (issue 14): opt-out, replies, confirmations.

The ticket actor calls `reply_work` after a contact's message is stored (actors/ticket.py `_on_inbound`),
as one transaction, before routing:

- a message that is one of the company's stop words (setting `stopWords`, default "SAIR,PARAR,STOP";
  trimmed, case- and accent-insensitive, trailing punctuation ignored) opts the number out: a row in
  `campaign_opt_outs`, `contacts.opted_out_at`, its queued shippings skipped (every later campaign's core
  skips an opted-out number when it creates its shippings), and — the first time only — one short answer
  (setting `optOutReply`; "" sends none);
- any message of a contact with a recent shipping (sent, or asking for a confirmation, in the last
  RECENT days) sets the shippings' `replied_at` (once);
- in a confirmation campaign (`confirmation = true`), the reply to a shipping whose
  `confirmation_requested_at` is set records `confirmed_at` and sends the shipping's `confirmation_message`
  (once: the update that sets `confirmed_at` is the one that sends).

Each effect is guarded by the row it writes (`replied_at IS NULL`, `confirmed_at IS NULL`, the opt-out's
primary key), so a redelivered message is a no-op. A company with no campaign costs nothing
more than a cached flag (`has_campaigns`, refreshed every FLAG_TTL seconds and forgotten when the API
changes a campaign).
"""

from __future__ import annotations

import datetime as dt
import time
import unicodedata
from collections.abc import Callable
from typing import Any

import psycopg

from actors import routing as routing_exec
from gateway.whatsapp import transport as wa
from storage import campaigns, routing
from storage.db import Row

RECENT = dt.timedelta(days=7)  # a reply counts for shippings sent within this
FLAG_TTL = 30.0  # seconds a company's "has campaigns" answer is trusted
PUNCTUATION = ".!?,;:\"'()[]{}-_ "

_flags: dict[int, tuple[bool, float]] = {}


def forget(company_id: int) -> None:
    """The company's campaigns changed: ask again at its next message."""
    _flags.pop(company_id, None)


def may_apply(company_id: int, clock: Callable[[], float] = time.monotonic) -> bool | None:
    """The cached flag: False (skip), True (check), None (unknown: `reply_work` reads it)."""
    cached = _flags.get(company_id)
    if cached is None or cached[1] < clock():
        return None
    return cached[0]


def fold(text: str) -> str:
    """Trimmed, without accents, case-folded, without surrounding punctuation."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return plain.casefold().strip(PUNCTUATION + "\t\r\n")


def is_stop_word(body: str, stop_words: str) -> bool:
    words = {fold(word) for word in stop_words.split(",") if fold(word)}
    return bool(body) and len(body) <= 200 and fold(body) in words


def reply_work(company_id: int, ticket_id: int, message: Row, contact: Row,
               now: Callable[[], dt.datetime]) -> Callable[[psycopg.Connection[Row]], routing_exec.Outcome]:
    """The transaction for a contact's stored message `message` (its row: id, body, from_me)."""

    def work(conn: psycopg.Connection[Row]) -> routing_exec.Outcome:
        flag = may_apply(company_id)
        if flag is None:
            flag = campaigns.has_campaigns(conn, company_id)
            _flags[company_id] = (flag, time.monotonic() + FLAG_TTL)
        if not flag or message.get("from_me"):
            return routing_exec.NOTHING
        at = now()
        body = message.get("body") or ""
        number = contact["number"]
        shippings = campaigns.reply_shippings(conn, company_id, contact["id"], number, at - RECENT)
        settings = campaigns.settings_in(conn, company_id)
        texts: list[str] = []
        if is_stop_word(body, str(settings.get("stopWords") or "")):
            if campaigns.opt_out(conn, company_id, contact_id=contact["id"], number=number,
                                 reason=f"answered {body.strip()[:100]!r}", at=at):
                reply = str(settings.get("optOutReply") or "").strip()
                if reply:
                    texts.append(reply)
            campaigns.mark_replied(conn, company_id, [s["id"] for s in shippings], at)
        elif shippings:
            campaigns.mark_replied(conn, company_id, [s["id"] for s in shippings], at)
            asking = next((s for s in shippings if s["campaign_confirmation"]
                           and s["confirmation_requested_at"] is not None and s["confirmed_at"] is None
                           and s["campaign_status"] in ("EM_ANDAMENTO", "FINALIZADA")), None)
            if asking is not None and campaigns.mark_confirmed(conn, company_id, asking["id"], at):
                if asking["confirmation_message"]:
                    texts.append(asking["confirmation_message"])
        if not texts:
            return routing_exec.NOTHING
        ticket = conn.execute("SELECT * FROM tickets WHERE id = %(id)s AND company_id = %(company_id)s FOR UPDATE",
                              {"id": ticket_id, "company_id": company_id}).fetchone()
        if ticket is None:
            return routing_exec.NOTHING
        sent = tuple(routing.insert_send(conn, ticket, wid=wa.new_message_id(), body=text) for text in texts)
        return routing_exec.Outcome(messages=sent)

    return work


def stats() -> dict[str, Any]:
    return {"companiesCached": len(_flags)}
