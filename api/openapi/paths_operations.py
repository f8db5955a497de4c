"""The spec of the operator's side: outbound webhooks (api/webhooks.py), Prometheus metrics (api/metrics.py)
and the live supervision view (api/runtime_view.py)."""

from __future__ import annotations

from api.openapi.components import NSTR, NTIME
from api.openapi.dsl import (
    ANY,
    BOOL,
    ID,
    INT,
    NUM,
    PAGE,
    STR,
    TIME,
    Declare,
    arr,
    body,
    enum,
    nullable,
    obj,
    page_of,
    query,
    ref,
    text,
)
from storage.webhooks import EVENTS, TEST_EVENT

webhooks = Declare("webhooks", tag="Webhooks")
metrics = Declare("metrics", tag="Operations")
runtime = Declare("runtime", tag="Operations")

WEBHOOK = obj({"description": STR},  # a property: `description=` is the schema's own
              id=ID, companyId=ID, url=STR, events=arr(enum(*EVENTS)), enabled=BOOL,
              disabledReason={**NSTR, "description": "why it was turned off (failing for WEBHOOK_DISABLE_AFTER)"},
              disabledAt=NTIME, failingSince=NTIME, createdAt=TIME, updatedAt=TIME)
# the secret is shown by the creation and the rotation only: never by a read
WITH_SECRET = {"allOf": [ref("Webhook"), obj(secret={**STR, "description": "the Standard Webhooks signing secret "
                                                                              "(`whsec_…`), shown only here"})]}
DELIVERY = obj(id=ID, webhookId=ID, messageId={**STR, "description": "`msg_…`: the `webhook-id` header"},
               event=enum(*EVENTS, TEST_EVENT), status=enum("pending", "delivered", "failed"), attempts=INT,
               lastStatusCode=nullable(INT), lastResponse={**NSTR, "description": "the receiver's answer (excerpt)"},
               lastError=NSTR, lastAttemptAt=NTIME,
               nextAttemptAt={**NTIME, "description": "pending deliveries only"}, createdAt=TIME,
               finishedAt=NTIME, payload={**ANY, "description": "the event's JSON payload as posted"})
SCHEMAS = {"Webhook": WEBHOOK, "WebhookDelivery": DELIVERY}
URL = {**text(2000), "description": "an http(s) URL; its host must resolve to public addresses unless "
                                   "WEBHOOK_ALLOW_PRIVATE=on (else 400 `ERR_WEBHOOK_URL`)"}
WEBHOOK_BODY = body({"description": nullable(text(500))}, url=URL,
                    events=arr(enum(*EVENTS), minItems=1, maxItems=len(EVENTS)), enabled=BOOL)
MESSAGE = obj(message=STR)

# /admin/runtime: api/runtime.py's snapshot plus the timers; the parts' sections vary with what runs
RUNTIME = obj({"generatedAt": TIME, "version": STR, "pid": INT, "startedAt": TIME, "uptimeSeconds": NUM,
               "supervision": {"type": "object", "description": "the supervision tree: supervisors and children"},
               "database": {"type": "object", "description": "the pool's figures"},
               "broker": {"type": "object", "description": "subscribers, lagged ones"},
               "timers": {"type": "object", "description": "`{due, pending, claimed, byKind: [...]}`, or `{error}` "
                                                           "when the database did not answer in time"}},
              description="the process's live state; further sections (writer, scheduler, realtime, …) per part")

OPERATIONS = [
    webhooks.get("/webhooks", "A page of the company's webhooks (20 a page)", auth="admin", params=(PAGE,),
                 ok=page_of("webhooks", ref("Webhook"))),
    webhooks.post("/webhooks", "Create a webhook; the answer shows its secret, once", auth="admin",
                  body={**WEBHOOK_BODY, "required": ["url", "events"]}, body_required=True, status=201,
                  ok=WITH_SECRET),
    webhooks.get("/webhooks/{webhook_id}", "A webhook (without its secret)", auth="admin", ok=ref("Webhook")),
    webhooks.put("/webhooks/{webhook_id}", "Change a webhook (`enabled: true` clears a disabled reason)",
                 auth="admin", body=WEBHOOK_BODY, ok=ref("Webhook")),
    webhooks.delete("/webhooks/{webhook_id}", "Delete a webhook and its deliveries", auth="admin", ok=MESSAGE),
    webhooks.post("/webhooks/{webhook_id}/rotate-secret", "A new secret, shown once (pending deliveries are "
                  "signed with it)", auth="admin", ok=WITH_SECRET),
    webhooks.post("/webhooks/{webhook_id}/test", "Queue a `webhook.test` delivery", auth="admin", status=202,
                  ok=ref("WebhookDelivery")),
    webhooks.get("/webhooks/{webhook_id}/deliveries", "A page of its deliveries, newest first", auth="admin",
                 params=(query("status", enum("pending", "delivered", "failed")), PAGE),
                 ok=page_of("deliveries", ref("WebhookDelivery"))),

    metrics.get("/metrics", "Prometheus metrics (text exposition format)", auth="metrics", ok_type="text/plain",
                ok={"type": "string"},
                description="Open unless `METRICS_TOKEN` is set; then `Authorization: Bearer <METRICS_TOKEN>` "
                            "(401 `ERR_METRICS_TOKEN` otherwise)."),
    runtime.get("/admin/runtime", "The live supervision view (JSON, or an HTML page for browsers)", auth="super",
                params=(query("format", enum("json", "html"),
                              "without it, the `Accept` header chooses (`*/*`: JSON)"),),
                ok=RUNTIME, other_ok=(("text/html", {"type": "string"}),), errors=(503,),
                description="A browser's request for HTML without `Authorization` gets the sign-in page (200, "
                            "no data). 503 `ERR_NOT_RUNNING` when the supervision tree does not run."),
]
