"""Periods and buckets of the dashboard (api/dashboard_time.py), no I/O: the zone of `tz`, whole-hour
zones vs :30/:45 ones, DST days' hour counts, ticketz's bucket sizes, bad input."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from api.dashboard_time import PeriodError, field_for, layout, period_of, series_of, zone_of


def day(date: str, tz: str = "") -> dict[str, str]:
    return {"date_from": date, "date_to": date, "tz": tz}


@pytest.mark.parametrize(("date", "tz", "hours"), [
    ("2018-11-04", "America/Sao_Paulo", 23), ("2018-02-17", "America/Sao_Paulo", 25),
    ("2018-03-25", "Europe/Lisbon", 23), ("2018-10-28", "Europe/Lisbon", 25), ("2018-10-28", "UTC", 24),
    ("2018-11-04", "-03:00", 24), ("2019-11-04", "America/Sao_Paulo", 24),  # no DST in Brazil since 2019
])
def test_a_local_day_has_its_hours(date: str, tz: str, hours: int) -> None:
    period = period_of(day(date, tz), "UTC")
    assert not period.raw
    assert (period.until - period.since) == dt.timedelta(hours=hours)
    starts, index = layout(period.zone, period.since, period.until, period.raw, "hour")
    assert len(starts) == hours == len(index)


def test_half_hour_zones_are_raw_and_whole_hour_ones_not() -> None:
    assert period_of(day("2018-11-04", "Asia/Kolkata"), "UTC").raw
    assert period_of(day("2018-11-04", "Asia/Kathmandu"), "UTC").raw
    assert period_of(day("2018-11-04", "+05:30"), "UTC").raw
    assert not period_of(day("2018-11-04", "Asia/Tokyo"), "UTC").raw
    assert not period_of(day("2018-11-04"), "America/Sao_Paulo").raw  # the default: the company's zone
    kolkata = period_of(day("2018-11-04", "Asia/Kolkata"), "UTC")
    assert kolkata.since == dt.datetime(2018, 11, 3, 18, 30, tzinfo=dt.UTC)
    assert kolkata.until - kolkata.since == dt.timedelta(days=1)


def test_offsets_read_as_iso_not_posix() -> None:
    assert zone_of("-03:00", "UTC").utcoffset(None) == dt.timedelta(hours=-3)
    assert zone_of("+0530", "UTC").utcoffset(None) == dt.timedelta(hours=5, minutes=30)
    assert zone_of("Z", "UTC") is dt.UTC
    assert zone_of("", "Europe/Lisbon") == ZoneInfo("Europe/Lisbon")


@pytest.mark.parametrize(("first", "last", "field"), [
    ("2018-11-01", "2018-11-01", "hour"), ("2018-11-01", "2018-11-07", "hour"),
    ("2018-11-01", "2018-11-09", "three_hours"),
    ("2018-11-01", "2018-11-20", "six_hours"), ("2018-11-01", "2018-11-30", "twelve_hours"),
    ("2018-01-01", "2018-12-31", "day"),
])
def test_bucket_sizes_follow_ticketz(first: str, last: str, field: str) -> None:
    assert field_for(period_of({"date_from": first, "date_to": last}, "UTC")) == field


def test_rows_land_in_their_local_buckets() -> None:
    period = period_of({"date_from": "2018-11-03", "date_to": "2018-11-04"}, "America/Sao_Paulo")
    rows = [{"hour": dt.datetime(2018, 11, 4, 2, tzinfo=dt.UTC), "n": 1},  # 23:00 on the 3rd
            {"hour": dt.datetime(2018, 11, 4, 3, tzinfo=dt.UTC), "n": 2},  # 01:00 -02 on the 4th
            {"hour": dt.datetime(2018, 11, 5, 2, tzinfo=dt.UTC), "n": 4}]  # 00:00 on the 5th: outside
    days = {c["time"]: c["counter"] for c in series_of(period, "day", rows, ["n"])["n"]}
    assert days == {"2018-11-03T00:00:00-03:00": 1, "2018-11-04T01:00:00-02:00": 2}
    hours = series_of(period, "hour", rows, ["n"])["n"]
    assert len(hours) == 24 + 23 and sum(c["counter"] for c in hours) == 3


@pytest.mark.parametrize("args", [
    {}, {"date_from": "2018-11-04"}, {"date_from": "2018-11-04", "date_to": "2018-11-03"},
    {"date_from": "2018-02-30", "date_to": "2018-03-01"}, {"date_from": "2017-01-01", "date_to": "2018-03-01"},
    {**day("2018-11-04"), "tz": "Not/AZone"}, {**day("2018-11-04"), "tz": "../../etc/passwd"},
    {**day("2018-11-04"), "tz": "+15:00"}, {**day("2018-11-04"), "hour_from": "24:00"},
    {**day("2018-11-04"), "hour_from": "12:00", "hour_to": "11:00"},
])
def test_bad_periods_name_their_field(args: dict[str, str]) -> None:
    with pytest.raises(PeriodError) as raised:
        period_of(args, "UTC")
    assert raised.value.field in ("date_from", "date_to", "tz", "hour_from", "hour_to")
