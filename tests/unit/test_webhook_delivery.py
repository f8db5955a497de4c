"""The webhook delivery actor under trio's autojump clock, over an in-memory store of its rows and a fake
poster: the retry schedule (growing, jittered, capped; Retry-After), giving up, disabling, order per
conversation, bounded in-flight per endpoint, a database outage, a cancel mid-post. Pure helpers too."""

from __future__ import annotations

import datetime as dt
import ipaddress
import itertools
import random
from typing import Any

import attrs
import httpx
import pytest
import trio
from standardwebhooks import Webhook

from actors.webhooks import Response, Settings, WebhookDispatcher, retry_after, retry_delay
from gateway.ssrf import RESOLVE_DEADLINE, RefusedDestination, check_destination, check_url, forbidden
from storage.errors import Unavailable
from storage.webhooks import Claimed, Disabled, Outcome, new_secret

SECRET = new_secret()


@attrs.define
class Row:
    id: int
    webhook_id: int
    order_key: str | None
    created: float
    status: str = "pending"
    attempts: int = 0
    next_at: float = 0.0
    uid: str = ""


@attrs.define
class Hook:
    id: int
    enabled: bool = True
    failing_since: float | None = None
    reason: str | None = None


class MemoryStore:
    """The delivery rows as storage/webhooks.py's DeliveryStore keeps them, in memory, on trio's clock."""

    def __init__(self) -> None:
        self.rows: list[Row] = []
        self.hooks: dict[int, Hook] = {}
        self.down = False
        self.claims = 0

    def add(self, webhook_id: int, order_key: str | None = None) -> Row:
        self.hooks.setdefault(webhook_id, Hook(webhook_id))
        row = Row(len(self.rows) + 1, webhook_id, order_key, trio.current_time(), next_at=trio.current_time(),
                  uid=f"00000000-0000-0000-0000-{len(self.rows) + 1:012d}")
        self.rows.append(row)
        return row

    def _check(self) -> None:
        if self.down:
            raise Unavailable("connection refused")

    async def claim(self, *, limit: int, per_endpoint: int, full: list[int], room: dict[int, int],
                    lease: float) -> list[Claimed]:
        await trio.lowlevel.checkpoint()
        self._check()
        self.claims += 1
        now = trio.current_time()
        heads: set[tuple[int, str]] = set()
        taken: list[Row] = []
        left = dict(room)
        for row in sorted(self.rows, key=lambda r: r.id):
            if row.status != "pending":
                continue
            key = (row.webhook_id, row.order_key or "")
            blocked = row.order_key is not None and key in heads
            if row.order_key is not None:
                heads.add(key)
            if blocked or row.next_at > now or not self.hooks[row.webhook_id].enabled or row.webhook_id in full:
                continue
            if left.get(row.webhook_id, per_endpoint) <= 0 or len(taken) >= limit:
                continue
            left[row.webhook_id] = left.get(row.webhook_id, per_endpoint) - 1
            taken.append(row)
        for row in taken:
            row.attempts += 1
            row.next_at = now + lease
        return [Claimed(id=r.id, uid=r.uid, company_id=1, webhook_id=r.webhook_id, event="message.created",
                        payload={"type": "message.created", "data": {"id": r.id}}, attempts=r.attempts,
                        age=now - r.created, url="https://receiver.example/hook", secret=SECRET) for r in taken]

    async def record(self, delivery: Claimed, outcome: Outcome, *, disable_after: float) -> Disabled | None:
        await trio.lowlevel.checkpoint()
        self._check()
        row, hook, now = self.rows[delivery.id - 1], self.hooks[delivery.webhook_id], trio.current_time()
        if outcome.delivered:
            row.status, hook.failing_since = "delivered", None
            return None
        row.status = "failed" if outcome.give_up else "pending"
        row.next_at = now + outcome.delay
        if hook.enabled:
            if hook.failing_since is not None and hook.failing_since < now - disable_after:
                hook.enabled, hook.reason = False, f"failing: {outcome.error}"
                return Disabled(hook.id, 1, hook.reason)
            hook.failing_since = hook.failing_since if hook.failing_since is not None else now
        return None

    async def prune(self, *, keep: float, limit: int = 5000) -> int:
        await trio.lowlevel.checkpoint()
        return 0


class Receiver:
    """The fake poster: answers from `answer(now, headers)`; records (time, webhook-id, verified payload)."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.posts: list[tuple[float, str]] = []
        self.running = 0
        self.most_at_once = 0

    async def __call__(self, url: str, headers: dict[str, str], body: bytes) -> Response:
        Webhook(SECRET).verify(body, headers)  # signed as a Standard Webhooks receiver checks it
        self.posts.append((trio.current_time(), headers["webhook-id"]))
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        try:
            result = await self.answer(trio.current_time(), headers)
        finally:
            self.running -= 1
        return result


def ok() -> Response:
    return Response(200, None, "ok")


async def allowed(url: str) -> None:
    await trio.lowlevel.checkpoint()


def dispatcher(store: MemoryStore, receiver: Receiver, **settings: Any) -> WebhookDispatcher:
    disabled: list[Disabled] = []
    made = WebhookDispatcher(store, Settings(**settings), poster=receiver, rng=random.Random(7),
                             check=allowed, on_disabled=disabled.append)  # signed at the real time: verified
    made.disabled_seen = disabled  # type: ignore[attr-defined]
    return made


async def until(predicate: Any) -> None:
    with trio.fail_after(50_000):  # virtual seconds: a test that waits for what never comes fails, not hangs
        while not predicate():
            await trio.sleep(0.5)


# ─── pure helpers ──────────────────────────────────────────────────────────────────────

def test_retry_delays_grow_jittered_and_capped() -> None:
    rng = random.Random(1)
    delays = [retry_delay(attempt, initial=5, maximum=3600, rng=rng) for attempt in range(1, 16)]
    for attempt, delay in enumerate(delays, start=1):
        step = min(3600, 5 * 2 ** (attempt - 1))
        assert step / 2 <= delay <= step
    assert all(later >= earlier for earlier, later in itertools.pairwise(delays[:10]))
    assert max(delays) <= 3600 and delays[-1] >= 1800
    assert len({round(d, 6) for d in delays[:6]}) == 6  # jittered: not the bare steps
    assert retry_delay(10_000, initial=5, maximum=3600, rng=rng) <= 3600  # no overflow


def test_retry_after_reads_seconds_and_dates() -> None:
    now = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC)
    assert retry_after("120", now=now) == 120.0
    assert retry_after("Fri, 01 May 2026 12:02:00 GMT", now=now) == 120.0
    assert retry_after("Fri, 01 May 2026 11:00:00 GMT", now=now) == 0.0
    assert retry_after("soon", now=now) is None and retry_after(None, now=now) is None


@pytest.mark.parametrize("address", ["127.0.0.1", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254",
                                     "100.64.0.1", "0.0.0.0", "::1", "fe80::1", "fc00::1", "::ffff:10.0.0.1",
                                     "224.0.0.1"])
def test_private_addresses_are_forbidden(address: str) -> None:
    assert forbidden(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700::1111"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert not forbidden(ipaddress.ip_address(address))


@pytest.mark.parametrize("url", ["ftp://a.example/x", "http://", "https://u:p@a.example/", "http://a.example:70000/",
                                 "javascript:alert(1)", "http://a.example/" + "x" * 2000])
def test_malformed_urls_are_refused(url: str) -> None:
    with pytest.raises(RefusedDestination):
        check_url(url)


class _HangingResolver(trio.abc.HostnameResolver):
    """A DNS that never answers (a resolver that is away)."""

    async def getaddrinfo(self, *args: Any, **kwargs: Any) -> Any:
        await trio.sleep_forever()

    async def getnameinfo(self, *args: Any, **kwargs: Any) -> Any:
        await trio.sleep_forever()


async def test_a_name_that_does_not_resolve_in_time_is_refused_not_waited_for(autojump_clock: Any) -> None:
    # a webhook's save (and each delivery's check) must not hang on DNS: the fuzzer's random host names
    trio.socket.set_custom_hostname_resolver(_HangingResolver())
    try:
        started = trio.current_time()
        with pytest.raises(RefusedDestination, match="did not resolve"):
            await check_destination("https://hooks.example.test/x", allow_private=False)
        assert trio.current_time() - started == pytest.approx(RESOLVE_DEADLINE)
    finally:
        trio.socket.set_custom_hostname_resolver(None)


# ─── the actor ─────────────────────────────────────────────────────────────────────────

async def test_a_dead_receiver_is_retried_with_growing_delays_then_delivered_once(autojump_clock: Any) -> None:
    async def answer(now: float, headers: dict[str, str]) -> Response:
        await trio.lowlevel.checkpoint()
        if now < 600:
            raise httpx.ConnectError("connection refused")
        return ok()

    store, receiver = MemoryStore(), Receiver(answer)
    row = store.add(1, "ticket:1")
    async with trio.open_nursery() as nursery:
        actor = await nursery.start(dispatcher(store, receiver).run)
        await until(lambda: row.status == "delivered")
        nursery.cancel_scope.cancel()
    times = [at for at, _ in receiver.posts]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert len(times) >= 5 and gaps == sorted(gaps), gaps  # growing
    assert gaps[0] < 10 and gaps[-1] > 60, gaps
    assert {message_id for _, message_id in receiver.posts} == {f"msg_{row.uid.replace('-', '')}"}  # on every try
    assert row.attempts == len(times) and actor.stats()["delivered"] == 1


async def test_retry_after_is_honoured(autojump_clock: Any) -> None:
    async def answer(now: float, headers: dict[str, str]) -> Response:
        await trio.lowlevel.checkpoint()
        return Response(429, "300", "slow down") if len(receiver.posts) == 1 else ok()

    store = MemoryStore()
    receiver = Receiver(answer)
    row = store.add(1)
    async with trio.open_nursery() as nursery:
        await nursery.start(dispatcher(store, receiver).run)
        await until(lambda: row.status == "delivered")
        nursery.cancel_scope.cancel()
    first, second = (at for at, _ in receiver.posts)
    assert second - first >= 300  # not the 2.5-5 s backoff's first step


async def test_a_delivery_is_failed_after_retry_for_and_the_endpoint_disabled(autojump_clock: Any) -> None:
    async def answer(now: float, headers: dict[str, str]) -> Response:
        await trio.lowlevel.checkpoint()
        return Response(500, None, "boom")

    store, receiver = MemoryStore(), Receiver(answer)
    row = store.add(1)
    actor = dispatcher(store, receiver, retry_for=3600, disable_after=5400, backoff_max=600)
    async with trio.open_nursery() as nursery:
        await nursery.start(actor.run)
        await until(lambda: row.status == "failed")
        assert store.hooks[1].enabled  # failing for 1 h < 1.5 h: still enabled
        last = receiver.posts[-1][0]
        assert last <= 3600 + 1 and len(receiver.posts) >= 8
        late = store.add(1)  # the streak goes on: past 1.5 h of failures the endpoint is disabled
        await until(lambda: not store.hooks[1].enabled)
        posts = len(receiver.posts)
        await trio.sleep(5000)
        nursery.cancel_scope.cancel()
    assert len(receiver.posts) == posts  # nothing posted to a disabled endpoint
    assert late.status == "pending" and actor.disabled_seen == [Disabled(1, 1, store.hooks[1].reason)]  # type: ignore[attr-defined]
    assert receiver.posts[-1][0] >= 5400


async def test_a_conversations_next_delivery_waits_for_the_previous(autojump_clock: Any) -> None:
    async def answer(now: float, headers: dict[str, str]) -> Response:
        await trio.lowlevel.checkpoint()
        return Response(503, None, "") if len(receiver.posts) <= 3 else ok()

    store, receiver = MemoryStore(), Receiver(answer)
    rows = [store.add(1, "ticket:9") for _ in range(3)]
    async with trio.open_nursery() as nursery:
        await nursery.start(dispatcher(store, receiver).run)
        await until(lambda: all(r.status == "delivered" for r in rows))
        nursery.cancel_scope.cancel()
    ids = [message_id for _, message_id in receiver.posts]
    assert ids[:3] == [ids[0]] * 3  # the first, three times, before anything else
    assert ids[3:] == [ids[0], *[f"msg_{r.uid.replace('-', '')}" for r in rows[1:]]]


async def test_a_hanging_endpoint_holds_at_most_its_slots_and_others_go_on(autojump_clock: Any) -> None:
    async def answer(now: float, headers: dict[str, str]) -> Response:
        if headers["webhook-id"] in slow_ids:
            await trio.sleep(1000)  # never answers within the timeout
        await trio.lowlevel.checkpoint()
        return ok()

    store, receiver = MemoryStore(), Receiver(answer)
    slow_rows = [store.add(1) for _ in range(10)]
    slow_ids = {f"msg_{r.uid.replace('-', '')}" for r in slow_rows}
    fast = store.add(2)
    async with trio.open_nursery() as nursery:
        await nursery.start(dispatcher(store, receiver, max_in_flight=3, timeout=10).run)
        await until(lambda: fast.status == "delivered")
        assert trio.current_time() < 2
        await trio.sleep(30)
        nursery.cancel_scope.cancel()
    assert receiver.most_at_once <= 4  # 3 of the hanging endpoint + the healthy one
    assert sum(1 for _, i in receiver.posts if i in slow_ids) <= 3 * 3  # timed out and retried in batches of 3


async def test_a_database_outage_is_ridden_out_and_an_unrecorded_success_is_posted_again(autojump_clock: Any) -> None:
    async def answer(now: float, headers: dict[str, str]) -> Response:
        await trio.lowlevel.checkpoint()
        if len(receiver.posts) == 1:
            store.down = True  # the database goes away while the first post is in flight
        return ok()

    store, receiver = MemoryStore(), Receiver(answer)
    row = store.add(1)
    actor = dispatcher(store, receiver, timeout=10)
    async with trio.open_nursery() as nursery:
        await nursery.start(actor.run)
        await until(lambda: receiver.posts)
        await trio.sleep(60)  # a minute without the database: the actor keeps trying, it does not crash
        assert row.status == "pending" and actor.stats()["claimErrors"] > 10
        store.down = False
        await until(lambda: row.status == "delivered")
        nursery.cancel_scope.cancel()
    ids = [message_id for _, message_id in receiver.posts]
    assert len(ids) == 2 and ids[0] == ids[1]  # at-least-once: posted again, with the same webhook-id


async def test_a_cancel_mid_post_leaves_the_row_leased_and_the_next_actor_delivers_it(autojump_clock: Any) -> None:
    async def hang(now: float, headers: dict[str, str]) -> Response:
        await trio.sleep_forever()
        raise AssertionError

    async def answer(now: float, headers: dict[str, str]) -> Response:
        await trio.lowlevel.checkpoint()
        return ok()

    store = MemoryStore()
    row = store.add(1)
    async with trio.open_nursery() as nursery:
        await nursery.start(dispatcher(store, Receiver(hang), timeout=10).run)
        await until(lambda: row.attempts == 1)
        nursery.cancel_scope.cancel()  # the process stops mid-post
    assert row.status == "pending" and row.next_at > trio.current_time()  # leased, not lost
    stopped = trio.current_time()
    receiver = Receiver(answer)
    async with trio.open_nursery() as nursery:
        await nursery.start(dispatcher(store, receiver).run)
        await until(lambda: row.status == "delivered")
        nursery.cancel_scope.cancel()
    assert receiver.posts[0][0] >= stopped + 10  # once the lease passed
    assert row.attempts == 2
