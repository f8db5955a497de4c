"""Resident memory per idle ticket actor and per connected sandbox session.

One zapgate (run_app) on a fresh database; growth of this process's RSS (psutil, after gc.collect):

- `kib_per_ticket_actor`: `tickets` conversations (10,000) each receive one message through the
  sessions' inbound sink (TicketRouter.inbound, as a SessionActor hands it over): each gets its
  TicketActor with its contact and ticket cached, the message is committed, the actor goes idle.
  Growth from before the first message to when all are idle, divided by `tickets`. The events are
  built before the first measurement and kept until after the second, so they are not counted.
- `kib_per_session`: `sessions` (500) sandbox connections, already paired (a device in the row), are
  started and reach CONNECTED. Growth from before the first start to when all are connected.
- `kib_per_socket`: `sockets` (2,000) stock npm socket.io-client sockets (a Node process, websocket
  transport, each its own connection) connect to the company's namespace. Growth from before the
  first connects to when all are connected (null, with a note, where node is not installed).

All are warmed up first (10 sessions, 50 sockets, 100 actors), so code paths, caches and pools are not counted;
sessions are measured first, before the conversations' writes leave freed memory behind for reuse.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import tempfile
from functools import partial
from pathlib import Path

import attrs
import httpx
import trio

from api.auth import hash_password
from bench.common import (
    COMPANY_ID,
    App,
    Check,
    Progress,
    app_logging,
    environment,
    finish,
    fresh_database,
    open_app,
    paired_sandboxes,
    parser,
    rss_bytes,
    run,
    start_sessions,
)
from bench.fanout import ROOT, lines_of, node_client
from gateway.whatsapp import transport as wa
from storage import companies

NAME = "bench.memory"
WARM_TICKETS = 100
WARM_SESSIONS = 10
WARM_SOCKETS = 50
CHUNK = 500  # conversations started at a time (keeps the transient memory of the writes small)


@attrs.frozen
class Sizes:
    tickets: int
    sessions: int
    sockets: int


SIZES = {
    "tiny": Sizes(tickets=300, sessions=50, sockets=20),
    "quick": Sizes(tickets=10_000, sessions=500, sockets=2_000),
    "full": Sizes(tickets=10_000, sessions=500, sockets=2_000),
}


async def quiet_company(app: App) -> tuple[int, str]:
    """A second company with an admin, and the admin's access token: its sockets get none of company 1's events."""
    password = "bench-sockets-password"
    hashed = await hash_password(password, app.deps.config.bcrypt_rounds)
    company, _ = await companies.create_company(app.db, name="bench sockets", admin={
        "name": "sockets", "email": "sockets@bench.invalid", "password_hash": hashed})
    async with httpx.AsyncClient(base_url=app.url) as http:
        login = await http.post("/auth/login", json={"email": "sockets@bench.invalid", "password": password})
        login.raise_for_status()
        return company["id"], login.json()["token"]


async def connect_sockets(app: App, company: tuple[int, str], count: int, nursery: trio.Nursery) -> None:
    """`count` socket.io-client sockets in a Node process of their own, connected; it lives until cancelled."""
    node, env = node_client()
    company_id, token = company
    process = await nursery.start(partial(trio.run_process, [
        node, str(ROOT / "bench" / "fanout_client.cjs"), app.url, f"/{company_id}", token, str(count), "0", "600"],
        stdout=subprocess.PIPE, env=env, check=False))
    first = json.loads(await lines_of(process).__anext__())
    if first["step"] != "connected":
        raise RuntimeError(f"the clients did not connect: {first}")
    await trio.sleep(0.5)  # the last handshakes settle


def inbound_event(index: int) -> wa.InboundMessage:
    number = f"55219{index:08d}"
    return wa.InboundMessage(id=f"MEM{index:010d}", chat=f"{number}@s.whatsapp.net",
                             sender=f"{number}@s.whatsapp.net", kind=wa.MessageKind.TEXT,
                             timestamp=dt.datetime.now(dt.UTC).replace(microsecond=0), body=f"olá {index}",
                             push_name=f"Cliente {index}", sender_phone=f"{number}@s.whatsapp.net")


async def start_conversations(app: App, wid: int, events: list[wa.InboundMessage], progress: Progress) -> None:
    """Hand the events to the ticket router, CHUNK at a time, each chunk until committed and announced."""
    with app.broker.subscribe(COMPANY_ID, maxsize=10 * CHUNK) as announced:
        for offset in range(0, len(events), CHUNK):
            chunk = events[offset:offset + CHUNK]
            for event in chunk:
                await app.deps.tickets.inbound(COMPANY_ID, wid, event)
            created = 0
            while created < len(chunk):  # an actor announces its message after the commit
                event = await announced.receive()
                created += event.name.endswith("-appMessage") and event.payload.get("action") == "create"
            if len(events) > CHUNK and (offset // CHUNK) % 5 == 4:
                progress(f"  {offset + CHUNK:,}/{len(events):,} ticket actors")
    await trio.sleep(0.2)  # the actors' last steps after announcing (ticket and contact events)


async def main(args: argparse.Namespace) -> None:
    progress = Progress(NAME)
    sizes = attrs.evolve(SIZES[args.mode], **{k: v for k, v in (("tickets", args.tickets),
                                                                ("sessions", args.sessions),
                                                                ("sockets", args.sockets)) if v})
    with fresh_database(progress) as database, tempfile.TemporaryDirectory(prefix="zapgate-bench-") as tmp, \
            app_logging(Path(tmp) / "zapgate.log"):
        async with open_app(database.url, Path(tmp) / "data") as app, trio.open_nursery() as clients:
            app.deps.tickets.max_alive = max(app.deps.tickets.max_alive, 2 * (sizes.tickets + WARM_TICKETS))
            app.deps.tickets.idle_timeout = 3600.0  # idle actors stay for the measurement
            progress(f"sessions: creating {1 + WARM_SESSIONS + sizes.sessions:,} paired sandbox connections")
            warm_ids = await paired_sandboxes(app, 1 + WARM_SESSIONS)
            ids = await paired_sandboxes(app, sizes.sessions, 1 + WARM_SESSIONS)
            await start_sessions(app, warm_ids)
            wid = warm_ids[0]  # the connection of the conversations below
            before = rss_bytes()
            progress(f"sessions: starting {sizes.sessions:,} (RSS {before / 2**20:.1f} MiB)")
            await start_sessions(app, ids)
            after = rss_bytes()
            per_session = (after - before) / sizes.sessions / 1024
            connected = app.deps.sessions.stats()["by_status"].get("CONNECTED", 0)
            progress(f"sessions: {connected:,} CONNECTED, RSS {after / 2**20:.1f} MiB: {per_session:.1f} KiB each")

            # the sockets stay connected to the end (freed memory would be reused by the next measurement),
            # in a company of their own, so that the conversations' events below do not reach them
            per_socket = None
            try:
                node_client()
            except RuntimeError as error:
                progress(f"sockets: not measured ({error})")
            else:
                quiet = await quiet_company(app)
                await connect_sockets(app, quiet, WARM_SOCKETS, clients)
                before = rss_bytes()
                progress(f"sockets: connecting {sizes.sockets:,} socket.io-client sockets "
                         f"(RSS {before / 2**20:.1f} MiB)")
                await connect_sockets(app, quiet, sizes.sockets, clients)
                after = rss_bytes()
                connected = len(app.deps.realtime.sockets(f"/{quiet[0]}")) - WARM_SOCKETS
                per_socket = (after - before) / max(1, connected) / 1024
                progress(f"sockets: {connected:,} connected, RSS {after / 2**20:.1f} MiB: {per_socket:.1f} KiB each")

            progress(f"ticket actors: warming up with {WARM_TICKETS}")
            events = [inbound_event(i) for i in range(WARM_TICKETS + sizes.tickets)]
            await start_conversations(app, wid, events[:WARM_TICKETS], progress)
            before = rss_bytes()
            progress(f"ticket actors: starting {sizes.tickets:,} conversations (RSS {before / 2**20:.1f} MiB)")
            await start_conversations(app, wid, events[WARM_TICKETS:], progress)
            after = rss_bytes()
            alive = len(app.deps.tickets.registry)
            if alive < sizes.tickets + WARM_TICKETS:
                raise RuntimeError(f"only {alive} ticket actors alive, {sizes.tickets + WARM_TICKETS} expected")
            per_actor = (after - before) / sizes.tickets / 1024
            progress(f"ticket actors: {alive:,} alive, RSS {after / 2**20:.1f} MiB: {per_actor:.1f} KiB each")
            clients.cancel_scope.cancel()
    figures = {"kib_per_ticket_actor": round(per_actor, 2), "kib_per_session": round(per_session, 2),
               "kib_per_socket": None if per_socket is None else round(per_socket, 2),
               "ticket_actors": sizes.tickets, "sessions": sizes.sessions, "sockets": sizes.sockets,
               "rss_mib": round(after / 2**20, 1)}
    checks = [
        Check("kib_per_ticket_actor", figures["kib_per_ticket_actor"], 20, "<=", "KiB",
              f"RSS growth over {sizes.tickets:,} idle actors (contact and ticket cached)"),
        Check("kib_per_session", figures["kib_per_session"], 200, "<=", "KiB",
              f"RSS growth over {sizes.sessions:,} CONNECTED sandbox sessions"),
    ]
    if per_socket is not None:
        checks.append(Check("kib_per_socket", figures["kib_per_socket"], 50, "<=", "KiB",
                            f"RSS growth over {sizes.sockets:,} connected socket.io-client websocket sockets"))
    notes = [] if per_socket is not None else ["kib_per_socket: not measured (node is not installed)"]
    finish(progress, args, figures, checks, notes, environment(database))


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--tickets", type=int, help="idle ticket actors to measure")
    p.add_argument("--sessions", type=int, help="connected sandbox sessions to measure")
    p.add_argument("--sockets", type=int, help="connected realtime sockets to measure")
    return p.parse_args(argv)


if __name__ == "__main__":
    run(main, arguments())
