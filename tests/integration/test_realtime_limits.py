"""Realtime limits and rules against the real app on hypercorn: an anonymous handshake flood keeps no
logged-in user out, id-only ticket events follow the visibility rule, a socket's viewer follows its
user's changes, join events are rate-limited (issue 22, items 8 and 13)."""

from __future__ import annotations

import collections
import json
import logging
from typing import Any

import h11
import httpx
import pytest
import trio
from trio_websocket import open_websocket_url

from api.live import CompanyNamespaces
from api.presence import Presence
from api.realtime import Handshake, RealtimeConfig, RealtimeServer
from api.realtime.session import POLLING, EngineSession
from tests.integration.conftest import Api, Server, auth
from tests.integration.socketio_client import PollingSocket, SocketRefused, polling_socket
from tests.integration.test_conversations import connected_sandbox, inbound, wait_sql
from tests.integration.test_whatsapp import create_sandbox

TIMEOUT = 60
FLOOD_TIMEOUT = 240  # the flood costs hypercorn ~1 ms of CPU per request: 12 s on an idle machine
FLOOD = 11_000  # more than the old server-wide cap of 10,000 sessions
PER_CONNECTION = 1_000  # hypercorn ends a keep-alive connection after 1,000 requests
TARGET = "/socket.io/?EIO=4&transport=polling"


async def handshakes(port: int, count: int) -> list[tuple[int, dict[str, str], bytes]]:
    """`count` Engine.IO handshakes pipelined on one keep-alive HTTP/1.1 connection; each answer parsed."""
    request = h11.Request(method="GET", target=TARGET, headers=[("host", f"127.0.0.1:{port}")])
    wire = h11.Connection(h11.CLIENT)
    raw = wire.send(request) + wire.send(h11.EndOfMessage())  # the same bytes for every request
    answers: list[tuple[int, dict[str, str], bytes]] = []
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream, trio.open_nursery() as nursery:
        nursery.start_soon(stream.send_all, raw * count)
        for index in range(count):
            if index:
                wire.start_next_cycle()
                wire.send(request)
                wire.send(h11.EndOfMessage())
            status, headers, body = 0, {}, b""
            while True:
                event = wire.next_event()
                if event is h11.NEED_DATA:
                    wire.receive_data(await stream.receive_some(65536))
                elif isinstance(event, h11.Response):
                    status = event.status_code
                    headers = {name.decode(): value.decode() for name, value in event.headers}
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    break
            answers.append((status, headers, body))
    return answers


@pytest.fixture
async def flood_server(nursery: trio.Nursery, database_url: str, tmp_path: Any) -> Server:
    from tests.integration.conftest import make_config, start_server

    # Pending sessions outlive the flood here (no connect timeout, no unanswered ping closes them), so
    # the counts below do not depend on how fast this machine is.
    return await start_server(nursery, make_config(tmp_path, database_url, realtime_connect_timeout=600.0,
                                                   realtime_ping_interval=600.0))


async def test_an_anonymous_flood_from_one_address_keeps_no_logged_in_user_out(
        flood_server: Server, caplog: pytest.LogCaptureFixture) -> None:
    server = flood_server
    port = int(server.url.rsplit(":", 1)[1])
    with trio.fail_after(FLOOD_TIMEOUT):
        async with httpx.AsyncClient(base_url=server.url) as http:
            api = Api(http, server)
            token = await api.admin_token()
            wid = (await create_sandbox(api, token))["id"]
            contact = (await http.post("/contacts", json={"name": "Rita", "number": "5511977776666"},
                                       headers=auth(token))).json()

            with caplog.at_level(logging.WARNING, logger="zapgate.realtime"):
                answers: list[tuple[int, dict[str, str], bytes]] = []

                async def one_connection(count: int) -> None:
                    answers.extend(await handshakes(port, count))

                async with trio.open_nursery() as nursery:
                    for _ in range(FLOOD // PER_CONNECTION):
                        nursery.start_soon(one_connection, PER_CONNECTION)

            statuses = collections.Counter(status for status, _, _ in answers)
            assert statuses == {200: 50, 429: FLOOD - 50}  # the per-address cap; nothing else gave way
            refused = next(answer for answer in answers if answer[0] == 429)
            assert json.loads(refused[2]) == {"code": 4, "message": "Too many pending connections from this client"}
            assert refused[1]["retry-after"] == "600"  # when the oldest pending session has ended
            accepted = next(answer for answer in answers if answer[0] == 200)
            assert accepted[2].startswith(b'0{"sid":')
            lines = [record for record in caplog.records if "too many pending sessions" in record.getMessage()]
            assert len(lines) == 1  # one line for the episode, not one per refusal
            pending = server.deps.health()["realtime"]["pending"]
            assert (pending["anonymous"], pending["refused"]) == (50, FLOOD - 50)

            # Another anonymous client from the same address waits its turn (at the transport level)…
            with pytest.raises(SocketRefused) as same_address:
                async with polling_socket(server.url, "/1", token, token_in="auth"):
                    pass
            assert same_address.value.status == 429
            # …but one from another address connects, and so does the logged-in user from the flooding one.
            async with polling_socket(server.url, "/1", token, token_in="auth", local_address="127.0.0.2") as other, \
                    polling_socket(server.url, "/1", token) as user:
                assert await user.emit("joinTickets", "pending") == []
                assert await user.emit("joinNotification") == []
                created = await http.post("/tickets", json={"contactId": contact["id"], "status": "pending",
                                                            "whatsappId": wid}, headers=auth(token))
                assert created.status_code == 201, created.text
                ticket_id = created.json()["id"]
                seen = await user.wait_event("company-1-ticket", lambda p: p["ticket"]["id"] == ticket_id)
                assert seen["action"] == "update"
                assert await user.emit("joinChatBox", ticket_id) == []
                await wait_marker(other, await marker(http, token, "Outro"))  # the other client is in too

            # The user's websocket (the direct transport) from the flooding address, token in the query.
            ws_url = server.url.replace("http://", "ws://") + f"/socket.io/?EIO=4&transport=websocket&token={token}"
            async with open_websocket_url(ws_url) as ws:
                assert (await ws.get_message()).startswith('0{"sid":')
                await ws.send_message("40/1,")
                assert (await ws.get_message()).startswith('40/1,{"sid":')
                assert await ws.get_message() == '42/1,["ready"]'  # every accepted socket: the family waits for it
                await ws.send_message('42/1,7["joinTickets","open"]')
                # the dashboard's counter push to admins (at most once a second) may come before the answer
                assert await _skip_counters(ws) == "43/1,7[]"
                accepted = await http.put(f"/tickets/{ticket_id}", json={"status": "open"}, headers=auth(token))
                assert accepted.status_code == 200, accepted.text
                while True:
                    message = await ws.get_message()
                    if message.startswith('42/1,["company-1-ticket"'):
                        break
                assert json.loads(message[4:].split(",", 1)[1])[1]["ticket"]["id"] == ticket_id


# --- visibility of id-only events and viewer refresh ---

async def marker(http: httpx.AsyncClient, token: str, name: str) -> int:
    """A company-wide event every socket gets; events published before it reached each socket before it."""
    created = await http.post("/contacts", json={"name": name, "number": f"55119{abs(hash(name)) % 10**8:08d}"},
                              headers=auth(token))
    assert created.status_code == 201, created.text
    return created.json()["id"]


async def wait_marker(socket: PollingSocket, contact_id: int) -> None:
    await socket.wait_event("company-1-contact", lambda p: p.get("contact", {}).get("id") == contact_id)


def about(socket: PollingSocket, ticket_id: int) -> list[str]:
    """The actions of the ticket events this socket got for `ticket_id`."""
    return [payload["action"] for payload in socket.received("company-1-ticket")
            if payload.get("ticketId", payload.get("ticket", {}).get("id")) == ticket_id]


async def two_queues(api: Api, http: httpx.AsyncClient, token: str) -> tuple[int, int]:
    sales = (await http.post("/queue", json={"name": "Vendas", "color": "#00aa00"}, headers=auth(token))).json()
    support = (await http.post("/queue", json={"name": "Suporte", "color": "#0000aa"}, headers=auth(token))).json()
    await api.create_user(token, "vendas@acme.test", queueIds=[sales["id"]])
    await api.create_user(token, "suporte@acme.test", queueIds=[support["id"]])
    return sales["id"], support["id"]


async def ticket_in_queue(api: Api, server: Server, token: str, wid: int, number: str, queue_id: int) -> int:
    await inbound(api, token, wid, **{"from": number, "body": "olá"})
    await wait_sql(server, "SELECT count(*) FROM tickets t JOIN contacts c ON c.id = t.contact_id "
                           "WHERE c.number = %s", (number,), [(1,)])
    ticket_id = server.sql("SELECT t.id FROM tickets t JOIN contacts c ON c.id = t.contact_id WHERE c.number = %s",
                           (number,))[0][0]
    moved = await api.client.put(f"/tickets/{ticket_id}", json={"queueId": queue_id}, headers=auth(token))
    assert moved.status_code == 200, moved.text
    return ticket_id


async def test_update_unread_and_delete_reach_only_agents_who_may_see_the_ticket(api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        http = api.client
        token = await api.admin_token()
        wid = await connected_sandbox(api, token)
        sales, support = await two_queues(api, http, token)
        sold = await ticket_in_queue(api, server, token, wid, "5511966665555", sales)
        helped = await ticket_in_queue(api, server, token, wid, "5511955554444", support)
        await inbound(api, token, wid, **{"from": "5511966665555", "body": "ainda aqui"})  # unread again
        await inbound(api, token, wid, **{"from": "5511955554444", "body": "ainda aqui"})
        await wait_sql(server, "SELECT count(*) FROM messages", None, [(4,)])
        seller_token = await api.login("vendas@acme.test", "user-pass-1")
        helper_token = await api.login("suporte@acme.test", "user-pass-1")
        async with polling_socket(server.url, "/1", seller_token) as seller, \
                polling_socket(server.url, "/1", helper_token) as helper, \
                polling_socket(server.url, "/1", token) as admin:
            for socket in (seller, helper, admin):
                for status in ("pending", "open"):
                    assert await socket.emit("joinTickets", status) == []
                assert await socket.emit("joinNotification") == []
            for ticket_id in (sold, helped):
                read = await http.get(f"/messages/{ticket_id}", headers=auth(token))  # announces updateUnread
                assert read.status_code == 200, read.text
                deleted = await http.delete(f"/tickets/{ticket_id}", headers=auth(token))
                assert deleted.status_code == 200, deleted.text
            done = await marker(http, token, "marcador")
            for socket in (seller, helper, admin):
                await wait_marker(socket, done)
            assert about(seller, sold) == ["updateUnread", "delete"]
            assert about(seller, helped) == []
            assert about(helper, helped) == ["updateUnread", "delete"]
            assert about(helper, sold) == []
            assert about(admin, sold) == about(admin, helped) == ["updateUnread", "delete"]
            for socket in (seller, helper, admin):  # the audience never reaches a client
                assert all("_audience" not in payload for payload in socket.received("company-1-ticket"))


async def test_a_queue_or_role_change_refreshes_the_open_socket_and_a_deleted_user_is_disconnected(
        api: Api, server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        http = api.client
        token = await api.admin_token()
        wid = await connected_sandbox(api, token)
        sales, support = await two_queues(api, http, token)
        helped = await ticket_in_queue(api, server, token, wid, "5511955554444", support)
        users = {user["email"]: user for user in (await http.get("/users", headers=auth(token))).json()["users"]}
        seller_id = users["vendas@acme.test"]["id"]
        seller_token = await api.login("vendas@acme.test", "user-pass-1")
        helper_token = await api.login("suporte@acme.test", "user-pass-1")
        async with polling_socket(server.url, "/1", seller_token) as seller, \
                polling_socket(server.url, "/1", helper_token) as helper:
            for socket in (seller, helper):
                assert await socket.emit("joinTickets", "pending") == []

            async def touch(body: str) -> int:
                """A new message on the support ticket (an appMessage and a ticket update), then a marker."""
                await inbound(api, token, wid, **{"from": "5511955554444", "body": body})
                await wait_sql(server, "SELECT count(*) FROM messages WHERE body = %s", (body,), [(1,)])
                done = await marker(http, token, body)
                for socket in (seller, helper):
                    await wait_marker(socket, done)
                return done

            def bodies(socket: PollingSocket) -> list[str]:
                return [payload["message"]["body"] for payload in socket.received("company-1-appMessage")]

            await touch("antes")
            assert bodies(seller) == [] and bodies(helper) == ["antes"]

            # The seller joins support: from the next event on, the open socket gets its tickets.
            changed = await http.put(f"/users/{seller_id}", json={"queueIds": [sales, support]}, headers=auth(token))
            assert changed.status_code == 200, changed.text
            update = await seller.wait_event(  # (not its presence update: the whole user too, queues as they were)
                "company-1-user", lambda p: p["action"] == "update" and len(p["user"]["queues"]) == 2)
            assert sorted(queue["id"] for queue in update["user"]["queues"]) == sorted([sales, support])
            await touch("depois")
            assert bodies(seller) == ["depois"]
            # another user's change: admins and that user only (the helper hears of themself: their presence)
            assert [p for p in helper.received("company-1-user") if p["user"]["id"] == seller_id] == []

            # …and leaves it again: nothing more from support.
            changed = await http.put(f"/users/{seller_id}", json={"queueIds": [sales]}, headers=auth(token))
            assert changed.status_code == 200, changed.text
            await touch("fora")
            assert bodies(seller) == ["depois"]

            # A change its event does not describe (made in the database here): the bridge re-reads the user.
            server.sql("INSERT INTO user_queues (company_id, user_id, queue_id) VALUES (1, %s, %s)",
                       (seller_id, support))
            server.broker.publish(1, "company-1-user", {"action": "update", "user": {"id": seller_id, "name": "V"}})
            seller_socket = next(socket for socket in server.deps.realtime.sockets("/1")
                                 if socket.context.principal.user_id == seller_id)
            while support not in seller_socket.context.viewer.queue_ids:
                await trio.sleep(0.01)
            await touch("relido")
            assert bodies(seller) == ["depois", "relido"]
            server.sql("DELETE FROM user_queues WHERE user_id = %s AND queue_id = %s", (seller_id, support))

            # Made an admin: every ticket again, without reconnecting.
            changed = await http.put(f"/users/{seller_id}", json={"profile": "admin"}, headers=auth(token))
            assert changed.status_code == 200, changed.text
            await touch("admin")
            assert bodies(seller) == ["depois", "relido", "admin"]
            assert about(seller, helped)  # its ticket updates too

            deleted = await http.delete(f"/users/{seller_id}", headers=auth(token))
            assert deleted.status_code == 200, deleted.text
            await seller.wait_disconnected()
            assert not helper.disconnected
            # Its token is still valid for a while, but the user is gone: no new socket either.
            with pytest.raises(SocketRefused) as refused:
                async with polling_socket(server.url, "/1", seller_token):
                    pass
            assert refused.value.body == {"message": "ERR_SESSION_EXPIRED: this user no longer exists"}


# --- join limits (the namespace handler on a server of its own, with small limits; real database) ---

async def test_joins_are_rate_limited_per_socket_and_rooms_are_capped_without_tracebacks(
        nursery: trio.Nursery, api: Api, server: Server, caplog: pytest.LogCaptureFixture) -> None:
    with trio.fail_after(TIMEOUT):
        token = await api.admin_token()
        realtime = RealtimeServer(RealtimeConfig(max_rooms_per_socket=3, ping_interval=1000, ping_timeout=1000))
        presence = Presence(server.db, server.broker, realtime)
        namespaces = CompanyNamespaces(server.db, server.deps.tokens, server.broker, presence, join_rate=0.001,
                                       join_burst=6)
        realtime.register_namespace_handler(namespaces)
        await nursery.start(realtime.run)
        wid = (await create_sandbox(api, token))["id"]
        ticket_ids = []
        for n in range(4):
            contact = (await api.client.post("/contacts", json={"name": f"C{n}", "number": f"551190000{n:04d}"},
                                             headers=auth(token))).json()
            created = await api.client.post("/tickets", json={"contactId": contact["id"], "whatsappId": wid},
                                            headers=auth(token))
            assert created.status_code == 201, created.text
            ticket_ids.append(created.json()["id"])

        session = realtime.open_session(Handshake(query={"token": token}, headers={}, remote_addr="127.0.0.1",
                                                  transport=POLLING))
        await session.post('40/1,')
        assert (await take(session))[0].startswith('0/1,{"sid"')
        # one socket in 3 rooms at most (its user room is one): the third ticket is refused, without a traceback
        packets = [f'2/1,{n}["joinChatBox",{ticket_id}]' for n, ticket_id in enumerate(ticket_ids[:3])]
        packets += [f'2/1,3["joinChatBox",{ticket_ids[0]}]']  # joined already: no query, no room
        with caplog.at_level(logging.INFO):
            await session.post("\x1e".join("4" + packet for packet in packets))
            acks = await take_acks(session, 4)
            assert acks[0] == acks[1] == acks[3] == []
            assert acks[2] == [{"error": "ERR_TOO_MANY_ROOMS",
                                "message": "this socket has joined too many tickets: leave some"}]
            # the burst of 6 is spent after two more joins; the rest is refused, logged once
            more = [f'2/1,{10 + n}["joinTickets","pending"]' for n in range(5)]
            await session.post("\x1e".join("4" + packet for packet in more))
            acks = await take_acks(session, 5)
            assert acks[:2] == [[], []]
            assert acks[2:] == [[{"error": "ERR_TOO_MANY_JOINS",
                                  "message": "too many joins on this socket: slow down"}]] * 3
        assert not [record for record in caplog.records if record.exc_info]
        assert len([r for r in caplog.records if "too many on one socket" in r.getMessage()]) == 1
        assert len([r for r in caplog.records if "too many rooms" in r.getMessage()]) == 1
        assert namespaces.stats() == {"joins_refused": {"refused": 3, "episodes": 1},
                                      "rooms_refused": {"refused": 1, "episodes": 1}}
        socket = realtime.sockets("/1")[0]
        assert socket.rooms == {"user:1", f"ticket:{ticket_ids[0]}", f"ticket:{ticket_ids[1]}"}


async def take(session: EngineSession) -> list[str]:
    return [packet.data for packet in await session.poll() if isinstance(packet.data, str)]


async def take_acks(session: EngineSession, count: int) -> list[Any]:
    """The arguments of the next `count` acks, in ack id order."""
    acks: dict[int, Any] = {}
    while len(acks) < count:
        for packet in await take(session):
            if packet.startswith("3/1,"):
                body = packet[4:]
                split = body.index("[")
                acks[int(body[:split])] = json.loads(body[split:])
    return [acks[key] for key in sorted(acks)]


async def _skip_counters(ws: Any) -> str:
    """The next message on a raw websocket that is not a dashboard `counter` push (api/dashboard pushes)."""
    while True:
        message = await ws.get_message()
        if not message.startswith('42/1,["counter"'):
            return message
