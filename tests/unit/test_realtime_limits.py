"""The realtime limits without a network: pending sessions per client and in all, their short life,
the handler's vouching, and the pieces they are built from (client keys, token bucket, episode log)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from api.realtime import ConnectRefused, Handshake, RealtimeConfig, RealtimeServer, Socket
from api.realtime.limits import LimitLog, TokenBucket, client_address
from api.realtime.session import POLLING, EngineError, EngineSession
from gateway.config import ConfigError, load_config

NS = "/acme"


class VouchingHandler:
    """Accepts `/acme` with token "good"; vouches for handshakes whose query says `user=<name>`."""

    async def connect(self, socket: Socket, auth: Mapping[str, Any], query: Mapping[str, str]) -> Any:
        if auth.get("token") != "good":
            raise ConnectRefused("invalid token")
        return {}

    def disconnected(self, socket: Socket, reason: str) -> None:
        pass

    def identify(self, handshake: Handshake) -> str | None:
        user = handshake.query.get("user")
        return f"user:{user}" if user else None


@pytest.fixture
async def server(nursery: trio.Nursery) -> AsyncIterator[RealtimeServer]:
    server = RealtimeServer(RealtimeConfig(max_pending=5, max_pending_per_client=3, connect_timeout=10,
                                           ping_interval=1000, ping_timeout=1000))
    server.register_namespace_handler(VouchingHandler())
    await nursery.start(server.run)
    yield server


def handshake(server: RealtimeServer, address: str | None = "198.51.100.7", **query: str) -> EngineSession:
    return server.open_session(Handshake(query=query, headers={}, remote_addr=address, transport=POLLING))


def refused(server: RealtimeServer, address: str | None = "198.51.100.7", **query: str) -> EngineError:
    with pytest.raises(EngineError) as error:
        handshake(server, address, **query)
    return error.value


async def authenticate(session: EngineSession) -> None:
    await session.post('40/acme,{"token":"good"}')
    await trio.testing.wait_all_tasks_blocked()
    assert session.authenticated


async def test_pending_sessions_are_capped_per_address(server: RealtimeServer) -> None:
    for _ in range(3):
        handshake(server)
    error = refused(server)
    assert (error.status, error.code, error.retry_after) == (429, 4, 10)
    assert error.message == "Too many pending connections from this client"
    handshake(server, "198.51.100.8")  # another address is not held back
    pending = server.stats()["pending"]
    assert (pending["sessions"], pending["anonymous"], pending["clients"], pending["refused"]) == (4, 4, 2, 1)


async def test_an_ipv6_client_is_counted_by_its_slash_64(server: RealtimeServer) -> None:
    for host in range(3):
        handshake(server, f"2001:db8:1:2::{host + 1}")
    assert refused(server, "2001:db8:1:2:ffff::9").status == 429
    handshake(server, "2001:db8:1:3::1")


async def test_authenticating_frees_the_pending_slot(server: RealtimeServer) -> None:
    sessions = [handshake(server) for _ in range(3)]
    await authenticate(sessions[0])
    handshake(server)  # the authenticated one no longer counts
    assert refused(server).status == 429
    stats = server.stats()
    assert stats["sessions"] == 4 and stats["pending"]["sessions"] == 3


async def test_anonymous_pending_sessions_are_capped_in_all(server: RealtimeServer) -> None:
    for host in range(5):
        handshake(server, f"203.0.113.{host}")
    error = refused(server, "203.0.113.200")
    assert (error.status, error.code, error.retry_after) == (503, 4, 10)


async def test_vouched_handshakes_count_per_user_and_never_behind_anonymous_ones(server: RealtimeServer) -> None:
    for host in range(5):
        handshake(server, f"203.0.113.{host}")  # every anonymous slot taken
    for _ in range(3):
        handshake(server, "203.0.113.0", user="ana")  # the flooding address, but a known user
    assert refused(server, "203.0.113.0", user="ana").status == 429  # a user's own cap
    handshake(server, "203.0.113.0", user="bia")
    assert server.stats()["pending"]["anonymous"] == 5


async def test_pending_sessions_live_connect_timeout_then_their_slots_are_free(
        autojump_clock: trio.abc.Clock, server: RealtimeServer) -> None:
    idle = [handshake(server) for _ in range(2)]
    busy = handshake(server)
    await authenticate(busy)
    await trio.sleep(11)
    assert [session.close_reason for session in idle] == ["connect timeout", "connect timeout"]
    assert not busy.closed
    for _ in range(3):
        handshake(server)
    assert server.stats()["pending"]["sessions"] == 3


async def test_a_flood_logs_one_line_per_episode(autojump_clock: trio.abc.Clock, server: RealtimeServer,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    for _ in range(3):
        handshake(server)
    with caplog.at_level(logging.WARNING, logger="zapgate.realtime"):
        for _ in range(500):
            refused(server)
        lines = [record for record in caplog.records if "too many pending" in record.getMessage()]
        assert len(lines) == 1
        assert lines[0].fields == {"key": "addr:198.51.100.7", "limit": 3}  # type: ignore[attr-defined]
        await trio.sleep(70)  # quiet: the old sessions timed out, the episode is over
        for _ in range(3):
            handshake(server)
        refused(server)
        assert len([record for record in caplog.records if "too many pending" in record.getMessage()]) == 2
    assert server.stats()["pending"]["refused"] == 501


# --- the pieces ---

@pytest.mark.parametrize(("address", "key"), [
    ("198.51.100.7", "addr:198.51.100.7"),
    ("2001:db8:1:2:3:4:5:6", "addr:2001:db8:1:2::/64"),
    ("[2001:db8::1]", "addr:2001:db8::/64"),
    ("::ffff:198.51.100.7", "addr:198.51.100.7"),
    (None, "addr:unknown"),
    ("", "addr:unknown"),
    ("not an address", "addr:not an address"),
])
def test_client_address(address: str | None, key: str) -> None:
    assert client_address(address) == key


def test_token_bucket() -> None:
    bucket = TokenBucket(rate=2, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(0.4) is False  # 0.8 of a token
    assert bucket.take(0.5) is True  # one whole token after 0.5 s at 2 per second
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]  # never more than the burst
    with pytest.raises(ValueError):
        TokenBucket(rate=0, burst=1, now=0.0)


def test_limit_log_bounds_the_lines_of_many_keys(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("zapgate.test.limits")
    limits = LimitLog(logger, "limit hit", quiet=60, max_lines=2)
    with caplog.at_level(logging.WARNING, logger="zapgate.test.limits"):
        logged = [limits.hit(f"addr:{n}", now=float(n)) for n in range(5)]
        assert logged == [True, True, False, False, False]
        assert limits.hit("addr:0", now=10.0) is False  # the same episode
        assert limits.hit("addr:9", now=61.0) is True  # a new window: logged, with what went unlogged
    assert [record.fields for record in caplog.records] == [  # type: ignore[attr-defined]
        {"key": "addr:0"}, {"key": "addr:1"}, {"key": "addr:9", "unlogged_episodes": 3}]
    assert limits.stats() == {"refused": 7, "episodes": 6}


# --- configuration ---

def test_limits_come_from_the_environment(tmp_path: Path) -> None:
    from api.live import realtime_config

    env = {"ZAPGATE_DATA_DIR": str(tmp_path / "data")}
    defaults = realtime_config(load_config(env, env_file=tmp_path / ".env"))
    assert (defaults.connect_timeout, defaults.max_pending_per_client, defaults.max_pending) == (10.0, 50, 2000)
    tuned = load_config({**env, "REALTIME_CONNECT_TIMEOUT": "4.5", "REALTIME_PENDING_PER_CLIENT": "7",
                         "REALTIME_MAX_PENDING": "300", "REALTIME_JOIN_RATE": "0.5", "REALTIME_JOIN_BURST": "3"},
                        env_file=tmp_path / ".env")
    limits = realtime_config(tuned)
    assert (limits.connect_timeout, limits.max_pending_per_client, limits.max_pending) == (4.5, 7, 300)
    assert (tuned.realtime_join_rate, tuned.realtime_join_burst) == (0.5, 3)
    for name, value in (("REALTIME_CONNECT_TIMEOUT", "0"), ("REALTIME_PENDING_PER_CLIENT", "0"),
                        ("REALTIME_JOIN_RATE", "-1"), ("REALTIME_JOIN_BURST", "many")):
        with pytest.raises(ConfigError) as error:
            load_config({**env, name: value}, env_file=tmp_path / ".env")
        assert error.value.variable == name
