"""Campaign pacing (actors/automation/pacing.py) under trio's autojump clock, the stable WhatsApp id of a
campaign's message, and the variant rotation."""

from __future__ import annotations

import datetime as dt
import random
from zoneinfo import ZoneInfo

import trio

from actors.automation import hours, pacing
from actors.campaigns import family_tokens
from storage import campaign_runs as campaigns

SP = ZoneInfo("America/Sao_Paulo")


def test_settings_read_with_defaults_and_the_family_json() -> None:
    assert pacing.settings_of({}) == pacing.Settings()
    read = pacing.settings_of({"messageInterval": "5", "longerIntervalAfter": "3", "greaterInterval": "30",
                               "dailyLimit": "100", "warmupDays": "5", "warmupStart": "20", "pacing": "false",
                               "businessHoursOnly": "true", "breakerFailures": "2",
                               "variables": '[{"key": "loja", "value": "Centro"}, {"key": "", "value": "x"}]'})
    assert (read.message_interval, read.longer_after, read.greater_interval) == (5, 3, 30)
    assert (read.daily_limit, read.warmup_days, read.warmup_start, read.breaker_failures) == (100, 5, 20, 2)
    assert read.pacing is False and read.business_hours_only is True
    assert read.extra_values == {"loja": "Centro"}
    bad = pacing.settings_of({"messageInterval": "soon", "dailyLimit": "-4", "variables": "{"})
    assert bad.message_interval == pacing.DEFAULT_INTERVAL and bad.daily_limit == 0 and bad.variables == ()


async def test_intervals_are_randomised_within_bounds_and_longer_after_n(autojump_clock: trio.abc.Clock) -> None:
    settings = pacing.Settings(message_interval=10, longer_after=4, greater_interval=60, jitter=0.3)
    pacer = pacing.Pacer(settings, random.Random(7))
    waits = []
    for _ in range(13):
        before = trio.current_time()
        await pacer.wait_turn()
        waits.append(trio.current_time() - before)
    assert waits[0] == 0  # the first send goes at once
    for index, wait in enumerate(waits[1:], 1):
        base = 60 if index % 4 == 0 else 10
        assert base * 0.7 <= wait <= base * 1.3, (index, wait)
    assert len({round(wait, 6) for wait in waits[1:4]}) == 3  # not a fixed rhythm


async def test_pacing_off_never_waits(autojump_clock: trio.abc.Clock) -> None:
    pacer = pacing.Pacer(pacing.Settings(pacing=False), random.Random(1))
    start = trio.current_time()
    for _ in range(1000):
        await pacer.wait_turn()
    assert trio.current_time() == start
    assert pacing.daily_cap(pacing.Settings(pacing=False, daily_limit=10), 1) is None


def test_daily_cap_and_warm_up_ramp() -> None:
    ramp = pacing.Settings(daily_limit=1000, warmup_days=10, warmup_start=100)
    caps = [pacing.daily_cap(ramp, day) for day in range(1, 13)]
    assert caps[0] == 100 and caps[9] == 1000 and caps[11] == 1000
    assert caps == sorted(caps) and len(set(caps[:10])) == 10
    assert pacing.daily_cap(pacing.Settings(daily_limit=50), 1) == 50
    assert pacing.daily_cap(pacing.Settings(), 1) is None
    now = dt.datetime(2025, 3, 10, 15, 0, tzinfo=dt.UTC)
    closed = pacing.gate(ramp, now=now, zone=SP, sent_today=100, day_number=1, hours=None)
    assert not closed.open and "daily limit of 100" in closed.reason
    assert closed.until == dt.datetime(2025, 3, 11, 0, 0, 5, tzinfo=SP)  # the next day in the company's zone
    assert pacing.gate(ramp, now=now, zone=SP, sent_today=99, day_number=1, hours=None).open


def test_business_hours_window() -> None:
    schedule = hours.parse_schedule([{"weekday": "segunda-feira", "weekdayEn": "monday", "startTime": "08:00",
                                      "endTime": "18:00"}], "America/Sao_Paulo")
    assert schedule is not None
    only = pacing.Settings(business_hours_only=True)
    monday_night = dt.datetime(2025, 3, 10, 22, 0, tzinfo=SP)  # a Monday, after hours
    decided = pacing.gate(only, now=monday_night, zone=SP, sent_today=0, day_number=1, hours=schedule)
    assert not decided.open and decided.reason == "outside business hours"
    assert decided.until == dt.datetime(2025, 3, 17, 8, 0, tzinfo=SP)  # the next Monday's opening
    monday_noon = dt.datetime(2025, 3, 10, 12, 0, tzinfo=SP)
    assert pacing.gate(only, now=monday_noon, zone=SP, sent_today=0, day_number=1, hours=schedule).open
    assert pacing.gate(pacing.Settings(), now=monday_night, zone=SP, sent_today=0, day_number=1,
                       hours=schedule).open  # not asked: hours do not matter


def test_the_message_id_is_stable_per_campaign_and_number() -> None:
    first = campaigns.wid_of(7, "5511900000001")
    assert first == campaigns.wid_of(7, "5511900000001")
    assert first.startswith("3EB0") and len(first) == 22 and first[4:] == first[4:].upper()
    int(first[4:], 16)
    assert first != campaigns.wid_of(8, "5511900000001") != campaigns.wid_of(7, "5511900000002")
    assert campaigns.wid_of(7, "5511900000001", 2) != first


def test_variants_rotate_over_the_non_empty_messages() -> None:
    row = {"message1": "a", "message2": "", "message3": "  ", "message4": "d", "message5": "e"}
    assert campaigns.variant_numbers(row) == [1, 4, 5]
    assert campaigns.variant_numbers({name: "" for name in campaigns.VARIANTS}) == [1]  # a file alone


def test_the_family_single_brace_tokens() -> None:
    assert family_tokens("Oi {nome}, {loja} {x}", {"nome": "Ana", "loja": "Centro"}) == "Oi Ana, Centro {x}"
