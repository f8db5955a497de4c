"""The spec of WhatsApp connections, their sessions, the sandbox network and the realtime endpoint
(api/whatsapp.py, api/sandbox.py, api/realtime/routes.py)."""

from __future__ import annotations

from api.openapi.components import NSTR
from api.openapi.dsl import (
    BOOL,
    FREE_OBJECT,
    ID,
    INT,
    MESSAGE,
    NUM,
    STR,
    Declare,
    arr,
    body,
    enum,
    nullable,
    obj,
    query,
    ref,
    text,
)

whatsapp = Declare("whatsapp", tag="Connections")
sandbox = Declare("sandbox", tag="Sandbox")
realtime = Declare("realtime", tag="Realtime")

TEXT = 10_000
MINUTES_A_YEAR = 525_600
NUMBER = {"type": "string", "maxLength": 32, "description": "a phone number with country code (8-15 digits)"}
CONNECTION_BODY = body(
    name=text(255), channel=enum("whatsapp", "sandbox"), isDefault=BOOL,
    greetingMessage=nullable(text(TEXT)), farewellMessage=nullable(text(TEXT)),
    complationMessage=nullable(text(TEXT)), outOfHoursMessage=nullable(text(TEXT)),
    ratingMessage=nullable(text(TEXT)), transferMessage=nullable(text(TEXT)),
    expiresInactiveMessage=nullable(text(TEXT)),
    token=nullable({**text(255), "description": "the API token (16+ characters; blank: keep / generate)"}),
    queueIds=arr(ID, maxItems=500),
    expiresTicket=nullable({"type": "integer", "minimum": 0, "maximum": MINUTES_A_YEAR}),
    maxUseBotQueues=nullable({"type": "integer", "minimum": 0, "maximum": 100}),
    timeUseBotQueues=nullable({"type": "integer", "minimum": 0, "maximum": MINUTES_A_YEAR}),
    schedules=nullable(arr(FREE_OBJECT, description="business hours, when scheduleType is connection")),
)
SESSION_STATE = obj(message=STR, status=STR)
SANDBOX_STATE = obj(connectionId=INT, paired=BOOL, running=BOOL, connected=BOOL, jid=NSTR, number=NSTR,
                    pushName=NSTR, waitingForScan=BOOL, qr=NSTR, qrIndex=INT, pairingCode=NSTR,
                    pendingInbound=INT, pendingReceipts=INT, queued=INT, unsettled=INT, delivered=INT,
                    journaled=BOOL, outboxKept=BOOL, latency=NUM, slowAnswer=NUM, sent=INT,
                    optional="", description="the simulated network's view of the line (more counters may follow)")
REGISTRY = obj(notOnWhatsapp=arr(STR), notOnWhatsappPrefixes=arr(STR), checks=INT, numbersChecked=INT,
               largestCheck=INT)
TARGET = {"type": "string", "maxLength": 128}

OPERATIONS = [
    whatsapp.get("/whatsapp", "The company's connections (`token` for admins only)", ok=arr(ref("Whatsapp"))),
    whatsapp.post("/whatsapp", "Create a connection and start its session", auth="admin", status=201,
                  body={**CONNECTION_BODY, "required": ["name"]}, body_required=True, ok=ref("Whatsapp"),
                  errors=(409,), feeds=("/whatsappsession", "/sandbox")),
    whatsapp.get("/whatsapp/{whatsapp_id}", "A connection", ok=ref("Whatsapp")),
    whatsapp.put("/whatsapp/{whatsapp_id}", "Change a connection", auth="admin", body=CONNECTION_BODY,
                 ok=ref("Whatsapp"), errors=(409,)),
    whatsapp.delete("/whatsapp/{whatsapp_id}", "Delete a connection (its session stops)", auth="admin", ok=MESSAGE),
    whatsapp.get("/whatsapp/{whatsapp_id}/qrcode", "The QR code being shown, as SVG or PNG",
                 params=(query("format", enum("svg", "png")),), ok_type="image/svg+xml",
                 ok={"type": "string"}, description="404 `ERR_NO_QRCODE` when the connection shows none."),
    whatsapp.post("/whatsappsession/{whatsapp_id}", "Start the connection's session", auth="admin",
                  ok=SESSION_STATE),
    whatsapp.put("/whatsappsession/{whatsapp_id}", "Start over with a new QR code", auth="admin", ok=SESSION_STATE),
    whatsapp.delete("/whatsappsession/{whatsapp_id}", "Log out: unlink the device", auth="admin", ok=MESSAGE),
    whatsapp.post("/whatsappsession/{whatsapp_id}/pairing-code", "A pairing code to type on the phone",
                  auth="admin", body=body(number=NUMBER, required="number"), body_required=True,
                  ok=obj(code=STR), errors=(409,)),

    sandbox.get("/sandbox/{whatsapp_id}", "The simulated network's state of a sandbox connection", auth="admin",
                ok=SANDBOX_STATE),
    sandbox.post("/sandbox/{whatsapp_id}/pair", "Scan the QR code (pairs the line as `number`)", auth="admin",
                 body=body(number=nullable(NUMBER)), ok=obj(jid=STR, number=STR), errors=(409,)),
    sandbox.post("/sandbox/{whatsapp_id}/inbound", "A contact sends a message to the line", auth="admin",
                 body=body(
                     {"from": {"type": "string", "maxLength": 64, "description": "the sender's number or JID"}},
                     name=nullable(text(255)), lid=nullable(text(128)), id=nullable(text(128)),
                     body={"type": "string", "maxLength": 65_536}, quotedId=nullable(text(128)),
                     timestamp={"description": "seconds since the epoch or ISO 8601"},
                     media=obj(kind=enum("image", "video", "audio", "ptt", "document", "sticker"),
                               mimetype=text(255), filename=nullable(text(255)), base64=STR,
                               optional="filename"),
                     group=obj(id=text(128), name=text(255), optional="name"),
                     reaction=obj(targetId=TARGET, emoji=text(32), optional="emoji"),
                     edit=obj(targetId=TARGET, body={"type": "string", "maxLength": 65_536}),
                     revoke=obj(targetId=TARGET), required="from"),
                 body_required=True, ok=obj(id=STR), errors=(409,)),
    sandbox.get("/sandbox/{whatsapp_id}/outbox", "What WhatsApp accepted through the line, oldest first",
                auth="admin", params=(query("messageId", {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"}),),
                ok=arr(obj(id=STR, attempts=INT, duplicates=INT, optional="",
                           description="one sent message (its content fields vary with its kind)"))),
    sandbox.post("/sandbox/{whatsapp_id}/ack", "The contact's phone acknowledges a message", auth="admin",
                 body=body(id=TARGET, ack=enum("delivered", "read"), required="id ack"), body_required=True,
                 ok=obj(id=STR, ack=STR), errors=(409,)),
    sandbox.put("/sandbox/{whatsapp_id}/registry", "Which numbers have no WhatsApp account", auth="admin",
                body=body(notOnWhatsapp=arr(STR), notOnWhatsappPrefixes=arr(STR)), ok=REGISTRY),
    sandbox.post("/sandbox/{whatsapp_id}/fault", "Inject a fault into the line", auth="admin",
                 body=body(kind=enum("disconnect", "logout", "ban", "send_failure", "latency", "slow_answer"),
                           redeliver={"type": "integer", "minimum": 0, "maximum": 1000},
                           count={"type": "integer", "minimum": 1, "maximum": 100_000}, reason=text(500),
                           seconds={"type": "number", "minimum": 0, "maximum": 60}, required="kind"),
                 body_required=True, ok=obj(kind=STR), errors=(409,)),

    realtime.get("/socket.io", "Engine.IO 4 long-polling (the Socket.IO transport; `/socket.io/` too)",
                 auth="public", ok_type="text/plain", ok={"type": "string"},
                 params=(query("EIO", {"const": "4"}, required=True), query("transport", enum("polling", "websocket")),
                         query("sid", STR, "the session, after the handshake")),
                 description="A handshake (no `sid`) answers the open packet; with a `sid` it waits for packets "
                             "up to the ping interval. The same path upgrades to a WebSocket. Refusals answer "
                             "Engine.IO's `{code, message}` (not `{error, message}`). See the README's "
                             "\"Realtime: Socket.IO\".",
                 extra_responses=((400, "a refused handshake or unknown session (Engine.IO's shape)",
                                   obj(code=INT, message=STR)),
                                  (403, "refused (Engine.IO's shape)", obj(code=INT, message=STR)),
                                  (429, "too many sessions from this client (Engine.IO's shape)",
                                   obj(code=INT, message=STR)),
                                  (503, "the server is full (Engine.IO's shape)", obj(code=INT, message=STR)))),
    realtime.post("/socket.io", "Engine.IO 4 long-polling: the client's packets", auth="public",
                  params=(query("EIO", {"const": "4"}, required=True), query("transport", enum("polling")),
                          query("sid", STR, required=True)),
                  body={"type": "string"}, body_type="text/plain", ok_type="text/plain", ok={"const": "ok"},
                  extra_responses=((400, "an unknown session or a bad payload (Engine.IO's shape)",
                                    obj(code=INT, message=STR)),
                                   (503, "the server is full (Engine.IO's shape)", obj(code=INT, message=STR)))),
]

