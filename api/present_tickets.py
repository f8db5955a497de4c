"""Tickets and messages → the JSON shapes of COMPAT.md (the Whaticket frontends' names)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import attrs


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.datetime | dt.date) else value


def ticket(row: dict[str, Any]) -> dict[str, Any]:
    """A ticket with its contact, queue, user, whatsapp and tags (rows from the ticket_show query)."""
    return {
        "id": row["id"], "uuid": str(row["uuid"]), "status": row["status"], "companyId": row["company_id"],
        "contactId": row["contact_id"], "whatsappId": row["whatsapp_id"], "queueId": row.get("queue_id"),
        "userId": row.get("user_id"), "isGroup": row.get("is_group", False),
        "unreadMessages": row.get("unread_messages", 0), "lastMessage": row.get("last_message", ""),
        "lastMessageAt": _iso(row.get("last_message_at")), "chatbot": row.get("chatbot", False),
        "createdAt": _iso(row.get("created_at")), "updatedAt": _iso(row.get("updated_at")),
        "contact": row.get("contact"), "queue": row.get("queue"), "user": row.get("user"),
        "whatsapp": row.get("whatsapp"), "tags": row.get("tags") or [],
    }


@attrs.frozen
class MessagePresenter:
    """Messages need the public base URL for their media links."""

    base_url: str

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        media_url = row.get("media_url")
        quoted = None
        if row.get("quoted_msg_id") and row.get("quoted_wid") is not None:
            quoted = {"id": row["quoted_msg_id"], "wid": row.get("quoted_wid"), "body": row.get("quoted_body"),
                      "fromMe": row.get("quoted_from_me"), "mediaType": row.get("quoted_media_type")}
        return {
            "id": row["id"], "wid": row.get("wid"), "ticketId": row["ticket_id"], "contactId": row.get("contact_id"),
            "companyId": row["company_id"], "whatsappId": row["whatsapp_id"], "fromMe": row["from_me"],
            "body": row.get("body", ""), "mediaType": row.get("media_type", "chat"),
            "mediaUrl": f"{self.base_url}{media_url}" if media_url else None, "mediaName": row.get("media_name"),
            "mediaMimetype": row.get("media_mimetype"), "ack": row.get("ack", 0), "status": row.get("status"),
            "error": row.get("error"), "read": row.get("read", False), "quotedMsgId": row.get("quoted_msg_id"),
            "quotedMsg": quoted, "participant": row.get("participant"), "reaction": row.get("reaction"),
            "isEdited": row.get("is_edited", False), "isDeleted": row.get("is_deleted", False),
            "isPrivate": row.get("is_private", False), "userId": row.get("sent_by_user_id"),
            "createdAt": _iso(row.get("created_at")), "updatedAt": _iso(row.get("updated_at")),
        }
