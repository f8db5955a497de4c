"""Realtime: a Socket.IO 5 / Engine.IO 4 server on trio, mounted on the Quart app under `/socket.io/`.

    server = RealtimeServer(RealtimeConfig(ping_interval=25, ping_timeout=20))
    server.register_namespace_handler(handler)     # accepts/refuses `/<name>` connects, adds `socket.on(...)`
    await nursery.start(server.run)                 # owns the session tasks
    app.register_blueprint(server.blueprint())      # polling + websocket routes at config.path
    # served by gateway/front.py with DirectWebsockets(server) as its claimer: websockets on the direct path
    server.emit_to_room("/7", "ticket:42", "company-7-appMessage", {"action": "create", ...})

Modules: `eio` and `sio` (packet codecs), `session` (one Engine.IO session's state machine),
`sockets` (namespace sockets and the Socket.IO dispatcher), `server` (sessions, rooms, fan-out),
`routes` (the HTTP and ASGI websocket transports), `direct` (the websocket transport on the raw
connection, which gateway/front.py hands the upgrades to: frames built once per emit). Policy — which
namespaces exist, who may join which room — belongs to the application's namespace handler, not to
this package.
"""

from api.realtime.config import RealtimeConfig
from api.realtime.server import RealtimeServer
from api.realtime.session import Handshake
from api.realtime.sockets import ConnectRefused, EventHandler, NamespaceHandler, Socket, TooManyRooms

__all__ = ["ConnectRefused", "EventHandler", "Handshake", "NamespaceHandler", "RealtimeConfig", "RealtimeServer",
           "Socket", "TooManyRooms"]
