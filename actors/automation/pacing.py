"""Campaign pacing, decided: how long a campaign waits before its next send (issue 14, point 3).

Pure but for `Pacer.wait_turn` (a trio sleep of what `interval` decided). Inputs are the company's
`campaign_settings` rows (key → text, values JSON as the family stores them), read with defaults by
`settings_of`:

- `messageInterval` (s, default 20) between two sends, randomised within ±`intervalJitter` (default 0.3);
  after every `longerIntervalAfter` sends (default 20; 0: never) the wait is `greaterInterval` (s, default 60)
  instead, randomised the same way: no fixed rhythm for WhatsApp to see;
- `dailyLimit`: sends per connection per day (the company's zone's day; 0: no cap); `warmupDays` /
  `warmupStart`: a new number's ramp — day 1 of its sending allows `warmupStart`, growing linearly to
  `dailyLimit` on day `warmupDays`;
- `businessHoursOnly`: send only while the company's business hours (actors/automation/hours.py) are open;
- `pacing` false (`"false"`, `"off"`, `0`): none of the above — no waits, no cap (tests, benchmarks);
- `breakerFailures` (default 5): consecutive send failures that pause a campaign (the circuit breaker).

`gate` says whether a send may go now, and when not, until when (a long wait: a durable timer).
"""

from __future__ import annotations

import datetime as dt
import json
import random
from collections.abc import Mapping
from typing import Any

import attrs
import trio

from actors.automation import hours as business_hours

DEFAULT_INTERVAL = 20.0
DEFAULT_LONGER_AFTER = 20
DEFAULT_GREATER = 60.0
DEFAULT_JITTER = 0.3
DEFAULT_BREAKER = 5


@attrs.frozen
class Settings:
    pacing: bool = True
    message_interval: float = DEFAULT_INTERVAL
    longer_after: int = DEFAULT_LONGER_AFTER
    greater_interval: float = DEFAULT_GREATER
    jitter: float = DEFAULT_JITTER
    daily_limit: int = 0
    warmup_days: int = 0
    warmup_start: int = 0
    business_hours_only: bool = False
    breaker_failures: int = DEFAULT_BREAKER
    variables: tuple[tuple[str, str], ...] = ()  # the family's campaign variables: {key} → value

    @property
    def extra_values(self) -> dict[str, str]:
        return dict(self.variables)


def _value(raw: str | None) -> Any:
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except (ValueError, TypeError):
        return raw


def _number(raw: str | None, default: float, *, low: float = 0.0, high: float = 86_400.0) -> float:
    value = _value(raw)
    if isinstance(value, bool) or value is None or value == "":
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        return default
    if number != number:  # NaN
        return default
    return min(high, max(low, number))


def _flag(raw: str | None, default: bool) -> bool:
    value = _value(raw)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    return str(value).strip().lower() not in ("false", "off", "no", "0", "disabled")


def _variables(raw: str | None) -> tuple[tuple[str, str], ...]:
    value = _value(raw)
    found = []
    if isinstance(value, list):
        for item in value:
            if isinstance(item, Mapping) and str(item.get("key") or "").strip():
                found.append((str(item["key"]).strip(), "" if item.get("value") is None else str(item["value"])))
    return tuple(found)


def settings_of(rows: Mapping[str, str]) -> Settings:
    """The pacing of a company from its `campaign_settings` rows; what is missing or unreadable: the default."""
    return Settings(
        pacing=_flag(rows.get("pacing"), True),
        message_interval=_number(rows.get("messageInterval"), DEFAULT_INTERVAL),
        longer_after=int(_number(rows.get("longerIntervalAfter"), DEFAULT_LONGER_AFTER, high=1_000_000)),
        greater_interval=_number(rows.get("greaterInterval"), DEFAULT_GREATER),
        jitter=_number(rows.get("intervalJitter"), DEFAULT_JITTER, high=0.9),
        daily_limit=int(_number(rows.get("dailyLimit"), 0, high=10_000_000)),
        warmup_days=int(_number(rows.get("warmupDays"), 0, high=365)),
        warmup_start=int(_number(rows.get("warmupStart"), 0, high=10_000_000)),
        business_hours_only=_flag(rows.get("businessHoursOnly"), False),
        breaker_failures=int(_number(rows.get("breakerFailures"), DEFAULT_BREAKER, low=1, high=1_000_000)),
        variables=_variables(rows.get("variables")),
    )


def interval(settings: Settings, sent: int, rng: random.Random) -> float:
    """Seconds to wait before the next send, `sent` sends into this run: `messageInterval`, or after every
    `longerIntervalAfter` sends `greaterInterval`; within ±jitter of it. 0 with pacing off."""
    if not settings.pacing:
        return 0.0
    base = settings.message_interval
    if settings.longer_after > 0 and sent > 0 and sent % settings.longer_after == 0:
        base = settings.greater_interval
    if base <= 0:
        return 0.0
    return base * rng.uniform(1 - settings.jitter, 1 + settings.jitter)


def daily_cap(settings: Settings, day_number: int) -> int | None:
    """Sends allowed on a connection's `day_number`-th day of sending (1: its first); None: no cap."""
    if not settings.pacing or settings.daily_limit <= 0:
        return None
    limit = settings.daily_limit
    if settings.warmup_days <= 1 or settings.warmup_start <= 0 or settings.warmup_start >= limit:
        return limit
    if day_number >= settings.warmup_days:
        return limit
    day = max(1, day_number)
    step = (limit - settings.warmup_start) / (settings.warmup_days - 1)
    return int(settings.warmup_start + step * (day - 1))


@attrs.frozen
class Gate:
    """May the next send go now? `until`: when to look again (None with `open`)."""

    open: bool
    until: dt.datetime | None = None
    reason: str = ""


OPEN = Gate(True)


def next_day_start(now: dt.datetime, zone: dt.tzinfo) -> dt.datetime:
    local = now.astimezone(zone)
    tomorrow = (local + dt.timedelta(days=1)).date()
    return dt.datetime.combine(tomorrow, dt.time(0, 0, 5), tzinfo=zone).astimezone(dt.UTC)


def gate(settings: Settings, *, now: dt.datetime, zone: dt.tzinfo, sent_today: int, day_number: int,
         hours: business_hours.Schedule | None) -> Gate:
    """The long waits: outside business hours (when asked) until they open; the day's cap reached until the
    next day (in the company's zone)."""
    if not settings.pacing:
        return OPEN
    if settings.business_hours_only and hours is not None and not business_hours.is_open(hours, now):
        opens = business_hours.next_open(hours, now)
        return Gate(False, opens, "outside business hours")
    cap = daily_cap(settings, day_number)
    if cap is not None and sent_today >= cap:
        return Gate(False, next_day_start(now, zone), f"daily limit of {cap} reached")
    return OPEN


@attrs.define
class Pacer:
    """The short waits of one campaign's run, in order: `await wait_turn()` before each send."""

    settings: Settings
    rng: random.Random = attrs.field(factory=random.Random)
    sent: int = 0

    def next_wait(self) -> float:
        return interval(self.settings, self.sent, self.rng)

    async def wait_turn(self) -> float:
        """Sleep the interval before the next send (none before the first); the seconds slept."""
        wait = self.next_wait() if self.sent > 0 else 0.0
        if wait > 0:
            await trio.sleep(wait)
        self.sent += 1
        return wait
