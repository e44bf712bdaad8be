"""The names of X's failures as workflows see them: the `ApplicationError.type` an activity
gives an X failure (activities/x_failures.py, the class name of the integration's error), so
that a retry policy can name the refusals no retry can help."""

from __future__ import annotations

X_RATE_LIMITED = "XRateLimited"  # 429: retried at X's reset time
X_UNAVAILABLE = "XUnavailable"  # 5xx, timeout: retried with backoff
X_TOKEN_REVOKED = "XTokenRevoked"
X_INVALID_CREDENTIALS = "XInvalidCredentials"
X_FORBIDDEN = "XForbidden"
X_REQUEST_REJECTED = "XRequestRejected"

# X's own refusals: retrying cannot help.
X_REFUSALS = (X_TOKEN_REVOKED, X_INVALID_CREDENTIALS, X_FORBIDDEN, X_REQUEST_REJECTED)
