"""Routing rules the family's frontends rely on: trailing slashes, CORS preflights, the JSON 404."""

from __future__ import annotations

from typing import Any

from api.app import create_app
from tests.integration.conftest import Api, auth


def _collection_paths(api: Api) -> list[str]:
    """Every GET route of the app without a path parameter (read from the app's own URL map)."""
    app = create_app(api.server.deps)
    paths = set()
    for rule in app.url_map.iter_rules():
        if "GET" in (rule.methods or ()) and not rule.arguments and rule.endpoint != "static":
            paths.add(rule.rule)
    return sorted(paths)


def _shape(body: Any) -> Any:
    if isinstance(body, dict):
        return sorted(body)
    if isinstance(body, list):
        return len(body)
    return body


async def test_every_collection_answers_with_and_without_a_trailing_slash(api: Api) -> None:
    token = await api.admin_token()
    paths = _collection_paths(api)
    assert {"/tickets", "/contacts", "/users", "/queue", "/whatsapp", "/settings"} <= set(paths)
    checked = 0
    for path in paths:
        if path.startswith("/socket.io") or path in ("/", "/health", "/ready"):
            continue
        plain = await api.client.get(path, params={"pageNumber": 1}, headers=auth(token))
        slashed = await api.client.get(path + "/", params={"pageNumber": 1}, headers=auth(token))
        assert slashed.status_code == plain.status_code, (path, plain.status_code, slashed.text[:200])
        assert plain.status_code != 404, path
        if plain.headers.get("content-type", "").startswith("application/json"):
            assert _shape(slashed.json()) == _shape(plain.json()), path
        checked += 1
    assert checked >= 6


async def test_a_write_with_a_trailing_slash_reaches_its_route(api: Api) -> None:
    token = await api.admin_token()
    created = await api.client.post("/contacts/", json={"name": "Slash", "number": "5511912345678"},
                                    headers=auth(token))
    assert created.status_code in (200, 201), created.text
    listed = await api.client.get("/contacts/", params={"searchParam": "Slash"}, headers=auth(token))
    assert [c["id"] for c in listed.json()["contacts"]] == [created.json()["id"]]
    shown = await api.client.get(f"/contacts/{created.json()['id']}/", headers=auth(token))
    assert shown.status_code == 200 and shown.json()["name"] == "Slash"


async def test_unknown_routes_answer_the_json_404_with_or_without_a_slash(api: Api) -> None:
    for path in ("/no-such-thing", "/no-such-thing/", "/tickets/x/y/z/"):
        response = await api.client.get(path)
        assert response.status_code == 404, path
        assert set(response.json()) >= {"error", "message"}


async def test_preflight_with_a_trailing_slash_allows_the_frontend(api: Api) -> None:
    origin = api.server.config.frontend_urls[0]
    response = await api.client.options("/tickets/", headers={
        "Origin": origin, "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization"})
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == origin
    assert response.headers["Access-Control-Allow-Credentials"] == "true"
    assert "GET" in response.headers["Access-Control-Allow-Methods"]
    assert response.headers["Access-Control-Allow-Headers"] == "authorization"
    other = await api.client.options("/tickets/", headers={"Origin": "http://evil.example",
                                                           "Access-Control-Request-Method": "GET"})
    assert "Access-Control-Allow-Origin" not in other.headers
