"""The spec of conversations: tickets, their messages, tags and kanban, ticket notes, the internal chat and the
external send API (api/tickets.py, messages.py, tags.py, ticket_notes.py, chats.py)."""

from __future__ import annotations

from api.openapi.components import NID, NSTR, TICKET
from api.openapi.dsl import (
    BOOL,
    FILE,
    FREE_OBJECT,
    ID,
    INT,
    MESSAGE,
    PAGE,
    SEARCH,
    STR,
    TIME,
    Declare,
    arr,
    body,
    enum,
    multipart,
    nullable,
    obj,
    page_of,
    query,
    ref,
    text,
)

tickets = Declare("tickets", tag="Tickets")
messages = Declare("messages", tag="Messages")
tags = Declare("tags", tag="Tags")
notes = Declare("ticket_notes", tag="Ticket notes")
chats = Declare("chats", tag="Internal chat")

STATUS = enum("pending", "open", "closed")
ID_ARRAY = {"type": "string", "description": "a JSON array of ids, like [1,2] (or the repeated form name[]=1)"}
DAY = {"type": "string", "format": "date"}
TICKET_FILTERS = (
    SEARCH, PAGE, query("status", STATUS), query("date", DAY, "created on that day"),
    query("updatedAt", DAY, "updated on that day"), query("showAll", enum("true", "false")),
    query("withUnreadMessages", enum("true", "false")), query("queueIds", ID_ARRAY), query("tags", ID_ARRAY),
    query("users", ID_ARRAY), query("cursor", STR, "the `nextCursor` of the page before (keyset paging)"),
)
TICKET_PAGE = obj(tickets=arr(ref("Ticket")), count=INT, hasMore=BOOL, nextCursor=NSTR)
DETAILED = {"allOf": [ref("Ticket"), obj(contact=obj(extraInfo=arr(FREE_OBJECT)))],
            "description": "a ticket, its contact with its custom fields (`extraInfo`)"}
SEND_JSON = body(body={"type": "string", "maxLength": 65_536},
                 quotedMsg={"anyOf": [ID, obj(id=ID)], "description": "the message replied to"},
                 isPrivate={"anyOf": [BOOL, enum("true", "false")], "description": "an internal note, never sent"})
SEND_FORM = multipart({"medias": arr(FILE, maxItems=10), "body": {"type": "string", "maxLength": 65_536},
                       "quotedMsgId": STR, "isPrivate": enum("true", "false")}, required=())
NOTE = obj({"id": ID, "note": STR, "userId": NID, "ticketId": ID, "contactId": ID, "companyId": ID,
            "createdAt": TIME, "updatedAt": TIME, "user": nullable(FREE_OBJECT), "contact": nullable(FREE_OBJECT),
            "ticket": nullable(FREE_OBJECT)})
TICKET_TAG = obj(ticketId=ID, tagId=ID, ticket=TICKET)
USERS = arr({"anyOf": [ID, obj(id=ID)]}, minItems=1, maxItems=500)

OPERATIONS = [
    tickets.get("/tickets", "A page of the tickets the caller may see", params=TICKET_FILTERS, ok=TICKET_PAGE),
    tickets.post("/tickets", "Start a conversation with a contact (open and the caller's, or pending)",
                 status=201, body_required=True,
                 body=body(contactId=ID, whatsappId=nullable(ID), queueId=nullable(ID), userId=nullable(ID),
                           status=enum("pending", "open"), required="contactId"),
                 ok=ref("Ticket"), errors=(409,), feeds=("/messages", "/ticket-tags")),
    tickets.get("/tickets/{ticket_id}", "A ticket the caller may see", ok=DETAILED),
    tickets.get("/tickets/u/{ticket_uuid}", "A ticket by its uuid", ok=DETAILED),
    tickets.put("/tickets/{ticket_id}", "Accept, transfer, close or reopen a ticket",
                body=body(status=STATUS, userId=nullable(ID), queueId=nullable(ID),
                          isTransfered={"anyOf": [BOOL, enum("true", "false")]}),
                ok=ref("Ticket"), errors=(409,),
                description="A 409 `ERR_OTHER_OPEN_TICKET` or a lost accept names the ticket that is in the way."),
    tickets.delete("/tickets/{ticket_id}", "Delete a ticket and its messages", auth="admin", ok=MESSAGE),

    messages.get("/messages/{id}", "A page of a ticket's history (20, chronological) with the ticket",
                 params=(PAGE, query("nextId", STR, "ticketz's cursor: messages older than that one"),
                         {"name": "id", "in": "path", "required": True, "description": "the ticket's id",
                          "schema": {"type": "integer", "minimum": 1, "maximum": 999_999_999_999_999_999}}),
                 ok=obj(messages=arr(ref("Message")), ticket=ref("Ticket"), count=INT, hasMore=BOOL, nextId=NID)),
    messages.post("/messages/{id}", "Send a message on a ticket (JSON, or multipart with `medias`)", status=201,
                  params=({"name": "id", "in": "path", "required": True, "description": "the ticket's id",
                           "schema": {"type": "integer", "minimum": 1, "maximum": 999_999_999_999_999_999}},),
                  body=SEND_JSON, other_bodies=(("multipart/form-data", SEND_FORM),),
                  ok={"anyOf": [ref("Message"), arr(ref("Message"))],
                      "description": "the message; one per file when several were sent"},
                  errors=(409,)),
    messages.delete("/messages/{id}", "Delete one of the company's sent messages for everyone",
                    params=({"name": "id", "in": "path", "required": True, "description": "the message's id",
                             "schema": {"type": "integer", "minimum": 1, "maximum": 999_999_999_999_999_999}},),
                    ok=ref("Message"), errors=(409,)),
    messages.post("/messages/edit/{message_id}", "Edit a sent text message",
                  body=body(body={"type": "string", "maxLength": 65_536, "minLength": 1}, required="body"),
                  body_required=True, ok=ref("Message"), errors=(409,)),
    messages.post("/messages/react/{message_id}", "React to a message (`\"\"` removes the reaction)",
                  body=body(emoji={"type": "string", "maxLength": 32}), ok=ref("Message"), errors=(409,)),
    messages.get("/messages/{message_id}/history", "The texts an edited message had before",
                 ok=obj(oldMessages=arr(obj(id=INT, messageId=ID, ticketId=ID, body=NSTR, createdAt=NSTR,
                                            updatedAt=NSTR)))),
    messages.post("/api/messages/send", "Send to a number with a connection's API token", auth="connection",
                  status=201, body_required=True,
                  body=body(number={"type": "string", "maxLength": 32}, body={"type": "string", "maxLength": 65_536},
                            required="number"),
                  other_bodies=(("multipart/form-data", {**SEND_FORM, "properties": {
                      **SEND_FORM["properties"], "number": {"type": "string", "maxLength": 32}},
                      "required": ["number"]}),),
                  ok=obj(ticketId=ID, messages=arr(ref("Message"))), errors=(409,),
                  description="Multipart works too: `number`, `body` and files in `medias`."),

    tags.get("/tags", "A page of tags with their counts", params=(SEARCH, PAGE), ok=page_of("tags", ref("Tag"))),
    tags.get("/tags/list", "Every tag (the pickers)", params=(SEARCH, query("kanban", enum("1", "0", "true"))),
             ok=arr(ref("Tag"))),
    tags.get("/tags/kanban", "The kanban lanes", ok=obj(lista=arr(ref("Tag")))),
    tags.get("/tag/kanban", "The kanban lanes", ok=obj(lista=arr(ref("Tag")))),
    tags.post("/tags", "Create a tag (an existing one with the same name and colour: 200)", status=201,
              body=body(name=text(255, 3), color={"type": ["string", "null"], "pattern": "^#([0-9a-fA-F]{3}){1,2}$"},
                        kanban={"anyOf": [enum(0, 1), BOOL, {"type": "null"}]}, required="name"),
              body_required=True, ok=ref("Tag"), errors=(409,),
              extra_responses=((200, "the company had this tag already", ref("Tag")),)),
    tags.get("/tags/{tag_id}", "A tag", ok=ref("Tag")),
    tags.put("/tags/{tag_id}", "Change a tag", auth="admin",
             body=body(name=text(255, 3), color={"type": ["string", "null"]}, kanban={"anyOf": [enum(0, 1), BOOL]}),
             ok=ref("Tag"), errors=(409,)),
    tags.delete("/tags/{tag_id}", "Delete a tag (it leaves every ticket)", auth="admin", ok=MESSAGE),
    tags.post("/tags/sync", "Replace the tags of a ticket (or a contact, by the setting tagsMode)",
              body=body(ticketId=ID, contactId=ID, tags=arr({"anyOf": [ID, obj(id=ID)]}, maxItems=500)),
              body_required=True, ok={"anyOf": [ref("Ticket"), ref("Contact")]}),
    tags.put("/ticket-tags/{ticket_id}/{tag_id}", "Put a tag on a ticket (a kanban tag moves its card)",
             status=201, ok=TICKET_TAG),
    tags.delete("/ticket-tags/{ticket_id}/{tag_id}", "Take a tag off a ticket", ok=MESSAGE),
    tags.delete("/ticket-tags/{ticket_id}", "Take every tag off a ticket", ok=MESSAGE),
    tags.get("/ticket/kanban", "The kanban cards: GET /tickets' filters, pending and open by default",
             params=TICKET_FILTERS, ok=TICKET_PAGE),

    notes.get("/ticket-notes", "A page of the notes on tickets the caller may see", params=(SEARCH, PAGE),
              ok=page_of("ticketNotes", NOTE)),
    notes.get("/ticket-notes/list", "A ticket's notes or a contact's",
              params=(query("ticketId", ID), query("contactId", ID)), ok=arr(NOTE)),
    notes.post("/ticket-notes", "Write a note on a ticket", status=201, body_required=True,
               body=body(note=text(10_000), ticketId=ID, contactId=ID, required="note ticketId"), ok=NOTE),
    notes.get("/ticket-notes/{note_id}", "A note", ok=NOTE),
    notes.put("/ticket-notes/{note_id}", "Change a note (its author or an admin)",
              body=body(note=text(10_000), required="note"), body_required=True, ok=NOTE),
    notes.delete("/ticket-notes/{note_id}", "Delete a note (its author or an admin)", ok=MESSAGE),

    chats.get("/chats", "A page of the caller's internal chats", params=(PAGE,), ok=page_of("records", ref("Chat"))),
    chats.post("/chats", "Start an internal chat", body=body(title=text(255, 1), users=USERS, required="title users"),
               body_required=True, ok=ref("Chat")),
    chats.get("/chats/{chat_key}", "An internal chat (participants)", ok=ref("Chat")),
    chats.put("/chats/{chat_key}", "Rename a chat or change its participants (owner or admin)",
              body=body(title=text(255, 1), users=USERS), ok=ref("Chat")),
    chats.delete("/chats/{chat_key}", "Delete a chat (owner or admin)", ok=MESSAGE),
    chats.get("/chats/{chat_key}/messages", "A page of a chat's messages", params=(PAGE,),
              ok=page_of("records", ref("ChatMessage"))),
    chats.post("/chats/{chat_key}/messages", "Write in a chat (JSON `{message}` or multipart `medias`)",
               body=body(message={"type": "string", "maxLength": 65_536}, required="message"),
               other_bodies=(("multipart/form-data", multipart({"medias": arr(FILE, maxItems=10)},
                                                               required=("medias",))),),
               ok=ref("ChatMessage")),
    chats.post("/chats/{chat_key}/read", "The caller has read the chat", ok=ref("Chat")),
]

