"""Every request a family frontend made on its walk (tests/contract/walk_<frontend>.json), replayed.

Same method, path, query and body, with the walk's ids replaced by this world's; the answer must succeed
and carry every field the frontend was shown, wherever that field's parent is present. CI has no frontend
build: this is what keeps the contract between walks. Re-record with
`tools/frontend-walk/walk.py [--frontend saas] --record tests/contract/walk_<frontend>.json`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from record import UUID

from tests.contract.conftest import ADMIN_PASSWORD, FRONTEND, World, future_send_at, load_walk

FRONTENDS = sorted(path.stem.removeprefix("walk_") for path in Path(__file__).parent.glob("walk_*.json"))
REQUESTS = [(frontend, entry) for frontend in FRONTENDS for entry in load_walk(frontend)]
assert "ticketz" in FRONTENDS, "tests/contract/walk_ticketz.json is missing"
UNIQUE_FIELDS = ("email", "number", "shortcode")  # a quick message's shortcode: unique per author
# a query or body key holding an id → which of the world's ids it means
ID_OF_KEY = {"ticketId": "tickets", "contactId": "contacts", "userId": "me", "queueId": "queue",
             "queueIds": "queue", "whatsappId": "whatsapp", "users": "me", "whatsappIds": "whatsapp",
             "companyId": "company", "planId": "plan", "parentId": "queue-options", "forwardQueueId": "queue",
             "contactListId": "contact-lists"}
UPLOAD = {"file": ("walk.png", b"\x89PNG contract", "image/png")}  # a media-upload's multipart body (not recorded)
# an import's multipart body (not recorded either): a small CSV, under the field each route reads
IMPORT_CSV = b"name;number;email\nContract Import;5511987650001;ci@example.com\n"
IMPORTS = {"/contacts/importCsv": "contacts", "/upload": "file"}


def _ident(entry: dict[str, Any]) -> str:
    query = ",".join(sorted(entry["query"]))
    return f"{entry['method']} {entry['path']}" + (f"?{query}" if query else "")


def fill_path(world: World, template: str, method: str) -> str:
    parts = template.split("/")
    for index, part in enumerate(parts):
        if part == ":uuid":
            parts[index] = world.ids["uuid"] if method == "GET" else world.new_ticket()["uuid"]
        elif part == ":id":
            resource = parts[index - 1] if index else ""
            if resource == "u":
                resource = "tickets"
            if method != "GET":
                parts[index] = str(world.fresh(resource))
            else:
                key = {"messages": "tickets", "whatsappsession": "whatsapp", "sandbox": "whatsapp",
                       "companies": "company", "listPlan": "company"}.get(resource, resource)
                assert key in world.ids, f"no id in the world for /{resource}/:id ({template}): add it"
                parts[index] = str(world.ids[key])
    return "/".join(parts)


def fill_value(world: World, key: str, value: Any, own_id: str | None = None) -> Any:
    """A recorded query value or body with the world's ids; `id` is the record's own (the path's id)."""
    if key == "id" and value == ":id" and own_id is not None:
        return int(own_id)
    if value == ":id":
        assert key in ID_OF_KEY, f"no id in the world for the key {key!r}: add it to ID_OF_KEY"
        return world.ids[ID_OF_KEY[key]]
    if isinstance(value, str) and ":id" in value:
        return value.replace(":id", str(world.ids[ID_OF_KEY[key]]))
    if isinstance(value, list):
        return [fill_value(world, key, item) for item in value]
    if isinstance(value, dict):
        return {k: fill_value(world, k, v, own_id) for k, v in value.items()}
    if isinstance(value, str) and UUID.match(value):
        return world.ids["uuid"]
    return value


def missing_fields(body: Any, paths: list[str]) -> tuple[list[str], int]:
    """Recorded field paths absent from `body` where their parent is present; and how many were checked."""
    missing: list[str] = []
    checked = 0
    for path in paths:
        parent_path, _, key = path.rpartition(".")
        for parent in _resolve(body, parent_path):
            if isinstance(parent, dict):
                checked += 1
                if key not in parent:
                    missing.append(path)
                    break
    return missing, checked


def _resolve(body: Any, path: str) -> list[Any]:
    """The values at `path` (`tickets[].contact`): every item of every list on the way."""
    values = [body]
    if not path:
        return values
    for part in path.split("."):
        name, is_list = (part[:-2], True) if part.endswith("[]") else (part, False)
        step = []
        for value in values:
            item = value.get(name) if name and isinstance(value, dict) else (value if not name else None)
            if is_list and isinstance(item, list):
                step.extend(item)
            elif not is_list and item is not None:
                step.append(item)
        values = step
    return values


@pytest.mark.parametrize(("frontend", "entry"), REQUESTS, ids=[f"{f}: {_ident(e)}" for f, e in REQUESTS])
def test_the_frontend_request_answers_what_it_reads(world: World, frontend: str, entry: dict[str, Any]) -> None:
    method = entry["method"]
    path = fill_path(world, entry["path"], method)
    params = {k: fill_value(world, k, v) for k, v in entry["query"].items()}
    own_id = next((part for part in reversed(path.split("/")) if part.isdigit()), None)
    body = fill_value(world, "", entry["body"], own_id) if entry["body"] is not None else None
    if method == "POST" and isinstance(body, dict) and body.get("contactId") is not None \
            and path != "/ticket-notes":  # a note's contact is its ticket's
        body["contactId"] = world.new_contact()  # a new conversation needs a contact without one
    client = world.client
    headers = {"Authorization": f"Bearer {world.token}", "Origin": FRONTEND}
    if method == "PUT" and isinstance(body, dict) and own_id is not None and path.endswith(f"/{own_id}"):
        # the walk edited the record it had just made: keep this record's unique fields (email, number)
        current = world.call("GET", path).json()
        body.update({key: current[key] for key in UNIQUE_FIELDS if key in body and key in current})
    if path == "/auth/login" and isinstance(body, dict):
        body["password"] = ADMIN_PASSWORD
    if path == "/auth/logout":  # ends a session: its own, not the world's
        login = client.post("/auth/login", json={"email": "admin@zapgate.local", "password": ADMIN_PASSWORD})
        headers["Authorization"] = f"Bearer {login.json()['token']}"
    if isinstance(body, dict) and "sendAt" in body:  # a schedule: its recorded time has passed
        body["sendAt"] = future_send_at()
    imported = next((field for suffix, field in IMPORTS.items() if path.endswith(suffix)), None)
    if method == "POST" and path.endswith("/media-upload"):
        response = client.request(method, path, params=params, files=UPLOAD, headers=headers)
    elif method == "POST" and imported is not None:
        response = client.request(method, path, params=params, headers=headers,
                                  files={imported: ("contract.csv", IMPORT_CSV, "text/csv")})
    else:
        response = client.request(method, path, params=params, json=body, headers=headers)
    assert response.status_code < 400, f"{method} {path}: {response.status_code} {response.text[:300]}"
    assert response.headers.get("Access-Control-Allow-Origin") == FRONTEND
    if not entry["fields"]:
        return
    answer = response.json()
    missing, checked = missing_fields(answer, entry["fields"])
    assert not missing, f"{method} {path}: fields the frontend read are missing: {missing[:20]}"
    assert checked >= 1, f"{method} {path}: nothing of the recorded answer's shape is here: {str(answer)[:300]}"
