"""Message variables: the one renderer of greetings, queue options, quick messages, campaigns, scheduled
messages and flows.

`render(template, values)` replaces `{{name}}` tokens; `variables(...)` builds the values the Whaticket
family offers (ticketz `helpers/Mustache.ts` is the list followed):

    name       the contact's name, or its number when it has none
    firstname  the first word of `name`
    email      the contact's e-mail
    greeting   by the hour in the company's zone: 00-05 "Olá", 06-11 "Bom dia", 12-17 "Boa tarde",
               18-23 "Boa noite" (ticketz's hours and texts; `language` picks another of its languages)
    protocol   "YYYYMMDD-<ticket id>" (ticketz's format; the date is the company's local date, where
               ticketz takes the UTC date) unless the caller passes its own
    queue      the ticket's queue name
    user       the agent's name
    time       "HH:MM:SS", 24-hour, in the company's zone
    ticket     the ticket id
    gretting, ms (= greeting), hora (= time), fila (= queue), usuario (= user): ticketz's aliases
plus the contact's custom fields by their names. A value that is not known (no e-mail, no ticket yet)
is left out, so its token stays as written — as ticketz does, which writes the token back.

How `render` differs from mustache, on purpose:
- nothing is HTML-escaped (mustache turns `&` into `&amp;` in `{{x}}`); `{{{x}}}` and `{{&x}}` (the
  unescaped forms people write to dodge that) are the same as `{{x}}`;
- a token that names no value is left exactly as written (mustache renders it empty; ticketz
  re-inserts it normalised), and so is every other mustache construct (`{{#section}}`, `{{! note}}`);
- a key matches exactly, else case-insensitively when only one key matches (`{{Nome}}` finds a custom
  field "nome"); mustache is case-sensitive, so every template that worked there renders the same;
- whitespace inside the braces is ignored (`{{ name }}`), whitespace within a name is kept
  ("{{Data de nascimento}}" finds that custom field), and a dotted name is one key, not a path.
It never raises: odd input (unbalanced braces, a `{{` without its end) comes back unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType
from zoneinfo import ZoneInfo

_TOKEN = re.compile(r"\{\{\{\s*(?P<triple>[^{}]*?)\s*\}\}\}|\{\{\s*(?:&\s*)?(?P<name>[^{}]*?)\s*\}\}")

# ticketz's words for "Hello" (before 06:00), good morning, afternoon and evening, by its languages.
GREETINGS: Mapping[str, tuple[str, str, str, str]] = MappingProxyType(
    {
        "pt": ("Olá", "Bom dia", "Boa tarde", "Boa noite"),
        "en": ("Hello", "Good morning", "Good afternoon", "Good evening"),
        "es": ("Hola", "Buenos días", "Buenas tardes", "Buenas noches"),
        "de": ("Hallo", "Guten Morgen", "Guten Tag", "Guten Abend"),
        "fr": ("Bonjour", "Bonjour", "Bon après-midi", "Bonsoir"),
        "it": ("Ciao", "Buongiorno", "Buon pomeriggio", "Buonasera"),
        "id": ("Halo", "Selamat pagi", "Selamat sore", "Selamat malam"),
    }
)
BUILT_INS = frozenset(
    {"name", "firstname", "email", "greeting", "protocol", "queue", "user", "time", "ticket"}
    | {"gretting", "ms", "hora", "fila", "usuario"}
)
_NO_FIELDS: Mapping[str, str] = MappingProxyType({})


def render(template: str, values: Mapping[str, str]) -> str:
    """`template` with each `{{name}}` whose name is a key of `values` replaced by its value (as is, no
    escaping); every other token and character kept exactly as written."""
    if not isinstance(template, str):
        return "" if template is None else str(template)
    if "{{" not in template:
        return template
    folded: dict[str, str | None] | None = None

    def lookup(name: str) -> str | None:
        nonlocal folded
        if name in values:
            return values[name]
        if folded is None:
            folded = {}
            for key in values:
                if isinstance(key, str):
                    k = key.casefold()
                    folded[k] = None if k in folded else key  # ambiguous: no case-insensitive match
        key = folded.get(name.casefold())
        return None if key is None else values[key]

    def replace(match: re.Match[str]) -> str:
        name = match["triple"] if match["triple"] is not None else match["name"]
        value = lookup(name) if name else None
        return match[0] if value is None else str(value)

    try:
        return _TOKEN.sub(replace, template)
    except Exception:  # a values mapping that misbehaves must not lose the message
        return template


def greeting(local: datetime, language: str = "pt") -> str:
    """ticketz's greeting for a local time: hours 0-5, 6-11, 12-17 and 18-23 each have their word."""
    words = GREETINGS.get(_language(language), GREETINGS["pt"])
    return words[local.hour // 6]


def _language(language: str) -> str:
    code = (language or "pt").strip().replace("-", "_").lower()
    return code if code in GREETINGS else code.split("_")[0]


def variables(
    *,
    contact_name: str,
    contact_email: str = "",
    contact_number: str = "",
    custom_fields: Mapping[str, str] = _NO_FIELDS,
    ticket_id: int | None = None,
    protocol: str | None = None,
    queue: str = "",
    user: str = "",
    now: datetime,
    zone: ZoneInfo,
    language: str = "pt",
) -> dict[str, str]:
    """The values `render` fills in for one contact and ticket, at `now` (aware) in the company's `zone`.

    Unknown values (empty strings, no ticket) are left out so their tokens stay as written. Custom
    fields come by name (stripped); one whose name is a built-in's, in any case, is ignored.
    """
    local = now.astimezone(zone)
    values: dict[str, str] = {}
    for field, value in custom_fields.items():
        name = str(field).strip()
        if name and name.casefold() not in BUILT_INS:
            values[name] = "" if value is None else str(value)

    name = (contact_name or "").strip() or (contact_number or "").strip()
    if name:
        values["name"] = name
        values["firstname"] = name.split()[0]
    email = (contact_email or "").strip()
    if email:
        values["email"] = email
    words = greeting(local, language)
    values.update(greeting=words, gretting=words, ms=words)
    if protocol is None and ticket_id is not None:
        protocol = f"{local:%Y%m%d}-{ticket_id}"
    if protocol:
        values["protocol"] = protocol
    if queue:
        values["queue"] = values["fila"] = queue
    if user:
        values["user"] = values["usuario"] = user
    clock = f"{local:%H:%M:%S}"
    values["time"] = values["hora"] = clock
    if ticket_id is not None:
        values["ticket"] = str(ticket_id)
    return values
