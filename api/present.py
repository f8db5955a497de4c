"""Rows → the JSON shapes of COMPAT.md (camelCase names, integer ids, ISO timestamps)."""

from __future__ import annotations

import datetime as dt
from typing import Any


def _iso(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def company(row: dict[str, Any]) -> dict[str, Any]:
    """A company; `dueDate` null: it never expires. With its `plan` (and `settings`) when the row has them."""
    shown: dict[str, Any] = {
        "id": row["id"], "name": row["name"], "email": row.get("email"), "phone": row.get("phone"),
        "document": row.get("document"), "status": row.get("status"), "dueDate": _iso(row.get("due_date")),
        "planId": row.get("plan_id"), "recurrence": row.get("recurrence"),
        "createdAt": _iso(row.get("created_at")), "updatedAt": _iso(row.get("updated_at")),
    }
    if row.get("plan") is not None:
        shown["plan"] = plan(row["plan"])
    if "settings" in row:
        shown["settings"] = row["settings"]
    if "schedules" in row:
        shown["schedules"] = row["schedules"]  # business hours (scheduleType "company"), api/schedules.py
    return shown


def _money(value: Any) -> float:
    return float(value) if value is not None else 0.0


def plan(row: dict[str, Any]) -> dict[str, Any]:
    """A plan as the SaaS Plans screen and menu read it; limits of 0 mean no limit."""
    return {
        "id": row["id"], "name": row["name"], "users": row["users"], "connections": row["connections"],
        "queues": row["queues"], "value": _money(row["value"]), "recurrence": row.get("recurrence"),
        "isPublic": row.get("is_public", False), "isDefault": row.get("is_default", False),
        "useCampaigns": row["use_campaigns"], "useSchedules": row["use_schedules"],
        "useInternalChat": row["use_internal_chat"], "useExternalApi": row["use_external_api"],
        "useKanban": row["use_kanban"], "useOpenAi": row["use_open_ai"], "useIntegrations": row["use_integrations"],
        "createdAt": _iso(row.get("created_at")), "updatedAt": _iso(row.get("updated_at")),
    }


def invoice(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"], "detail": row["detail"], "status": row["status"], "value": _money(row["value"]),
        "dueDate": _iso(row["due_date"]), "paidAt": _iso(row.get("paid_at")), "companyId": row["company_id"],
        "createdAt": _iso(row.get("created_at")), "updatedAt": _iso(row.get("updated_at")),
    }


def user(row: dict[str, Any]) -> dict[str, Any]:
    shown: dict[str, Any] = {
        "id": row["id"], "name": row["name"], "email": row["email"], "profile": row["profile"],
        "companyId": row["company_id"], "super": row["super"], "allTicket": row["all_ticket"],
        "online": row.get("online", False), "whatsappId": row.get("whatsapp_id"),
        "maxTickets": row.get("max_tickets"),  # open tickets auto-assignment may give them; null: no limit
        "queues": row.get("queues") or [],
        "createdAt": _iso(row.get("created_at")), "updatedAt": _iso(row.get("updated_at")),
    }
    if "company" in row:
        shown["company"] = row["company"]
    return shown


def setting(row: dict[str, Any]) -> dict[str, Any]:
    return {"key": row["key"], "value": row["value"], "createdAt": _iso(row.get("created_at")),
            "updatedAt": _iso(row.get("updated_at"))}


def announcement(row: dict[str, Any]) -> dict[str, Any]:
    """An announcement as ticketz shows it (`mediaPath`: a public file, loaded from `<backend>/public/`)."""
    shown = {
        "id": row["id"], "priority": row["priority"], "title": row["title"], "text": row["text"],
        "mediaPath": row.get("media_path"), "mediaName": row.get("media_name"), "companyId": row.get("company_id"),
        "status": row["status"], "createdAt": _iso(row.get("created_at")), "updatedAt": _iso(row.get("updated_at")),
    }
    if "company" in row:
        shown["company"] = row["company"]
    return shown


def help_video(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "title": row["title"], "description": row["description"], "video": row["video"],
            "link": row["link"], "createdAt": _iso(row.get("created_at")), "updatedAt": _iso(row.get("updated_at"))}


def page(name: str, items: list[dict[str, Any]], count: int, limit: int, offset: int) -> dict[str, Any]:
    return {name: items, "count": count, "hasMore": offset + len(items) < count}


def whatsapp(row: dict[str, Any], *, show_token: bool = False) -> dict[str, Any]:
    """A connection as the Whaticket frontends read it (`session` is the original's session blob: never shown)."""
    return {
        "id": row["id"], "name": row["name"], "companyId": row["company_id"], "channel": row["channel"],
        "status": row["status"], "qrcode": row.get("qrcode") or "", "pairingCode": row.get("pairing_code"),
        "number": row.get("number") or "", "retries": row.get("retries", 0), "isDefault": row.get("is_default", False),
        "greetingMessage": row.get("greeting_message", ""), "farewellMessage": row.get("farewell_message", ""),
        "complationMessage": row.get("complation_message", ""),
        "outOfHoursMessage": row.get("out_of_hours_message", ""),
        "ratingMessage": row.get("rating_message", ""), "transferMessage": row.get("transfer_message", ""),
        "expiresTicket": row.get("expires_ticket", 0),
        "expiresInactiveMessage": row.get("expires_inactive_message", ""),
        "maxUseBotQueues": row.get("max_use_bot_queues", 3), "timeUseBotQueues": row.get("time_use_bot_queues", 0),
        "schedules": row.get("schedules") or [],
        "token": row.get("token") if show_token else None,
        "lastDisconnectAt": _iso(row.get("last_disconnect_at")),
        "lastDisconnectReason": row.get("last_disconnect_reason"),
        "queues": row.get("queues") or [],
        "session": "", "battery": None, "plugged": None,
        "createdAt": _iso(row.get("created_at")), "updatedAt": _iso(row.get("updated_at")),
    }


def session(row: dict[str, Any]) -> dict[str, Any]:
    """What `company-{id}-whatsappSession` events carry (no API token: every user of the company gets them)."""
    return whatsapp(row, show_token=False)


def queue(row: dict[str, Any]) -> dict[str, Any]:
    """A queue; `options` (its whole menu tree, flat, by id) when the row has them (storage.queues.with_options).
    `mediaPath` is where its greeting file is served (`/media/<token>/<name>`), `mediaName` the file's name."""
    shown = {
        "id": row["id"], "name": row["name"], "color": row["color"],
        "greetingMessage": row.get("greeting_message", ""), "outOfHoursMessage": row.get("out_of_hours_message", ""),
        "orderQueue": row.get("order_queue"), "schedules": row.get("schedules") or [],
        "autoAssign": row.get("auto_assign", "off"),
        "mediaPath": row.get("media_path"), "mediaName": row.get("media_name"),
        "companyId": row["company_id"],
        "createdAt": _iso(row.get("created_at")), "updatedAt": _iso(row.get("updated_at")),
    }
    if "options" in row:
        shown["options"] = [queue_option(option) for option in row["options"]]
    return shown


def queue_option(row: dict[str, Any]) -> dict[str, Any]:
    """A node of a queue's menu, in ticketz's names (its QueueOptions form reads these)."""
    return {
        "id": row["id"], "title": row["title"], "option": row["option"], "message": row["message"],
        "queueId": row["queue_id"], "parentId": row.get("parent_id"), "forwardQueueId": row.get("forward_queue_id"),
        "exitChatbot": row["exit_chatbot"], "mediaPath": row.get("media_path"), "mediaName": row.get("media_name"),
        "createdAt": _iso(row.get("created_at")), "updatedAt": _iso(row.get("updated_at")),
    }


def rating(row: dict[str, Any]) -> dict[str, Any]:
    """A rating (the family's UserRating) with its ticket, agent and queue as `GET /ratings` lists it."""
    return {
        "id": row["id"], "ticketId": row["ticket_id"], "userId": row.get("user_id"), "companyId": row["company_id"],
        "rate": row["rate"], "createdAt": _iso(row.get("created_at")), "updatedAt": _iso(row.get("updated_at")),
        "user": row.get("user"), "ticket": row.get("ticket"), "queue": row.get("queue"),
    }


def contact(row: dict[str, Any]) -> dict[str, Any]:
    """A contact; `extraInfo` holds its custom fields and `tags` its tags when the row carries them."""
    return {
        "id": row["id"], "name": row["name"], "number": row["number"], "email": row.get("email") or "",
        "profilePicUrl": row.get("profile_pic_url") or "", "isGroup": row.get("is_group", False),
        "lid": row.get("lid"), "companyId": row["company_id"], "extraInfo": row.get("extra_info") or [],
        # [{id, name, color, kanban}] (contact_show, contact_list); always present: the family's contact list
        # maps over it, and its React tree crashes without the field.
        "tags": row.get("tags") or [],
        "createdAt": _iso(row.get("created_at")), "updatedAt": _iso(row.get("updated_at")),
    }


def chat(row: dict[str, Any]) -> dict[str, Any]:
    """An internal chat as ticketz shows it: `users` are its participants, each `{id, chatId, userId,
    unreads, user: {id, name}}` (the frontend finds the caller's `unreads` by `userId`)."""
    return {
        "id": row["id"], "uuid": str(row["uuid"]), "title": row["title"], "ownerId": row["owner_id"],
        "lastMessage": row["last_message"], "companyId": row["company_id"],
        "createdAt": _iso(row.get("created_at")), "updatedAt": _iso(row.get("updated_at")),
        "owner": row["owner"], "users": row["users"],
    }


def chat_message(row: dict[str, Any], base_url: str) -> dict[str, Any]:
    """A message of an internal chat; `mediaPath` is the file's full URL (ticketz's frontend links it as is)."""
    media_url = row.get("media_url")
    return {
        "id": row["id"], "chatId": row["chat_id"], "senderId": row["sender_id"], "message": row["message"],
        "mediaPath": f"{base_url}{media_url}" if media_url else None, "mediaType": row.get("media_type") or "text",
        "mediaName": row.get("media_name"), "sender": row["sender"],
        "createdAt": _iso(row.get("created_at")), "updatedAt": _iso(row.get("updated_at")),
    }


def tag(row: dict[str, Any]) -> dict[str, Any]:
    """A tag as ticketz's Tags screen reads it: `kanban` 0 or 1 (its model's number), the counts of the
    tickets and contacts carrying it when the row has them."""
    shown: dict[str, Any] = {
        "id": row["id"], "name": row["name"], "color": row["color"], "kanban": int(row["kanban"]),
        "companyId": row["company_id"],
    }
    if "tickets_count" in row:
        shown["ticketsCount"] = row["tickets_count"]
        shown["contactsCount"] = row["contacts_count"]
    shown["createdAt"] = _iso(row.get("created_at"))
    shown["updatedAt"] = _iso(row.get("updated_at"))
    return shown


def file_list(row: dict[str, Any], base_url: str) -> dict[str, Any]:
    """A file list as the SaaS lineage's Files screen reads it; `options` when the row has them (one list
    shown, not a page), each with `mediaUrl`, the stored file's full URL (null until its upload)."""
    shown: dict[str, Any] = {
        "id": row["id"], "name": row["name"], "message": row["message"], "companyId": row["company_id"],
        "createdAt": _iso(row.get("created_at")), "updatedAt": _iso(row.get("updated_at")),
    }
    if "options" in row:
        shown["options"] = [file_option(option, base_url) for option in row["options"]]
    return shown


def file_option(row: dict[str, Any], base_url: str) -> dict[str, Any]:
    media_url = row.get("media_url")
    return {
        "id": row["id"], "fileId": row["file_id"], "name": row["name"], "path": row["path"],
        "mediaType": row["media_type"], "mediaUrl": f"{base_url}{media_url}" if media_url else None,
        "createdAt": _iso(row.get("created_at")), "updatedAt": _iso(row.get("updated_at")),
    }
