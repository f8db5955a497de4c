"""The neonize transport's pure parts: neonize events → our events, commands → WhatsApp messages, DSNs.

Every neonize event here is a real protobuf object of neonize 0.5.2, serialized and parsed back (so it
carries every field neonize's Go side marks required), shaped like what whatsmeow sends.
"""

from __future__ import annotations

import base64
import datetime as dt

import pytest
from neonize.proto import Neonize_pb2 as nz
from neonize.proto.waCommon.WACommon_pb2 import MessageKey
from neonize.proto.waE2E import WAWebProtobufsE2E_pb2 as wa
from psycopg.conninfo import conninfo_to_dict

from gateway.whatsapp.neonize_store import whatsmeow_dsn
from gateway.whatsapp.neonize_translate import (
    ConnectionChange,
    build_edit,
    build_media,
    build_reaction,
    build_revoke,
    build_text,
    jid_str,
    parse_jid,
    to_datetime,
    translate_connection,
    translate_login_status,
    translate_message,
    translate_qr,
    translate_receipt,
    user_jid,
)
from gateway.whatsapp.transport import (
    Ack,
    Connected,
    DeleteForEveryone,
    Disconnected,
    EditMessage,
    LoggedOut,
    MessageKind,
    QrCode,
    SendMedia,
    SendReaction,
    SendText,
)

CUSTOMER = "5511988887777"
SHOP = "5511999990000"
LID = "123456789012345"
GROUP = "120363025246125486"
WHEN_MS = 1_718_000_000_123
WHEN = dt.datetime(2024, 6, 10, 6, 13, 20, 123000, tzinfo=dt.UTC)


def jid(user: str = "", server: str = "s.whatsapp.net", device: int = 0) -> nz.JID:
    return nz.JID(User=user, RawAgent=0, Device=device, Integrator=0, Server=server if user or server else "",
                  IsEmpty=not user and not server)


EMPTY = jid("", "")


def roundtrip(message):  # what neonize hands to the callbacks: parsed from Go's bytes
    return type(message).FromString(message.SerializeToString())


def message_event(content: wa.Message, *, id: str = "3A1F0C9E2B", chat: nz.JID | None = None,
                  sender: nz.JID | None = None, sender_alt: nz.JID = EMPTY, from_me: bool = False,
                  group: bool = False, push_name: str = "Maria", timestamp: int = WHEN_MS) -> nz.Message:
    chat = chat or jid(CUSTOMER)
    sender = sender or jid(CUSTOMER)
    source = nz.MessageSource(Chat=chat, Sender=sender, IsFromMe=from_me, IsGroup=group, SenderAlt=sender_alt,
                              RecipientAlt=EMPTY, BroadcastListOwner=EMPTY, AddressingMode=nz.PN)
    info = nz.MessageInfo(MessageSource=source, ID=id, ServerID=0, Type="text", Pushname=push_name,
                          Timestamp=timestamp, Category="", Multicast=False, MediaType="", Edit="")
    return roundtrip(nz.Message(Info=info, Message=content, IsEphemeral=False, IsViewOnce=False, IsViewOnceV2=False,
                                IsViewOnceV2Extension=False, IsDocumentWithCaption=False, IsLottieSticker=False,
                                IsEdit=False, UnavailableRequestID="", RetryCount=0))


MEDIA_FIELDS = {"URL": "https://mmg.whatsapp.net/o1/v/t62/abc", "directPath": "/o1/v/t62/abc",
                "mediaKey": b"k" * 32, "fileEncSHA256": b"e" * 32, "fileSHA256": b"s" * 32}


# ─── messages ───────────────────────────────────────────────────────────────────────────

def test_plain_text_from_a_contact() -> None:
    message = translate_message(message_event(wa.Message(conversation="Oi, tudo bem?")))
    assert message is not None
    assert message.kind == MessageKind.TEXT
    assert message.body == "Oi, tudo bem?"
    assert (message.id, message.chat, message.sender) == ("3A1F0C9E2B", f"{CUSTOMER}@s.whatsapp.net",
                                                          f"{CUSTOMER}@s.whatsapp.net")
    assert message.timestamp == WHEN and message.timestamp.tzinfo is not None
    assert message.push_name == "Maria"
    assert message.sender_phone == f"{CUSTOMER}@s.whatsapp.net" and message.sender_lid is None
    assert not message.from_me and not message.is_group and message.participant is None
    assert message.quoted_id is None and message.media is None


def test_extended_text_reply_carries_the_quoted_id() -> None:
    content = wa.Message(extendedTextMessage=wa.ExtendedTextMessage(
        text="Sim, esse mesmo",
        contextInfo=wa.ContextInfo(stanzaID="3EB0QUOTED", participant=f"{SHOP}@s.whatsapp.net",
                                   quotedMessage=wa.Message(conversation="Seu pedido é o 42?"))))
    message = translate_message(message_event(content))
    assert message is not None
    assert (message.kind, message.body, message.quoted_id) == (MessageKind.TEXT, "Sim, esse mesmo", "3EB0QUOTED")


def test_message_sent_by_us_from_the_phone() -> None:
    event = message_event(wa.Message(conversation="Bom dia"), chat=jid(CUSTOMER), sender=jid(SHOP, device=0),
                          from_me=True, push_name="")
    message = translate_message(event)
    assert message is not None
    assert message.from_me and message.chat == f"{CUSTOMER}@s.whatsapp.net"
    assert message.sender == f"{SHOP}@s.whatsapp.net"


def test_sender_device_is_stripped() -> None:
    message = translate_message(message_event(wa.Message(conversation="x"), sender=jid(CUSTOMER, device=3)))
    assert message is not None and message.sender == f"{CUSTOMER}@s.whatsapp.net"


@pytest.mark.parametrize(("field", "media", "kind", "body", "filename"), [
    ("imageMessage", wa.ImageMessage(mimetype="image/jpeg", caption="a foto", fileLength=2048,
                                     JPEGThumbnail=b"t" * 500, **MEDIA_FIELDS), MessageKind.IMAGE, "a foto", None),
    ("audioMessage", wa.AudioMessage(mimetype="audio/mp4", fileLength=4096, seconds=7, **MEDIA_FIELDS),
     MessageKind.AUDIO, "", None),
    ("audioMessage", wa.AudioMessage(mimetype="audio/ogg; codecs=opus", fileLength=999, PTT=True, **MEDIA_FIELDS),
     MessageKind.VOICE, "", None),
    ("videoMessage", wa.VideoMessage(mimetype="video/mp4", caption="olha", fileLength=10_000, **MEDIA_FIELDS),
     MessageKind.VIDEO, "olha", None),
    ("documentMessage", wa.DocumentMessage(mimetype="application/pdf", fileName="boleto.pdf", title="boleto",
                                           fileLength=33_000, **MEDIA_FIELDS),
     MessageKind.DOCUMENT, "boleto.pdf", "boleto.pdf"),
    ("documentMessage", wa.DocumentMessage(mimetype="application/pdf", fileName="nota.pdf", caption="segue a nota",
                                           **MEDIA_FIELDS), MessageKind.DOCUMENT, "segue a nota", "nota.pdf"),
    ("stickerMessage", wa.StickerMessage(mimetype="image/webp", fileLength=12_000, isAnimated=False, **MEDIA_FIELDS),
     MessageKind.STICKER, "", None),
])
def test_media_messages(field: str, media, kind: MessageKind, body: str, filename: str | None) -> None:
    content = wa.Message()
    getattr(content, field).CopyFrom(media)
    message = translate_message(message_event(content))
    assert message is not None
    assert (message.kind, message.body) == (kind, body)
    ref = message.media
    assert ref is not None
    assert (ref.kind, ref.mimetype, ref.filename) == (kind, media.mimetype, filename)
    assert ref.size == (media.fileLength or None)
    # the key is a serialized Message holding just that media, ready for client.download_any
    holder = wa.Message.FromString(base64.b64decode(ref.key))
    assert [f.name for f, _ in holder.ListFields()] == [field]
    stored = getattr(holder, field)
    assert (stored.directPath, stored.mediaKey, stored.fileEncSHA256) == (
        MEDIA_FIELDS["directPath"], MEDIA_FIELDS["mediaKey"], MEDIA_FIELDS["fileEncSHA256"])
    assert not stored.HasField("contextInfo")


def test_media_reply_keeps_its_quoted_id() -> None:
    content = wa.Message(imageMessage=wa.ImageMessage(
        mimetype="image/png", contextInfo=wa.ContextInfo(stanzaID="3EB0Q2"), **MEDIA_FIELDS))
    message = translate_message(message_event(content))
    assert message is not None and message.quoted_id == "3EB0Q2"


def test_view_once_and_ephemeral_wrappers_are_unwrapped() -> None:
    image = wa.Message(imageMessage=wa.ImageMessage(mimetype="image/jpeg", caption="só uma vez", **MEDIA_FIELDS))
    content = wa.Message(ephemeralMessage=wa.FutureProofMessage(
        message=wa.Message(viewOnceMessageV2=wa.FutureProofMessage(message=image))))
    message = translate_message(message_event(content))
    assert message is not None and (message.kind, message.body) == (MessageKind.IMAGE, "só uma vez")


def test_location() -> None:
    content = wa.Message(locationMessage=wa.LocationMessage(
        degreesLatitude=-23.5613, degreesLongitude=-46.6565, name="Loja Paulista", address="Av. Paulista, 1000"))
    message = translate_message(message_event(content))
    assert message is not None
    assert (message.kind, message.latitude, message.longitude) == (MessageKind.LOCATION, -23.5613, -46.6565)
    assert message.body == "Loja Paulista"


def test_contact_card() -> None:
    vcard = "BEGIN:VCARD\nVERSION:3.0\nFN:João\nTEL;type=CELL;waid=5511977776666:+55 11 97777-6666\nEND:VCARD"
    content = wa.Message(contactMessage=wa.ContactMessage(displayName="João", vcard=vcard))
    message = translate_message(message_event(content))
    assert message is not None
    assert (message.kind, message.body, message.vcard) == (MessageKind.CONTACT, "João", vcard)


def test_reaction_and_its_removal() -> None:
    key = MessageKey(remoteJID=f"{CUSTOMER}@s.whatsapp.net", fromMe=True, ID="3EB0OURS")
    added = translate_message(message_event(wa.Message(reactionMessage=wa.ReactionMessage(
        key=key, text="👍", senderTimestampMS=WHEN_MS))))
    assert added is not None
    assert (added.kind, added.target_id, added.reaction) == (MessageKind.REACTION, "3EB0OURS", "👍")
    removed = translate_message(message_event(wa.Message(reactionMessage=wa.ReactionMessage(key=key, text=""))))
    assert removed is not None and removed.reaction == ""


def test_edit_as_whatsmeow_delivers_it() -> None:
    # whatsmeow unwraps editedMessage: what is left is the MESSAGE_EDIT protocol message
    edit = wa.ProtocolMessage(
        key=MessageKey(remoteJID=f"{CUSTOMER}@s.whatsapp.net", fromMe=False, ID="3A1ORIGINAL"),
        type=wa.ProtocolMessage.MESSAGE_EDIT, editedMessage=wa.Message(conversation="texto corrigido"),
        timestampMS=WHEN_MS)
    message = translate_message(message_event(wa.Message(protocolMessage=edit)))
    assert message is not None
    assert (message.kind, message.target_id, message.body) == (MessageKind.EDIT, "3A1ORIGINAL", "texto corrigido")


def test_edit_still_wrapped_in_edited_message() -> None:
    edit = wa.ProtocolMessage(key=MessageKey(ID="3A1ORIGINAL"), type=wa.ProtocolMessage.MESSAGE_EDIT,
                              editedMessage=wa.Message(extendedTextMessage=wa.ExtendedTextMessage(text="novo")))
    content = wa.Message(editedMessage=wa.FutureProofMessage(message=wa.Message(protocolMessage=edit)))
    message = translate_message(message_event(content))
    assert message is not None and (message.kind, message.body) == (MessageKind.EDIT, "novo")


def test_revoke() -> None:
    revoke = wa.ProtocolMessage(key=MessageKey(remoteJID=f"{CUSTOMER}@s.whatsapp.net", ID="3A1GONE"),
                                type=wa.ProtocolMessage.REVOKE)
    message = translate_message(message_event(wa.Message(protocolMessage=revoke)))
    assert message is not None
    assert (message.kind, message.target_id, message.body) == (MessageKind.REVOKE, "3A1GONE", "")


def test_other_protocol_messages_are_not_chat_messages() -> None:
    ephemeral = wa.ProtocolMessage(type=wa.ProtocolMessage.EPHEMERAL_SETTING, ephemeralExpiration=86400)
    assert translate_message(message_event(wa.Message(protocolMessage=ephemeral))) is None
    key_only = wa.Message(senderKeyDistributionMessage=wa.SenderKeyDistributionMessage(groupID=f"{GROUP}@g.us"))
    assert translate_message(message_event(key_only)) is None
    assert translate_message(message_event(wa.Message())) is None


def test_unsupported_content_is_kept_as_unknown() -> None:
    poll = wa.Message(pollCreationMessage=wa.PollCreationMessage(name="Qual sabor?"))
    message = translate_message(message_event(poll))
    assert message is not None and message.kind == MessageKind.UNKNOWN


def test_button_reply_is_text() -> None:
    reply = wa.Message(buttonsResponseMessage=wa.ButtonsResponseMessage(selectedDisplayText="Falar com atendente",
                                                                        selectedButtonID="2"))
    message = translate_message(message_event(reply))
    assert message is not None and (message.kind, message.body) == (MessageKind.TEXT, "Falar com atendente")


def test_group_message_names_its_participant() -> None:
    event = message_event(wa.Message(conversation="bom dia grupo"), chat=jid(GROUP, "g.us"),
                          sender=jid(CUSTOMER, device=2), group=True)
    message = translate_message(event)
    assert message is not None
    assert message.is_group and message.chat == f"{GROUP}@g.us"
    assert message.sender == message.participant == f"{CUSTOMER}@s.whatsapp.net"


def test_lid_sender_with_its_phone_number() -> None:
    event = message_event(wa.Message(conversation="oi"), chat=jid(LID, "lid"), sender=jid(LID, "lid"),
                          sender_alt=jid(CUSTOMER))
    message = translate_message(event)
    assert message is not None
    assert message.sender == message.sender_lid == f"{LID}@lid"
    assert message.sender_phone == f"{CUSTOMER}@s.whatsapp.net"


def test_lid_sender_without_phone_number() -> None:
    event = message_event(wa.Message(conversation="oi"), chat=jid(GROUP, "g.us"), sender=jid(LID, "lid"), group=True)
    message = translate_message(event)
    assert message is not None
    assert (message.sender_lid, message.sender_phone, message.participant) == (f"{LID}@lid", None, f"{LID}@lid")


def test_phone_sender_with_its_lid() -> None:
    event = message_event(wa.Message(conversation="oi"), sender_alt=jid(LID, "lid"))
    message = translate_message(event)
    assert message is not None
    assert (message.sender_phone, message.sender_lid) == (f"{CUSTOMER}@s.whatsapp.net", f"{LID}@lid")


def test_status_broadcasts_are_not_conversations() -> None:
    event = message_event(wa.Message(conversation="meu status"), chat=jid("status", "broadcast"))
    assert translate_message(event) is None


# ─── receipts ───────────────────────────────────────────────────────────────────────────

def receipt_event(kind: int, ids: list[str], chat: nz.JID | None = None) -> nz.Receipt:
    source = nz.MessageSource(Chat=chat or jid(CUSTOMER), Sender=jid(CUSTOMER), IsFromMe=False, IsGroup=False,
                              SenderAlt=EMPTY, RecipientAlt=EMPTY, BroadcastListOwner=EMPTY)
    return roundtrip(nz.Receipt(MessageSource=source, MessageIDs=ids, Timestamp=1_718_000_000, Type=kind))


@pytest.mark.parametrize(("kind", "ack"), [
    (nz.Receipt.DELIVERED, Ack.DELIVERED), (nz.Receipt.READ, Ack.READ), (nz.Receipt.PLAYED, Ack.PLAYED)])
def test_receipts(kind: int, ack: Ack) -> None:
    receipt = translate_receipt(receipt_event(kind, ["3EB0A", "3EB0B"]))
    assert receipt is not None
    assert (receipt.chat, receipt.ids, receipt.ack) == (f"{CUSTOMER}@s.whatsapp.net", ("3EB0A", "3EB0B"), ack)
    assert receipt.timestamp == dt.datetime(2024, 6, 10, 6, 13, 20, tzinfo=dt.UTC)


def test_group_receipt_is_for_the_group_chat() -> None:
    receipt = translate_receipt(receipt_event(nz.Receipt.READ, ["3EB0G"], chat=jid(GROUP, "g.us")))
    assert receipt is not None and receipt.chat == f"{GROUP}@g.us"


@pytest.mark.parametrize("kind", [nz.Receipt.RETRY, nz.Receipt.READ_SELF, nz.Receipt.SENDER,
                                  nz.Receipt.SERVER_ERROR, nz.Receipt.INACTIVE])
def test_other_receipts_are_ignored(kind: int) -> None:
    assert translate_receipt(receipt_event(kind, ["3EB0A"])) is None


# ─── connection ─────────────────────────────────────────────────────────────────────────

def test_qr_codes_are_numbered() -> None:
    assert translate_qr(b"2@abc,def,ghi", 1) == QrCode(code="2@abc,def,ghi", index=1)


def test_pair_success_reports_the_device_jid() -> None:
    event = roundtrip(nz.PairStatus(ID=jid(SHOP, device=12), BusinessName="Loja", Platform="android",
                                    Status=nz.PairStatus.SUCCESS))
    assert translate_connection(event) == ConnectionChange(Connected(jid=f"{SHOP}:12@s.whatsapp.net"))


def test_pair_error_waits_for_the_login_status() -> None:
    event = roundtrip(nz.PairStatus(ID=EMPTY, BusinessName="", Platform="", Status=nz.PairStatus.ERROR,
                                    Error="bad signature"))
    assert translate_connection(event) == ConnectionChange()


def test_connected_reports_our_device_and_push_name() -> None:
    device = roundtrip(nz.Device(JID=jid(SHOP, device=12), Platform="", BussinessName="", PushName="Loja Centro",
                                 Initialized=True))
    change = translate_connection(roundtrip(nz.Connected(status=True)), device)
    assert change == ConnectionChange(Connected(jid=f"{SHOP}:12@s.whatsapp.net", push_name="Loja Centro"))


@pytest.mark.parametrize("event", [nz.Disconnected(status=True), nz.KeepAliveTimeout(ErrorCount=3, LastSuccess=0)])
def test_dropped_connections_go_on(event) -> None:
    change = translate_connection(roundtrip(event))
    assert isinstance(change.event, Disconnected) and not change.ends


def test_stream_replaced_ends_with_an_error() -> None:
    change = translate_connection(roundtrip(nz.StreamReplaced()))
    assert isinstance(change.event, Disconnected) and change.ends and "replaced" in (change.error or "")


def test_logged_out_from_the_phone() -> None:
    change = translate_connection(roundtrip(nz.LoggedOut(OnConnect=False, Reason=nz.LOGGED_OUT)))
    assert change.ends and change.error is None
    assert change.event == LoggedOut(reason="logged out: logged out", banned=False)


def test_temporary_ban() -> None:
    event = roundtrip(nz.TemporaryBan(Code=nz.TemporaryBan.SENT_TOO_MANY_SAME_MESSAGE, Expire=3600))
    change = translate_connection(event)
    assert change.ends and isinstance(change.event, LoggedOut) and change.event.banned
    assert "too many same message" in change.event.reason and "3600" in change.event.reason


def failure(reason: int, message: str = "") -> nz.ConnectFailure:
    raw = nz.Node(Tag="failure", Nil=True)
    return roundtrip(nz.ConnectFailure(Reason=reason, Message=message, Raw=raw))


def test_connect_failures() -> None:
    banned = translate_connection(failure(nz.TEMP_BANNED))
    assert isinstance(banned.event, LoggedOut) and banned.event.banned and banned.ends
    gone = translate_connection(failure(nz.MAIN_DEVICE_GONE))
    assert isinstance(gone.event, LoggedOut) and not gone.event.banned and gone.ends
    busy = translate_connection(failure(nz.SERVICE_UNAVAILABLE))
    assert isinstance(busy.event, Disconnected) and not busy.ends
    odd = translate_connection(failure(nz.BAD_USER_AGENT, "bad ua"))
    assert isinstance(odd.event, Disconnected) and odd.ends and "bad ua" in (odd.error or "")


def test_qr_loop_status() -> None:
    assert translate_login_status("success") == ConnectionChange()
    expired = translate_login_status("timeout")
    assert expired.ends and "not scanned" in (expired.error or "")
    assert translate_login_status("err-unexpected-state").ends


# ─── commands ───────────────────────────────────────────────────────────────────────────

def test_text_and_reply() -> None:
    assert build_text(SendText(to=f"{CUSTOMER}@s.whatsapp.net", body="Olá")) == wa.Message(conversation="Olá")
    reply = build_text(SendText(to=f"{CUSTOMER}@s.whatsapp.net", body="Claro", quoted_id="3A1Q"))
    context = reply.extendedTextMessage.contextInfo
    assert (reply.extendedTextMessage.text, context.stanzaID, context.participant) == (
        "Claro", "3A1Q", f"{CUSTOMER}@s.whatsapp.net")
    group_reply = build_text(SendText(to=f"{GROUP}@g.us", body="ok", quoted_id="3A1Q"))
    assert not group_reply.extendedTextMessage.contextInfo.HasField("participant")


def test_reaction_edit_and_revoke() -> None:
    reaction = build_reaction(SendReaction(to=CUSTOMER, target_id="3A1X", emoji="❤️"), now_ms=WHEN_MS)
    assert reaction.reactionMessage.key == MessageKey(remoteJID=f"{CUSTOMER}@s.whatsapp.net", fromMe=False, ID="3A1X")
    assert (reaction.reactionMessage.text, reaction.reactionMessage.senderTimestampMS) == ("❤️", WHEN_MS)

    edit = build_edit(EditMessage(to=f"{CUSTOMER}@s.whatsapp.net", target_id="3EB0MINE", body="corrigido"))
    protocol = edit.editedMessage.message.protocolMessage
    assert (protocol.type, protocol.key.ID, protocol.key.fromMe) == (wa.ProtocolMessage.MESSAGE_EDIT, "3EB0MINE", True)
    assert protocol.editedMessage.conversation == "corrigido"

    revoke = build_revoke(DeleteForEveryone(to=f"{CUSTOMER}@s.whatsapp.net", target_id="3EB0MINE"),
                          jid(SHOP, device=12))
    assert revoke.protocolMessage.type == wa.ProtocolMessage.REVOKE
    assert (revoke.protocolMessage.key.ID, revoke.protocolMessage.key.fromMe) == ("3EB0MINE", True)


def test_media_from_an_upload() -> None:
    upload = nz.UploadResponse(url="https://mmg/x", DirectPath="/x", Handle="", MediaKey=b"k" * 32,
                               FileEncSHA256=b"e" * 32, FileSHA256=b"s" * 32, FileLength=3)
    voice = build_media(SendMedia(to=CUSTOMER, kind=MessageKind.VOICE, data=b"ogg"), upload)
    assert voice.audioMessage.PTT and voice.audioMessage.mimetype == "audio/ogg; codecs=opus"
    document = build_media(SendMedia(to=CUSTOMER, kind=MessageKind.DOCUMENT, data=b"pdf", mimetype="application/pdf",
                                     filename="boleto.pdf", caption="segue", quoted_id="3A1Q"), upload)
    doc = document.documentMessage
    assert (doc.fileName, doc.caption, doc.mimetype, doc.directPath, doc.fileLength) == (
        "boleto.pdf", "segue", "application/pdf", "/x", 3)
    assert doc.contextInfo.stanzaID == "3A1Q"
    with pytest.raises(ValueError):
        build_media(SendMedia(to=CUSTOMER, kind=MessageKind.LOCATION, data=b""), upload)


# ─── JIDs, time ─────────────────────────────────────────────────────────────────────────

def test_jids() -> None:
    device = parse_jid(f"{SHOP}:12@s.whatsapp.net")
    assert (device.User, device.Device, device.Server) == (SHOP, 12, "s.whatsapp.net")
    assert jid_str(device, device=True) == f"{SHOP}:12@s.whatsapp.net"
    assert jid_str(device) == f"{SHOP}@s.whatsapp.net"
    assert user_jid(f"{SHOP}:12@s.whatsapp.net") == f"{SHOP}@s.whatsapp.net"
    assert jid_str(parse_jid("+55 (11) 98888-7777")) == f"{CUSTOMER}@s.whatsapp.net"
    assert jid_str(parse_jid(f"{GROUP}-1612345678@g.us")) == f"{GROUP}-1612345678@g.us"
    assert jid_str(parse_jid(f"{LID}@lid")) == f"{LID}@lid"
    assert jid_str(EMPTY) is None
    for bad in ("", "@s.whatsapp.net", "abc:x@s.whatsapp.net"):
        with pytest.raises(ValueError):
            parse_jid(bad)


@pytest.mark.parametrize("value", [1_718_000_000, 1_718_000_000_000, 1_718_000_000_000_000,
                                   1_718_000_000_000_000_000])
def test_timestamps_in_any_unit(value: int) -> None:
    assert to_datetime(value) == dt.datetime(2024, 6, 10, 6, 13, 20, tzinfo=dt.UTC)


# ─── the device-store DSN ───────────────────────────────────────────────────────────────

@pytest.mark.parametrize(("given", "expected"), [
    ("postgresql://postgres@127.0.0.1:5432/test",
     "postgres://postgres@127.0.0.1:5432/test?sslmode=disable&connect_timeout=10"),
    ("postgres://app:s3cr%40t@db.internal/zapgate?sslmode=require",
     "postgres://app:s3cr%40t@db.internal/zapgate?sslmode=require&connect_timeout=10"),
    ("host=127.0.0.1 port=5433 user=app password='p@ss w/rd' dbname=zap_t_1 sslmode=prefer",
     "postgres://app:p%40ss%20w%2Frd@127.0.0.1:5433/zap_t_1?sslmode=disable&connect_timeout=10"),
    ("postgresql://postgres:@/zapgate?host=/var/lib/zapgate/postgres",
     "postgres://postgres@/zapgate?host=%2Fvar%2Flib%2Fzapgate%2Fpostgres&sslmode=disable&connect_timeout=10"),
    ("user=postgres dbname=zap host='/tmp/pg sock' port=5544",
     "postgres://postgres@/zap?host=%2Ftmp%2Fpg%20sock&port=5544&sslmode=disable&connect_timeout=10"),
    ("host=::1 dbname=zap user=postgres connect_timeout=3 application_name=zapgate keepalives=1",
     "postgres://postgres@[::1]/zap?sslmode=disable&connect_timeout=3&application_name=zapgate"),
])
def test_whatsmeow_dsn(given: str, expected: str) -> None:
    dsn = whatsmeow_dsn(given)
    assert dsn == expected
    # and it still names the same server, database and credentials (libpq reads it back)
    before, after = conninfo_to_dict(given), conninfo_to_dict(dsn)
    for key in ("host", "port", "user", "dbname"):
        assert after.get(key) == before.get(key)
    assert after.get("password") == (before.get("password") or None)


@pytest.mark.parametrize("given", [
    "host=a,b dbname=zap",
    "host=127.0.0.1 dbname=zap options='-c search_path=x'",
    "service=zapgate",
    "host=127.0.0.1 dbname=zap client_encoding=latin1",
    "this is not a dsn",
])
def test_whatsmeow_dsn_refuses_what_lib_pq_cannot_do(given: str) -> None:
    with pytest.raises(ValueError):
        whatsmeow_dsn(given)
