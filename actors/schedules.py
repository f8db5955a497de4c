"""Scheduled messages, sent: the handler of the `schedule` timers (DESIGN §7b; storage/schedules.py).

A due schedule is handed to its conversation's ticket actor (`TicketRouter.run_step`), so its message is
ordered with the chat's other messages. There ONE transaction (`send_work`) completes the timer
(`timers.complete`: a timer delivered twice — a lease that ran out, a restart — commits once), finds or opens
the ticket, writes the outbox row (sent_by 'schedule', the body rendered with the message variables, its
file), marks the schedule ENVIADA with its send counted and, for a recurring one, sets the timer of its next
occurrence (actors/automation/recurrence.py). After the commit the actor announces and flushes the outbox
row as it does routing's; the schedule is announced ENVIADA, then — when another occurrence is armed —
AGENDADA again.

ENVIADA means the message is in the conversation's outbox, committed with the schedule's change: it goes to
WhatsApp at once when the connection is up, or as soon as it reconnects (the message in the ticket shows its
ack). That keeps "sent once" a single transaction with no hook in the send path; a refusal by WhatsApp shows
on the message (failed), not on the schedule.

What cannot be sent is ERRO with the reason, in the same transaction that completes the timer: a contact with
no number, no connection at all, a file gone from disk. A PUT that reschedules it retries it.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping
from typing import Any
from zoneinfo import ZoneInfo

import attrs
import psycopg

from actors import routing
from actors.automation import hours as business_hours
from actors.automation import recurrence
from actors.automation.render import render
from actors.ticket import RunStep, TicketRouter, chat_of_contact
from gateway.broker import Broker
from gateway.whatsapp import transport as wa
from storage import routing as routing_rows
from storage import schedules, timers
from storage.db import Database, Row
from storage.errors import NotFound
from storage.media import MediaStore

log = logging.getLogger("zapgate.schedules")


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@attrs.frozen
class Sent:
    """What one send's transaction did (None fields: nothing to announce)."""

    outcome: routing.Outcome = routing.NOTHING
    schedule: Row | None = None  # the schedule after it (ENVIADA, or ERRO)
    next_at: dt.datetime | None = None  # the next occurrence armed


def rule_of(row: Mapping[str, Any]) -> recurrence.Rule:
    return recurrence.Rule(anchor=row["anchor_at"], kind=row["recurrence"], every=row["recurrence_every"],
                           cron=row["cron"], count=row["recurrence_count"], until=row["recurrence_until"],
                           skip_to_business_day=row["skip_to_business_day"])


def hours_of(raw: Any, zone: str) -> business_hours.Schedule | None:
    try:
        return business_hours.parse_schedule(raw, zone)
    except ValueError as error:  # stored before validation existed: Monday to Friday, and said
        log.warning("business hours ignored for a schedule: %s", error)
        return None


def following(row: Mapping[str, Any], now: dt.datetime, zone: ZoneInfo,
              hours: business_hours.Schedule | None) -> recurrence.Occurrence | None:
    """The occurrence after the one a schedule row stands for, once that one is sent `now` (it counts in
    `sent_count` + 1); None when the series is over. Pure: the decision of every send."""
    return recurrence.next_send(rule_of(row), recurrence.Occurrence(row["send_at"], row["nominal_at"]), zone, hours,
                                sent=row["sent_count"] + 1, now=now)


def next_occurrence(conn: psycopg.Connection[Row], row: Row, now: dt.datetime) -> recurrence.Occurrence | None:
    """`following`, with the company's zone and business hours read in the send's transaction."""
    if row["recurrence"] == "none":
        return None
    zone_name, raw_hours = schedules.calendar_in(conn, row["company_id"])
    zone = routing.zone_of(zone_name)
    return following(row, now, zone, hours_of(raw_hours, zone.key))


def _media(row: Row, media: MediaStore) -> tuple[str, str, str, str] | str | None:
    """The schedule's file as an outbox row holds it; a text (the reason) when it is gone from disk."""
    url = row["media_path"]
    if not url:
        return None
    parts = url.removeprefix(media.prefix + "/").split("/")
    if len(parts) != 2 or media.find(*parts) is None:
        return f"the file {row['media_name'] or url} is missing"
    return routing.media_of((url, row["media_name"] or ""))


def fail_work(timer: timers.Timer, reason: str) -> Callable[[psycopg.Connection[Row]], Sent]:
    """A schedule that cannot be sent: its timer completed and the schedule ERRO, in one transaction."""

    def work(conn: psycopg.Connection[Row]) -> Sent:
        if not timers.complete(conn, timer):
            return Sent()
        row = schedules.mark_failed(conn, timer.company_id, int(timer.payload.get("schedule_id") or 0), reason)
        return Sent(schedule=row)

    return work


def send_work(timer: timers.Timer, whatsapp_id: int, media: MediaStore,
              clock: Callable[[], dt.datetime] = utc_now) -> Callable[[psycopg.Connection[Row]], Sent]:
    """The transaction of one send, run by the conversation's actor (see the module's docstring)."""

    def work(conn: psycopg.Connection[Row]) -> Sent:
        if not timers.complete(conn, timer):
            return Sent()  # cancelled, rescheduled or sent already
        company_id, schedule_id = timer.company_id, int(timer.payload.get("schedule_id") or 0)
        row = schedules.lock(conn, company_id, schedule_id)
        if row is None:
            return Sent()
        now = clock()
        if row["whatsapp_id"] not in (None, whatsapp_id):  # changed since it was handed here: fire again
            schedules.arm(conn, row, now, row["nominal_at"])
            return Sent(routing.Outcome(due=(now,)))
        contact = schedules.contact(conn, company_id, row["contact_id"])
        if contact is None or not (contact["number"] or contact["lid"]):
            return Sent(schedule=schedules.mark_failed(conn, company_id, schedule_id, "the contact has no number"))
        if schedules.connection(conn, company_id, whatsapp_id) is None:
            return Sent(schedule=schedules.mark_failed(conn, company_id, schedule_id, "the connection is gone"))
        stored = _media(row, media)
        if isinstance(stored, str):
            return Sent(schedule=schedules.mark_failed(conn, company_id, schedule_id, stored))
        ticket_id = schedules.ticket_for(conn, row, contact, whatsapp_id)
        ticket = routing_rows.lock_ticket(conn, company_id, ticket_id)
        assert ticket is not None
        settings = routing_rows.read_settings(conn, company_id, ("timezone",))
        values = routing.values_of(conn, ticket, settings, now, user=schedules.user_name(conn, company_id,
                                                                                        row["user_id"]))
        message = routing_rows.insert_send(conn, ticket, wid=wa.new_message_id(), body=render(row["body"], values),
                                           media=stored, sent_by="schedule", user_id=row["user_id"])
        upcoming = next_occurrence(conn, row, now)
        if upcoming is not None:
            timers.schedule(conn, company_id=company_id, kind=schedules.KIND, key=schedules.key(schedule_id),
                            due_at=upcoming.at, payload={"schedule_id": schedule_id})
        sent = schedules.mark_sent(conn, row, ticket_id=ticket_id, whatsapp_id=whatsapp_id, sent_at=now,
                                   send_at=upcoming.at if upcoming else row["send_at"],
                                   nominal_at=upcoming.nominal if upcoming else row["nominal_at"])
        due = (upcoming.at,) if upcoming else ()
        return Sent(routing.Outcome(ticket_id, (message,), due), sent, upcoming.at if upcoming else None)

    return work


@attrs.define
class ScheduledMessages:
    """The `schedule` timers' handler (registered through `TicketRouter.timer_kinds` by the composition root)."""

    db: Database
    tickets: TicketRouter
    broker: Broker
    media: MediaStore
    present: Callable[[Row], dict[str, Any]]  # a schedule row (schedule_show) as the API shows it
    clock: Callable[[], dt.datetime] = utc_now
    sent: int = 0  # sends committed (figures for /health)
    failed: int = 0

    async def timers_due(self, due: list[timers.Timer]) -> None:
        """Each due schedule to its conversation's actor; one that cannot reach a conversation (no connection,
        a contact without number) fails here, its timer completed in the same transaction."""
        for timer in due:
            target = await self.db.run(lambda conn, timer=timer: self._target(conn, timer))
            if isinstance(target, str):
                await self._finish(await self.db.run(fail_work(timer, target)))
                continue
            if target is None:  # the schedule is gone (its timer too, unless a contact's deletion took it)
                await self.db.run(lambda conn, timer=timer: timers.complete(conn, timer))
                continue
            whatsapp_id, chat = target
            step = RunStep(send_work(timer, whatsapp_id, self.media, self.clock), self._finish)
            await self.tickets.run_step(timer.company_id, whatsapp_id, chat, step)

    def _target(self, conn: psycopg.Connection[Row], timer: timers.Timer) -> tuple[int, str] | str | None:
        """(connection, chat) the schedule is sent through; a reason when there is none; None: it is gone."""
        row = schedules.lock(conn, timer.company_id, int(timer.payload.get("schedule_id") or 0))
        if row is None:
            return None
        contact = schedules.contact(conn, timer.company_id, row["contact_id"])
        if contact is None or not (contact["number"] or contact["lid"]):
            return "the contact has no number"
        whatsapp_id = row["whatsapp_id"] or schedules.default_whatsapp(conn, timer.company_id, row["contact_id"])
        if whatsapp_id is None:
            return "the company has no connection to send from"
        return whatsapp_id, chat_of_contact(contact)

    async def _finish(self, result: Sent) -> None:
        """After a send's commit (its message announced and flushed by the actor): announce the schedule, and
        for a recurring one with a next occurrence armed, AGENDADA again."""
        row = result.schedule
        if row is None:
            return
        company_id = row["company_id"]
        if row["status"] == "ERRO":
            self.failed += 1
            log.info("scheduled message not sent", extra={"fields": {"schedule_id": row["id"],
                                                                      "reason": row["last_error"]}})
        else:
            self.sent += 1
        await self.announce(company_id, row["id"])
        if result.next_at is not None and await schedules.rearmed(self.db, company_id, row["id"], result.next_at):
            await self.announce(company_id, row["id"])

    async def announce(self, company_id: int, schedule_id: int) -> None:
        try:
            shown = await schedules.show_schedule(self.db, company_id, schedule_id)
        except NotFound:
            return
        self.broker.publish(company_id, f"company-{company_id}-schedule", {"action": "update",
                                                                          "schedule": self.present(shown)})

    def stats(self) -> dict[str, int]:
        return {"sent": self.sent, "failed": self.failed}
