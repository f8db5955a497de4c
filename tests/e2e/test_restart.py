"""A killed and restarted zapgate neither loses nor duplicates what it acknowledged to a caller."""

from __future__ import annotations

import signal
import time

import httpx
import psycopg

from tests.e2e.conftest import free_port, wait_until

ADMIN = {"email": "admin@zapgate.local", "password": "restart-pass-1"}


def test_outbox_survives_sigkill_and_is_sent_once(zapgate, external_db_env) -> None:
    env = {**external_db_env, "ADMIN_PASSWORD": ADMIN["password"], "SANDBOX_QR_INTERVAL": "1",
           "SESSION_RECONNECT_INITIAL": "0.2"}
    port = free_port()
    first = zapgate(["serve"], env, port=port)
    first.wait_healthy()
    client = httpx.Client(base_url=first.url, timeout=10)
    token = client.post("/auth/login", json=ADMIN).json()["token"]
    client.headers["Authorization"] = f"Bearer {token}"
    wid = client.post("/whatsapp", json={"name": "line", "channel": "sandbox"}).json()["id"]
    wait_until(lambda: client.get(f"/whatsapp/{wid}").json()["status"] == "qrcode", what="qrcode")
    assert client.post(f"/sandbox/{wid}/pair", json={"number": "5511900002222"}).status_code == 200
    wait_until(lambda: client.get(f"/whatsapp/{wid}").json()["status"] == "CONNECTED", what="connected")
    assert client.post(f"/sandbox/{wid}/inbound", json={"from": "5511988880000", "body": "oi"}).status_code == 200
    ticket_id = wait_until(lambda: client.get(f"/whatsapp/{wid}") and _ticket_id(client), what="ticket")

    sent_before = [client.post(f"/messages/{ticket_id}", json={"body": f"before {i}"}).json() for i in range(2)]
    wait_until(lambda: len(client.get(f"/sandbox/{wid}/outbox").json()) == 2, what="first sends")
    # WhatsApp becomes very slow: what is acknowledged now stays in the outbox...
    assert client.post(f"/sandbox/{wid}/fault", json={"kind": "latency", "seconds": 60}).status_code == 200
    waiting = [client.post(f"/messages/{ticket_id}", json={"body": f"after {i}"}) for i in range(3)]
    assert all(response.status_code == 201 for response in waiting)
    # ...and the process dies without a chance to clean up.
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(10)

    second = zapgate(["serve"], env, port=port)
    second.wait_healthy()
    wait_until(lambda: client.get(f"/whatsapp/{wid}").json()["status"] == "CONNECTED", what="reconnected")
    outbox = wait_until(lambda: (o := client.get(f"/sandbox/{wid}/outbox").json()) and len(o) >= 5 and o,
                        what="the outbox drained")
    time.sleep(1)  # anything sent twice would show up by now
    outbox = client.get(f"/sandbox/{wid}/outbox").json()
    # the sandbox's outbox survives the kill as WhatsApp's would: every send once, in order
    assert [o["body"] for o in outbox] == ["before 0", "before 1", "after 0", "after 1", "after 2"]
    messages = client.get(f"/messages/{ticket_id}").json()["messages"]
    mine = [m for m in messages if m["fromMe"]]
    assert [m["body"] for m in mine] == ["before 0", "before 1", "after 0", "after 1", "after 2"]
    assert all(m["status"] == "sent" and m["wid"] for m in mine)
    assert len({m["wid"] for m in mine}) == 5
    assert {m["id"] for m in mine[:2]} == {m["id"] for m in sent_before}
    assert second.terminate() == 0


def test_a_send_cut_by_a_kill_is_resent_under_its_id_and_counted_once(zapgate, external_db_env) -> None:
    """The sandbox (WhatsApp) accepted a message and zapgate was killed before it heard the answer. The sandbox's
    outbox is in PostgreSQL, committed before the answer: after the restart it still holds the message once,
    and zapgate's resend of its pending row under the same id counts as a duplicate, not a second message."""
    env = {**external_db_env, "ADMIN_PASSWORD": ADMIN["password"], "SANDBOX_QR_INTERVAL": "1",
           "SESSION_RECONNECT_INITIAL": "0.2"}
    port = free_port()
    first = zapgate(["serve"], env, port=port)
    first.wait_healthy()
    client = httpx.Client(base_url=first.url, timeout=10)
    token = client.post("/auth/login", json=ADMIN).json()["token"]
    client.headers["Authorization"] = f"Bearer {token}"
    wid = client.post("/whatsapp", json={"name": "line", "channel": "sandbox"}).json()["id"]
    wait_until(lambda: client.get(f"/whatsapp/{wid}").json()["status"] == "qrcode", what="qrcode")
    assert client.post(f"/sandbox/{wid}/pair", json={"number": "5511900003333"}).status_code == 200
    wait_until(lambda: client.get(f"/whatsapp/{wid}").json()["status"] == "CONNECTED", what="connected")
    assert client.post(f"/sandbox/{wid}/inbound", json={"from": "5511988881111", "body": "oi"}).status_code == 200
    ticket_id = wait_until(lambda: _ticket_id(client), what="ticket")

    # WhatsApp takes each message at once but answers a minute later...
    assert client.post(f"/sandbox/{wid}/fault", json={"kind": "slow_answer", "seconds": 60}).status_code == 200
    assert client.post(f"/messages/{ticket_id}", json={"body": "exactly once"}).status_code == 201
    [accepted] = wait_until(lambda: client.get(f"/sandbox/{wid}/outbox").json(), what="the send accepted")
    assert (accepted["body"], accepted["attempts"], accepted["duplicates"]) == ("exactly once", 1, 0)
    [pending] = [m for m in client.get(f"/messages/{ticket_id}").json()["messages"] if m["fromMe"]]
    assert pending["status"] == "pending"  # zapgate has not heard the answer
    # ...and zapgate dies before it comes.
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(10)

    second = zapgate(["serve"], env, port=port)
    second.wait_healthy()
    sent = wait_until(lambda: [m for m in client.get(f"/messages/{ticket_id}").json()["messages"]
                               if m["fromMe"] and m["status"] == "sent"], what="the pending row sent again")
    assert [m["wid"] for m in sent] == [accepted["id"]]  # resent under the id WhatsApp has
    outbox = client.get(f"/sandbox/{wid}/outbox").json()
    assert [(o["id"], o["body"], o["attempts"], o["duplicates"]) for o in outbox] == [
        (accepted["id"], "exactly once", 2, 1)]
    one = client.get(f"/sandbox/{wid}/outbox", params={"messageId": accepted["id"]}).json()
    assert [(o["attempts"], o["duplicates"]) for o in one] == [(2, 1)]
    with psycopg.connect(external_db_env["DATABASE_URL"]) as conn:
        assert conn.execute("SELECT count(*), sum(attempts), sum(duplicates) FROM sandbox_outbox "
                            "WHERE body = 'exactly once'").fetchone() == (1, 2, 1)
    assert second.terminate() == 0


def _ticket_id(client: httpx.Client) -> int | None:
    # no tickets API needed: the message page of ticket 1.. is enough to find it
    for candidate in range(1, 5):
        response = client.get(f"/messages/{candidate}")
        if response.status_code == 200:
            return candidate
    return None
