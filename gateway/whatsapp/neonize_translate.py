"""Pure translation between neonize 0.5.2 (whatsmeow's protobufs) and our transport's events and commands.

No I/O, no threads, no Go calls: JIDs to and from text, neonize events (messages, receipts, QR codes,
connection and login changes) into our `Event`s, and our `Command`s into WhatsApp `Message`s (media
only once uploaded: the upload itself is the transport's, see `UPLOAD_TYPES`). `gateway.whatsapp.neonize`
calls these from neonize's callback threads and its command workers.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
import time
from typing import Any

import attrs
from neonize.builder import build_edit as _neonize_build_edit
from neonize.builder import build_revoke as _neonize_build_revoke
from neonize.proto import Neonize_pb2 as nz
from neonize.proto.waCommon.WACommon_pb2 import MessageKey
from neonize.proto.waE2E import WAWebProtobufsE2E_pb2 as wa
from neonize.utils.enum import MediaType

from gateway.whatsapp.transport import (
    Ack,
    Connected,
    DeleteForEveryone,
    Disconnected,
    EditMessage,
    Event,
    InboundMessage,
    LoggedOut,
    MediaRef,
    MessageKind,
    QrCode,
    Receipt,
    SendMedia,
    SendReaction,
    SendText,
)

USER_SERVER = "s.whatsapp.net"
LID_SERVER = "lid"
GROUP_SERVER = "g.us"
_IGNORED_CHATS = ("status@broadcast",)
_IGNORED_SERVERS = ("newsletter", "broadcast")


# ─── JIDs ───────────────────────────────────────────────────────────────────────────────

def jid_str(jid: nz.JID, *, device: bool = False) -> str | None:
    """`user@server` (or `user[.agent]:device@server` with `device=True`); None for an empty JID."""
    if not jid.User and not jid.Server:
        return None
    if not jid.User:
        return jid.Server
    if device and jid.RawAgent:
        return f"{jid.User}.{jid.RawAgent}:{jid.Device}@{jid.Server}"
    if device and jid.Device:
        return f"{jid.User}:{jid.Device}@{jid.Server}"
    return f"{jid.User}@{jid.Server}"


_JID_RE = re.compile(r"^(?P<user>[^@:.]*)(?:\.(?P<agent>\d+))?(?::(?P<device>\d+))?@(?P<server>[a-z.]+)$")


def parse_jid(text: str) -> nz.JID:
    """A neonize JID from `user[.agent][:device]@server`; bare digits (a phone number) mean `@s.whatsapp.net`."""
    text = text.strip()
    if "@" not in text:
        digits = re.sub(r"\D", "", text)
        if not digits:
            raise ValueError(f"not a WhatsApp JID or phone number: {text!r}")
        text = f"{digits}@{USER_SERVER}"
    match = _JID_RE.match(text)
    if match is None or not match["user"]:
        raise ValueError(f"not a WhatsApp JID: {text!r}")
    return nz.JID(
        User=match["user"], RawAgent=int(match["agent"] or 0), Device=int(match["device"] or 0),
        Integrator=0, Server=match["server"], IsEmpty=False,
    )


def user_jid(jid: str) -> str:
    """The account JID of a device JID: `5511999990000:12@s.whatsapp.net` → `5511999990000@s.whatsapp.net`."""
    return jid_str(parse_jid(jid)) or jid



# ─── translation: neonize events → our events (pure) ────────────────────────────────────

def to_datetime(value: int) -> dt.datetime:
    """An aware UTC datetime from a Unix timestamp in s, ms, µs or ns (neonize's units vary by field and release)."""
    if value <= 0:
        return dt.datetime.now(dt.UTC)
    for limit, scale in ((10**17, 10**9), (10**14, 10**6), (10**11, 10**3)):
        if value >= limit:
            return dt.datetime.fromtimestamp(value / scale, dt.UTC)
    return dt.datetime.fromtimestamp(value, dt.UTC)


_WRAPPERS = ("deviceSentMessage", "ephemeralMessage", "viewOnceMessage", "viewOnceMessageV2",
             "viewOnceMessageV2Extension", "documentWithCaptionMessage", "lottieStickerMessage",
             "editedMessage", "groupMentionedMessage", "botInvokeMessage")
_MEDIA = {"imageMessage": MessageKind.IMAGE, "videoMessage": MessageKind.VIDEO, "ptvMessage": MessageKind.VIDEO,
          "audioMessage": MessageKind.AUDIO, "documentMessage": MessageKind.DOCUMENT,
          "stickerMessage": MessageKind.STICKER}
_NOT_CONTENT = frozenset({
    "messageContextInfo", "senderKeyDistributionMessage", "fastRatchetKeySenderKeyDistributionMessage",
    "protocolMessage", "pollUpdateMessage", "encReactionMessage", "keepInChatMessage", "pinInChatMessage",
    "encCommentMessage", "encEventResponseMessage", "secretEncryptedMessage", "placeholderMessage",
    "groupRootKeyShare", "rootSecretDistributeMessage", "messageHistoryNotice", "messageHistoryBundle",
    "stickerSyncRmrMessage", "call",
})


def unwrap_message(message: wa.Message) -> wa.Message:
    """The content inside ephemeral / view-once / edited / device-sent wrappers (whatsmeow mostly unwraps them)."""
    for _ in range(8):
        for name in _WRAPPERS:
            if message.HasField(name) and getattr(message, name).HasField("message"):
                message = getattr(message, name).message
                break
        else:
            return message
    return message


def _text_of(message: wa.Message) -> str:
    if message.HasField("conversation"):
        return message.conversation
    if message.HasField("extendedTextMessage"):
        return message.extendedTextMessage.text
    for name in ("imageMessage", "videoMessage", "documentMessage"):
        if message.HasField(name):
            return getattr(message, name).caption
    return ""


def media_key(field: str, media: Any) -> str:
    """The `MediaRef.key` of a media submessage: a serialized `Message` holding only it (what `download_any` takes)."""
    copy = type(media)()
    copy.CopyFrom(media)
    for heavy in ("contextInfo", "JPEGThumbnail"):
        if heavy in copy.DESCRIPTOR.fields_by_name:
            copy.ClearField(heavy)
    holder = wa.Message()
    getattr(holder, field).CopyFrom(copy)
    return base64.b64encode(holder.SerializeToString()).decode()


def translate_message(event: nz.Message) -> InboundMessage | None:
    """Our InboundMessage for a neonize message event; None for what is not a chat message
    (protocol messages other than edit/revoke, key distributions, status broadcasts, newsletters)."""
    info = event.Info
    source = info.MessageSource
    chat = jid_str(source.Chat)
    if not chat or chat in _IGNORED_CHATS or source.Chat.Server in _IGNORED_SERVERS:
        return None
    message = unwrap_message(event.Message)
    sender_jid, alt = source.Sender, source.SenderAlt
    sender = jid_str(sender_jid) or chat
    alt_str = jid_str(alt)
    is_group = source.IsGroup or source.Chat.Server == GROUP_SERVER
    fields: dict[str, Any] = {}
    context = None

    if message.HasField("protocolMessage"):
        protocol = message.protocolMessage
        if protocol.type == wa.ProtocolMessage.REVOKE:
            fields = {"kind": MessageKind.REVOKE, "target_id": protocol.key.ID}
        elif protocol.type == wa.ProtocolMessage.MESSAGE_EDIT:
            edited = unwrap_message(protocol.editedMessage)
            fields = {"kind": MessageKind.EDIT, "target_id": protocol.key.ID, "body": _text_of(edited)}
        else:
            return None
    elif message.HasField("reactionMessage"):
        reaction = message.reactionMessage
        fields = {"kind": MessageKind.REACTION, "target_id": reaction.key.ID, "reaction": reaction.text,
                  "body": reaction.text}
    elif message.HasField("conversation"):
        fields = {"kind": MessageKind.TEXT, "body": message.conversation}
    elif message.HasField("extendedTextMessage"):
        context = message.extendedTextMessage.contextInfo
        fields = {"kind": MessageKind.TEXT, "body": message.extendedTextMessage.text}
    elif media_field := next((name for name in _MEDIA if message.HasField(name)), None):
        media = getattr(message, media_field)
        kind = _MEDIA[media_field]
        if media_field == "audioMessage" and media.PTT:
            kind = MessageKind.VOICE
        filename = (media.fileName or media.title or None) if media_field == "documentMessage" else None
        body = media.caption if "caption" in media.DESCRIPTOR.fields_by_name else ""
        context = media.contextInfo
        fields = {"kind": kind, "body": body or (filename or ""),
                  "media": MediaRef(kind=kind, mimetype=media.mimetype, filename=filename,
                                    size=media.fileLength or None, key=media_key(media_field, media))}
    elif message.HasField("locationMessage") or message.HasField("liveLocationMessage"):
        location = message.locationMessage if message.HasField("locationMessage") else message.liveLocationMessage
        label = (message.locationMessage.name or message.locationMessage.address
                 if message.HasField("locationMessage") else message.liveLocationMessage.caption)
        context = location.contextInfo
        fields = {"kind": MessageKind.LOCATION, "body": label, "latitude": location.degreesLatitude,
                  "longitude": location.degreesLongitude}
    elif message.HasField("contactMessage"):
        context = message.contactMessage.contextInfo
        fields = {"kind": MessageKind.CONTACT, "body": message.contactMessage.displayName,
                  "vcard": message.contactMessage.vcard}
    elif message.HasField("contactsArrayMessage"):
        cards = message.contactsArrayMessage.contacts
        context = message.contactsArrayMessage.contextInfo
        fields = {"kind": MessageKind.CONTACT,
                  "body": message.contactsArrayMessage.displayName or ", ".join(c.displayName for c in cards),
                  "vcard": "\n".join(c.vcard for c in cards)}
    elif message.HasField("buttonsResponseMessage"):
        fields = {"kind": MessageKind.TEXT, "body": message.buttonsResponseMessage.selectedDisplayText}
    elif message.HasField("listResponseMessage"):
        fields = {"kind": MessageKind.TEXT, "body": message.listResponseMessage.title}
    elif message.HasField("templateButtonReplyMessage"):
        fields = {"kind": MessageKind.TEXT, "body": message.templateButtonReplyMessage.selectedDisplayText}
    elif any(field.name not in _NOT_CONTENT for field, _ in message.ListFields()):
        fields = {"kind": MessageKind.UNKNOWN}
    else:
        return None

    sender_lid = sender if sender_jid.Server == LID_SERVER else (alt_str if alt.Server == LID_SERVER else None)
    sender_phone = sender if sender_jid.Server == USER_SERVER else (alt_str if alt.Server == USER_SERVER else None)
    return InboundMessage(
        id=info.ID, chat=chat, sender=sender, timestamp=to_datetime(info.Timestamp), from_me=source.IsFromMe,
        quoted_id=(context.stanzaID or None) if context is not None else None, push_name=info.Pushname,
        sender_lid=sender_lid, sender_phone=sender_phone, is_group=is_group,
        participant=sender if is_group else None, **fields,
    )


_RECEIPT_ACKS = {nz.Receipt.DELIVERED: Ack.DELIVERED, nz.Receipt.READ: Ack.READ, nz.Receipt.PLAYED: Ack.PLAYED}


def translate_receipt(event: nz.Receipt) -> Receipt | None:
    """Delivered / read / played receipts for messages in a chat; None for the others (retry,
    self receipts, and SERVER_ERROR, which neonize 0.5.2 also uses for whatsmeow's played-self)."""
    ack = _RECEIPT_ACKS.get(event.Type)
    chat = jid_str(event.MessageSource.Chat)
    if ack is None or not chat or not event.MessageIDs:
        return None
    return Receipt(chat=chat, ids=tuple(event.MessageIDs), ack=ack, timestamp=to_datetime(event.Timestamp))


def translate_qr(code: bytes | str, index: int) -> QrCode:
    return QrCode(code=code.decode() if isinstance(code, bytes) else code, index=index)


@attrs.frozen
class ConnectionChange:
    """What a connection event means: the event to report, and whether `run` ends (`error` set: it raises)."""

    event: Event | None = None
    ends: bool = False
    error: str | None = None


_LOGGED_OUT_REASONS = frozenset({nz.LOGGED_OUT, nz.MAIN_DEVICE_GONE, nz.UNKNOWN_LOGOUT})
_RETRIED_REASONS = frozenset({nz.SERVICE_UNAVAILABLE, nz.INTERNAL_SERVER_ERROR})


def _reason_name(value: int) -> str:
    try:
        return nz.ConnectFailureReason.Name(value).lower().replace("_", " ")
    except ValueError:
        return f"reason {value}"


def translate_connection(event: Any, device: nz.Device | None = None) -> ConnectionChange:
    """Connection events. `device` is the client's own device (`client.get_me()`), for `Connected`."""
    if isinstance(event, nz.PairStatus):
        if event.Status == nz.PairStatus.SUCCESS:
            return ConnectionChange(Connected(jid=jid_str(event.ID, device=True) or "", push_name=""))
        return ConnectionChange()  # a failed pairing ends the QR loop, reported by the login status
    if isinstance(event, nz.Connected):
        jid = jid_str(device.JID, device=True) if device is not None and device.HasField("JID") else None
        return ConnectionChange(Connected(jid=jid or "", push_name=device.PushName if device else ""))
    if isinstance(event, nz.KeepAliveRestored):
        jid = jid_str(device.JID, device=True) if device is not None and device.HasField("JID") else None
        return ConnectionChange(Connected(jid=jid or "", push_name=device.PushName if device else ""))
    if isinstance(event, nz.Disconnected):
        return ConnectionChange(Disconnected("connection to WhatsApp lost"))
    if isinstance(event, nz.KeepAliveTimeout):
        return ConnectionChange(Disconnected(f"WhatsApp stopped answering keepalives ({event.ErrorCount} missed)"))
    if isinstance(event, nz.StreamReplaced):
        reason = "another client connected with this device (stream replaced)"
        return ConnectionChange(Disconnected(reason), ends=True, error=reason)
    if isinstance(event, nz.ClientOutdated):
        reason = "WhatsApp rejected the client version (client outdated)"
        return ConnectionChange(Disconnected(reason), ends=True, error=reason)
    if isinstance(event, nz.LoggedOut):
        banned = event.Reason == nz.TEMP_BANNED
        return ConnectionChange(LoggedOut(f"logged out: {_reason_name(event.Reason)}", banned=banned), ends=True)
    if isinstance(event, nz.TemporaryBan):
        try:
            code = nz.TemporaryBan.TempBanReason.Name(event.Code).lower().replace("_", " ")
        except ValueError:
            code = f"code {event.Code}"
        reason = f"temporarily banned: {code}, expires in {event.Expire} s"
        return ConnectionChange(LoggedOut(reason, banned=True), ends=True)
    if isinstance(event, nz.ConnectFailure):
        reason = f"connect failure: {_reason_name(event.Reason)}" + (f" ({event.Message})" if event.Message else "")
        if event.Reason == nz.TEMP_BANNED or "ban" in event.Message.lower():
            return ConnectionChange(LoggedOut(reason, banned=True), ends=True)
        if event.Reason in _LOGGED_OUT_REASONS:
            return ConnectionChange(LoggedOut(reason), ends=True)
        if event.Reason in _RETRIED_REASONS:
            return ConnectionChange(Disconnected(reason))
        return ConnectionChange(Disconnected(reason), ends=True, error=reason)
    return ConnectionChange()


LOGIN_FAILURES = {"timeout": "the QR code was not scanned in time",
                   "err-client-outdated": "WhatsApp rejected the client version (client outdated)",
                   "err-scanned-without-multidevice": "the QR code was scanned by a phone without multi-device"}


def translate_login_status(status: str) -> ConnectionChange:
    """neonize's QR-loop status: "success" goes on; anything else ends the pairing attempt."""
    if status in ("", "code", "success"):
        return ConnectionChange()
    return ConnectionChange(ends=True, error=LOGIN_FAILURES.get(status, f"pairing failed: {status}"))


# ─── commands → WhatsApp messages (pure, except media upload) ───────────────────────────

def _context(chat: nz.JID, quoted_id: str | None) -> wa.ContextInfo | None:
    """A reply's context. The quoted message's sender is not in our commands: in a private chat it
    is taken to be the contact (replying to the customer); in a group it is left out."""
    if not quoted_id:
        return None
    context = wa.ContextInfo(stanzaID=quoted_id)
    if chat.Server != GROUP_SERVER:
        context.participant = jid_str(chat) or ""
    return context


def build_text(command: SendText) -> wa.Message:
    context = _context(parse_jid(command.to), command.quoted_id)
    if context is None:
        return wa.Message(conversation=command.body)
    return wa.Message(extendedTextMessage=wa.ExtendedTextMessage(text=command.body, contextInfo=context))


def build_reaction(command: SendReaction, *, now_ms: int | None = None) -> wa.Message:
    chat = parse_jid(command.to)
    key = MessageKey(remoteJID=jid_str(chat), fromMe=command.target_from_me, ID=command.target_id)
    stamp = int(time.time() * 1000) if now_ms is None else now_ms
    return wa.Message(reactionMessage=wa.ReactionMessage(key=key, text=command.emoji, senderTimestampMS=stamp))


def build_edit(command: EditMessage) -> wa.Message:
    return _neonize_build_edit(parse_jid(command.to), command.target_id, wa.Message(conversation=command.body))


def build_revoke(command: DeleteForEveryone, me: nz.JID) -> wa.Message:
    """Deletes one of our own messages for everyone."""
    return _neonize_build_revoke(parse_jid(command.to), me, command.target_id, me)


UPLOAD_TYPES = {MessageKind.IMAGE: MediaType.MediaImage, MessageKind.STICKER: MediaType.MediaImage,
                 MessageKind.VIDEO: MediaType.MediaVideo, MessageKind.AUDIO: MediaType.MediaAudio,
                 MessageKind.VOICE: MediaType.MediaAudio, MessageKind.DOCUMENT: MediaType.MediaDocument}
_DEFAULT_MIMETYPES = {MessageKind.VOICE: "audio/ogg; codecs=opus", MessageKind.STICKER: "image/webp"}


def build_media(command: SendMedia, upload: nz.UploadResponse) -> wa.Message:
    """The message for uploaded media (no ffmpeg: no thumbnails or durations, WhatsApp copes)."""
    mimetype = command.mimetype
    if mimetype == "application/octet-stream":
        mimetype = _DEFAULT_MIMETYPES.get(command.kind, mimetype)
    common = {"URL": upload.url, "directPath": upload.DirectPath, "mediaKey": upload.MediaKey,
              "fileEncSHA256": upload.FileEncSHA256, "fileSHA256": upload.FileSHA256,
              "fileLength": upload.FileLength, "mimetype": mimetype}
    context = _context(parse_jid(command.to), command.quoted_id)
    if context is not None:
        common["contextInfo"] = context
    caption = {"caption": command.caption} if command.caption else {}
    match command.kind:
        case MessageKind.IMAGE:
            return wa.Message(imageMessage=wa.ImageMessage(**common, **caption))
        case MessageKind.VIDEO:
            return wa.Message(videoMessage=wa.VideoMessage(**common, **caption))
        case MessageKind.AUDIO | MessageKind.VOICE:
            return wa.Message(audioMessage=wa.AudioMessage(**common, PTT=command.kind == MessageKind.VOICE))
        case MessageKind.STICKER:
            return wa.Message(stickerMessage=wa.StickerMessage(**common))
        case MessageKind.DOCUMENT:
            name = command.filename or "file"
            return wa.Message(documentMessage=wa.DocumentMessage(**common, **caption, fileName=name, title=name))
    raise ValueError(f"cannot send media of kind {command.kind}")

