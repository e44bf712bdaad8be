"""How an X failure reads to an API caller."""

from __future__ import annotations

from integrations.x import (
    XError,
    XForbidden,
    XInvalidCredentials,
    XRateLimited,
    XTokenRevoked,
    XUnavailable,
)
from services.core.errors import AppError, RateLimited, UpstreamError, ValidationFailed


def api_error_from_x(exc: XError) -> AppError:
    details = {"xStatus": exc.status, "reason": exc.reason}
    if isinstance(exc, XInvalidCredentials):
        return ValidationFailed("oauthToken", "X rejected these OAuth credentials", status=400)
    if isinstance(exc, XTokenRevoked):
        return UpstreamError(
            "X no longer accepts this account's token; reconnect the account", details=details
        )
    if isinstance(exc, XRateLimited):
        return RateLimited(
            "X rate limit reached for this account",
            retry_after=max(1, int(exc.retry_after + 0.999)),
            details={"xResetAt": exc.reset_at.isoformat()},
        )
    if isinstance(exc, XUnavailable):
        error = UpstreamError("X is unavailable right now; try again shortly", details=details)
        error.status = 503
        return error
    if isinstance(exc, XForbidden):
        return UpstreamError(f"X refused the request: {exc.reason}", details=details)
    return UpstreamError(f"X rejected the request: {exc.reason}", details=details)
