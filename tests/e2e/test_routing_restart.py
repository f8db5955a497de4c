"""Routing survives kill -9 (issue 12): a menu continues where it was, a timer due while zapgate was down
fires once after start. What the contact got is counted from the sandbox's outbox, which survives the kill
as WhatsApp's servers would."""

from __future__ import annotations

import signal
import time

import httpx

from tests.e2e.conftest import free_port, wait_until
from tests.e2e.sandbox_app import connected_line as _connected
from tests.e2e.sandbox_app import login as _login
from tests.e2e.sandbox_app import serve_env as _env
from tests.e2e.sandbox_app import sql as _sql
from tests.e2e.sandbox_app import start as _start

CUSTOMER = "5511977771234"





def _outbox(client: httpx.Client, wid: int) -> list[str]:
    return [item["body"] for item in client.get(f"/sandbox/{wid}/outbox").json()]




def test_kill_mid_menu_then_the_answer_routes_and_the_menu_is_not_sent_again(zapgate, external_db_env) -> None:
    env, port, db = _env(external_db_env), free_port(), external_db_env["DATABASE_URL"]
    first = _start(zapgate, env, port)
    client = _login(first.url)
    wid = _connected(client)
    queues = [client.post("/queue", json={"name": name, "color": "#101010", "greetingMessage": greeting}).json()["id"]
              for name, greeting in (("Vendas", "Vendas aqui"), ("Suporte", "Suporte aqui"))]
    assert client.put(f"/whatsapp/{wid}", json={"queueIds": queues, "greetingMessage": "Escolha:"}).status_code == 200
    assert client.post(f"/sandbox/{wid}/inbound", json={"from": CUSTOMER, "body": "oi"}).status_code == 200
    menu = "Escolha:\n\n*[ 1 ]* - Vendas\n*[ 2 ]* - Suporte"
    wait_until(lambda: _outbox(client, wid) == [menu], what="the menu")
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(10)

    second = _start(zapgate, env, port)
    client = _login(second.url)
    wait_until(lambda: client.get(f"/whatsapp/{wid}").json()["status"] == "CONNECTED", what="reconnected")
    assert client.post(f"/sandbox/{wid}/inbound", json={"from": CUSTOMER, "body": " 2 "}).status_code == 200
    wait_until(lambda: len(_outbox(client, wid)) >= 2, what="the answer routed")
    time.sleep(1)  # a menu sent again would be here by now
    assert _outbox(client, wid) == [menu, "Suporte aqui"]
    assert _sql(db, "SELECT queue_id, chatbot FROM tickets") == [(queues[1], False)]
    assert second.terminate() == 0


def test_a_timer_due_while_down_fires_once_after_start(zapgate, external_db_env) -> None:
    env, port, db = _env(external_db_env), free_port(), external_db_env["DATABASE_URL"]
    first = _start(zapgate, env, port)
    client = _login(first.url)
    wid = _connected(client)
    assert client.put(f"/whatsapp/{wid}", json={"expiresTicket": 30,
                                                "expiresInactiveMessage": "Encerrado"}).status_code == 200
    assert client.post(f"/sandbox/{wid}/inbound", json={"from": CUSTOMER, "body": "oi"}).status_code == 200
    wait_until(lambda: _sql(db, "SELECT 1 FROM timers WHERE kind = 'ticket.expire' AND state = 'pending'"),
               what="the expiry timer")
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(10)
    # while zapgate is down, the timer comes due
    _sql(db, "UPDATE timers SET due_at = now() - interval '1 second' WHERE kind = 'ticket.expire'")

    second = _start(zapgate, env, port)
    client = _login(second.url)
    wait_until(lambda: _outbox(client, wid) == ["Encerrado"], what="the expiry message")
    assert _sql(db, "SELECT status FROM tickets") == [("closed",)]
    # killed again right after it fired, and started once more: nothing fires twice
    second.proc.send_signal(signal.SIGKILL)
    second.proc.wait(10)
    third = _start(zapgate, env, port)
    client = _login(third.url)
    wait_until(lambda: client.get(f"/whatsapp/{wid}").json()["status"] == "CONNECTED", what="reconnected")
    time.sleep(1.5)
    assert _outbox(client, wid) == ["Encerrado"]
    assert _sql(db, "SELECT state FROM timers WHERE kind = 'ticket.expire'") == [("done",)]
    assert third.terminate() == 0
