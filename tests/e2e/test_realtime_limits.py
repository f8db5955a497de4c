"""The stock socket.io-client against a handshake refused for being over the pending-session limit:
it reports `connect_error` and retries with its backoff, and gets in once a slot is free."""

from __future__ import annotations

import json

import httpx
import pytest
import trio

from api.realtime import RealtimeConfig
from tests.e2e.test_socketio_client import CLIENT_DIR, EIO, node, serve_realtime  # noqa: F401 - fixture

TIMEOUT = 30


@pytest.mark.parametrize("transports", ["default", "websocket"])
async def test_a_refused_stock_client_retries_and_gets_in_when_a_slot_frees(nursery: trio.Nursery,
                                                                            node: str,  # noqa: F811
                                                                            transports: str) -> None:
    with trio.fail_after(TIMEOUT):
        served = await serve_realtime(nursery, RealtimeConfig(max_pending_per_client=1, connect_timeout=1.5))
        async with httpx.AsyncClient(base_url=served.url) as client:
            taken = await client.get("/socket.io/", params=EIO)  # the address's one pending slot, for 1.5 s
            assert taken.status_code == 200
            refused = await client.get("/socket.io/", params=EIO)
            assert refused.status_code == 429 and refused.headers["retry-after"] == "2"
            result = await trio.run_process([node, str(CLIENT_DIR / "refused.mjs"), served.url, transports],
                                            capture_stdout=True, capture_stderr=True, check=False)
        lines = [json.loads(line) for line in result.stdout.decode().splitlines() if line.strip()]
        assert result.returncode == 0, (lines, result.stderr.decode())
        errors = [line for line in lines if line["step"] == "connect_error"]
        assert errors, lines  # refused first: the client says so…
        if transports == "default":  # engine.io-client hands the HTTP status on as the error's description
            assert (errors[0]["message"], errors[0]["description"]) == ("xhr poll error", 429)
        else:
            assert (errors[0]["message"], errors[0]["description"]) == ("websocket error",
                                                                       "Unexpected server response: 429")
        assert any(line["step"] == "reconnect_attempt" for line in lines)  # …retries with its backoff…
        assert lines[-1]["step"] == "connect"  # …and is in once the pending session has timed out
        assert served.server.stats()["pending"]["refused"] >= 2
