"""Socket.IO 5 packets, carried in Engine.IO message packets.

    <type>[<attachments>-][<namespace>,][<ack id>][<JSON>]

`2/7,12["joinChatBox",42]` is an event on namespace `/7` asking for ack 12. A packet whose data
holds binary values is a BINARY_EVENT/BINARY_ACK: each binary value is replaced by
`{"_placeholder":true,"num":n}` and sent after the text packet as attachment n (its own Engine.IO
message).

Why our own codec and not `socketio.packet.Packet` / `engineio.packet.Packet`: the whole format is
the few lines below, and what arrives here is untrusted. python-socketio's decoder checks neither
the payload's shape per packet type (a CONNECT whose auth is not an object, an EVENT whose data is
not a list starting with a name) nor a placeholder's index (a negative `num` silently picks another
attachment), and fails with ValueError, IndexError, TypeError or KeyError depending on the input;
using it would mean re-validating everything around it, plus two dependencies (python-engineio,
and through it simple-websocket and bidict) whose servers we do not use. This module validates as
socket.io-parser does, bounds the attachment count and the ack id, and fails with one error type.
"""

from __future__ import annotations

import enum
import json
from typing import Any

import attrs

from api.realtime.eio import Packet as EnginePacket
from api.realtime.eio import ProtocolError, message

DEFAULT_NAMESPACE = "/"
MAX_ID_DIGITS = 15  # ack ids are JavaScript numbers counting up from 0
MAX_NAMESPACE_LENGTH = 256
MAX_NESTING = 64  # JSON a client sends is not walked deeper than this


class PacketType(enum.IntEnum):
    CONNECT = 0
    DISCONNECT = 1
    EVENT = 2
    ACK = 3
    CONNECT_ERROR = 4
    BINARY_EVENT = 5
    BINARY_ACK = 6


BINARY_TYPES = (PacketType.BINARY_EVENT, PacketType.BINARY_ACK)


@attrs.frozen
class Packet:
    type: PacketType
    namespace: str = DEFAULT_NAMESPACE
    data: Any = None
    id: int | None = None


# --- encoding (server → client) ---

def encode(packet: Packet) -> list[EnginePacket]:
    """The Engine.IO messages for `packet`: the text packet, then its binary attachments.

    EVENT and ACK packets whose data holds bytes become BINARY_EVENT / BINARY_ACK. Tuples are
    sent as arrays. Raises ValueError for data JSON cannot carry (NaN, objects, non-string keys).
    """
    attachments: list[bytes] = []
    data = _deconstruct(packet.data, attachments) if packet.data is not None else None
    kind = packet.type
    if attachments:
        if kind is PacketType.EVENT:
            kind = PacketType.BINARY_EVENT
        elif kind is PacketType.ACK:
            kind = PacketType.BINARY_ACK
        elif kind not in BINARY_TYPES:
            raise ValueError(f"a {kind.name} packet cannot carry binary data")
    text = str(kind.value)
    if kind in BINARY_TYPES:
        text += f"{len(attachments)}-"
    if packet.namespace != DEFAULT_NAMESPACE:
        text += packet.namespace + ","
    if packet.id is not None:
        text += str(packet.id)
    if data is not None:
        # ASCII JSON: a lone surrogate that came in escaped goes out escaped, never as invalid UTF-8
        text += json.dumps(data, separators=(",", ":"), allow_nan=False)
    return [message(text), *(message(blob) for blob in attachments)]


def _deconstruct(data: Any, attachments: list[bytes]) -> Any:
    if isinstance(data, bytes | bytearray | memoryview):
        attachments.append(bytes(data))
        return {"_placeholder": True, "num": len(attachments) - 1}
    if isinstance(data, list | tuple):
        return [_deconstruct(item, attachments) for item in data]
    if isinstance(data, dict):
        return {key: _deconstruct(value, attachments) for key, value in data.items()}
    return data


def event(namespace: str, name: str, args: tuple[Any, ...] | list[Any], ack_id: int | None = None) -> Packet:
    return Packet(PacketType.EVENT, namespace, [name, *args], ack_id)


# --- decoding (client → server) ---

class Decoder:
    """Turns the Engine.IO messages of one connection back into Socket.IO packets.

    `feed` returns a packet once it is complete, or None while a binary packet still waits for
    attachments. At most `max_attachments` per packet; any violation raises ProtocolError.
    """

    def __init__(self, max_attachments: int) -> None:
        self.max_attachments = max_attachments
        self._partial: Packet | None = None
        self._expected = 0
        self._attachments: list[bytes] = []

    @property
    def waiting(self) -> bool:
        return self._partial is not None

    def feed(self, data: str | bytes) -> Packet | None:
        if self._partial is not None:
            if not isinstance(data, bytes):
                raise ProtocolError("a text packet arrived while binary attachments were expected")
            self._attachments.append(data)
            if len(self._attachments) < self._expected:
                return None
            partial, attachments = self._partial, self._attachments
            self._partial, self._attachments, self._expected = None, [], 0
            return attrs.evolve(partial, data=_reconstruct(partial.data, attachments, 0))
        if isinstance(data, bytes):
            raise ProtocolError("a binary message arrived with no packet announcing it")
        packet, count = decode_text(data, max_attachments=self.max_attachments)
        if count == 0:
            if packet.type in BINARY_TYPES:
                return attrs.evolve(packet, data=_reconstruct(packet.data, [], 0))
            return packet
        self._partial, self._expected = packet, count
        return None


def decode_text(text: str, *, max_attachments: int) -> tuple[Packet, int]:
    """One text packet and the number of binary attachments that must follow it."""
    if not text or not ("0" <= text[0] <= "6"):
        raise ProtocolError("unknown Socket.IO packet type")
    kind = PacketType(int(text[0]))
    i = 1
    attachments = 0
    if kind in BINARY_TYPES:
        dash = text.find("-", i, i + 6)
        if dash <= i or not text[i:dash].isdigit() or not text[i:dash].isascii():
            raise ProtocolError("illegal attachment count")
        attachments = int(text[i:dash])
        if attachments > max_attachments:
            raise ProtocolError(f"more than {max_attachments} binary attachments")
        i = dash + 1
    elif kind is PacketType.CONNECT_ERROR:
        raise ProtocolError("CONNECT_ERROR is sent by servers only")
    namespace = DEFAULT_NAMESPACE
    if text.startswith("/", i):
        comma = text.find(",", i)
        end = len(text) if comma < 0 else comma
        namespace = text[i:end]
        i = end + 1 if comma >= 0 else end
        if len(namespace) > MAX_NAMESPACE_LENGTH:
            raise ProtocolError("namespace too long")
    ack_id = None
    start = i
    while i < len(text) and "0" <= text[i] <= "9":
        i += 1
    if i > start:
        if i - start > MAX_ID_DIGITS:
            raise ProtocolError("ack id too long")
        ack_id = int(text[start:i])
    data = None
    if i < len(text):
        try:
            data = json.loads(text[i:])
        except (ValueError, RecursionError) as error:
            raise ProtocolError("invalid JSON in packet") from error
    _check_shape(kind, data, ack_id, text[i:] != "")
    return Packet(kind, namespace, data, ack_id), attachments


def _check_shape(kind: PacketType, data: Any, ack_id: int | None, has_data: bool) -> None:
    if kind is PacketType.CONNECT:
        ok = not has_data or isinstance(data, dict)
    elif kind is PacketType.DISCONNECT:
        ok = not has_data
    elif kind in (PacketType.EVENT, PacketType.BINARY_EVENT):
        ok = isinstance(data, list) and bool(data) and isinstance(data[0], str)
    else:  # ACK, BINARY_ACK
        ok = isinstance(data, list) and ack_id is not None
    if not ok:
        raise ProtocolError(f"invalid payload for a {kind.name} packet")


def _reconstruct(data: Any, attachments: list[bytes], depth: int) -> Any:
    if depth > MAX_NESTING:
        raise ProtocolError("packet data nested too deeply")
    if isinstance(data, list):
        return [_reconstruct(item, attachments, depth + 1) for item in data]
    if isinstance(data, dict):
        if data.get("_placeholder") is True:
            num = data.get("num")
            if type(num) is not int or not 0 <= num < len(attachments):
                raise ProtocolError("illegal attachment placeholder")
            return attachments[num]
        return {key: _reconstruct(value, attachments, depth + 1) for key, value in data.items()}
    return data

