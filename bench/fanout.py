"""Realtime fan-out: events published in zapgate reaching 1,000 Socket.IO clients over websocket.

The clients are the stock npm socket.io-client v4 (not ours) in a separate Node process, one
connection each. zapgate publishes `company-1-contact` events (they reach every socket of the
company) stamped with the wall clock; the clients measure publish → receipt. Figures:
`deliveries_per_s` (events x sockets delivered per second, from the first publish to the last
receipt), `p99_ms`/`p50_ms` publish → receipt, and `kib_per_socket`, the server's resident memory
growth per connected socket. The reference in the same run: the rate at which the broker alone
hands the same events to as many in-process subscribers (what the network path costs on top).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import attrs
import httpx
import trio

from bench.common import (
    COMPANY_ID,
    Check,
    Progress,
    app_logging,
    environment,
    finish,
    fresh_database,
    open_app,
    parser,
    rss_bytes,
    run,
)
from gateway.broker import Broker

NAME = "bench.fanout"
ROOT = Path(__file__).resolve().parent.parent
CLIENT_DIR = ROOT / "tests" / "e2e" / "realtime"


@attrs.frozen
class Sizes:
    sockets: int
    events: int
    rate: float  # events per second offered


SIZES = {"tiny": Sizes(5, 5, 50), "quick": Sizes(1000, 400, 100), "full": Sizes(1000, 2000, 100)}


def node_client() -> tuple[str, dict[str, str]]:
    """The node executable and an environment that finds the installed socket.io-client."""
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("bench.fanout needs node (and npm) for the stock socket.io-client")
    if not (CLIENT_DIR / "node_modules" / "socket.io-client").is_dir():
        subprocess.run([shutil.which("npm") or "npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                       cwd=CLIENT_DIR, check=True, timeout=300)
    return node, {**os.environ, "NODE_PATH": str(CLIENT_DIR / "node_modules")}


async def broker_reference(sockets: int, events: int) -> float:
    """Deliveries per second of the in-process broker alone to `sockets` subscribers (no network)."""
    broker = Broker()
    with contextlib.ExitStack() as stack:
        subs = [stack.enter_context(broker.subscribe(COMPANY_ID, maxsize=events + 10)) for _ in range(sockets)]
        started = time.perf_counter()
        for seq in range(events):
            broker.publish(COMPANY_ID, "company-1-contact", {"action": "update", "seq": seq})
        for sub in subs:
            while sub.receive_nowait() is not None:
                pass
        elapsed = time.perf_counter() - started
    await trio.lowlevel.checkpoint()
    return sockets * events / elapsed


async def main(args: argparse.Namespace) -> None:
    progress = Progress(NAME)
    sizes = SIZES[args.mode]
    node, node_env = node_client()
    reference = await broker_reference(sizes.sockets, sizes.events)
    progress(f"reference: the broker alone delivers {reference:,.0f} events/s to {sizes.sockets} subscribers")
    with fresh_database(progress) as database, tempfile.TemporaryDirectory(prefix="zapgate-bench-") as tmp, \
            app_logging(Path(tmp) / "zapgate.log", level="WARNING"):
        async with open_app(database.url, Path(tmp) / "data") as app:
            async with httpx.AsyncClient(base_url=app.url) as http:
                login = await http.post("/auth/login", json={"email": app.admin.email, "password": app.admin.password})
                token = login.json()["token"]
            before = rss_bytes()
            deadline = 60 + sizes.events / sizes.rate * 2
            progress(f"connecting {sizes.sockets:,} socket.io-client sockets over websocket")
            process = await trio.lowlevel.open_process(
                [node, str(ROOT / "bench" / "fanout_client.cjs"), app.url, f"/{COMPANY_ID}", token,
                 str(sizes.sockets), str(sizes.events), str(deadline)],
                stdout=subprocess.PIPE, env=node_env)
            lines = lines_of(process)
            first = json.loads(await lines.__anext__())
            if first["step"] != "connected":
                raise RuntimeError(f"the clients did not connect: {first}")
            await trio.sleep(1)  # let the last handshakes settle before measuring memory
            connected = len(app.deps.realtime.sockets(f"/{COMPANY_ID}"))
            per_socket = (rss_bytes() - before) / max(1, connected) / 1024
            progress(f"{connected:,} sockets connected: {per_socket:.1f} KiB each; publishing {sizes.events} events "
                     f"at {sizes.rate:g}/s")
            published_at = time.time() * 1000
            for seq in range(sizes.events):
                app.broker.publish(COMPANY_ID, f"company-{COMPANY_ID}-contact",
                                   {"action": "update", "seq": seq, "t": time.time() * 1000})
                await trio.sleep(1 / sizes.rate)
            result = json.loads(await lines.__anext__())
            await process.wait()
    elapsed_s = max(1e-3, (result["last_at"] - published_at) / 1000)
    figures = {"deliveries_per_s": round(result["received"] / elapsed_s, 1), "p50_ms": result["p50_ms"],
               "p99_ms": result["p99_ms"], "max_ms": result["max_ms"], "kib_per_socket": round(per_socket, 2),
               "received": result["received"], "expected": result["expected"], "sockets": sizes.sockets,
               "events": sizes.events, "offered_events_per_s": sizes.rate,
               "broker_alone_deliveries_per_s": round(reference, 1)}
    checks = [
        Check("deliveries_per_s", figures["deliveries_per_s"], 50_000, ">=", "/s",
              f"broker alone = {reference:,.0f}/s in-process; offered {sizes.rate:g} events/s x "
              f"{sizes.sockets} sockets"),
        Check("p99_ms", figures["p99_ms"], 100, "<=", "ms", f"p50 = {figures['p50_ms']} ms, publish → receipt"),
        Check("kib_per_socket", figures["kib_per_socket"], 50, "<=", "KiB",
              f"server RSS growth over {connected:,} connected websocket sockets"),
    ]
    notes = [f"{result['received']:,} of {result['expected']:,} deliveries arrived ({result['reason']})",
             "deliveries_per_s is bounded by the offered rate x sockets: it measures that the offered load is "
             "sustained, with p99 showing the headroom"]
    finish(progress, args, figures, checks, notes, environment(database))


async def lines_of(process: trio.Process):  # type: ignore[no-untyped-def]
    buffer = b""
    assert process.stdout is not None
    async for chunk in process.stdout:
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if line.strip() and line.lstrip().startswith(b"{") and b'"step":"error"' not in line:
                yield line.decode()


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    return parser(__doc__.splitlines()[0]).parse_args(argv)


if __name__ == "__main__":
    run(main, arguments())
