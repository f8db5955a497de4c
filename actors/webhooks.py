"""The webhook delivery actor: posts the outbox rows the triggers wrote, signed, with retries.

    WebhookDispatcher.run (permanent child of the root supervisor)
    ├─ claim loop: every `poll_interval` (or at once when an attempt ended or the last claim was full),
    │   claims the due rows its endpoints have room for (`max_in_flight` each, `max_total` in all)
    └─ one task per attempt: SSRF check → signed POST (timeout) → the outcome recorded on the row

Nothing is held only in memory: a claim leases its row (`next_attempt_at` = now + lease) and counts the
attempt, so a process killed mid-post leaves the row due again when the lease passes — at-least-once, with
the same `webhook-id`. A conversation's deliveries go out in order: the claim takes only the first pending
row of an order key (`ticket:ID`), so the next is not claimed before the previous is delivered or failed.
A slow or dead receiver holds at most `max_in_flight` slots of its own endpoint; intake only writes rows.

Retries: exponential backoff with jitter (`retry_delay`), a `Retry-After` answer honoured, until the
delivery is `retry_for` old (24 h) — then it is failed. An endpoint whose attempts have failed for
`disable_after` (24 h) with no success is disabled, its reason on the row, and `company-{id}-webhook`
`{action: "disabled"}` is published so an open admin screen hears it.

A database away is the actor's to ride out (STYLE 7a): a claim that fails waits and tries again; an
outcome that cannot be recorded is retried until the lease passes (then the row is simply posted again).
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import attrs
import httpx
import trio
from standardwebhooks import Webhook

from gateway.ssrf import RefusedDestination, check_destination
from storage.errors import StorageError
from storage.webhooks import Claimed, Disabled, Outcome

log = logging.getLogger("zapgate.webhooks")

USER_AGENT = "zapgate-webhooks/1"
LEASE_MARGIN = 5.0  # seconds past the post's timeout before a claimed row is due again
DB_RETRY = 1.0  # seconds between tries of a claim or a record while the database is away
PRUNE_EVERY = 3600.0


@attrs.frozen
class Settings:
    timeout: float = 10.0  # one POST, connect to last byte
    retry_for: float = 24 * 3600.0  # a delivery is retried until it is this old, then failed
    disable_after: float = 24 * 3600.0  # an endpoint failing this long with no success is disabled
    backoff_initial: float = 5.0
    backoff_max: float = 3600.0
    max_in_flight: int = 4  # attempts at once per endpoint
    max_total: int = 64  # attempts at once in all
    poll_interval: float = 1.0
    allow_private: bool = False
    keep: float = 7 * 24 * 3600.0  # finished deliveries are kept this long (the admins' delivery log)


def retry_delay(attempt: int, *, initial: float, maximum: float, rng: random.Random) -> float:
    """Seconds before attempt `attempt + 1`: `initial · 2^(attempt-1)` capped at `maximum`, of which the
    upper half is random (equal jitter: never less than half the step, so the delays grow)."""
    step = min(maximum, initial * 2 ** min(attempt - 1, 40))
    return step / 2 + rng.uniform(0, step / 2)


def retry_after(value: str | None, *, now: dt.datetime) -> float | None:
    """A `Retry-After` header's wait in seconds (delta-seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - now).total_seconds())


@attrs.frozen
class Response:
    code: int
    retry_after: str | None
    text: str


class Poster(Protocol):
    async def __call__(self, url: str, headers: dict[str, str], body: bytes) -> Response: ...


class Store(Protocol):
    async def claim(self, *, limit: int, per_endpoint: int, full: list[int], room: dict[int, int],
                    lease: float) -> list[Claimed]: ...

    async def record(self, delivery: Claimed, outcome: Outcome, *, disable_after: float) -> Disabled | None: ...

    async def prune(self, *, keep: float, limit: int = ...) -> int: ...


def signed_headers(delivery: Claimed, body: bytes, at: dt.datetime) -> dict[str, str]:
    """The Standard Webhooks headers (id, timestamp, v1 HMAC-SHA256 signature) and ours."""
    signature = Webhook(delivery.secret).sign(delivery.message_id, at, body)
    return {"content-type": "application/json", "user-agent": USER_AGENT, "webhook-id": delivery.message_id,
            "webhook-timestamp": str(int(at.timestamp())), "webhook-signature": signature}


class HttpxPoster:
    """Posts with one shared httpx client: no redirects followed (a 3xx is a failure), `timeout` in all."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.client = httpx.AsyncClient(timeout=timeout, follow_redirects=False, trust_env=False,
                                        limits=httpx.Limits(max_connections=256, max_keepalive_connections=32))

    async def __call__(self, url: str, headers: dict[str, str], body: bytes) -> Response:
        with trio.fail_after(self.timeout):  # httpx's timeouts are per phase; this bounds the whole post
            async with self.client.stream("POST", url, content=body, headers=headers) as answer:
                text = b""
                async for chunk in answer.aiter_bytes():
                    text += chunk
                    if len(text) >= 1000:
                        break
                return Response(answer.status_code, answer.headers.get("retry-after"),
                                text[:1000].decode("utf-8", "replace"))

    async def aclose(self) -> None:
        await self.client.aclose()


class WebhookDispatcher:
    """An actor: `await nursery.start(dispatcher.run)`; `nudge()` to look for due rows now."""

    def __init__(self, store: Store, settings: Settings, *, poster: Poster | None = None,
                 on_disabled: Callable[[Disabled], None] | None = None,
                 wall: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
                 rng: random.Random | None = None,
                 check: Callable[[str], Awaitable[None]] | None = None,
                 on_outcome: Callable[[str], None] | None = None) -> None:
        self.store = store
        self.on_outcome = on_outcome  # each attempt's end: delivered, retried, failed, disabled (metrics)
        self.settings = settings
        self.poster = poster
        self.on_disabled = on_disabled
        self.wall = wall
        self.rng = rng or random.Random()
        self.check = check or (lambda url: check_destination(url, allow_private=settings.allow_private))
        self.in_flight: dict[int, int] = {}  # endpoint → attempts running
        self._wake = trio.Event()
        self.delivered = 0
        self.retried = 0
        self.failed = 0
        self.claim_errors = 0

    def nudge(self) -> None:
        self._wake.set()

    def stats(self) -> dict[str, Any]:
        return {"inFlight": sum(self.in_flight.values()), "delivered": self.delivered, "retried": self.retried,
                "failed": self.failed, "claimErrors": self.claim_errors}

    async def run(self, *, task_status: trio.TaskStatus[WebhookDispatcher] = trio.TASK_STATUS_IGNORED) -> None:
        owned = self.poster is None
        poster = HttpxPoster(self.settings.timeout) if owned else self.poster
        assert poster is not None
        try:
            async with trio.open_nursery() as nursery:
                task_status.started(self)
                last_prune = -PRUNE_EVERY
                while True:
                    if trio.current_time() - last_prune >= PRUNE_EVERY:
                        last_prune = trio.current_time()
                        nursery.start_soon(self._prune)
                    self._wake = trio.Event()
                    claimed = await self._claim()
                    for delivery in claimed:
                        self.in_flight[delivery.webhook_id] = self.in_flight.get(delivery.webhook_id, 0) + 1
                        nursery.start_soon(self._attempt, poster, delivery)
                    if claimed and sum(self.in_flight.values()) < self.settings.max_total:
                        await trio.lowlevel.checkpoint()
                        continue  # more may be due
                    with trio.move_on_after(self.settings.poll_interval):
                        await self._wake.wait()
        finally:
            if owned:
                with trio.CancelScope(shield=True), trio.move_on_after(1):
                    await poster.aclose()  # type: ignore[attr-defined]

    async def _claim(self) -> list[Claimed]:
        room_total = self.settings.max_total - sum(self.in_flight.values())
        if room_total <= 0:
            return []
        full = [hook for hook, n in self.in_flight.items() if n >= self.settings.max_in_flight]
        room = {hook: self.settings.max_in_flight - n for hook, n in self.in_flight.items() if n}
        try:
            return await self.store.claim(limit=room_total, per_endpoint=self.settings.max_in_flight, full=full,
                                          room=room,
                                          lease=self.settings.timeout + LEASE_MARGIN)
        except StorageError as error:  # the database away: waited out here, not by the supervisor
            self.claim_errors += 1
            log.warning("webhook claim failed; retrying", extra={"fields": {"error": str(error)[:200]}})
            await trio.sleep(DB_RETRY)
            return []

    async def _attempt(self, poster: Poster, delivery: Claimed) -> None:
        try:
            outcome = await self._post(poster, delivery)
            await self._record(delivery, outcome)
        finally:
            left = self.in_flight.get(delivery.webhook_id, 1) - 1
            if left:
                self.in_flight[delivery.webhook_id] = left
            else:
                self.in_flight.pop(delivery.webhook_id, None)
            self._wake.set()

    async def _post(self, poster: Poster, delivery: Claimed) -> Outcome:
        body = json.dumps(delivery.payload, separators=(",", ":"), ensure_ascii=False).encode()
        code: int | None = None
        text: str | None = None
        wait: float | None = None
        try:
            await self.check(delivery.url)
            answer = await poster(delivery.url, signed_headers(delivery, body, self.wall()), body)
        except RefusedDestination as error:
            failure = f"refused: the URL {error}"
        except trio.TooSlowError:
            failure = f"timed out after {self.settings.timeout:g} s"
        except (httpx.HTTPError, httpx.InvalidURL, OSError) as error:
            failure = f"{type(error).__name__}: {error}"[:500] or type(error).__name__
        else:
            code, text = answer.code, answer.text
            if 200 <= answer.code < 300:
                return Outcome(delivered=True, code=code, response=text)
            failure = f"HTTP {answer.code}"
            wait = retry_after(answer.retry_after, now=self.wall())
        delay = retry_delay(delivery.attempts, initial=self.settings.backoff_initial,
                            maximum=self.settings.backoff_max, rng=self.rng)
        if wait is not None:
            delay = max(delay, min(wait, self.settings.retry_for))
        give_up = delivery.age + delay > self.settings.retry_for
        return Outcome(delivered=False, code=code, response=text, error=failure, delay=delay, give_up=give_up)

    async def _record(self, delivery: Claimed, outcome: Outcome) -> None:
        deadline = trio.current_time() + self.settings.timeout + LEASE_MARGIN
        while True:
            try:
                disabled = await self.store.record(delivery, outcome, disable_after=self.settings.disable_after)
                break
            except StorageError as error:
                if trio.current_time() + DB_RETRY >= deadline:  # the lease passes: the row is posted again
                    log.warning("webhook outcome not recorded; the delivery will be retried",
                                extra={"fields": {"delivery": delivery.id, "error": str(error)[:200]}})
                    return
                await trio.sleep(DB_RETRY)
        if outcome.delivered:
            self.delivered += 1
        elif outcome.give_up:
            self.failed += 1
        else:
            self.retried += 1
        if self.on_outcome is not None:
            self.on_outcome("delivered" if outcome.delivered else "failed" if outcome.give_up else "retried")
            if disabled is not None:
                self.on_outcome("disabled")
        if disabled is not None:
            log.warning("webhook disabled", extra={"fields": {"webhook": disabled.webhook_id,
                                                              "company": disabled.company_id}})
            if self.on_disabled is not None:
                self.on_disabled(disabled)

    async def _prune(self) -> None:
        try:
            await self.store.prune(keep=self.settings.keep)
        except StorageError:
            log.info("pruning old webhook deliveries failed; next time", exc_info=True)
