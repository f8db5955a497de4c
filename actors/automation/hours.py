"""Business hours: the three schedule shapes of the Whaticket family normalised into one evaluator.

`parse_schedule(raw, default_zone)` turns what a company, queue or connection stores into a `Schedule`
(or None when nothing is configured: the caller treats that as always open); `is_open(schedule, at)`
and `next_open(schedule, at)` answer for an aware instant, always in the schedule's own zone — never
the server's or the database's (the originals compare `now()` in whatever zone PostgreSQL runs in).
`validate_schedule(raw)` is the API's check, with the same rules.

The shapes:
(a) the 7-day list `[{weekday, weekdayEn, startTime, endTime}]`;
(b) the two-shift list `[{weekday, weekdayEn, startTimeA, endTimeA, startTimeB, endTimeB}]`;
(c) ticketz's object `{timezone, weeklyRules: [{days: ["mon", ...], hours: [{from, to}]}],
    overrides: [{date: "2026-12-25", repeat?: "yearly", closed?, hours?, label?}]}`.

Rules (where the family is silent, or its versions disagree, the choice is stated):
- The day of a list entry: `weekdayEn` ("monday", or "mon") when present; otherwise `weekday`, a number
  0=Sunday..6=Saturday (JavaScript's `getDay`) or a day name in Portuguese or English, with or without
  accents and "-feira" ("Segunda-feira", "terca", "Sábado", "sunday"). An entry whose times are empty
  (or missing) closes that day; a day absent from the list is closed; two entries for one day add up.
  A start without its end (or the reverse) is an error.
- ticketz's `days` are "mon".."sun" (full English names too). A rule with no hours closes its days,
  whatever the order of the rules (ticketz stops at the first rule naming the day). Other rules add up.
- Overrides: a one-off date wins over a yearly one (MM-DD, `repeat: "yearly"`); for one date, the
  first listed wins (as ticketz). `closed: true`, or no hours, closes the day. `repeat` may also be
  "none". The object's `timezone` wins over the default zone.
- Only `None`, "", `[]`, `{}` and an object with neither `weeklyRules` nor `overrides` are "nothing
  configured". A configured schedule with no hours at all (every day empty) is always closed, as in
  the family; `next_open` then answers None.
- Times are "H:MM" or "HH:MM" (seconds allowed and ignored). Ranges are [start, end) in wall-clock
  minutes. An end of "23:59" (what the family writes for the end of the day), "00:00" or "24:00" means
  midnight at the end of that day (so "00:00"-"00:00" is the whole day). An end before its start is
  an error: a range does not cross midnight (write it as two days).
- DST: ranges are wall-clock times; a wall time that does not exist (the skipped hour) opens at the
  first instant after it, the change itself; a repeated wall time is open both times it occurs.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs

MINUTES_PER_DAY = 24 * 60
SEARCH_DAYS = 400  # how far `next_open` looks ahead (a yearly holiday fits, with room)

Range = tuple[int, int]  # [start, end) in minutes of the local day, 0 <= start < end <= 1440
DayRanges = tuple[Range, ...]

_ENGLISH = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_PORTUGUESE = ("segunda", "terca", "quarta", "quinta", "sexta", "sabado", "domingo")
_PORTUGUESE_SHORT = ("seg", "ter", "qua", "qui", "sex", "sab", "dom")
_DAY_NAMES = {
    name: index
    for index, names in enumerate(zip(_ENGLISH, _PORTUGUESE, _PORTUGUESE_SHORT, strict=True))
    for name in (*names, names[0][:3])
}

_TIME = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?")
_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_MONTH_DAY = re.compile(r"(?:\d{4}-)?(\d{2})-(\d{2})")
_SHIFT_KEYS = (("startTime", "endTime"), ("startTimeA", "endTimeA"), ("startTimeB", "endTimeB"))


def _merged(ranges: Iterable[Sequence[int]]) -> DayRanges:
    """Sorted, overlapping and touching ranges joined; each checked to lie within one day."""
    out: list[list[int]] = []
    for start, end in sorted((int(s), int(e)) for s, e in ranges):
        if not 0 <= start < end <= MINUTES_PER_DAY:
            raise ValueError(f"range {start}-{end} is not [start, end) minutes within a day")
        if out and start <= out[-1][1]:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([start, end])
    return tuple((start, end) for start, end in out)


def _weekly(days: Iterable[Iterable[Sequence[int]]]) -> tuple[DayRanges, ...]:
    weekly = tuple(_merged(day) for day in days)
    if len(weekly) != 7:
        raise ValueError("a week has 7 days (Monday first)")
    return weekly


def _by_key(overrides: Mapping[Any, Iterable[Sequence[int]]]) -> dict[Any, DayRanges]:
    return {key: _merged(ranges) for key, ranges in overrides.items()}


@attrs.frozen
class Schedule:
    """Opening hours in wall-clock minutes of `zone`.

    `weekly[0]` is Monday .. `weekly[6]` Sunday; `dates` (a `date`) and `yearly` ("MM-DD") replace a
    day's hours, an empty tuple meaning closed. Ranges are normalised (sorted, merged) on construction.
    """

    zone: ZoneInfo
    weekly: tuple[DayRanges, ...] = attrs.field(converter=_weekly)
    dates: Mapping[date, DayRanges] = attrs.field(factory=dict, converter=_by_key)
    yearly: Mapping[str, DayRanges] = attrs.field(factory=dict, converter=_by_key)

    def ranges_on(self, day: date) -> DayRanges:
        """The open ranges of a local date: its one-off override, else its yearly one, else its weekday's."""
        found = self.dates.get(day)
        if found is None:
            found = self.yearly.get(f"{day.month:02d}-{day.day:02d}")
        return self.weekly[day.weekday()] if found is None else found


# --- parsing -------------------------------------------------------------------------------------------


def parse_schedule(raw: Any, default_zone: str) -> Schedule | None:
    """The schedule stored as `raw` (any of the three shapes, or its JSON text), or None when nothing is
    configured. `default_zone` (the company's `timezone`) applies unless the object names its own.
    Raises ValueError, saying where and what, on malformed data."""
    if isinstance(raw, str | bytes):
        if not raw.strip():
            return None
        try:
            raw = json.loads(raw)
        except ValueError:
            raise ValueError("schedules: not valid JSON") from None
    if raw is None or (isinstance(raw, Mapping | list | tuple) and not raw):
        return None
    if isinstance(raw, Mapping):
        return _parse_object(raw, default_zone)
    if isinstance(raw, list | tuple):
        return _parse_days(raw, default_zone)
    raise ValueError("schedules: expected a list of days or an object {timezone, weeklyRules, overrides}")


def validate_schedule(raw: Any) -> None:
    """Raise ValueError (with a message fit for a 400 answer) unless `raw` is a schedule `parse_schedule`
    accepts; an object's `timezone`, when given, must be a known IANA zone."""
    parse_schedule(raw, "UTC")


def _zone(name: Any, where: str) -> ZoneInfo:
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{where}: {name!r} is not a time zone name")
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{where}: unknown time zone {name!r}") from None


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _minute(text: Any, where: str, *, end: bool) -> int:
    match = _TIME.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"{where}: {text!r} is not a time of day (HH:MM)")
    hour, minute, second = int(match[1]), int(match[2]), int(match[3] or 0)
    if minute > 59 or second > 59 or hour > 24 or (hour == 24 and (minute or second or not end)):
        raise ValueError(f"{where}: {text!r} is not a time of day (HH:MM)")
    value = hour * 60 + minute
    if end and value in (0, MINUTES_PER_DAY - 1):
        return MINUTES_PER_DAY  # "00:00", "23:59" and "24:00" end at midnight
    return value


def _range(start: Any, end: Any, where: str) -> Range:
    first = _minute(start, where, end=False)
    last = _minute(end, where, end=True)
    if last <= first:
        raise ValueError(
            f"{where}: {start!r}-{end!r} ends before it starts (a range cannot cross midnight: use two days)"
        )
    return first, last


def _day_name(value: Any, where: str) -> int:
    """0=Monday..6=Sunday from an English or Portuguese day name (accents, case and "-feira" ignored)."""
    if isinstance(value, str):
        folded = unicodedata.normalize("NFKD", value.strip().lower())
        folded = "".join(c for c in folded if not unicodedata.combining(c))
        folded = re.sub(r"[\s-]*feira$", "", folded)
        if folded in _DAY_NAMES:
            return _DAY_NAMES[folded]
    raise ValueError(f"{where}: {value!r} is not a day of the week")


def _entry_day(entry: Mapping[str, Any], where: str) -> int:
    english = entry.get("weekdayEn")
    if not _blank(english):
        return _day_name(english, f"{where}.weekdayEn")
    value = entry.get("weekday")
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        if not 0 <= value <= 6:
            raise ValueError(f"{where}.weekday: {value} is not 0 (Sunday) .. 6 (Saturday)")
        return (value + 6) % 7  # the family counts from Sunday, we from Monday
    if _blank(value):
        raise ValueError(f"{where}: names no day (weekdayEn or weekday)")
    return _day_name(value, f"{where}.weekday")


def _parse_days(entries: Sequence[Any], default_zone: str) -> Schedule:
    weekly: list[list[Range]] = [[] for _ in range(7)]
    for index, entry in enumerate(entries):
        where = f"schedules[{index}]"
        if not isinstance(entry, Mapping):
            raise ValueError(f"{where}: expected an object {{weekdayEn, startTime, endTime}}")
        day = _entry_day(entry, where)
        for start_key, end_key in _SHIFT_KEYS:
            start, end = entry.get(start_key), entry.get(end_key)
            if _blank(start) and _blank(end):
                continue
            if _blank(start) or _blank(end):
                raise ValueError(f"{where}: {start_key} and {end_key} go together (both times, or both empty)")
            weekly[day].append(_range(start, end, f"{where}.{start_key}"))
    return Schedule(zone=_zone(default_zone, "timezone"), weekly=weekly)


def _list_of(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list | tuple):
        raise ValueError(f"{where}: expected a list")
    return list(value)


def _hours(value: Any, where: str) -> list[Range]:
    ranges = []
    for index, hour in enumerate(_list_of(value, where)):
        if not isinstance(hour, Mapping):
            raise ValueError(f"{where}[{index}]: expected an object {{from, to}}")
        ranges.append(_range(hour.get("from"), hour.get("to"), f"{where}[{index}]"))
    return ranges


def _parse_object(raw: Mapping[str, Any], default_zone: str) -> Schedule | None:
    timezone = raw.get("timezone")
    zone = _zone(default_zone if _blank(timezone) else timezone, "schedules.timezone")
    if "weeklyRules" not in raw and "overrides" not in raw:
        if set(raw) - {"timezone"}:
            raise ValueError("schedules: expected a list of days or an object {timezone, weeklyRules, overrides}")
        return None

    weekly: list[list[Range]] = [[] for _ in range(7)]
    closed: set[int] = set()
    for index, rule in enumerate(_list_of(raw.get("weeklyRules"), "schedules.weeklyRules")):
        where = f"schedules.weeklyRules[{index}]"
        if not isinstance(rule, Mapping):
            raise ValueError(f"{where}: expected an object {{days, hours}}")
        days = [_day_name(day, f"{where}.days") for day in _list_of(rule.get("days"), f"{where}.days")]
        ranges = _hours(rule.get("hours"), f"{where}.hours")
        for day in days:
            if ranges:
                weekly[day].extend(ranges)
            else:
                closed.add(day)
    for day in closed:
        weekly[day] = []

    dates: dict[date, list[Range]] = {}
    yearly: dict[str, list[Range]] = {}
    for index, override in enumerate(_list_of(raw.get("overrides"), "schedules.overrides")):
        where = f"schedules.overrides[{index}]"
        if not isinstance(override, Mapping):
            raise ValueError(f"{where}: expected an object {{date, repeat?, closed?, hours?}}")
        is_closed = override.get("closed")
        if not isinstance(is_closed, bool | None):
            raise ValueError(f"{where}.closed: expected true or false")
        ranges = [] if is_closed else _hours(override.get("hours"), f"{where}.hours")
        repeat = override.get("repeat")
        text = override.get("date")
        if _blank(repeat) or repeat == "none":
            dates.setdefault(_one_date(text, f"{where}.date"), ranges)
        elif repeat == "yearly":
            yearly.setdefault(_month_day(text, f"{where}.date"), ranges)
        else:
            raise ValueError(f'{where}.repeat: {repeat!r} is not "yearly" (or absent)')
    return Schedule(zone=zone, weekly=weekly, dates=dates, yearly=yearly)


def _one_date(text: Any, where: str) -> date:
    match = _DATE.fullmatch(text.strip()) if isinstance(text, str) else None
    try:
        if match is None:
            raise ValueError
        return date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        raise ValueError(f"{where}: {text!r} is not a date (YYYY-MM-DD)") from None


def _month_day(text: Any, where: str) -> str:
    match = _MONTH_DAY.fullmatch(text.strip()) if isinstance(text, str) else None
    try:
        if match is None:
            raise ValueError
        date(2000, int(match[1]), int(match[2]))  # a leap year: 02-29 is a day
    except ValueError:
        raise ValueError(f"{where}: {text!r} is not a date (YYYY-MM-DD or MM-DD)") from None
    return f"{match[1]}-{match[2]}"


# --- evaluating ----------------------------------------------------------------------------------------


def _local(schedule: Schedule, at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("business hours need a timezone-aware instant")
    return at.astimezone(schedule.zone)


def is_open(schedule: Schedule, at: datetime) -> bool:
    """Whether the instant `at` (aware) falls in an open range of the schedule's local day."""
    local = _local(schedule, at)
    minute = local.hour * 60 + local.minute
    return any(start <= minute < end for start, end in schedule.ranges_on(local.date()))


def next_open(schedule: Schedule, at: datetime) -> datetime | None:
    """The first instant at or after `at` at which the schedule is open (`at` itself when open now), in
    UTC; None when it does not open within `SEARCH_DAYS` days.

    UTC on purpose: an aware datetime in the fold of a zone (the repeated hour) compares unequal to every
    datetime of another zone (PEP 495), so a local answer could never match what was stored.

    Every instant of one closed period gives the same answer, so the caller can remember it as the end
    of the period (compare instants, not wall times).

    The opening instant is either a range's start reached as the clock runs (a wall time, possibly one
    of the two occurrences of a repeated hour) or a change of UTC offset that jumps the clock into a
    range (a start in the skipped hour): both kinds of candidate are tried, the earliest open one wins.
    """
    local = _local(schedule, at)
    at_utc = at.astimezone(UTC)
    if is_open(schedule, at):
        return at_utc
    zone = schedule.zone
    best: datetime | None = None
    first_day = local.date() - timedelta(days=1)
    for offset in range(SEARCH_DAYS + 2):
        day = first_day + timedelta(days=offset)
        if best is not None and day > best.astimezone(zone).date() + timedelta(days=1):
            break
        for start, _end in schedule.ranges_on(day):
            for fold in (0, 1):
                wall = datetime.combine(day, time(start // 60, start % 60, fold=fold), tzinfo=zone)
                candidate = wall.astimezone(UTC)
                if at_utc < candidate and (best is None or candidate < best) and is_open(schedule, candidate):
                    best = candidate
    end = best if best is not None else at_utc + timedelta(days=SEARCH_DAYS)
    for change in _offset_changes(zone, at_utc, end):
        if at_utc < change and (best is None or change < best) and is_open(schedule, change):
            best = change
            break
    return best


def _offset_changes(zone: ZoneInfo, start: datetime, end: datetime) -> list[datetime]:
    """The instants in [start, end] at which `zone` changes its UTC offset, to the second (in UTC).
    Found by stepping 12 hours and bisecting a change (no zone changes twice within 12 hours)."""

    def offset(timestamp: int) -> timedelta | None:
        return datetime.fromtimestamp(timestamp, UTC).astimezone(zone).utcoffset()

    changes = []
    step = 12 * 3600
    low = int(start.timestamp())
    stop = int(end.timestamp()) + 1
    low_offset = offset(low)
    while low < stop:
        high = min(low + step, stop)
        high_offset = offset(high)
        if high_offset != low_offset:
            before, after = low, high
            while after - before > 1:
                middle = (before + after) // 2
                if offset(middle) == low_offset:
                    before = middle
                else:
                    after = middle
            changes.append(datetime.fromtimestamp(after, UTC))
        low, low_offset = high, high_offset
    return changes
