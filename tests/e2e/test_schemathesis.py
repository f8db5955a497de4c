"""schemathesis fuzzes a live `zapgate serve` against its own OpenAPI document (`GET /openapi.json`).

Every operation, with a fixed seed and a bounded number of examples each: the examples, fuzzing (valid and
invalid data) and stateful phases (the spec's links feed a created record's id to the operations on it).
Checks: `not_a_server_error` (zero 5xx), `response_schema_conformance` (every answer as the spec says) and
`status_code_conformance` (every status documented). The server's own log must show no unhandled error and
no actor crash over the run: fuzzing that breaks an actor without a 5xx is a bug too.

Not fuzzed, and why:
- `/socket.io` (GET, POST): Engine.IO long-polling holds a request up to the ping interval (25 s) and a
  handshake opens a realtime session; the realtime tests (tests/e2e/realtime, tests/unit/test_realtime_*)
  drive it with the stock socket.io client, which is what its contract is about.
- `/media/{token}/{name}`, `/public/{token}/{name}` are fuzzed, but their tokens are random capabilities no
  fuzzer can guess: they answer 404 (as they must).

ZAPGATE_FUZZ_EXAMPLES (default 8) and ZAPGATE_FUZZ_SEED (default 20261206) change the budget and the seed for
a longer local hunt; the README's "API spec" section shows the same run by hand.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import attrs
import httpx

from tests.e2e.conftest import wait_until

ADMIN = {"email": "admin@zapgate.local", "password": "fuzz-admin-pass-1"}
EXAMPLES = int(os.environ.get("ZAPGATE_FUZZ_EXAMPLES", "8"))
SEED = int(os.environ.get("ZAPGATE_FUZZ_SEED", "20261206"))
RUN_DEADLINE = 600  # seconds: the run takes about two minutes on two cores; a hang fails instead of stalling CI
CHECKS = "not_a_server_error,response_schema_conformance,status_code_conformance"
NOT_FUZZED = ("/socket.io",)
# this checkout's code, whatever zapgate the environment has installed (a shared venv's editable install of
# another checkout would otherwise serve its own routes and spec)
ROOT = Path(__file__).resolve().parents[2]
CRASHES = re.compile(r'"msg": "(unhandled error|[^"]*crashed[^"]*)"')


@attrs.frozen
class Seeded:
    token: str  # the super admin's access token
    line_token: str  # the sandbox line's API token
    ids: dict[str, int]  # path parameter → the id of a seeded record


def _seed(url: str) -> Seeded:
    """A company with something in it: a paired sandbox line, a contact who wrote (a ticket with messages),
    a tag, a queue, a contact list."""
    with httpx.Client(base_url=url, timeout=10) as client:
        token = client.post("/auth/login", json=ADMIN).json()["token"]
        client.headers["Authorization"] = f"Bearer {token}"
        line = client.post("/whatsapp", json={"name": "fuzz line", "channel": "sandbox"}).json()["id"]
        wait_until(lambda: client.get(f"/whatsapp/{line}").json()["status"] == "qrcode", what="qrcode")
        assert client.post(f"/sandbox/{line}/pair", json={"number": "5511900005555"}).status_code == 200
        wait_until(lambda: client.get(f"/whatsapp/{line}").json()["status"] == "CONNECTED", what="connected")
        for body in ("hello", "are you there?"):
            assert client.post(f"/sandbox/{line}/inbound", json={"from": "5511988886666", "name": "Ana",
                                                                 "body": body}).status_code == 200
        wait_until(lambda: client.get("/tickets").json()["count"] == 1, what="the ticket")
        ticket = client.get("/tickets").json()["tickets"][0]
        messages = client.get(f"/messages/{ticket['id']}").json()["messages"]
        tag = client.post("/tags", json={"name": "fuzzed", "color": "#aa3300"}).json()["id"]
        queue = client.post("/queue", json={"name": "Sales", "color": "#00aa33"}).json()["id"]
        contact_list = client.post("/contact-lists", json={"name": "fuzz list"}).json()["id"]
        ids = {"ticket_id": ticket["id"], "id": ticket["id"], "contact_id": ticket["contactId"], "whatsapp_id": line,
               "tag_id": tag, "queue_id": queue, "list_id": contact_list, "message_id": messages[-1]["id"]}
        return Seeded(token, client.get(f"/whatsapp/{line}").json()["token"], ids)


def _config(seeded: Seeded) -> str:
    """schemathesis's configuration: the external send API with the line's token, not a user's; and half the
    path ids of the operations that read or change a record drawn from the seeded ones (the rest generated),
    so that their handlers get past the 404 and meet the fuzzed bodies. Deletions keep generated ids: one
    that hit a seeded record early would leave the rest of the run nothing to work on."""
    lines = ['[[operations]]', 'include-path = "/api/messages/send"',
             f'headers = {{ Authorization = "Bearer {seeded.line_token}" }}', '']
    for name, value in seeded.ids.items():
        lines += [f'[dictionaries.{name}]', f'values = [{value}]', '']
    bindings = ", ".join(f'"path.{name}" = {{ dictionary = "{name}", probability = 0.5 }}' for name in seeded.ids)
    lines += ['[[operations]]', 'exclude-method = "DELETE"', f'parameters = {{ {bindings} }}', '']
    return "\n".join(lines)


def test_schemathesis_finds_no_server_error_and_no_answer_off_the_spec(zapgate, external_db_env,
                                                                      tmp_path: Path) -> None:
    env = {**external_db_env, "ADMIN_PASSWORD": ADMIN["password"], "SANDBOX_QR_INTERVAL": "1",
           "DEFAULT_CHANNEL": "sandbox", "ACCESS_TOKEN_TTL": "3600", "LOG_FORMAT": "json",
           # the signup is fuzzed too, beyond its per-address hourly limit
           "SIGNUP_MAX_PER_IP": "100000", "LOGIN_MAX_FAILURES_PER_IP": "100000",
           # fuzzed webhooks: the SSRF guard refuses every loopback/private URL (never off here), a post to
           # whatever public address a fuzzed URL names is bounded (2 s, one at a time, retried for 10 s)
           "WEBHOOK_ALLOW_PRIVATE": "off", "WEBHOOK_TIMEOUT": "2", "WEBHOOK_MAX_IN_FLIGHT": "1",
           "WEBHOOK_RETRY_FOR": "10", "WEBHOOK_DISABLE_AFTER": "10",
           "PYTHONPATH": os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))}
    process = zapgate(["serve"], env)
    process.wait_healthy()
    seeded = _seed(process.url)
    config = tmp_path / "schemathesis.toml"
    config.write_text(_config(seeded))
    spec = httpx.get(process.url + "/openapi.json", timeout=10).json()
    operations = sum(len(item) for item in spec["paths"].values())
    fuzzed = operations - sum(len(spec["paths"][path]) for path in NOT_FUZZED)
    assert fuzzed >= 190

    command = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "run",
               f"{process.url}/openapi.json",
               "--header", f"Authorization: Bearer {seeded.token}", "--checks", CHECKS,
               "--phases", "examples,fuzzing,stateful", "--max-examples", str(EXAMPLES), "--seed", str(SEED),
               "--generation-database", "none", "--workers", "1", "--request-timeout", "20",
               "--no-color", "--report", "junit", "--report-dir", str(tmp_path / "report"),
               *(arg for path in NOT_FUZZED for arg in ("--exclude-path", path))]
    started = time.monotonic()
    run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=RUN_DEADLINE, check=False)
    took = time.monotonic() - started
    output = run.stdout + run.stderr
    summary = re.search(r"(\d+) generated, (.*)", output)
    print(f"schemathesis: {fuzzed} operations, {summary.group(0) if summary else '?'}, {took:.0f} s")
    assert run.returncode == 0, f"schemathesis failed (seed {SEED}):\n{output[-20000:]}"
    assert summary is not None and int(summary.group(1)) >= fuzzed, output[-3000:]
    selected = re.search(r"Selected: (\d+)/(\d+)", output)
    # every operation but /socket.io's, and `GET /openapi.json`, which schemathesis loads and leaves out
    assert selected is not None and int(selected.group(1)) == fuzzed - 1, output[-3000:]
    assert re.search(r"✅\s+Stateful \(in", output), output[-3000:]  # the links were followed, and passed
    # the token held for the whole run (a fuzzed plan may lose features: a few operations then only answer 403)
    refused = re.search(r"Authentication failed: (\d+) operations? returned only 401/403", output)
    assert refused is None or int(refused.group(1)) < fuzzed // 4, output[-6000:]
    me = httpx.get(process.url + "/auth/me", headers={"Authorization": f"Bearer {seeded.token}"}, timeout=10)
    assert me.status_code == 200, me.text
    crashes = CRASHES.findall(process.output())
    assert not crashes, f"the server logged errors while fuzzed: {crashes[:5]}\n{process.output()[-8000:]}"
