"""Retry policies shared by the workflows: how long to keep trying X and the database."""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import RetryPolicy

from workflows.contracts.accounts import ACCOUNT_NOT_USABLE
from workflows.contracts.x_failures import X_REFUSALS


def x_retry(*also_final: str) -> RetryPolicy:
    """The account unusable or X refusing: final. While X is down, retry with backoff up to
    a minute apart for as long as the activity's schedule-to-close allows; X 429 retries at
    X's reset time (the error says when)."""
    return RetryPolicy(
        initial_interval=timedelta(seconds=1),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(seconds=60),
        non_retryable_error_types=[ACCOUNT_NOT_USABLE, *X_REFUSALS, *also_final],
    )


DB_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30)
)
