"""X failures as Temporal sees them: which to retry, and when."""

from __future__ import annotations

from datetime import timedelta

from temporalio.exceptions import ApplicationError

from integrations.x import XError, XRateLimited, XTokenRevoked, XUnavailable


def application_error_from_x(exc: XError) -> ApplicationError:
    """429 retries after X's reset time; outages retry with backoff; refusals do not retry."""
    name = type(exc).__name__
    if isinstance(exc, XRateLimited):
        return ApplicationError(
            f"X rate limit until {exc.reset_at.isoformat()}",
            type=name,
            next_retry_delay=timedelta(seconds=max(1.0, exc.retry_after)),
        )
    if isinstance(exc, XTokenRevoked):
        return ApplicationError(
            "X no longer accepts this account's token (revoked or expired)",
            type=name,
            non_retryable=True,
        )
    if isinstance(exc, XUnavailable):
        return ApplicationError(f"X unavailable: {exc.reason}", type=name)
    return ApplicationError(f"X refused: {exc.reason}", type=name, non_retryable=True)
