"""LoginThrottle with an injected clock: limits per email and per address, sliding window, Retry-After."""

from __future__ import annotations

import pytest

from api.auth import LoginThrottle
from api.errors import TooManyRequests


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make(clock: FakeClock, *, max_failures: int = 3, max_per_ip: int = 10, window: float = 60) -> LoginThrottle:
    return LoginThrottle(max_failures=max_failures, max_per_ip=max_per_ip, window=window, clock=clock)


def retry_after(throttle: LoginThrottle, email: str, ip: str) -> int:
    with pytest.raises(TooManyRequests) as raised:
        throttle.check(email, ip)
    assert raised.value.status == 429 and raised.value.code == "ERR_TOO_MANY_REQUESTS"
    return int(raised.value.headers["Retry-After"])


def test_locks_an_email_after_max_failures_until_the_window_passes() -> None:
    clock = FakeClock()
    throttle = make(clock)
    for _ in range(2):
        throttle.failed("a@x.test", "1.1.1.1")
        throttle.check("a@x.test", "1.1.1.1")  # under the limit: no error
    throttle.failed("a@x.test", "1.1.1.1")
    wait = retry_after(throttle, "a@x.test", "1.1.1.1")
    assert 60 <= wait <= 61

    clock.advance(59.5)
    assert 1 <= retry_after(throttle, "a@x.test", "1.1.1.1") <= 2  # counts down
    clock.advance(0.5)
    throttle.check("a@x.test", "1.1.1.1")  # the failures left the window


def test_retry_after_is_honest() -> None:
    """Waiting exactly Retry-After seconds is always enough."""
    window = 10.7
    for step in (0.0, 0.3, 4.9, 10.2, 10.6):
        clock = FakeClock(500.25)
        throttle = make(clock, max_failures=1, window=window)
        throttle.failed("a@x.test", "ip")
        clock.advance(step)
        wait = retry_after(throttle, "a@x.test", "ip")
        assert 1 <= wait <= window - step + 1  # never more than a second too long
        clock.advance(wait)
        throttle.check("a@x.test", "ip")


def test_window_slides_one_failure_at_a_time() -> None:
    clock = FakeClock()
    throttle = make(clock)
    for _ in range(3):
        throttle.failed("a@x.test", "ip")
        clock.advance(10)  # failures at t=0, 10, 20; now t=30
    retry_after(throttle, "a@x.test", "ip")
    clock.advance(30)  # t=60: the first failure leaves
    throttle.check("a@x.test", "ip")
    throttle.failed("a@x.test", "ip")  # back to 3 within the window
    assert retry_after(throttle, "a@x.test", "ip") <= 11  # until the t=10 failure leaves at t=70
    clock.advance(10)
    throttle.check("a@x.test", "ip")


def test_email_is_case_insensitive() -> None:
    throttle = make(FakeClock(), max_failures=2)
    throttle.failed("Someone@X.test", "ip")
    throttle.failed("someone@x.TEST", "ip")
    retry_after(throttle, "SOMEONE@x.test", "ip")


def test_other_emails_are_free_until_the_address_limit() -> None:
    throttle = make(FakeClock(), max_failures=3, max_per_ip=5)
    for index in range(4):
        throttle.failed(f"user{index}@x.test", "10.0.0.1")
    throttle.check("fresh@x.test", "10.0.0.1")
    throttle.check("user0@x.test", "10.0.0.2")  # another address, one failure for this email
    throttle.failed("fresh@x.test", "10.0.0.1")
    retry_after(throttle, "fresh@x.test", "10.0.0.1")
    retry_after(throttle, "never-failed@x.test", "10.0.0.1")  # the address is locked for everyone
    throttle.check("never-failed@x.test", "10.0.0.2")  # but not other addresses


def test_success_resets_the_email_but_not_the_address() -> None:
    throttle = make(FakeClock(), max_failures=3, max_per_ip=4)
    for _ in range(3):
        throttle.failed("a@x.test", "ip")
    retry_after(throttle, "a@x.test", "ip")
    throttle.succeeded("A@x.test")
    throttle.check("a@x.test", "ip")
    throttle.failed("b@x.test", "ip")  # a 4th failure from the address
    retry_after(throttle, "a@x.test", "ip")


def test_memory_is_bounded() -> None:
    clock = FakeClock()
    throttle = make(clock, max_failures=2, max_per_ip=1000)
    throttle.MAX_KEYS = 50
    for index in range(500):
        throttle.failed(f"user{index}@x.test", "ip")
    assert len(throttle._failures) <= 50
    # The newest keys are kept: the address (refreshed on every failure) and recent emails.
    throttle.failed("user499@x.test", "ip")
    retry_after(throttle, "user499@x.test", "other-ip")
