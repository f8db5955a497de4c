"""The OpenAPI 3.1 description of the HTTP API, served at `GET /openapi.json`, and its docs page `GET /docs`.

Why a spec next to the code and not quart-schema: quart-schema runs on quart-trio, but it documents a route
only through pydantic models and decorators on the view (`@document_request`, `@validate_response`, …): 200
views to rewrite, a second validation layer beside `api.validation` with its own error shape, and docs pages
that load Swagger UI / Redoc / Scalar from a CDN (self-hosters may be offline). Instead each area of the API
declares its operations in `api/openapi/paths_*.py` (the vocabulary is `api/openapi/dsl.py`, the shared
resources `api/openapi/components.py`); `build_spec(app)` assembles them for the blueprints `app` serves
(the sandbox's and realtime's only when registered). `tests/unit/test_openapi.py` fails when a route of
`app.url_map` has no operation or an operation no route; `tests/e2e/test_schemathesis.py` fuzzes a live
server against the spec (zero 5xx, every response conforming).

To add a route: declare it in the `paths_*.py` of its area (or a new module listed in `MODULES`).
"""

from __future__ import annotations

import copy
import re
from typing import Any

from quart import Blueprint, Response, current_app, jsonify

from api.auth import public
from api.openapi import (
    paths_accounts,
    paths_admin,
    paths_automation,
    paths_connections,
    paths_contacts,
    paths_conversations,
    paths_operations,
    paths_reports,
)
from api.openapi.components import SCHEMAS
from api.openapi.dsl import Declare, Operation, Schema, obj, ref
from api.openapi.render import docs_page

MODULES = (paths_accounts, paths_admin, paths_connections, paths_conversations, paths_contacts, paths_automation,
           paths_operations, paths_reports)

blueprint = Blueprint("openapi", __name__)
op = Declare("openapi", tag="API description")
OWN = [
    op.get("/openapi.json", "This OpenAPI 3.1 document", auth="public",
           ok=obj(openapi={"const": "3.1.0"}, info={"type": "object"}, paths={"type": "object"},
                  components={"type": "object"})),
    op.get("/docs", "The API's docs page (HTML, generated from this document)", auth="public", ok_type="text/html",
           ok={"type": "string"}),
]

ERROR = ref("Error")
# statuses every operation may answer beyond its own (see `_responses`)
COMMON_ERRORS = {
    400: "bad input (`ERR_VALIDATION` names the `field`, `ERR_INVALID_JSON`, …)",
    401: "no `Authorization` header (`ERR_SESSION_EXPIRED`)",
    402: "the company's subscription has expired (`ERR_SUBSCRIPTION_EXPIRED`)",
    403: "an invalid or expired token (the family's frontends refresh on it; `AUTH_EXPIRED_STATUS`), "
         "or not allowed for this role or plan (`ERR_NO_PERMISSION`)",
    404: "no such record in the caller's company (`ERR_NOT_FOUND`; another company's ids too)",
    409: "a conflict with what the database holds (a duplicate name, a ticket that changed meanwhile)",
    413: "the body is larger than allowed (`JSON_MAX_SIZE`, `UPLOAD_MAX_SIZE`)",
    415: "the body is not of the declared type",
    503: "the database is away or too slow (`Retry-After`), or a conversation cannot answer now",
}


def all_operations() -> list[Operation]:
    """Every declared operation, whatever blueprints an app registers."""
    return [*OWN, *(operation for module in MODULES for operation in module.OPERATIONS)]


def build_spec(app: Any, *, server_url: str | None = None) -> dict[str, Any]:
    """The OpenAPI document of `app`: the operations of the blueprints it registered."""
    served = set(app.blueprints)
    operations = [operation for operation in all_operations() if operation.blueprint in served]
    paths: dict[str, dict[str, Any]] = {}
    ids: set[str] = set()
    for operation in operations:
        item = paths.setdefault(operation.path, {})
        assert operation.method not in item, f"{operation.method.upper()} {operation.path} declared twice"
        item[operation.method] = _operation(operation, ids)
    _link_creations(operations, paths)
    spec: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "zapgate API", "version": _version(),
            "description": "The HTTP API of zapgate, a self-hosted WhatsApp customer-service gateway; it keeps the "
                           "Whaticket family's contract (COMPAT.md). Every error answers `{error, message}`. "
                           "The realtime side (Socket.IO v4 at `/socket.io`) is described in the README.",
            "license": {"name": "AGPL-3.0-or-later", "identifier": "AGPL-3.0-or-later"},
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": copy.deepcopy(_schemas()),
            "securitySchemes": {
                "userToken": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                              "description": "a user's access token from `POST /auth/login` or "
                                             "`POST /auth/refresh_token` (its claims carry `companyId`)"},
                "connectionToken": {"type": "http", "scheme": "bearer",
                                    "description": "a connection's API token (`token` of `GET /whatsapp/{id}`, "
                                                   "admins only), for `POST /api/messages/send`"},
                "metricsToken": {"type": "http", "scheme": "bearer",
                                 "description": "`METRICS_TOKEN` of the server's configuration, for `GET /metrics` "
                                                "when it is set (unset: the metrics are open)"},
                "refreshCookie": {"type": "apiKey", "in": "cookie", "name": "jrt",
                                  "description": "the httpOnly refresh-token cookie set by `POST /auth/login`"},
            },
        },
        "security": [{"userToken": []}],
        "tags": [{"name": name} for name in sorted({o.tag for o in all_operations() if o.blueprint in served})],
    }
    if server_url:
        spec["servers"] = [{"url": server_url}]
    return spec


def _operation(operation: Operation, ids: set[str]) -> dict[str, Any]:
    operation_id = operation.operation_id or _operation_id(operation)
    assert operation_id not in ids, f"operationId {operation_id} twice"
    ids.add(operation_id)
    shown: dict[str, Any] = {"operationId": operation_id, "summary": operation.summary, "tags": [operation.tag]}
    if operation.auth in ("admin", "super"):
        shown["x-role"] = operation.auth  # the least role that may call it (the token's `profile`, `super`)
    role = {"admin": "Needs a company admin (or the super admin).", "super": "Needs the super admin.",
            "optional": "A token is optional; with one the answer may say more."}.get(operation.auth)
    description = " ".join(part for part in (operation.description, role or "") if part)
    if description:
        shown["description"] = description
    declared = {(parameter["in"], parameter["name"]) for parameter in operation.params}
    parameters = [_path_parameter(name) for name in re.findall(r"{(\w+)}", operation.path)
                  if ("path", name) not in declared]
    parameters += list(operation.params)
    if parameters:
        shown["parameters"] = parameters
    if operation.auth in ("public", "optional"):
        shown["security"] = [{}] if operation.auth == "public" else [{}, {"userToken": []}]
    elif operation.auth == "connection":
        shown["security"] = [{"connectionToken": []}]
    elif operation.auth == "metrics":  # open, or (METRICS_TOKEN set) that token
        shown["security"] = [{}, {"metricsToken": []}]
    if operation.body is not None:
        content = {operation.body_type: {"schema": operation.body}}
        content.update({media: {"schema": schema} for media, schema in operation.other_bodies})
        shown["requestBody"] = {"required": operation.body_required, "content": content}
    shown["responses"] = _responses(operation)
    return shown


def _schemas() -> dict[str, Schema]:
    """The shared schemas: components.py's and those a path module adds (its `SCHEMAS`)."""
    schemas = dict(SCHEMAS)
    for module in MODULES:
        for name, schema in getattr(module, "SCHEMAS", {}).items():
            assert name not in schemas, f"two schemas named {name}"
            schemas[name] = schema
    return schemas


def _link_creations(operations: list[Operation], paths: dict[str, dict[str, Any]]) -> None:
    """OpenAPI links from each creation (a POST on a collection answering the new record) to the operations
    that take that record's id as their first path parameter: `POST /tags` → `GET /tags/{tag_id}`, …; and to
    the collections it `feeds`. The stateful fuzzing follows them with real ids."""
    for creation in operations:
        if creation.method != "post" or "{" in creation.path or creation.status not in (200, 201):
            continue
        prefixes = (creation.path, *creation.feeds)
        links: dict[str, Any] = {}
        for target in operations:
            match = re.match(r"^(/[^{]*?)/{(\w+)}", target.path)
            if target is creation or match is None or match.group(1) not in prefixes:
                continue
            target_id = paths[target.path][target.method]["operationId"]
            links[target_id] = {"operationId": target_id, "parameters": {match.group(2): "$response.body#/id"}}
        if links:
            paths[creation.path]["post"]["responses"][str(creation.status)]["links"] = links


def _operation_id(operation: Operation) -> str:
    words = re.sub(r"[{}]", "", operation.path).replace(".", "_").split("/")
    parts = [operation.method, *(re.sub(r"[^0-9A-Za-z]+", "_", word) for word in words if word)]
    return "_".join(parts) or operation.method


def _path_parameter(name: str) -> dict[str, Any]:
    """Path variables are integer ids (anything else is a 404), but for the few named otherwise."""
    schema: Schema = {"type": "integer", "minimum": 1, "maximum": 999_999_999_999_999_999}
    description = "an id of the caller's company (another company's: 404)"
    if name in STRING_PARAMETERS:
        schema, description = STRING_PARAMETERS[name]
    return {"name": name, "in": "path", "required": True, "schema": schema, "description": description}


STRING_PARAMETERS: dict[str, tuple[Schema, str]] = {
    "key": ({"type": "string", "maxLength": 100}, "a setting's key"),
    "ticket_uuid": ({"type": "string", "format": "uuid"}, "a ticket's uuid"),
    "chat_key": ({"type": "string", "maxLength": 64}, "an internal chat's id or uuid"),
    "token": ({"type": "string", "maxLength": 64}, "the file's random token"),
    "name": ({"type": "string", "maxLength": 255}, "the file's name"),
    "filename": ({"type": "string"}, "a file's path"),
}


def _responses(operation: Operation) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    success: dict[str, Any] = {"description": operation.summary}
    if operation.ok is not None:
        success["content"] = {operation.ok_type: {"schema": operation.ok}}
        success["content"].update({media: {"schema": schema} for media, schema in operation.other_ok})
    responses[str(operation.status)] = success
    for status, description, schema in operation.extra_responses:
        shown: dict[str, Any] = {"description": description}
        if schema is not None:
            shown["content"] = {"application/json": {"schema": schema}}
        responses[str(status)] = shown
    statuses = {400, 404, 503, *operation.errors}
    if operation.auth == "metrics":
        statuses |= {401}
    elif operation.auth != "public":
        statuses |= {401, 402, 403}
    if operation.body is not None:
        statuses |= {413, 415}
    for status in sorted(statuses):
        if str(status) in responses:
            continue
        responses[str(status)] = {"description": COMMON_ERRORS.get(status, "refused"),
                                  "content": {"application/json": {"schema": ERROR}}}
    return responses


def _version() -> str:
    from gateway import __version__

    return __version__


def _spec_of(app: Any) -> dict[str, Any]:
    """The app's document, built at its first request for it (the routes are fixed once it serves)."""
    spec = app.extensions.get("openapi")
    if spec is None:
        spec = app.extensions["openapi"] = build_spec(app)
    return spec


@blueprint.get("/openapi.json")
@public
async def openapi_json() -> Response:
    return jsonify(_spec_of(current_app))


@blueprint.get("/docs")
@public
async def docs() -> Response:
    spec = _spec_of(current_app)
    response = Response(docs_page(spec), content_type="text/html; charset=utf-8")
    # the page is self-contained: its own inline style, nothing loaded from anywhere
    response.headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'; " \
                                                  "frame-ancestors 'none'"
    return response
