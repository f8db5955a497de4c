"""The network side: Engine.IO's HTTP long-polling and websocket transports as Quart routes.

    GET  {path}?EIO=4&transport=polling              handshake: `0{"sid",…}`
    GET  {path}?EIO=4&transport=polling&sid=…        long poll: waits, answers packets joined by \\x1e
    POST {path}?EIO=4&transport=polling&sid=…        client packets; answers `ok`
    WS   {path}?EIO=4&transport=websocket             a websocket-only session (open packet first)
    WS   {path}?EIO=4&transport=websocket&sid=…       upgrade: `2probe` → `3probe`, then `5`

Refusals answer as engine.io does: HTTP 400 with `{"code", "message"}` (code 1 "Session ID unknown");
a handshake over the pending-session limits gets 429 or 503 with code 4 and `Retry-After` (see server.py).
The views are public (the JWT belongs to the namespace connect, checked by the namespace handler);
CORS headers come from the application's `after_request` like every route's.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import trio
from quart import Blueprint, Response, jsonify, request, websocket

from api.auth import public
from api.realtime import eio
from api.realtime.eio import ProtocolError
from api.realtime.session import (
    POLLING,
    WEBSOCKET,
    EngineError,
    EngineSession,
    Handshake,
    bad_handshake_method,
    bad_request,
    session_unknown,
    transport_unknown,
    unsupported_version,
)

if TYPE_CHECKING:
    from quart.wrappers import BaseRequestWebsocket

    from api.realtime.server import RealtimeServer

log = logging.getLogger("zapgate.realtime")

TEXT = "text/plain; charset=UTF-8"
# the client left, closed, or stopped reading (lagged): no goodbye to send on its websocket
SILENT_REASONS = frozenset({"client close", "transport close", "transport error", "lagged"})


def realtime_blueprint(server: RealtimeServer) -> Blueprint:
    blueprint = Blueprint("realtime", __name__)
    path = server.config.path
    # zapgate's app routes `/socket.io/` as `/socket.io` (api.app strips trailing slashes); an app without
    # that rule (a bare Quart app serving only the realtime server) gets the configured path itself
    bare = path.rstrip("/") or "/"

    @blueprint.route(path, methods=["GET", "POST", "OPTIONS"])
    @blueprint.route(bare, methods=["GET", "POST", "OPTIONS"])
    @public
    async def engineio_polling() -> Response:
        if request.method == "OPTIONS":  # CORS preflight: the app's after_request adds the headers
            return Response("", status=204)
        try:
            return await _polling(server)
        except EngineError as error:
            return _refusal(error)

    @blueprint.websocket(path)
    @blueprint.websocket(bare)
    async def engineio_websocket() -> Response | None:
        try:
            session, upgrading = _websocket_session(server)
        except EngineError as error:
            return _refusal(error)  # before accept: the handshake is answered with this HTTP response
        try:
            await websocket.accept()
            if upgrading and not await _upgrade(server, session):
                return None  # polling goes on; this websocket is closed as we return
            await _carry(server, session)
        finally:
            if session.upgrading:
                session.abort_upgrade()
            elif session.transport == WEBSOCKET:
                session.close("transport close")  # the client went away (we were cancelled), or we are done
        return None

    return blueprint


def _refusal(error: EngineError) -> Response:
    response = jsonify({"code": error.code, "message": error.message})
    response.status_code = error.status
    if error.retry_after is not None:
        response.headers["Retry-After"] = str(error.retry_after)
    return response


def _text(body: str) -> Response:
    return Response(body, status=200, content_type=TEXT)


def _handshake(connection: BaseRequestWebsocket, transport: str) -> Handshake:
    return Handshake(query=dict(connection.args.items()),
                     headers={name.lower(): value for name, value in connection.headers.items()},
                     remote_addr=connection.remote_addr, transport=transport)


def new_session(server: RealtimeServer, handshake: Handshake) -> EngineSession:
    """A new Engine.IO session for a handshake (protocol 4 only); EngineError when refused."""
    if handshake.query.get("EIO") != "4":
        raise unsupported_version()
    return server.open_session(handshake)


def open_packet(server: RealtimeServer, session: EngineSession, upgrades: list[str]) -> eio.Packet:
    config = server.config
    return eio.open_packet(session.sid, upgrades=upgrades, ping_interval=config.ping_interval,
                           ping_timeout=config.ping_timeout, max_payload=config.max_payload)


# --- polling ---

async def _polling(server: RealtimeServer) -> Response:
    transport = request.args.get("transport")
    if transport not in (POLLING, WEBSOCKET):
        raise transport_unknown()
    sid = request.args.get("sid")
    if sid is None:
        if request.method != "GET":
            raise bad_handshake_method()
        if transport != POLLING:  # a websocket handshake that came without the Upgrade header
            raise bad_request()
        session = new_session(server, _handshake(request, POLLING))
        return _text(eio.encode_payload([open_packet(server, session, [WEBSOCKET])]))
    session = server.session(sid)
    if session is None:
        raise session_unknown()
    if transport != POLLING:
        raise bad_request()
    if request.method == "GET":
        return _text(eio.encode_payload(await session.poll()))
    body = await _read_body(session, server.config.max_payload)
    try:
        await session.post(body)
    except ProtocolError as error:
        log.info("realtime client sent a bad payload", extra={"fields": {"sid": sid, "error": str(error)}})
        raise bad_request() from error
    return Response("ok", status=200, content_type="text/html; charset=UTF-8")


async def _read_body(session: EngineSession, limit: int) -> str:
    """The POST body as text, at most `limit` bytes: a larger one closes the session (413)."""
    too_large = EngineError(3, "Payload too large", status=413)
    if (request.content_length or 0) > limit:
        session.close("payload too large")
        raise too_large
    body = bytearray()
    async for chunk in request.body:
        body += chunk
        if len(body) > limit:
            session.close("payload too large")
            raise too_large
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as error:
        session.close("parse error")
        raise bad_request() from error


# --- websocket ---

def _websocket_session(server: RealtimeServer) -> tuple[EngineSession, bool]:
    return websocket_session(server, _handshake(websocket, WEBSOCKET))


def websocket_session(server: RealtimeServer, handshake: Handshake) -> tuple[EngineSession, bool]:
    """The session a websocket request is for, and whether it is an upgrade from polling.

    Raises EngineError (answered as HTTP 400/503 before the websocket is accepted). Shared by this
    blueprint's websocket route and the direct websocket transport (`direct.py`).
    """
    args = handshake.query
    transport = args.get("transport")
    if transport not in (POLLING, WEBSOCKET):
        raise transport_unknown()
    if transport != WEBSOCKET:
        raise bad_request()
    sid = args.get("sid")
    if sid is None:
        session = new_session(server, handshake)
        session.send_nowait([open_packet(server, session, [])])
        return session, False
    session = server.session(sid)
    if session is None:
        raise session_unknown()
    session.begin_upgrade()
    return session, True


async def _carry(server: RealtimeServer, session: EngineSession) -> None:
    """Carry `session` over this websocket until it closes; then say goodbye (`1`) if still useful."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_read_frames, session, server.config.max_payload)
        nursery.start_soon(_write_frames, session)
        await session.wait_closed()
        nursery.cancel_scope.cancel()
    if session.close_reason not in SILENT_REASONS:
        with trio.move_on_after(server.config.close_grace):
            await websocket.send(eio.encode_frame(eio.CLOSE))


async def _upgrade(server: RealtimeServer, session: EngineSession) -> bool:
    """The probe exchange on a polling session's websocket: True once the websocket has taken over."""
    with trio.move_on_after(server.config.upgrade_timeout):
        return await _until_closed(session, _probe)
    return False


async def _probe(session: EngineSession) -> bool:
    if await websocket.receive() != eio.encode_text(eio.Packet(eio.PacketType.PING, eio.PROBE)):
        return False
    await websocket.send(eio.encode_text(eio.Packet(eio.PacketType.PONG, eio.PROBE)))
    session.probe_answered()
    if await websocket.receive() != eio.encode_text(eio.Packet(eio.PacketType.UPGRADE)):
        return False
    if session.closed:  # closed while we waited: the watcher's cancel has not landed yet
        return False
    session.complete_upgrade()
    return True


async def _until_closed(session: EngineSession, fn: Callable[[EngineSession], Awaitable[bool]]) -> bool:
    """`await fn(session)`, given up (False) if the session closes first."""
    result = False

    async def call() -> None:
        nonlocal result
        result = await fn(session)
        nursery.cancel_scope.cancel()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(call)
        await session.wait_closed()
        nursery.cancel_scope.cancel()
    return result


async def _read_frames(session: EngineSession, max_payload: int) -> None:
    while True:
        frame = await websocket.receive()
        if isinstance(frame, str | bytes) and len(frame) > max_payload:
            session.close("payload too large")
            return
        try:
            packet = eio.decode_frame(frame)
            await session.deliver([packet])
        except ProtocolError as error:
            log.info("realtime client sent a bad frame", extra={"fields": {"sid": session.sid, "error": str(error)}})
            session.close("parse error")
            return


async def _write_frames(session: EngineSession) -> None:
    while True:
        packets = await session.wait_outgoing()
        if not packets:
            return
        for packet in packets:
            try:
                await websocket.send(eio.encode_frame(packet))
            except Exception as error:  # the server's websocket state refused the frame: the transport is gone
                log.debug("realtime websocket send failed",
                          extra={"fields": {"sid": session.sid, "error": repr(error)}})
                session.close("transport error")
                return
