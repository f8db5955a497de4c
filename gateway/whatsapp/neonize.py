"""The real WhatsApp transport: WhatsApp multi-device through neonize 0.5.2 (whatsmeow in Go).

Threads. neonize's `NewClient.connect()` blocks its thread until the client is stopped, so every
`run` starts one dedicated `threading.Thread` (daemon, `neonize-<name>.<run>`) that calls it.
A dedicated thread rather than `trio.to_thread.run_sync(..., abandon_on_cancel=True)`: `run` must
be able to stop the client and *join* the thread within a bound, which an abandoned trio worker
thread does not allow (and trio's worker cache would keep the thread alive after the join).
neonize calls our callbacks on Go-owned threads; each callback translates the event with the pure
`translate_*` functions below and enters trio with `trio.from_thread.run(..., trio_token=...)`,
where it is an awaited send into the session's mailbox: a full mailbox blocks the callback thread,
and with it whatsmeow's event queue (backpressure, not loss). A callback never raises into Go and
never hangs once the transport stops: pending sends are cancelled, later ones are dropped, and
`trio.RunFinishedError`/`trio.Cancelled` (trio gone or stopping) are caught.

Stopping (`run` cancelled or ended). Commands stop being accepted, pending callback sends are
cancelled, in-flight commands get a moment to finish, then `client.stop()` cancels the Go side and
the thread is joined; all within `STOP_DEADLINE` seconds. One case cannot be helped: stopped while
QR codes are being shown, neonize's Go call stays blocked in whatsmeow's QR loop (whatsmeow ends
that loop on a *remote* disconnect or when its codes run out, and a local stop stops the codes
without ending it). `run` still returns in time; the thread is left behind (a daemon, kept with its
client so Go never calls freed callbacks, logged as a warning). So a session should let whatsmeow
time the QR codes out (it stops after 6, and `run` then raises "not scanned in time") rather than
stop the transport while a code is shown.

Device store. whatsmeow keeps devices in PostgreSQL, in the `whatsmeow_*` tables of the database
given as `database_url` (see `whatsmeow_dsn`). neonize picks the device like this: with `jid` it
loads that device (and *crashes the process* if the row does not exist, so `run` checks first and
reports `LoggedOut` instead); with `new_device=True` it pairs a new one; otherwise it resumes the
first device in the store, which is never what a multi-tenant gateway wants and is never used
here. After pairing, `device_jid` holds the device JID (`5511999990000:12@s.whatsapp.net`, with
the device number, as whatsmeow stores it); it is also what `Connected.jid` reports. The session
persists it and passes it back as `device_jid` so that a restart reconnects the same device.

Connection life. whatsmeow reconnects by itself after a dropped connection: `Disconnected` is
reported and `run` goes on (a later `Connected` says it is back). `run` returns after `LoggedOut`
(unlinked from the phone, banned, or `logout()`), and raises `TransportError` when the connection
fails in a way whatsmeow does not retry (network down at start, QR not scanned in time, stream
replaced by another client, client outdated); the session then retries with its own backoff.

Known limits of neonize 0.5.2 (not fixable here): its Go side keeps clients in unsynchronised maps,
so clients starting or stopping while others send are not strictly race-free in Go; whatsmeow's
history sync is not subscribed (old messages are not imported).
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import datetime as dt
import enum
import functools
import logging
import re
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import attrs
import outcome
import psycopg
import trio
from neonize import client as neonize_client
from neonize._binder import gocode
from neonize.builder import build_edit as _neonize_build_edit
from neonize.builder import build_revoke as _neonize_build_revoke
from neonize.client import ChatSettingsStore, ContactStore, NewClient
from neonize.exc import NeonizeError
from neonize.proto import Neonize_pb2 as nz
from neonize.proto.waCommon.WACommon_pb2 import MessageKey
from neonize.proto.waCompanionReg.WAWebProtobufsCompanionReg_pb2 import DeviceProps
from neonize.proto.waE2E import WAWebProtobufsE2E_pb2 as wa
from neonize.utils.enum import ChatPresence, ChatPresenceMedia, ClientName, MediaType, ReceiptType
from neonize.utils.enum import Presence as NeonizePresence
from psycopg.conninfo import conninfo_to_dict

from gateway.whatsapp.transport import (
    Ack,
    Command,
    Connected,
    DeleteForEveryone,
    Disconnected,
    EditMessage,
    Event,
    InboundMessage,
    LoggedOut,
    MediaRef,
    MessageKind,
    NotConnected,
    PairingCode,
    PairingTimeout,
    Presence,
    QrCode,
    Receipt,
    SendFailed,
    SendMedia,
    SendReaction,
    SendText,
    Sent,
    TransportError,
)

log = logging.getLogger("zapgate.whatsapp.neonize")

STOP_DEADLINE = 4.0  # seconds from "stop" to the client thread joined (run's cancellation stays under 5 s)
SETTLE_WAIT = 1.5  # at most this long, a stop waits for neonize to finish registering the client in Go
INFLIGHT_WAIT = 0.5  # at most this long, a stop waits for commands already inside a Go call
LOCAL_EVENTS = 8  # events raised by commands (PairingCode), forwarded by `run`; overflow is dropped
DSN_CONNECT_TIMEOUT = "10"  # seconds; added to the device-store DSN when it has none
DEVICE_OS = "zapgate"  # how the linked device is named on the phone

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


# ─── the device-store DSN ───────────────────────────────────────────────────────────────

_DSN_KEPT = ("sslcert", "sslkey", "sslrootcert", "application_name")
_DSN_DROPPED = frozenset({
    "keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count", "tcp_user_timeout",
    "gssencmode", "channel_binding", "target_session_attrs", "load_balance_hosts",
})
_SSLMODES = {None: "disable", "disable": "disable", "allow": "disable", "prefer": "disable",
             "require": "require", "verify-ca": "verify-ca", "verify-full": "verify-full"}


def whatsmeow_dsn(url: str) -> str:
    """The `postgres://…` URL whatsmeow (Go, lib/pq) needs for the database of `url`.

    `url` is anything psycopg accepts: a `postgres[ql]://` URL or a `key=value` conninfo string,
    including Unix-socket hosts (`host=/path`, as the embedded server uses), which become
    `postgres://user@/db?host=%2Fpath`. lib/pq speaks less than libpq, so: sslmode `prefer`/`allow`
    (and none, libpq's default `prefer`) become `disable`; `connect_timeout` defaults to
    `DSN_CONNECT_TIMEOUT`; client-side tuning knobs are dropped; no host means lib/pq's default
    (localhost over TCP). Raises ValueError for what cannot be expressed (several hosts, libpq-only
    parameters such as `options`, `passfile` or `service`).
    """
    try:
        params = conninfo_to_dict(url)
    except psycopg.Error as exc:
        raise ValueError(f"not a PostgreSQL connection string: {exc}") from None
    host = params.pop("hostaddr", None) or params.pop("host", None)
    params.pop("host", None)
    port = params.pop("port", None)
    user = params.pop("user", None)
    password = params.pop("password", None)
    dbname = params.pop("dbname", None)
    sslmode = params.pop("sslmode", None)
    connect_timeout = params.pop("connect_timeout", None) or DSN_CONNECT_TIMEOUT
    encoding = params.pop("client_encoding", None)
    if encoding is not None and encoding.replace("-", "").lower() != "utf8":
        raise ValueError(f"client_encoding={encoding} cannot be used: whatsmeow's driver speaks UTF8 only")
    if sslmode not in _SSLMODES:
        raise ValueError(f"sslmode={sslmode} is not supported by whatsmeow's driver")
    kept = {key: params.pop(key) for key in _DSN_KEPT if key in params}
    unknown = sorted(key for key in params if key not in _DSN_DROPPED)
    if unknown:
        raise ValueError(f"parameters not supported by whatsmeow's driver: {', '.join(unknown)}")
    if (host and "," in host) or (port and "," in str(port)):
        raise ValueError("several hosts are not supported by whatsmeow's driver")
    if host and host.startswith("@"):
        raise ValueError("abstract Unix sockets are not supported by whatsmeow's driver")

    auth = ""
    if user or password:
        auth = quote(user or "", safe="") + (":" + quote(password, safe="") if password else "") + "@"
    query: list[tuple[str, str]] = []
    if host and host.startswith("/"):
        netloc = auth
        query.append(("host", host))
        if port:
            query.append(("port", str(port)))
    else:
        netloc = auth + (f"[{host}]" if host and ":" in host else host or "")
        if port:
            netloc += f":{port}"
    query += [("sslmode", _SSLMODES[sslmode]), ("connect_timeout", str(connect_timeout)), *kept.items()]
    path = "/" + quote(dbname, safe="") if dbname else ""
    return f"postgres://{netloc}{path}?" + "&".join(f"{key}={quote(value, safe='')}" for key, value in query)


def device_exists(database_url: str, device_jid: str) -> bool:
    """Whether whatsmeow's store in `database_url` holds `device_jid` (blocking: run it on a thread)."""
    with psycopg.connect(database_url, autocommit=True, connect_timeout=int(DSN_CONNECT_TIMEOUT)) as conn:
        try:
            row = conn.execute("SELECT 1 FROM whatsmeow_device WHERE jid = %s", (device_jid,)).fetchone()
        except psycopg.errors.UndefinedTable:
            return False
    return row is not None


def forget_device(database_url: str, device_jid: str) -> None:
    """Delete a device and (by cascade) its keys from whatsmeow's store (blocking: run it on a thread)."""
    with psycopg.connect(database_url, autocommit=True, connect_timeout=int(DSN_CONNECT_TIMEOUT)) as conn:
        with contextlib.suppress(psycopg.errors.UndefinedTable):
            conn.execute("DELETE FROM whatsmeow_device WHERE jid = %s", (device_jid,))


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


_LOGIN_FAILURES = {"timeout": "the QR code was not scanned in time",
                   "err-client-outdated": "WhatsApp rejected the client version (client outdated)",
                   "err-scanned-without-multidevice": "the QR code was scanned by a phone without multi-device"}


def translate_login_status(status: str) -> ConnectionChange:
    """neonize's QR-loop status: "success" goes on; anything else ends the pairing attempt."""
    if status in ("", "code", "success"):
        return ConnectionChange()
    return ConnectionChange(ends=True, error=_LOGIN_FAILURES.get(status, f"pairing failed: {status}"))


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


_UPLOAD_TYPES = {MessageKind.IMAGE: MediaType.MediaImage, MessageKind.STICKER: MediaType.MediaImage,
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


# ─── the neonize client ─────────────────────────────────────────────────────────────────

class _DaemonThread(threading.Thread):
    """neonize's `connect()` makes the blocking Go call on a *non-daemon* thread of its own: one that
    never returns (a stop during the QR phase) would keep the process from exiting."""

    def __init__(self, *args: Any, daemon: bool | None = None, **kwargs: Any) -> None:
        super().__init__(*args, daemon=True, **kwargs)


class _Client(NewClient):
    """neonize's client, with our own Go-side id (neonize would use the phone number, shared by
    every run of one device) and its QR-loop status reported to us instead of printed."""

    def __init__(self, database: str, *, jid: nz.JID | None, uuid: str, new_device: bool,
                 props: DeviceProps, on_login_status: Callable[[str], None]) -> None:
        super().__init__(database, jid=jid, props=props, uuid=uuid, new_device=new_device)
        self._stop_finalizer.detach()
        self.uuid = uuid.encode()
        self.contact = ContactStore(self.uuid)
        self.chat_settings = ChatSettingsStore(self.uuid)
        self._stop_finalizer = weakref.finalize(self, NewClient._release_ffi, self.uuid, gocode)
        self._on_login_status = on_login_status
        neonize_client.Thread = _DaemonThread  # see _DaemonThread (idempotent)

    # neonize calls `self.__onLoginStatus` (name-mangled) from its QR loop; this overrides it.
    def _NewClient__onLoginStatus(self, uuid: int, status: int) -> None:
        try:
            self._on_login_status(ctypes.string_at(status).decode(errors="replace") if status else "")
        except Exception:
            log.exception("login status callback failed")


ClientFactory = Callable[..., Any]
"""`factory(database, *, jid, uuid, new_device, props, on_login_status)` → a neonize-like client (tests pass fakes)."""

_CONNECTION_EVENTS = (nz.PairStatus, nz.Connected, nz.KeepAliveTimeout, nz.KeepAliveRestored, nz.LoggedOut,
                      nz.StreamReplaced, nz.TemporaryBan, nz.ConnectFailure, nz.ClientOutdated, nz.Disconnected)
_LINGERING: set[tuple[Any, threading.Thread]] = set()  # clients whose Go call outlived their stop


def _keep_until_exit(client: Any, thread: threading.Thread) -> None:
    """Keep a client (and the ctypes callbacks Go still holds) alive until its thread exits."""
    for entry in list(_LINGERING):
        if not entry[1].is_alive():
            _LINGERING.discard(entry)
    _LINGERING.add((client, thread))


async def _in_thread(fn: Callable[[], Any], name: str) -> Any:
    """Run a blocking call on a fresh thread that exits right after (trio's worker cache would keep
    one around); if cancelled, the call is abandoned and finishes on its own."""
    token = trio.lowlevel.current_trio_token()
    done = trio.Event()
    box: list[outcome.Outcome[Any]] = []

    def target() -> None:
        box.append(outcome.capture(fn))
        with contextlib.suppress(trio.RunFinishedError):
            token.run_sync_soon(done.set)

    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    await done.wait()
    thread.join()
    return box[0].unwrap()


class _State(enum.Enum):
    STARTING = "starting"
    PAIRING = "pairing"  # a QR code is shown: the Go client exists and can pair by phone
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"  # whatsmeow is reconnecting
    CLOSED = "closed"


class _Connection:
    """One `run` of the transport: one neonize client, its thread, and the bridge into trio."""

    def __init__(self, transport: NeonizeTransport, events: trio.MemorySendChannel[Event], uuid: str) -> None:
        self.transport = transport
        self.events = events
        self.uuid = uuid
        self.token = trio.lowlevel.current_trio_token()
        self.state = _State.STARTING
        self.client: Any = None
        self.thread: threading.Thread | None = None
        self.me: nz.JID | None = None
        self.qr_index = 0
        self.closing = threading.Event()
        self.settled = threading.Event()  # neonize has registered the client in Go (or given up)
        self._calls = threading.Condition()
        self._inflight = 0
        self._scopes: set[trio.CancelScope] = set()
        self.local_send, self._local_recv = trio.open_memory_channel[Event](LOCAL_EVENTS)
        self.ended = trio.Event()
        self.ready = trio.Event()  # the Go client exists (a QR or connection event came), or the run ended
        self.outcome: ConnectionChange | None = None

    # ── from trio ──
    def finish(self, change: ConnectionChange) -> None:
        if self.outcome is None:
            self.outcome = change
            self.ended.set()
            self.ready.set()

    async def forward_local(self) -> None:
        async for event in self._local_recv:
            await self._send_event(event)

    async def _send_event(self, event: Event) -> None:
        if self.closing.is_set():
            return
        with trio.CancelScope() as scope:
            self._scopes.add(scope)
            try:
                await self.events.send(event)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self.finish(ConnectionChange(ends=True))  # nobody listens any more
            finally:
                self._scopes.discard(scope)

    def start(self, client: Any) -> None:
        self.client = client
        client.event.qr(self._on_qr)
        for event_type in _CONNECTION_EVENTS:
            client.event(event_type)(self._on_connection_event)
        client.event(nz.Message)(self._on_message)
        client.event(nz.Receipt)(self._on_receipt)
        self.thread = threading.Thread(target=self._thread_main, name=f"neonize-{self.uuid}", daemon=True)
        self.thread.start()

    async def shutdown(self) -> None:
        """Stop accepting, cancel pending deliveries, stop the client, join its thread (bounded)."""
        self.closing.set()
        self.state = _State.CLOSED
        self.ready.set()
        for scope in list(self._scopes):
            scope.cancel()
        self.local_send.close()
        if self.thread is None:
            return
        stopped = False
        with trio.move_on_after(STOP_DEADLINE + 0.5):
            stopped = await _in_thread(self._stop_and_join, name=f"neonize-stop-{self.uuid}")
        finalizer = getattr(self.client, "_stop_finalizer", None)
        if finalizer is not None:
            finalizer.detach()  # stopped explicitly; never again by the garbage collector
        if not stopped:
            _keep_until_exit(self.client, self.thread)
            log.warning("neonize client thread still running after stop (blocked in the QR loop); left behind",
                        extra={"fields": {"connection": self.uuid}})

    # ── on our stop thread ──
    def _stop_and_join(self) -> bool:
        assert self.thread is not None
        deadline = time.monotonic() + STOP_DEADLINE
        self.settled.wait(timeout=SETTLE_WAIT)
        with self._calls:
            self._calls.wait_for(lambda: self._inflight == 0, timeout=INFLIGHT_WAIT)
        while True:
            try:
                self.client.stop()
            except Exception:
                log.exception("neonize stop failed", extra={"fields": {"connection": self.uuid}})
            self.thread.join(timeout=max(0.0, min(0.25, deadline - time.monotonic())))
            if not self.thread.is_alive():
                return True
            if time.monotonic() >= deadline:
                return False

    # ── on worker threads (commands) ──
    def call(self, fn: Callable[[], Any], *states: _State) -> Any:
        """Run a Go call unless stopping: calling a stopped client dereferences nil in Go and kills the process."""
        with self._calls:
            if self.closing.is_set() or self.state not in states:
                raise NotConnected(f"WhatsApp connection is {self.state.value}")
            self._inflight += 1
        try:
            return fn()
        finally:
            with self._calls:
                self._inflight -= 1
                self._calls.notify_all()

    # ── on the client thread and Go's threads ──
    def _thread_main(self) -> None:
        error = None
        try:
            self.client.connect()
        except Exception as exc:
            error = f"cannot connect to WhatsApp: {exc or type(exc).__name__}"
        finally:
            self.settled.set()
        if not self.closing.is_set():
            self._finish_threadsafe(ConnectionChange(ends=True, error=error or "the WhatsApp client stopped"))

    def _deliver(self, event: Event) -> None:
        """Blocks while the mailbox is full; returns at once when stopping or when trio is gone."""
        if self.closing.is_set():
            return
        with contextlib.suppress(trio.RunFinishedError, trio.Cancelled):
            trio.from_thread.run(self._send_event, event, trio_token=self.token)

    def _finish_threadsafe(self, change: ConnectionChange) -> None:
        with contextlib.suppress(trio.RunFinishedError, trio.Cancelled):
            trio.from_thread.run_sync(self.finish, change, trio_token=self.token)

    def _mark_ready(self) -> None:
        self.settled.set()
        if not self.closing.is_set():
            with contextlib.suppress(trio.RunFinishedError, trio.Cancelled):
                trio.from_thread.run_sync(self.ready.set, trio_token=self.token)

    def _on_qr(self, client: Any, data: bytes) -> None:
        try:
            if self.state == _State.STARTING:
                self.state = _State.PAIRING
            self._mark_ready()
            self.qr_index += 1
            self._deliver(translate_qr(data, self.qr_index))
        except Exception:
            log.exception("QR callback failed", extra={"fields": {"connection": self.uuid}})

    def on_login_status(self, status: str) -> None:
        change = translate_login_status(status)
        if change.ends and not self.closing.is_set():
            self._finish_threadsafe(change)

    def _on_connection_event(self, client: Any, event: Any) -> None:
        try:
            if not self.ready.is_set():
                self._mark_ready()
            device = None
            if isinstance(event, nz.Connected | nz.KeepAliveRestored):
                device = client.get_me()
                self.me = device.JID if device.HasField("JID") else self.me
            change = translate_connection(event, device)
            if isinstance(change.event, Connected):
                self.state = _State.CONNECTED
                if change.event.jid:
                    self.transport._device_jid = change.event.jid
            elif isinstance(change.event, Disconnected):
                self.state = _State.DISCONNECTED
            elif isinstance(change.event, LoggedOut):
                self.state = _State.CLOSED
                if isinstance(event, nz.LoggedOut) or not change.event.banned:
                    self.transport._device_jid = None  # whatsmeow has deleted the device
            if change.event is not None:
                self._deliver(change.event)
            if change.ends and not self.closing.is_set():
                self._finish_threadsafe(change)
        except Exception:
            log.exception("connection event callback failed", extra={"fields": {"connection": self.uuid}})

    def _on_message(self, client: Any, event: nz.Message) -> None:
        try:
            self.settled.set()
            message = translate_message(event)
            if message is not None:
                self._deliver(message)
        except Exception:
            log.exception("message callback failed", extra={"fields": {"connection": self.uuid}})

    def _on_receipt(self, client: Any, event: nz.Receipt) -> None:
        try:
            receipt = translate_receipt(event)
            if receipt is not None:
                self._deliver(receipt)
        except Exception:
            log.exception("receipt callback failed", extra={"fields": {"connection": self.uuid}})


# ─── the transport ──────────────────────────────────────────────────────────────────────

class NeonizeTransport:
    """One WhatsApp connection through neonize (see the module docstring).

    `name` identifies the connection in logs and in neonize's Go registry (unique per process, e.g.
    the connection id); `database_url` is the PostgreSQL database that holds whatsmeow's device
    store (any form psycopg accepts); `device_jid` is the device to reconnect (None: pair a new one
    with QR codes or `request_pairing_code`).
    """

    def __init__(self, name: str, database_url: str, *, device_jid: str | None = None,
                 client_factory: ClientFactory | None = None) -> None:
        if device_jid is not None:
            parse_jid(device_jid)  # fail early on garbage
        self.name = name
        self._database_url = database_url
        self._device_jid = device_jid
        self._factory: ClientFactory = client_factory or _Client
        self._conn: _Connection | None = None
        self._runs = 0

    @property
    def device_jid(self) -> str | None:
        """The device this transport connects as: set after pairing, cleared when logged out."""
        return self._device_jid

    async def run(self, events: trio.MemorySendChannel[Event], *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        if self._conn is not None:
            raise RuntimeError(f"transport {self.name} is already running")
        try:
            dsn = whatsmeow_dsn(self._database_url)
        except ValueError as exc:
            raise TransportError(f"the database cannot hold the WhatsApp device store: {exc}") from None
        self._runs += 1
        conn = _Connection(self, events, uuid=f"{self.name}.{self._runs}")
        self._conn = conn
        task_status.started()
        try:
            change = await self._connect(conn, dsn)
        finally:
            self._conn = None
            with trio.CancelScope(shield=True):
                await conn.shutdown()
        if change.event is not None:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await events.send(change.event)
        if change.error is not None:
            if change.error == _LOGIN_FAILURES["timeout"]:
                raise PairingTimeout(change.error)
            raise TransportError(change.error)

    async def _connect(self, conn: _Connection, dsn: str) -> ConnectionChange:
        jid = None
        if self._device_jid is not None:
            try:
                known = await _in_thread(functools.partial(device_exists, self._database_url, self._device_jid),
                                         name=f"neonize-check-{conn.uuid}")
            except psycopg.Error as exc:
                raise TransportError(f"cannot read the WhatsApp device store: {exc}") from None
            if not known:
                gone, self._device_jid = self._device_jid, None
                return ConnectionChange(LoggedOut(f"device {gone} is no longer in the device store"), ends=True)
            jid = parse_jid(self._device_jid)
        client = self._factory(dsn, jid=jid, uuid=conn.uuid, new_device=jid is None,
                               props=DeviceProps(os=DEVICE_OS, platformType=DeviceProps.CHROME),
                               on_login_status=conn.on_login_status)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(conn.forward_local)
            conn.start(client)
            await conn.ended.wait()
            nursery.cancel_scope.cancel()
        assert conn.outcome is not None
        return conn.outcome

    # ── commands ──
    def _current(self) -> _Connection:
        if self._conn is None:
            raise NotConnected("WhatsApp connection is not running")
        return self._conn

    async def _call(self, fn: Callable[[], Any], *states: _State) -> Any:
        conn = self._current()
        return await trio.to_thread.run_sync(conn.call, fn, *(states or (_State.CONNECTED,)))

    async def send(self, command: Command) -> Sent:
        conn = self._current()
        response = await self._call(functools.partial(self._send_sync, conn, command))
        return Sent(id=response.ID, timestamp=to_datetime(response.Timestamp))

    @staticmethod
    def _send_sync(conn: _Connection, command: Command) -> nz.SendResponse:
        try:
            match command:
                case SendText():
                    message = build_text(command)
                case SendMedia():
                    kind = _UPLOAD_TYPES.get(command.kind)
                    if kind is None:
                        raise SendFailed(f"cannot send media of kind {command.kind}")
                    message = build_media(command, conn.client.upload(command.data, kind))
                case SendReaction():
                    message = build_reaction(command)
                case EditMessage():
                    message = build_edit(command)
                case DeleteForEveryone():
                    if conn.me is None:
                        raise SendFailed("own JID unknown")
                    message = build_revoke(command, conn.me)
                case _:
                    raise SendFailed(f"unknown command {type(command).__name__}")
            return conn.client.send_message(parse_jid(command.to), message)
        except (NeonizeError, ValueError) as exc:
            raise SendFailed(str(exc) or type(exc).__name__) from None

    async def download(self, media: MediaRef) -> bytes:
        try:
            message = wa.Message.FromString(base64.b64decode(media.key, validate=True))
        except Exception:
            raise SendFailed("not a media reference of this transport") from None
        conn = self._current()
        try:
            return await self._call(functools.partial(conn.client.download_any, message))
        except NeonizeError as exc:
            raise SendFailed(f"download failed: {exc}") from None

    async def mark_read(self, chat: str, ids: tuple[str, ...], sender: str | None = None) -> None:
        conn = self._current()
        try:
            call = functools.partial(conn.client.mark_read, *ids, chat=parse_jid(chat),
                                     sender=parse_jid(sender or chat), receipt=ReceiptType.READ)
        except ValueError as exc:
            raise SendFailed(str(exc)) from None
        try:
            await self._call(call)
        except NeonizeError as exc:
            raise SendFailed(f"mark read failed: {exc}") from None

    async def set_presence(self, chat: str, presence: Presence) -> None:
        conn = self._current()
        client = conn.client
        match presence:
            case Presence.AVAILABLE | Presence.UNAVAILABLE:
                value = NeonizePresence.AVAILABLE if presence == Presence.AVAILABLE else NeonizePresence.UNAVAILABLE
                call = functools.partial(client.send_presence, value)
            case _:
                state = ChatPresence.CHAT_PRESENCE_PAUSED if presence == Presence.PAUSED else \
                    ChatPresence.CHAT_PRESENCE_COMPOSING
                media = ChatPresenceMedia.CHAT_PRESENCE_MEDIA_AUDIO if presence == Presence.RECORDING else \
                    ChatPresenceMedia.CHAT_PRESENCE_MEDIA_TEXT
                try:
                    call = functools.partial(client.send_chat_presence, parse_jid(chat), state, media)
                except ValueError as exc:
                    raise SendFailed(str(exc)) from None
        try:
            await self._call(call)
        except NeonizeError as exc:
            raise SendFailed(f"presence failed: {exc}") from None

    async def request_pairing_code(self, phone: str) -> str:
        """Pair by phone number instead of QR; waits for the pairing phase (the first QR code)."""
        digits = re.sub(r"\D", "", phone)
        if not digits:
            raise SendFailed(f"not a phone number: {phone!r}")
        conn = self._current()
        await conn.ready.wait()  # until the first QR code: before it, the Go client may not exist yet
        try:
            code = await self._call(functools.partial(conn.client.PairPhone, digits, True, ClientName.LINUX),
                                    _State.PAIRING)
        except NeonizeError as exc:
            raise SendFailed(f"pairing by phone failed: {exc}") from None
        with contextlib.suppress(trio.WouldBlock, trio.ClosedResourceError):
            conn.local_send.send_nowait(PairingCode(code))
        return code

    async def logout(self) -> None:
        conn = self._conn
        if conn is not None and conn.state == _State.CONNECTED:
            try:
                await self._call(conn.client.logout)
            except NeonizeError as exc:
                raise SendFailed(f"logout failed: {exc}") from None
        elif self._device_jid is not None:
            try:  # not connected: unlink locally (the phone drops the device once it notices)
                await trio.to_thread.run_sync(forget_device, self._database_url, self._device_jid)
            except psycopg.Error as exc:
                raise TransportError(f"cannot clear the WhatsApp device store: {exc}") from None
        self._device_jid = None
        if conn is not None:
            conn.finish(ConnectionChange(LoggedOut("logged out"), ends=True))
