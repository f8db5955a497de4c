"""The spec of the accounts side: version and health probes, auth, users, companies, plans, invoices, settings
(api/version.py, health.py, auth_routes.py, users.py, companies.py, plans.py, invoices.py, settings.py)."""

from __future__ import annotations

from api.openapi.components import NID, NSTR, QUEUE_SHORT
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

RECURRENCE = enum("MENSAL", "BIMESTRAL", "TRIMESTRAL", "SEMESTRAL", "ANUAL")
PASSWORD = {"type": "string", "minLength": 6, "maxLength": 72}
EMAIL = {"type": "string", "format": "email", "maxLength": 255}
VERSION = obj(name=STR, version=STR, tagName=STR, commitHash=STR, commitTimestamp=STR, branchName=STR,
              buildTimestamp=STR)
SESSION = obj(token={**STR, "description": "the access token (JWT)"},
              user={**obj(company=obj(settings=arr(obj(key=STR, value=NSTR, companyId=ID)))), "allOf": [ref("User")],
                    "description": "the user; `company.settings` is `[{key, value, companyId}]`"})

version = Declare("version", tag="Service")
health = Declare("health", tag="Service")
auth = Declare("auth", tag="Auth")
users = Declare("users", tag="Users")
companies = Declare("companies", tag="Companies")
plans = Declare("plans", tag="Plans")
invoices = Declare("invoices", tag="Invoices")
settings = Declare("settings", tag="Settings")

USER_BODY = body(
    name=text(255), email=EMAIL, password=PASSWORD, profile=enum("admin", "user"),
    allTicket=enum("enable", "disable"), whatsappId=nullable(ID), queueIds=arr(ID, maxItems=500), super=BOOL,
    maxTickets=nullable({"type": "integer", "minimum": 0, "maximum": 100_000}),
)
COMPANY_BODY = body(
    name=text(255), email=nullable(EMAIL), phone=nullable(text(64)), document=nullable(text(64)), status=BOOL,
    dueDate=nullable({"type": "string", "format": "date"}), password=PASSWORD, adminName=text(255),
    connectionLimit={"type": "integer", "minimum": 0, "maximum": 100_000}, planId=ID, recurrence=RECURRENCE,
)
LIMIT = {"type": "integer", "minimum": 0, "maximum": 1_000_000}
PLAN_BODY = body(
    name=text(255, 1), users=LIMIT, connections=LIMIT, queues=LIMIT, recurrence=RECURRENCE, isPublic=BOOL,
    value={"anyOf": [{"type": "number", "minimum": 0, "maximum": 9_999_999_999.99}, STR],
           "description": "a number, or text in pt-BR form (\"1.234,50\")"},
    **{name: BOOL for name in ("useCampaigns", "useSchedules", "useInternalChat", "useExternalApi", "useKanban",
                               "useOpenAi", "useIntegrations")},
)
CREATED_COMPANY = {"allOf": [ref("Company"), obj(adminId={**NID, "description": "null: made without an admin "
                                                                             "(no password given)"})]}

OPERATIONS = [
    version.get("/", "The service's name and version", auth="public", ok=VERSION),
    version.get("/version", "The service's name and version", auth="public", ok=VERSION),
    health.get("/health", "Liveness, with runtime statistics", auth="public",
               ok=obj({"status": enum("ok", "degraded"), "version": STR, "database": FREE_OBJECT, "reason": STR},
                      optional="reason", description="plus the supervisors' statistics (free-form by design)")),
    health.get("/ready", "Readiness: the database answers with the expected schema", auth="public",
               ok=obj(status={"const": "ready"}, database={"const": "ok"}, schema=INT),
               extra_responses=((503, "not ready: the database is unreachable or on another schema version",
                                 obj(status={"const": "unavailable"}, database=STR, optional="")),)),

    auth.post("/auth/login", "Log in: an access token, the user, and the refresh cookie `jrt`", auth="public",
              body=body(email=text(255), password=text(1024), required="email password"), body_required=True,
              ok=SESSION, errors=(401, 403, 429)),
    auth.post("/auth/refresh_token", "A new access token from the refresh cookie (or `{refreshToken}`)",
              auth="public", body=body(refreshToken=STR), ok=SESSION, errors=(401,),
              description="Rotates the refresh cookie; a reused refresh token revokes its login."),
    auth.delete("/auth/logout", "Log out: revokes this login's refresh token and clears the cookie", status=204),
    auth.get("/auth/me", "The current user", ok=ref("User")),

    users.get("/users", "A page of the company's users", auth="admin", params=(SEARCH, PAGE),
              ok=page_of("users", ref("User"))),
    users.get("/users/list", "Every user of the company, short form",
              ok=arr(obj(id=ID, name=STR, profile=STR, online=BOOL, queues=arr(QUEUE_SHORT)))),
    users.post("/users", "Create a user", auth="admin", status=201, body=USER_BODY, body_required=True,
               ok=ref("User"), errors=(409,)),
    users.get("/users/{user_id}", "A user (admins: any of the company; users: themselves)", ok=ref("User")),
    users.put("/users/{user_id}", "Change a user (admins; users change their own name, email, password)",
              body=USER_BODY, ok=ref("User"), errors=(409,)),
    users.delete("/users/{user_id}", "Delete a user", auth="admin", ok=MESSAGE),
    users.post("/users/{user_id}/logout", "Revoke every login of a user", auth="admin",
               ok=obj(userId=ID, revoked=INT)),

    companies.get("/companies", "A page of companies", auth="super", params=(SEARCH, PAGE),
                  ok=page_of("companies", ref("Company"))),
    companies.get("/companies/list", "Every company", auth="super", ok=arr(ref("Company"))),
    companies.post("/companies", "Create a company with its admin", auth="super", status=201,
                   body={**COMPANY_BODY, "required": ["name"]}, body_required=True, ok=CREATED_COMPANY,
                   errors=(409,), feeds=("/companies/listPlan",)),
    companies.post("/companies/cadastro", "Public signup: a company on a public plan, with its admin",
                   auth="public", status=201, errors=(403, 409, 429), body_required=True,
                   body=body(name=text(255, 2), email=EMAIL, phone=nullable(text(64)), password=PASSWORD, planId=ID,
                             required="name email password planId"),
                   ok=CREATED_COMPANY, description="Only when the platform setting `allowSignup` is `enabled`."),
    companies.get("/companies/listPlan/{company_id}", "A company with its plan (its own; any for the super admin)",
                  ok=obj({"id": ID, "name": STR, "email": NSTR, "phone": NSTR, "status": nullable(BOOL),
                          "dueDate": NSTR, "recurrence": NSTR, "planId": NID, "createdAt": NSTR,
                          "plan": ref("Plan")}, optional="plan")),
    companies.get("/companies/{company_id}", "A company (its own; any for the super admin)", ok=ref("Company")),
    companies.put("/companies/{company_id}", "Change a company", auth="super", body=COMPANY_BODY,
                  ok={"allOf": [ref("Company"), obj(connectionLimit=INT)]}, errors=(409,)),
    companies.put("/companies/{company_id}/schedules", "Set the company's business hours", auth="admin",
                  body=body(schedules=arr(FREE_OBJECT), required="schedules"), body_required=True,
                  ok=ref("Company")),
    companies.delete("/companies/{company_id}", "Delete a company and everything it holds", auth="super",
                     ok=MESSAGE),

    plans.get("/plans", "A page of plans", auth="super", params=(SEARCH, PAGE), ok=page_of("plans", ref("Plan"))),
    plans.get("/plans/list", "The public plans (signup screen)", auth="public", ok=arr(ref("Plan"))),
    plans.get("/plans/listpublic", "The public plans (signup screen)", auth="public", ok=arr(ref("Plan"))),
    plans.get("/plans/all", "Every plan", ok=arr(ref("Plan"))),
    plans.get("/plans/{plan_id}", "A plan (public ones without a token)", auth="optional", ok=ref("Plan")),
    plans.post("/plans", "Create a plan", auth="super", status=201, body={**PLAN_BODY, "required": ["name"]},
               body_required=True, ok=ref("Plan"), errors=(409,)),
    plans.put("/plans/{plan_id}", "Change a plan", auth="super", body=PLAN_BODY, ok=ref("Plan"), errors=(409,)),
    plans.delete("/plans/{plan_id}", "Delete a plan no company is on", auth="super", ok=MESSAGE, errors=(409,)),

    invoices.get("/invoices", "A page of invoices (the super admin's: every company's, or `companyId`'s)",
                 params=(SEARCH, PAGE, query("companyId", ID, "super admin: one company's")),
                 ok=page_of("invoices", ref("Invoice"))),
    invoices.get("/invoices/all", "Every invoice of the caller's company", params=(SEARCH,),
                 ok=arr(ref("Invoice"))),
    invoices.get("/invoices/{invoice_id}", "An invoice", ok=ref("Invoice")),
    invoices.put("/invoices/{invoice_id}", "Set an invoice's status (`paid` moves the company's due date)",
                 auth="super", body=body(status=enum("open", "paid", "cancelled"), required="status"),
                 body_required=True, ok=ref("Invoice")),

    settings.get("/settings", "The company's settings (and the platform's, for the super admin)",
                 ok=arr(ref("Setting"))),
    settings.get("/settings/{key}", "One setting's value", ok=NSTR),
    settings.put("/settings/{key}", "Set a setting", auth="admin",
                 body=body(value={"description": "text; some keys take a number or a JSON list"}, required="value"),
                 body_required=True, ok=ref("Setting")),
    settings.get("/public-settings/{key}", "A public platform setting (name, logos), null for others",
                 auth="public", ok=NSTR),
    settings.post("/settings/logo", "Upload a logo (sets appLogo{mode}); answers its value", auth="super",
                  body=multipart({"file": FILE, "mode": enum("Light", "Dark", "Favicon")}, required=("file", "mode")),
                  body_type="multipart/form-data", body_required=True, ok=STR, errors=(406,)),
    settings.post("/settings/publicFile", "Upload a public file for a platform setting; answers its value",
                  auth="super", body=multipart({"file": FILE, "settingKey": STR}, required=("file", "settingKey")),
                  body_type="multipart/form-data", body_required=True, ok=STR, errors=(406,)),
]
