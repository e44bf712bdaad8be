"""Every error leaves the API in the spec's envelope, framework errors included."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
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
            name += ("." if name else "") + str(part)
    return name or "body"


def _reason(error: dict[str, Any]) -> str:
    if error.get("type") == "json_invalid":
        detail = (error.get("ctx") or {}).get("error", "")
        return f"malformed JSON{': ' + detail if detail else ''}"
    if error.get("type") == "missing" and tuple(error.get("loc", ())) == ("body",):
        return "a JSON body is required"
    return str(error.get("msg", "invalid value")).removeprefix("Value error, ")


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
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


async def _body_too_large(request: Request, exc: BodyTooLarge) -> JSONResponse:
    return JSONResponse(too_large_body(exc.limit), status_code=413)


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    code = _HTTP_CODES.get(exc.status_code, ErrorCode.BAD_REQUEST)
    if exc.status_code == 404:
        message = f"no route {request.method} {request.url.path}"
    elif exc.status_code == 405:
        message = f"method {request.method} is not allowed on {request.url.path}"
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
    # Unexpected exceptions are answered by RequestContextMiddleware (api/middleware.py), which
    # sits outside these handlers and still knows the request id.
