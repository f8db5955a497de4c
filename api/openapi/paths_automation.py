"""The spec of routing and automation: queues and their menus, quick messages, scheduled messages, campaigns
(api/queues.py, queue_options.py, quick_messages.py, scheduled_messages.py, campaigns.py)."""

from __future__ import annotations

from api.openapi.components import NID, NSTR, NTIME, STAMPS
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

queues = Declare("queues", tag="Queues")
options = Declare("queue_options", tag="Queue menus")
quick = Declare("quick_messages", tag="Quick messages")
schedules = Declare("scheduled_messages", tag="Scheduled messages")
campaigns = Declare("campaigns", tag="Campaigns")

UPLOAD = multipart({"file": FILE})
MEDIA_SAVED = obj(mensagem=STR, mediaPath=NSTR, mediaName=NSTR, description="the file is attached")
MENSAGEM = obj(mensagem=STR)
TEXT = 10_000
SCHEDULES = arr(FREE_OBJECT, description="business hours: `[{weekday, startTime, endTime}]` and the family's "
                                         "other two shapes (api/schedules.py)")
QUEUE_BODY = body(name=text(255), color=text(32), greetingMessage=nullable(text(TEXT)),
                  outOfHoursMessage=nullable(text(TEXT)),
                  orderQueue=nullable({"type": "integer", "minimum": 0, "maximum": 2**31 - 1}),
                  autoAssign=enum("off", "round_robin", "least_busy"), schedules=nullable(SCHEDULES))
OPTION_BODY = body(title=nullable(text(255)), option={"anyOf": [text(32), INT]}, message=nullable(text(TEXT)),
                   queueId=ID, parentId=nullable(ID), forwardQueueId=nullable(ID), exitChatbot=nullable(BOOL))
OPTION_FILTER = {"type": "integer", "minimum": 1}
QUICK = obj(id=ID, shortcode=STR, message=STR, mediaPath=NSTR, mediaName=NSTR, userId=NID, companyId=ID,
            geral=BOOL, createdAt=TIME, updatedAt=TIME)
QUICK_BODY = body(shortcode=text(255), message=text(TEXT),
                  geral={"anyOf": [BOOL, enum(0, 1), enum("0", "1", "true", "false")]})
SCHEDULE = obj(id=ID, body=STR, sendAt=NTIME, sentAt=NTIME, contactId=ID, ticketId=NID, userId=NID, whatsappId=NID,
               companyId=ID, status=STR, lastError=NSTR, saveMessage=BOOL, openTicket=BOOL, mediaPath=NSTR,
               mediaName=NSTR, recurrence=STR, recurrenceEvery=INT, cron=NSTR, recurrenceCount=nullable(INT),
               recurrenceUntil=NTIME, skipToBusinessDay=BOOL, sentCount=INT, createdAt=NTIME, updatedAt=NTIME,
               contact=nullable(FREE_OBJECT), user=nullable(FREE_OBJECT))
WHEN = {"type": ["string", "null"], "maxLength": 64,
        "description": "ISO 8601 date and time; without an offset, in the company's time zone"}
SCHEDULE_BODY = body(body=text(TEXT), contactId=ID, whatsappId=nullable(ID), saveMessage=nullable(BOOL),
                     openTicket=nullable(BOOL), mediaPath=nullable(text(300)), mediaName=nullable(text(255)),
                     sendAt=WHEN, recurrence=enum("none", "minutes", "days", "weeks", "months", "cron"),
                     recurrenceEvery={"type": "integer", "minimum": 1, "maximum": 525_600},
                     cron=nullable(text(255)),
                     recurrenceCount=nullable({"type": "integer", "minimum": 1, "maximum": 100_000}),
                     recurrenceUntil=WHEN, skipToBusinessDay=nullable(BOOL))
SHORT = nullable(obj(id=ID, name=NSTR))
CAMPAIGN = obj({
    "id": ID, "name": STR, "status": STR, "confirmation": nullable(BOOL),
    **{f"message{n}": NSTR for n in range(1, 6)}, **{f"confirmationMessage{n}": NSTR for n in range(1, 6)},
    "mediaPath": NSTR, "mediaName": NSTR, "scheduledAt": NTIME, "startedAt": NTIME, "completedAt": NTIME,
    "pausedAt": NTIME, "pauseReason": NSTR, "paused": BOOL, "companyId": ID, "whatsappId": NID, "contactListId": NID,
    "tagId": NID, "whatsapp": SHORT, "contactList": SHORT, "tag": SHORT, **STAMPS,
    "contactsCount": INT, "delivered": INT, "sent": INT, "confirmationRequested": INT, "confirmed": INT,
}, optional="contactsCount delivered sent confirmationRequested confirmed")
SCHEMAS = {"Campaign": CAMPAIGN}  # shared by the campaign operations (`ref("Campaign")`)
CAMPAIGN_SHOWN = {"allOf": [ref("Campaign"), obj(campaign=ref("Campaign"), valids=INT, delivered=INT,
                                                 confirmationRequested=INT, confirmed=INT)],
                  "description": "the campaign, and its report's counts as ticketz's report screen reads them"}
CAMPAIGN_BODY = body({**{f"message{n}": nullable(text(TEXT)) for n in range(1, 6)},
                      **{f"confirmationMessage{n}": nullable(text(TEXT)) for n in range(1, 6)}},
                     name=text(255, 3), whatsappId=nullable(ID), contactListId=nullable(ID), tagId=nullable(ID),
                     confirmation=nullable(BOOL), scheduledAt=WHEN)
SHIPPING = obj(id=ID, campaignId=ID, number=STR, name=NSTR, contactId=NID, contactListItemId=NID, variant=nullable(INT),
               state=STR, message=NSTR, confirmation=nullable(BOOL), confirmationMessage=NSTR, error=NSTR,
               attempts=INT, messageId=NID, ack=nullable(INT), sentAt=NTIME, deliveredAt=NTIME, readAt=NTIME,
               delivered=BOOL, read=BOOL, repliedAt=NTIME, confirmationRequestedAt=NTIME, confirmedAt=NTIME,
               optedOut=BOOL, createdAt=NTIME, updatedAt=NTIME)
REPORT = obj(total=INT, queued=INT, sending=INT, sent=INT, delivered=INT, read=INT, failed=INT,
             failedReasons=arr(obj(reason=NSTR, count=INT)), skipped=INT, replied=INT, optedOut=INT,
             confirmationRequested=INT, confirmed=INT)
SHIPPING_STATE = query("state", STR, "a shipping state, or delivered, read, replied, confirmed, optedOut")
CAMPAIGN_SETTING = obj(key=STR, value=NSTR, companyId=ID, createdAt=NTIME, updatedAt=NTIME,
                       description="`value` is JSON text (the screen parses it)")

OPERATIONS = [
    queues.get("/queue", "The company's queues", ok=arr(ref("Queue"))),
    queues.post("/queue", "Create a queue", auth="admin", status=201,
                body={**QUEUE_BODY, "required": ["name", "color"]}, body_required=True, ok=ref("Queue"),
                errors=(409,)),
    queues.get("/queue/{queue_id}", "A queue with its menu", ok=ref("Queue")),
    queues.put("/queue/{queue_id}", "Change a queue", auth="admin", body=QUEUE_BODY, ok=ref("Queue"), errors=(409,)),
    queues.delete("/queue/{queue_id}", "Delete a queue", auth="admin", ok=MESSAGE),
    queues.post("/queue/{queue_id}/media-upload", "Attach a greeting file", auth="admin", body=UPLOAD,
                body_type="multipart/form-data", body_required=True, ok=MEDIA_SAVED, errors=(406,)),
    queues.delete("/queue/{queue_id}/media-upload", "Remove the greeting file", auth="admin", ok=MENSAGEM),

    options.get("/queue-options", "Menu options by queue, parent (-1: the first level) or id",
                params=(query("queueId", OPTION_FILTER), query("parentId", {"type": "integer", "minimum": -1}),
                        query("queueOptionId", OPTION_FILTER)), ok=arr(ref("QueueOption"))),
    options.post("/queue-options", "Add a menu option", auth="admin", status=201,
                 body={**OPTION_BODY, "required": ["queueId"]}, body_required=True, ok=ref("QueueOption"),
                 errors=(409,)),
    options.get("/queue-options/{option_id}", "A menu option with its children",
                ok={"allOf": [ref("QueueOption"), obj(options=arr(ref("QueueOption")))]}),
    options.put("/queue-options/{option_id}", "Change a menu option", auth="admin", body=OPTION_BODY,
                ok=ref("QueueOption"), errors=(409,)),
    options.delete("/queue-options/{option_id}", "Delete a menu option and its children", auth="admin", ok=MESSAGE),
    options.post("/queue-options/{option_id}/media-upload", "Attach a file to a menu option", auth="admin",
                 body=UPLOAD, body_type="multipart/form-data", body_required=True, ok=MEDIA_SAVED, errors=(406,)),
    options.delete("/queue-options/{option_id}/media-upload", "Remove its file", auth="admin", ok=MENSAGEM),

    quick.get("/quick-messages", "A page of the quick messages the caller may use", params=(SEARCH, PAGE),
              ok=page_of("records", QUICK)),
    quick.get("/quick-messages/list", "Every quick message the caller may use", params=(SEARCH,), ok=arr(QUICK)),
    quick.post("/quick-messages", "Create a quick message", status=201,
               body={**QUICK_BODY, "required": ["shortcode", "message"]}, body_required=True, ok=QUICK, errors=(409,)),
    quick.get("/quick-messages/{message_id}", "A quick message", ok=QUICK),
    quick.put("/quick-messages/{message_id}", "Change a quick message (its author or an admin)", body=QUICK_BODY,
              ok=QUICK, errors=(409,)),
    quick.delete("/quick-messages/{message_id}", "Delete a quick message (its author or an admin)", ok=MESSAGE),
    quick.post("/quick-messages/{message_id}/media-upload", "Attach a file", body=UPLOAD,
               body_type="multipart/form-data", body_required=True, ok=MEDIA_SAVED, errors=(406,)),
    quick.delete("/quick-messages/{message_id}/media-upload", "Remove its file", ok=MENSAGEM),

    schedules.get("/schedules", "A page of scheduled messages", ok=page_of("schedules", SCHEDULE),
                  params=(SEARCH, PAGE, query("contactId", {"type": "integer", "minimum": 0}),
                          query("userId", {"type": "integer", "minimum": 0}))),
    schedules.post("/schedules", "Schedule a message (once, recurring, or by cron)",
                   body={**SCHEDULE_BODY, "required": ["body", "contactId"]}, body_required=True, ok=SCHEDULE),
    schedules.get("/schedules/{schedule_id}", "A scheduled message", ok=SCHEDULE),
    schedules.put("/schedules/{schedule_id}", "Change a scheduled message", body=SCHEDULE_BODY, ok=SCHEDULE,
                  errors=(409,)),
    schedules.delete("/schedules/{schedule_id}", "Delete a scheduled message", ok=MESSAGE),
    schedules.post("/schedules/{schedule_id}/media-upload", "Attach a file", body=UPLOAD,
                   body_type="multipart/form-data", body_required=True, ok=MEDIA_SAVED, errors=(406, 409)),
    schedules.delete("/schedules/{schedule_id}/media-upload", "Remove its file", ok=MENSAGEM, errors=(409,)),

    campaigns.get("/campaigns", "A page of campaigns", params=(SEARCH, PAGE), ok=page_of("records", ref("Campaign"))),
    campaigns.get("/campaigns/list", "Every campaign", ok=arr(ref("Campaign"))),
    campaigns.post("/campaigns", "Create a campaign (a draft, or scheduled with `scheduledAt`)",
                   body={**CAMPAIGN_BODY, "required": ["name"]}, body_required=True, ok=ref("Campaign"), errors=(409,)),
    campaigns.get("/campaigns/{campaign_id}", "A campaign with its counts", ok=CAMPAIGN_SHOWN),
    campaigns.put("/campaigns/{campaign_id}", "Change a campaign (before it runs)", body=CAMPAIGN_BODY,
                  ok=ref("Campaign"), errors=(409,)),
    campaigns.delete("/campaigns/{campaign_id}", "Delete a campaign", ok=MESSAGE, errors=(409,)),
    campaigns.post("/campaigns/{campaign_id}/cancel", "Cancel a campaign (answers once no send is in flight)",
                   status=204, errors=(409,)),
    campaigns.post("/campaigns/{campaign_id}/restart", "Restart a cancelled or finished campaign", status=204,
                   errors=(409,)),
    campaigns.post("/campaigns/{campaign_id}/pause", "Pause a running campaign",
                   body=body(reason=nullable(text(500))), ok=ref("Campaign"), errors=(409,)),
    campaigns.post("/campaigns/{campaign_id}/resume", "Resume a paused campaign", ok=ref("Campaign"), errors=(409,)),
    campaigns.post("/campaigns/{campaign_id}/media-upload", "Attach a file to the campaign's messages", body=UPLOAD,
                   body_type="multipart/form-data", body_required=True, ok=MEDIA_SAVED, errors=(406, 409)),
    campaigns.delete("/campaigns/{campaign_id}/media-upload", "Remove its file", ok=MENSAGEM, errors=(409,)),
    campaigns.get("/campaigns/{campaign_id}/report", "The campaign's counts and failure reasons", ok=REPORT),
    campaigns.get("/campaigns/{campaign_id}/shippings", "A page of the campaign's sends", params=(SHIPPING_STATE, PAGE),
                  ok=page_of("records", SHIPPING)),
    campaigns.get("/campaigns/{campaign_id}/export", "The campaign's sends as CSV or XLSX",
                  params=(SHIPPING_STATE, query("format", enum("csv", "xlsx"))), ok_type="text/csv",
                  ok={"type": "string"}),
    campaigns.get("/campaign-settings", "The campaign settings (defaults until saved)", ok=arr(CAMPAIGN_SETTING)),
    campaigns.post("/campaign-settings", "Save campaign settings",
                   body=body(settings=obj(messageInterval=INT, longerIntervalAfter=INT, greaterInterval=INT,
                                          variables=arr(obj(key=STR, value=STR)), businessHoursOnly=BOOL,
                                          pacing={"anyOf": [enum("on", "off"), BOOL]}, stopWords=STR,
                                          optOutReply=STR, required=[]), required="settings"),
                   body_required=True, ok=arr(CAMPAIGN_SETTING)),
]
