"""The spec of the platform's content and the company's records: announcements, help videos, file lists,
ratings, stored media (api/announcements.py, helps.py, files.py, ratings.py, media.py)."""

from __future__ import annotations

from api.openapi.dsl import (
    BOOL,
    FILE,
    ID,
    MESSAGE,
    NUM,
    PAGE,
    SEARCH,
    STR,
    Declare,
    arr,
    body,
    multipart,
    nullable,
    obj,
    page_of,
    query,
    ref,
    text,
)

announcements = Declare("announcements", tag="Announcements")
helps = Declare("helps", tag="Help videos")
files = Declare("files", tag="File lists")
ratings = Declare("ratings", tag="Ratings")
media = Declare("media", tag="Media")

MENSAGEM = obj(mensagem=STR, description="the family's acknowledgement of an upload or removal")
ANNOUNCEMENT_BODY = body(title=text(255), text=text(10_000), priority={"type": "integer", "minimum": 1, "maximum": 3},
                         status={**BOOL, "description": "false: a draft"})
HELP_BODY = body({"title": text(255, 3), "description": nullable(text(10_000)),
                  "video": nullable({**text(2000), "description": "a YouTube video id or link"}),
                  "link": nullable({**text(2000), "description": "an http(s) URL"})})
FILE_BODY = body(name=text(255, 3), message=nullable(text(10_000)),
                 options=arr(obj(id=ID, name=nullable(text(1024)), optional="id name"), maxItems=100,
                             description="the list's options; on an edit, those without `id` are new"))
ITEM = {"ok": None}

OPERATIONS = [
    announcements.get("/announcements", "A page of announcements (the super admin's: drafts too)",
                      params=(SEARCH, PAGE), ok=page_of("records", ref("Announcement"))),
    announcements.get("/announcements/list", "The announcements shown to users", params=(SEARCH,),
                      ok=arr(ref("Announcement"))),
    announcements.get("/announcements/{announcement_id}", "An announcement", ok=ref("Announcement")),
    announcements.post("/announcements", "Create an announcement", auth="super",
                       body={**ANNOUNCEMENT_BODY, "required": ["title", "text"]}, body_required=True,
                       ok=ref("Announcement")),
    announcements.put("/announcements/{announcement_id}", "Change an announcement", auth="super",
                      body=ANNOUNCEMENT_BODY, ok=ref("Announcement")),
    announcements.delete("/announcements/{announcement_id}", "Delete an announcement", auth="super", ok=MESSAGE),
    announcements.post("/announcements/{announcement_id}/media-upload", "Attach an image or file", auth="super",
                       body=multipart({"file": FILE}), body_type="multipart/form-data", body_required=True,
                       ok=MENSAGEM, errors=(406,)),
    announcements.delete("/announcements/{announcement_id}/media-upload", "Remove its file", auth="super",
                         ok=MENSAGEM),

    helps.get("/helps", "A page of help videos", params=(SEARCH, PAGE), ok=page_of("records", ref("Help"))),
    helps.get("/helps/list", "Every help video", ok=arr(ref("Help"))),
    helps.get("/helps/{help_id}", "A help video", ok=ref("Help")),
    helps.post("/helps", "Create a help video", auth="super", body={**HELP_BODY, "required": ["title"]},
               body_required=True, ok=ref("Help")),
    helps.put("/helps/{help_id}", "Change a help video", auth="super", body=HELP_BODY, ok=ref("Help")),
    helps.delete("/helps/{help_id}", "Delete a help video", auth="super", ok=MESSAGE),

    files.get("/files", "A page of file lists", params=(SEARCH, PAGE), ok=page_of("files", ref("FileList"))),
    files.get("/files/list", "Every file list", params=(SEARCH,), ok=arr(ref("FileList"))),
    files.get("/files/{file_id}", "A file list with its options", ok=ref("FileList")),
    files.post("/files", "Create a file list", body={**FILE_BODY, "required": ["name"]}, body_required=True,
               ok=ref("FileList"), errors=(409,), feeds=("/files/uploadList",)),
    files.put("/files/{file_id}", "Change a file list and its options", auth="admin", body=FILE_BODY,
              ok=ref("FileList"), errors=(409,)),
    files.delete("/files/{file_id}", "Delete a file list", ok=MESSAGE),
    files.delete("/files", "Delete every file list", auth="admin", ok=MESSAGE),
    files.post("/files/uploadList/{file_id}", "Upload the options' files (`files`, with `id` per file)",
               body=multipart({"files": arr(FILE), "id": arr(STR), "mediaType": arr(STR), "name": arr(STR)},
                              required=()),
               body_type="multipart/form-data", ok=MENSAGEM,
               description="All or nothing: a bad field or an empty file writes nothing."),

    ratings.get("/ratings", "A page of the contacts' ratings, with their average", auth="admin",
                params=(PAGE, query("userId", ID), query("queueId", ID),
                        query("rate", {"type": "integer", "minimum": 1, "maximum": 5}),
                        query("dateFrom", {"type": "string", "format": "date"}, "YYYY-MM-DD, the company's day"),
                        query("dateTo", {"type": "string", "format": "date"}, "YYYY-MM-DD, included")),
                ok={"allOf": [page_of("records", ref("Rating")), obj(average=nullable(NUM))]}),

    media.get("/media/{token}/{name}", "A stored media file (messages, queue greetings, …)", auth="public",
              ok_type="application/octet-stream", ok=FILE,
              description="The token is the capability: whoever has the link may load the file."),
    media.get("/public/{token}/{name}", "A public file (logos, announcements' images)", auth="public",
              ok_type="application/octet-stream", ok=FILE),
]
