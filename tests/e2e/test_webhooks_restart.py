"""Webhooks on the real process: zapgate killed (kill -9) after a change committed and while its delivery
is in the receiver's hands unanswered — after the restart the delivery is posted again with the same
webhook-id, verified with the `standardwebhooks` library, and marked delivered; and a delivery written
while the receiver was down, with zapgate killed before any retry, goes out after the restart."""

from __future__ import annotations

import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from standardwebhooks import Webhook

from tests.e2e.conftest import free_port, wait_until
from tests.e2e.sandbox_app import connected_line, login, serve_env, sql, start

CUSTOMER = "5511977771234"


class HoldingReceiver:
    """A real HTTP receiver (stdlib, a thread per request) that holds its first request unanswered until
    `release()`, and answers every other one 200 at once."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.released = threading.Event()
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                with owner.lock:
                    owner.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                    first = len(owner.received) == 1
                if first:
                    owner.released.wait(60)
                self.send_response(200)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


def _env(external_db_env: dict[str, str]) -> dict[str, str]:
    # PYTHONPATH: this checkout's code, whichever checkout the shared environment has installed
    return {**serve_env(external_db_env), "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
            "WEBHOOK_ALLOW_PRIVATE": "on", "WEBHOOK_TIMEOUT": "2",
            "WEBHOOK_BACKOFF_INITIAL": "0.2", "WEBHOOK_BACKOFF_MAX": "1", "WEBHOOK_POLL_INTERVAL": "0.2"}


def _hook(client: httpx.Client, url: str) -> dict[str, Any]:
    made = client.post("/webhooks", json={"url": url, "events": ["message.created"]})
    assert made.status_code == 201, made.text
    return made.json()


def test_killed_mid_delivery_it_is_delivered_after_restart_with_the_same_id(zapgate, external_db_env) -> None:
    env, port, db = _env(external_db_env), free_port(), external_db_env["DATABASE_URL"]
    receiver = HoldingReceiver()
    try:
        first = start(zapgate, env, port)
        client = login(first.url)
        hook = _hook(client, receiver.url)
        wid = connected_line(client)
        assert client.post(f"/sandbox/{wid}/inbound", json={"from": CUSTOMER, "body": "antes da queda"}).is_success
        wait_until(lambda: receiver.received, what="the first post, held by the receiver")
        first.proc.send_signal(signal.SIGKILL)  # the change is committed, its delivery unanswered
        first.proc.wait(10)
        assert sql(db, "SELECT status, attempts FROM webhook_deliveries") == [("pending", 1)]
        receiver.released.set()

        second = start(zapgate, env, port)
        client = login(second.url)
        wait_until(lambda: sql(db, "SELECT status FROM webhook_deliveries") == [("delivered",)], timeout=40,
                   what="delivered after the restart")
        ids = {headers["webhook-id"] for headers, _ in receiver.received}
        assert len(receiver.received) == 2 and len(ids) == 1  # at-least-once, one webhook-id to de-duplicate on
        for headers, body in receiver.received:
            payload = Webhook(hook["secret"]).verify(body, headers)
            assert payload["type"] == "message.created" and payload["data"]["body"] == "antes da queda"
        assert second.terminate() == 0
    finally:
        receiver.close()


def test_written_while_the_receiver_was_down_and_killed_before_a_retry_it_goes_out_after(
        zapgate, external_db_env) -> None:
    env, port, db = _env(external_db_env), free_port(), external_db_env["DATABASE_URL"]
    env["WEBHOOK_BACKOFF_INITIAL"] = "60"  # the retry would come long after the kill
    env["WEBHOOK_BACKOFF_MAX"] = "60"
    dead = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there yet
    first = start(zapgate, env, port)
    client = login(first.url)
    hook = _hook(client, dead)
    wid = connected_line(client)
    assert client.post(f"/sandbox/{wid}/inbound", json={"from": CUSTOMER, "body": "ninguém ouviu"}).is_success
    wait_until(lambda: sql(db, "SELECT attempts FROM webhook_deliveries") == [(1,)], what="a failed attempt")
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(10)
    # the receiver comes up (on the URL the endpoint has), the retry is made due now: zapgate is down
    receiver = HoldingReceiver()
    receiver.released.set()
    try:
        sql(db, "UPDATE webhooks SET url = %s", (receiver.url,))
        sql(db, "UPDATE webhook_deliveries SET next_attempt_at = now()")
        second = start(zapgate, env, port)
        wait_until(lambda: sql(db, "SELECT status FROM webhook_deliveries") == [("delivered",)], timeout=40,
                   what="delivered after the restart")
        assert len(receiver.received) == 1
        headers, body = receiver.received[0]
        assert Webhook(hook["secret"]).verify(body, headers)["data"]["body"] == "ninguém ouviu"
        assert sql(db, "SELECT attempts, last_status_code FROM webhook_deliveries") == [(2, 200)]
        assert second.terminate() == 0
    finally:
        receiver.close()
