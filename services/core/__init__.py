"""What every domain stands on.

- `errors`: the one error hierarchy (`AppError`, `NotFound`, `ValidationFailed`, `InvalidState`,
  `RateLimited`, `ServiceUnavailable`, …) the API writes as the spec's envelope.
- `tenancy`: `owned_by` / `get_owned`, every query on tenant data scoped by the merchant.
- `auth`: `Principal`, `Role`, `Permission`, `issue_token`, token checks.
- `in_use`: `UsageChecks`, "still in use?" checks a resource's users register.
- `x_errors`: `api_error_from_x`, how an X failure reads to an API caller.
- `temporal`: `TemporalSource`, the process's Temporal client fetched when a call is due.
- `totals`: how many rows a list has — exact up to `EXACT_TOTAL_LIMIT` (10,000), the planner's
  estimate above (`Total.is_estimate`, the API's `pagination.totalIsEstimate`).
"""
