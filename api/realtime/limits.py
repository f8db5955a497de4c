"""Small pieces the realtime limits are built from: who a client is, a token bucket, and a log that
says once per episode that a limit is being hit.

    client_address("2001:db8::1")        → "addr:2001:db8::/64"   (one IPv6 host holds a whole /64)
    bucket = TokenBucket(rate=5, burst=20); bucket.take(now)      → False once the burst is spent
    refusals = LimitLog(log, "realtime handshakes refused"); refusals.hit(key, now, limit=50)

A flood is refused request by request, but reported by episode: the first refusal for a key logs a
line, the refusals that follow it within `quiet` seconds are only counted. The clock is the
caller's (`trio.current_time()`), so these work under trio's autojump clock.
"""

from __future__ import annotations

import collections
import ipaddress
import logging
from typing import Any

IPV6_PREFIX = 64  # addresses of one IPv6 subscriber usually share their first 64 bits


def client_address(address: str | None) -> str:
    """The key under which a client's address is counted: the IPv4 address, or the IPv6 /64 it is in."""
    if not address:
        return "addr:unknown"
    try:
        ip = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return "addr:" + address[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return f"addr:{ip.ipv4_mapped}"
        return f"addr:{ipaddress.ip_network(f'{ip}/{IPV6_PREFIX}', strict=False)}"
    return f"addr:{ip}"


class TokenBucket:
    """`burst` tokens to start with, `rate` more per second up to `burst`; each `take` spends one."""

    __slots__ = ("_stamp", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a token bucket needs a positive rate and a burst of at least 1")
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._stamp = now

    def take(self, now: float) -> bool:
        """Spend a token if there is one; False (nothing spent) when the bucket is empty."""
        self._tokens = min(float(self.burst), self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


class LimitLog:
    """One log line per episode of a limit being hit, per key, and a bound on the lines of all keys.

    An episode is a run of refusals for one key with gaps shorter than `quiet` seconds. Its first
    refusal logs (with `fields`); the others are counted. At most `max_lines` episodes are logged per
    `quiet` seconds over all keys (a flood from many addresses): the rest are counted, and the next
    line says how many went unlogged. At most `max_keys` keys are remembered (the oldest forgotten).
    """

    def __init__(self, logger: logging.Logger, message: str, *, quiet: float = 60.0, max_lines: int = 10,
                 max_keys: int = 10_000) -> None:
        self.logger = logger
        self.message = message
        self.quiet = quiet
        self.max_lines = max_lines
        self.max_keys = max_keys
        self.refused = 0  # every refusal
        self.episodes = 0
        self._last: collections.OrderedDict[str, float] = collections.OrderedDict()  # key → its last refusal
        self._window = float("-inf")  # when the current window of `max_lines` lines began
        self._lines = 0
        self._unlogged = 0  # episodes that started without a line, since the last line

    def hit(self, key: str, now: float, **fields: Any) -> bool:
        """Count a refusal for `key`; True when it started an episode that was logged."""
        self.refused += 1
        last = self._last.pop(key, None)
        self._last[key] = now
        if len(self._last) > self.max_keys:
            self._last.popitem(last=False)
        if last is not None and now - last < self.quiet:
            return False
        self.episodes += 1
        if now - self._window >= self.quiet:
            self._window, self._lines = now, 0
        if self._lines >= self.max_lines:
            self._unlogged += 1
            return False
        self._lines += 1
        extra = {"key": key, **fields}
        if self._unlogged:
            extra["unlogged_episodes"] = self._unlogged
            self._unlogged = 0
        self.logger.warning(self.message, extra={"fields": extra})
        return True

    def stats(self) -> dict[str, int]:
        return {"refused": self.refused, "episodes": self.episodes}
