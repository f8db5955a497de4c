"""`zapgate serve` as a user runs it: first start on the embedded PostgreSQL, login, graceful stop."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx

from tests.e2e.conftest import BANNER_PASSWORD, BANNER_URL


def test_first_start_on_embedded_postgres_prints_a_working_admin_login(zapgate) -> None:
    env = {"DATABASE_URL": "", "DB_HOST": "", "ZAPGATE_SANDBOX": "on", "LOG_FORMAT": "json"}
    process = zapgate(["serve"], env)
    password = process.wait_for(BANNER_PASSWORD).group(1)
    assert process.wait_for(BANNER_URL).group(1) == f"http://localhost:{process.port}"
    assert "embedded PostgreSQL" in process.output()
    process.wait_healthy()
    ready = httpx.get(process.url + "/ready", timeout=5)
    assert ready.status_code == 200, ready.text

    login = httpx.post(process.url + "/auth/login", json={"email": "admin@zapgate.local", "password": password},
                       timeout=10)
    assert login.status_code == 200, login.text
    assert login.json()["user"]["super"] is True
    assert process.terminate() == 0
    assert '"msg": "stopped"' in process.output()

    # A second start reuses the database and still tells the (unchanged) generated password.
    again = zapgate(["serve"], env)
    assert again.wait_for(BANNER_PASSWORD).group(1) == password
    again.wait_healthy()
    assert httpx.post(again.url + "/auth/login", json={"email": "admin@zapgate.local", "password": password},
                      timeout=10).status_code == 200
    assert again.terminate() == 0


def test_sigterm_lets_an_in_flight_request_finish_then_exits_zero(zapgate, external_db_env) -> None:
    process = zapgate(["serve"], {**external_db_env, "ADMIN_PASSWORD": "slow-request-1", "GRACEFUL_TIMEOUT": "10"})
    process.wait_healthy()
    body = b'{"email": "admin@zapgate.local", "password": "slow-request-1"}'
    sent_half = threading.Event()

    def slow_body() -> Iterator[bytes]:
        # The body trickles in over ~2 s; SIGTERM arrives in the middle of it.
        for index in range(0, len(body), 8):
            yield body[index:index + 8]
            if index == 24:
                sent_half.set()
            time.sleep(0.25)

    result: dict[str, httpx.Response | BaseException] = {}

    def request() -> None:
        try:
            result["response"] = httpx.post(process.url + "/auth/login", content=slow_body(),
                                            headers={"Content-Type": "application/json"}, timeout=30)
        except BaseException as error:  # reported by the assertion below
            result["response"] = error

    thread = threading.Thread(target=request)
    thread.start()
    assert sent_half.wait(10)
    process.proc.send_signal(__import__("signal").SIGTERM)
    time.sleep(0.3)
    # Not accepting any more: a new connection is refused while the slow one is still being served.
    try:
        refused = httpx.get(process.url + "/health", timeout=2)
        refused_ok = False, refused.status_code
    except httpx.TransportError:
        refused_ok = True, None
    thread.join(30)
    response = result["response"]
    assert isinstance(response, httpx.Response), f"the in-flight request failed: {response!r}"
    assert response.status_code == 200 and response.json()["token"]
    assert process.proc.wait(30) == 0, process.output()
    assert refused_ok[0], f"a new request was still served during shutdown ({refused_ok[1]})"
    assert "shutting down gracefully" in process.output()
