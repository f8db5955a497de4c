"""Engine.IO 4 packets: the codec of the transport layer under Socket.IO.

A packet is a type digit and its data (`4hello` is a message "hello"). Over HTTP long-polling a
payload carries several packets separated by the record separator `\\x1e`, and a binary message
travels as `b` + base64; over a websocket each frame is one packet, and a binary message is a
binary frame with no type byte. Everything a client sends is untrusted: every decoding failure is a
`ProtocolError`, which the session answers by closing ("parse error").

Written here rather than reused from python-engineio: see `api/realtime/sio.py` for why.
"""

from __future__ import annotations

import base64
import binascii
import enum
import functools
import json
import struct
from typing import Any

import attrs

RECORD_SEPARATOR = "\x1e"
BINARY_PREFIX = "b"


class ProtocolError(Exception):
    """A client sent something that is not Engine.IO 4 / Socket.IO 5."""


class PacketType(enum.IntEnum):
    OPEN = 0
    CLOSE = 1
    PING = 2
    PONG = 3
    MESSAGE = 4
    UPGRADE = 5
    NOOP = 6


@attrs.frozen
class Packet:
    type: PacketType
    data: str | bytes = ""

    @property
    def size(self) -> int:
        """What the packet weighs in an outgoing queue (characters or bytes, plus the type)."""
        return len(self.data) + 1


PING = Packet(PacketType.PING)
PONG = Packet(PacketType.PONG)
CLOSE = Packet(PacketType.CLOSE)
NOOP = Packet(PacketType.NOOP)
PROBE = "probe"


def open_packet(sid: str, *, upgrades: list[str], ping_interval: float, ping_timeout: float,
                max_payload: int) -> Packet:
    """The handshake: `0{"sid", "upgrades", "pingInterval", "pingTimeout", "maxPayload"}` (times in ms)."""
    body = {"sid": sid, "upgrades": upgrades, "pingInterval": round(ping_interval * 1000),
            "pingTimeout": round(ping_timeout * 1000), "maxPayload": max_payload}
    return Packet(PacketType.OPEN, json.dumps(body, separators=(",", ":")))


def message(data: str | bytes) -> Packet:
    return Packet(PacketType.MESSAGE, data)


# --- text form (polling payloads, websocket text frames) ---

def encode_text(packet: Packet) -> str:
    if isinstance(packet.data, bytes):
        if packet.type is not PacketType.MESSAGE:
            raise ValueError("only message packets carry binary data")
        return BINARY_PREFIX + base64.b64encode(packet.data).decode("ascii")
    return f"{packet.type.value}{packet.data}"


def decode_text(text: str, *, allow_base64: bool) -> Packet:
    """One packet in text form; `b…` (a base64 binary message) only where the transport allows it."""
    if not text:
        raise ProtocolError("empty packet")
    head = text[0]
    if head == BINARY_PREFIX and allow_base64:
        try:
            return Packet(PacketType.MESSAGE, base64.b64decode(text[1:], validate=True))
        except (binascii.Error, ValueError) as error:
            raise ProtocolError("invalid base64 in a binary packet") from error
    if not ("0" <= head <= "6"):
        raise ProtocolError(f"unknown packet type {head!r}")
    return Packet(PacketType(int(head)), text[1:])


def encode_payload(packets: list[Packet]) -> str:
    """A polling response: the packets in text form, joined by the record separator."""
    return RECORD_SEPARATOR.join(encode_text(packet) for packet in packets)


def decode_payload(body: str) -> list[Packet]:
    """A polling POST body. Any bad packet spoils the whole payload."""
    if not body:
        raise ProtocolError("empty payload")
    return [decode_text(part, allow_base64=True) for part in body.split(RECORD_SEPARATOR)]


# --- websocket frames ---

def encode_frame(packet: Packet) -> str | bytes:
    if isinstance(packet.data, bytes):
        if packet.type is not PacketType.MESSAGE:
            raise ValueError("only message packets carry binary data")
        return packet.data
    return encode_text(packet)


def decode_frame(frame: str | bytes | Any) -> Packet:
    if isinstance(frame, bytes | bytearray):
        return Packet(PacketType.MESSAGE, bytes(frame))
    if not isinstance(frame, str):
        raise ProtocolError("a websocket frame must be text or binary")
    return decode_text(frame, allow_base64=False)


@functools.lru_cache(maxsize=64)
def websocket_frame(packet: Packet) -> bytes:
    """The whole websocket frame carrying `packet` (RFC 6455: server to client, final, unmasked, no extension).

    The bytes are the same for every client, so a fan-out builds them once: cached by packet (the
    packets of one emit are one object shared by all its recipients).
    """
    if isinstance(packet.data, bytes):
        if packet.type is not PacketType.MESSAGE:
            raise ValueError("only message packets carry binary data")
        opcode, payload = 0x2, packet.data
    else:
        opcode, payload = 0x1, f"{packet.type.value}{packet.data}".encode()
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x80 | opcode, size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 126, size)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 127, size)
    return header + payload
