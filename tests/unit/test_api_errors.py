"""The API's answers when the database is away: 503 + Retry-After + the JSON error body, also when the
error comes wrapped in an exception group (a nursery in the handler: quart-trio unwraps it). Quart's
test client, no I/O."""

from __future__ import annotations

import pytest
from quart_trio import QuartTrio

from api.errors import register_error_handlers
from storage.errors import Conflict, QueryTimeout, Unavailable

pytestmark = pytest.mark.trio


def app_raising(error: BaseException) -> QuartTrio:
    app = QuartTrio("errors-test")
    register_error_handlers(app)

    @app.get("/boom")
    async def boom() -> str:
        raise error

    return app


@pytest.mark.parametrize(("error", "code"), [
    (Unavailable("connection refused"), "ERR_SERVICE_UNAVAILABLE"),
    (QueryTimeout("canceling statement due to statement timeout"), "ERR_TIMEOUT"),
    (ExceptionGroup("nursery", [Unavailable("server closed the connection unexpectedly")]),
     "ERR_SERVICE_UNAVAILABLE"),
    (ExceptionGroup("nursery", [Unavailable("refused"), ExceptionGroup("inner", [QueryTimeout("slow")])]),
     "ERR_SERVICE_UNAVAILABLE"),
])
async def test_the_database_away_is_a_503_with_retry_after(error: BaseException, code: str) -> None:
    response = await app_raising(error).test_client().get("/boom")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    body = await response.get_json()
    assert body["error"] == code and body["message"] and body["errorId"]


async def test_other_storage_errors_keep_their_answers() -> None:
    response = await app_raising(Conflict("dup", "users_email_key")).test_client().get("/boom")
    assert response.status_code == 409 and (await response.get_json())["error"] == "ERR_DUPLICATED_EMAIL"
