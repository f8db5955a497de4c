"""Recurring scheduled messages: when the next one goes out. Pure: no I/O, no clock of its own.

A series is a `Rule`: its first occurrence (`anchor`, an aware instant), then every `every` minutes, days,
weeks or months, or the times of a cron expression; at most `count` sends in all, none after `until`; with
`skip_to_business_day`, an occurrence on a day the company is closed goes out at the same local time on the
next day it is open. `first_send` answers the first occurrence, `next_send` the one after a send; both in
the company's zone (`zone`), both as an `Occurrence`: when to send (`at`) and the series' own time it stands
for (`nominal`, before the business-day skip). Everything is returned in UTC.

How time is counted (where the Gold variant adds a fixed 30 days for a month and loses the local time of
day across a DST change, these are the choices):
- minutes are elapsed time: every 90 minutes is 90 real minutes, whatever the wall clock does;
- days, weeks and months are calendar steps in the company's zone that keep the anchor's local time of day:
  a daily 09:00 stays 09:00 across a DST change. A local time the change skips (02:30 on the spring-forward
  night) is sent at the instant the clock jumps to after it (03:30 local); a repeated one (the fall-back
  hour) at its first occurrence;
- months keep the anchor's day of month, clamped to the month's length: Jan 31 + 1 month is Feb 28 (29),
  + 2 months is Mar 31 (each occurrence counted from the anchor, never from the clamped one before it);
- cron: the expression's local times in the zone (croniter), the first at or after the anchor;
- the next occurrence is the first of the series after the last send's time, its series time, and `now`:
  occurrences missed while zapgate was down are not sent in a burst on restart (the one that fell due is
  sent once; the series resumes at its next time to come);
- business days (`skip_to_business_day`): the days the business hours (`hours`, actors/automation/hours.py,
  the company's) have any open range on; with no hours configured, Monday to Friday. A series whose hours
  never open (within `hours.SEARCH_DAYS`) is not moved;
- `count` counts sends; `until` bounds the send time (an occurrence moved past `until` by the skip is not
  sent, and ends the series).
"""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import attrs
from croniter import CroniterBadCronError, CroniterBadDateError, CroniterNotAlphaError, croniter

from actors.automation.hours import SEARCH_DAYS, Schedule

KINDS = ("none", "minutes", "days", "weeks", "months", "cron")
STEP_KINDS = ("minutes", "days", "weeks", "months")
MAX_EVERY = {"minutes": 525_600, "days": 3650, "weeks": 520, "months": 120}  # a year, or ten years


class BadRule(ValueError):
    """A rule that cannot make a series (an unknown kind, a step out of range, a cron expression croniter
    refuses); its message is fit for a 400 answer."""


@attrs.frozen
class Rule:
    anchor: datetime  # the first occurrence as asked (aware)
    kind: str = "none"
    every: int = 1
    cron: str | None = None
    count: int | None = None  # sends in all (None: no limit; "none" sends once)
    until: datetime | None = None  # no send after this instant
    skip_to_business_day: bool = False

    @property
    def recurring(self) -> bool:
        return self.kind != "none"


@attrs.frozen
class Occurrence:
    at: datetime  # when it is sent (UTC), the business-day skip applied
    nominal: datetime  # the series' own time it stands for (UTC)


def check_rule(rule: Rule) -> None:
    """Raise BadRule unless `rule` can make a series."""
    if rule.kind not in KINDS:
        raise BadRule(f"must be one of {', '.join(KINDS)}")
    if rule.anchor.tzinfo is None or (rule.until is not None and rule.until.tzinfo is None):
        raise BadRule("times must be timezone-aware")
    if rule.kind in STEP_KINDS and not 1 <= rule.every <= MAX_EVERY[rule.kind]:
        raise BadRule(f"every must be between 1 and {MAX_EVERY[rule.kind]} {rule.kind}")
    if rule.kind == "cron":
        check_cron(rule.cron or "")
    if rule.count is not None and rule.count < 1:
        raise BadRule("count must be at least 1")


def check_cron(expression: str) -> None:
    """Raise BadRule unless croniter takes `expression` as a five-field cron expression."""
    fields = expression.split()
    if len(fields) != 5:
        raise BadRule("a cron expression has five fields: minute hour day-of-month month day-of-week")
    try:
        croniter(expression, datetime(2000, 1, 1, tzinfo=UTC))
    except (CroniterBadCronError, CroniterBadDateError, CroniterNotAlphaError, ValueError, KeyError) as error:
        raise BadRule(f"not a valid cron expression ({error})") from None


def first_send(rule: Rule, zone: ZoneInfo, hours: Schedule | None) -> Occurrence | None:
    """The series' first occurrence (None when `until` comes before it)."""
    nominal = _cron_after(rule, zone, rule.anchor - timedelta(seconds=1)) if rule.kind == "cron" \
        else rule.anchor.astimezone(UTC)
    if nominal is None:
        return None
    return _occurrence(rule, nominal, zone, hours)


def next_send(rule: Rule, last: Occurrence, zone: ZoneInfo, hours: Schedule | None, *, sent: int,
              now: datetime) -> Occurrence | None:
    """The occurrence after `last` (the one just sent; `sent` sends made so far, that one included), after
    `now` too; None when the series is over (a one-off, `count` reached, past `until`)."""
    if not rule.recurring or (rule.count is not None and sent >= rule.count):
        return None
    after = max(last.at, last.nominal, now).astimezone(UTC)
    nominal = _cron_after(rule, zone, after) if rule.kind == "cron" else _step_after(rule, zone, after)
    if nominal is None:
        return None
    return _occurrence(rule, nominal, zone, hours)


def _occurrence(rule: Rule, nominal: datetime, zone: ZoneInfo, hours: Schedule | None) -> Occurrence | None:
    at = next_business_day(nominal, zone, hours) if rule.skip_to_business_day else nominal
    if rule.until is not None and at > rule.until:
        return None
    return Occurrence(at.astimezone(UTC), nominal.astimezone(UTC))


# ─── the series' own times ──────────────────────────────────────────────────────────────

def _wall(day: date, clock: time, zone: ZoneInfo) -> datetime:
    """The instant of a local date and time (fold 0: a skipped time lands after the jump, a repeated one at
    its first occurrence), in UTC."""
    return datetime.combine(day, clock.replace(tzinfo=None, fold=0), tzinfo=zone).astimezone(UTC)


def _nth(rule: Rule, zone: ZoneInfo, k: int) -> datetime:
    """The k-th occurrence of a stepped series (k = 0: the anchor)."""
    if rule.kind == "minutes":
        return rule.anchor.astimezone(UTC) + timedelta(minutes=rule.every * k)
    local = rule.anchor.astimezone(zone)
    if rule.kind in ("days", "weeks"):
        days = rule.every * k * (7 if rule.kind == "weeks" else 1)
        return _wall(local.date() + timedelta(days=days), local.time(), zone)
    months = local.month - 1 + rule.every * k
    year, month = local.year + months // 12, months % 12 + 1
    day = min(local.day, calendar.monthrange(year, month)[1])
    return _wall(date(year, month, day), local.time(), zone)


def _step_after(rule: Rule, zone: ZoneInfo, after: datetime) -> datetime | None:
    """The first occurrence of a stepped series strictly after `after`."""
    anchor = rule.anchor.astimezone(UTC)
    if after < anchor:
        return anchor
    local, start = after.astimezone(zone), rule.anchor.astimezone(zone)
    if rule.kind == "minutes":
        k = int((after - anchor) // timedelta(minutes=rule.every))
    elif rule.kind in ("days", "weeks"):
        k = (local.date() - start.date()).days // (rule.every * (7 if rule.kind == "weeks" else 1))
    else:
        k = ((local.year - start.year) * 12 + local.month - start.month) // rule.every
    k = max(0, k - 1)  # an estimate from below: step forward to the first one after
    for _ in range(1000):
        candidate = _nth(rule, zone, k)
        if candidate > after:
            return candidate
        k += 1
    return None  # unreachable for the kinds above (the estimate is at most two steps short)


def _cron_after(rule: Rule, zone: ZoneInfo, after: datetime) -> datetime | None:
    """The first time of the cron expression strictly after `after`, read in the company's zone."""
    try:
        found = croniter(rule.cron or "", after.astimezone(zone)).get_next(datetime)
    except (CroniterBadCronError, CroniterBadDateError, ValueError):
        return None  # an expression that never matches again (a 30th of February)
    return found.astimezone(UTC)


# ─── business days ──────────────────────────────────────────────────────────────────────

def is_business_day(day: date, hours: Schedule | None) -> bool:
    """A day the company's hours open on (any range); without hours, Monday to Friday."""
    if hours is None:
        return day.weekday() < 5
    return bool(hours.ranges_on(day))


def next_business_day(at: datetime, zone: ZoneInfo, hours: Schedule | None) -> datetime:
    """`at` when its local day is a business day; else the same local time on the next one (UTC). The day
    is read in the hours' own zone when they name one."""
    day_zone = hours.zone if hours is not None else zone
    day = at.astimezone(day_zone).date()
    if is_business_day(day, hours):
        return at.astimezone(UTC)
    for offset in range(1, SEARCH_DAYS + 1):
        candidate = day + timedelta(days=offset)
        if is_business_day(candidate, hours):
            return _wall(candidate, at.astimezone(zone).time(), zone)
    return at.astimezone(UTC)  # never open: not moved
