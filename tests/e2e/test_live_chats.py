"""The internal chat's events with the stock npm socket.io-client: its participants' sockets get them,
a colleague's socket in the same company namespace does not."""

from __future__ import annotations

import httpx
import trio

from tests.e2e.test_live import TIMEOUT, start_client
from tests.e2e.test_live import live_server as live_server  # the fixture
from tests.e2e.test_socketio_client import node as node  # the fixture: installs the client
from tests.integration.conftest import Api, Server, auth


async def test_chat_events_reach_the_participants_only(nursery: trio.Nursery, node: str,
                                                       live_server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        async with httpx.AsyncClient(base_url=live_server.url) as http:
            api = Api(http, live_server)
            admin = await api.admin_token()
            ids = {}
            for name in ("ana", "bia", "caio"):
                ids[name] = (await api.create_user(admin, f"{name}@acme.test", "user-pass-1"))["id"]
            ana, bia, caio = [await api.login(f"{name}@acme.test", "user-pass-1") for name in ("ana", "bia", "caio")]
            bia_socket = await start_client(nursery, node, live_server.url, "/1", bia)
            caio_socket = await start_client(nursery, node, live_server.url, "/1", caio)
            for client in (bia_socket, caio_socket):
                await client.wait_for(lambda line: line["step"] == "ready")

            chat = (await http.post("/chats", json={"title": "Plantão", "users": [{"id": ids["bia"]}]},
                                    headers=auth(ana))).json()
            sent = await http.post(f"/chats/{chat['id']}/messages", json={"message": "oi, Bia"}, headers=auth(ana))
            assert sent.status_code == 200
            created = await bia_socket.wait_for(lambda line: line["step"] == "event"
                                                and line["name"] == f"company-1-chat-user-{ids['bia']}")
            assert created["payload"]["action"] == "create" and created["payload"]["record"]["id"] == chat["id"]
            for name in (f"company-1-chat-{chat['id']}", "company-1-chat"):
                event = await bia_socket.wait_for(lambda line, name=name: line["step"] == "event"
                                                  and line["name"] == name)
                payload = event["payload"]
                assert payload["action"] == "new-message" and payload["newMessage"]["message"] == "oi, Bia"
                bia_entry = next(u for u in payload["chat"]["users"] if u["userId"] == ids["bia"])
                assert bia_entry["unreads"] == 1  # what lights the menu's badge
                assert "_participants" not in payload  # the audience never reaches a client

            # an event for the whole company after them: once Caio has it, he has had every earlier one
            queue = await http.post("/queue", json={"name": "Depois", "color": "#00aa00"}, headers=auth(admin))
            assert queue.status_code in (200, 201), queue.text
            await caio_socket.wait_for(lambda line: line["step"] == "event" and line["name"] == "company-1-queue")
            assert not [line for line in caio_socket.events() if "-chat" in line["name"]], caio_socket.events()
            for client in (bia_socket, caio_socket):
                await client.close()
