"""The realtime contract with the stock npm socket.io-client v4 against the real zapgate app: company
namespaces with token checks, rooms, and the events of a sandbox conversation."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import trio

from tests.e2e.test_socketio_client import CLIENT_DIR, node  # noqa: F401 - the fixture installs the client
from tests.integration.conftest import Api, Server, auth, make_config, start_server
from tests.integration.test_conversations import connected_sandbox, inbound, wait_sql

TIMEOUT = 60


class Client:
    """One `node zapgate.mjs …` process and the JSON lines it printed."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.lines: list[dict[str, Any]] = []
        self._changed = trio.Event()

    async def pump(self) -> None:
        buffer = b""
        assert self.process.stdout is not None
        async for chunk in self.process.stdout:
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                if line.strip():
                    self.lines.append(json.loads(line))
                    self._changed.set()
        self._changed.set()

    async def wait_for(self, predicate: Any) -> dict[str, Any]:
        while True:
            for line in self.lines:
                if predicate(line):
                    return line
            if self.process.returncode is not None and not any(predicate(line) for line in self.lines):
                await trio.sleep(0.1)
                if not any(predicate(line) for line in self.lines):
                    raise AssertionError(f"the client ended without it: {self.lines}")
            self._changed = trio.Event()
            with trio.move_on_after(0.2):
                await self._changed.wait()

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        return [line for line in self.lines if line["step"] == "event" and (name is None or line["name"] == name)]

    async def close(self) -> None:
        if self.process.stdin is not None:
            await self.process.stdin.aclose()
        with trio.move_on_after(5):
            await self.process.wait()
        if self.process.returncode is None:
            self.process.kill()


async def start_client(nursery: trio.Nursery, node_path: str, url: str, namespace: str, token: str, *,
                       transports: str = "default", how: str = "query", statuses: str = "pending",
                       chat: str = "", heartbeat: bool = False) -> Client:
    process = await trio.lowlevel.open_process(
        [node_path, str(CLIENT_DIR / "zapgate.mjs"), url, namespace, token, transports, how, statuses, chat,
         "1" if heartbeat else ""],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    client = Client(process)
    nursery.start_soon(client.pump)
    return client


@pytest.fixture
async def live_server(nursery: trio.Nursery, database_url: str, tmp_path: Path) -> Server:
    server = await start_server(nursery, make_config(tmp_path, database_url, realtime_ping_interval=5.0))
    return server


@pytest.mark.parametrize(("transports", "how"), [("default", "query"), ("websocket", "bearer"), ("default", "auth")])
async def test_stock_client_receives_a_sandbox_conversation(nursery: trio.Nursery, node: str,  # noqa: F811
                                                            live_server: Server, transports: str, how: str) -> None:
    with trio.fail_after(TIMEOUT):
        async with httpx.AsyncClient(base_url=live_server.url) as http:
            api = Api(http, live_server)
            token = await api.admin_token()
            wid = await connected_sandbox(api, token)
            client = await start_client(nursery, node, live_server.url, "/1", token, transports=transports, how=how)
            await client.wait_for(lambda line: line["step"] == "ready")
            await inbound(api, token, wid, **{"from": "5511977776666", "name": "Rita", "body": "olá"})
            created = await client.wait_for(lambda line: line["step"] == "event"
                                            and line["name"] == "company-1-appMessage")
            assert created["payload"]["action"] == "create"
            assert created["payload"]["message"]["body"] == "olá"
            assert created["payload"]["ticket"]["contact"]["name"] == "Rita"
            ticket = await client.wait_for(lambda line: line["step"] == "event" and line["name"] == "company-1-ticket")
            assert ticket["payload"]["action"] == "update" and ticket["payload"]["ticket"]["status"] == "pending"
            if transports == "default":
                await client.wait_for(lambda line: line["step"] == "upgrade" and line["transport"] == "websocket")
            await client.close()


async def test_refused_connections_get_connect_error(nursery: trio.Nursery, node: str,  # noqa: F811
                                                     live_server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        async with httpx.AsyncClient(base_url=live_server.url) as http:
            api = Api(http, live_server)
            token = await api.admin_token()
            other = await api.create_company(token, "Outra", "dona@outra.test")
            claims = jwt.decode(token, options={"verify_signature": False})
            expired = jwt.encode({**claims, "exp": int(time.time()) - 10}, live_server.config.jwt_secret,
                                 algorithm="HS256")
            cases = {"no token": ("/1", ""), "garbage": ("/1", "not-a-jwt"), "expired": ("/1", expired),
                     "other company": (f"/{other['id']}", token), "bad namespace": ("/abc", token)}
            for label, (namespace, candidate) in cases.items():
                client = await start_client(nursery, node, live_server.url, namespace, candidate or "x")
                refused = await client.wait_for(lambda line: line["step"] in ("connect_error", "connect"))
                assert refused["step"] == "connect_error", (label, client.lines)
                await client.close()


async def test_users_only_get_the_tickets_they_may_see(nursery: trio.Nursery, node: str,  # noqa: F811
                                                       live_server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        async with httpx.AsyncClient(base_url=live_server.url) as http:
            api = Api(http, live_server)
            token = await api.admin_token()
            wid = await connected_sandbox(api, token)
            sales = (await http.post("/queue", json={"name": "Vendas", "color": "#00aa00"}, headers=auth(token))).json()
            support = (await http.post("/queue", json={"name": "Suporte", "color": "#0000aa"},
                                       headers=auth(token))).json()
            await api.create_user(token, "vendas@acme.test", queueIds=[sales["id"]])
            await api.create_user(token, "suporte@acme.test", queueIds=[support["id"]])
            other = await api.create_company(token, "Concorrente", "dono@concorrente.test")
            seller = await start_client(nursery, node, live_server.url, "/1", await api.login("vendas@acme.test",
                                                                                       "user-pass-1"),
                                        statuses="pending,open")
            helper = await start_client(nursery, node, live_server.url, "/1", await api.login("suporte@acme.test",
                                                                                       "user-pass-1"),
                                        statuses="pending,open")
            stranger = await start_client(nursery, node, live_server.url, f"/{other['id']}",
                                          await api.login("dono@concorrente.test", "company-pass-1"))
            for client in (seller, helper, stranger):
                await client.wait_for(lambda line: line["step"] == "ready")
            await inbound(api, token, wid, **{"from": "5511966665555", "body": "quero comprar"})
            await wait_sql(live_server, "SELECT count(*) FROM tickets", None, [(1,)])
            ticket_id = live_server.sql("SELECT id FROM tickets")[0][0]
            moved = await http.put(f"/tickets/{ticket_id}", json={"queueId": sales["id"]}, headers=auth(token))
            assert moved.status_code == 200, moved.text
            await inbound(api, token, wid, **{"from": "5511966665555", "body": "ainda quero"})
            seen = await seller.wait_for(lambda line: line["step"] == "event" and line["name"] == "company-1-appMessage"
                                         and line["payload"]["message"]["body"] == "ainda quero")
            assert seen["payload"]["ticket"]["queueId"] == sales["id"]
            await trio.sleep(1)  # anything wrongly routed would have arrived by now
            # The support agent sees neither the queue-less ticket (allTicket is off) nor the sales one.
            assert helper.events("company-1-appMessage") == []
            assert [e for e in helper.events("company-1-ticket") if "ticket" in e["payload"]] == []
            assert not [e for e in stranger.events() if e["name"].startswith("company-1-")]
            # …while the seller got only what followed the move into the sales queue.
            bodies = [e["payload"]["message"]["body"] for e in seller.events("company-1-appMessage")]
            assert bodies == ["ainda quero"]
            for client in (seller, helper, stranger):
                await client.close()


async def test_sockets_keep_users_online_ended_logins_log_out_and_expired_tokens_end_the_socket(
        nursery: trio.Nursery, node: str, database_url: str, tmp_path: Path) -> None:  # noqa: F811
    server = await start_server(nursery, make_config(tmp_path, database_url, presence_grace=1.0))
    with trio.fail_after(TIMEOUT):
        async with httpx.AsyncClient(base_url=server.url) as http:
            api = Api(http, server)
            token = await api.admin_token()
            agent_user = await api.create_user(token, "agente@acme.test")
            agent = await api.login("agente@acme.test", "user-pass-1")
            watcher = await start_client(nursery, node, server.url, "/1", token)
            await watcher.wait_for(lambda line: line["step"] == "ready")

            def presence(online: bool) -> Any:
                return lambda line: (line["step"] == "event" and line["name"] == "userOnlineChange"
                                     and line["payload"] == {"userId": agent_user["id"], "online": online})

            # no heartbeat at all (the SaaS frontend sends one every 5 minutes): the socket is what counts
            silent = await start_client(nursery, node, server.url, "/1", agent)
            await watcher.wait_for(presence(True))
            user_event = await watcher.wait_for(lambda line: line["step"] == "event"
                                                and line["name"] == "company-1-user"
                                                and line["payload"]["user"]["id"] == agent_user["id"])
            assert user_event["payload"]["user"]["online"] is True
            assert user_event["payload"]["user"]["email"] == "agente@acme.test"  # the whole user
            await trio.sleep(3)  # three graces without a heartbeat
            assert server.sql("SELECT online FROM users WHERE id = %s", (agent_user["id"],)) == [(True,)]
            assert not [line for line in watcher.events("userOnlineChange") if not line["payload"]["online"]]
            await silent.close()
            await watcher.wait_for(presence(False))  # after the grace
            assert server.sql("SELECT online FROM users WHERE id = %s", (agent_user["id"],)) == [(False,)]

            # an admin ends the agent's logins: their frontend hears `company-1-auth`, then the socket ends
            agent = await api.login("agente@acme.test", "user-pass-1")
            victim = await start_client(nursery, node, server.url, "", agent, transports="websocket")
            await victim.wait_for(lambda line: line["step"] == "ready")
            forced = await http.post(f"/users/{agent_user['id']}/logout", headers=auth(token))
            assert forced.status_code == 200, forced.text
            told = await victim.wait_for(lambda line: line["step"] == "event" and line["name"] == "company-1-auth")
            assert told["payload"] == {"action": "update", "reason": "forced logout",
                                       "user": {"id": agent_user["id"], "email": "agente@acme.test", "companyId": 1}}
            ended = await victim.wait_for(lambda line: line["step"] == "disconnect")
            assert ended["reason"] == "io server disconnect"
            assert not watcher.events("company-1-auth")
            await victim.close()
            await watcher.close()

            # A token that expires ends its socket.
            claims = jwt.decode(token, options={"verify_signature": False})
            short = jwt.encode({**claims, "exp": int(time.time()) + 2}, server.config.jwt_secret, algorithm="HS256")
            brief = await start_client(nursery, node, server.url, "/1", short)
            await brief.wait_for(lambda line: line["step"] == "ready")
            ended = await brief.wait_for(lambda line: line["step"] == "disconnect")
            assert ended["reason"] == "io server disconnect"
            await brief.close()
    await server.db.aclose()


async def test_the_root_namespace_serves_each_token_its_own_company(nursery: trio.Nursery, node: str,  # noqa: F811
                                                                    live_server: Server) -> None:
    """ticketz and the SaaS lineage: `io(BACKEND_URL, {transports: ["websocket"], query: {token}})`, then they
    wait for `ready` before joining. The token decides the company; events keep their names."""
    with trio.fail_after(TIMEOUT):
        async with httpx.AsyncClient(base_url=live_server.url) as http:
            api = Api(http, live_server)
            token = await api.admin_token()
            wid = await connected_sandbox(api, token)
            other = await api.create_company(token, "Vizinha", "dona@vizinha.test")
            mine = await start_client(nursery, node, live_server.url, "", token, transports="websocket")
            theirs = await start_client(nursery, node, live_server.url, "",
                                        await api.login("dona@vizinha.test", "company-pass-1"), transports="websocket")
            anonymous = await start_client(nursery, node, live_server.url, "", "not-a-jwt", transports="websocket")
            refused = await anonymous.wait_for(lambda line: line["step"] in ("connect_error", "connect"))
            assert refused["step"] == "connect_error"
            claims = jwt.decode(token, options={"verify_signature": False})
            expired = jwt.encode({**claims, "exp": int(time.time()) - 10}, live_server.config.jwt_secret,
                                 algorithm="HS256")
            late = await start_client(nursery, node, live_server.url, "", expired, transports="websocket")
            refused = await late.wait_for(lambda line: line["step"] in ("connect_error", "connect"))
            assert refused["step"] == "connect_error" and "expired" in refused["message"].lower(), refused
            await late.close()
            for client in (mine, theirs):
                await client.wait_for(lambda line: line["step"] == "event" and line["name"] == "ready")
                await client.wait_for(lambda line: line["step"] == "ready")
            await inbound(api, token, wid, **{"from": "5511955554444", "name": "Raiz", "body": "pela raiz"})
            created = await mine.wait_for(lambda line: line["step"] == "event"
                                          and line["name"] == "company-1-appMessage")
            assert created["payload"]["message"]["body"] == "pela raiz"
            await mine.wait_for(lambda line: line["step"] == "event" and line["name"] == "company-1-ticket")
            await trio.sleep(1)  # anything wrongly routed would have arrived by now
            # theirs hears only of its own company: `ready`, and its own user's presence
            own = ("ready", f"company-{other['id']}-user", "userOnlineChange")
            assert [e["name"] for e in theirs.events() if e["name"] not in own] == [], theirs.lines
            admin_id = jwt.decode(token, options={"verify_signature": False})["id"]
            assert all(e["payload"]["userId"] != admin_id for e in theirs.events("userOnlineChange"))
            assert other["id"] != 1
            for client in (mine, theirs, anonymous):
                await client.close()
