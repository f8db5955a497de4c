"""The walk's request list as data: what tests/contract replays against a live zapgate.

One entry per distinct request (method, path template, query keys): an example query and body with their
ids replaced by placeholders (`:id`, `:uuid`; the replay fills them from its own data), the status the
frontend got, and the field paths of the answer it rendered (`tickets[].contact.name`). The contract test
checks each field path wherever its parent is present in the live answer.

Shared by the walk tool and the contract tests (which import it from here); no third-party imports.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlsplit

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
MAX_DEPTH = 5
MAX_FIELDS = 300
ID_KEY = re.compile(r"(Id|Ids|_id)$")  # ticketId, queueIds, companyId…
ID_KEYS = frozenset({"id", "users", "queues", "tags", "whatsapps"})
VOLATILE_QUERY = frozenset({"cb", "_", "t"})


def path_template(path: str) -> str:
    """`/tickets/12/` → `/tickets/:id`; UUIDs → `:uuid`; the trailing slash kept off (one rule in zapgate)."""
    parts = []
    for segment in path.rstrip("/").split("/"):
        if segment.isdigit():
            parts.append(":id")
        elif UUID.match(segment):
            parts.append(":uuid")
        else:
            parts.append(segment)
    return "/".join(parts) or "/"


def _placeholder(key: str, value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
        return ":id"
    if isinstance(value, str) and UUID.match(value):
        return ":uuid"
    if isinstance(value, list):
        return [_placeholder(key, item) for item in value]
    if isinstance(value, str) and value.startswith("["):
        return re.sub(r"\d+", ":id", value)
    return value


def template_value(key: str, value: Any) -> Any:
    """Ids in a query value or a body field (by the family's naming: ticketId, queueIds, users…) → placeholders."""
    if ID_KEY.search(key) or key in ID_KEYS:
        return _placeholder(key, value)
    if isinstance(value, dict):
        return {k: template_value(k, v) for k, v in value.items()}
    if isinstance(value, list):
        return [template_value(key, item) if isinstance(item, dict) else item for item in value]
    return value


def field_paths(body: Any) -> list[str]:
    """The key paths of a JSON answer: `count`, `tickets[].contact.name`, `[].id` (lists: union of items)."""
    found: set[str] = set()

    def walk(value: Any, prefix: str, depth: int) -> None:
        if depth > MAX_DEPTH or len(found) >= MAX_FIELDS:
            return
        if isinstance(value, dict):
            for key, item in value.items():
                path = f"{prefix}.{key}" if prefix else key
                found.add(path)
                walk(item, path, depth + 1)
        elif isinstance(value, list):
            for item in value[:20]:
                walk(item, f"{prefix}[]", depth + 1)

    walk(body, "", 0)
    return sorted(found)


def record_entries(requests: list[dict[str, Any]], api: str) -> list[dict[str, Any]]:
    """Distinct requests of a walk, in first-seen order; a successful example preferred."""
    entries: dict[tuple[str, str, tuple[str, ...]], dict[str, Any]] = {}
    for request in requests:
        url = urlsplit(request["url"])
        query = {k: v for k, v in parse_qsl(url.query, keep_blank_values=True) if k not in VOLATILE_QUERY}
        method = request["method"]
        path = path_template(url.path)
        if path.startswith("/socket.io"):
            continue
        key = (method, path, tuple(sorted(query)))
        ok = 0 < request["status"] < 400
        entry = {
            "method": method, "path": path,
            "query": {k: template_value(k, v) for k, v in query.items()},
            "body": template_value("", request.get("requestBody")) if request.get("requestBody") else None,
            "status": request["status"], "screen": request["screen"],
            "fields": field_paths(request.get("responseBody")) if ok else [],
        }
        known = entries.get(key)
        if known is None or (not (0 < known["status"] < 400) and ok):
            entries[key] = entry
        elif ok:  # the union of what the frontend was shown across the walk
            known["fields"] = sorted(set(known["fields"]) | set(entry["fields"]))
    return list(entries.values())
