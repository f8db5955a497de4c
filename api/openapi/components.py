"""The spec's shared schemas: the resources as `api/present.py`, `api/present_tickets.py` and the SQL views
(`tickets_shown`, `api_message_json`) write them. Every key a presenter always writes is required; a key
it writes only sometimes is listed and optional. Objects stay open (`additionalProperties` is JSON Schema's
default, true): a client may meet fields added later, and the contract (COMPAT.md) names fields, not closed sets.
"""

from __future__ import annotations

from api.openapi.dsl import (
    ANY,
    BOOL,
    FREE_OBJECT,
    ID,
    INT,
    NUM,
    STR,
    TIME,
    Schema,
    arr,
    enum,
    nullable,
    obj,
    ref,
)

NID = nullable(ID)
NSTR = nullable(STR)
NTIME = nullable(TIME)
STAMPS = {"createdAt": NTIME, "updatedAt": NTIME}

ERROR = obj(
    error={"type": "string", "pattern": "^ERR_", "description": "the family's error code"},
    message={**STR, "description": "what went wrong, for a person"},
    field={**STR, "description": "the request field at fault (validation errors)"},
    errorId={**STR, "description": "quoted in the server's log (500 and 503 answers)"},
    optional="field errorId",
    description="Every refusal (4xx) and failure (5xx): `{error, message}`; some codes add context fields "
                "(`field`, `errorId`, `limit`, a 409's `ticketId`/`ticketStatus`/`userId`/`userName`).",
)

TAG_SHORT = obj(id=ID, name=STR, color=STR, kanban=enum(0, 1))
TAG = obj({"id": ID, "name": STR, "color": STR, "kanban": enum(0, 1), "companyId": ID,
           "ticketsCount": INT, "contactsCount": INT, **STAMPS}, optional="ticketsCount contactsCount")

PLAN = obj({"id": ID, "name": STR, "users": INT, "connections": INT, "queues": INT, "value": NUM,
            "recurrence": NSTR, "isPublic": BOOL, "isDefault": BOOL, "useCampaigns": BOOL, "useSchedules": BOOL,
            "useInternalChat": BOOL, "useExternalApi": BOOL, "useKanban": BOOL, "useOpenAi": BOOL,
            "useIntegrations": BOOL, **STAMPS}, description="limits of 0 mean no limit")

COMPANY = obj({"id": ID, "name": STR, "email": NSTR, "phone": NSTR, "document": NSTR,
               "status": nullable(BOOL), "dueDate": nullable(STR), "planId": NID, "recurrence": NSTR,
               **STAMPS, "plan": ref("Plan"),
               "settings": arr(obj(key=STR, value=NSTR), description="the company's stored settings (in lists)"),
               "schedules": arr(FREE_OBJECT, description="business hours (scheduleType company)")},
              optional="plan settings schedules", description="`dueDate` null: it never expires")

INVOICE = obj({"id": ID, "detail": STR, "status": STR, "value": NUM, "dueDate": STR, "paidAt": NSTR,
               "companyId": ID, **STAMPS})

QUEUE_SHORT = obj(id=ID, name=STR, color=STR)
USER_SHORT = obj(id=ID, name=STR)

USER = obj({"id": ID, "name": STR, "email": STR, "profile": enum("admin", "user"), "companyId": ID,
            "super": BOOL, "allTicket": STR, "online": BOOL, "whatsappId": NID,
            "maxTickets": nullable(INT), "queues": arr(QUEUE_SHORT), **STAMPS,
            "company": obj(id=ID, name=STR, status=nullable(BOOL), planId=NID, recurrence=NSTR, email=NSTR,
                           dueDate={**STR, "description": "the last day the company is let in"},
                           description="the user's company (`GET /users/:id` and the /auth routes)")},
           optional="company")

SETTING = obj({"key": STR, "value": NSTR, **STAMPS})

ANNOUNCEMENT = obj({"id": ID, "priority": INT, "title": STR, "text": STR, "mediaPath": NSTR, "mediaName": NSTR,
                    "companyId": NID, "status": BOOL, **STAMPS,
                    "company": nullable(FREE_OBJECT)}, optional="company")

HELP = obj({"id": ID, "title": STR, "description": NSTR, "video": NSTR, "link": NSTR, **STAMPS})

WHATSAPP = obj({
    "id": ID, "name": STR, "companyId": ID, "channel": STR,
    "status": {**STR, "description": "OPENING, qrcode, PAIRING, CONNECTED, DISCONNECTED, TIMEOUT"},
    "qrcode": STR, "pairingCode": NSTR, "number": STR, "retries": INT, "isDefault": BOOL,
    "greetingMessage": NSTR, "farewellMessage": NSTR, "complationMessage": NSTR, "outOfHoursMessage": NSTR,
    "ratingMessage": NSTR, "transferMessage": NSTR, "expiresTicket": nullable(INT),
    "expiresInactiveMessage": NSTR, "maxUseBotQueues": nullable(INT), "timeUseBotQueues": nullable(INT),
    "schedules": arr(FREE_OBJECT), "token": {**NSTR, "description": "the API token: admins only, else null"},
    "lastDisconnectAt": NTIME, "lastDisconnectReason": NSTR,
    "queues": arr(obj(id=ID, name=STR, color=STR, greetingMessage=NSTR, optional="greetingMessage")),
    "session": STR, "battery": ANY, "plugged": ANY, **STAMPS,
})

QUEUE_OPTION = obj({"id": ID, "title": STR, "option": STR, "message": NSTR, "queueId": ID, "parentId": NID,
                    "forwardQueueId": NID, "exitChatbot": BOOL, "mediaPath": NSTR, "mediaName": NSTR, **STAMPS})

QUEUE = obj({"id": ID, "name": STR, "color": STR, "greetingMessage": NSTR, "outOfHoursMessage": NSTR,
             "orderQueue": nullable(INT), "schedules": arr(FREE_OBJECT), "autoAssign": STR,
             "mediaPath": NSTR, "mediaName": NSTR, "companyId": ID, **STAMPS, "options": arr(ref("QueueOption"))},
            optional="options")

RATING = obj({"id": ID, "ticketId": ID, "userId": NID, "companyId": ID, "rate": INT, **STAMPS,
              "user": nullable(FREE_OBJECT), "ticket": nullable(FREE_OBJECT), "queue": nullable(FREE_OBJECT)})

CONTACT = obj({"id": ID, "name": STR, "number": STR, "email": STR, "profilePicUrl": STR, "isGroup": BOOL,
               "lid": NSTR, "companyId": ID, "extraInfo": arr(FREE_OBJECT), "tags": arr(TAG_SHORT), **STAMPS})

CONTACT_SHORT = obj({"id": ID, "name": STR, "number": STR, "email": NSTR, "lid": NSTR, "profilePicUrl": NSTR,
                     "isGroup": BOOL, "companyId": ID, "tags": arr(TAG_SHORT)})

TICKET = obj({
    "id": ID, "uuid": STR, "status": {**STR, "description": "pending, open, closed (and group, …)"},
    "companyId": ID, "contactId": ID, "whatsappId": ID, "queueId": NID, "userId": NID, "isGroup": BOOL,
    "channel": STR, "unreadMessages": INT, "lastMessage": NSTR, "lastMessageAt": NTIME, "chatbot": BOOL,
    **STAMPS, "contact": CONTACT_SHORT, "queue": nullable(QUEUE_SHORT), "user": nullable(USER_SHORT),
    "whatsapp": obj(id=ID, name=STR, channel=STR, status=STR), "tags": arr(TAG_SHORT),
    "rating": nullable(obj(id=ID, rate=INT, userId=NID, createdAt=NTIME)),
})

SENDER = nullable(obj(id=NID, name=NSTR, number=NSTR))

MESSAGE = obj({
    "id": ID, "wid": NSTR, "ticketId": ID, "contactId": NID, "companyId": ID, "whatsappId": ID, "fromMe": BOOL,
    "body": STR, "mediaType": NSTR, "mediaUrl": NSTR, "mediaName": NSTR, "mediaMimetype": NSTR,
    "ack": INT, "status": NSTR, "error": NSTR, "read": BOOL, "quotedMsgId": NID,
    "quotedMsg": nullable(obj(id=ID, wid=NSTR, body=NSTR, fromMe=nullable(BOOL), mediaType=NSTR, mediaUrl=NSTR,
                              contact=SENDER, dataJson=STR)),
    "participant": NSTR, "reaction": NSTR, "replies": arr(FREE_OBJECT), "contact": SENDER,
    "dataJson": {**STR, "description": "the message as a Baileys WAMessage, JSON text"},
    "isEdited": BOOL, "isDeleted": BOOL, "isPrivate": BOOL, "userId": NID, **STAMPS,
})

CHAT = obj({"id": ID, "uuid": STR, "title": STR, "ownerId": ID, "lastMessage": NSTR, "companyId": ID, **STAMPS,
            "owner": USER_SHORT,
            "users": arr(obj(id=ID, chatId=ID, userId=ID, unreads=INT, createdAt=NTIME, updatedAt=NTIME,
                             user=USER_SHORT), description="the participants")})

CHAT_MESSAGE = obj({"id": ID, "chatId": ID, "senderId": ID, "message": NSTR, "mediaPath": NSTR, "mediaType": STR,
                    "mediaName": NSTR, "sender": USER_SHORT, **STAMPS})

FILE_OPTION = obj({"id": ID, "fileId": ID, "name": STR, "path": NSTR, "mediaType": NSTR, "mediaUrl": NSTR,
                   **STAMPS})

FILE_LIST = obj({"id": ID, "name": STR, "message": NSTR, "companyId": ID, **STAMPS,
                 "options": arr(ref("FileOption"))}, optional="options")

SCHEMAS: dict[str, Schema] = {
    "Error": ERROR, "Tag": TAG, "Plan": PLAN, "Company": COMPANY, "Invoice": INVOICE, "User": USER,
    "Setting": SETTING, "Announcement": ANNOUNCEMENT, "Help": HELP, "Whatsapp": WHATSAPP, "Queue": QUEUE,
    "QueueOption": QUEUE_OPTION, "Rating": RATING, "Contact": CONTACT, "Ticket": TICKET, "Message": MESSAGE,
    "Chat": CHAT, "ChatMessage": CHAT_MESSAGE, "FileList": FILE_LIST, "FileOption": FILE_OPTION,
}
# A path module may add shared schemas of its own area in its `SCHEMAS` (paths_automation: Campaign).
