"""Events between processes: a `RedisBridge` carries a `Broker`'s events through one Redis pub/sub channel.

Several processes (DESIGN.md §8). With `REDIS_URL` set, a `RedisBridge` runs next to the broker:
every `publish` also goes to one Redis pub/sub channel, and the events other processes published
there are fanned out to this process's subscribers. Each message carries its publisher's node id, so
a process delivers its own events once, locally, at publish time, and never again from Redis; every
process therefore delivers every event of a company to its subscribers exactly once while Redis is
up. Redis pub/sub is at most once: what is published while Redis (or the path to it) is down is lost
for the other processes (their frontends refetch when they reconnect), never replayed late.

Threads (STYLE.md rule 12, DESIGN.md §5). redis-py's blocking client runs on two dedicated threads
that `run` starts and joins: a listener (`PubSub.get_message(timeout=POLL_INTERVAL)` in a loop that
checks a stop flag; it hands decoded events into trio with `trio.from_thread.run_sync`) and a
publisher (sends the batches the trio task `_drain` hands it, one Redis pipeline per batch).
Dedicated threads rather than `trio.to_thread.run_sync`, because stopping the bridge joins them and
trio's worker cache would keep a thread alive after the work is done. The PubSub and the pipeline are
created and closed inside one sync function on their thread.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import queue
import random
import secrets
import threading
from collections.abc import Callable
from typing import Any

import attrs
import msgpack
import redis
import trio
from redis.backoff import NoBackoff
from redis.retry import Retry

from gateway.broker import Broker, Event

log = logging.getLogger("zapgate.broker")  # the broker's logger: the bridge is its link to the other processes

REDIS_CHANNEL = "zapgate:events"
OUTBOX_SIZE = 4096  # events waiting to go to Redis; when full the oldest is dropped (and counted)
BATCH_MAX = 256  # events per Redis pipeline, and per hand-off from the listener thread into trio
POLL_INTERVAL = 0.2  # how long the listener blocks in get_message before it looks at its stop flag
CONNECT_TIMEOUT = 0.5
SOCKET_TIMEOUT = 1.0  # bounds a publish in flight, hence how long stopping can take
HEALTH_CHECK_INTERVAL = 10  # the idle subscriber PINGs Redis this often (seconds)
RECONNECT_INITIAL = 0.2
RECONNECT_MAX = 5.0
STOP_DEADLINE = 1.8  # seconds `run` waits for its threads once cancelled (a blocked call ends by SOCKET_TIMEOUT)

_REDIS_ERRORS = (redis.RedisError, OSError)


def _packable(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    raise TypeError(f"cannot send a {type(value).__name__} through Redis")


def encode_event(node_id: str, event: Event) -> bytes:
    """The Redis message: msgpack of `{"o": node_id, "c": company_id, "n": name, "p": payload}`.

    Dates and times become ISO strings (as in the JSON the frontends get); other non-msgpack values raise TypeError.
    """
    return msgpack.packb({"o": node_id, "c": event.company_id, "n": event.name, "p": event.payload},
                         default=_packable)


def decode_event(data: bytes) -> tuple[str, Event]:
    """(publisher node id, event) of a Redis message; ValueError when it is not one of ours."""
    try:
        message = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several unrelated types for garbage
        raise ValueError(f"not msgpack: {exc}") from exc
    if not isinstance(message, dict):
        raise ValueError("not a map")
    origin, company_id, name, payload = message.get("o"), message.get("c"), message.get("n"), message.get("p")
    if not isinstance(origin, str) or not isinstance(name, str) or not isinstance(payload, dict):
        raise ValueError("missing or mistyped o/n/p")
    if not isinstance(company_id, int) or isinstance(company_id, bool):
        raise ValueError("missing or mistyped c")
    return origin, Event(company_id, name, payload)


class Outbox:
    """The bounded queue between `publish` and the Redis publisher. Policy: when full, drop the OLDEST
    event (the newest state is what a frontend needs) and count it; `put_nowait` never blocks."""

    def __init__(self, size: int) -> None:
        self._send, self._receive = trio.open_memory_channel[Event](size)
        self.dropped = 0

    def put_nowait(self, event: Event) -> None:
        try:
            self._send.send_nowait(event)
        except trio.WouldBlock:
            self._receive.receive_nowait()  # full, so nobody is waiting and there is an oldest one
            self.dropped += 1
            self._send.send_nowait(event)

    async def get_batch(self, limit: int) -> list[Event]:
        """Wait for one event, then take what else is queued, up to `limit`, oldest first."""
        batch = [await self._receive.receive()]
        while len(batch) < limit:
            try:
                batch.append(self._receive.receive_nowait())
            except trio.WouldBlock:
                break
        return batch

    def close(self) -> None:
        self._send.close()
        self._receive.close()

    def __len__(self) -> int:
        return self._send.statistics().current_buffer_used


@attrs.frozen
class _BatchResult:
    published: int
    unsendable: list[str]  # names of events whose payload msgpack could not encode
    error: str | None  # the Redis error that lost the batch


class _Thread:
    """A dedicated daemon thread that tells trio when it has ended (so trio can join it without blocking)."""

    def __init__(self, target: Callable[[], None], name: str, token: trio.lowlevel.TrioToken) -> None:
        self._target = target
        self._token = token
        self._ended = trio.Event()
        self.thread = threading.Thread(target=self._main, name=name, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _main(self) -> None:
        try:
            self._target()
        finally:
            with contextlib.suppress(trio.RunFinishedError):
                self._token.run_sync_soon(self._ended.set)

    async def wait_stopped(self) -> None:
        if self.thread.ident is None:  # never started
            return
        await self._ended.wait()
        self.thread.join()  # it has returned from its target: this is immediate


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class RedisBridge:
    """Carries a `Broker`'s events to and from the other processes through one Redis pub/sub channel.

    Run it under a supervisor: `await nursery.start(bridge.run)`; `started()` once the first connection
    attempt has ended, whatever its outcome (the process starts without Redis and connects later).
    It never raises for Redis trouble: losing Redis is logged once, local delivery goes on, and the
    listener reconnects with jittered exponential backoff (`reconnect_initial` … `reconnect_max`).

    Policies. Outgoing events wait in a bounded `Outbox` (drop-oldest when Redis is slower than the
    publishers); while Redis is unreachable they are dropped at once rather than queued and replayed
    late; a batch whose pipeline fails is dropped, not retried (a retry could deliver twice). All of
    these count in `stats()["dropped"]`.
    """

    def __init__(self, broker: Broker, url: str, *, channel: str = REDIS_CHANNEL, node_id: str | None = None,
                 outbox_size: int = OUTBOX_SIZE, reconnect_initial: float = RECONNECT_INITIAL,
                 reconnect_max: float = RECONNECT_MAX) -> None:
        self.broker = broker
        self.url = url
        self.channel = channel
        self.node_id = node_id or secrets.token_hex(8)  # one bridge per process: random per process
        self.outbox_size = outbox_size
        self.reconnect_initial = reconnect_initial
        self.reconnect_max = max(reconnect_max, reconnect_initial)
        self._outbox: Outbox | None = None
        self._connected = False
        self._down_logged = False
        self._ever_connected = False
        self._publish_failing = False
        self._reported_unsendable: set[str] = set()
        self._first_attempt = trio.Event()
        self.published_remote = 0
        self.received_remote = 0
        self.dropped = 0
        self.malformed = 0
        self.reconnects = 0

    # ── trio side ──
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        if self._outbox is not None:
            raise RuntimeError("this Redis bridge is already running")
        token = trio.lowlevel.current_trio_token()
        stop = threading.Event()
        jobs: queue.SimpleQueue[tuple[list[Event], Callable[[_BatchResult], None]] | None] = queue.SimpleQueue()
        outbox = self._outbox = Outbox(self.outbox_size)
        self._first_attempt = trio.Event()
        threads = [
            _Thread(lambda: self._listen_main(token, stop), f"zapgate-redis-listen-{self.node_id}", token),
            _Thread(lambda: self._publish_main(token, jobs), f"zapgate-redis-publish-{self.node_id}", token),
        ]
        self.broker._attach(self)
        try:
            for thread in threads:
                thread.start()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._drain, outbox, jobs)
                await self._first_attempt.wait()
                task_status.started()
        finally:
            self.broker._detach(self)
            self._outbox = None
            self._connected = False
            self.dropped += outbox.dropped + len(outbox)  # what never made it out
            outbox.close()
            stop.set()
            jobs.put(None)
            with trio.CancelScope(shield=True), trio.move_on_after(STOP_DEADLINE):
                for thread in threads:
                    await thread.wait_stopped()
            for thread in threads:
                if thread.thread.is_alive():
                    log.warning("Redis bridge thread still busy after stop; left behind (daemon)",
                                extra={"fields": {"thread": thread.thread.name}})

    def offer(self, event: Event) -> None:
        """Queue a locally published event for the other processes (called by `Broker.publish`)."""
        if self._outbox is None:
            return
        if not self._connected:
            self.dropped += 1
            return
        self._outbox.put_nowait(event)

    async def _drain(self, outbox: Outbox, jobs: queue.SimpleQueue[Any]) -> None:
        while True:
            batch = await outbox.get_batch(BATCH_MAX)
            if not self._connected:  # Redis went away while these waited
                self.dropped += len(batch)
                continue
            done = trio.Event()
            results: list[_BatchResult] = []

            def reply(result: _BatchResult, results: list[_BatchResult] = results, done: trio.Event = done) -> None:
                results.append(result)
                done.set()

            jobs.put((batch, reply))
            await done.wait()
            result = results[0]
            self.published_remote += result.published
            self.dropped += len(batch) - result.published
            for name in result.unsendable:
                if name not in self._reported_unsendable:
                    self._reported_unsendable.add(name)
                    log.error("event payload cannot be encoded for Redis; other nodes do not get it",
                              extra={"fields": {"event": name}})
            if result.error is not None:
                if not self._publish_failing:
                    self._publish_failing = True
                    log.warning("publishing to Redis failed; other nodes miss events until it works again",
                                extra={"fields": {"error": result.error}})
                await trio.sleep(self.reconnect_initial)
            elif self._publish_failing and result.published:
                self._publish_failing = False
                log.info("publishing to Redis works again")

    def _on_link(self, up: bool, error: str | None) -> None:
        """The listener's connection state changed (or a connection attempt failed again)."""
        if self._outbox is None:  # a thread that outlived its `run`
            return
        was = self._connected
        self._connected = up
        if up:
            self._down_logged = False
            if not was:
                if self._ever_connected:
                    self.reconnects += 1
                    log.info("Redis is back; events flow between nodes again",
                             extra={"fields": {"channel": self.channel}})
                else:
                    log.info("connected to Redis", extra={"fields": {"channel": self.channel, "node": self.node_id}})
                self._ever_connected = True
        elif not self._down_logged:
            self._down_logged = True
            log.warning("Redis unreachable; delivering events locally only, reconnecting in the background",
                        extra={"fields": {"channel": self.channel, "error": error}})
        self._first_attempt.set()

    def _on_remote(self, events: list[Event], malformed: int) -> None:
        if self._outbox is None:
            return
        self.received_remote += len(events)
        for event in events:
            self.broker._deliver(event)
        if malformed:
            if not self.malformed:
                log.warning("ignoring messages on the Redis channel that are not zapgate events",
                            extra={"fields": {"channel": self.channel}})
            self.malformed += malformed

    def stats(self) -> dict[str, Any]:
        return {"connected": self._connected, "node_id": self.node_id, "published_remote": self.published_remote,
                "received_remote": self.received_remote,
                "dropped": self.dropped + (self._outbox.dropped if self._outbox is not None else 0),
                "malformed": self.malformed, "reconnects": self.reconnects,
                "queued": len(self._outbox) if self._outbox is not None else 0}

    # ── threads ──
    def _client(self, **options: Any) -> redis.Redis:
        # no redis-py retries: reconnecting is ours (backoff, state, logging), and a retried PUBLISH could duplicate
        return redis.Redis.from_url(self.url, socket_connect_timeout=CONNECT_TIMEOUT, socket_timeout=SOCKET_TIMEOUT,
                                    retry=Retry(NoBackoff(), 0), **options)

    @staticmethod
    def _to_trio(token: trio.lowlevel.TrioToken, fn: Callable[..., None], *args: Any) -> bool:
        """Run `fn` in trio and wait for it; False when trio is gone."""
        try:
            trio.from_thread.run_sync(fn, *args, trio_token=token)
        except trio.RunFinishedError:
            return False
        return True

    def _listen_main(self, token: trio.lowlevel.TrioToken, stop: threading.Event) -> None:
        delay = self.reconnect_initial
        while not stop.is_set():
            try:
                subscribed, error = self._listen_once(token, stop)
            except Exception as exc:  # a bug, not Redis: keep the bridge alive, but say so
                log.exception("Redis listener failed")
                subscribed, error = False, _describe(exc)
            if stop.is_set() or not self._to_trio(token, self._on_link, False, error):
                return
            if subscribed:
                delay = self.reconnect_initial
            if stop.wait(delay * random.uniform(0.75, 1.25)):
                return
            delay = min(delay * 2, self.reconnect_max)

    def _listen_once(self, token: trio.lowlevel.TrioToken, stop: threading.Event) -> tuple[bool, str | None]:
        """One connection: subscribe and hand messages to trio until `stop` or a Redis error."""
        subscribed = False
        client = self._client(health_check_interval=HEALTH_CHECK_INTERVAL)
        pubsub = client.pubsub()
        try:
            pubsub.subscribe(self.channel)
            while not stop.is_set():
                message = pubsub.get_message(timeout=POLL_INTERVAL)
                if message is None:
                    continue
                if message["type"] == "subscribe":
                    subscribed = True
                    if not self._to_trio(token, self._on_link, True, None):
                        return subscribed, None
                    continue
                raw: list[bytes] = []
                while message is not None:
                    if message["type"] == "message":
                        raw.append(message["data"])
                    if len(raw) >= BATCH_MAX:
                        break
                    message = pubsub.get_message(timeout=0.0)
                events, malformed = self._decode(raw)
                if (events or malformed) and not self._to_trio(token, self._on_remote, events, malformed):
                    return subscribed, None
            return subscribed, None
        except _REDIS_ERRORS as exc:
            return subscribed, _describe(exc)
        finally:
            with contextlib.suppress(*_REDIS_ERRORS):
                pubsub.close()
            with contextlib.suppress(*_REDIS_ERRORS):
                client.close()

    def _decode(self, raw: list[bytes]) -> tuple[list[Event], int]:
        events: list[Event] = []
        malformed = 0
        for data in raw:
            try:
                origin, event = decode_event(data)
            except ValueError:
                malformed += 1
                continue
            if origin != self.node_id:  # our own events were delivered locally when published
                events.append(event)
        return events, malformed

    def _publish_main(self, token: trio.lowlevel.TrioToken, jobs: queue.SimpleQueue[Any]) -> None:
        client = self._client()
        try:
            while (job := jobs.get()) is not None:
                batch, reply = job
                if not self._to_trio(token, reply, self._publish_batch(client, batch)):
                    return
        finally:
            with contextlib.suppress(*_REDIS_ERRORS):
                client.close()

    def _publish_batch(self, client: redis.Redis, batch: list[Event]) -> _BatchResult:
        messages: list[bytes] = []
        unsendable: list[str] = []
        for event in batch:
            try:
                messages.append(encode_event(self.node_id, event))
            except (TypeError, ValueError, OverflowError):
                unsendable.append(event.name)
        if not messages:
            return _BatchResult(0, unsendable, None)
        try:
            with client.pipeline(transaction=False) as pipeline:
                for message in messages:
                    pipeline.publish(self.channel, message)
                pipeline.execute()
        except _REDIS_ERRORS as exc:
            return _BatchResult(0, unsendable, _describe(exc))
        return _BatchResult(len(messages), unsendable, None)
