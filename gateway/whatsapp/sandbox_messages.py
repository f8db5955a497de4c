"""The sandbox's messages as WhatsApp makes them, and `build_inbound`: a contact's message from a control call.

Phone numbers become WhatsApp user parts (`phone_digits`), LIDs and group ids are checked and
normalised into JIDs, timestamps are aware UTC with whole seconds (`_now`, WhatsApp's clock), media
get WhatsApp's kinds and default mimetypes. A bad argument raises `SandboxError` (``ERR_SANDBOX_BAD_…``).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
from collections.abc import Callable
from typing import Any

from gateway.whatsapp.sandbox_parts import NetworkParts
from gateway.whatsapp.sandbox_state import SandboxError, _Line
from gateway.whatsapp.transport import InboundMessage, MediaRef, MessageKind

MEDIA_MAX_BYTES_EACH = 100 * 1024 * 1024

_MEDIA_KINDS: dict[str, MessageKind] = {
    "image": MessageKind.IMAGE,
    "video": MessageKind.VIDEO,
    "audio": MessageKind.AUDIO,
    "ptt": MessageKind.VOICE,
    "document": MessageKind.DOCUMENT,
    "sticker": MessageKind.STICKER,
}
_DEFAULT_MIMETYPES: dict[MessageKind, str] = {
    MessageKind.IMAGE: "image/jpeg",
    MessageKind.VIDEO: "video/mp4",
    MessageKind.AUDIO: "audio/mpeg",
    MessageKind.VOICE: "audio/ogg; codecs=opus",
    MessageKind.DOCUMENT: "application/pdf",
    MessageKind.STICKER: "image/webp",
}

_PHONE_CHARS = re.compile(r"[0-9\s+\-().]+")
_USER_JID = re.compile(r"([0-9]+)(?::[0-9]+)?@(s\.whatsapp\.net|c\.us|lid)")
_GROUP_ID = re.compile(r"([0-9]+(?:-[0-9]+)?)(?:@g\.us)?")
MESSAGE_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")  # what the network accepts as a message id


def _now() -> dt.datetime:
    """WhatsApp's clock: aware UTC, whole seconds."""
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def phone_digits(value: str) -> str | None:
    """A phone number as WhatsApp's user part ("+55 (11) 99999-0000" → "5511999990000"), or None.

    Accepts a formatted number or a user JID (``@s.whatsapp.net``, or the legacy ``@c.us``)."""
    text = value.strip()
    match = _USER_JID.fullmatch(text)
    if match:
        digits = match.group(1) if match.group(2) != "lid" else ""
    elif _PHONE_CHARS.fullmatch(text):
        digits = re.sub(r"\D", "", text)
    else:
        digits = ""
    return digits if 7 <= len(digits) <= 15 else None


def _lid_jid(value: str) -> str | None:
    """"123456789@lid" or "123456789" → "123456789@lid"; None if it is not a LID."""
    text = value.strip()
    match = _USER_JID.fullmatch(text)
    if match:
        return f"{match.group(1)}@lid" if match.group(2) == "lid" else None
    return f"{text}@lid" if text.isdigit() and 1 <= len(text) <= 20 else None


def build_inbound(network: NetworkParts, line: _Line, *, sender: str, name: str | None, lid: str | None,
                  id: str | None, body: str, media: dict[str, Any] | None, quoted_id: str | None,
                  timestamp: dt.datetime | None, group: dict[str, Any] | None,
                  reaction: dict[str, Any] | None, edit: dict[str, Any] | None,
                  revoke: dict[str, Any] | None, location: dict[str, Any] | None,
                  vcard: str | None, settle: Callable[[], None] | None = None) -> InboundMessage:
    """The message a contact's phone sends, as `SandboxNetwork.inbound` describes it (see its parameters),
    carrying `settle`.

    Learns the sender's LID (or makes one up) in the network's registry; SandboxError when an argument is bad."""
    if not isinstance(sender, str):
        raise SandboxError("ERR_SANDBOX_BAD_SENDER", "sender must be a phone number or a LID")
    for field, value in (("body", body), ("name", name), ("quoted_id", quoted_id), ("vcard", vcard)):
        if value is not None and not isinstance(value, str):
            raise SandboxError("ERR_SANDBOX_BAD_MESSAGE", f"{field} must be a string")
    # who writes
    phone = phone_digits(sender)
    if phone is not None:
        sender_jid = f"{phone}@s.whatsapp.net"
        if lid is not None:
            sender_lid = _lid_jid(lid)
            if sender_lid is None:
                raise SandboxError("ERR_SANDBOX_BAD_SENDER", f"not a LID: {lid!r}")
            network._link_lid(phone, sender_lid)
        else:
            sender_lid = network._lid_of(phone)
    else:
        sender_lid = _lid_jid(sender) if "@" in sender else None
        if sender_lid is None:
            raise SandboxError("ERR_SANDBOX_BAD_SENDER",
                               f"sender must be a phone number (7-15 digits) or an '@lid' id, not {sender!r}")
        sender_jid = sender_lid
        phone = network._phones.get(sender_lid)
    # where
    if group is not None:
        group_id = group.get("id") if isinstance(group, dict) else None
        match = _GROUP_ID.fullmatch(group_id.strip()) if isinstance(group_id, str) else None
        if match is None:
            raise SandboxError("ERR_SANDBOX_BAD_GROUP", "group.id must be a group JID ('…@g.us') or its digits")
        group_name = str(group.get("name") or "") or None
        chat = f"{match.group(1)}@g.us"
        participant: str | None = sender_jid
    else:
        chat, participant, group_name = sender_jid, None, None
    # when, which id
    if timestamp is None:
        when = _now()
    elif not isinstance(timestamp, dt.datetime) or timestamp.tzinfo is None:
        raise SandboxError("ERR_SANDBOX_BAD_TIMESTAMP", "timestamp must be an aware datetime")
    else:
        when = timestamp.astimezone(dt.UTC).replace(microsecond=0)
    if id is None:
        message_id = network._new_id(ours=False)
    elif isinstance(id, str) and MESSAGE_ID.fullmatch(id):
        message_id = id
    else:
        raise SandboxError("ERR_SANDBOX_BAD_ID", "id must be 1-128 letters, digits or ._:-")
    # what
    fields: dict[str, Any] = {"kind": MessageKind.TEXT, "body": body or ""}
    given = [k for k, v in (("media", media), ("reaction", reaction), ("edit", edit), ("revoke", revoke),
                            ("location", location), ("vcard", vcard)) if v is not None]
    if len(given) > 1:
        raise SandboxError("ERR_SANDBOX_BAD_MESSAGE", f"a message has one of media/reaction/edit/revoke/"
                           f"location/vcard, not {' and '.join(given)}")
    if media is not None:
        fields.update(_inbound_media(network, line, media, body))
    elif reaction is not None:
        emoji = reaction.get("emoji", "") if isinstance(reaction, dict) else None
        if not isinstance(emoji, str):
            raise SandboxError("ERR_SANDBOX_BAD_MESSAGE", "reaction.emoji must be a string ('' removes it)")
        fields.update(kind=MessageKind.REACTION, body="", target_id=_target(reaction, "reaction"), reaction=emoji)
    elif edit is not None:
        new_body = edit.get("body") if isinstance(edit, dict) else None
        if not isinstance(new_body, str):
            raise SandboxError("ERR_SANDBOX_BAD_MESSAGE", "edit.body must be a string")
        fields.update(kind=MessageKind.EDIT, body=new_body, target_id=_target(edit, "edit"))
    elif revoke is not None:
        fields.update(kind=MessageKind.REVOKE, body="", target_id=_target(revoke, "revoke"))
    elif location is not None:
        try:
            latitude, longitude = float(location["latitude"]), float(location["longitude"])
        except (KeyError, TypeError, ValueError):
            raise SandboxError("ERR_SANDBOX_BAD_MESSAGE", "location needs numeric latitude and longitude") from None
        if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
            raise SandboxError("ERR_SANDBOX_BAD_MESSAGE", "location is off the globe")
        fields.update(kind=MessageKind.LOCATION, latitude=latitude, longitude=longitude,
                      body=body or str(location.get("name") or ""))
    elif vcard is not None:
        fields.update(kind=MessageKind.CONTACT, vcard=vcard)
    return InboundMessage(
        id=message_id, chat=chat, sender=sender_jid, timestamp=when, quoted_id=quoted_id,
        push_name=name or "", sender_lid=sender_lid, sender_phone=f"{phone}@s.whatsapp.net" if phone else None,
        is_group=group is not None, group_name=group_name, participant=participant, settle=settle, **fields)


def _inbound_media(network: NetworkParts, line: _Line, media: dict[str, Any], body: str) -> dict[str, Any]:
    kind_name = media.get("kind") if isinstance(media, dict) else None
    kind = _MEDIA_KINDS.get(kind_name) if isinstance(kind_name, str) else None
    if kind is None:
        raise SandboxError("ERR_SANDBOX_BAD_MEDIA", f"media.kind must be one of {', '.join(_MEDIA_KINDS)}")
    if media.get("data") is not None:
        data = media["data"]
        if not isinstance(data, bytes | bytearray):
            raise SandboxError("ERR_SANDBOX_BAD_MEDIA", "media.data must be bytes")
        data = bytes(data)
    elif media.get("base64") is not None:
        try:
            data = base64.b64decode(media["base64"], validate=True)
        except (binascii.Error, ValueError, TypeError):
            raise SandboxError("ERR_SANDBOX_BAD_MEDIA", "media.base64 is not base64") from None
    else:
        data = network._rng.randbytes(256)  # WhatsApp media is never empty
    if not data:
        raise SandboxError("ERR_SANDBOX_BAD_MEDIA", "media is empty")
    if len(data) > MEDIA_MAX_BYTES_EACH:
        raise SandboxError("ERR_SANDBOX_MEDIA_TOO_LARGE", f"media is larger than {MEDIA_MAX_BYTES_EACH} bytes")
    mimetype = str(media.get("mimetype") or _DEFAULT_MIMETYPES[kind])
    filename = media.get("filename") or ("document.pdf" if kind is MessageKind.DOCUMENT else None)
    filename = str(filename) if filename is not None else None
    key = f"sandbox/{line.connection_id}/{network._rng.getrandbits(96):024x}"
    line.keep_media(key, data)
    return {"kind": kind, "body": body or str(media.get("caption") or ""),
            "media": MediaRef(kind, mimetype, filename, len(data), key)}


def _target(params: dict[str, Any], what: str) -> str:
    target = params.get("targetId") if isinstance(params, dict) else None
    if not isinstance(target, str) or not target:
        raise SandboxError("ERR_SANDBOX_BAD_MESSAGE", f"{what}.targetId is required")
    return target
