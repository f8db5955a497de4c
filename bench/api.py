"""The agents' hot reads over HTTP, against the same SQL run directly.

A generated dataset (full size: 20,000 contacts, 50,000 tickets of mixed statuses, queues, users and
tags, 500,000 messages) is loaded with COPY into a fresh database and VACUUM ANALYZEd; zapgate serves
it (run_app, the code path of `zapgate serve`); N concurrent HTTP/1.1 keep-alive clients (default 8)
in a separate process (`python -m bench.api --client`, spec on stdin) read, one endpoint at a time:

- `tickets_open`:   GET /tickets?status=open&showAll=true&queueIds=[…]&pageNumber=1 (the open tab)
- `tickets_search`: GET /tickets?searchParam=nogueira&showAll=true&queueIds=[…]&pageNumber=1
- `messages`:       GET /messages/:ticketId (a ticket with exactly 200 messages; first page)

Per endpoint: `rps`, `p50_ms`, `p99_ms` (after a warm-up), and `raw_query_p50_ms`: the statements
that endpoint runs (built by storage/ticket_lists.py, read from storage/queries.sql), in autocommit as the
endpoint runs them, run directly with psycopg by one client, one after another; `ratio` = p50_ms / raw p50.
Also measured the same way, as the floor of any authenticated read on this HTTP stack: `floor_auth_me`,
GET /auth/me (the token checked, one primary-key read, a small answer).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import attrs
import psycopg
import trio
from psycopg.rows import dict_row

from bench.common import (
    ADMIN_EMAIL,
    COMPANY_ID,
    Check,
    Progress,
    app_logging,
    environment,
    finish,
    fresh_database,
    ms,
    open_app,
    parser,
    percentile,
    run,
)
from storage import users
from storage.ticket_lists import TicketFilters, build_list_query
from storage.tickets import Viewer, page_params

NAME = "bench.api"
ROOT = Path(__file__).resolve().parent.parent  # where `python -m bench.api --client` runs
SEARCH = "nogueira"
TICKETS_PAGE = 40  # api/tickets.py PAGE_SIZE
MESSAGES_PAGE = 20  # api/messages.py PAGE_SIZE
TARGET_MESSAGES = 200  # messages of the ticket GET /messages reads

FIRST_NAMES = ("Maria", "José", "Ana", "João", "Antônio", "Francisca", "Carlos", "Paulo", "Pedro", "Lucas",
               "Luiz", "Marcos", "Gabriel", "Rafael", "Daniel", "Marcelo", "Bruno", "Eduardo", "Felipe",
               "Juliana", "Fernanda", "Patrícia", "Aline", "Sandra", "Camila", "Amanda", "Bruna", "Letícia")
SURNAMES = ("Silva", "Santos", "Oliveira", "Souza", "Rodrigues", "Ferreira", "Alves", "Pereira", "Lima", "Gomes",
            "Costa", "Ribeiro", "Martins", "Carvalho", "Almeida", "Lopes", "Soares", "Fernandes", "Vieira",
            "Barbosa", "Rocha", "Dias", "Nascimento", "Andrade", "Moreira", "Nunes", "Marques", "Machado",
            "Mendes", "Freitas", "Nogueira", "Cardoso")
PHRASES = ("bom dia, gostaria de saber o status do meu pedido", "obrigado pelo atendimento",
           "qual o prazo de entrega?", "preciso da segunda via do boleto", "o produto chegou com defeito",
           "vocês abrem no sábado?", "pode me passar o código de rastreio?", "quero cancelar a assinatura",
           "ok, aguardo o retorno", "perfeito, muito obrigado!", "ainda não recebi o reembolso",
           "consegue me ajudar com a troca?", "o pagamento foi aprovado?", "boa tarde", "certo")


@attrs.frozen
class Sizes:
    contacts: int
    tickets: int
    messages: int
    seconds: float  # measured per endpoint
    warmup: float
    raw_seconds: float


SIZES = {
    "tiny": Sizes(contacts=300, tickets=600, messages=5_000, seconds=0.5, warmup=0.2, raw_seconds=0.2),
    "quick": Sizes(contacts=20_000, tickets=50_000, messages=500_000, seconds=5.0, warmup=1.0, raw_seconds=2.0),
    "full": Sizes(contacts=20_000, tickets=50_000, messages=500_000, seconds=20.0, warmup=2.0, raw_seconds=5.0),
}


# ─── the dataset ────────────────────────────────────────────────────────────────────────

@attrs.frozen
class Dataset:
    queue_ids: tuple[int, ...]
    target_ticket: int  # the ticket with TARGET_MESSAGES messages
    by_status: dict[str, int]
    loaded_in: float


def _ts(value: dt.datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S+00")


def _copy(conn: psycopg.Connection[Any], table: str, columns: Iterable[str], lines: Iterator[str]) -> None:
    """COPY text-format lines (tab-separated, \\N for NULL; our values hold no tabs, newlines or backslashes)."""
    with conn.cursor() as cursor, cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        chunk: list[str] = []
        for line in lines:
            chunk.append(line)
            if len(chunk) >= 20_000:
                copy.write("".join(chunk))
                chunk.clear()
        if chunk:
            copy.write("".join(chunk))


def _ids(conn: psycopg.Connection[Any], query: str) -> list[int]:
    return [row[0] for row in conn.execute(query).fetchall()]


def load_dataset(url: str, sizes: Sizes, admin_id: int, progress: Progress) -> Dataset:
    """Generate and COPY the dataset into the (fresh) database; blocking."""
    rng = random.Random(6)
    started = time.perf_counter()
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    with psycopg.connect(url, autocommit=True) as conn:
        with conn.transaction():
            try:  # skip the FK triggers while loading (the generated rows are consistent); needs superuser
                with conn.transaction():
                    conn.execute("SET LOCAL session_replication_role = replica")
            except psycopg.errors.InsufficientPrivilege:
                progress("  (not a superuser: foreign keys are checked during the load; it is slower)")
            whatsapp_id = conn.execute(
                "INSERT INTO whatsapps (company_id, name, channel) VALUES (%s, 'bench api', 'sandbox') RETURNING id",
                (COMPANY_ID,)).fetchone()[0]
            queue_ids = [conn.execute("INSERT INTO queues (company_id, name, color) VALUES (%s, %s, '#336699') "
                                      "RETURNING id", (COMPANY_ID, f"Fila {i}")).fetchone()[0] for i in range(1, 6)]
            user_ids = [admin_id] + [conn.execute(
                "INSERT INTO users (company_id, name, email, password_hash, profile) VALUES (%s, %s, %s, 'x', 'user') "
                "RETURNING id", (COMPANY_ID, f"Agente {i}", f"agente{i}@bench.zapgate")).fetchone()[0]
                for i in range(1, 10)]
            tag_ids = [conn.execute("INSERT INTO tags (company_id, name) VALUES (%s, %s) RETURNING id",
                                    (COMPANY_ID, f"etiqueta {i}")).fetchone()[0] for i in range(1, 21)]

            progress(f"  COPY {sizes.contacts:,} contacts")
            _copy(conn, "contacts", ("company_id", "name", "number", "email"), (
                f"{COMPANY_ID}\t{rng.choice(FIRST_NAMES)} {rng.choice(SURNAMES)}\t55{11 + i % 80}9{i:08d}\t\n"
                for i in range(sizes.contacts)))
            contact_ids = _ids(conn, f"SELECT id FROM contacts WHERE company_id = {COMPANY_ID} ORDER BY id")

            progress(f"  COPY {sizes.tickets:,} tickets")
            active = min(len(contact_ids) // 2, sizes.tickets // 5)  # one active ticket per contact at most
            ticket_contacts: list[int] = []
            statuses: list[str] = []

            def tickets() -> Iterator[str]:
                for i in range(sizes.tickets):
                    if i < active:
                        status, contact = ("open" if i % 2 == 0 else "pending"), contact_ids[i]
                    else:
                        status, contact = "closed", rng.choice(contact_ids)
                    user = ("\\N" if status == "pending" else str(admin_id if i == 0 else rng.choice(user_ids)))
                    queue = "\\N" if rng.random() < 0.2 else str(rng.choice(queue_ids))
                    at = now - dt.timedelta(seconds=rng.randrange(90 * 86400))
                    unread = rng.randrange(5) if status != "closed" else 0
                    ticket_contacts.append(contact)
                    statuses.append(status)
                    yield (f"{COMPANY_ID}\t{contact}\t{whatsapp_id}\t{queue}\t{user}\t{status}\tf\t{unread}\t"
                           f"{rng.choice(PHRASES)}\t{_ts(at)}\t{_ts(at - dt.timedelta(days=1))}\t{_ts(at)}\n")

            _copy(conn, "tickets", ("company_id", "contact_id", "whatsapp_id", "queue_id", "user_id", "status",
                                    "is_group", "unread_messages", "last_message", "last_message_at", "created_at",
                                    "updated_at"), tickets())
            ticket_ids = _ids(conn, f"SELECT id FROM tickets WHERE company_id = {COMPANY_ID} ORDER BY id")

            def ticket_tags() -> Iterator[str]:
                for ticket_id in ticket_ids:
                    if rng.random() < 0.3:
                        for tag in rng.sample(tag_ids, rng.choice((1, 1, 2))):
                            yield f"{COMPANY_ID}\t{ticket_id}\t{tag}\n"

            _copy(conn, "ticket_tags", ("company_id", "ticket_id", "tag_id"), ticket_tags())

            progress(f"  COPY {sizes.messages:,} messages")
            target = 0  # an open ticket of the admin's: exactly TARGET_MESSAGES messages

            def messages() -> Iterator[str]:
                others = len(ticket_ids) - 1
                start = now - dt.timedelta(days=90)
                step = 90 * 86400 / max(1, sizes.messages)
                for i in range(sizes.messages):
                    index = target if i < TARGET_MESSAGES else 1 + rng.randrange(others)
                    at = _ts(start + dt.timedelta(seconds=i * step))
                    from_me = "t" if i % 3 == 0 else "f"  # ours read (ack 4), a contact's ack 0
                    yield (f"{COMPANY_ID}\t{whatsapp_id}\t{ticket_ids[index]}\t{ticket_contacts[index]}\tW{i:09d}\t"
                           f"{from_me}\t{rng.choice(PHRASES)}\tchat\t{4 if from_me == 't' else 0}\t"
                           f"{'sent' if from_me == 't' else 'received'}\tt\t{at}\t{at}\t{at}\n")

            _copy(conn, "messages", ("company_id", "whatsapp_id", "ticket_id", "contact_id", "wid", "from_me",
                                     "body", "media_type", "ack", "status", "read", "wa_timestamp", "created_at",
                                     "updated_at"), messages())
        progress("  VACUUM ANALYZE")
        for table in ("contacts", "tickets", "ticket_tags", "messages", "users", "queues", "tags", "whatsapps"):
            conn.execute(f"VACUUM (ANALYZE) {table}")
        by_status = dict(conn.execute("SELECT status, count(*) FROM tickets GROUP BY status").fetchall())
    return Dataset(tuple(queue_ids), ticket_ids[target], by_status, time.perf_counter() - started)


# ─── the endpoints and their SQL ────────────────────────────────────────────────────────

@attrs.frozen
class Endpoint:
    name: str
    path: str
    filters: TicketFilters | None  # None: the messages endpoint


# The floor of an authenticated read on this HTTP stack, measured the same way: the token checked, one
# primary-key read, a small JSON answer. What the three reads cost on top of it is theirs.
FLOOR = ("floor_auth_me", "/auth/me")


def endpoints(dataset: Dataset) -> list[Endpoint]:
    queues = list(dataset.queue_ids)
    queue_param = quote(json.dumps(queues, separators=(",", ":")))
    return [
        Endpoint("tickets_open", f"/tickets?pageNumber=1&status=open&showAll=true&queueIds={queue_param}",
                 TicketFilters(status="open", show_all=True, queue_ids=tuple(queues))),
        Endpoint("tickets_search",
                 f"/tickets?pageNumber=1&searchParam={SEARCH}&showAll=true&queueIds={queue_param}",
                 TicketFilters(search=f"%{SEARCH}%", show_all=True, queue_ids=tuple(queues))),
        Endpoint("messages", f"/messages/{dataset.target_ticket}", None),
    ]


def raw_query_p50(url: str, q: Any, endpoint: Endpoint, admin_id: int, ticket_id: int, base_url: str,
                  seconds: float) -> float:
    """The endpoint's statements (same text, same parameters, autocommit as the endpoint runs them) run
    directly; p50 in s."""
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        if endpoint.filters is not None:
            built = build_list_query(Viewer(admin_id, COMPANY_ID, True), endpoint.filters, limit=TICKETS_PAGE,
                                     template=q.tickets_page)

            def once() -> None:
                for statement in built.statements():
                    conn.execute(statement, built.params).fetchone()
        else:
            params = {"id": ticket_id, "company_id": COMPANY_ID}

            def once() -> None:
                ticket = conn.execute(q.ticket_show_json, params).fetchone()
                conn.execute(q.messages_page_json, page_params(ticket, limit=MESSAGES_PAGE, offset=0,
                                                               base_url=base_url)).fetchone()
                conn.execute(q.ticket_read, params).fetchone()

        for _ in range(5):
            once()  # prepared statements, caches
        timings: list[float] = []
        deadline = time.perf_counter() + seconds
        while len(timings) < 10 or (time.perf_counter() < deadline and len(timings) < 2_000):
            started = time.perf_counter()
            once()
            timings.append(time.perf_counter() - started)
    return percentile(timings, 50)


# ─── the HTTP clients (a separate process) ──────────────────────────────────────────────

async def _read_response(stream: trio.SocketStream, buffer: bytearray) -> tuple[int, bytes, bool]:
    """One HTTP/1.1 response (Content-Length or chunked): (status, body, whether the server keeps the connection)."""
    while (end := buffer.find(b"\r\n\r\n")) < 0:
        data = await stream.receive_some(65536)
        if not data:
            raise ConnectionError("the server closed the connection")
        buffer += data
    head = bytes(buffer[:end]).decode("latin-1").split("\r\n")
    del buffer[:end + 4]
    status = int(head[0].split(" ", 2)[1])
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in head[1:])}
    keep = headers.get("connection", "").lower() != "close"

    async def need(count: int) -> None:
        while len(buffer) < count:
            data = await stream.receive_some(65536)
            if not data:
                raise ConnectionError("the server closed the connection")
            buffer.extend(data)

    if "content-length" in headers:
        length = int(headers["content-length"])
        await need(length)
        body = bytes(buffer[:length])
        del buffer[:length]
        return status, body, keep
    if headers.get("transfer-encoding", "").lower() != "chunked":
        raise ConnectionError("a response with neither Content-Length nor chunked encoding")
    parts = []
    while True:
        while (line_end := buffer.find(b"\r\n")) < 0:
            await need(len(buffer) + 1)
        size = int(bytes(buffer[:line_end]).split(b";")[0], 16)
        del buffer[:line_end + 2]
        if size == 0:
            while (trailer_end := buffer.find(b"\r\n")) != 0:
                if trailer_end < 0:
                    await need(len(buffer) + 1)
                else:
                    del buffer[:trailer_end + 2]
            del buffer[:2]
            return status, b"".join(parts), keep
        await need(size + 2)
        parts.append(bytes(buffer[:size]))
        del buffer[:size + 2]


async def _client(port: int, request: bytes, warm_until: float, deadline: float, samples: list[float],
                  errors: list[str], first_bodies: list[bytes]) -> None:
    stream: trio.SocketStream | None = None
    buffer = bytearray()
    try:
        while (started := time.perf_counter()) < deadline:
            if stream is None:  # hypercorn closes a keep-alive connection after keep_alive_max_requests
                stream = await trio.open_tcp_stream("127.0.0.1", port)
                buffer.clear()
                started = time.perf_counter()
            await stream.send_all(request)
            status, body, keep = await _read_response(stream, buffer)
            finished = time.perf_counter()
            if not keep:
                await stream.aclose()
                stream = None
            if status != 200:
                errors.append(f"{status}: {body[:200]!r}")
            elif not first_bodies:
                first_bodies.append(body)
            if started >= warm_until and finished <= deadline:
                samples.append(finished - started)
    finally:
        if stream is not None:
            await stream.aclose()


async def client_main(spec: dict[str, Any]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name, path in spec["endpoints"]:
        request = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{spec['port']}\r\nAccept: application/json\r\n"
                   f"Authorization: Bearer {spec['token']}\r\nUser-Agent: zapgate-bench\r\n\r\n").encode()
        samples: list[float] = []
        errors: list[str] = []
        first: list[bytes] = []
        warm_until = time.perf_counter() + spec["warmup"]
        deadline = warm_until + spec["seconds"]
        async with trio.open_nursery() as nursery:
            for _ in range(spec["clients"]):
                nursery.start_soon(_client, spec["port"], request, warm_until, deadline, samples, errors, first)
        document = json.loads(first[0]) if first else {}
        results[name] = {"requests": len(samples), "errors": len(errors), "first_error": errors[0] if errors else None,
                         "rps": len(samples) / spec["seconds"], "p50": percentile(samples, 50),
                         "p99": percentile(samples, 99), "max": max(samples, default=0.0),
                         "count": document.get("count"), "items": len(document.get("tickets")
                                                                     or document.get("messages") or [])}
    return results


async def run_clients(spec: dict[str, Any]) -> dict[str, Any]:
    """Run the clients in their own process (`python -m bench.api --client`) and return what they measured."""
    result = await trio.run_process([sys.executable, "-m", "bench.api", "--client"], stdin=json.dumps(spec).encode(),
                                    capture_stdout=True, capture_stderr=True, check=False,
                                    cwd=ROOT)
    if result.returncode != 0:
        raise RuntimeError(f"the client process failed:\n{result.stderr.decode(errors='replace')}")
    return json.loads(result.stdout.decode().strip().splitlines()[-1])


# ─── the benchmark ──────────────────────────────────────────────────────────────────────

async def main(args: argparse.Namespace) -> None:
    progress = Progress(NAME)
    sizes = attrs.evolve(SIZES[args.mode], **{k: v for k, v in (
        ("contacts", args.contacts), ("tickets", args.tickets), ("messages", args.messages),
        ("seconds", args.seconds)) if v})
    notes: list[str] = []
    full = SIZES["full"]
    if (sizes.contacts, sizes.tickets, sizes.messages) != (full.contacts, full.tickets, full.messages):
        notes.append(f"dataset smaller than the full one: {sizes.contacts:,} contacts, {sizes.tickets:,} tickets, "
                     f"{sizes.messages:,} messages")
    with fresh_database(progress) as database, tempfile.TemporaryDirectory(prefix="zapgate-bench-") as tmp, \
            app_logging(Path(tmp) / "zapgate.log"):
        async with open_app(database.url, Path(tmp) / "data") as app:
            admin = await users.user_by_email(app.db, ADMIN_EMAIL)
            assert admin is not None
            progress(f"loading the dataset: {sizes.contacts:,} contacts, {sizes.tickets:,} tickets, "
                     f"{sizes.messages:,} messages")
            dataset = await trio.to_thread.run_sync(load_dataset, database.url, sizes, admin["id"], progress)
            progress(f"dataset loaded in {dataset.loaded_in:.1f}s: tickets by status {dataset.by_status}")
            token = app.deps.tokens.access_token(admin, None)
            chosen = endpoints(dataset)
            progress(f"{args.clients} HTTP clients in a separate process, {sizes.seconds:g}s per endpoint "
                     f"(+{sizes.warmup:g}s warm-up): {', '.join(e.name for e in chosen)}")
            measured = await run_clients({"port": app.port, "token": token, "clients": args.clients,
                                          "seconds": sizes.seconds, "warmup": sizes.warmup,
                                          "endpoints": [(e.name, e.path) for e in chosen] + [FLOOR]})
            raw: dict[str, float] = {}
            for endpoint in chosen:
                raw[endpoint.name] = await trio.to_thread.run_sync(
                    raw_query_p50, database.url, app.db.q, endpoint, admin["id"], dataset.target_ticket,
                    app.deps.messages.base_url, sizes.raw_seconds)
                got = measured[endpoint.name]
                progress(f"{endpoint.name}: {got['rps']:,.0f} req/s, p50 {ms(got['p50'])} ms, p99 {ms(got['p99'])} "
                         f"ms; raw SQL p50 {ms(raw[endpoint.name])} ms")
    figures: dict[str, Any] = {}
    checks: list[Check] = []
    floor = measured[FLOOR[0]]
    if floor["errors"]:
        raise RuntimeError(f"{FLOOR[1]}: {floor['errors']} failed requests, e.g. {floor['first_error']}")
    figures[FLOOR[0]] = {"rps": round(floor["rps"], 1), "p50_ms": ms(floor["p50"]), "p99_ms": ms(floor["p99"])}
    floor_text = f"the stack's floor, GET {FLOOR[1]}: p99 {ms(floor['p99'])} ms at {floor['rps']:,.0f} req/s"
    for endpoint in chosen:
        got = measured[endpoint.name]
        if got["errors"]:
            raise RuntimeError(f"{endpoint.name}: {got['errors']} failed requests, e.g. {got['first_error']}")
        if got["items"] == 0:
            raise RuntimeError(f"{endpoint.name}: the answer lists nothing; the dataset is not what it should be")
        figures[endpoint.name] = {
            "rps": round(got["rps"], 1), "p50_ms": ms(got["p50"]), "p99_ms": ms(got["p99"]),
            "raw_query_p50_ms": ms(raw[endpoint.name]), "ratio": round(got["p50"] / raw[endpoint.name], 2),
            "max_ms": ms(got["max"]), "requests": got["requests"], "matching": got["count"]}
        checks.append(Check(f"{endpoint.name}.p99_ms", ms(got["p99"]), 25, "<=", "ms",
                            f"raw_query_p50_ms = {ms(raw[endpoint.name])} (same SQL, direct); "
                            f"p50 = {ms(got['p50'])} ms; {got['rps']:,.0f} req/s; {floor_text}"))
    if measured["messages"]["count"] != TARGET_MESSAGES:
        raise RuntimeError(f"messages: the ticket has {measured['messages']['count']} messages, "
                           f"{TARGET_MESSAGES} expected")
    figures["dataset"] = {"contacts": sizes.contacts, "tickets": sizes.tickets, "messages": sizes.messages,
                          "tickets_by_status": dataset.by_status, "load_s": round(dataset.loaded_in, 1)}
    figures["clients"] = args.clients
    notes.append(f"{args.clients} concurrent keep-alive HTTP/1.1 clients in one separate process, on the same "
                 f"machine as the server and PostgreSQL; zapgate logs every request at INFO (as in production)")
    finish(progress, args, figures, checks, notes, environment(database))


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=8, help="concurrent HTTP clients")
    p.add_argument("--contacts", type=int)
    p.add_argument("--tickets", type=int)
    p.add_argument("--messages", type=int)
    p.add_argument("--seconds", type=float, help="measured seconds per endpoint")
    p.add_argument("--client", action="store_true", help=argparse.SUPPRESS)  # the client process
    return p.parse_args(argv)


if __name__ == "__main__":
    parsed = arguments()
    if parsed.client:
        print(json.dumps(trio.run(client_main, json.loads(sys.stdin.read()))))
    else:
        run(main, parsed)
