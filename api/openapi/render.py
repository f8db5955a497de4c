"""`GET /docs`: the OpenAPI document as one self-contained HTML page, rendered on the server.

No build step and nothing fetched from a CDN (self-hosters may be offline; the app's Content-Security-Policy
forbids outside sources anyway): the page is plain HTML with an inline style sheet, an index of the areas,
and for every operation its method, path, who may call it, parameters, body and answers. Schemas are shown
as compact type expressions (`{id: integer, name: string, tags: [Tag]}`) with links to the shared ones.
"""

from __future__ import annotations

import html
import re
from typing import Any

STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:0;color:#1d232a;background:#fafafa}
header{background:#1d6f42;color:#fff;padding:14px 24px}header a{color:#fff}
main{max-width:1100px;margin:0 auto;padding:8px 24px 48px}
h2{border-bottom:2px solid #1d6f42;padding-bottom:4px;margin-top:36px}
details{background:#fff;border:1px solid #ddd;border-radius:6px;margin:6px 0}
summary{cursor:pointer;padding:8px 12px;font-family:ui-monospace,monospace}
.m{display:inline-block;width:64px;font-weight:700}.get{color:#0b63a8}.post{color:#1d7a33}
.put{color:#a86a0b}.delete{color:#b3261e}.s{color:#555;font-family:system-ui,sans-serif;margin-left:8px}
.body{padding:0 16px 12px}code,pre{font-family:ui-monospace,monospace;font-size:13px}
pre{background:#f3f4f6;padding:8px;white-space:pre-wrap;word-break:break-word}
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
nav a{margin-right:12px}
"""


def docs_page(spec: dict[str, Any]) -> str:
    by_tag: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            by_tag.setdefault(operation["tags"][0], []).append((path, method, operation))
    info = spec["info"]
    parts = [f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{_e(info['title'])}</title>",
             f"<meta name=viewport content='width=device-width'><style>{STYLE}</style></head><body>",
             f"<header><h1>{_e(info['title'])} {_e(info['version'])}</h1>",
             f"<p>{_text(info['description'])} Machine-readable: <a href='openapi.json'>openapi.json</a>.</p></header>",
             "<main><nav>"]
    parts += [f"<a href='#{_anchor(tag)}'>{_e(tag)}</a>" for tag in sorted(by_tag)]
    parts.append("</nav>")
    parts.append(_security(spec))
    for tag in sorted(by_tag):
        parts.append(f"<h2 id='{_anchor(tag)}'>{_e(tag)}</h2>")
        for path, method, operation in by_tag[tag]:
            parts.append(_operation(path, method, operation))
    parts.append(_errors(spec))
    parts.append("<h2 id='schemas'>Schemas</h2>")
    for name, schema in spec["components"]["schemas"].items():
        parts.append(f"<h3 id='schema-{_e(name)}'>{_e(name)}</h3>")
        if schema.get("description"):
            parts.append(f"<p>{_e(schema['description'])}</p>")
        parts.append(f"<pre>{type_of(schema, expand=True)}</pre>")
    parts.append("</main></body></html>")
    return "".join(parts)


ERROR_REF = {"$ref": "#/components/schemas/Error"}


def _errors(spec: dict[str, Any]) -> str:
    """What each refusal status means, as the operations describe it (the first description met)."""
    meaning: dict[str, str] = {}
    for item in spec["paths"].values():
        for operation in item.values():
            for status, response in operation["responses"].items():
                if response.get("content", {}).get("application/json", {}).get("schema") == ERROR_REF:
                    meaning.setdefault(status, response["description"])
    rows = "".join(f"<tr><td>{_e(status)}</td><td>{_text(meaning[status])}</td></tr>" for status in sorted(meaning))
    return (f"<h2 id='errors'>Errors</h2><p>Every refusal answers {type_of(ERROR_REF)} "
            f"<code>{{error, message}}</code>.</p><table><tr><th>status</th><th>when</th></tr>{rows}</table>")


def _security(spec: dict[str, Any]) -> str:
    rows = "".join(f"<tr><td><code>{_e(name)}</code></td><td>{_e(scheme.get('scheme') or scheme.get('in'))}</td>"
                   f"<td>{_text(scheme.get('description', ''))}</td></tr>"
                   for name, scheme in spec["components"]["securitySchemes"].items())
    return f"<h2>Authentication</h2><table><tr><th>scheme</th><th>how</th><th>what</th></tr>{rows}</table>"


def _operation(path: str, method: str, operation: dict[str, Any]) -> str:
    security = operation.get("security")
    who = "no token" if security == [{}] else "token optional" if security and {} in security else \
        "connection token" if security == [{"connectionToken": []}] else \
        {"admin": "an admin's token", "super": "the super admin's token"}.get(operation.get("x-role", ""),
                                                                                "a user's token")
    out = [f"<details id='{_e(operation['operationId'])}'><summary><span class='m {method}'>{method.upper()}</span>"
           f"{_e(path)}<span class=s>{_e(operation['summary'])} · {who}</span></summary><div class=body>"]
    if operation.get("description"):
        out.append(f"<p>{_text(operation['description'])}</p>")
    if operation.get("parameters"):
        rows = "".join(f"<tr><td><code>{_e(p['name'])}</code></td><td>{_e(p['in'])}</td>"
                       f"<td>{'yes' if p.get('required') else ''}</td><td><code>{type_of(p['schema'])}</code></td>"
                       f"<td>{_e(p.get('description', ''))}</td></tr>" for p in operation["parameters"])
        out.append("<table><tr><th>parameter</th><th>in</th><th>required</th><th>type</th><th></th></tr>"
                   f"{rows}</table>")
    if "requestBody" in operation:
        for media, content in operation["requestBody"]["content"].items():
            out.append(f"<p>Body <code>{_e(media)}</code>:</p><pre>{type_of(content['schema'], expand=True)}</pre>")
    rows, refusals = [], []
    for status, response in operation["responses"].items():
        content = response.get("content", {})
        if list(content.values()) == [{"schema": ERROR_REF}] and not status.startswith("2"):
            refusals.append(status)  # the common refusals: one row, explained once in "Errors"
            continue
        shown = ", ".join(f"<code>{_e(media)}</code> {type_of(body['schema'])}" for media, body in content.items())
        rows.append(f"<tr><td>{_e(status)}</td><td>{_text(response['description'])}</td><td>{shown}</td></tr>")
    if refusals:
        rows.append(f"<tr><td>{' '.join(refusals)}</td><td>refused: see <a href='#errors'>Errors</a></td>"
                    f"<td>{type_of(ERROR_REF)}</td></tr>")
    out.append(f"<table><tr><th>status</th><th>when</th><th>body</th></tr>{''.join(rows)}</table></div></details>")
    return "".join(out)


def type_of(schema: dict[str, Any], *, expand: bool = False, depth: int = 0) -> str:
    """A JSON schema as a short, escaped type expression; `$ref`s link to the schema's section."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return f"<a href='#schema-{_e(name)}'>{_e(name)}</a>"
    if "anyOf" in schema:
        return " | ".join(type_of(item, expand=expand, depth=depth) for item in schema["anyOf"])
    if "const" in schema:
        return _e(repr(schema["const"]))
    if "enum" in schema:
        return " | ".join(_e("null" if value is None else repr(value)) for value in schema["enum"])
    kind = schema.get("type")
    if isinstance(kind, list):
        return " | ".join(type_of({**schema, "type": item}, expand=expand, depth=depth) for item in kind)
    if kind == "array":
        return f"[{type_of(schema.get('items', {}), expand=expand, depth=depth)}]"
    if kind == "object" and "properties" in schema and (expand or depth < 1):
        required = set(schema.get("required", ()))
        pad = "\n" + "  " * (depth + 1) if expand else " "
        fields = [f"{pad}{_e(name)}{'' if name in required else '?'}: "
                  f"{type_of(sub, expand=expand, depth=depth + 1)}" for name, sub in schema["properties"].items()]
        end = "\n" + "  " * depth if expand else " "
        return "{" + ",".join(fields) + end + "}"
    if kind == "object":
        return "object"
    if kind is None:
        return "any"
    return _e(kind if "format" not in schema else f"{kind} ({schema['format']})")


def _anchor(tag: str) -> str:
    return "tag-" + "".join(ch if ch.isalnum() else "-" for ch in tag.lower())


def _text(value: str) -> str:
    """Escaped prose, its `code` spans as <code>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", _e(value))


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)
