"""Engine.IO 4 and Socket.IO 5 packet codecs: the shapes socket.io-client sends and expects, and
every malformed input failing as one ProtocolError."""

from __future__ import annotations

import json

import pytest

from api.realtime import eio, sio
from api.realtime.eio import Packet, PacketType, ProtocolError
from api.realtime.sio import Decoder
from api.realtime.sio import Packet as SioPacket
from api.realtime.sio import PacketType as SioType

# --- Engine.IO ---


def test_open_packet_is_the_engineio_handshake() -> None:
    packet = eio.open_packet("abc", upgrades=["websocket"], ping_interval=25, ping_timeout=20.5, max_payload=1000)
    text = eio.encode_text(packet)
    assert text[0] == "0"
    assert json.loads(text[1:]) == {"sid": "abc", "upgrades": ["websocket"], "pingInterval": 25000,
                                    "pingTimeout": 20500, "maxPayload": 1000}


def test_polling_payload_joins_with_record_separator_and_base64_for_binary() -> None:
    packets = [eio.PING, eio.message("hello"), eio.message(b"\x00\x01\xff"), eio.NOOP]
    body = eio.encode_payload(packets)
    assert body == "2\x1e4hello\x1ebAAH/\x1e6"
    assert eio.decode_payload(body) == packets


def test_websocket_frames_carry_binary_raw() -> None:
    assert eio.encode_frame(eio.message(b"\x01")) == b"\x01"
    assert eio.encode_frame(eio.message("x")) == "4x"
    assert eio.decode_frame(b"\x01\x02") == Packet(PacketType.MESSAGE, b"\x01\x02")
    assert eio.decode_frame("3") == eio.PONG
    assert eio.decode_frame("2probe") == Packet(PacketType.PING, "probe")


@pytest.mark.parametrize("body", ["", "x", "7", "4ok\x1e", "bnot base64!", "b====", "4a\x1eZ"])
def test_malformed_polling_payloads(body: str) -> None:
    with pytest.raises(ProtocolError):
        eio.decode_payload(body)


@pytest.mark.parametrize("frame", ["", "bAAE=", "x", 42, None])
def test_malformed_websocket_frames(frame: object) -> None:
    with pytest.raises(ProtocolError):  # a text frame never carries base64 in protocol 4
        eio.decode_frame(frame)


def test_only_messages_carry_binary() -> None:
    with pytest.raises(ValueError):
        eio.encode_text(Packet(PacketType.PING, b"x"))


# --- Socket.IO encoding ---

def texts(packets: list[Packet]) -> list[str | bytes]:
    return [packet.data for packet in packets]


def test_event_encoding_with_and_without_namespace() -> None:
    assert texts(sio.encode(sio.event("/", "hello", ("a", 1)))) == ['2["hello","a",1]']
    assert texts(sio.encode(sio.event("/7", "company-7-ticket", ({"action": "update"},)))) == [
        '2/7,["company-7-ticket",{"action":"update"}]']
    assert texts(sio.encode(sio.event("/7", "x", (), ack_id=12))) == ['2/7,12["x"]']


def test_connect_disconnect_and_connect_error_encoding() -> None:
    assert texts(sio.encode(SioPacket(SioType.CONNECT, "/7", {"sid": "s1"}))) == ['0/7,{"sid":"s1"}']
    assert texts(sio.encode(SioPacket(SioType.CONNECT, "/", {"sid": "s1"}))) == ['0{"sid":"s1"}']
    assert texts(sio.encode(SioPacket(SioType.DISCONNECT, "/7"))) == ["1/7,"]
    assert texts(sio.encode(SioPacket(SioType.CONNECT_ERROR, "/7", {"message": "no"}))) == [
        '4/7,{"message":"no"}']


def test_binary_data_becomes_placeholders_and_attachments() -> None:
    packets = sio.encode(sio.event("/7", "file", ({"name": "a.png", "data": b"\x89PNG"}, [b"x", bytearray(b"y")])))
    assert texts(packets) == [
        '53-/7,["file",{"name":"a.png","data":{"_placeholder":true,"num":0}},'
        '[{"_placeholder":true,"num":1},{"_placeholder":true,"num":2}]]',
        b"\x89PNG", b"x", b"y"]
    ack = sio.encode(SioPacket(SioType.ACK, "/", [b"\x00"], 3))
    assert texts(ack) == ['61-3[{"_placeholder":true,"num":0}]', b"\x00"]


def test_encoding_is_ascii_json_and_refuses_what_json_cannot_carry() -> None:
    (packet,) = sio.encode(sio.event("/", "m", ("olá", "\ud800")))
    assert packet.data == '2["m","ol\\u00e1","\\ud800"]'
    packet.data.encode("utf-8")  # always valid UTF-8 on the wire, even with a lone surrogate
    with pytest.raises(ValueError):
        sio.encode(sio.event("/", "m", (float("nan"),)))
    with pytest.raises(ValueError):
        sio.encode(SioPacket(SioType.CONNECT, "/", {"blob": b"x"}))


# --- Socket.IO decoding ---

def decode(text: str, max_attachments: int = 10) -> tuple[SioPacket, int]:
    return sio.decode_text(text, max_attachments=max_attachments)


@pytest.mark.parametrize(("text", "expected"), [
    ("0", SioPacket(SioType.CONNECT)),
    ('0/7,{"token":"t"}', SioPacket(SioType.CONNECT, "/7", {"token": "t"})),
    ("0/7,", SioPacket(SioType.CONNECT, "/7")),
    ("0/7", SioPacket(SioType.CONNECT, "/7")),
    ("1/7,", SioPacket(SioType.DISCONNECT, "/7")),
    ('2["joinChatBox","42"]', SioPacket(SioType.EVENT, "/", ["joinChatBox", "42"])),
    ('2/7,12["userStatus"]', SioPacket(SioType.EVENT, "/7", ["userStatus"], 12)),
    ("3/7,12[]", SioPacket(SioType.ACK, "/7", [], 12)),
])
def test_decode_valid_packets(text: str, expected: SioPacket) -> None:
    assert decode(text) == (expected, 0)


def test_decode_binary_header() -> None:
    packet, count = decode('52-/7,4["up",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]')
    assert (packet.type, packet.namespace, packet.id, count) == (SioType.BINARY_EVENT, "/7", 4, 2)


@pytest.mark.parametrize("text", [
    "", "7", "x", "4/7,{}",  # unknown type; CONNECT_ERROR comes from servers only
    '0/7,["not","an","object"]', '0/7,"token"',  # CONNECT auth must be an object
    '1/7,{"x":1}',  # DISCONNECT carries nothing
    "2/7,{}", "2/7,[]", "2/7,[1]", '2/7,"x"',  # EVENT: a non-empty array starting with a name
    "3/7,[]", '3/7,1{"a":1}',  # ACK: needs an id and an array
    '2/7,{"unterminated', "2/7,1[" + "1" * 5000 + "]",  # bad JSON, an integer too long to parse
    '2/a,b,1["x"]',  # the namespace ends at the first comma: `b,1[...]` is not JSON
    "5-/7,[\"x\"]", '5x-/7,["x"]', '51/7,["x"]', '511-["x"]',  # illegal attachment counts (max 10)
    '2/7,1234567890123456["x"]',  # ack id beyond JavaScript's safe integers
    "2" + "/" + "n" * 300 + ',["x"]',  # namespace too long
    "2" + "[" * 100_000 + "]" * 100_000,  # nested deeper than the JSON parser goes
])
def test_decode_rejects(text: str) -> None:
    with pytest.raises(ProtocolError):
        decode(text)


def test_decoder_reassembles_binary_packets() -> None:
    decoder = Decoder(max_attachments=4)
    assert decoder.feed('52-/7,3["up",{"_placeholder":true,"num":1},{"k":{"_placeholder":true,"num":0}}]') is None
    assert decoder.waiting
    assert decoder.feed(b"zero") is None
    packet = decoder.feed(b"one")
    assert packet == SioPacket(SioType.BINARY_EVENT, "/7", ["up", b"one", {"k": b"zero"}], 3)
    assert not decoder.waiting
    assert decoder.feed('2/7,["next"]') == SioPacket(SioType.EVENT, "/7", ["next"])


def test_round_trip_through_encoder_and_decoder() -> None:
    original = sio.event("/7", "file", ({"data": b"\x00\x01", "more": [b"", 1, None]},), ack_id=9)
    decoder = Decoder(max_attachments=10)
    results = [decoder.feed(packet.data) for packet in sio.encode(original)]
    assert results[:-1] == [None, None]
    assert results[-1] == SioPacket(SioType.BINARY_EVENT, "/7", ["file", {"data": b"\x00\x01", "more": [b"", 1, None]}],
                                    9)


@pytest.mark.parametrize(("text", "attachments"), [
    ('51-["x",{"_placeholder":true,"num":1}]', [b"a"]),  # index out of range
    ('51-["x",{"_placeholder":true,"num":-1}]', [b"a"]),  # negative: must not pick another attachment
    ('51-["x",{"_placeholder":true,"num":true}]', [b"a"]),
    ('51-["x",{"_placeholder":true}]', [b"a"]),
    ('50-["x",{"_placeholder":true,"num":0}]', []),
    ('51-["x",' + "[" * 80 + '{"_placeholder":true,"num":0}' + "]" * 80 + "]", [b"a"]),  # too deep to walk
])
def test_decoder_rejects_bad_placeholders(text: str, attachments: list[bytes]) -> None:
    decoder = Decoder(max_attachments=10)
    with pytest.raises(ProtocolError):
        result = decoder.feed(text)
        for blob in attachments:
            result = decoder.feed(blob)
        assert result is None


def test_decoder_rejects_out_of_order_messages() -> None:
    with pytest.raises(ProtocolError):
        Decoder(max_attachments=10).feed(b"unannounced binary")
    decoder = Decoder(max_attachments=10)
    decoder.feed('51-["x",{"_placeholder":true,"num":0}]')
    with pytest.raises(ProtocolError):
        decoder.feed('2["text instead of the attachment"]')


def test_placeholders_outside_binary_packets_stay_plain_data() -> None:
    packet, _ = decode('2["x",{"_placeholder":true,"num":0}]')
    assert packet.data == ["x", {"_placeholder": True, "num": 0}]
