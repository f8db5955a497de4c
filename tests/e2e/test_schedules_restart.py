"""Scheduled messages on the real process (issue 13): one due while zapgate is killed (kill -9) is sent exactly
once after the restart, and a recurring one sends its count on the real clock and stops. What the contact got
is counted from the sandbox's outbox (with its `attempts` and `duplicates`), which survives the kill as
WhatsApp's servers would."""

from __future__ import annotations

import datetime as dt
import signal
import time
from typing import Any

import httpx

from tests.e2e.conftest import free_port, wait_until
from tests.e2e.sandbox_app import connected_line as _connected
from tests.e2e.sandbox_app import login as _login
from tests.e2e.sandbox_app import serve_env as _env
from tests.e2e.sandbox_app import sql as _sql
from tests.e2e.sandbox_app import start as _start

CUSTOMER = "5511977775678"





def _contact(client: httpx.Client) -> int:
    response = client.post("/contacts", json={"name": "Carla", "number": CUSTOMER})
    assert response.status_code in (200, 201), response.text
    return response.json()["id"]


def _outbox(client: httpx.Client, wid: int) -> list[dict[str, Any]]:
    return client.get(f"/sandbox/{wid}/outbox").json()




def _iso(when: dt.datetime) -> str:
    return when.isoformat()


def test_a_schedule_due_while_killed_is_sent_exactly_once_after_restart(zapgate, external_db_env) -> None:
    env, port, db = _env(external_db_env), free_port(), external_db_env["DATABASE_URL"]
    first = _start(zapgate, env, port)
    client = _login(first.url)
    wid = _connected(client)
    contact = _contact(client)
    due = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=4)
    made = client.post("/schedules", json={"body": "Olá {{name}}, sua consulta é amanhã", "contactId": contact,
                                           "sendAt": _iso(due)})
    assert made.status_code == 200, made.text
    schedule_id = made.json()["id"]
    first.proc.send_signal(signal.SIGKILL)  # killed before it is due
    first.proc.wait(10)
    while dt.datetime.now(dt.UTC) < due + dt.timedelta(seconds=1):  # it falls due while zapgate is down
        time.sleep(0.2)

    second = _start(zapgate, env, port)
    client = _login(second.url)
    try:  # the process's own log, when it does not come (a hang guard, sized for a loaded machine)
        wait_until(lambda: len(_outbox(client, wid)) == 1, timeout=60, what="the scheduled message")
    except AssertionError as error:
        raise AssertionError(f"{error}\n{second.output()[-4000:]}") from None
    shown = client.get(f"/schedules/{schedule_id}").json()
    assert (shown["status"], shown["sentCount"]) == ("ENVIADA", 1)
    # killed again right after it was sent, and started once more: it is not sent again
    second.proc.send_signal(signal.SIGKILL)
    second.proc.wait(10)
    third = _start(zapgate, env, port)
    client = _login(third.url)
    wait_until(lambda: client.get(f"/whatsapp/{wid}").json()["status"] == "CONNECTED", what="reconnected")
    time.sleep(1.5)
    sent = _outbox(client, wid)
    assert [(item["body"], item["attempts"], item["duplicates"]) for item in sent] == [
        ("Olá Carla, sua consulta é amanhã", 1, 0)]
    assert _sql(db, "SELECT state FROM timers WHERE kind = 'schedule'") == [("done",)]
    assert _sql(db, "SELECT status, sent_count FROM schedules") == [("ENVIADA", 1)]
    assert _sql(db, "SELECT count(*) FROM messages WHERE sent_by = 'schedule'") == [(1,)]
    assert third.terminate() == 0


def test_a_recurring_schedule_sends_its_count_on_the_real_clock_and_stops(zapgate, external_db_env) -> None:
    env, port, db = _env(external_db_env), free_port(), external_db_env["DATABASE_URL"]
    server = _start(zapgate, env, port)
    client = _login(server.url)
    wid = _connected(client)
    contact = _contact(client)
    start = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2)
    made = client.post("/schedules", json={"body": "Tome o remédio", "contactId": contact, "sendAt": _iso(start),
                                           "recurrence": "minutes", "recurrenceEvery": 1, "recurrenceCount": 2})
    assert made.status_code == 200, made.text
    schedule_id = made.json()["id"]
    wait_until(lambda: len(_outbox(client, wid)) == 1, timeout=15, what="the first send")
    after_first = client.get(f"/schedules/{schedule_id}").json()
    assert (after_first["status"], after_first["sentCount"]) == ("AGENDADA", 1)
    assert dt.datetime.fromisoformat(after_first["sendAt"]) == start + dt.timedelta(minutes=1)
    wait_until(lambda: len(_outbox(client, wid)) == 2, timeout=75, what="the second send, a minute later")
    done = client.get(f"/schedules/{schedule_id}").json()
    assert (done["status"], done["sentCount"]) == ("ENVIADA", 2)
    sent_at = [dt.datetime.fromisoformat(row[0]) for row in _sql(
        db, "SELECT to_json(wa_timestamp)#>>'{}' FROM messages WHERE sent_by = 'schedule' ORDER BY id")]
    assert len(sent_at) == 2 and dt.timedelta(seconds=59) <= sent_at[1] - sent_at[0] <= dt.timedelta(seconds=62)
    time.sleep(1.5)  # nothing more comes
    assert [item["body"] for item in _outbox(client, wid)] == ["Tome o remédio"] * 2
    assert _sql(db, "SELECT state FROM timers WHERE kind = 'schedule' ORDER BY id") == [("done",), ("done",)]
    assert server.terminate() == 0
