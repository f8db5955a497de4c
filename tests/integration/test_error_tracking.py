"""Error tracking (issue 18, point 5): with SENTRY_DSN set, an unhandled error of a request reaches Sentry with the
request's id — checked against a fake Sentry ingest, a real HTTP server on a free loopback port that receives
the envelopes the SDK posts (no internet); off when SENTRY_DSN is unset."""

from __future__ import annotations

import gzip
import json
import threading
import zlib
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests.integration.conftest import Api, Server, make_config, start_server

TIMEOUT = 30
PROJECT = "42"
KEY = "publickey0123456789"


class FakeIngest:
    """What a Sentry ingest would have received: each envelope's path, headers and items."""

    def __init__(self) -> None:
        self.envelopes: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def events(self) -> list[dict[str, Any]]:
        with self.lock:
            return [item for envelope in self.envelopes for kind, item in envelope["items"] if kind == "event"]


def _decode(body: bytes, encoding: str) -> bytes:
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    assert encoding in ("", "identity"), f"unexpected Content-Encoding {encoding!r}"
    return body


def _items(envelope: bytes) -> list[tuple[str, dict[str, Any]]]:
    """An envelope's items: a header line, then per item a header line and its payload."""
    lines = envelope.split(b"\n")
    items = []
    index = 1
    while index + 1 < len(lines):
        header = json.loads(lines[index])
        payload = lines[index + 1]
        if "length" in header:  # a payload may hold newlines when its length is given
            rest = b"\n".join(lines[index + 1:])
            payload = rest[: header["length"]]
            consumed = payload.count(b"\n")
            index += consumed
        items.append((header.get("type", ""), json.loads(payload) if payload.strip() else {}))
        index += 2
    return items


@pytest.fixture
def ingest() -> Iterator[tuple[FakeIngest, int]]:
    fake = FakeIngest()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            envelope = _decode(body, self.headers.get("Content-Encoding", ""))
            with fake.lock:
                fake.envelopes.append({"path": self.path, "auth": self.headers.get("X-Sentry-Auth", ""),
                                       "items": _items(envelope)})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"id": "0"}')

        def log_message(self, *args: Any) -> None:
            pass

    http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake, http.server_address[1]
    finally:
        http.shutdown()
        http.server_close()


@pytest.fixture
async def reporting(nursery: trio.Nursery, database_url: str, tmp_path: Path,
                    ingest: tuple[FakeIngest, int]) -> AsyncIterator[Server]:
    dsn = f"http://{KEY}@127.0.0.1:{ingest[1]}/{PROJECT}"
    srv = await start_server(nursery, make_config(tmp_path, database_url, sentry_dsn=dsn,
                                                  sentry_environment="test"))
    yield srv
    nursery.cancel_scope.cancel()
    await srv.db.aclose()


def _broken() -> dict[str, Any]:
    raise RuntimeError("kaboom: the health figures broke")


async def wait_events(fake: FakeIngest, count: int) -> list[dict[str, Any]]:
    while len(events := fake.events()) < count:
        await trio.sleep(0.05)
    return events


async def test_an_unhandled_error_reaches_sentry_with_the_request_id(
        reporting: Server, ingest: tuple[FakeIngest, int]) -> None:
    fake, _ = ingest
    assert reporting.deps.errors.enabled
    with trio.fail_after(TIMEOUT):
        async with httpx.AsyncClient(base_url=reporting.url, timeout=10) as client:
            # handled errors (a 404, a 401) are answers, not errors to report
            assert (await client.get("/no/such/route")).status_code == 404
            assert (await client.get("/auth/me")).status_code == 401
            reporting.deps.health = _broken
            failed = await client.get("/health", headers={"X-Request-Id": "req-sentry-0001"})
            assert failed.status_code == 500
            assert failed.json()["error"] == "ERR_INTERNAL"
            error_id = failed.json()["errorId"]
            # a request without an id of its own: the one the app gave it (its X-Request-Id answer)
            second = await client.get("/health")
            assert second.status_code == 500
            generated = second.headers["X-Request-Id"]

        first, other = await wait_events(fake, 2)
        assert first["tags"]["request_id"] == "req-sentry-0001"
        assert first["tags"]["error_id"] == error_id
        assert other["tags"]["request_id"] == generated != "req-sentry-0001"
        exception = first["exception"]["values"][-1]
        assert exception["type"] == "RuntimeError" and "kaboom" in exception["value"]
        assert exception["stacktrace"]["frames"]  # where it happened
        assert first["request"] == {"method": "GET", "url": "/health"}
        assert first["transaction"] == "GET /health"
        assert first["environment"] == "test" and first["release"].startswith("zapgate@")
        assert reporting.deps.errors.reported == 2
        envelope = fake.envelopes[0]
        assert envelope["path"] == f"/api/{PROJECT}/envelope/"
        assert f"sentry_key={KEY}" in envelope["auth"]


async def test_nothing_is_reported_without_a_dsn(api: Api, server: Server) -> None:
    assert server.config.sentry_dsn is None
    assert not server.deps.errors.enabled
    with trio.fail_after(TIMEOUT):
        server.deps.health = _broken
        failed = await api.client.get("/health", headers={"X-Request-Id": "req-no-sentry"})
        assert failed.status_code == 500 and failed.json()["error"] == "ERR_INTERNAL"
        assert server.deps.errors.reported == 0
        assert server.deps.errors.report(RuntimeError("not sent"), request_id="x") is None
