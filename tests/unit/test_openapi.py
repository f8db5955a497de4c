"""The OpenAPI document matches the routes: every route of `app.url_map` is in the spec and every operation
of the spec is a route (api/openapi). A new route without its declaration in `api/openapi/paths_*.py`
fails here, naming it."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import schemathesis

from api.app import Deps, build_throttle, build_tokens, create_app
from api.openapi import build_spec
from api.openapi.render import docs_page
from api.realtime import RealtimeServer
from gateway.config import Config

METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE"}


def _app(tmp_path: Path, *, sandbox: bool, realtime: bool) -> Any:
    """The real application, with no database: building the routes needs none."""
    config = Config(database_url="postgresql://unused", data_dir=tmp_path, jwt_secret="s" * 32,
                    jwt_refresh_secret="r" * 32, sandbox=sandbox)
    deps = Deps(config=config, db=None, tokens=build_tokens(config), throttle=build_throttle(config),  # type: ignore[arg-type]
                broker=None, sessions=None, tickets=None, media=None, messages=None,  # type: ignore[arg-type]
                sandbox=object() if sandbox else None,  # type: ignore[arg-type]
                realtime=RealtimeServer() if realtime else None)
    return create_app(deps)


def _shape(path: str) -> str:
    """A path with its variables blanked: `/tags/<tag_id>` and `/tags/{tag_id}` are both `/tags/{}`."""
    path = re.sub(r"<(?:[^:<>]+:)?[^<>]+>", "{}", path)
    path = re.sub(r"{[^{}]+}", "{}", path)
    return path.rstrip("/") or "/"


def _routes(app: Any) -> set[tuple[str, str]]:
    return {(method, _shape(rule.rule)) for rule in app.url_map.iter_rules() if not rule.websocket
            for method in rule.methods & METHODS}


def _operations(spec: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method.upper(), _shape(path)) for path, item in spec["paths"].items() for method in item}


@pytest.mark.parametrize(("sandbox", "realtime"), [(True, True), (False, False)])
def test_every_route_is_in_the_spec_and_every_operation_is_a_route(tmp_path: Path, sandbox: bool,
                                                                    realtime: bool) -> None:
    app = _app(tmp_path, sandbox=sandbox, realtime=realtime)
    spec = build_spec(app)
    routes, operations = _routes(app), _operations(spec)
    missing = sorted(routes - operations)
    assert not missing, f"routes missing from the spec (declare them in api/openapi/paths_*.py): {missing}"
    stale = sorted(operations - routes)
    assert not stale, f"operations no route serves: {stale}"
    assert len(routes) >= 190 if sandbox else len(routes) >= 180  # the whole API, not a handful
    assert any(path.startswith("/sandbox") for _, path in operations) is sandbox
    assert (("GET", "/socket.io") in operations) is realtime


def test_the_spec_is_a_valid_openapi_3_1_document_schemathesis_can_load(tmp_path: Path) -> None:
    spec = build_spec(_app(tmp_path, sandbox=True, realtime=True))
    assert spec["openapi"] == "3.1.0"
    schema = schemathesis.openapi.from_dict(spec)
    loaded = [result.ok() for result in schema.get_all_operations()]  # raises on an invalid operation
    assert len(loaded) == sum(len(item) for item in spec["paths"].values())
    ids = [operation["operationId"] for item in spec["paths"].values() for operation in item.values()]
    assert len(ids) == len(set(ids))


def test_every_operation_says_what_it_answers_and_refuses(tmp_path: Path) -> None:
    spec = build_spec(_app(tmp_path, sandbox=True, realtime=True))
    error = {"$ref": "#/components/schemas/Error"}
    for path, item in spec["paths"].items():
        variables = set(re.findall(r"{(\w+)}", path))
        for method, operation in item.items():
            where = f"{method.upper()} {path}"
            responses = operation["responses"]
            assert any(status.startswith("2") for status in responses), where
            if path != "/socket.io":
                assert responses["400"]["content"]["application/json"]["schema"] == error, where
            public = operation.get("security") == [{}]
            assert public or "401" in responses, where
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert declared == variables, where
            if "requestBody" in operation:
                assert "413" in responses and "415" in responses, where


def test_responses_are_described_not_left_as_anything(tmp_path: Path) -> None:
    """A JSON success answer has a schema with a type or a reference; `{}` only where said free-form."""
    spec = build_spec(_app(tmp_path, sandbox=True, realtime=True))
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                for media, content in response.get("content", {}).items():
                    schema = content["schema"]
                    assert schema, f"{method.upper()} {path} {status} {media}: an empty schema"


def test_the_security_schemes_name_the_user_and_the_connection_tokens(tmp_path: Path) -> None:
    spec = build_spec(_app(tmp_path, sandbox=False, realtime=False))
    schemes = spec["components"]["securitySchemes"]
    assert schemes["userToken"]["scheme"] == "bearer" and schemes["userToken"]["bearerFormat"] == "JWT"
    assert spec["paths"]["/api/messages/send"]["post"]["security"] == [{"connectionToken": []}]
    assert spec["paths"]["/auth/login"]["post"]["security"] == [{}]
    assert "security" not in spec["paths"]["/tickets"]["get"]  # the document's default: the user token
    assert spec["security"] == [{"userToken": []}]


def test_the_docs_page_lists_every_operation_and_loads_nothing_from_elsewhere(tmp_path: Path) -> None:
    spec = build_spec(_app(tmp_path, sandbox=True, realtime=True))
    page = docs_page(spec)
    for item in spec["paths"].values():
        for operation in item.values():
            assert f"id='{operation['operationId']}'" in page
    assert "<script" not in page and "http://" not in page and "https://" not in page
    assert "href='openapi.json'" in page


async def test_openapi_json_and_docs_are_served_without_a_token(tmp_path: Path) -> None:
    app = _app(tmp_path, sandbox=False, realtime=False)
    client = app.test_client()
    answer = await client.get("/openapi.json")
    assert answer.status_code == 200
    spec = await answer.get_json()
    assert spec["openapi"] == "3.1.0" and "/tickets" in spec["paths"]
    docs = await client.get("/docs")
    assert docs.status_code == 200 and docs.mimetype == "text/html"
    assert "default-src 'none'" in docs.headers["Content-Security-Policy"]
    assert "/tickets" in (await docs.get_data(as_text=True))


def test_every_reference_names_a_schema_of_the_document(tmp_path: Path) -> None:
    spec = build_spec(_app(tmp_path, sandbox=True, realtime=True))
    text = json.dumps(spec)
    named = set(re.findall(r'"#/components/schemas/([^"]+)"', text))
    assert named and named <= set(spec["components"]["schemas"]), named - set(spec["components"]["schemas"])


def _descriptions(node: Any, where: str = "") -> list[str]:
    """The places where a `description` is not text (a property named `description` passed where the
    schema's own description goes): schemathesis refuses such a schema outright."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "description" and not isinstance(value, str) and not where.endswith("/properties"):
                found.append(where)
            found += _descriptions(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _descriptions(value, f"{where}/{index}")
    return found


def test_every_description_is_text(tmp_path: Path) -> None:
    spec = build_spec(_app(tmp_path, sandbox=True, realtime=True))
    assert not _descriptions(spec), _descriptions(spec)[:5]


def test_operations_side_routes_say_their_media_types_security_and_the_secret_once(tmp_path: Path) -> None:
    spec = build_spec(_app(tmp_path, sandbox=False, realtime=False))
    paths, schemas = spec["paths"], spec["components"]["schemas"]
    metrics = paths["/metrics"]["get"]
    assert metrics["security"] == [{}, {"metricsToken": []}]
    assert spec["components"]["securitySchemes"]["metricsToken"]["scheme"] == "bearer"
    assert list(metrics["responses"]["200"]["content"]) == ["text/plain"]
    assert "403" not in metrics["responses"] and "401" in metrics["responses"]
    runtime = paths["/admin/runtime"]["get"]
    assert set(runtime["responses"]["200"]["content"]) == {"application/json", "text/html"}
    assert runtime["x-role"] == "super"
    export = paths["/ticketreport/reports/export"]["get"]
    assert set(export["responses"]["200"]["content"]) == {
        "text/csv", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}
    # the secret: in the creation's and the rotation's answers, never in a read's
    assert "secret" not in schemas["Webhook"]["properties"]
    for path, method, status in (("/webhooks", "post", "201"), ("/webhooks/{webhook_id}/rotate-secret", "post", "200")):
        shown = paths[path][method]["responses"][status]["content"]["application/json"]["schema"]
        assert "secret" in json.dumps(shown), path
    read = paths["/webhooks/{webhook_id}"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert read == {"$ref": "#/components/schemas/Webhook"}
