"""Connections over HTTP on the sandbox network: the whole session lifecycle, events, restart."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import trio

from gateway.broker import Broker, Subscription
from tests.integration.conftest import Api, Server, auth, make_config, start_server

TIMEOUT = 30


async def wait_status(api: Api, token: str, whatsapp_id: int, predicate: Callable[[dict[str, Any]], bool],
                      what: str) -> dict[str, Any]:
    """Poll GET /whatsapp/:id until `predicate` holds (bounded by the caller's fail_after)."""
    while True:
        response = await api.client.get(f"/whatsapp/{whatsapp_id}", headers=auth(token))
        assert response.status_code == 200, response.text
        row = response.json()
        if predicate(row):
            return row
        await trio.sleep(0.05)


def statuses(subscription: Subscription, whatsapp_id: int) -> list[str]:
    seen = []
    while (event := subscription.receive_nowait()) is not None:
        if event.name.endswith("-whatsappSession") and event.payload["session"]["id"] == whatsapp_id:
            seen.append(event.payload["session"]["status"])
    return seen


async def create_sandbox(api: Api, token: str, name: str = "Sandbox 1") -> dict[str, Any]:
    response = await api.client.post("/whatsapp", json={"name": name, "channel": "sandbox"}, headers=auth(token))
    assert response.status_code == 201, response.text
    return response.json()


async def test_sandbox_lifecycle_end_to_end(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT), server.broker.subscribe(1) as events:
        token = await api.admin_token()
        created = await create_sandbox(api, token)
        wid = created["id"]
        assert created["token"] and created["channel"] == "sandbox"

        showing = await wait_status(api, token, wid, lambda r: r["status"] == "qrcode", "qrcode")
        assert showing["qrcode"].startswith("2@")
        svg = await api.client.get(f"/whatsapp/{wid}/qrcode", headers=auth(token))
        assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
        assert b"<svg" in svg.content
        png = await api.client.get(f"/whatsapp/{wid}/qrcode?format=png", headers=auth(token))
        assert png.status_code == 200 and png.content.startswith(b"\x89PNG")

        paired = await api.client.post(f"/sandbox/{wid}/pair", json={"number": "+55 11 98888-7777"},
                                       headers=auth(token))
        assert paired.status_code == 200, paired.text
        connected = await wait_status(api, token, wid, lambda r: r["status"] == "CONNECTED", "CONNECTED")
        assert connected["number"] == "5511988887777" and connected["qrcode"] == ""
        no_qr = await api.client.get(f"/whatsapp/{wid}/qrcode", headers=auth(token))
        assert no_qr.status_code == 404 and no_qr.json()["error"] == "ERR_NO_QRCODE"
        assert statuses(events, wid)[-1] == "CONNECTED"

        # Network loss: it reconnects by itself, keeping the reason of the disconnect.
        fault = await api.client.post(f"/sandbox/{wid}/fault", json={"kind": "disconnect"}, headers=auth(token))
        assert fault.status_code == 200, fault.text
        await wait_status(api, token, wid, lambda r: r["status"] == "CONNECTED" and r["lastDisconnectReason"],
                          "reconnected")
        seen = statuses(events, wid)
        assert "OPENING" in seen and seen[-1] == "CONNECTED", seen

        # Logged out from the phone: DISCONNECTED, device gone; a start shows a new QR.
        await api.client.post(f"/sandbox/{wid}/fault", json={"kind": "logout"}, headers=auth(token))
        gone = await wait_status(api, token, wid, lambda r: r["status"] == "DISCONNECTED", "DISCONNECTED")
        assert gone["lastDisconnectReason"] and gone["lastDisconnectAt"]
        assert server.sql("SELECT session_data FROM whatsapps WHERE id = %s", (wid,)) == [(None,)]
        assert statuses(events, wid)[-1] == "DISCONNECTED"
        started = await api.client.post(f"/whatsappsession/{wid}", headers=auth(token))
        assert started.status_code == 200, started.text
        again = await wait_status(api, token, wid, lambda r: r["status"] == "qrcode", "new qrcode")
        assert again["qrcode"] and again["qrcode"] != showing["qrcode"]

        # Banned: DISCONNECTED with the reason kept.
        await api.client.post(f"/sandbox/{wid}/pair", json={}, headers=auth(token))
        await wait_status(api, token, wid, lambda r: r["status"] == "CONNECTED", "CONNECTED again")
        await api.client.post(f"/sandbox/{wid}/fault", json={"kind": "ban", "reason": "spam reports"},
                              headers=auth(token))
        banned = await wait_status(api, token, wid, lambda r: r["status"] == "DISCONNECTED", "banned")
        assert "spam reports" in banned["lastDisconnectReason"]


async def test_logout_and_renew_qrcode_over_the_session_routes(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        wid = (await create_sandbox(api, token))["id"]
        first = await wait_status(api, token, wid, lambda r: r["status"] == "qrcode", "qrcode")
        renewed = await api.client.put(f"/whatsappsession/{wid}", headers=auth(token))
        assert renewed.status_code == 200
        await wait_status(api, token, wid, lambda r: r["status"] == "qrcode" and r["qrcode"] != first["qrcode"],
                          "a fresh qrcode")
        await api.client.post(f"/sandbox/{wid}/pair", json={}, headers=auth(token))
        await wait_status(api, token, wid, lambda r: r["status"] == "CONNECTED", "CONNECTED")
        out = await api.client.delete(f"/whatsappsession/{wid}", headers=auth(token))
        assert out.status_code == 200, out.text
        row = await wait_status(api, token, wid, lambda r: r["status"] == "DISCONNECTED", "DISCONNECTED")
        assert row["lastDisconnectReason"] == "logged out from zapgate"
        assert server.sql("SELECT session_data FROM whatsapps WHERE id = %s", (wid,)) == [(None,)]
        deleted = await api.client.delete(f"/whatsapp/{wid}", headers=auth(token))
        assert deleted.status_code == 200
        assert (await api.client.get(f"/whatsapp/{wid}", headers=auth(token))).status_code == 404


async def test_paired_sandbox_connections_reconnect_after_a_restart(nursery: trio.Nursery, database_url: str,
                                                                     tmp_path: Path) -> None:
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as first_run:
            first = await start_server(first_run, make_config(tmp_path, database_url))
            async with httpx.AsyncClient(base_url=first.url) as client:
                api = Api(client, first)
                token = await api.admin_token()
                wid = (await create_sandbox(api, token))["id"]
                await wait_status(api, token, wid, lambda r: r["status"] == "qrcode", "qrcode")
                await client.post(f"/sandbox/{wid}/pair", json={"number": "5511977776666"}, headers=auth(token))
                await wait_status(api, token, wid, lambda r: r["status"] == "CONNECTED", "CONNECTED")
            first_run.cancel_scope.cancel()
        await first.db.aclose()

        broker = Broker()
        with broker.subscribe(1) as events:
            second = await start_server(nursery, make_config(tmp_path, database_url), broker)
            async with httpx.AsyncClient(base_url=second.url) as client:
                api = Api(client, second)
                token = await api.admin_token()
                row = await wait_status(api, token, wid, lambda r: r["status"] == "CONNECTED", "CONNECTED")
                assert row["number"] == "5511977776666"
            seen = statuses(events, wid)
            assert seen[0] == "OPENING" and seen[-1] == "CONNECTED" and "qrcode" not in seen, seen
        await second.db.aclose()


async def test_a_connection_created_without_a_channel_takes_the_configured_default(
        nursery: trio.Nursery, database_url: str, tmp_path: Path) -> None:
    """The family's frontends never send `channel`: DEFAULT_CHANNEL=sandbox lets them create sandbox ones."""
    server = await start_server(nursery, make_config(tmp_path, database_url, default_channel="sandbox"))
    async with httpx.AsyncClient(base_url=server.url) as client:
        api = Api(client, server)
        token = await api.admin_token()
        created = await client.post("/whatsapp/", json={"name": "From the frontend"}, headers=auth(token))
        assert created.status_code == 201, created.text
        assert created.json()["channel"] == "sandbox"
        explicit = await client.post("/whatsapp", json={"name": "Real", "channel": "whatsapp"}, headers=auth(token))
        assert explicit.json()["channel"] == "whatsapp"


async def test_a_blank_token_from_the_connection_form_means_none_given(api: Api) -> None:
    """ticketz's form sends token "" (and fields zapgate ignores): a new token on create, the old one kept on edit."""
    token = await api.admin_token()
    form = {"name": "Form", "greetingMessage": "", "complationMessage": "", "outOfHoursMessage": "",
            "ratingMessage": "", "transferMessage": "", "isDefault": False, "token": "", "provider": "beta",
            "language": "", "queueIds": []}
    created = await api.client.post("/whatsapp", json=form, headers=auth(token))
    assert created.status_code == 201, created.text
    generated = created.json()["token"]
    assert isinstance(generated, str) and len(generated) >= 16
    edited = await api.client.put(f"/whatsapp/{created.json()['id']}", json={**form, "name": "Form 2"},
                                  headers=auth(token))
    assert edited.status_code == 200 and edited.json()["token"] == generated and edited.json()["name"] == "Form 2"
    short = await api.client.post("/whatsapp", json={**form, "token": "short"}, headers=auth(token))
    assert short.status_code == 400 and short.json()["error"] == "ERR_VALIDATION"
