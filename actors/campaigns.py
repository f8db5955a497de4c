"""Campaigns, run: one CampaignActor per running campaign under the CampaignSupervisor (issue 14).

State is in rows (DESIGN §7b; storage/campaign_runs.py): a campaign's progress is its `campaign_shippings`, so an
actor that starts — after a crash, a kill -9, a resume — continues where the rows say. The API writes the
campaign's status and pause and calls `nudge(company_id, campaign_id)` after its commit.

- Start: a PROGRAMADA campaign has a durable timer `campaign.start` (key `campaign:<id>`) at its
  `scheduled_at`; its firing (or an EM_ANDAMENTO campaign with no shippings yet) runs ONE transaction that
  completes the timer, sets EM_ANDAMENTO/`started_at` and writes one shipping per audience number
  (`storage.campaign_runs.begin`).
- Each send: ONE transaction (`_claim_work`) checks the campaign is EM_ANDAMENTO and not paused (holding its
  row FOR SHARE: a cancel committed before means no claim), claims the next queued shipping(s)
  (queued → sending), finds or creates the contact and its ticket, writes the outbox row (sent_by
  'campaign', the body rendered for the contact, the file) under the WhatsApp id derived from (campaign,
  number), and counts the connection's day — a few statements for a batch of 50, not a few per contact.
  After the commit this actor announces the batch and hands it to WhatsApp itself (`_send_batch`: the rows
  marked in flight and checked still pending, as a cancel requires), then records WhatsApp's answers in one
  statement. The conversations' actors are not asked (their flush would cost several statements per send);
  a row left pending by a lost connection goes with the conversation's flush at the reconnect, under its id.
- The shipping is `sent` once WhatsApp took the outbox row (its status 'sent'), `failed` with the reason
  when the send failed: `settle` copies the message rows' answer onto the shippings, between claims.
  Delivered/read are not copied: the report reads them from the messages (ack ≥ 3 / ≥ 4) by `message_id`.
- Pacing (actors/automation/pacing.py): short waits are trio sleeps here; long ones (outside business
  hours, the day's cap reached) are a durable timer `campaign.resume`, and the actor ends.
- Pause: `paused_at` set (by a user, a disconnect, the breaker) → no claim; the actor ends (a disconnect's
  actor stays and resumes the campaign itself when the session is CONNECTED again). Cancel: CANCELADA → no
  claim. FINALIZADA once no shipping is queued or sending.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import psycopg
import trio

from actors import routing
from actors.automation import hours as business_hours
from actors.automation import pacing
from actors.automation.render import render, variables
from actors.session import SessionEnded, SessionManager
from actors.ticket import TicketRouter, chat_of_contact
from gateway.broker import Broker
from gateway.supervisor import ChildSpec, RestartPolicy, Supervisor, SupervisorHandle
from gateway.whatsapp import transport as wa
from storage import campaign_runs as rows
from storage import routing as routing_rows
from storage import timers
from storage.db import Database, Row
from storage.errors import DB_AWAY

log = logging.getLogger("zapgate.campaigns")

BATCH = 50  # shippings claimed per transaction with pacing off
WINDOW = 200  # claimed sends not yet answered by WhatsApp, at most (pacing off)
SETTINGS_TTL = 5.0  # seconds the campaign settings are kept
PROGRESS_EVERY = 1.0  # seconds between two progress events
CONNECTION_POLL = 0.5  # seconds between two looks at a down connection's session
SETTLE_POLL = 0.05  # seconds between two settles while waiting for WhatsApp's answers
ACTOR_BUDGET = (5, 60.0)
RETRY_INITIAL, RETRY_MAX = 0.2, 5.0


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def default_present(row: Row) -> dict[str, Any]:
    """A minimal campaign as the API shows it (until bootstrap injects api.campaigns.present_campaign)."""
    def iso(value: Any) -> Any:
        return value.isoformat() if isinstance(value, dt.datetime) else value
    return {"id": row["id"], "name": row["name"], "status": row["status"], "whatsappId": row["whatsapp_id"],
            "contactListId": row["contact_list_id"], "tagId": row["tag_id"],
            "scheduledAt": iso(row["scheduled_at"]), "startedAt": iso(row.get("started_at")),
            "completedAt": iso(row["completed_at"]), "pausedAt": iso(row.get("paused_at")),
            "pauseReason": row.get("pause_reason"), "companyId": row["company_id"]}


def family_tokens(text: str, values: dict[str, str]) -> str:
    """The family's single-brace campaign tokens (ticketz's campaign queue): `{nome}`, `{email}`, `{numero}`
    and each campaign variable's `{key}`; after `render` has filled the `{{...}}` ones."""
    if "{" not in text:
        return text
    for name, value in values.items():
        text = text.replace("{" + name + "}", value)
    return text


@attrs.frozen
class Batch:
    """What one claim transaction did."""

    campaign: Row | None
    sends: tuple[tuple[int, str, Row], ...] = ()  # (ticket id, chat, outbox row)
    skipped: int = 0


class CampaignActor:
    """Runs one campaign until it is done, paused, cancelled or waiting for a durable timer."""

    def __init__(self, supervisor: CampaignSupervisor, company_id: int, campaign_id: int) -> None:
        self.sup = supervisor
        self.company_id = company_id
        self.campaign_id = campaign_id
        self.wake = trio.Event()
        self.failures_in_row = 0
        self.in_flight = 0
        self._settings: tuple[float, pacing.Settings] | None = None
        self._pacer: pacing.Pacer | None = None
        self._progress_at = -1e9
        self.recheck = False  # set by a nudge: a batch being sent checks its rows again before the next send
        self.stranded = False  # sends left pending by a transport fault: sent again after a pause
        self._stranded_delay = RETRY_INITIAL
        self._media: tuple[str, bytes] | None = None

    # ── the run ──

    async def run(self, *, task_status: trio.TaskStatus[CampaignActor] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started(self)
        await self._run()

    async def _run(self) -> None:
        sup = self.sup
        campaign, changed = await self._db(lambda conn: rows.begin(conn, self.company_id, self.campaign_id,
                                                                   sup.clock()))
        if campaign is None:
            return
        if changed:
            self._announce(campaign)
        if campaign["status"] != "EM_ANDAMENTO":
            return
        await self._resend_in_flight()
        # the next batch (with pacing: the next send, at its moment) is claimed while the last one is sent
        batches, to_send = trio.open_memory_channel[tuple[int, tuple[tuple[int, str, Row], ...]]](0)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._sender, to_send)
            async with batches:
                await self._claim_loop(batches)

    async def _sender(self, batches: trio.MemoryReceiveChannel[tuple[int, tuple[tuple[int, str, Row], ...]]]
                      ) -> None:
        async with batches:
            async for whatsapp_id, sends in batches:
                await self._send_batch(whatsapp_id, sends)
                self._announce_progress()

    async def _claim_loop(self, batches: trio.MemorySendChannel[tuple[int, tuple[tuple[int, str, Row], ...]]]
                          ) -> None:
        sup = self.sup
        while True:
            settings = await self._settings_now()
            await self._settle(settings)
            campaign = await self._db(lambda conn: rows.read(conn, self.company_id, self.campaign_id))
            if campaign is None or campaign["status"] != "EM_ANDAMENTO":
                self._announce_progress(force=True)
                return
            if campaign["paused_at"] is not None:
                if campaign["pause_reason"] == rows.CONNECTION_DOWN:
                    if not await self._wait_for_connection(campaign):
                        return
                    continue
                return  # a user's pause, the breaker: resumed by the API's nudge
            whatsapp_id = campaign["whatsapp_id"]
            session = sup.sessions.lookup(whatsapp_id) if whatsapp_id is not None else None
            if whatsapp_id is None:
                await self._pause("the campaign has no connection")
                return
            if session is None or session.status != "CONNECTED":
                await self._pause(rows.CONNECTION_DOWN)
                continue
            if self.stranded:  # WhatsApp refused some sends for a fault of its own: again, after a pause
                self.stranded = False
                await self._sleep(self._stranded_delay)
                self._stranded_delay = min(RETRY_MAX, self._stranded_delay * 2)
                again_on, again = await self._unsent()
                if again_on is not None and again:
                    await batches.send((again_on, tuple(again)))
                continue
            if settings.pacing:
                if not await self._gate(settings, whatsapp_id):
                    return  # a durable timer resumes it
                assert self._pacer is not None
                await self._pacer.wait_turn()
            elif self.in_flight >= WINDOW:
                await self._sleep(SETTLE_POLL)
                continue
            batch = await self._db(self._claim_work(settings, 1 if settings.pacing else BATCH))
            if batch.campaign is None or batch.campaign["status"] != "EM_ANDAMENTO" \
                    or batch.campaign["paused_at"] is not None:
                continue  # seen at the top of the loop
            if not batch.sends and not batch.skipped:
                if await self._finish_when_answered(settings, whatsapp_id):
                    return
                continue
            sup.claimed += len(batch.sends)
            self.in_flight += len(batch.sends)
            await batches.send((whatsapp_id, batch.sends))  # when the sender is free: one batch waits, at most

    async def _resend_in_flight(self) -> None:
        """Sends claimed by an earlier run and not answered yet: sent again (their outbox rows are pending under
        the same ids: WhatsApp keeps one)."""
        found = await self._db(lambda conn: (rows.release_unwritten(conn, self.company_id, self.campaign_id),
                                             rows.sending(conn, self.company_id, self.campaign_id))[1])
        self.in_flight = len(found)
        whatsapp_id, sends = await self._unsent(found)
        if whatsapp_id is not None:
            await self._send_batch(whatsapp_id, sends)

    async def _unsent(self, found: list[Row] | None = None) -> tuple[int | None, list[tuple[int, str, Row]]]:
        """The claimed sends whose outbox rows are still pending and not being sent now (WhatsApp refused them
        for a transport fault, or an earlier run ended before their answer), ready to send again."""
        if found is None:
            found = await self._db(lambda conn: rows.sending(conn, self.company_id, self.campaign_id))
        in_flight = self.sup.tickets.in_flight
        ids = [row["message_id"] for row in found if row["message_status"] == "pending"
               and row["message_id"] not in in_flight]
        campaign = await self._db(lambda conn: rows.read(conn, self.company_id, self.campaign_id))
        if not ids or campaign is None or campaign["whatsapp_id"] is None:
            return None, []
        messages = await self._db(lambda conn: conn.execute(
            "SELECT * FROM messages WHERE id = ANY(%(ids)s::bigint[]) AND company_id = %(c)s ORDER BY id",
            {"ids": ids, "c": self.company_id}).fetchall())
        numbers = {row["message_id"]: row["number"] for row in found}
        return campaign["whatsapp_id"], [
            (message["ticket_id"], chat_of_contact({"is_group": False, "number": numbers[message["id"]], "lid": None}),
             message) for message in messages]

    def _claim_work(self, settings: pacing.Settings, limit: int) -> Callable[[psycopg.Connection[Row]], Batch]:
        """The claim's transaction: a few statements for the whole batch (contacts, tickets, custom fields,
        outbox rows, shippings), the bodies rendered per contact in between."""
        clock = self.sup.clock

        def work(conn: psycopg.Connection[Row]) -> Batch:
            campaign, claimed = rows.claim(conn, self.company_id, self.campaign_id, limit)
            if not claimed or campaign is None:
                return Batch(campaign)
            now = clock()
            whatsapp_id = campaign["whatsapp_id"]
            zone_name = routing_rows.read_settings(conn, self.company_id, ("timezone",)).get("timezone")
            zone = routing.zone_of(zone_name)
            media = routing.media_of((campaign["media_path"], campaign["media_name"] or "")) \
                if campaign["media_path"] else None
            extra = settings.extra_values
            contacts = rows.contacts_for(conn, self.company_id,
                                         [(shipping["number"], shipping["name"]) for shipping in claimed])
            opted_out = [shipping["id"] for shipping in claimed
                         if contacts[shipping["number"]]["opted_out_at"] is not None]
            rows.skip_many(conn, self.company_id, opted_out, "opted out")
            going = [shipping for shipping in claimed if contacts[shipping["number"]]["opted_out_at"] is None]
            tickets = rows.tickets_for(conn, self.company_id, whatsapp_id,
                                       [contacts[shipping["number"]]["id"] for shipping in going])
            templates = {shipping["variant"]: campaign[f"message{shipping['variant']}"] or "" for shipping in going}
            fields = rows.custom_fields_of(conn, self.company_id, [contacts[s["number"]]["id"] for s in going]) \
                if any("{{" in template for template in templates.values()) else {}
            fresh: list[tuple[Row, Row, int, str, str]] = []  # (shipping, contact, ticket id, wid, body)
            retried: dict[int, Row] = {}
            for shipping in going:
                contact = contacts[shipping["number"]]
                ticket_id = tickets[contact["id"]]
                template = templates[shipping["variant"]]
                body = template
                if "{" in template:
                    values = {**extra, **variables(
                        contact_name=contact["name"] or shipping["name"], contact_email=contact["email"] or "",
                        contact_number=contact["number"], custom_fields=fields.get(contact["id"], {}),
                        ticket_id=ticket_id, now=now, zone=zone)}
                    body = family_tokens(render(template, values), {
                        "nome": contact["name"] or shipping["name"], "email": contact["email"] or "",
                        "numero": contact["number"], **extra})
                # a restarted failed send goes out again as the same message (WhatsApp replaces a failed
                # send by its retry under the id); else a new outbox row under the derived id
                message = rows.retry_message(conn, self.company_id, shipping["message_id"], body) \
                    if shipping["message_id"] is not None else None
                if message is not None:
                    retried[shipping["id"]] = message
                wid = rows.wid_of(self.campaign_id, shipping["number"], shipping["attempts"])
                fresh.append((shipping, contact, ticket_id, wid, body))
            inserted = iter(rows.insert_sends(conn, self.company_id, whatsapp_id, [
                (ticket_id, contact["id"], wid, body) for shipping, contact, ticket_id, wid, body in fresh
                if shipping["id"] not in retried], media))
            sends: list[tuple[int, str, Row]] = []
            marks: list[tuple[int, str, int, int, str]] = []
            for shipping, contact, _, _, body in fresh:
                message = retried.get(shipping["id"]) or next(inserted)
                marks.append((shipping["id"], message["wid"], message["id"], contact["id"], body))
                sends.append((message["ticket_id"], chat_of_contact(contact), message))
            rows.mark_sending_many(conn, self.company_id, marks)
            rows.count_send(conn, self.company_id, whatsapp_id, now.astimezone(zone).date(), len(sends))
            return Batch(campaign, tuple(sends), len(opted_out))

        return work

    async def _send_batch(self, whatsapp_id: int, sends: Sequence[tuple[int, str, Row]]) -> None:
        """Announce a committed batch and hand it to WhatsApp, then record the answers — a statement per batch
        for each step, not per send. This actor sends its own outbox rows (the conversations' actors send theirs;
        a campaign row left pending by a lost connection goes with the conversation's flush at the reconnect,
        under the same id: WhatsApp keeps one). Each row is marked in flight, then checked still pending: a cancel
        that committed before the check failed it (not sent); one that commits after waits for the flight to end
        before it answers (TicketRouter.settled), and nudges this actor, which then checks the rest again before
        each send. So no campaign send leaves after its cancel was answered."""
        if not sends:
            return
        router = self.sup.tickets
        flights: dict[int, trio.Event] = {}
        for _, _, message in sends:
            if message["id"] not in router.in_flight:  # else a conversation's flush has it now
                flights[message["id"]] = router.in_flight[message["id"]] = trio.Event()
        try:
            ids = list(flights)
            self.recheck = False
            messages, tickets, pending = await self._db(lambda conn: (
                *rows.shown(conn, self.company_id, ids, list({send[0] for send in sends})),
                rows.still_pending(conn, self.company_id, ids)))
            self._announce_created(messages, tickets)
            session = self.sup.sessions.lookup(whatsapp_id)
            sent: list[tuple[int, str, dt.datetime]] = []
            failed: list[tuple[int, str]] = []
            for _, chat, message in sends:
                message_id = message["id"]
                if message_id not in flights:
                    continue
                try:
                    if self.recheck:  # nudged (a cancel, a pause): what is still to send
                        self.recheck = False
                        left = [one for one in ids if one in flights]
                        pending = await self._db(lambda conn, left=left: rows.still_pending(conn, self.company_id,
                                                                                          left))
                    if message_id not in pending or session is None:
                        continue
                    try:
                        answer = await session.send(await self._command_for(chat, message))
                    except wa.SendFailed as failure:
                        failed.append((message_id, failure.reason))
                    except (wa.NotConnected, wa.TransportError, SessionEnded) as error:
                        # the rest stays pending: sent again by this actor after a pause (`_unsent`), or with
                        # the conversation's flush when the connection is back
                        session = None
                        self.stranded = True
                        log.warning("campaign sends wait: WhatsApp did not take them", extra={"fields": {
                            "campaign_id": self.campaign_id, "reason": str(error)[:200]}})
                    else:
                        sent.append((message_id, answer.id, answer.timestamp))
                finally:
                    flights.pop(message_id).set()
                    router.in_flight.pop(message_id, None)
            if sent:
                router.sent[self.company_id, whatsapp_id] += len(sent)  # messages out (metrics)
                if not self.stranded:
                    self._stranded_delay = RETRY_INITIAL
            # WhatsApp has them: recorded however long the database takes (until then the rows stay pending,
            # and a resend after a restart goes out under the same ids: WhatsApp keeps one)
            changed = await self._db(lambda conn: rows.record_answers(conn, self.company_id, sent, failed))
            for row in changed:
                before = messages.get(row["id"])
                ticket = tickets.get(row["ticket_id"])
                router.publish_message("update", self.company_id, {**before, **row} if before else row, ticket)
        finally:
            for message_id, flight in flights.items():
                flight.set()
                router.in_flight.pop(message_id, None)

    def _announce_created(self, messages: dict[int, Row], tickets: dict[int, Row]) -> None:
        router = self.sup.tickets
        shown_tickets: dict[int, dict[str, Any]] = {}
        for ticket_id, ticket in tickets.items():
            shown_tickets[ticket_id] = router.presenters.ticket(ticket)
            router.publish(self.company_id, "ticket", {"action": "update", "ticket": shown_tickets[ticket_id]})
        for message in messages.values():
            ticket = tickets.get(message["ticket_id"])
            router.publish_message("create", self.company_id, message, ticket,
                                   shown_tickets.get(message["ticket_id"]))

    async def _command_for(self, chat: str, row: Row) -> wa.Command:
        """A campaign row as WhatsApp gets it: its text, or its file with the text as the caption (the file read
        once per run)."""
        if row["media_url"]:
            token, name = row["media_url"].split("/")[2:4]
            found = self.sup.tickets.media.find(token, name)
            if found is not None:
                if self._media is None or self._media[0] != row["media_url"]:
                    self._media = (row["media_url"], await trio.to_thread.run_sync(found.path.read_bytes))
                return wa.SendMedia(chat, wa.MessageKind(row["media_type"]), self._media[1],
                                    row["media_mimetype"] or found.mimetype, found.filename, row["body"], None,
                                    id=row["wid"])
        return wa.SendText(chat, row["body"], None, id=row["wid"])

    # ── answers, the breaker, the end ──

    async def _settle(self, settings: pacing.Settings) -> None:
        settled = await self._db(lambda conn: rows.settle(conn, self.company_id, self.campaign_id))
        if not settled:
            return
        self.in_flight = max(0, self.in_flight - len(settled))
        last_error = ""
        for row in settled:
            if row["state"] == "sent":
                self.sup.sent += 1
                self.failures_in_row = 0
            else:
                self.sup.failed += 1
                self.failures_in_row += 1
                last_error = row["error"] or ""
        if self.failures_in_row >= settings.breaker_failures:
            self.sup.breaker_trips += 1
            reason = f"circuit breaker: {self.failures_in_row} sends failed in a row ({last_error})"[:500]
            self.failures_in_row = 0
            if await self._pause(reason):
                self.sup.broker.publish(self.company_id, f"company-{self.company_id}-campaign", {
                    "action": "breaker", "campaignId": self.campaign_id, "reason": reason, "to": "admin"})
                log.warning("campaign paused by its circuit breaker", extra={"fields": {
                    "company_id": self.company_id, "campaign_id": self.campaign_id, "reason": reason}})

    async def _finish_when_answered(self, settings: pacing.Settings, whatsapp_id: int) -> bool:
        """No shipping queued: wait for the sends in flight to be answered, then FINALIZADA. False: go on
        (something was queued again, or the campaign changed)."""
        while True:
            finished = await self._db(lambda conn: rows.finish(conn, self.company_id, self.campaign_id,
                                                               self.sup.clock()))
            if finished is not None:
                self._announce(finished)
                self._announce_progress(force=True)
                return True
            await self._sleep(SETTLE_POLL)
            await self._settle(settings)
            if self.stranded:
                return False  # the loop sends them again
            state = await self._db(lambda conn: conn.execute(
                "SELECT c.status, c.paused_at, EXISTS (SELECT 1 FROM campaign_shippings s WHERE s.campaign_id = c.id "
                "AND s.state = 'queued') AS queued FROM campaigns c WHERE c.id = %(id)s AND c.company_id = %(c)s",
                {"id": self.campaign_id, "c": self.company_id}).fetchone())
            if state is None or state["status"] != "EM_ANDAMENTO" or state["paused_at"] is not None or state["queued"]:
                return False
            session = self.sup.sessions.lookup(whatsapp_id)
            if session is None or session.status != "CONNECTED":
                return False
            self._announce_progress()

    # ── pauses ──

    async def _pause(self, reason: str) -> bool:
        row = await self._db(lambda conn: rows.pause(conn, self.company_id, self.campaign_id, reason,
                                                     self.sup.clock()))
        if row is not None:
            self.sup.pauses += 1
            self._announce(row)
            log.info("campaign paused", extra={"fields": {"company_id": self.company_id,
                                                          "campaign_id": self.campaign_id, "reason": reason}})
        return row is not None

    async def _wait_for_connection(self, campaign: Row) -> bool:
        """Paused because the connection is down: resume it when the session is CONNECTED again. False when it
        ended otherwise (cancelled, resumed or paused again by someone else: the loop sees it)."""
        whatsapp_id = campaign["whatsapp_id"]
        while True:
            session = self.sup.sessions.lookup(whatsapp_id) if whatsapp_id is not None else None
            if session is not None and session.status == "CONNECTED":
                row = await self._db(lambda conn: rows.resume(conn, self.company_id, self.campaign_id,
                                                              rows.CONNECTION_DOWN))
                if row is not None:
                    self.sup.resumes += 1
                    self._announce(row)
                return True
            await self._sleep(CONNECTION_POLL)
            current = await self._db(lambda conn: rows.read(conn, self.company_id, self.campaign_id))
            if current is None or current["status"] != "EM_ANDAMENTO" or current["paused_at"] is None \
                    or current["pause_reason"] != rows.CONNECTION_DOWN:
                return True

    async def _gate(self, settings: pacing.Settings, whatsapp_id: int) -> bool:
        """Long waits: outside business hours, the day's cap. False: a `campaign.resume` timer was armed."""
        now = self.sup.clock()

        def read(conn: psycopg.Connection[Row]) -> tuple[str | None, Any, int, int]:
            zone_name, raw_hours = rows.zone_and_hours(conn, self.company_id)
            zone = routing.zone_of(zone_name)
            sent_today, day_number = rows.send_day(conn, self.company_id, whatsapp_id, now.astimezone(zone).date())
            return zone_name, raw_hours, sent_today, day_number

        zone_name, raw_hours, sent_today, day_number = await self._db(read)
        zone = routing.zone_of(zone_name)
        hours = None
        if settings.business_hours_only:
            try:
                hours = business_hours.parse_schedule(raw_hours, zone.key)
            except ValueError:
                hours = None
        decided = pacing.gate(settings, now=now, zone=zone, sent_today=sent_today, day_number=day_number,
                              hours=hours)
        if decided.open:
            return True
        until = decided.until or now + dt.timedelta(hours=1)
        await self._db(lambda conn: timers.schedule(conn, company_id=self.company_id, kind=rows.RESUME_KIND,
                                                    key=rows.key(self.campaign_id), due_at=until,
                                                    payload=rows.payload_of(self.campaign_id)))
        self.sup.scheduler.nudge(until)
        self.sup.waits += 1
        log.info("campaign waits", extra={"fields": {"company_id": self.company_id, "campaign_id": self.campaign_id,
                                                     "reason": decided.reason, "until": until.isoformat()}})
        return False

    # ── plumbing ──

    async def _settings_now(self) -> pacing.Settings:
        now = trio.current_time()
        if self._settings is None or now - self._settings[0] > SETTINGS_TTL:
            raw = await self._db(lambda conn: rows.settings(conn, self.company_id))
            self._settings = (now, pacing.settings_of(raw))
            if self._pacer is None:
                self._pacer = pacing.Pacer(self._settings[1], self.sup.rng)
            else:
                self._pacer.settings = self._settings[1]
        return self._settings[1]

    async def _sleep(self, seconds: float) -> None:
        """Sleep, or less when nudged (a pause, a cancel, new settings)."""
        with trio.move_on_after(seconds):
            await self.wake.wait()
        if self.wake.is_set():
            self.wake = trio.Event()
            self._settings = None

    async def _db(self, work: Callable[[psycopg.Connection[Row]], Any]) -> Any:
        """One transaction; an outage is waited out (every step here may run twice)."""
        delay = RETRY_INITIAL
        while True:
            try:
                return await self.sup.db.run(work)
            except DB_AWAY as error:
                self.sup.db_waits += 1
                log.warning("campaign waits for the database", extra={"fields": {
                    "campaign_id": self.campaign_id, "reason": str(error)[:200]}})
                await trio.sleep(delay)
                delay = min(RETRY_MAX, delay * 2)

    def _announce(self, row: Row) -> None:
        self.sup.broker.publish(self.company_id, f"company-{self.company_id}-campaign",
                                {"action": "update", "record": self.sup.present(row)})

    def _announce_progress(self, *, force: bool = False) -> None:
        now = trio.current_time()
        if not force and now - self._progress_at < PROGRESS_EVERY:
            return
        self._progress_at = now
        self.sup.progress_due(self)


class CampaignSupervisor:
    """The campaign actors' supervisor (a child of the root, after the tickets): one actor per running
    campaign; `nudge` after the API's commits; the handler of the `campaign.start`/`campaign.resume` timers."""

    def __init__(self, db: Database, broker: Broker, scheduler: Any, tickets: TicketRouter,
                 sessions: SessionManager, present: Callable[[Row], dict[str, Any]] = default_present, *,
                 clock: Callable[[], dt.datetime] = utc_now, rng: random.Random | None = None) -> None:
        self.db = db
        self.broker = broker
        self.scheduler = scheduler
        self.tickets = tickets
        self.sessions = sessions
        self.present = present
        self.clock = clock
        self.rng = rng or random.Random()
        self.actors: dict[int, CampaignActor] = {}
        self._supervisor: SupervisorHandle | None = None
        self._nursery: trio.Nursery | None = None
        self._registered = False
        self._spawned = 0
        self._progress: dict[int, CampaignActor] = {}
        self._progress_wake = trio.Event()
        # figures for /health
        self.claimed = self.sent = self.failed = 0
        self.pauses = self.resumes = self.breaker_trips = self.waits = self.db_waits = 0

    async def run(self, *, task_status: trio.TaskStatus[CampaignSupervisor] = trio.TASK_STATUS_IGNORED) -> None:
        supervisor = Supervisor("campaigns", max_restarts=100, max_seconds=60, shutdown_timeout=5)
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self._supervisor = await nursery.start(supervisor.run)
            nursery.start_soon(self._publish_progress)
            if not self._registered and self.scheduler is not None:
                self.scheduler.register(rows.START_KIND, self.timers_due)
                self.scheduler.register(rows.RESUME_KIND, self.timers_due)
                self._registered = True
            try:
                task_status.started(self)
                await self._start_all()
                await trio.sleep_forever()
            finally:
                self._supervisor = None
                self._nursery = None
                self.actors.clear()

    async def _start_all(self) -> None:
        """At start: every running campaign continues (not those a user or the breaker paused); every scheduled
        one has its timer."""
        delay = RETRY_INITIAL
        while True:
            try:
                found = await self.db.run(rows.runnable)
                break
            except DB_AWAY:
                await trio.sleep(delay)
                delay = min(RETRY_MAX, delay * 2)
        for row in found:
            await self._look(row["company_id"], row["id"])

    # ── the API's side ──

    def nudge(self, company_id: int, campaign_id: int) -> None:
        """After a commit that changed a campaign (status, pause, schedule, settings): look at it again."""
        actor = self.actors.get(campaign_id)
        if actor is not None:
            actor.wake.set()
            actor.recheck = True
        if self._nursery is not None:
            self._nursery.start_soon(self._look_safely, company_id, campaign_id)

    async def _look_safely(self, company_id: int, campaign_id: int) -> None:
        try:
            await self._look(company_id, campaign_id)
        except DB_AWAY as error:  # the next start (or nudge) looks again
            log.warning("campaign not looked at", extra={"fields": {"campaign_id": campaign_id,
                                                                     "reason": str(error)[:200]}})

    async def _look(self, company_id: int, campaign_id: int) -> None:
        """Start its actor, or arm / move / drop its start timer, as its row says."""
        def work(conn: psycopg.Connection[Row]) -> tuple[str, dt.datetime | None]:
            row = rows.read(conn, company_id, campaign_id)
            if row is None or row["status"] not in ("PROGRAMADA", "EM_ANDAMENTO"):
                timers.cancel(conn, company_id=company_id, kind=rows.START_KIND, key=rows.key(campaign_id))
                return "nothing", None
            if row["status"] == "PROGRAMADA":
                due = row["scheduled_at"] or self.clock()
                live = timers.live(conn, company_id=company_id, kind=rows.START_KIND, key=rows.key(campaign_id))
                if live is None or live.due_at != due:
                    timers.schedule(conn, company_id=company_id, kind=rows.START_KIND, key=rows.key(campaign_id),
                                    due_at=due, payload=rows.payload_of(campaign_id))
                return "armed", due
            timers.cancel(conn, company_id=company_id, kind=rows.START_KIND, key=rows.key(campaign_id))
            if row["paused_at"] is not None and row["pause_reason"] != rows.CONNECTION_DOWN:
                return "paused", None
            return "run", None

        what, due = await self.db.run(work)
        if what == "armed" and due is not None and self.scheduler is not None:
            self.scheduler.nudge(due)
        elif what == "run":
            await self._spawn(company_id, campaign_id)

    async def timers_due(self, due: list[timers.Timer]) -> None:
        """`campaign.start`: make it EM_ANDAMENTO (with its shippings) in the transaction completing the
        timer; `campaign.resume`: complete it and run the actor again (it re-decides its pacing)."""
        for timer in due:
            campaign_id = int(timer.payload.get("campaign_id") or 0)

            def work(conn: psycopg.Connection[Row], timer: timers.Timer = timer,
                     campaign_id: int = campaign_id) -> tuple[bool, Row | None]:
                if not timers.complete(conn, timer):
                    return False, None
                if timer.kind == rows.START_KIND:
                    row, changed = rows.begin(conn, timer.company_id, campaign_id, self.clock())
                    return True, row if changed else None
                return True, None

            go, started = await self.db.run(work)
            if started is not None:
                self.broker.publish(timer.company_id, f"company-{timer.company_id}-campaign",
                                    {"action": "update", "record": self.present(started)})
            if go:
                await self._look(timer.company_id, campaign_id)

    # ── the actors ──

    async def _spawn(self, company_id: int, campaign_id: int) -> None:
        if self._supervisor is None:
            return
        actor = self.actors.get(campaign_id)
        if actor is not None:
            actor.wake.set()
            return
        actor = CampaignActor(self, company_id, campaign_id)
        self.actors[campaign_id] = actor
        self._spawned += 1
        max_restarts, max_seconds = ACTOR_BUDGET
        try:
            await self._supervisor.start_child(ChildSpec(
                ("campaign", campaign_id, self._spawned), actor.run, RestartPolicy.TRANSIENT, shutdown=2.0,
                max_restarts=max_restarts, max_seconds=max_seconds, on_exit=lambda: self._ended(actor)))
        except Exception:
            if self.actors.get(campaign_id) is actor:
                del self.actors[campaign_id]
            raise

    def _ended(self, actor: CampaignActor) -> None:
        if self.actors.get(actor.campaign_id) is actor:
            del self.actors[actor.campaign_id]

    def progress_due(self, actor: CampaignActor) -> None:
        self._progress[actor.campaign_id] = actor
        self._progress_wake.set()

    async def _publish_progress(self) -> None:
        """The progress events, off the actors' path: one counts query per campaign, at most every second."""
        while True:
            await self._progress_wake.wait()
            self._progress_wake = trio.Event()
            due, self._progress = self._progress, {}
            for campaign_id, actor in due.items():
                try:
                    counts = await self.db.run(lambda conn, actor=actor: rows.counts(conn, actor.company_id,
                                                                                     actor.campaign_id))
                except DB_AWAY:
                    continue
                counts.pop("sending", None)
                self.broker.publish(actor.company_id, f"company-{actor.company_id}-campaign",
                                    {"action": "progress", "campaignId": campaign_id, "counts": counts})
            await trio.sleep(PROGRESS_EVERY / 4)

    def supervisor_stats(self) -> dict[str, Any]:
        """Its supervisor's counters (restarts, crash loops, children given up); {} while not running."""
        return self._supervisor.stats() if self._supervisor is not None else {}

    def describe(self) -> list[dict[str, Any]]:
        """Each campaign's actor now (the runtime view): campaign, company, state, restarts, sends in flight."""
        if self._supervisor is None:
            return []
        shown = []
        for child in self._supervisor.describe_children():
            campaign_id = child.id[1] if isinstance(child.id, tuple) and len(child.id) == 3 else None
            actor = self.actors.get(campaign_id or 0)
            shown.append({"campaignId": campaign_id, "companyId": actor.company_id if actor else None,
                          "state": child.state.value, "restarts": child.restarts, "crashLooping": child.crash_looping,
                          "inFlight": actor.in_flight if actor else 0})
        return shown

    def stats(self) -> dict[str, Any]:
        supervisor = self._supervisor.stats() if self._supervisor is not None else {}
        return {"running": len(self.actors), "spawned": self._spawned, "claimed": self.claimed, "sent": self.sent,
                "failed": self.failed, "pauses": self.pauses, "resumes": self.resumes,
                "breakerTrips": self.breaker_trips, "waits": self.waits, "dbWaits": self.db_waits,
                "restartsTotal": supervisor.get("restarts_total", 0),
                "givenUpTotal": supervisor.get("given_up_total", 0)}
