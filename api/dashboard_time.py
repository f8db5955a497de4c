"""Periods and buckets of the dashboard, in a time zone (issue 17). Pure: no I/O.

A period is given as the family gives it: `date_from`, `date_to` (YYYY-MM-DD, both included), optional
`hour_from`/`hour_to` (HH:mm[:ss]) and `tz` — an IANA name (`America/Sao_Paulo`) or an offset (`-03:00`,
what ticketz's dashboard sends); without `tz`, the company's `timezone` setting. Counters are per UTC hour,
so the period is taken to whole hours of its zone: `hour_from` down to its hour, `hour_to` up to the end of
its hour. A zone whose offset is whole hours during the period (nearly all) re-buckets UTC hours exactly,
DST included: a local day is 23, 24 or 25 UTC hours. A zone with a :30 or :45 offset at any moment of the
period (India, Nepal, Newfoundland, parts of Australia) is answered from the events per quarter hour
(`raw`), slower but exact.

Buckets follow ticketz's `field` by the period's length (it used half hours under 3 days; zapgate's finest
is the hour): `hour` under 8 days, `three_hours` under 10, `six_hours` under 30, `twelve_hours` under 90,
`day` beyond. A bucket of N hours starts at a local wall-clock hour multiple of N; every bucket of the
period is listed, empty ones with 0, each `time` the bucket's start with its offset.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import zoneinfo
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

HOUR = dt.timedelta(hours=1)
QUARTER = dt.timedelta(minutes=15)
MAX_DAYS = 400  # a longer period is refused: the work grows with it
OFFSET = re.compile(r"(?:UTC|GMT)?([+-])(\d{2}):?(\d{2})|Z|UTC|GMT")
DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
TIME = re.compile(r"(\d{2}):(\d{2})(?::(\d{2}))?")
FIELD_HOURS = {"hour": 1, "three_hours": 3, "six_hours": 6, "twelve_hours": 12}


class PeriodError(ValueError):
    """A bad period: the field it names and why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@attrs.frozen
class Period:
    zone: dt.tzinfo
    start: dt.datetime  # the first local instant, in `zone`
    end: dt.datetime  # excluded, in `zone`
    raw: bool  # the zone is not whole hours somewhere in the period: answer from the events
    since: dt.datetime  # UTC, the first counter hour (or quarter, raw)
    until: dt.datetime  # UTC, excluded


def zone_of(raw: str | None, default: str) -> dt.tzinfo:
    """The `tz` parameter as a tzinfo (an IANA zone or a fixed offset); the company's zone without it."""
    name = (raw or "").strip()
    if not name:
        return zoneinfo.ZoneInfo(default)
    match = OFFSET.fullmatch(name)
    if match:
        if match.group(1) is None:
            return dt.UTC
        hours, minutes = int(match.group(2)), int(match.group(3))
        if hours > 14 or minutes >= 60:
            raise PeriodError("tz", "must be an IANA time zone or an offset like -03:00")
        offset = dt.timedelta(hours=hours, minutes=minutes)
        return dt.timezone(-offset if match.group(1) == "-" else offset)
    if len(name) > 64 or not re.fullmatch(r"[A-Za-z0-9_+\-/]+", name):
        raise PeriodError("tz", "must be an IANA time zone or an offset like -03:00")
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise PeriodError("tz", f"unknown time zone {name!r}") from None


def _date(args: Mapping[str, str], name: str) -> dt.date:
    raw = (args.get(name) or "").strip()
    if not DATE.fullmatch(raw):
        raise PeriodError(name, "must be a date YYYY-MM-DD")
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise PeriodError(name, "must be a date YYYY-MM-DD") from None


def _time(args: Mapping[str, str], name: str, default: dt.time) -> dt.time:
    raw = (args.get(name) or "").strip()
    if not raw:
        return default
    match = TIME.fullmatch(raw)
    if not match or int(match.group(1)) > 23 or int(match.group(2)) > 59 or int(match.group(3) or 0) > 59:
        raise PeriodError(name, "must be a time HH:mm or HH:mm:ss")
    return dt.time(int(match.group(1)), int(match.group(2)), int(match.group(3) or 0))


def utc_floor(instant: dt.datetime, step: dt.timedelta) -> dt.datetime:
    epoch = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    return epoch + (instant.astimezone(dt.UTC) - epoch) // step * step


@functools.lru_cache(maxsize=256)
def whole_hours(zone: dt.tzinfo, since: dt.datetime, until: dt.datetime) -> bool:
    """Whether the zone's offset is a whole number of hours at every hour of [since, until) (cached: the same
    dashboard is asked again and again)."""
    at = utc_floor(since, HOUR)
    while at < until + HOUR:
        offset = at.astimezone(zone).utcoffset() or dt.timedelta()
        if offset % HOUR:
            return False
        at += HOUR
    return True


def period_of(args: Mapping[str, str], default_zone: str, *, dates_required: bool = True,
              default_days: int = 30) -> Period:
    """The period of a request's arguments (`date_from`, `date_to`, `hour_from`, `hour_to`, `tz`)."""
    zone = zone_of(args.get("tz"), default_zone)
    if not dates_required and not (args.get("date_from") or args.get("date_to")):
        today = dt.datetime.now(zone).date()
        first, last = today - dt.timedelta(days=default_days - 1), today
    else:
        first, last = _date(args, "date_from"), _date(args, "date_to")
    if last < first:
        raise PeriodError("date_to", "must not be before date_from")
    if (last - first).days > MAX_DAYS:
        raise PeriodError("date_to", f"a period is at most {MAX_DAYS} days")
    start_time = _time(args, "hour_from", dt.time(0, 0))
    end_time = _time(args, "hour_to", dt.time(23, 59, 59))
    # the start: a local time in a DST gap (fold 0) is read with the offset before the change, the first real
    # instant after it; a repeated one (fold 0), its first occurrence. The end: a repeated hour's second
    # occurrence (fold 1), so that São Paulo's 2018-02-17, whose 23:00 came twice, ends after both
    start = dt.datetime.combine(first, start_time.replace(second=0, minute=0), zone)
    last_hour = dt.datetime.combine(last, end_time.replace(second=0, minute=0), zone).replace(fold=1)
    end = last_hour.astimezone(dt.UTC) + HOUR
    if end <= start:
        raise PeriodError("hour_to", "must be after hour_from")
    since = start.astimezone(dt.UTC)
    raw = not whole_hours(zone, since, end)
    if raw:
        since, end = utc_floor(since, QUARTER), utc_floor(end, QUARTER)
    return Period(zone=zone, start=start, end=end.astimezone(zone), raw=raw, since=since, until=end)


def field_for(period: Period) -> str:
    days = (period.until - period.since) // dt.timedelta(days=1)
    if days < 8:
        return "hour"
    if days < 10:
        return "three_hours"
    if days < 30:
        return "six_hours"
    if days < 90:
        return "twelve_hours"
    return "day"


def bucket_start(instant: dt.datetime, field: str, zone: dt.tzinfo) -> dt.datetime:
    """The start of the bucket holding `instant`, in `zone` (a wall-clock hour multiple, or local midnight)."""
    local = instant.astimezone(zone)
    if field == "day":
        start = dt.datetime.combine(local.date(), dt.time(), zone)
    elif field == "hour":  # the local hour holding it: on a repeated hour (fold), its own occurrence
        start = local.replace(minute=0, second=0, microsecond=0)
    else:
        size = FIELD_HOURS[field]
        start = local.replace(hour=local.hour - local.hour % size, minute=0, second=0, microsecond=0, fold=0)
    # a wall-clock start in a DST gap (São Paulo's midnights of 2018-11-04) is the first real instant after it
    return start.astimezone(dt.UTC).astimezone(zone)


@functools.lru_cache(maxsize=256)
def layout(zone: dt.tzinfo, since: dt.datetime, until: dt.datetime, raw: bool,
           field: str) -> tuple[tuple[dt.datetime, ...], dict[dt.datetime, int]]:
    """The period's buckets in order (their local starts) and, for each counter row's key (a UTC hour, or a
    quarter hour when raw), its bucket's index. Cached: computing it is most of a dashboard's Python time."""
    step = QUARTER if raw else HOUR
    starts: list[dt.datetime] = []
    index: dict[dt.datetime, int] = {}
    by_start: dict[dt.datetime, int] = {}
    at = since
    while at < until:
        start = bucket_start(at, field, zone)
        key = start.astimezone(dt.UTC)
        if key not in by_start:
            by_start[key] = len(starts)
            starts.append(start)
        index[at] = by_start[key]
        at += step
    return tuple(starts), index


def series_of(period: Period, field: str, rows: Iterable[Mapping[str, Any]],
              columns: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
    """For each column, every bucket of the period in order, `{time, counter}`: the sums of the column over
    the rows (keyed by `hour`: a UTC hour, or a quarter hour when raw) the bucket holds."""
    starts, index = layout(period.zone, period.since, period.until, period.raw, field)
    columns = list(columns)
    sums = {column: [0] * len(starts) for column in columns}
    for row in rows:
        slot = index.get(row["hour"])
        if slot is not None:
            for column in columns:
                sums[column][slot] += row[column]
    times = [start.isoformat() for start in starts]
    return {column: [{"time": time, "counter": count} for time, count in zip(times, sums[column], strict=True)]
            for column in columns}


def series(period: Period, field: str, rows: Iterable[Mapping[str, Any]], column: str) -> list[dict[str, Any]]:
    """One column's buckets (`series_of` for one column)."""
    return series_of(period, field, rows, [column])[column]


def local_hour_grid(period: Period, rows: Iterable[Mapping[str, Any]], column: str) -> list[list[int]]:
    """A 7x24 heat map (ISO weekday 1..7 → rows 0..6, local hour 0..23) of `column` per UTC hour."""
    grid = [[0] * 24 for _ in range(7)]
    for row in rows:
        local = row["hour"].astimezone(period.zone)
        grid[local.isoweekday() - 1][local.hour] += row[column]
    return grid
