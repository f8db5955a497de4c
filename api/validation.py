"""Request validation: JSON bodies against small field specs, query parameters, pagination.

Errors name the field: `{"error": "ERR_VALIDATION", "message": "name: must be a string", "field": "name"}`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import attrs
from quart import current_app, request

from api.app import deps_of
from api.errors import ApiError, BadRequest

EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
MISSING = object()


@attrs.frozen
class Field:
    """One body field: its type and limits. `kind` is str, int, bool, list_of_int, email, date, dict."""

    kind: str = "str"
    required: bool = False
    nullable: bool = False
    min_len: int = 0
    max_len: int = 255
    choices: tuple[str, ...] = ()
    minimum: int | None = None
    maximum: int | None = 2**62
    strip: bool = True
    max_items: int = 1000


def _fail(name: str, message: str) -> BadRequest:
    return BadRequest(f"{name}: {message}", code="ERR_VALIDATION", field=name)


def check_field(name: str, value: Any, spec: Field) -> Any:
    if value is None:
        if spec.nullable:
            return None
        raise _fail(name, "must not be null")
    if spec.kind in ("str", "email"):
        if not isinstance(value, str):
            raise _fail(name, "must be a string")
        if spec.strip:
            value = value.strip()
        if "\x00" in value:
            raise _fail(name, "must not contain NUL characters")
        if not _is_utf8(value):
            raise _fail(name, "must be valid Unicode text (it holds a lone surrogate)")
        if len(value) < max(spec.min_len, 1 if spec.required else 0):
            raise _fail(name, "must not be empty" if spec.min_len <= 1 else f"needs at least {spec.min_len} characters")
        if len(value) > spec.max_len:
            raise _fail(name, f"is too long (at most {spec.max_len} characters)")
        if spec.choices and value not in spec.choices:
            raise _fail(name, f"must be one of {', '.join(spec.choices)}")
        if spec.kind == "email":
            if not EMAIL.match(value):
                raise _fail(name, "is not a valid email address")
            value = value.lower()
        return value
    if spec.kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, str) and re.fullmatch(r"-?\d{1,18}", value.strip()):
                value = int(value)  # the frontends send some ids as strings
            else:
                raise _fail(name, "must be an integer")
        if spec.minimum is not None and value < spec.minimum:
            raise _fail(name, f"must be >= {spec.minimum}")
        if spec.maximum is not None and value > spec.maximum:
            raise _fail(name, f"must be <= {spec.maximum}")
        return value
    if spec.kind == "bool":
        if not isinstance(value, bool):
            raise _fail(name, "must be true or false")
        return value
    if spec.kind == "list_of_int":
        if not isinstance(value, list):
            raise _fail(name, "must be a list of integers")
        if len(value) > spec.max_items:
            raise _fail(name, f"has too many items (at most {spec.max_items})")
        item_spec = Field("int", minimum=1)
        return [check_field(f"{name}[{index}]", item, item_spec) for index, item in enumerate(value)]
    if spec.kind == "date":
        if not isinstance(value, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value[:10]):
            raise _fail(name, "must be a date YYYY-MM-DD")
        import datetime as dt

        try:
            return dt.date.fromisoformat(value[:10])
        except ValueError:
            raise _fail(name, "must be a valid date YYYY-MM-DD") from None
    raise AssertionError(f"unknown field kind {spec.kind}")


def _is_utf8(value: str) -> bool:
    """False for strings holding lone UTF-16 surrogates (valid JSON escapes, but no UTF-8 text can carry them)."""
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def validate(data: Mapping[str, Any], spec: Mapping[str, Field], *, partial: bool = False) -> dict[str, Any]:
    """The fields of `spec` present in `data`, checked and converted; unknown keys are ignored
    (the frontends send whole objects back)."""
    result: dict[str, Any] = {}
    for name, field in spec.items():
        value = data.get(name, MISSING)
        if value is MISSING:
            if field.required and not partial:
                raise _fail(name, "is required")
            continue
        result[name] = check_field(name, value, field)
    return result


async def json_body() -> dict[str, Any]:
    """The request's JSON object; 400 for malformed JSON, a non-object, or a wrong content type."""
    raw = await request.get_data(cache=True)
    if not raw or not raw.strip():
        return {}
    mimetype = request.mimetype or ""
    if mimetype and mimetype != "application/json" and not mimetype.endswith("+json"):
        raise BadRequest("the body must be JSON (Content-Type: application/json)", code="ERR_UNSUPPORTED_MEDIA_TYPE",
                         status=415)
    limit = deps_of(current_app).config.json_max_size
    if len(raw) > limit:  # a body sent without Content-Length (chunked) is only measured here
        raise ApiError(f"JSON bodies are limited to {limit} bytes", code="ERR_PAYLOAD_TOO_LARGE", status=413)
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise BadRequest(f"malformed JSON: {error}", code="ERR_INVALID_JSON") from None
    except RecursionError:
        raise BadRequest("malformed JSON: nested too deeply", code="ERR_INVALID_JSON") from None
    if not isinstance(data, dict):
        raise BadRequest("the JSON body must be an object", code="ERR_INVALID_JSON")
    return data


async def body(spec: Mapping[str, Field], *, partial: bool = False) -> dict[str, Any]:
    return validate(await json_body(), spec, partial=partial)


def query_int(name: str, default: int, *, minimum: int = 1, maximum: int = 1_000_000) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    if not re.fullmatch(r"\d{1,9}", raw.strip()):
        raise _fail(name, "must be a positive integer")
    value = int(raw)
    if not minimum <= value <= maximum:
        raise _fail(name, f"must be between {minimum} and {maximum}")
    return value


def search_pattern(name: str = "searchParam", *, max_len: int = 200) -> str | None:
    """An ILIKE pattern for a search parameter (its own % and _ escaped), or None when absent."""
    raw = (request.args.get(name) or "").strip()
    if not raw:
        return None
    if len(raw) > max_len:
        raise _fail(name, f"is too long (at most {max_len} characters)")
    if "\x00" in raw:
        raise _fail(name, "must not contain NUL characters")
    escaped = raw.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def page(page_size: int) -> tuple[int, int]:
    """(limit, offset) for `pageNumber` (1-based); one row more is fetched to compute hasMore."""
    number = query_int("pageNumber", 1, maximum=100_000)
    return page_size, (number - 1) * page_size


def path_id(value: str, name: str = "id") -> int:
    """An integer id from the path; anything else is a 404 (it cannot name a record)."""
    from api.errors import NotFound

    if not re.fullmatch(r"\d{1,18}", value):
        raise NotFound(f"{name} {value!r} not found")
    return int(value)
