"""API errors: every failure answers `{"error": "ERR_…", "message": "…"}` with its HTTP status.

`register_error_handlers` is the one place where library and storage errors become responses;
an unexpected exception becomes a 500 carrying an error id that is also logged. A database that is
away (`Unavailable`, `QueryTimeout`) is a 503 with `Retry-After`. (quart-trio hands the errors of an
exception group from a handler's nursery to these handlers one by one.)
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

from quart import Quart, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

from actors.ticket import ActorUnavailable
from storage import errors as storage_errors
from storage.plans import LimitReached
from storage.tickets import TicketConflict

log = logging.getLogger("zapgate.api")


class ApiError(Exception):
    status = 400
    code = "ERR_BAD_REQUEST"

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None,
                 field: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.field = field
        self.headers = headers or {}


class BadRequest(ApiError):
    status, code = 400, "ERR_BAD_REQUEST"


class Unauthorized(ApiError):
    status, code = 401, "ERR_SESSION_EXPIRED"


class Forbidden(ApiError):
    status, code = 403, "ERR_NO_PERMISSION"


class NotFound(ApiError):
    status, code = 404, "ERR_NOT_FOUND"


class Conflict(ApiError):
    status, code = 409, "ERR_CONFLICT"


class TooManyRequests(ApiError):
    status, code = 429, "ERR_TOO_MANY_REQUESTS"


RETRY_AFTER_UNAVAILABLE = "5"  # seconds, in the 503s answered while the database is away


_HTTP_CODES = {
    400: "ERR_BAD_REQUEST",
    401: "ERR_SESSION_EXPIRED",
    403: "ERR_NO_PERMISSION",
    404: "ERR_NOT_FOUND",
    405: "ERR_METHOD_NOT_ALLOWED",
    408: "ERR_REQUEST_TIMEOUT",
    411: "ERR_LENGTH_REQUIRED",
    413: "ERR_PAYLOAD_TOO_LARGE",
    415: "ERR_UNSUPPORTED_MEDIA_TYPE",
    429: "ERR_TOO_MANY_REQUESTS",
}

# Unique constraints whose violation the user can fix: constraint → (code, message).
_CONFLICTS = {
    "users_email_key": ("ERR_DUPLICATED_EMAIL", "a user with this email already exists"),
    "companies_name_key": ("ERR_COMPANY_NAME_ALREADY_EXISTS", "a company with this name already exists"),
    "plans_name_key": ("ERR_PLAN_NAME_ALREADY_EXISTS", "a plan with this name already exists"),
    "queues_company_name_key": ("ERR_QUEUE_NAME_ALREADY_EXISTS", "a queue with this name already exists"),
    "whatsapps_company_name_key": ("ERR_WAPP_NAME_ALREADY_EXISTS", "a connection with this name already exists"),
    "tags_company_name_key": ("ERR_TAG_NAME_ALREADY_EXISTS", "a tag with this name already exists"),
    "contacts_company_number_key": ("ERR_DUPLICATED_CONTACT", "a contact with this number already exists"),
    "files_company_name_key": ("ERR_FILE_NAME_ALREADY_EXISTS", "a file list with this name already exists"),
}


# The plan's limits: a creation beyond them (the family's code names, one per resource).
_LIMIT_CODES = {"users": "ERR_USER_CREATION_COUNT", "connections": "ERR_NO_PERMISSION_CONNECTIONS_LIMIT",
                "queues": "ERR_QUEUE_CREATION_COUNT"}


def error_response(status: int, code: str, message: str, **extra: Any) -> Response:
    body = {"error": code, "message": message, **{k: v for k, v in extra.items() if v is not None}}
    response = jsonify(body)
    response.status_code = status
    return response


Report = Callable[..., Any]  # gateway.error_tracking.ErrorTracker.report


def _not_reported(error: BaseException, **_: Any) -> None:
    return None


def register_error_handlers(app: Quart, *, report: Report = _not_reported) -> None:
    """The JSON error answers; `report` gets every unhandled error (Sentry, when SENTRY_DSN is set)."""

    @app.errorhandler(ApiError)
    async def api_error(error: ApiError) -> Response:
        response = error_response(error.status, error.code, error.message, field=error.field)
        response.headers.update(error.headers)
        return response

    @app.errorhandler(HTTPException)
    async def http_error(error: HTTPException) -> Response:
        status = error.code or 500
        code = _HTTP_CODES.get(status, f"ERR_HTTP_{status}")
        message = {
            404: "no such route",
            405: "method not allowed on this route",
            413: "the request body is larger than allowed",
        }.get(status, error.description or error.name)
        response = error_response(status, code, message)
        if status == 405 and getattr(error, "valid_methods", None):
            response.headers["Allow"] = ", ".join(error.valid_methods)  # type: ignore[attr-defined]
        return response

    @app.errorhandler(storage_errors.NotFound)
    async def not_found(error: storage_errors.NotFound) -> Response:
        return error_response(404, "ERR_NOT_FOUND", f"{error} not found")

    @app.errorhandler(storage_errors.Conflict)
    async def conflict(error: storage_errors.Conflict) -> Response:
        code, message = _CONFLICTS.get(error.constraint or "", ("ERR_CONFLICT", "the record already exists"))
        return error_response(409, code, message)

    @app.errorhandler(TicketConflict)
    async def ticket_conflict(error: TicketConflict) -> Response:
        """A request made on a ticket that changed meanwhile (a lost accept): 409 naming who has it now."""
        return error_response(409, error.code, str(error), ticketId=error.ticket_id, ticketStatus=error.status,
                              userId=error.user_id, userName=error.user_name)

    @app.errorhandler(LimitReached)
    async def limit_reached(error: LimitReached) -> Response:
        """A creation beyond the plan: 400 (the family's status for it) with its codes, nothing written."""
        return error_response(400, _LIMIT_CODES[error.resource], str(error), limit=error.limit)

    @app.errorhandler(storage_errors.InvalidReference)
    async def invalid_reference(error: storage_errors.InvalidReference) -> Response:
        return error_response(404, "ERR_NOT_FOUND", "a referenced record does not exist")

    @app.errorhandler(storage_errors.InvalidData)
    async def invalid_data(error: storage_errors.InvalidData) -> Response:
        return error_response(400, "ERR_VALIDATION", f"invalid data: {error}")

    @app.errorhandler(storage_errors.Unavailable)
    async def unavailable(error: storage_errors.Unavailable) -> Response:
        return _database_away(error)

    @app.errorhandler(ActorUnavailable)
    async def actor_unavailable(error: ActorUnavailable) -> Response:
        log.warning("conversation unavailable", extra={"fields": {"reason": str(error)}})
        response = error_response(503, "ERR_CONVERSATION_UNAVAILABLE",
                                  f"the conversation cannot answer now ({error}); retry shortly")
        response.headers["Retry-After"] = "2"
        return response

    @app.errorhandler(storage_errors.QueryTimeout)
    async def timeout(error: storage_errors.QueryTimeout) -> Response:
        return _database_away(error)

    @app.errorhandler(Exception)
    async def internal(error: Exception) -> Response:
        error_id = uuid.uuid4().hex[:12]
        log.error("unhandled error", exc_info=error,
                  extra={"fields": {"error_id": error_id, "request_id": g.get("request_id")}})
        rule = request.url_rule
        report(error, request_id=g.get("request_id"), error_id=error_id, method=request.method, path=request.path,
               route=rule.rule if rule is not None else None)
        return error_response(500, "ERR_INTERNAL", "internal error; quote this id to your administrator",
                              errorId=error_id)


def _database_away(error: Exception) -> Response:
    """503 + Retry-After: the database is away (logged once by storage.db) or too slow."""
    error_id = uuid.uuid4().hex[:12]
    if isinstance(error, storage_errors.QueryTimeout):
        log.error("query timeout", extra={"fields": {"error_id": error_id}})
        response = error_response(503, "ERR_TIMEOUT", "the request took too long", errorId=error_id)
    else:
        log.warning("database unavailable", extra={"fields": {"error_id": error_id, "reason": str(error)[:300]}})
        response = error_response(503, "ERR_SERVICE_UNAVAILABLE", "the database is unavailable, retry later",
                                  errorId=error_id)
    response.headers["Retry-After"] = RETRY_AFTER_UNAVAILABLE
    return response
