"""The spec of contacts, their imports and exports, and contact lists (api/contacts.py, contact_lists.py,
imports.py)."""

from __future__ import annotations

from api.openapi.components import NSTR, STAMPS
from api.openapi.dsl import (
    BOOL,
    FILE,
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

contacts = Declare("contacts", tag="Contacts")
lists = Declare("contact_lists", tag="Contact lists")

NUMBER = {"type": "string", "maxLength": 64, "description": "a phone number with country code (8-15 digits)"}
EXTRA_INFO = arr(obj(name=text(255, 1), value=nullable(text(10_000))), maxItems=100,
                 description="custom fields, distinct names")
CONTACT_BODY = body(name=text(255), number={"anyOf": [NUMBER, {"type": "integer", "minimum": 0}]},
                    email=nullable(text(255)), extraInfo=nullable(EXTRA_INFO))
IMPORT_REPORT = obj(processed=INT, created=INT, merged=INT, rejected=INT, total=INT, kind=STR,
                    errors=arr(obj(row=INT, field=NSTR, value=NSTR, message=STR)), errorsShown=INT,
                    description="what the import did; `errors` are the first rejected rows")
CONTACT_REPORT = {"allOf": [IMPORT_REPORT, obj(updated=INT, errorCount=INT)]}
SPREADSHEET = multipart({"file": FILE})
EXPORT = query("format", enum("csv", "xlsx"))
CONTACT_LIST = obj({"id": ID, "name": STR, "companyId": ID, "contactsCount": INT, **STAMPS})
ITEM = obj({"id": ID, "name": STR, "number": STR, "email": NSTR, "isWhatsappValid": nullable(BOOL),
            "contactListId": ID, "companyId": ID, **STAMPS})
ITEM_BODY = body(name=text(255), number=NUMBER, email=nullable(text(255)), contactListId=ID)
LIST_ID = query("contactListId", ID, "the list's id", required=True)

OPERATIONS = [
    contacts.get("/contacts", "A page of contacts (name, number or email search)", params=(SEARCH, PAGE),
                 ok=page_of("contacts", ref("Contact"))),
    contacts.get("/contacts/list", "Contacts by name (the pickers)", params=(query("name", text(255)),),
                 ok=arr(ref("Contact"))),
    contacts.post("/contacts", "Create a contact", status=201, body={**CONTACT_BODY, "required": ["name", "number"]},
                  body_required=True, ok=ref("Contact"), errors=(409,)),
    contacts.post("/contacts/findOrInsert", "The contact with this number, made when missing (200 or 201)",
                  status=201, body=body(name=text(255), number=NUMBER, required="number"), body_required=True,
                  ok=ref("Contact"), extra_responses=((200, "found", ref("Contact")),)),
    contacts.get("/contacts/{contact_id}", "A contact", ok=ref("Contact")),
    contacts.put("/contacts/{contact_id}", "Change a contact", body=CONTACT_BODY, ok=ref("Contact"), errors=(409,)),
    contacts.delete("/contacts/{contact_id}", "Delete a contact", auth="admin", ok=MESSAGE),
    contacts.post("/contacts/upload", "Import contacts from a CSV or XLSX (`file`)", auth="admin", body=SPREADSHEET,
                  body_type="multipart/form-data", body_required=True, ok=CONTACT_REPORT),
    contacts.post("/contacts/importCsv", "Import contacts (ticketz's field `contacts`, or `file`)", auth="admin",
                  body=multipart({"contacts": FILE, "file": FILE}, required=()), body_type="multipart/form-data",
                  body_required=True, ok=CONTACT_REPORT),
    contacts.post("/contacts/import", "Import contacts from a file, as /contacts/upload", auth="admin",
                  body=SPREADSHEET, body_type="multipart/form-data", body_required=True, ok=CONTACT_REPORT,
                  extra_responses=((501, "JSON `{whatsappId}` (import the phone's address book) is not supported",
                                    ref("Error")),)),
    contacts.get("/contacts/export", "Every contact as CSV or XLSX", auth="admin", params=(EXPORT,),
                 ok_type="text/csv", ok={"type": "string"}),
    contacts.get("/contacts/exportCsv", "Every contact as CSV (ticketz's columns)", auth="admin",
                 params=(query("delimiter", enum("semicolon", "comma")),), ok_type="text/csv", ok={"type": "string"}),

    lists.get("/contact-lists", "A page of contact lists", params=(SEARCH, PAGE), ok=page_of("records", CONTACT_LIST)),
    lists.get("/contact-lists/list", "Every contact list", params=(SEARCH,), ok=arr(CONTACT_LIST)),
    lists.post("/contact-lists", "Create a contact list", status=201, body=body(name=text(255, 3), required="name"),
               body_required=True, ok=CONTACT_LIST, errors=(409,)),
    lists.get("/contact-lists/{list_id}", "A contact list", ok=CONTACT_LIST),
    lists.put("/contact-lists/{list_id}", "Rename a contact list", body=body(name=text(255, 3)), ok=CONTACT_LIST,
              errors=(409,)),
    lists.delete("/contact-lists/{list_id}", "Delete a contact list", ok=MESSAGE),
    lists.post("/contact-lists/{list_id}/upload", "Import a list's contacts from CSV or XLSX (`file`)",
               body=SPREADSHEET, body_type="multipart/form-data", body_required=True, ok=IMPORT_REPORT),
    lists.get("/contact-lists/{list_id}/export", "A list's contacts as CSV or XLSX", auth="admin", params=(EXPORT,),
              ok_type="text/csv", ok={"type": "string"}),
    lists.post("/contact-lists/{list_id}/check", "Check the list's numbers on WhatsApp now", auth="admin",
               status=202, body=body(recheck=BOOL), ok=obj(contactListId=ID, waiting=INT)),
    lists.get("/contact-list-items", "A page of a list's contacts", auth="admin", params=(LIST_ID, SEARCH, PAGE),
              ok=page_of("contacts", ITEM)),
    lists.get("/contact-list-items/list", "Every contact of a list", auth="admin",
              params=(query("contactListId", ID), SEARCH), ok=arr(ITEM)),
    lists.post("/contact-list-items", "Add a contact to a list", auth="admin", status=201,
               body={**ITEM_BODY, "required": ["name", "number", "contactListId"]}, body_required=True, ok=ITEM,
               errors=(409,)),
    lists.get("/contact-list-items/{item_id}", "A list's contact", auth="admin", ok=ITEM),
    lists.put("/contact-list-items/{item_id}", "Change a list's contact", auth="admin", body=ITEM_BODY, ok=ITEM,
              errors=(409,)),
    lists.delete("/contact-list-items/{item_id}", "Remove a contact from its list", auth="admin", ok=MESSAGE),
]

