"""Ratings and inactivity rules (pure; issue 12 points 7 and 8). The ticket actor (actors/routing.py) runs
them and keeps every wait as a durable timer (storage/timers.py): kinds `ticket.*`, one per ticket and
kind (key `ticket:<id>`), rescheduled by key when the wait starts again and cancelled when it no longer
applies.

Timers and what each does when it fires (it checks the ticket is still as it was; a stale one does nothing):
- `ticket.rating` (`ratingsTimeout` minutes after the rating question): the question expires.
- `ticket.chatbot` (`chatbotTicketTimeout` after the contact's last message to a menu): `chatbotTicketTimeoutAction`
  — "0" closes the ticket, a queue id moves it there (out of the menu).
- `ticket.noqueue` (`noQueueTimeout` after the contact's last message, pending without a queue and no
  menu): `noQueueTimeoutAction` — "0" closes, a queue id moves it there.
- `ticket.open` (`openTicketTimeout` after the last message of an open ticket): `openTicketTimeoutAction`
  — `pending` gives it back to its queue, `closed` closes it.
- `ticket.expire` (the connection's `expires_ticket` minutes after the contact's last message, active
  ticket): the connection's `expires_inactive_message`, then closed.
- `ticket.reoffer` (`tempoRoteador` minutes after auto-assignment, still pending with that agent): the
  next agent.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import attrs

RATING_MAX_ANSWER = 10  # a longer message is not an answer to the rating question: a new conversation
DEFAULT_RATING = "Por favor, avalie nosso atendimento"
RATING_INSTRUCTIONS = "Envie uma avaliação de 1 a 5"
RATING_RETURN = "Envie *`!`* para voltar ao atendimento"
RATING_DONE = "Atendimento concluído"
RATING_REOPENED = "Atendimento reaberto"
RATING_CANCELLED = "Avaliação cancelada"

KINDS = ("ticket.rating", "ticket.chatbot", "ticket.noqueue", "ticket.open", "ticket.expire", "ticket.reoffer")

SETTING_KEYS = ("scheduleType", "outOfHoursAction", "showNumericIcons", "chatbotAutoExit", "timezone",
                "userRating", "ratingsTimeout", "chatbotTicketTimeout", "chatbotTicketTimeoutAction",
                "noQueueTimeout", "noQueueTimeoutAction", "openTicketTimeout", "openTicketTimeoutAction",
                "tempoRoteador", "ticketAcceptedMessage", "sendGreetingAccepted")


def rating_question(configured: str) -> str:
    return f"{configured.strip() or DEFAULT_RATING}\n\n*{RATING_INSTRUCTIONS}*\n\n{RATING_RETURN}"


def rating_answer(body: str) -> int | str | None:
    """What a message means to a ticket waiting for its rating: a rate 1..5 (any number, clamped as the
    family does), "reopen" (`!`), "cancel" (a short message), or None: too long to be an answer (the
    question lapses and the message starts a new conversation)."""
    text = body.strip()
    try:
        number = float(text.replace(",", "."))
    except ValueError:
        number = None
    if number is not None and number == number and abs(number) != float("inf"):
        return max(1, min(5, round(number)))
    if text == "!":
        return "reopen"
    return "cancel" if len(text) < RATING_MAX_ANSWER else None


@attrs.frozen
class Rules:
    chatbot_minutes: int = 0
    chatbot_action: str = "0"
    no_queue_minutes: int = 0
    no_queue_action: str = "0"
    open_minutes: int = 0
    open_action: str = "pending"
    expire_minutes: int = 0  # the connection's expires_ticket
    rating_minutes: int = 5
    reoffer_minutes: int = 0

    @classmethod
    def of(cls, settings: Mapping[str, str], connection: Mapping[str, Any]) -> Rules:
        return cls(chatbot_minutes=_minutes(settings.get("chatbotTicketTimeout")),
                   chatbot_action=settings.get("chatbotTicketTimeoutAction") or "0",
                   no_queue_minutes=_minutes(settings.get("noQueueTimeout")),
                   no_queue_action=settings.get("noQueueTimeoutAction") or "0",
                   open_minutes=_minutes(settings.get("openTicketTimeout")),
                   open_action=settings.get("openTicketTimeoutAction") or "pending",
                   expire_minutes=int(connection.get("expires_ticket") or 0),
                   rating_minutes=_minutes(settings.get("ratingsTimeout"), 5),
                   reoffer_minutes=_minutes(settings.get("tempoRoteador")))


@attrs.frozen
class Arm:
    kind: str
    due_at: dt.datetime
    payload: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class Disarm:
    kind: str


TimerOp = Arm | Disarm


def waits(ticket: Mapping[str, Any], rules: Rules, now: dt.datetime, *, contact_wrote: bool) -> list[TimerOp]:
    """The inactivity timers a ticket has after a change (`ticket`: its row as written). `contact_wrote`:
    the change was the contact's message (the silence counted by `ticket.expire` starts again)."""
    ops: list[TimerOp] = []
    status, active = ticket["status"], ticket["status"] in ("pending", "open")

    def minutes(kind: str, count: int, applies: bool) -> None:
        # a rule that is off arms nothing, and disarms nothing either (no statement per message for rules
        # nobody uses): a timer left from before it was turned off finds it off when it fires, and does nothing
        if count <= 0:
            return
        ops.append(Arm(kind, now + dt.timedelta(minutes=count)) if applies else Disarm(kind))

    minutes("ticket.chatbot", rules.chatbot_minutes, active and bool(ticket["chatbot"]))
    minutes("ticket.noqueue", rules.no_queue_minutes,
            status == "pending" and ticket["queue_id"] is None and not ticket["chatbot"] and ticket["user_id"] is None)
    minutes("ticket.open", rules.open_minutes, status == "open")
    if rules.expire_minutes > 0:
        if not active:
            ops.append(Disarm("ticket.expire"))
        elif contact_wrote:
            ops.append(Arm("ticket.expire", now + dt.timedelta(minutes=rules.expire_minutes)))
    return ops


def still_on(kind: str, rules: Rules) -> bool:
    """Whether the rule behind a fired timer is still on (a timer outlives its rule being turned off)."""
    return {"ticket.chatbot": rules.chatbot_minutes, "ticket.noqueue": rules.no_queue_minutes,
            "ticket.open": rules.open_minutes, "ticket.expire": rules.expire_minutes}.get(kind, 1) > 0


def _minutes(value: str | None, default: int = 0) -> int:
    text = (value or "").strip()
    return int(text) if text.isdigit() else default
