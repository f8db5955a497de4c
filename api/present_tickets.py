"""Tickets and messages → the JSON shapes of COMPAT.md (the Whaticket frontends' names)."""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from typing import Any

import attrs


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.datetime | dt.date) else value


def ticket(row: dict[str, Any]) -> dict[str, Any]:
    """A ticket with its contact, queue, user, whatsapp and tags (rows from the ticket_show query)."""
    return {
        "id": row["id"], "uuid": str(row["uuid"]), "status": row["status"], "companyId": row["company_id"],
        "contactId": row["contact_id"], "whatsappId": row["whatsapp_id"], "queueId": row.get("queue_id"),
        "userId": row.get("user_id"), "isGroup": row.get("is_group", False), "channel": "whatsapp",
        "unreadMessages": row.get("unread_messages", 0), "lastMessage": row.get("last_message", ""),
        "lastMessageAt": _iso(row.get("last_message_at")), "chatbot": row.get("chatbot", False),
        "createdAt": _iso(row.get("created_at")), "updatedAt": _iso(row.get("updated_at")),
        "contact": row.get("contact"), "queue": row.get("queue"), "user": row.get("user"),
        "whatsapp": row.get("whatsapp"), "tags": row.get("tags") or [],
        # the latest rating the contact gave it, {id, rate, userId, createdAt} (schema version 16), or null
        "rating": row.get("rating"),
    }


# A location's body when it had no name or address: only its coordinates (actors.ticket._body_of).
_COORDINATES = re.compile(r"[-+0-9.e]+,[-+0-9.e]+")
_SHOWN_KIND = {"ptt": "audio", "sticker": "image"}
_CONTENT_KINDS = frozenset(("image", "video", "audio", "ptt", "document", "sticker", "location", "vcard"))
# dataJson is built for every message event (the intake's hot path): one encoder for all (json.dumps with
# options would build one per call), and the common case, a text, written around one encoded string.
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_string = json.encoder.encode_basestring  # a str as a JSON string (C), as _encode writes it


def media_type(stored: str | None) -> str | None:
    """`mediaType` as the Whaticket family shows it (storage/migrations/0006: api_media_type)."""
    return _SHOWN_KIND.get(stored, stored) if stored is not None else None


def chat_jid(contact: dict[str, Any] | None) -> str | None:
    """A ticket's chat as a JID, from its contact as tickets_shown gives it (0006: api_chat_jid)."""
    if not contact:
        return None
    if contact.get("isGroup"):
        return f"{contact['number']}@g.us"
    if contact.get("number"):
        return f"{contact['number']}@s.whatsapp.net"
    return f"{contact['lid']}@lid" if contact.get("lid") is not None else None


def message_data(chat: str | None, wid: str | None, from_me: bool, kind: str, body: str, media_name: str | None,
                 mimetype: str | None, latitude: float | None, longitude: float | None, quoted_wid: str | None,
                 at: dt.datetime | None) -> str:
    """`dataJson`: the message as a Baileys WAMessage, as JSON text (0006: api_message_data, the same object).

    The Baileys-lineage frontends (ticketz) parse it for every message they show: which content field it
    has tells a document, a sticker, a location from the rest; `extendedTextMessage` on a message with a file
    would hide the file, so only a text that quotes gets one."""
    stamp = math.floor(at.timestamp()) if at is not None else None
    if quoted_wid is None and kind not in _CONTENT_KINDS:  # a text: {"conversation": body}
        return (f'{{"key":{{"remoteJid":{"null" if chat is None else _string(chat)},'
                f'"fromMe":{"true" if from_me else "false"},"id":{"null" if wid is None else _string(wid)}}},'
                f'"message":{{"conversation":{_string(body)}}},'
                f'"messageTimestamp":{"null" if stamp is None else stamp}}}')
    context = {"stanzaId": quoted_wid} if quoted_wid is not None else None
    content: dict[str, Any]
    if kind in ("image", "video"):
        content = {f"{kind}Message": {"caption": body, "mimetype": mimetype, "contextInfo": context}}
    elif kind in ("audio", "ptt"):
        content = {"audioMessage": {"mimetype": mimetype, "ptt": kind == "ptt", "contextInfo": context}}
    elif kind == "document":
        content = {"documentMessage": {"fileName": media_name, "mimetype": mimetype, "caption": body,
                                       "contextInfo": context}}
    elif kind == "sticker":
        content = {"stickerMessage": {"mimetype": mimetype, "contextInfo": context}}
    elif kind == "location" and latitude is not None:
        name = None if body == "" or _COORDINATES.fullmatch(body) else body
        content = {"locationMessage": {"degreesLatitude": latitude, "degreesLongitude": longitude, "name": name,
                                       "contextInfo": context}}
    elif kind == "vcard":
        content = {"contactMessage": {"vcard": body, "contextInfo": context}}
    elif context is not None:
        content = {"extendedTextMessage": {"text": body, "contextInfo": context}}
    else:
        content = {"conversation": body}
    return _encode({"key": {"remoteJid": chat, "fromMe": from_me, "id": wid}, "message": content,
                    "messageTimestamp": stamp})


def _sender(contact: dict[str, Any] | None, from_me: bool | None, participant: str | None) -> dict[str, Any] | None:
    """Who wrote a message, as the frontends label it: the chat's contact; in a group the participant (only
    their number is kept); nobody for ours."""
    if from_me or not contact:
        return None
    if contact.get("isGroup"):
        return {"id": None, "name": participant, "number": participant} if participant is not None else None
    return {"id": contact.get("id"), "name": contact.get("name"), "number": contact.get("number")}


@attrs.frozen
class MessagePresenter:
    """Messages need the public base URL for their media links, and their ticket (its contact) for their
    chat and sender. The shape is the one api_message_json builds for the pages (schema version 6)."""

    base_url: str

    def _url(self, path: str | None) -> str | None:
        return f"{self.base_url}{path}" if path else None

    def __call__(self, row: dict[str, Any], ticket: dict[str, Any] | None = None) -> dict[str, Any]:
        contact = ticket.get("contact") if ticket else None
        chat = chat_jid(contact)
        quoted = None
        quoted_wid = None
        if row.get("quoted_msg_id") and row.get("quoted_wid") is not None:
            quoted_wid = row["quoted_wid"]
            quoted = {
                "id": row["quoted_msg_id"], "wid": quoted_wid, "body": row.get("quoted_body"),
                "fromMe": row.get("quoted_from_me"), "mediaType": media_type(row.get("quoted_media_type")),
                "mediaUrl": self._url(row.get("quoted_media_url")),
                "contact": _sender(contact, row.get("quoted_from_me"), row.get("quoted_participant")),
                "dataJson": message_data(chat, quoted_wid, bool(row.get("quoted_from_me")),
                                         row.get("quoted_media_type") or "chat", row.get("quoted_body") or "",
                                         row.get("quoted_media_name"), row.get("quoted_media_mimetype"),
                                         row.get("quoted_latitude"), row.get("quoted_longitude"), None,
                                         row.get("quoted_at")),
            }
        reaction = row.get("reaction")
        kind = row.get("media_type", "chat")
        body = row.get("body", "")
        return {
            "id": row["id"], "wid": row.get("wid"), "ticketId": row["ticket_id"], "contactId": row.get("contact_id"),
            "companyId": row["company_id"], "whatsappId": row["whatsapp_id"], "fromMe": row["from_me"],
            "body": body, "mediaType": media_type(kind),
            "mediaUrl": self._url(row.get("media_url")), "mediaName": row.get("media_name"),
            "mediaMimetype": row.get("media_mimetype"), "ack": row.get("ack", 0), "status": row.get("status"),
            "error": row.get("error"), "read": row.get("read", False), "quotedMsgId": row.get("quoted_msg_id"),
            "quotedMsg": quoted, "participant": row.get("participant"), "reaction": reaction,
            # ticketz shows reactions as the `replies` of the message they react to
            "replies": [] if reaction is None else [{"id": f"{row['id']}-reaction", "mediaType": "reactionMessage",
                                                     "body": reaction, "contact": None}],
            "contact": _sender(contact, row["from_me"], row.get("participant")),
            "dataJson": message_data(chat, row.get("wid"), row["from_me"], kind, body, row.get("media_name"),
                                     row.get("media_mimetype"), row.get("latitude"), row.get("longitude"), quoted_wid,
                                     row.get("wa_timestamp") or row.get("created_at")),
            "isEdited": row.get("is_edited", False), "isDeleted": row.get("is_deleted", False),
            "isPrivate": row.get("is_private", False), "userId": row.get("sent_by_user_id"),
            "createdAt": _iso(row.get("created_at")), "updatedAt": _iso(row.get("updated_at")),
        }
