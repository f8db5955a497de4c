"""Settings: every key the Whaticket family knows, its default and the values it may take.

Two scopes. A company's settings (`DEFAULTS`) are key → text rows of that company, seeded with the
defaults when it is created; a key without a row answers its default, so a key added later is known
to every company at once. The installation's settings (`PLATFORM_DEFAULTS`: branding, the login page,
signup, limits) are the super admin's, one value for everybody (table `platform_settings`); the
family keeps them among company 1's settings, read by `GET /public-settings/:key` without a token.

`SPECS` says what each key accepts (api/settings.py checks it): a fixed choice, a whole number, a
queue of the company, a colour, a public file, the login page's links, a language, or free text.
Values are the family's: the keys and defaults come from what ticketz and whaticket-saas read.
"""

from __future__ import annotations

from typing import Any

import attrs
import phonenumbers
import psycopg

from storage.db import Database, Row

ENABLED = ("enabled", "disabled")


@attrs.frozen
class Spec:
    """What one key accepts. `kind`: choice, count (a whole number), queue ("0" or a queue id of the
    company), text, color, file (a public file `<token>/<name>`), links (JSON `[{title, url}]`), language,
    timezone (an IANA zone zoneinfo knows)."""

    default: str
    kind: str = "text"
    choices: tuple[str, ...] = ()
    secret: bool = False  # a credential: hidden from users who are not admins
    safe: bool = False  # ticketz's "safe" keys: announced as the `settings` event when they change
    max_len: int = 10_000


def _choice(default: str, *choices: str, safe: bool = False) -> Spec:
    return Spec(default, "choice", choices or ENABLED, safe=safe)


def _count(default: str) -> Spec:
    return Spec(default, "count", max_len=9)


# A company's settings (the original's names and values).
COMPANY_SPECS: dict[str, Spec] = {
    # the first capabilities (whaticket-saas)
    "userRating": _choice("disabled"),
    # business hours: whose schedules apply (issue 12 adds the connection's); timezone: the zone they are in
    "scheduleType": _choice("disabled", "disabled", "queue", "company", "connection"),
    "timezone": Spec("America/Sao_Paulo", "timezone", max_len=64),
    "CheckMsgIsGroup": _choice("enabled", safe=True),  # "enabled": messages from groups are ignored
    "call": _choice("disabled"),
    "chatBotType": Spec("text", max_len=32),
    "sendGreetingAccepted": _choice("disabled"),
    "sendMsgTransfTicket": _choice("disabled"),
    "sendGreetingMessageOneQueues": _choice("disabled"),
    "sendSignMessage": _choice("enabled"),
    "acceptCallWhatsapp": _choice("disabled"),
    "closeTicketApi": _choice("disabled"),
    "ticketInactivityMinutes": _count("0"),
    "connectionLimit": _count("0"),  # the super admin's override of the plan's connections; 0: the plan's
    # ticketz's settings page
    "outOfHoursAction": _choice("pending", "pending", "closed"),
    "soundGroupNotifications": _choice("disabled", safe=True),
    "groupsTab": _choice("disabled", safe=True),
    "chatbotAutoExit": _choice("disabled"),
    "showNumericIcons": _choice("disabled"),
    "quickMessages": _choice("individual", "company", "individual"),
    "tagsMode": _choice("ticket", "ticket", "contact", "both", safe=True),
    "ticketAcceptedMessage": Spec(""),
    "transferMessage": Spec(""),
    "ratingsTimeout": _count("5"),  # minutes
    "tempoRoteador": _count("0"),  # minutes before an auto-assigned ticket nobody accepted is offered again; 0: never
    "autoReopenTimeout": _count("0"),
    "noQueueTimeout": _count("0"),
    "noQueueTimeoutAction": Spec("0", "queue"),  # "0": close; else the queue to move the ticket to
    "openTicketTimeout": _count("0"),
    "openTicketTimeoutAction": _choice("pending", "pending", "closed"),
    "chatbotTicketTimeout": _count("0"),
    "chatbotTicketTimeoutAction": Spec("0", "queue"),
    "messageVisibility": _choice("message", "message", "ticket"),
    "keepUserAndQueue": _choice("enabled"),
    "apiToken": Spec("", secret=True, max_len=255),
    "openAiKey": Spec("", secret=True, max_len=255),
    "aiProvider": _choice("openai", "openai", "groq"),
    "audioTranscriptions": _choice("disabled"),
    # where the numbers of imported spreadsheets and contact lists are when written without a country code
    "phoneRegion": Spec("BR", "choice", tuple(sorted(phonenumbers.SUPPORTED_REGIONS)), max_len=2),
}

# The installation's settings: the super admin's, one value for every company.
PLATFORM_SPECS: dict[str, Spec] = {
    "appName": Spec("", max_len=255),
    "appLogoLight": Spec("", "file"),
    "appLogoDark": Spec("", "file"),
    "appLogoFavicon": Spec("", "file"),
    "primaryColorLight": Spec("", "color"),
    "primaryColorDark": Spec("", "color"),
    "loginBackgroundContent": Spec("", "file"),
    "loginSidePanelImage": Spec("", "file"),
    "loginPageLinks": Spec("", "links"),
    "allowSignup": _choice("disabled"),
    "extensionDownloadUrl": Spec("", "file"),
    "defaultLanguage": Spec("en", "language"),
    "useMultiThreadedWbot": _choice("disabled"),
    "uploadLimit": _count("15"),  # MB
    "downloadLimit": _count("15"),  # MB
    "gracePeriod": _count("0"),  # days after a company's due date
}

SPECS: dict[str, Spec] = {**COMPANY_SPECS, **PLATFORM_SPECS}
DEFAULTS: dict[str, str] = {key: spec.default for key, spec in COMPANY_SPECS.items()}
PLATFORM_DEFAULTS: dict[str, str] = {key: spec.default for key, spec in PLATFORM_SPECS.items()}

# Company settings only a super admin may change (limits of a tenant).
SUPER_ONLY = frozenset({"connectionLimit"})

# What `GET /public-settings/:key` answers without a token: ticketz's list. `vapidPublicKey` (web push)
# is not a setting here: it answers null, as it does in ticketz until web push is configured.
PUBLIC_KEYS = frozenset({
    "allowSignup", "primaryColorLight", "primaryColorDark", "appLogoLight", "appLogoDark", "appLogoFavicon",
    "appName", "loginPageLinks", "loginSidePanelImage", "loginBackgroundContent", "vapidPublicKey",
    "extensionDownloadUrl",
})


def is_platform(key: str) -> bool:
    return key in PLATFORM_SPECS


def seed(conn: psycopg.Connection[Any], company_id: int, q: Any) -> None:
    """Insert the default settings of a company (inside the caller's transaction)."""
    conn.execute(q.settings_seed, {"company_id": company_id, "keys": list(DEFAULTS),
                                   "values": list(DEFAULTS.values())})


def _with_defaults(rows: list[Row], defaults: dict[str, str]) -> list[Row]:
    """The stored rows, plus a row (no timestamps) for every known key without one; by key."""
    stored = {row["key"]: row for row in rows}
    for key, value in defaults.items():
        stored.setdefault(key, {"key": key, "value": value, "created_at": None, "updated_at": None})
    return [stored[key] for key in sorted(stored)]


async def list_settings(db: Database, company_id: int) -> list[Row]:
    """Every setting of the company: its stored rows and the defaults of the keys it has no row for."""
    return _with_defaults(await db.fetch_all(db.q.settings_list, {"company_id": company_id}), DEFAULTS)


async def set_setting(db: Database, company_id: int, key: str, value: str) -> Row:
    row = await db.fetch_one(db.q.setting_upsert, {"company_id": company_id, "key": key, "value": value})
    assert row is not None
    return row


async def get_int_setting(db: Database, company_id: int, key: str) -> int:
    value = await get_setting(db, company_id, key)
    return int(value) if value.strip().isdigit() else int(DEFAULTS.get(key, "0"))


async def get_setting(db: Database, company_id: int, key: str) -> str:
    value = await db.fetch_value(db.q.setting_get, {"company_id": company_id, "key": key})
    return DEFAULTS.get(key, "") if value is None else value


async def list_platform_settings(db: Database) -> list[Row]:
    """Every setting of the installation (stored, or its default)."""
    return _with_defaults(await db.fetch_all(db.q.platform_settings_list), PLATFORM_DEFAULTS)


async def get_platform_setting(db: Database, key: str) -> str:
    value = await db.fetch_value(db.q.platform_setting_get, {"key": key})
    return PLATFORM_DEFAULTS.get(key, "") if value is None else value


async def set_platform_setting(db: Database, key: str, value: str) -> Row:
    row = await db.fetch_one(db.q.platform_setting_upsert, {"key": key, "value": value})
    assert row is not None
    return row
