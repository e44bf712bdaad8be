"""Ingestion's deferred work that failed: how a failure is recorded, when it is due again (the
backoff shared by the events whose application failed, services/ingestion/reprocess.py, and the
follow-ups Temporal could not take, services/ingestion/follow_up.py), and how long a follow-up
is held by whoever carries it out."""

from __future__ import annotations

from datetime import timedelta

# Backoff between attempts: FIRST_RETRY after the first failure, doubling, at most MAX_RETRY.
FIRST_RETRY = timedelta(seconds=5)
MAX_RETRY = timedelta(hours=1)

# A follow-up is held this long by the API that recorded it (it carries it out right after its
# answer, bounded by CONNECT_TIMEOUT + CALL_TIMEOUT there), and this long by a maintenance run
# that claimed it: only then may another process take it (written into the SQL that records
# and claims follow-ups).
RECORDED_HOLD = timedelta(seconds=60)
CLAIMED_HOLD = timedelta(minutes=5)


MAX_ERROR = 2048


def describe_failure(exc: BaseException) -> str:
    """How a failure is recorded on the stored event or follow-up (bounded)."""
    return f"{type(exc).__name__}: {exc}"[:MAX_ERROR]


def retry_delay(attempts: int) -> timedelta:
    """How long after its `attempts`-th failure a piece of work is tried again."""
    doublings = min(max(attempts, 1) - 1, 30)
    return min(FIRST_RETRY * 2**doublings, MAX_RETRY)


def interval_sql(delay: timedelta) -> str:
    """`delay` as a PostgreSQL interval literal."""
    return f"interval '{int(delay.total_seconds())} seconds'"
