"""Inbound routing: what zapgate does with a contact's message before a human has the ticket.

`decide(ctx, body)` is pure (DESIGN §7b): the ticket as it is, the connection with its queues and their
option trees, the company's settings, the business hours already evaluated for `ctx.now`, and the text
the contact wrote → the actions to take, in order. The ticket actor (actors/routing.py) executes them in
one transaction with the ticket's `routed_message_id`, so a message is decided on once.

The chain, as the Whaticket family has it (ticketz's wbotMessageListener: verifyQueue, startQueue,
handleChartbot), with its rough edges filed off:
1. Out of hours (setting `scheduleType` = company | connection): the out-of-hours message at most once
   per closed period (`ooh_until`, the instant it opens again, is remembered on the ticket), and a ticket
   nobody is serving goes to `outOfHoursAction` (pending or closed). An open ticket whose agent is online
   is left alone.
2. No queue yet: a connection without queues greets a new ticket once; with one queue the ticket goes
   straight into it; with several, the connection's greeting and a numbered menu of its queues. The answer
   is read leniently (" 2 ", "2.", "2️⃣", "*[ 2 ]*"); an unknown answer re-sends the menu, at most
   `max_use_bot_queues` times (or none when `chatbotAutoExit` is on), then a human takes over.
3. Inside a queue (scheduleType = queue checks the queue's hours first), its option tree: an option's
   message and sub-menu, `forward_queue_id` moves the ticket to another queue, `exit_chatbot` hands it to a
   human; a node with a single child advances by itself; `#` goes back to the main menu.
The menu's position is the ticket row (`chatbot`, `queue_id`, `queue_option_id`, `bot_retries`): a restart
mid-menu continues where it was.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Mapping
from typing import Any

import attrs

from actors.automation.render import render

# The family's texts, in the language of its users (ticketz's pt-BR translations).
DEFAULT_OUT_OF_HOURS = "Estamos fora do horário de expediente"
BACK_TO_MAIN = "Voltar ao menu principal"
NEVER_OPENS = dt.timedelta(days=1)  # closed for good: the out-of-hours message at most once a day
KEYCAPS = ("0️⃣", "1️⃣", "2️⃣", "3️⃣", "4️⃣", "5️⃣", "6️⃣", "7️⃣", "8️⃣", "9️⃣", "🔟")


# ─── what the decision reads ────────────────────────────────────────────────────────────

@attrs.frozen
class Option:
    id: int
    parent_id: int | None
    option: str
    title: str
    message: str = ""
    forward_queue_id: int | None = None
    exit_chatbot: bool = False
    media: tuple[str, str] | None = None  # (media path as stored, file name)


@attrs.frozen
class Queue:
    id: int
    name: str
    greeting: str = ""
    out_of_hours: str = ""
    options: tuple[Option, ...] = ()  # the whole tree, flat
    media: tuple[str, str] | None = None

    def children(self, parent_id: int | None) -> list[Option]:
        found = [option for option in self.options if option.parent_id == parent_id]
        return sorted(found, key=lambda option: (_number(option.option) is None, _number(option.option) or 0,
                                                 option.option, option.id))

    def option(self, option_id: int | None) -> Option | None:
        return next((option for option in self.options if option.id == option_id), None)


@attrs.frozen
class Connection:
    id: int
    greeting: str = ""
    out_of_hours: str = ""
    transfer_message: str = ""
    max_use_bot_queues: int = 3
    queues: tuple[Queue, ...] = ()  # the connection's, in menu order


@attrs.frozen
class Hours:
    """Business hours evaluated at `ctx.now`: open or not, and when a closed period ends (None: never)."""
    open: bool
    reopens_at: dt.datetime | None = None


ALWAYS_OPEN = Hours(True)


@attrs.frozen
class Settings:
    schedule_type: str = "disabled"  # disabled | company | connection | queue
    out_of_hours_action: str = "pending"  # pending | closed
    show_numeric_icons: bool = False
    chatbot_auto_exit: bool = False


@attrs.frozen
class Ticket:
    id: int
    status: str
    queue_id: int | None = None
    user_id: int | None = None
    chatbot: bool = False
    queue_option_id: int | None = None
    bot_retries: int = 0
    fresh: bool = False  # never routed before this message: a new conversation
    ooh_until: dt.datetime | None = None
    user_online: bool = False


@attrs.frozen
class Context:
    ticket: Ticket
    connection: Connection
    settings: Settings
    now: dt.datetime
    hours: Hours = ALWAYS_OPEN  # the company's or the connection's, by scheduleType
    queue_hours: Mapping[int, Hours] = attrs.field(factory=dict)
    queues: Mapping[int, Queue] = attrs.field(factory=dict)  # every queue an option may forward to
    values: Mapping[str, str] = attrs.field(factory=dict)  # message variables (render.variables)

    def queue(self, queue_id: int | None) -> Queue | None:
        if queue_id is None:
            return None
        found = next((queue for queue in self.connection.queues if queue.id == queue_id), None)
        return found or self.queues.get(queue_id)


# ─── what it decides ────────────────────────────────────────────────────────────────────

@attrs.frozen
class Send:
    body: str
    media: tuple[str, str] | None = None  # sent as this file with `body` as its caption


@attrs.frozen
class Update:
    """Fields of the ticket row to set (names as in the tickets table)."""
    fields: Mapping[str, Any]


@attrs.frozen
class AutoAssign:
    """The ticket entered this queue with nobody on it: offer it to an agent if the queue says so."""
    queue_id: int


Action = Send | Update | AutoAssign


# ─── the decision ───────────────────────────────────────────────────────────────────────

def decide(ctx: Context, body: str) -> list[Action]:
    """The actions for one message from the contact (see the module's docstring)."""
    ticket, settings = ctx.ticket, ctx.settings
    served = ticket.status == "open" and ticket.user_id is not None
    if settings.schedule_type in ("company", "connection") and not ctx.hours.open \
            and not (served and ticket.user_online):
        return _out_of_hours(ctx, ctx.connection.out_of_hours)
    if served:
        return []  # a human has it
    answer = body.strip()
    queues = ctx.connection.queues
    if answer == "#" and len(queues) > 1 and (ticket.chatbot or ticket.queue_id is not None) \
            and ticket.user_id is None:
        return [Update({"queue_id": None, "queue_option_id": None}), *_queue_menu(ctx, retries=0)]
    if ticket.queue_id is None and ticket.user_id is None:
        if not queues:
            return [Send(_text(ctx, ctx.connection.greeting))] if ticket.fresh and ctx.connection.greeting.strip() \
                else []
        if len(queues) == 1:
            return _start_queue(ctx, queues[0], back=False) if ticket.fresh or ticket.chatbot else []
        if ticket.fresh:
            return _queue_menu(ctx, retries=0)
        if not ticket.chatbot:
            return []  # handed to a human already: waits in pending
        index = choice(answer, len(queues))
        if index is not None:
            return _start_queue(ctx, queues[index - 1], back=True)
        return _unknown(ctx, lambda retries: _queue_menu(ctx, retries=retries))
    queue = ctx.queue(ticket.queue_id)
    if queue is None or not ticket.chatbot or ticket.user_id is not None:
        if queue is not None and ticket.fresh:  # a ticket that came with its queue (a reopen, an API create)
            return _start_queue(ctx, queue, back=len(queues) > 1)
        return []
    if answer == "#":
        return _start_queue(ctx, queue, back=len(queues) > 1)
    node = queue.option(ticket.queue_option_id)
    children = queue.children(node.id if node else None)
    if len(children) == 1 and node is not None:
        return _choose(ctx, queue, children[0])
    picked = _match(answer, children)
    if picked is not None:
        return _choose(ctx, queue, picked)
    return _unknown(ctx, lambda retries: _option_menu(ctx, queue, node, retries=retries))


def _out_of_hours(ctx: Context, configured: str, extra: tuple[Action, ...] = ()) -> list[Action]:
    ticket, hours = ctx.ticket, ctx.hours
    actions: list[Action] = list(extra)
    fields: dict[str, Any] = {"chatbot": False, "queue_option_id": None, "bot_retries": 0}
    if ticket.ooh_until is None or ticket.ooh_until <= ctx.now:  # not said in this closed period yet
        actions.append(Send(_text(ctx, configured.strip() or DEFAULT_OUT_OF_HOURS)))
        fields["ooh_until"] = hours.reopens_at or ctx.now + NEVER_OPENS
    if ticket.status != "open":
        fields["status"] = ctx.settings.out_of_hours_action
    actions.append(Update(fields))
    return actions


def _start_queue(ctx: Context, queue: Queue, *, back: bool) -> list[Action]:
    """Into `queue`: its hours (scheduleType = queue), then its greeting and options, or an agent."""
    into = Update({"queue_id": queue.id, "queue_option_id": None, "bot_retries": 0, "status": "pending",
                   "chatbot": bool(queue.children(None))})
    if ctx.settings.schedule_type == "queue":
        hours = ctx.queue_hours.get(queue.id, ALWAYS_OPEN)
        if not hours.open:
            return _out_of_hours(attrs.evolve(ctx, hours=hours), queue.out_of_hours, (into,))
    values = {**ctx.values, "queue": queue.name}
    roots = queue.children(None)
    if not roots:
        greeting = render(queue.greeting.strip(), values)
        sends = [Send(greeting, queue.media)] if greeting or queue.media else []
        return [into, *sends, AutoAssign(queue.id)]
    return [into, *_media_first(queue.media), Send(_menu(ctx, render(queue.greeting, values), roots, back=back))]


def _choose(ctx: Context, queue: Queue, option: Option) -> list[Action]:
    values = {**ctx.values, "queue": queue.name}
    text = render(option.message.strip(), values)
    if option.exit_chatbot or option.forward_queue_id is not None:
        sends = [Send(text, option.media)] if text or option.media else []
        if option.forward_queue_id is not None:
            target = ctx.queue(option.forward_queue_id)
            if target is not None:
                return [*sends, *_start_queue(ctx, target, back=len(ctx.connection.queues) > 1)]
        return [*sends, Update({"chatbot": False, "queue_option_id": None, "bot_retries": 0}),
                AutoAssign(queue.id)]
    children = queue.children(option.id)
    actions: list[Action] = [Update({"queue_option_id": option.id, "bot_retries": 0})]
    actions += _media_first(option.media)
    actions.append(Send(_menu(ctx, text, children, back=True)))
    return actions


def _unknown(ctx: Context, menu: Any) -> list[Action]:
    """An answer that names no option: the menu again, or — past the limit, or at once with chatbotAutoExit —
    a human (the connection's transfer message, if any)."""
    retries = ctx.ticket.bot_retries + 1
    limit = 0 if ctx.settings.chatbot_auto_exit else ctx.connection.max_use_bot_queues
    if retries > limit:
        actions: list[Action] = [Update({"chatbot": False, "queue_option_id": None, "bot_retries": 0})]
        if ctx.connection.transfer_message.strip():
            actions.append(Send(_text(ctx, ctx.connection.transfer_message)))
        if ctx.ticket.queue_id is not None:
            actions.append(AutoAssign(ctx.ticket.queue_id))
        return actions
    return menu(retries)


def _queue_menu(ctx: Context, *, retries: int) -> list[Action]:
    queues = ctx.connection.queues
    icons = ctx.settings.show_numeric_icons and len(queues) <= 10
    lines = [f"{_label(index, icons)} - {queue.name}" for index, queue in enumerate(queues, start=1)]
    text = _join(_text(ctx, ctx.connection.greeting), "\n".join(lines))
    return [Update({"chatbot": True, "queue_option_id": None, "bot_retries": retries, "status": "pending"}),
            Send(text)]


def _option_menu(ctx: Context, queue: Queue, node: Option | None, *, retries: int) -> list[Action]:
    values = {**ctx.values, "queue": queue.name}
    head = render((node.message if node else queue.greeting), values)
    children = queue.children(node.id if node else None)
    return [Update({"bot_retries": retries}),
            Send(_menu(ctx, head, children, back=node is not None or len(ctx.connection.queues) > 1))]


def _menu(ctx: Context, head: str, options: list[Option], *, back: bool) -> str:
    icons = ctx.settings.show_numeric_icons and len(options) <= 10 and \
        all(_number(option.option) is not None for option in options)
    lines = [f"{_label(_number(option.option), icons) if icons else f'*[ {option.option} ]*'} - {option.title}"
             for option in options]
    if back:
        lines.append(f"\n{'#️⃣' if icons else '[ # ]'} - {BACK_TO_MAIN}")
    return _join(head, "\n".join(lines))


def _label(number: int | None, icons: bool) -> str:
    if icons and number is not None and 0 <= number <= 10:
        return KEYCAPS[number]
    return f"*[ {number} ]*"


def _media_first(media: tuple[str, str] | None) -> list[Action]:
    return [Send("", media)] if media else []


def _join(head: str, menu: str) -> str:
    head = head.strip()
    return f"{head}\n\n{menu}" if head else menu


def _text(ctx: Context, template: str) -> str:
    return render(template.strip(), ctx.values)


# ─── reading an answer ──────────────────────────────────────────────────────────────────

_DECORATION = re.compile(r"^[\s*_~\[\]().:;,!?#-]*|[\s*_~\[\]().:;,!?-]*$")


def normalize_answer(text: str) -> str:
    """An answer as a menu compares it: keycap emojis as digits ("2️⃣" → "2", "🔟" → "10"), the decoration
    the family's menus and people add stripped ("*[ 2 ]*", "2.", " 2 ", "(2)"), lower case."""
    text = text.replace("🔟", "10").replace("\u20e3", "").replace("\ufe0f", "")
    text = unicodedata.normalize("NFKC", text).strip()
    return _DECORATION.sub("", text).strip().lower()


def choice(text: str, count: int) -> int | None:
    """The 1-based item of a numbered menu of `count` items the answer names, or None."""
    number = _number(normalize_answer(text))
    return number if number is not None and 1 <= number <= count else None


def _match(text: str, options: list[Option]) -> Option | None:
    answer = normalize_answer(text)
    if not answer:
        return None
    for option in options:
        if normalize_answer(option.option) == answer:
            return option
    number = _number(answer)  # "02" for option "2"
    if number is not None:
        return next((option for option in options if _number(option.option) == number), None)
    return None


def _number(text: str) -> int | None:
    text = text.strip()
    return int(text) if text.isdigit() and len(text) <= 6 else None
