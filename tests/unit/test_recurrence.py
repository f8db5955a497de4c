"""Recurring scheduled messages (actors/automation/recurrence.py): steps in the company's zone across DST,
month ends, cron, count and end date, the business-day skip — fixed instants, no clock."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from actors.automation.hours import parse_schedule
from actors.automation.recurrence import (
    BadRule,
    Occurrence,
    Rule,
    check_cron,
    check_rule,
    first_send,
    next_business_day,
    next_send,
)

SP = ZoneInfo("America/Sao_Paulo")
NEW_YORK = ZoneInfo("America/New_York")
LISBON = ZoneInfo("Europe/Lisbon")


def local(zone: ZoneInfo, *args: int) -> datetime:
    return datetime(*args, tzinfo=zone)


def series(rule: Rule, zone: ZoneInfo, n: int, hours=None, *, now: datetime | None = None) -> list[datetime]:
    """The first `n` send times (local to `zone`), each computed as the sender does: right after the one
    before (or at `now`, when later)."""
    out: list[datetime] = []
    occurrence = first_send(rule, zone, hours)
    sent = 0
    while occurrence is not None and len(out) < n:
        out.append(occurrence.at.astimezone(zone))
        sent += 1
        occurrence = next_send(rule, occurrence, zone, hours, sent=sent, now=max(now or occurrence.at, occurrence.at))
    return out


def walls(times: list[datetime]) -> list[str]:
    return [t.strftime("%Y-%m-%d %H:%M %a") for t in times]


def test_a_one_off_is_sent_once() -> None:
    rule = Rule(anchor=local(SP, 2030, 5, 10, 9, 0))
    first = first_send(rule, SP, None)
    assert first == Occurrence(local(SP, 2030, 5, 10, 9, 0).astimezone(UTC), local(SP, 2030, 5, 10, 9, 0))
    assert next_send(rule, first, SP, None, sent=1, now=first.at) is None


def test_every_minute_three_times_then_stops() -> None:
    rule = Rule(anchor=local(SP, 2030, 5, 10, 9, 0), kind="minutes", every=1, count=3)
    assert walls(series(rule, SP, 10)) == ["2030-05-10 09:00 Fri", "2030-05-10 09:01 Fri", "2030-05-10 09:02 Fri"]


def test_minutes_are_elapsed_time_across_a_dst_change() -> None:
    # New York springs forward at 02:00 on 2030-03-10: 90 real minutes after 01:00 EST is 03:30 EDT
    rule = Rule(anchor=local(NEW_YORK, 2030, 3, 10, 1, 0), kind="minutes", every=90)
    times = series(rule, NEW_YORK, 3)
    assert walls(times) == ["2030-03-10 01:00 Sun", "2030-03-10 03:30 Sun", "2030-03-10 05:00 Sun"]
    assert times[1].astimezone(UTC) - times[0].astimezone(UTC) == timedelta(minutes=90)


@pytest.mark.parametrize("zone,day", [(NEW_YORK, (2030, 3, 8)), (NEW_YORK, (2030, 11, 1)), (LISBON, (2030, 3, 29)),
                                      (LISBON, (2030, 10, 25))])
def test_a_daily_time_stays_local_across_dst(zone: ZoneInfo, day: tuple[int, int, int]) -> None:
    rule = Rule(anchor=local(zone, *day, 9, 0), kind="days", every=1)
    times = series(rule, zone, 5)
    assert [t.strftime("%H:%M") for t in times] == ["09:00"] * 5
    offsets = {t.utcoffset() for t in times}
    assert len(offsets) == 2  # the UTC offset changed in the middle, the local time did not


def test_a_skipped_local_time_goes_out_after_the_jump_and_the_series_keeps_its_time() -> None:
    rule = Rule(anchor=local(NEW_YORK, 2030, 3, 9, 2, 30), kind="days", every=1)
    assert walls(series(rule, NEW_YORK, 3)) == ["2030-03-09 02:30 Sat", "2030-03-10 03:30 Sun",
                                                "2030-03-11 02:30 Mon"]


def test_a_repeated_local_time_is_sent_once_at_its_first_occurrence() -> None:
    rule = Rule(anchor=local(NEW_YORK, 2030, 11, 2, 1, 30), kind="days", every=1)
    times = series(rule, NEW_YORK, 3)
    assert walls(times) == ["2030-11-02 01:30 Sat", "2030-11-03 01:30 Sun", "2030-11-04 01:30 Mon"]
    assert times[1].utcoffset() == timedelta(hours=-4)  # EDT: the first 01:30 of that night


def test_weeks_keep_the_weekday_and_time() -> None:
    rule = Rule(anchor=local(SP, 2030, 5, 6, 18, 15), kind="weeks", every=2, count=3)
    assert walls(series(rule, SP, 10)) == ["2030-05-06 18:15 Mon", "2030-05-20 18:15 Mon", "2030-06-03 18:15 Mon"]


def test_month_ends_are_clamped_and_come_back() -> None:
    rule = Rule(anchor=local(SP, 2030, 1, 31, 10, 0), kind="months", every=1)
    assert [t.strftime("%Y-%m-%d") for t in series(rule, SP, 5)] == [
        "2030-01-31", "2030-02-28", "2030-03-31", "2030-04-30", "2030-05-31"]
    leap = Rule(anchor=local(SP, 2031, 12, 31, 10, 0), kind="months", every=2)
    assert [t.strftime("%Y-%m-%d") for t in series(leap, SP, 3)] == ["2031-12-31", "2032-02-29", "2032-04-30"]


def test_months_across_dst_keep_the_local_time() -> None:
    rule = Rule(anchor=local(NEW_YORK, 2030, 1, 15, 9, 0), kind="months", every=3)
    assert walls(series(rule, NEW_YORK, 4)) == ["2030-01-15 09:00 Tue", "2030-04-15 09:00 Mon",
                                                "2030-07-15 09:00 Mon", "2030-10-15 09:00 Tue"]


def test_cron_in_the_company_zone_across_dst() -> None:
    rule = Rule(anchor=local(NEW_YORK, 2030, 3, 8, 0, 0), kind="cron", cron="0 9 * * *")
    times = series(rule, NEW_YORK, 4)
    assert walls(times) == ["2030-03-08 09:00 Fri", "2030-03-09 09:00 Sat", "2030-03-10 09:00 Sun",
                            "2030-03-11 09:00 Mon"]
    gaps = [(b.astimezone(UTC) - a.astimezone(UTC)) / timedelta(hours=1) for a, b in itertools.pairwise(times)]
    assert gaps == [24, 23, 24]  # the day of the change is 23 hours long


def test_cron_first_send_is_at_or_after_the_anchor() -> None:
    exact = Rule(anchor=local(SP, 2030, 5, 6, 8, 0), kind="cron", cron="0 8 * * 1-5")
    assert walls(series(exact, SP, 3)) == ["2030-05-06 08:00 Mon", "2030-05-07 08:00 Tue", "2030-05-08 08:00 Wed"]
    later = Rule(anchor=local(SP, 2030, 5, 10, 8, 1), kind="cron", cron="0 8 * * 1-5")  # a Friday, a minute late
    assert walls(series(later, SP, 1)) == ["2030-05-13 08:00 Mon"]


def test_count_and_end_date() -> None:
    counted = Rule(anchor=local(SP, 2030, 5, 6, 8, 0), kind="days", every=1, count=2)
    assert len(series(counted, SP, 10)) == 2
    until = Rule(anchor=local(SP, 2030, 5, 6, 8, 0), kind="days", every=1, until=local(SP, 2030, 5, 8, 8, 0))
    assert walls(series(until, SP, 10)) == ["2030-05-06 08:00 Mon", "2030-05-07 08:00 Tue", "2030-05-08 08:00 Wed"]
    before = Rule(anchor=local(SP, 2030, 5, 6, 8, 0), until=local(SP, 2030, 5, 6, 7, 0))
    assert first_send(before, SP, None) is None


def test_missed_occurrences_are_not_sent_in_a_burst() -> None:
    rule = Rule(anchor=local(SP, 2030, 5, 6, 8, 0), kind="minutes", every=1)
    first = first_send(rule, SP, None)
    assert first is not None
    # the first fired two hours late (zapgate was down): the next is the series' next time after now
    late = first.at + timedelta(hours=2, seconds=20)
    following = next_send(rule, first, SP, None, sent=1, now=late)
    assert following is not None and following.at == local(SP, 2030, 5, 6, 10, 1).astimezone(UTC)


def test_a_timer_fired_a_little_early_does_not_send_its_occurrence_twice() -> None:
    rule = Rule(anchor=local(SP, 2030, 5, 6, 8, 0), kind="minutes", every=1)
    first = first_send(rule, SP, None)
    assert first is not None
    early = first.at - timedelta(milliseconds=300)
    following = next_send(rule, first, SP, None, sent=1, now=early)
    assert following is not None and following.at == first.at + timedelta(minutes=1)


WEEKDAYS_9_TO_18 = [{"weekday": day, "startTime": "09:00" if day in range(1, 6) else "",
                     "endTime": "18:00" if day in range(1, 6) else ""} for day in range(7)]


def test_skip_to_the_next_business_day_of_the_company_hours() -> None:
    hours = parse_schedule(WEEKDAYS_9_TO_18, "America/Sao_Paulo")
    rule = Rule(anchor=local(SP, 2030, 5, 9, 20, 0), kind="days", every=1, skip_to_business_day=True)  # a Thursday
    # Thu, Fri (open days: sent even at 20:00, after hours), Sat and Sun → Mon, then Tue
    assert walls(series(rule, SP, 4, hours)) == ["2030-05-09 20:00 Thu", "2030-05-10 20:00 Fri",
                                                 "2030-05-13 20:00 Mon", "2030-05-14 20:00 Tue"]


def test_skip_honours_holidays_and_a_saturday_opening() -> None:
    hours = parse_schedule({"timezone": "America/Sao_Paulo",
                            "weeklyRules": [{"days": ["mon", "tue", "wed", "thu", "fri", "sat"],
                                             "hours": [{"from": "08:00", "to": "12:00"}]}],
                            "overrides": [{"date": "2030-05-13", "closed": True}]}, "America/Sao_Paulo")
    sunday = Rule(anchor=local(SP, 2030, 5, 12, 10, 0), kind="weeks", every=1, skip_to_business_day=True)
    # Sunday → Monday 13 is a holiday → Tuesday; the next Sunday → Monday 20
    assert walls(series(sunday, SP, 2, hours)) == ["2030-05-14 10:00 Tue", "2030-05-20 10:00 Mon"]
    saturday = Rule(anchor=local(SP, 2030, 5, 11, 10, 0), skip_to_business_day=True)
    assert walls(series(saturday, SP, 1, hours)) == ["2030-05-11 10:00 Sat"]  # open on Saturdays: not moved


def test_skip_without_hours_is_monday_to_friday_and_a_month_end_on_a_weekend() -> None:
    rule = Rule(anchor=local(SP, 2030, 8, 31, 9, 0), kind="months", every=1, skip_to_business_day=True)
    # Aug 31 2030 is a Saturday → Mon Sep 2; Sep 30 (Mon); Oct 31 (Thu); Nov 30 (Sat) → Dec 2 (Mon)
    assert walls(series(rule, SP, 4)) == ["2030-09-02 09:00 Mon", "2030-09-30 09:00 Mon", "2030-10-31 09:00 Thu",
                                          "2030-12-02 09:00 Mon"]


def test_daily_with_skip_sends_monday_once() -> None:
    rule = Rule(anchor=local(SP, 2030, 5, 10, 9, 0), kind="days", every=1, skip_to_business_day=True)  # a Friday
    # Saturday's and Sunday's occurrences both land on Monday 09:00: sent once
    assert walls(series(rule, SP, 3)) == ["2030-05-10 09:00 Fri", "2030-05-13 09:00 Mon", "2030-05-14 09:00 Tue"]


def test_skip_past_the_end_date_ends_the_series() -> None:
    rule = Rule(anchor=local(SP, 2030, 5, 10, 9, 0), kind="days", every=1, skip_to_business_day=True,
                until=local(SP, 2030, 5, 12, 9, 0))
    assert walls(series(rule, SP, 5)) == ["2030-05-10 09:00 Fri"]


def test_a_company_whose_hours_never_open_does_not_move_the_send() -> None:
    hours = parse_schedule([{"weekday": day, "startTime": "", "endTime": ""} for day in range(7)], "UTC")
    at = local(SP, 2030, 5, 11, 9, 0)
    assert next_business_day(at, SP, hours) == at.astimezone(UTC)


@pytest.mark.parametrize("expression", ["", "* * * *", "61 * * * *", "* * * * * *", "0 25 * * *", "a b c d e",
                                        "*/0 * * * *"])
def test_bad_cron_expressions_are_refused(expression: str) -> None:
    with pytest.raises(BadRule):
        check_cron(expression)


def test_rules_are_checked() -> None:
    anchor = local(SP, 2030, 5, 10, 9, 0)
    for bad in (Rule(anchor=anchor, kind="hours"), Rule(anchor=anchor, kind="minutes", every=0),
                Rule(anchor=anchor, kind="months", every=121), Rule(anchor=anchor, kind="cron", cron="x"),
                Rule(anchor=anchor.replace(tzinfo=None), kind="days")):
        with pytest.raises(BadRule):
            check_rule(bad)
    check_rule(Rule(anchor=anchor, kind="cron", cron="*/15 8-18 * * mon-fri"))
