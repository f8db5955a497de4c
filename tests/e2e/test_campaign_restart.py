"""A 300-contact campaign with pacing off survives two kill -9s mid-run (issue 14's acceptance): every contact
receives it exactly once — counted from the sandbox outbox, which survives the kills as WhatsApp's servers
would — and it ends FINALIZADA with its shippings matching the outbox.

The campaign is made through the API (settings: pacing off; scheduled a few seconds ahead, so its start is a
durable timer that the first kill leaves pending). With pacing off zapgate sends 300 messages in well under a
second here, too fast to kill mid-run reliably: the simulated network is made slow instead (SANDBOX_LATENCY,
10 ms a send, as a real network's round trip), which is the network's pace, not the campaign's."""

from __future__ import annotations

import datetime as dt
import signal
from typing import Any

import httpx

from tests.e2e.conftest import free_port, wait_until
from tests.e2e.sandbox_app import connected_line as _connected
from tests.e2e.sandbox_app import login as _login
from tests.e2e.sandbox_app import serve_env as _env
from tests.e2e.sandbox_app import sql as _sql
from tests.e2e.sandbox_app import start as _start

CONTACTS = [f"55119{index:08d}" for index in range(300)]


def _sent(client: httpx.Client, wid: int) -> list[dict[str, Any]]:
    return [item for item in client.get(f"/sandbox/{wid}/outbox").json() if item["ack"] != "failed"]


def _kill(process: Any) -> None:
    process.proc.send_signal(signal.SIGKILL)
    process.proc.wait(10)


def test_three_hundred_contacts_exactly_once_across_two_kills(zapgate, external_db_env) -> None:
    env, port, db = {**_env(external_db_env), "SANDBOX_LATENCY": "0.01"}, free_port(), external_db_env["DATABASE_URL"]
    first = _start(zapgate, env, port)
    client = _login(first.url)
    wid = _connected(client)
    made = client.post("/contact-lists", json={"name": "all"})
    assert made.status_code == 201, made.text
    with_items = "INSERT INTO contact_list_items (company_id, contact_list_id, name, number) " \
                 "SELECT 1, %s, 'Cliente ' || n, n FROM unnest(%s::text[]) AS n"
    _sql(db, with_items, (made.json()["id"], CONTACTS))  # the list's 300 numbers (its import is tested elsewhere)
    assert client.post("/campaign-settings", json={"settings": {"pacing": False}}).status_code == 200
    soon = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=3)).isoformat()
    campaign = client.post("/campaigns", json={
        "name": "Black Friday", "whatsappId": wid, "contactListId": made.json()["id"], "scheduledAt": soon,
        "message1": "Oi {{firstname}}!", "message2": "Olá {{name}}!", "confirmation": False})
    assert campaign.status_code == 200 and campaign.json()["status"] == "PROGRAMADA", campaign.text
    campaign_id = campaign.json()["id"]
    _kill(first)  # before its time: the start is a durable timer the next process fires

    second = _start(zapgate, env, port)
    client = _login(second.url)
    wait_until(lambda: len(_sent(client, wid)) >= 60, timeout=60, what="60 sends")
    _kill(second)

    third = _start(zapgate, env, port)
    client = _login(third.url)
    before = len(_sent(client, wid))
    assert before < 300  # killed mid-run
    wait_until(lambda: len(_sent(client, wid)) >= min(300, before + 80), timeout=60, what="80 more sends")
    _kill(third)
    assert _sql(db, "SELECT count(*) FROM campaign_shippings WHERE state = 'queued'")[0][0] > 0  # mid-run again

    fourth = _start(zapgate, env, port)
    client = _login(fourth.url)
    wait_until(lambda: _sql(db, "SELECT status FROM campaigns WHERE id = %s", (campaign_id,)) == [("FINALIZADA",)],
               timeout=90, what="FINALIZADA")
    sent = _sent(client, wid)
    assert len(sent) == 300
    print("resends WhatsApp kept once:", sum(item["duplicates"] for item in sent))
    assert sorted(item["to"].split("@")[0] for item in sent) == CONTACTS  # one entry per number
    assert _sql(db, "SELECT state, count(*) FROM campaign_shippings WHERE campaign_id = %s GROUP BY 1",
                (campaign_id,)) == [("sent", 300)]
    assert _sql(db, "SELECT count(*) FROM messages WHERE sent_by = 'campaign' AND status = 'sent'") == [(300,)]
    assert fourth.terminate() == 0
