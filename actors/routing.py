"""Queue routing, executed: the ticket actor's side of DESIGN §7b for issue 12.

The ticket actor calls these after a contact's message is stored (`route_inbound`), when one of its
ticket's timers fires (`timer_fired`) and when an agent closes a ticket (`after_close`). Each runs ONE
transaction: lock the ticket, read what the pure decision needs (actors/automation/: menu, hours, assign,
rules, render), decide, and write the result — outbox rows for the texts (each under the WhatsApp id it
will be sent with), the ticket's fields, ratings, ticket_events, and the timers it starts or stops; a
fired timer is completed in that same transaction (storage.timers.complete), so its effect happens once.
`routed_message_id` on the ticket makes a redelivered or replayed message a no-op.

The returned `Outcome` is what the actor announces and sends after the commit, in order, so an automated
reply never overtakes the message it answers.
"""

from __future__ import annotations

import datetime as dt
import logging
import mimetypes
from collections.abc import Callable, Mapping
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs
import psycopg

from actors.automation import assign, hours, menu, rules
from actors.automation.render import render, variables
from gateway.whatsapp import transport as wa
from storage import routing, timers
from storage.db import Row

log = logging.getLogger("zapgate.routing")

DEFAULT_ZONE = "America/Sao_Paulo"
MEDIA_KINDS = {"image": "image", "video": "video", "audio": "audio"}


@attrs.frozen
class Outcome:
    ticket_id: int | None = None  # the ticket changed: re-read and announce it
    messages: tuple[Row, ...] = ()  # outbox rows written: announce, then send
    due: tuple[dt.datetime, ...] = ()  # timers started: the scheduler may need to wake earlier
    closed: bool = False

    @property
    def empty(self) -> bool:
        return self.ticket_id is None and not self.messages


NOTHING = Outcome()


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def zone_of(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo((name or "").strip() or DEFAULT_ZONE)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(DEFAULT_ZONE)


class Step:
    """One routing transaction's writes, gathered for the Outcome."""

    def __init__(self, conn: psycopg.Connection[Row], ticket: Row, now: dt.datetime) -> None:
        self.conn, self.ticket, self.now = conn, ticket, now
        self.messages: list[Row] = []
        self.due: list[dt.datetime] = []
        self.changed = False

    @property
    def company_id(self) -> int:
        return int(self.ticket["company_id"])

    def send(self, body: str, media: tuple[str, str] | None = None) -> None:
        stored = media_of(media)
        if not body and stored is None:
            return
        self.messages.append(routing.insert_send(self.conn, self.ticket, wid=wa.new_message_id(), body=body,
                                                 media=stored))

    def update(self, fields: Mapping[str, Any]) -> None:
        before = self.ticket
        fields = {name: value for name, value in fields.items() if before.get(name) != value}
        if not fields:
            return
        self.ticket = routing.update_ticket(self.conn, before, fields)
        if any(name in fields for name in ("queue_id", "user_id", "status", "chatbot", "queue_option_id")):
            self.changed = True
        if fields.get("status") == "closed":
            routing.record_event(self.conn, self.ticket, "closed")
        if fields.get("queue_id") is not None:  # the menu or a forward put it in a queue: its wait starts over
            routing.record_event(self.conn, self.ticket, "queued")
        if fields.get("user_id") is not None:  # the bot gave it to an agent (auto-assignment)
            routing.record_event(self.conn, self.ticket, "assigned")

    def arm(self, kind: str, due_at: dt.datetime, payload: Mapping[str, Any] | None = None) -> None:
        timers.schedule(self.conn, company_id=self.company_id, kind=kind, key=f"ticket:{self.ticket['id']}",
                        due_at=due_at, payload={"ticket_id": self.ticket["id"],
                                                "whatsapp_id": self.ticket["whatsapp_id"], **(payload or {})})
        self.due.append(due_at)

    def disarm(self, kind: str) -> None:
        timers.cancel(self.conn, company_id=self.company_id, kind=kind, key=f"ticket:{self.ticket['id']}")

    def outcome(self) -> Outcome:
        return Outcome(self.ticket["id"] if self.changed else None, tuple(self.messages), tuple(self.due),
                       closed=self.ticket["status"] == "closed")


def media_of(media: tuple[str, str] | None) -> tuple[str, str, str, str] | None:
    """(url, name) of an option's or a queue's file → what an outbox row holds."""
    if not media or not media[0]:
        return None
    url, name = media
    mimetype = mimetypes.guess_type(name or url)[0] or "application/octet-stream"
    kind = MEDIA_KINDS.get(mimetype.split("/", 1)[0], "document")
    return url, name or url.rsplit("/", 1)[-1], mimetype, kind


# ─── building the decision's context ────────────────────────────────────────────────────

def _hours_at(raw: Any, zone: str, now: dt.datetime) -> menu.Hours:
    try:
        schedule = hours.parse_schedule(raw, zone)
    except ValueError as error:  # stored before validation existed: treated as no hours, and said
        log.warning("business hours ignored: %s", error)
        return menu.ALWAYS_OPEN
    if schedule is None:
        return menu.ALWAYS_OPEN
    if hours.is_open(schedule, now):
        return menu.ALWAYS_OPEN
    return menu.Hours(False, hours.next_open(schedule, now))


def _queue_of(row: Row) -> menu.Queue:
    options = tuple(menu.Option(
        id=o["id"], parent_id=o["parent_id"], option=o["option"] or "", title=o["title"] or "",
        message=o["message"] or "", forward_queue_id=o["forward_queue_id"], exit_chatbot=bool(o["exit_chatbot"]),
        media=(o["media_path"], o["media_name"] or "") if o.get("media_path") else None) for o in row["options"])
    return menu.Queue(id=row["id"], name=row["name"], greeting=row["greeting_message"] or "",
                      out_of_hours=row["out_of_hours_message"] or "", options=options,
                      media=(row["media_path"], row["media_name"] or "") if row.get("media_path") else None)


def values_of(conn: psycopg.Connection[Row], ticket: Row, settings: Mapping[str, str], now: dt.datetime, *,
              queue: str | None = None, user: str | None = None) -> dict[str, str]:
    """The message variables (actors/automation/render.py) of a ticket, in the company's zone."""
    return variables(contact_name=ticket["contact_name"] or "", contact_email=ticket["contact_email"] or "",
                     contact_number=ticket["contact_number"] or "",
                     custom_fields=routing.custom_fields(conn, ticket["company_id"], ticket["contact_id"]),
                     ticket_id=ticket["id"], queue=ticket["queue_name"] or "" if queue is None else queue,
                     user=ticket["user_name"] or "" if user is None else user, now=now,
                     zone=zone_of(settings.get("timezone")))


def build_context(conn: psycopg.Connection[Row], ticket: Row, setup: routing.Setup,
                  now: dt.datetime) -> menu.Context:
    settings = setup.settings
    zone = settings.get("timezone") or DEFAULT_ZONE
    queues = {row["id"]: _queue_of(row) for row in setup.queues}
    on_connection = tuple(queues[row["id"]] for row in setup.queues if row["on_connection"])
    connection = setup.connection
    schedule_type = settings.get("scheduleType") or "disabled"
    company_hours = menu.ALWAYS_OPEN
    if schedule_type == "company":
        company_hours = _hours_at(setup.company_schedules, zone, now)
    elif schedule_type == "connection":
        company_hours = _hours_at(connection.get("schedules"), zone, now)
    queue_hours = {row["id"]: _hours_at(row["schedules"], zone, now) for row in setup.queues} \
        if schedule_type == "queue" else {}
    values = values_of(conn, ticket, settings, now)
    return menu.Context(
        ticket=menu.Ticket(id=ticket["id"], status=ticket["status"], queue_id=ticket["queue_id"],
                           user_id=ticket["user_id"], chatbot=bool(ticket["chatbot"]),
                           queue_option_id=ticket["queue_option_id"], bot_retries=ticket["bot_retries"],
                           fresh=ticket["routed_message_id"] is None, ooh_until=ticket["ooh_until"],
                           user_online=bool(ticket["user_online"])),
        connection=menu.Connection(id=connection["id"], greeting=connection["greeting_message"] or "",
                                   out_of_hours=connection["out_of_hours_message"] or "",
                                   transfer_message=connection["transfer_message"] or "",
                                   max_use_bot_queues=connection["max_use_bot_queues"], queues=on_connection),
        settings=menu.Settings(schedule_type=schedule_type,
                               out_of_hours_action=settings.get("outOfHoursAction") or "pending",
                               show_numeric_icons=settings.get("showNumericIcons") == "enabled",
                               chatbot_auto_exit=settings.get("chatbotAutoExit") == "enabled"),
        now=now, hours=company_hours, queue_hours=queue_hours, queues=queues, values=values)


# ─── executing ──────────────────────────────────────────────────────────────────────────

def _auto_assign(step: Step, setup: routing.Setup, queue_id: int, *, exclude: tuple[int, ...] = ()) -> None:
    queue = next((row for row in setup.queues if row["id"] == queue_id), None)
    if queue is None or queue["auto_assign"] == "off" or step.ticket["user_id"] is not None:
        return
    found = routing.candidates(step.conn, step.company_id, queue_id)
    chosen = assign.pick(queue["auto_assign"], [assign.Candidate(row["id"], bool(row["online"]), row["active"],
                                                                 row["max_tickets"]) for row in found],
                         last_user_id=queue["last_assigned_user_id"], exclude=exclude)
    if chosen is None:
        return
    routing.set_round_robin_cursor(step.conn, step.company_id, queue_id, chosen)
    step.update({"user_id": chosen, "assigned_by_bot_at": step.now})
    accepted = (setup.settings.get("ticketAcceptedMessage") or "").strip()
    if accepted:
        name = next((row["name"] for row in found if row["id"] == chosen), "")
        step.send(render(accepted, values_of(step.conn, step.ticket, setup.settings, step.now, queue=queue["name"],
                                             user=name)))
    minutes = rules.Rules.of(setup.settings, setup.connection).reoffer_minutes
    if minutes > 0:
        step.arm("ticket.reoffer", step.now + dt.timedelta(minutes=minutes),
                 {"user_id": chosen, "at": step.now.isoformat()})


def _apply(step: Step, setup: routing.Setup, actions: list[menu.Action]) -> None:
    for action in actions:
        if isinstance(action, menu.Send):
            step.send(action.body, action.media)
        elif isinstance(action, menu.Update):
            step.update(action.fields)
        elif isinstance(action, menu.AutoAssign):
            _auto_assign(step, setup, action.queue_id)


def _rearm(step: Step, setup: routing.Setup, *, contact_wrote: bool) -> None:
    for op in rules.waits(step.ticket, rules.Rules.of(setup.settings, setup.connection), step.now,
                          contact_wrote=contact_wrote):
        if isinstance(op, rules.Arm):
            step.arm(op.kind, op.due_at, op.payload)
        else:
            step.disarm(op.kind)


def route_work(company_id: int, ticket_id: int, message_id: int, body: str,
               clock: Callable[[], dt.datetime] = utc_now) -> Callable[[psycopg.Connection[Row]], Outcome]:
    """The transaction that routes one stored message of the contact's (run it with `db.run`)."""

    def work(conn: psycopg.Connection[Row]) -> Outcome:
        ticket = routing.lock_ticket(conn, company_id, ticket_id)
        if ticket is None or (ticket["routed_message_id"] or 0) >= message_id:
            return NOTHING  # gone, or decided on already (a redelivery, a replay after a crash)
        if ticket["status"] == "closed" and ticket["rating_at"] is None:
            return NOTHING  # a message a closed ticket already held (redelivered): nothing to decide, nor to write
        setup = routing.load_setup(conn, company_id, ticket["whatsapp_id"], rules.SETTING_KEYS)
        if setup is None:
            return NOTHING
        step = Step(conn, ticket, clock())
        if ticket["is_group"] or ticket["contact_disable_bot"]:
            step.update({"routed_message_id": message_id, **({"chatbot": False} if ticket["chatbot"] else {})})
            return step.outcome()
        if ticket["status"] == "closed":  # waiting for its rating (above): this is the answer
            _rating_answer(step, setup, body)
            step.update({"routed_message_id": message_id})
            return step.outcome()
        actions = menu.decide(build_context(conn, ticket, setup, step.now), body)
        _apply(step, setup, actions)
        step.update({"routed_message_id": message_id})
        _rearm(step, setup, contact_wrote=True)
        return step.outcome()

    return work


def _rating_answer(step: Step, setup: routing.Setup, body: str) -> None:
    answer = rules.rating_answer(body)
    step.disarm("ticket.rating")
    if isinstance(answer, int):
        routing.insert_rating(step.conn, step.ticket, answer)
        routing.record_event(step.conn, step.ticket, "rated")  # its rate is the rating's (migration 0021)
        step.update({"rating_at": None})
        step.changed = True
        connection = setup.connection
        done = (connection["complation_message"] or "").strip() or rules.RATING_DONE
        step.send(render(done, values_of(step.conn, step.ticket, setup.settings, step.now)))
    elif answer == "reopen":
        step.update({"rating_at": None, "status": "open", "chatbot": False})
        routing.record_event(step.conn, step.ticket, "reopened")
        step.send(rules.RATING_REOPENED)
    else:
        step.update({"rating_at": None})
        step.send(rules.RATING_CANCELLED)


def close_work(company_id: int, ticket_id: int, clock: Callable[[], dt.datetime] = utc_now
               ) -> Callable[[psycopg.Connection[Row]], Outcome]:
    """After an agent closed a ticket: the rating question (setting userRating), and its wait; every
    inactivity timer of the ticket stopped. Returns whether the rating was asked (`Outcome.messages`)."""

    def work(conn: psycopg.Connection[Row]) -> Outcome:
        ticket = routing.lock_ticket(conn, company_id, ticket_id)
        if ticket is None or ticket["status"] != "closed":
            return NOTHING
        setup = routing.load_setup(conn, company_id, ticket["whatsapp_id"], rules.SETTING_KEYS)
        if setup is None:
            return NOTHING
        step = Step(conn, ticket, clock())
        _rearm(step, setup, contact_wrote=False)  # closed: every wait stops
        step.disarm("ticket.reoffer")
        if rating_applies(ticket, setup):
            question = rules.rating_question(setup.connection["rating_message"] or "")
            step.send(render(question, values_of(conn, ticket, setup.settings, step.now)))
            step.update({"rating_at": step.now, "chatbot": False, "queue_option_id": None})
            minutes = rules.Rules.of(setup.settings, setup.connection).rating_minutes
            step.arm("ticket.rating", step.now + dt.timedelta(minutes=max(1, minutes)))
        return step.outcome()

    return work


def rating_applies(ticket: Row, setup: routing.Setup) -> bool:
    return (setup.settings.get("userRating") == "enabled" and ticket["user_id"] is not None
            and not ticket["is_group"] and not ticket["contact_disable_bot"]
            and setup.connection["status"] == "CONNECTED")


def timer_work(timer: timers.Timer, clock: Callable[[], dt.datetime] = utc_now
               ) -> Callable[[psycopg.Connection[Row]], Outcome]:
    """A ticket's timer fired: completed, and its effect applied, in this one transaction."""

    def work(conn: psycopg.Connection[Row]) -> Outcome:
        if not timers.complete(conn, timer):
            return NOTHING  # cancelled or rescheduled meanwhile
        ticket_id = int(timer.payload.get("ticket_id") or 0)
        ticket = routing.lock_ticket(conn, timer.company_id, ticket_id)
        if ticket is None:
            return NOTHING
        setup = routing.load_setup(conn, timer.company_id, ticket["whatsapp_id"], rules.SETTING_KEYS)
        if setup is None:
            return NOTHING
        step = Step(conn, ticket, clock())
        _fire(step, setup, timer)
        return step.outcome()

    return work


def _fire(step: Step, setup: routing.Setup, timer: timers.Timer) -> None:
    ticket, kind = step.ticket, timer.kind
    active = ticket["status"] in ("pending", "open")
    if not rules.still_on(kind, rules.Rules.of(setup.settings, setup.connection)):
        return  # its rule was turned off after it was armed
    if kind == "ticket.rating":
        if ticket["status"] == "closed" and ticket["rating_at"] is not None:
            step.update({"rating_at": None})
    elif kind == "ticket.chatbot":
        if active and ticket["chatbot"]:
            _timeout_action(step, setup, setup.settings.get("chatbotTicketTimeoutAction") or "0")
    elif kind == "ticket.noqueue":
        if ticket["status"] == "pending" and ticket["queue_id"] is None and ticket["user_id"] is None:
            _timeout_action(step, setup, setup.settings.get("noQueueTimeoutAction") or "0")
    elif kind == "ticket.open":
        if ticket["status"] == "open":
            if (setup.settings.get("openTicketTimeoutAction") or "pending") == "closed":
                step.update({"status": "closed", "chatbot": False, "queue_option_id": None})
            else:
                step.update({"status": "pending", "user_id": None})
    elif kind == "ticket.expire":
        if active:
            text = (setup.connection["expires_inactive_message"] or "").strip()
            if text:
                step.send(render(text, values_of(step.conn, ticket, setup.settings, step.now)))
            step.update({"status": "closed", "chatbot": False, "queue_option_id": None})
    elif kind == "ticket.reoffer":
        payload = timer.payload
        if ticket["status"] == "pending" and ticket["user_id"] == payload.get("user_id") \
                and ticket["queue_id"] is not None:
            current = ticket["user_id"]
            step.update({"user_id": None, "assigned_by_bot_at": None})
            _auto_assign(step, setup, ticket["queue_id"], exclude=(current,))
    else:
        log.warning("timer of an unknown kind ignored", extra={"fields": {"kind": kind}})
    if step.ticket["status"] == "closed":
        _rearm(step, setup, contact_wrote=False)


def _timeout_action(step: Step, setup: routing.Setup, action: str) -> None:
    """A timeout's action setting: "0" (or nothing) closes; a queue id of the company moves the ticket there."""
    target = int(action) if action.strip().isdigit() and int(action) > 0 else None
    if target is not None and any(row["id"] == target for row in setup.queues):
        step.update({"queue_id": target, "chatbot": False, "queue_option_id": None, "bot_retries": 0,
                     "status": "pending"})
        _auto_assign(step, setup, target)
    else:
        step.update({"status": "closed", "chatbot": False, "queue_option_id": None})
