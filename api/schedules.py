"""Business hours as the API takes them: the three shapes of the Whaticket family, checked strictly.

A queue's `schedules` and a company's (`PUT /companies/:id/schedules`) take any of:

- the 7-day list `[{weekday, startTime "HH:MM", endTime "HH:MM"}]` (whaticket-saas), where an empty pair
  means closed that day; `weekday` a day name or 0 (Sunday) to 6, plus the optional `weekdayEn`;
- the two-shift list, the same with `startTimeA/endTimeA/startTimeB/endTimeB` (ticketz's older form);
- ticketz's object `{timezone, weeklyRules: [{days: ["mon", …], hours: [{from, to}]}], overrides: [{date
  "YYYY-MM-DD", repeat?: "yearly", closed?, hours?, label?}]}`: a rule with no hours closes its days, an
  override replaces its day's rules (closed, or open only in its hours).

Only the known keys are kept (the frontends send whole objects back); `{}` and null are "none" (`[]`):
ticketz's queue form sends `{}` while the company's schedules are off. The object is stored as an
object, with `weeklyRules` and `overrides` always present. Interpreting them is the business-hours
evaluator's (actors/automation/hours.py); here they are only checked.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import re
import zoneinfo
from typing import Any

from api.errors import BadRequest

TIME = re.compile(r"([01]\d|2[0-3]):[0-5]\d")
DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
WEEKDAYS_EN = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # ticketz's weeklyRules day names
MAX_SCHEDULES = 50  # entries of a list shape
MAX_RULES = 50
MAX_RANGES = 12  # hour ranges of a rule or an override
MAX_OVERRIDES = 500
MAX_LABEL = 255
# Time ranges of a list entry: `startTime`/`endTime`, and the two shifts (A, B) of some frontends.
TIME_PAIRS = (("startTime", "endTime"), ("startTimeA", "endTimeA"), ("startTimeB", "endTimeB"))


def _invalid(field: str, message: str) -> BadRequest:
    return BadRequest(f"{field}: {message}", code="ERR_VALIDATION", field=field)


@functools.cache
def _zones() -> frozenset[str]:
    # `localtime` is the server's own zone under another name: never a tenant's
    return frozenset(zoneinfo.available_timezones() - {"localtime", "Factory"})


def known_zone(name: str) -> bool:
    """Whether `name` is an IANA time zone this installation knows (zoneinfo's list)."""
    return name in _zones()


def check_schedules(value: Any, field: str = "schedules") -> list[dict[str, Any]] | dict[str, Any]:
    """The schedules as stored: a checked list, or a checked ticketz object. A 400 naming the field otherwise."""
    if value is None or value == {}:
        return []
    if isinstance(value, dict):
        return _check_open_hours(value, field)
    if not isinstance(value, list):
        raise _invalid(field, "must be a list of {weekday, startTime, endTime} or an object "
                              "{timezone, weeklyRules, overrides}")
    return _check_list(value, field)


# ─── the list shapes ────────────────────────────────────────────────────────────────────

def _check_list(value: list[Any], field: str) -> list[dict[str, Any]]:
    if len(value) > MAX_SCHEDULES:
        raise _invalid(field, f"has too many items (at most {MAX_SCHEDULES})")
    checked = []
    for index, item in enumerate(value):
        where = f"{field}[{index}]"
        if not isinstance(item, dict):
            raise _invalid(where, "must be an object {weekday, startTime, endTime}")
        weekday = item.get("weekday")
        if isinstance(weekday, bool) or not (
            (isinstance(weekday, int) and 0 <= weekday <= 6)
            or (isinstance(weekday, str) and 0 < len(weekday.strip()) <= 32)
        ):
            raise _invalid(f"{where}.weekday", "must be a day name or a number from 0 (Sunday) to 6")
        entry: dict[str, Any] = {"weekday": weekday.strip() if isinstance(weekday, str) else weekday}
        if "weekdayEn" in item:
            english = item["weekdayEn"]
            if not isinstance(english, str) or english.lower() not in WEEKDAYS_EN:
                raise _invalid(f"{where}.weekdayEn", f"must be one of {', '.join(WEEKDAYS_EN)}")
            entry["weekdayEn"] = english.lower()
        for start_key, end_key in TIME_PAIRS:
            if start_key not in item and end_key not in item:
                continue
            start, end = item.get(start_key), item.get(end_key)
            start, end = "" if start is None else start, "" if end is None else end
            for key, time in ((start_key, start), (end_key, end)):
                if not isinstance(time, str) or (time and not TIME.fullmatch(time)):
                    raise _invalid(f"{where}.{key}", "must be a time HH:MM (00:00 to 23:59) or empty")
            if bool(start) != bool(end):
                raise _invalid(f"{where}.{end_key if start else start_key}",
                               f"{start_key} and {end_key} are both set or both empty")
            if start and start >= end:
                raise _invalid(f"{where}.{end_key}", f"must be later than {start_key}")
            entry[start_key], entry[end_key] = start, end
        if not any(key in entry for pair in TIME_PAIRS for key in pair):
            raise _invalid(f"{where}.startTime", "is required")
        checked.append(entry)
    return checked


# ─── ticketz's object ───────────────────────────────────────────────────────────────────

def _list(value: Any, where: str, limit: int, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _invalid(where, f"must be a list of {what}")
    if len(value) > limit:
        raise _invalid(where, f"has too many items (at most {limit})")
    return value


def _ranges(value: Any, where: str) -> list[dict[str, str]]:
    """`hours`: `[{from "HH:MM", to "HH:MM"}]`, each ending after it starts, none overlapping another."""
    ranges = []
    for index, item in enumerate(_list(value, where, MAX_RANGES, "{from, to}")):
        at = f"{where}[{index}]"
        if not isinstance(item, dict):
            raise _invalid(at, "must be an object {from, to}")
        for key in ("from", "to"):
            if not isinstance(item.get(key), str) or not TIME.fullmatch(item[key]):
                raise _invalid(f"{at}.{key}", "must be a time HH:MM (00:00 to 23:59)")
        if item["from"] >= item["to"]:
            raise _invalid(f"{at}.to", "must be later than from")
        ranges.append({"from": item["from"], "to": item["to"]})
    ordered = sorted(ranges, key=lambda r: r["from"])
    for before, after in itertools.pairwise(ordered):
        if after["from"] < before["to"]:
            raise _invalid(where, f"{before['from']}-{before['to']} and {after['from']}-{after['to']} overlap")
    return ranges


def _check_open_hours(value: dict[str, Any], field: str) -> dict[str, Any]:
    zone = value.get("timezone")
    if not isinstance(zone, str) or not known_zone(zone.strip()):
        raise _invalid(f"{field}.timezone", "must be a known IANA time zone such as America/Sao_Paulo")
    rules = []
    for index, rule in enumerate(_list(value.get("weeklyRules"), f"{field}.weeklyRules", MAX_RULES,
                                       "{days, hours}")):
        where = f"{field}.weeklyRules[{index}]"
        if not isinstance(rule, dict):
            raise _invalid(where, "must be an object {days, hours}")
        days = _list(rule.get("days"), f"{where}.days", len(DAYS), "day names")
        for day_index, day in enumerate(days):
            if not isinstance(day, str) or day.lower() not in DAYS:
                raise _invalid(f"{where}.days[{day_index}]", f"must be one of {', '.join(DAYS)}")
        if len({day.lower() for day in days}) < len(days):
            raise _invalid(f"{where}.days", "names a day twice")
        rules.append({"days": [day.lower() for day in days], "hours": _ranges(rule.get("hours"), f"{where}.hours")})
    overrides = []
    seen: dict[str, int] = {}  # a day (or, yearly, a month-day) → the override that has it
    for index, item in enumerate(_list(value.get("overrides"), f"{field}.overrides", MAX_OVERRIDES,
                                       "{date, repeat, closed, hours, label}")):
        where = f"{field}.overrides[{index}]"
        if not isinstance(item, dict):
            raise _invalid(where, "must be an object {date, repeat, closed, hours, label}")
        date = item.get("date")
        if not isinstance(date, str) or not DATE.fullmatch(date):
            raise _invalid(f"{where}.date", "must be a date YYYY-MM-DD")
        try:
            dt.date.fromisoformat(date)
        except ValueError:
            raise _invalid(f"{where}.date", "must be a valid date YYYY-MM-DD") from None
        override: dict[str, Any] = {"date": date}
        repeat = item.get("repeat")
        if repeat not in (None, "", "none", "yearly"):
            raise _invalid(f"{where}.repeat", "must be yearly or absent")
        if repeat == "yearly":
            override["repeat"] = "yearly"
        day = date[5:] if repeat == "yearly" else date
        if day in seen:
            raise _invalid(f"{where}.date", f"{date} is already overridden by overrides[{seen[day]}]")
        seen[day] = index
        closed = item.get("closed", False)
        if closed is None:
            closed = False
        if not isinstance(closed, bool):
            raise _invalid(f"{where}.closed", "must be true or false")
        override["closed"] = closed
        hours = _ranges(item.get("hours"), f"{where}.hours")
        if hours and not closed:
            override["hours"] = hours
        label = item.get("label")
        if label is not None:
            if not isinstance(label, str) or len(label) > MAX_LABEL or "\x00" in label:
                raise _invalid(f"{where}.label", f"must be a text of at most {MAX_LABEL} characters")
            if label.strip():
                override["label"] = label.strip()
        overrides.append(override)
    return {"timezone": zone.strip(), "weeklyRules": rules, "overrides": overrides}
