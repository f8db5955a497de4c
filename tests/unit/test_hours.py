"""Business hours (actors/automation/hours.py): the three stored shapes, overrides, and the period end
(`next_open`) across weekends, holidays and DST changes in both directions — with fixed instants, no clock."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.automation.hours import Schedule, _offset_changes, is_open, next_open, parse_schedule, validate_schedule

SP = ZoneInfo("America/Sao_Paulo")
LISBON = ZoneInfo("Europe/Lisbon")
NEW_YORK = ZoneInfo("America/New_York")
DEFAULT = "America/Sao_Paulo"

PT_DAYS = ["Segunda-feira", "Terça-feira", "Quarta-feira", "Quinta-feira", "Sexta-feira", "Sábado", "Domingo"]
EN_DAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]


def week_days(start: str = "08:00", end: str = "18:00") -> list[dict[str, str]]:
    """The family's 7-day list: Monday-Friday open, the weekend empty (closed)."""
    return [
        {"weekday": pt, "weekdayEn": en, "startTime": start if i < 5 else "", "endTime": end if i < 5 else ""}
        for i, (pt, en) in enumerate(zip(PT_DAYS, EN_DAYS, strict=True))
    ]


def ticketz(rules: list[dict], overrides: list[dict] | None = None, timezone: str | None = None) -> dict:
    raw: dict = {"weeklyRules": rules, "overrides": overrides or []}
    if timezone is not None:
        raw["timezone"] = timezone
    return raw


def at(zone: ZoneInfo, *args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=zone, fold=fold)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def parsed(raw: object, default: str = DEFAULT) -> Schedule:
    schedule = parse_schedule(raw, default)
    assert schedule is not None
    return schedule


# --- the 7-day list ------------------------------------------------------------------------------------


def test_seven_day_list_opens_weekdays_between_start_and_end() -> None:
    schedule = parsed(week_days())
    assert schedule.zone == SP
    monday = (2026, 3, 2)  # a Monday
    assert is_open(schedule, at(SP, *monday, 8, 0))
    assert is_open(schedule, at(SP, *monday, 17, 59, 59))
    assert not is_open(schedule, at(SP, *monday, 7, 59, 59))
    assert not is_open(schedule, at(SP, *monday, 18, 0))  # [start, end)
    assert not is_open(schedule, at(SP, 2026, 3, 7, 12, 0))  # Saturday: empty times, closed
    assert not is_open(schedule, at(SP, 2026, 3, 8, 12, 0))  # Sunday


def test_evaluated_in_the_schedules_zone_whatever_the_instants_zone() -> None:
    schedule = parsed(week_days())
    # Monday 08:30 in São Paulo, given in UTC and in Tokyo (already Monday evening there).
    assert is_open(schedule, utc(2026, 3, 2, 11, 30))
    assert is_open(schedule, utc(2026, 3, 2, 11, 30).astimezone(ZoneInfo("Asia/Tokyo")))
    # 10:30 UTC (within 08-18 in UTC and in Lisbon) is 07:30 in São Paulo: closed.
    assert not is_open(schedule, utc(2026, 3, 2, 10, 30))


def test_weekday_numbers_count_from_sunday_as_the_family_does() -> None:
    entries = [{"weekday": n, "startTime": "08:00", "endTime": "12:00"} for n in (1, 6)]  # Monday, Saturday
    entries.append({"weekday": "0", "startTime": "10:00", "endTime": "11:00"})  # Sunday, as text
    schedule = parsed(entries)
    assert schedule.weekly[0] == ((480, 720),)  # Monday
    assert schedule.weekly[5] == ((480, 720),)  # Saturday
    assert schedule.weekly[6] == ((600, 660),)  # Sunday
    assert schedule.weekly[1:5] == ((), (), (), ())
    assert is_open(schedule, at(SP, 2026, 3, 8, 10, 30))  # a Sunday


@pytest.mark.parametrize(
    ("name", "index"),
    [
        ("Segunda-feira", 0),
        ("segunda", 0),
        ("Terça-feira", 1),
        ("terca feira", 1),
        ("TERÇA", 1),
        ("Quarta", 2),
        ("quinta-feira", 3),
        ("Sexta-Feira", 4),
        ("Sábado", 5),
        ("sabado", 5),
        ("Domingo", 6),
        ("Monday", 0),
        ("sun", 6),
    ],
)
def test_portuguese_and_english_day_names_without_weekday_en(name: str, index: int) -> None:
    schedule = parsed([{"weekday": name, "startTime": "09:00", "endTime": "10:00"}])
    assert schedule.weekly[index] == ((540, 600),)
    assert sum(bool(day) for day in schedule.weekly) == 1


def test_weekday_en_wins_over_weekday() -> None:
    schedule = parsed([{"weekday": "Lunes", "weekdayEn": "friday", "startTime": "09:00", "endTime": "10:00"}])
    assert schedule.weekly[4] == ((540, 600),)
    schedule = parsed([{"weekday": 1, "weekdayEn": "friday", "startTime": "09:00", "endTime": "10:00"}])
    assert schedule.weekly[4] == ((540, 600),) and schedule.weekly[0] == ()


def test_missing_days_are_closed_and_repeated_days_add_up() -> None:
    schedule = parsed(
        [
            {"weekdayEn": "monday", "startTime": "08:00", "endTime": "12:00"},
            {"weekdayEn": "monday", "startTime": "11:00", "endTime": "15:00"},
            {"weekdayEn": "monday", "startTime": "16:00", "endTime": "17:00"},
        ]
    )
    assert schedule.weekly[0] == ((480, 900), (960, 1020))  # overlapping ranges merged
    assert all(day == () for day in schedule.weekly[1:])


def test_end_of_day_spellings_reach_midnight() -> None:
    for end in ("23:59", "00:00", "24:00", "23:59:59"):
        schedule = parsed([{"weekdayEn": "monday", "startTime": "20:00", "endTime": end}])
        assert schedule.weekly[0] == ((1200, 1440),), end
        assert is_open(schedule, at(SP, 2026, 3, 2, 23, 59, 30))
        assert not is_open(schedule, at(SP, 2026, 3, 3, 0, 0))  # Tuesday is closed
    whole = parsed([{"weekdayEn": "monday", "startTime": "00:00", "endTime": "00:00"}])
    assert whole.weekly[0] == ((0, 1440),)


def test_a_configured_list_with_every_day_empty_is_always_closed() -> None:
    schedule = parsed(week_days(start="", end=""))
    assert all(day == () for day in schedule.weekly)
    assert not is_open(schedule, at(SP, 2026, 3, 2, 10, 0))
    assert next_open(schedule, at(SP, 2026, 3, 2, 10, 0)) is None


# --- the two-shift list --------------------------------------------------------------------------------


def test_two_shifts_close_at_lunch() -> None:
    entries = [
        {
            "weekday": pt,
            "weekdayEn": en,
            "startTimeA": "08:00",
            "endTimeA": "12:00",
            "startTimeB": "13:00",
            "endTimeB": "18:00",
        }
        for pt, en in zip(PT_DAYS[:5], EN_DAYS[:5], strict=True)
    ]
    entries.append(
        {
            "weekday": "Sábado",
            "weekdayEn": "saturday",
            "startTimeA": "09:00",
            "endTimeA": "13:00",
            "startTimeB": "",
            "endTimeB": "",
        }
    )
    entries.append(
        {
            "weekday": "Domingo",
            "weekdayEn": "sunday",
            "startTimeA": "",
            "endTimeA": "",
            "startTimeB": "",
            "endTimeB": "",
        }
    )
    schedule = parsed(entries)
    assert schedule.weekly[2] == ((480, 720), (780, 1080))
    assert schedule.weekly[5] == ((540, 780),)
    assert schedule.weekly[6] == ()
    wednesday = (2026, 3, 4)
    assert is_open(schedule, at(SP, *wednesday, 11, 59))
    assert not is_open(schedule, at(SP, *wednesday, 12, 30))
    assert next_open(schedule, at(SP, *wednesday, 12, 30)) == at(SP, *wednesday, 13, 0)
    assert is_open(schedule, at(SP, 2026, 3, 7, 12, 0))  # Saturday morning shift only
    assert not is_open(schedule, at(SP, 2026, 3, 7, 14, 0))


# --- ticketz's object ----------------------------------------------------------------------------------


def test_object_timezone_wins_over_the_default() -> None:
    rules = [{"days": ["mon", "tue", "wed", "thu", "fri"], "hours": [{"from": "09:00", "to": "18:00"}]}]
    own = parsed(ticketz(rules, timezone="Europe/Lisbon"))
    default = parsed(ticketz(rules))
    blank = parsed(ticketz(rules, timezone=""))
    assert own.zone == LISBON and default.zone == SP and blank.zone == SP
    instant = utc(2026, 3, 2, 10, 0)  # 10:00 in Lisbon, 07:00 in São Paulo
    assert is_open(own, instant)
    assert not is_open(default, instant)
    # The list shapes have no zone of their own: the default applies.
    assert parsed(week_days(), default="Europe/Lisbon").zone == LISBON


def test_rules_add_up_and_a_rule_without_hours_closes_its_days_in_any_order() -> None:
    open_rule = {"days": ["mon", "tue", "wed", "thu", "fri", "sat"], "hours": [{"from": "09:00", "to": "18:00"}]}
    extra = {"days": ["Monday"], "hours": [{"from": "19:00", "to": "21:00"}]}
    closed_rule = {"days": ["sat"], "hours": []}
    for rules in ([open_rule, extra, closed_rule], [closed_rule, extra, open_rule]):
        schedule = parsed(ticketz(rules))
        assert schedule.weekly[0] == ((540, 1080), (1140, 1260))
        assert schedule.weekly[5] == ()
        assert schedule.weekly[6] == ()
    assert parsed(ticketz([{"days": [], "hours": [{"from": "09:00", "to": "10:00"}]}])).weekly == ((),) * 7


def holiday_schedule() -> Schedule:
    rules = [{"days": ["mon", "tue", "wed", "thu", "fri"], "hours": [{"from": "08:00", "to": "18:00"}]}]
    overrides = [
        {"date": "2020-12-25", "repeat": "yearly", "closed": True, "label": "Natal"},
        {"date": "2020-12-24", "repeat": "yearly", "hours": [{"from": "08:00", "to": "12:00"}]},
        {"date": "2026-06-10", "closed": True, "label": "inventário"},
        {"date": "2026-06-10", "hours": [{"from": "08:00", "to": "18:00"}]},  # second for a date: ignored
        {"date": "2026-12-25", "repeat": "none", "hours": [{"from": "10:00", "to": "12:00"}]},
        {"date": "2026-11-20", "closed": False},  # no hours and not closed: closed, as ticketz
        {"date": "01-01", "repeat": "yearly", "hours": []},
    ]
    return parsed(ticketz(rules, overrides, timezone="America/Sao_Paulo"))


def test_overrides_one_off_and_yearly() -> None:
    schedule = holiday_schedule()
    assert schedule.yearly == {"12-25": (), "12-24": ((480, 720),), "01-01": ()}
    assert schedule.dates == {date(2026, 6, 10): (), date(2026, 12, 25): ((600, 720),), date(2026, 11, 20): ()}
    assert not is_open(schedule, at(SP, 2026, 6, 10, 10, 0))  # a Wednesday, one-off closed
    assert is_open(schedule, at(SP, 2026, 6, 11, 10, 0))
    assert not is_open(schedule, at(SP, 2025, 12, 25, 10, 0))  # a Thursday, yearly closed
    assert not is_open(schedule, at(SP, 2029, 12, 25, 10, 0))
    assert is_open(schedule, at(SP, 2026, 12, 25, 11, 0))  # the one-off beats the yearly
    assert is_open(schedule, at(SP, 2025, 12, 24, 11, 0))  # yearly short day
    assert not is_open(schedule, at(SP, 2025, 12, 24, 13, 0))
    assert not is_open(schedule, at(SP, 2026, 11, 20, 10, 0))  # a Friday
    # Overrides replace the weekday's hours: a yearly day with hours opens on a Sunday too.
    assert is_open(schedule, at(SP, 2028, 12, 24, 9, 0))  # a Sunday


def test_next_open_across_a_weekend() -> None:
    schedule = parsed(week_days())
    friday_evening = at(SP, 2026, 3, 6, 18, 0)
    assert next_open(schedule, friday_evening) == at(SP, 2026, 3, 9, 8, 0)
    assert next_open(schedule, at(SP, 2026, 3, 8, 23, 59, 59)) == at(SP, 2026, 3, 9, 8, 0)
    assert next_open(schedule, at(SP, 2026, 3, 9, 7, 0)) == at(SP, 2026, 3, 9, 8, 0)


def test_next_open_is_now_when_open() -> None:
    schedule = parsed(week_days())
    now = utc(2026, 3, 2, 12, 0, 0)
    assert next_open(schedule, now) == now
    assert next_open(schedule, now.astimezone(SP)).tzinfo is UTC


def test_next_open_skips_holidays() -> None:
    schedule = holiday_schedule()
    # 2025-12-24 (Wednesday) closes at 12:00; the 25th is closed; Friday the 26th opens at 08:00.
    assert next_open(schedule, at(SP, 2025, 12, 24, 12, 0)) == at(SP, 2025, 12, 26, 8, 0)
    # 2026-12-24 is a Thursday; 2026-12-25 (Friday) has its one-off 10:00-12:00.
    assert next_open(schedule, at(SP, 2026, 12, 24, 13, 0)) == at(SP, 2026, 12, 25, 10, 0)
    # Tuesday 2026-06-09 evening: the 10th is closed, so the 11th.
    assert next_open(schedule, at(SP, 2026, 6, 9, 19, 0)) == at(SP, 2026, 6, 11, 8, 0)
    # New Year's Eve 2026 (Thursday) evening: 01-01 closed (Friday), weekend, Monday 2027-01-04.
    assert next_open(schedule, at(SP, 2026, 12, 31, 18, 0)) == at(SP, 2027, 1, 4, 8, 0)


def test_next_open_finds_a_day_that_comes_once_a_year_and_gives_up_when_none() -> None:
    once = parsed(
        ticketz([], [{"date": "2000-03-15", "repeat": "yearly", "hours": [{"from": "10:00", "to": "11:00"}]}])
    )
    assert next_open(once, at(SP, 2026, 3, 16, 0, 0)) == at(SP, 2027, 3, 15, 10, 0)
    never = parsed(ticketz([], [{"date": "2020-03-15", "hours": [{"from": "10:00", "to": "11:00"}]}]))
    assert next_open(never, at(SP, 2026, 3, 16, 0, 0)) is None


def test_every_instant_of_one_closed_period_names_the_same_end() -> None:
    schedule = parsed(week_days())
    ends = {next_open(schedule, at(SP, 2026, 3, 6, 18, 0) + timedelta(hours=h)) for h in range(0, 62, 3)}
    assert ends == {at(SP, 2026, 3, 9, 8, 0)}
    assert next_open(schedule, at(SP, 2026, 3, 9, 18, 0)) == at(SP, 2026, 3, 10, 8, 0)  # the next period


# --- DST -----------------------------------------------------------------------------------------------


def test_sao_paulo_2018_dst_start_midnight_does_not_exist() -> None:
    # 2018-11-04 00:00 (-03) jumped to 01:00 (-02): Sunday's 00:00 never happened.
    sunday = parsed(ticketz([{"days": ["sun"], "hours": [{"from": "00:00", "to": "12:00"}]}]))
    saturday_night = at(SP, 2018, 11, 3, 22, 0)
    opened = next_open(sunday, saturday_night)
    assert opened == utc(2018, 11, 4, 3, 0)  # the change itself, 01:00 -02
    assert opened.tzinfo is UTC
    local = opened.astimezone(SP)
    assert local.utcoffset() == timedelta(hours=-2) and (local.hour, local.minute) == (1, 0)
    assert not is_open(sunday, utc(2018, 11, 4, 2, 59, 59))  # 23:59:59 on Saturday
    # Business hours after the change are in the new offset: Monday 08:00 is 10:00 UTC, not 11:00.
    weekdays = parsed(week_days())
    assert next_open(weekdays, at(SP, 2018, 11, 2, 19, 0)) == utc(2018, 11, 5, 10, 0)
    assert next_open(weekdays, at(SP, 2018, 11, 2, 19, 0)).astimezone(SP).hour == 8


def test_sao_paulo_2019_dst_end_repeats_saturday_23h() -> None:
    # 2019-02-17 00:00 (-02) went back to 2019-02-16 23:00 (-03): Saturday's 23:xx happened twice.
    late = parsed(ticketz([{"days": ["sat"], "hours": [{"from": "23:00", "to": "23:30"}]}]))
    assert is_open(late, utc(2019, 2, 17, 1, 15))  # 23:15 -02
    assert is_open(late, utc(2019, 2, 17, 2, 15))  # 23:15 -03
    between = utc(2019, 2, 17, 1, 45)  # 23:45 -02, closed until the second 23:00
    assert not is_open(late, between)
    assert next_open(late, between) == utc(2019, 2, 17, 2, 0)
    # A range starting inside the repeated hour opens at its second occurrence, not at the change.
    inside = parsed(ticketz([{"days": ["sat"], "hours": [{"from": "23:20", "to": "23:40"}]}]))
    assert next_open(inside, utc(2019, 2, 17, 1, 50)) == utc(2019, 2, 17, 2, 20)  # 23:50 -02 → 23:20 -03


def test_lisbon_2026_spring_forward_a_0130_that_does_not_exist() -> None:
    # 2026-03-29 01:00 WET jumped to 02:00 WEST: 01:30 does not exist that Sunday.
    schedule = parsed(
        ticketz([{"days": ["sun"], "hours": [{"from": "01:30", "to": "03:00"}]}], timezone="Europe/Lisbon")
    )
    assert not is_open(schedule, utc(2026, 3, 29, 0, 59, 59))  # 00:59:59 WET
    assert is_open(schedule, utc(2026, 3, 29, 1, 0))  # 02:00 WEST
    assert next_open(schedule, utc(2026, 3, 28, 20, 0)) == utc(2026, 3, 29, 1, 0)
    # A range wholly inside the skipped hour never opens that day: the next Sunday it does.
    gap = parsed(ticketz([{"days": ["sun"], "hours": [{"from": "01:10", "to": "01:50"}]}], timezone="Europe/Lisbon"))
    assert next_open(gap, utc(2026, 3, 28, 20, 0)) == at(LISBON, 2026, 4, 5, 1, 10)


def test_lisbon_2026_fall_back_a_0130_that_occurs_twice() -> None:
    # 2026-10-25 02:00 WEST went back to 01:00 WET: 01:00-01:59 happened twice.
    schedule = parsed(
        ticketz([{"days": ["sun"], "hours": [{"from": "01:00", "to": "01:45"}]}], timezone="Europe/Lisbon")
    )
    first, second = at(LISBON, 2026, 10, 25, 1, 30), at(LISBON, 2026, 10, 25, 1, 30, fold=1)
    assert first.astimezone(UTC) == utc(2026, 10, 25, 0, 30) and second.astimezone(UTC) == utc(2026, 10, 25, 1, 30)
    assert is_open(schedule, first) and is_open(schedule, second)
    between = utc(2026, 10, 25, 0, 50)  # 01:50 WEST
    assert not is_open(schedule, between)
    assert next_open(schedule, between) == utc(2026, 10, 25, 1, 0)  # 01:00 WET, the second time
    assert next_open(schedule, utc(2026, 10, 24, 12, 0)) == utc(2026, 10, 25, 0, 0)  # 01:00 WEST, the first
    assert next_open(schedule, utc(2026, 10, 25, 1, 45)) == at(LISBON, 2026, 11, 1, 1, 0)
    # A range starting inside the repeated hour: the second 01:15 (WET), not the change at 01:00 WET.
    inside = parsed(ticketz([{"days": ["sun"], "hours": [{"from": "01:15", "to": "01:30"}]}], timezone="Europe/Lisbon"))
    assert next_open(inside, utc(2026, 10, 25, 0, 40)) == utc(2026, 10, 25, 1, 15)


def test_new_york_2026_both_changes() -> None:
    weekdays = parsed(
        ticketz(
            [{"days": ["mon", "tue", "wed", "thu", "fri"], "hours": [{"from": "09:00", "to": "17:00"}]}],
            timezone="America/New_York",
        )
    )
    # Spring: Friday 2026-03-06 after hours (EST) → Monday 09:00 EDT = 13:00 UTC.
    assert next_open(weekdays, at(NEW_YORK, 2026, 3, 6, 17, 0)) == utc(2026, 3, 9, 13, 0)
    # Autumn: Friday 2026-10-30 after hours (EDT) → Monday 09:00 EST = 14:00 UTC.
    assert next_open(weekdays, at(NEW_YORK, 2026, 10, 30, 17, 0)) == utc(2026, 11, 2, 14, 0)
    # 2026-03-08 02:30 does not exist in New York: a Sunday range from it opens at the change (03:00 EDT).
    sunday = parsed(
        ticketz([{"days": ["sun"], "hours": [{"from": "02:30", "to": "05:00"}]}], timezone="America/New_York")
    )
    assert next_open(sunday, at(NEW_YORK, 2026, 3, 7, 12, 0)) == utc(2026, 3, 8, 7, 0)


def test_naive_instants_are_refused() -> None:
    schedule = parsed(week_days())
    with pytest.raises(ValueError, match="timezone-aware"):
        is_open(schedule, datetime(2026, 3, 2, 10, 0))
    with pytest.raises(ValueError, match="timezone-aware"):
        next_open(schedule, datetime(2026, 3, 2, 10, 0))


# --- nothing configured, and malformed input -----------------------------------------------------------


@pytest.mark.parametrize("raw", [None, "", "  ", [], {}, "[]", "{}", {"timezone": "Europe/Lisbon"}])
def test_nothing_configured_is_none(raw: object) -> None:
    assert parse_schedule(raw, DEFAULT) is None
    validate_schedule(raw)


def test_json_text_is_read_like_the_value() -> None:
    import json

    assert parse_schedule(json.dumps(week_days()), DEFAULT) == parse_schedule(week_days(), DEFAULT)


def test_schedule_built_directly_is_normalised() -> None:
    schedule = Schedule(
        zone=SP,
        weekly=[[(600, 700), (480, 600)], [], [], [], [], [], []],
        dates={date(2026, 1, 1): [(0, 60), (30, 90)]},
    )
    assert schedule.weekly[0] == ((480, 700),)
    assert schedule.dates[date(2026, 1, 1)] == ((0, 90),)
    with pytest.raises(ValueError, match="7 days"):
        Schedule(zone=SP, weekly=[[]] * 6)
    with pytest.raises(ValueError, match="within a day"):
        Schedule(zone=SP, weekly=[[(600, 1500)]] + [[]] * 6)


MALFORMED = [
    (42, "expected a list of days or an object"),
    ({"foo": 1}, "expected a list of days or an object"),
    ("[{", "not valid JSON"),
    (["monday"], r"schedules\[0\]: expected an object"),
    ([{"weekdayEn": "monday", "startTime": "25:00", "endTime": "26:00"}], r"'25:00' is not a time of day"),
    ([{"weekdayEn": "monday", "startTime": "8h", "endTime": "18:00"}], r"'8h' is not a time of day"),
    ([{"weekdayEn": "monday", "startTime": "08:60", "endTime": "18:00"}], "is not a time of day"),
    ([{"weekdayEn": "monday", "startTime": "24:00", "endTime": "24:00"}], "'24:00' is not a time of day"),
    ([{"weekdayEn": "monday", "startTime": 800, "endTime": "18:00"}], "800 is not a time of day"),
    ([{"weekdayEn": "monday", "startTime": "18:00", "endTime": "08:00"}], "ends before it starts"),
    ([{"weekdayEn": "monday", "startTime": "08:00", "endTime": "08:00"}], "ends before it starts"),
    ([{"weekdayEn": "monday", "startTimeA": "08:00", "endTimeA": ""}], "startTimeA and endTimeA go together"),
    ([{"weekdayEn": "funday", "startTime": "08:00", "endTime": "18:00"}], r"weekdayEn: 'funday' is not a day"),
    ([{"weekday": 7, "startTime": "08:00", "endTime": "18:00"}], r"7 is not 0 \(Sunday\)"),
    ([{"weekday": True, "startTime": "08:00", "endTime": "18:00"}], "is not a day of the week"),
    ([{"startTime": "08:00", "endTime": "18:00"}], "names no day"),
    (ticketz([], timezone="Mars/Olympus"), "unknown time zone 'Mars/Olympus'"),
    ({"timezone": 3, "weeklyRules": []}, "3 is not a time zone name"),
    ({"weeklyRules": {"days": ["mon"]}}, r"weeklyRules: expected a list"),
    (ticketz(["mon"]), r"weeklyRules\[0\]: expected an object"),
    (ticketz([{"days": "mon", "hours": []}]), r"weeklyRules\[0\]\.days: expected a list"),
    (ticketz([{"days": ["xyz"], "hours": []}]), r"weeklyRules\[0\]\.days: 'xyz' is not a day"),
    (ticketz([{"days": [0], "hours": []}]), "0 is not a day"),
    (ticketz([{"days": ["mon"], "hours": [{"from": "9", "to": "10:00"}]}]), r"hours\[0\]: '9' is not a time"),
    (ticketz([{"days": ["mon"], "hours": ["09:00-10:00"]}]), r"hours\[0\]: expected an object"),
    (ticketz([], [{"date": "2026-13-01", "closed": True}]), r"overrides\[0\]\.date: '2026-13-01' is not a date"),
    (ticketz([], [{"date": "25/12/2026", "closed": True}]), "is not a date"),
    (ticketz([], [{"date": "02-30", "repeat": "yearly", "closed": True}]), "'02-30' is not a date"),
    (ticketz([], [{"date": "2026-12-25", "repeat": "monthly"}]), "'monthly' is not \"yearly\""),
    (ticketz([], [{"date": "2026-12-25", "closed": "yes"}]), r"closed: expected true or false"),
    (ticketz([], [{"date": "2026-12-25", "hours": {"from": "08:00"}}]), r"hours: expected a list"),
    (ticketz([], ["2026-12-25"]), r"overrides\[0\]: expected an object"),
]


@pytest.mark.parametrize(("raw", "message"), MALFORMED)
def test_malformed_schedules_raise_a_clear_value_error(raw: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_schedule(raw, DEFAULT)
    with pytest.raises(ValueError, match=message):
        validate_schedule(raw)


def test_an_unknown_default_zone_is_an_error_and_validate_accepts_the_three_shapes() -> None:
    with pytest.raises(ValueError, match="unknown time zone"):
        parse_schedule(week_days(), "Nowhere/Town")
    validate_schedule(week_days())
    validate_schedule([{"weekdayEn": "monday", "startTimeA": "08:00", "endTimeA": "12:00"}])
    validate_schedule(
        ticketz(
            [{"days": ["mon"], "hours": [{"from": "08:00", "to": "12:00"}]}],
            [{"date": "2026-12-25", "repeat": "yearly", "closed": True, "label": "Natal"}],
            timezone="Europe/Lisbon",
        )
    )


# --- property: next_open is the first open instant -----------------------------------------------------

ZONES = [
    "America/Sao_Paulo",
    "Europe/Lisbon",
    "America/New_York",
    "UTC",
    "Australia/Lord_Howe",
    "Asia/Kathmandu",
    "America/Santiago",
]
# Each zone's offset changes in the years looked at: the instants worth starting near.
CHANGES = {name: _offset_changes(ZoneInfo(name), utc(2017, 1, 1), utc(2027, 12, 31)) for name in ZONES}
# Wall times around the usual change hours (midnight, 01:00-03:00, 23:00), where skipped and repeated
# local times are; uniform minutes otherwise.
starts = st.one_of(st.integers(0, 1439), st.sampled_from([0, 15, 30, 60, 75, 90, 120, 130, 150, 180, 1380, 1400, 1425]))
day_ranges = st.lists(
    st.tuples(starts, st.sampled_from([1, 15, 30, 45, 60, 90, 600, 1440])).map(
        lambda r: (r[0], min(r[0] + r[1], 1440))
    ),
    max_size=2,
)
SCAN_MINUTES = 9 * 24 * 60


@st.composite
def cases(draw: st.DrawFn) -> tuple[Schedule, datetime]:
    name = draw(st.sampled_from(ZONES))
    zone = ZoneInfo(name)
    if CHANGES[name] and draw(st.booleans()):
        change = draw(st.sampled_from(CHANGES[name]))
        minutes = draw(st.one_of(st.integers(-120, 120), st.integers(-3 * 1440, 3 * 1440)))
        start = change + timedelta(minutes=minutes, seconds=draw(st.integers(0, 59)))
        local = change.astimezone(zone).date()
        days = [local - timedelta(days=1), local, local + timedelta(days=1)]
    else:
        start = draw(
            st.datetimes(min_value=datetime(2017, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC))
        )
        days = [start.astimezone(zone).date()]
    weekly = draw(st.lists(day_ranges, min_size=7, max_size=7))
    yearly = draw(st.dictionaries(st.sampled_from([f"{d:%m-%d}" for d in days]), day_ranges, max_size=2))
    return Schedule(zone=zone, weekly=weekly, yearly=yearly), start


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases())
def test_property_next_open_is_open_and_nothing_before_it_is(case: tuple[Schedule, datetime]) -> None:
    schedule, start = case
    found = next_open(schedule, start)
    # The zones used change offsets on whole minutes, so is_open is constant on each UTC minute:
    # checking `start` and every minute boundary up to the answer covers every instant between.
    limit = start + timedelta(minutes=SCAN_MINUTES)
    if found is not None:
        assert found >= start
        assert is_open(schedule, found)
        assert found.tzinfo is UTC
        limit = min(found, limit)
        if found == start:
            return
    assert not is_open(schedule, start)
    probe = start.replace(second=0, microsecond=0) + timedelta(minutes=1)
    while probe < limit:
        assert not is_open(schedule, probe), probe
        probe += timedelta(minutes=1)
    if found is None:  # every weekday and every yearly day recurs within the search window
        assert not any(schedule.weekly) and not any(schedule.yearly.values())
