"""Every error leaves the API in the spec's envelope, framework errors included."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import iter_route_contexts
from psycopg import OperationalError as DriverOperationalError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.body_limit import BodyTooLarge, too_large_body
from api.envelope import error_body
from services.core.errors import AppError, ErrorCode

logger = logging.getLogger(__name__)

_LOCATIONS = {"body", "query", "path", "header", "cookie"}

_HTTP_CODES = {
    400: ErrorCode.BAD_REQUEST,
    401: ErrorCode.UNAUTHORIZED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.RESOURCE_NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    409: ErrorCode.CONFLICT,
    422: ErrorCode.VALIDATION_ERROR,
    429: ErrorCode.RATE_LIMIT_EXCEEDED,
    503: ErrorCode.SERVICE_UNAVAILABLE,
}


def field_name(loc: tuple[Any, ...]) -> str:
    """("body", "businessHours", "schedule", "funday", "[key]") -> "businessHours.schedule.funday"."""
    parts = list(loc)
    if parts and parts[0] in _LOCATIONS:
        where = parts.pop(0)
        if not parts or isinstance(parts[0], int):
            return where
    name = ""
    for part in parts:
        if part == "[key]":
            continue
        if isinstance(part, int):
            name += f"[{part}]"
        else:
            # A key may hold a lone surrogate (api/storable.py refuses it): shown escaped.
            text = str(part).encode("utf-8", "backslashreplace").decode("utf-8")
            name += ("." if name else "") + text
    return name or "body"


def _reason(error: dict[str, Any]) -> str:
    if error.get("type") == "json_invalid":
        detail = (error.get("ctx") or {}).get("error", "")
        return f"malformed JSON{': ' + detail if detail else ''}"
    if error.get("type") == "missing" and tuple(error.get("loc", ())) == ("body",):
        return "a JSON body is required"
    return str(error.get("msg", "invalid value")).removeprefix("Value error, ")


async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
    if any(tuple(e["loc"])[:1] == ("path",) for e in exc.errors()):
        # `PUT /contacts/import` reaches `PUT /contacts/{contactId}` with "import" as the id;
        # but that path names a resource of its own, which does not take this method.
        methods, literal = allowed_methods(request)
        if literal and request.method not in methods:
            return _method_not_allowed(request, methods)
    errors = [{"field": field_name(tuple(e["loc"])), "reason": _reason(e)} for e in exc.errors()]
    first = errors[0] if errors else {"field": "body", "reason": "invalid request"}
    details = {**first, "errors": errors}
    return JSONResponse(
        error_body(ErrorCode.VALIDATION_ERROR, f"{first['field']}: {first['reason']}", details),
        status_code=422,
    )


def app_error_body(exc: AppError) -> dict[str, Any]:
    """The envelope an AppError answers with (logged when it is the service's fault)."""
    if exc.status >= 500:
        logger.warning(
            "request.failed",
            extra={"code": exc.code.value, "status": exc.status, "error": exc.message},
        )
    return error_body(exc.code, exc.message, exc.details)


async def _app_error(request: Request, exc: AppError) -> JSONResponse:
    return JSONResponse(app_error_body(exc), status_code=exc.status, headers=exc.headers)


# How long a client should wait before asking again when the database is away or every
# connection of the pool is busy (both pass in seconds, or the request is worth retrying).
DATABASE_RETRY_AFTER = 2


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    """The database is unreachable, the connection dropped, a statement was cancelled, or
    every pooled connection stayed busy for the pool's timeout: a 503 the client may retry,
    never a 500. Other database errors (a constraint the code did not expect) stay 500s."""
    if isinstance(exc, DBAPIError) and not (
        exc.connection_invalidated or isinstance(exc.orig, DriverOperationalError)
    ):
        raise exc
    logger.warning("request.database_unavailable", extra={"error": type(exc).__name__})
    message = (
        "every database connection is busy; retry shortly"
        if isinstance(exc, PoolTimeout)
        else "the database is unavailable; retry shortly"
    )
    return JSONResponse(
        error_body(ErrorCode.SERVICE_UNAVAILABLE, message),
        status_code=503,
        headers={"Retry-After": str(DATABASE_RETRY_AFTER)},
    )


async def _body_too_large(request: Request, exc: BodyTooLarge) -> JSONResponse:
    return JSONResponse(too_large_body(exc.limit), status_code=413)


def allowed_methods(request: Request) -> tuple[set[str], bool]:
    """Every method some route serves at the request's path (FastAPI makes one route per
    method, and Starlette's own 405 names only the first route's), and whether the path is a
    literal one (`/contacts/import`), whose routes then hide the parametrized ones it also
    matches (`/contacts/{contactId}`)."""
    path = request.scope["path"].removeprefix(request.scope.get("root_path", ""))
    literal: set[str] = set()
    parametrized: set[str] = set()
    for route in iter_route_contexts(request.app.routes):
        regex = getattr(route, "path_regex", None)
        if regex is not None and regex.match(path):
            found = parametrized if "{" in (route.path or "") else literal
            found |= route.methods or set()
    methods = literal or parametrized
    return (methods | {"OPTIONS"} if methods else methods), bool(literal)


def _method_not_allowed(request: Request, methods: set[str]) -> Response:
    allow = {"Allow": ", ".join(sorted(methods))}
    if request.method == "OPTIONS":
        # What the path allows is the whole answer to OPTIONS (CORS preflights are answered
        # before this by CORSMiddleware, when configured).
        return Response(status_code=204, headers=allow)
    message = f"method {request.method} is not allowed on {request.url.path}"
    return JSONResponse(
        error_body(ErrorCode.METHOD_NOT_ALLOWED, message), status_code=405, headers=allow
    )


async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    if exc.status_code == 405:
        return _method_not_allowed(request, allowed_methods(request)[0])
    if exc.status_code == 400:
        # The framework's only 400: a JSON body it could not even decode (not UTF-8). The one
        # rule for bodies that cannot be parsed is 422 naming the body (see _reason).
        reason = "malformed JSON: not UTF-8 text"
        details = {"field": "body", "reason": reason}
        return JSONResponse(
            error_body(ErrorCode.VALIDATION_ERROR, f"body: {reason}", details), status_code=422
        )
    code = _HTTP_CODES.get(exc.status_code, ErrorCode.BAD_REQUEST)
    if exc.status_code == 404:
        message = f"no route {request.method} {request.url.path}"
    else:
        message = str(exc.detail)
    return JSONResponse(
        error_body(code, message), status_code=exc.status_code, headers=exc.headers or None
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(AppError, _app_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(BodyTooLarge, _body_too_large)  # type: ignore[arg-type]
    app.add_exception_handler(PoolTimeout, _database_unavailable)
    app.add_exception_handler(DBAPIError, _database_unavailable)
    app.add_exception_handler(DriverOperationalError, _database_unavailable)
    # Unexpected exceptions are answered by RequestContextMiddleware (api/middleware.py), which
    # sits outside these handlers and still knows the request id.
