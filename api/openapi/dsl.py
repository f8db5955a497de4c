"""The small vocabulary the spec is written in: JSON Schema helpers and `Operation`, one declared route.

A module of `api/openapi/paths_*.py` lists its operations with an `Declare` bound to its blueprint:

    op = Declare("tags", tag="Tags")
    OPERATIONS = [
        op.get("/tags", "A page of tags", query=(SEARCH, PAGE), ok=page_of("tags", ref("Tag"))),
        op.put("/tags/{tag_id}", "Change a tag (admins)", body=obj(name=STR), ok=ref("Tag"), auth="admin"),
    ]

Paths use the url rule's own variable names (`<tag_id>` is `{tag_id}`), so `tests/unit/test_openapi.py`
can match every operation with a rule of `app.url_map` in both directions.
"""

from __future__ import annotations

from typing import Any

import attrs

Schema = dict[str, Any]

# ─── JSON Schema helpers ────────────────────────────────────────────────────────────────

STR: Schema = {"type": "string"}
INT: Schema = {"type": "integer"}
NUM: Schema = {"type": "number"}
BOOL: Schema = {"type": "boolean"}
NULL: Schema = {"type": "null"}
ID: Schema = {"type": "integer", "minimum": 1}
# timestamps are ISO 8601 text (`datetime.isoformat()` or PostgreSQL's `to_json`), with their offset
TIME: Schema = {"type": "string", "description": "ISO 8601 timestamp"}
DATE: Schema = {"type": "string", "description": "date YYYY-MM-DD"}
ANY: Schema = {}  # genuinely anything (say why where it is used)
FREE_OBJECT: Schema = {"type": "object", "additionalProperties": True}


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: Schema) -> Schema:
    """`schema` or null."""
    if set(schema) <= {"type", "description", "format", "minimum", "maximum", "enum", "maxLength", "minLength"} \
            and isinstance(schema.get("type"), str):
        shown = {**schema, "type": [schema["type"], "null"]}
        if "enum" in shown:
            shown["enum"] = [*shown["enum"], None]
        return shown
    return {"anyOf": [schema, NULL]}


def arr(items: Schema, **limits: Any) -> Schema:
    return {"type": "array", "items": items, **limits}


def enum(*values: Any) -> Schema:
    kinds = {type(value) for value in values}
    base: Schema = {"type": "string"} if kinds == {str} else {"type": "integer"} if kinds == {int} else {}
    return {**base, "enum": list(values)}


def text(max_len: int = 255, min_len: int = 0, **extra: Any) -> Schema:
    """A string field as `api.validation.Field("str")` accepts it."""
    shown: Schema = {"type": "string", "maxLength": max_len, **extra}
    if min_len:
        shown["minLength"] = min_len
    return shown


def obj(properties: dict[str, Schema] | None = None, *, optional: tuple[str, ...] | str = (), required: Any = None,
        extra: bool = True, description: str | None = None, **props: Schema) -> Schema:
    """An object; by default every property listed is required (the presenters always write them) but those
    in `optional`; `required=[…]` names them instead (request bodies: what the handler insists on).
    `extra=False` for a closed shape."""
    properties = {**(properties or {}), **props}
    if isinstance(optional, str):
        optional = tuple(optional.split())
    names = [name for name in properties if name not in optional] if required is None else list(required)
    shown: Schema = {"type": "object", "properties": properties}
    if names:
        shown["required"] = names
    if not extra:
        shown["additionalProperties"] = False
    if description:
        shown["description"] = description
    return shown


def body(properties: dict[str, Schema] | None = None, *, required: tuple[str, ...] | str = (),
         description: str | None = None, **props: Schema) -> Schema:
    """A JSON request body: the fields the handler reads, `required` the ones it insists on. Unknown keys are
    ignored by the handlers (the family's frontends send whole objects back), so the shape stays open."""
    if isinstance(required, str):
        required = tuple(required.split())
    return obj(properties, required=list(required), description=description, **props)


def page_of(key: str, item: Schema) -> Schema:
    """The family's page: `{<key>: [...], count, hasMore}`."""
    return obj({key: arr(item), "count": INT, "hasMore": BOOL})


def message(text_: str = "") -> Schema:
    """`{"message": "…"}`: what deletions answer."""
    return obj(message=STR, description=text_ or None)


MESSAGE = obj(message=STR)


# ─── parameters ─────────────────────────────────────────────────────────────────────────

def query(name: str, schema: Schema, description: str = "", *, required: bool = False) -> dict[str, Any]:
    shown: dict[str, Any] = {"name": name, "in": "query", "required": required, "schema": schema}
    if description:
        shown["description"] = description
    return shown


PAGE = query("pageNumber", {"type": "integer", "minimum": 1, "maximum": 100_000}, "1-based page number")
SEARCH = query("searchParam", text(200), "text to look for (case- and accent-insensitive where stated)")


# ─── operations ─────────────────────────────────────────────────────────────────────────

AUTHS = ("user", "admin", "super", "public", "optional", "connection", "metrics")


@attrs.frozen
class Operation:
    """One route of the API as the spec shows it."""

    method: str  # lower case
    path: str  # OpenAPI template: /tags/{tag_id}
    summary: str
    blueprint: str  # the Quart blueprint serving it (optional blueprints: only when registered)
    tag: str
    auth: str = "user"  # user | admin | super (the least role) | public | optional | connection | metrics
    params: tuple[dict[str, Any], ...] = ()
    body: Schema | None = None
    body_type: str = "application/json"
    body_required: bool = False
    other_bodies: tuple[tuple[str, Schema], ...] = ()  # the same request in other media types (multipart)
    ok: Schema | None = None  # the success body (None: no body)
    status: int = 200
    ok_type: str = "application/json"
    other_ok: tuple[tuple[str, Schema], ...] = ()  # the same success in other media types (HTML, XLSX)
    errors: tuple[int, ...] = ()  # statuses besides the common ones (see `responses`)
    description: str = ""
    extra_responses: tuple[tuple[int, str, Schema | None], ...] = ()  # (status, description, JSON schema)
    # other collections whose records this one's answer (its `id`) names: `/tickets` creates what
    # `/messages/{id}` and `/ticket-tags/{ticket_id}` take (a creation links to its own `/path/{x}` anyway)
    feeds: tuple[str, ...] = ()
    operation_id: str = ""

    def __attrs_post_init__(self) -> None:
        assert self.auth in AUTHS, self.auth
        assert self.method in ("get", "post", "put", "patch", "delete"), self.method


@attrs.frozen
class Declare:
    """Builds the operations of one blueprint: `op.get(path, summary, **fields)`."""

    blueprint: str
    tag: str

    def __call__(self, method: str, path: str, summary: str, **fields: Any) -> Operation:
        return Operation(method=method, path=path, summary=summary, blueprint=fields.pop("blueprint", self.blueprint),
                         tag=fields.pop("tag", self.tag), **fields)

    def get(self, path: str, summary: str, **fields: Any) -> Operation:
        return self("get", path, summary, **fields)

    def post(self, path: str, summary: str, **fields: Any) -> Operation:
        return self("post", path, summary, **fields)

    def put(self, path: str, summary: str, **fields: Any) -> Operation:
        return self("put", path, summary, **fields)

    def delete(self, path: str, summary: str, **fields: Any) -> Operation:
        return self("delete", path, summary, **fields)


def multipart(fields: dict[str, Schema], *, required: tuple[str, ...] = ("file",)) -> Schema:
    """A multipart/form-data body; files are `{"type": "string", "format": "binary"}`."""
    return obj(fields, required=list(required))


FILE: Schema = {"type": "string", "format": "binary"}
