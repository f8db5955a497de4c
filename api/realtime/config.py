"""The realtime server's limits. Every queue and table it keeps is bounded by one of these."""

from __future__ import annotations

import attrs


@attrs.frozen
class RealtimeConfig:
    path: str = "/socket.io/"
    ping_interval: float = 25.0  # seconds between the server's pings (Engine.IO's pingInterval)
    ping_timeout: float = 20.0  # a pong must come this soon after a ping, or the session is closed
    max_payload: int = 1_000_000  # bytes: one polling POST, one websocket frame
    # A session is *pending* from its handshake until a namespace accepts it (the client authenticated).
    connect_timeout: float = 10.0  # a session still pending by then is closed
    upgrade_timeout: float = 10.0  # from the websocket probe's arrival to its `5` (upgrade)
    max_sessions: int = 10_000  # authenticated sessions at once; a namespace connect beyond is refused
    max_pending: int = 2_000  # anonymous pending sessions, all addresses together; a handshake beyond: 503
    max_pending_per_client: int = 50  # pending sessions of one address (IPv6: /64) or one vouched user: 429
    outgoing_packets: int = 1024  # per session: Engine.IO packets waiting for the client …
    outgoing_bytes: int = 4 * 1024 * 1024  # … and their weight; past either the client is lagging: closed
    early_packets: int = 64  # per socket: packets a namespace handler may emit before the connect completes
    inbound_messages: int = 64  # per session: client messages waiting for their event handlers
    max_namespaces: int = 16  # namespaces one session may connect to
    max_rooms_per_socket: int = 1024
    max_attachments: int = 10  # binary attachments in one client packet
    close_grace: float = 1.0  # seconds to say goodbye (the close packet) to a closing websocket

    def __attrs_post_init__(self) -> None:
        if not self.path.startswith("/") or not self.path.endswith("/"):
            raise ValueError("the realtime path must start and end with '/'")
        for name in ("ping_interval", "ping_timeout", "connect_timeout", "upgrade_timeout"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        for name in ("max_payload", "max_sessions", "max_pending", "max_pending_per_client", "outgoing_packets",
                     "outgoing_bytes", "inbound_messages", "max_namespaces", "max_rooms_per_socket", "early_packets"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
