"""One error hierarchy for the whole service; the API turns each into the spec's envelope."""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    VALIDATION_ERROR = "VALIDATION_ERROR"
    BAD_REQUEST = "BAD_REQUEST"
    UNAUTHORIZED = "UNAUTHORIZED"
    FORBIDDEN = "FORBIDDEN"
    RESOURCE_NOT_FOUND = "RESOURCE_NOT_FOUND"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    DUPLICATE_RESOURCE = "DUPLICATE_RESOURCE"
    CONFLICT = "CONFLICT"
    INVALID_STATE = "INVALID_STATE"
    RATE_LIMIT_EXCEEDED = "RATE_LIMIT_EXCEEDED"
    TWITTER_API_ERROR = "TWITTER_API_ERROR"
    AI_SERVICE_ERROR = "AI_SERVICE_ERROR"
    INTERNAL_ERROR = "INTERNAL_ERROR"
    SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"


class AppError(Exception):
    status: int = 500
    code: ErrorCode = ErrorCode.INTERNAL_ERROR

    def __init__(
        self,
        message: str,
        *,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.headers = headers or {}


class BadRequest(AppError):
    status = 400
    code = ErrorCode.BAD_REQUEST


class ValidationFailed(AppError):
    """A value the caller sent is not acceptable; `field` names it as the caller spelled it."""

    status = 422
    code = ErrorCode.VALIDATION_ERROR

    def __init__(self, field: str, reason: str, *, status: int = 422) -> None:
        super().__init__(f"{field}: {reason}", details={"field": field, "reason": reason})
        self.status = status


class Unauthorized(AppError):
    status = 401
    code = ErrorCode.UNAUTHORIZED

    def __init__(self, message: str = "authentication required") -> None:
        super().__init__(message, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(AppError):
    status = 403
    code = ErrorCode.FORBIDDEN


class NotFound(AppError):
    status = 404
    code = ErrorCode.RESOURCE_NOT_FOUND

    def __init__(self, resource: str, resource_id: object | None = None) -> None:
        message = f"{resource} not found"
        details = {"resource": resource}
        if resource_id is not None:
            details["id"] = str(resource_id)
        super().__init__(message, details=details)


class Duplicate(AppError):
    status = 409
    code = ErrorCode.DUPLICATE_RESOURCE


class Conflict(AppError):
    status = 409
    code = ErrorCode.CONFLICT


class InvalidState(AppError):
    status = 400
    code = ErrorCode.INVALID_STATE


class RateLimited(AppError):
    status = 429
    code = ErrorCode.RATE_LIMIT_EXCEEDED

    def __init__(self, message: str, *, retry_after: int, details: dict[str, Any] | None = None):
        super().__init__(
            message,
            details={"retryAfterSeconds": retry_after, **(details or {})},
            headers={"Retry-After": str(retry_after)},
        )
        self.retry_after = retry_after


class UpstreamError(AppError):
    """X refused or failed; `details.reason` carries X's own words."""

    status = 502
    code = ErrorCode.TWITTER_API_ERROR


class AIUnavailable(AppError):
    """The model gave no usable answer (timeout, provider error, twice outside the contract)."""

    status = 502
    code = ErrorCode.AI_SERVICE_ERROR


class ServiceUnavailable(AppError):
    status = 503
    code = ErrorCode.SERVICE_UNAVAILABLE
