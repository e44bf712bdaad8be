"""Reprocessing: stored webhook events whose first application failed are applied later, from
any process, at most once each (services/ingestion/sql.py's REPROCESS form claims the row).

Each failure counts an attempt and backs the event off: due again 5 s after its first failure,
the delay doubling up to an hour; after MAX_ATTEMPTS failures it is settled (processed, its last
error kept) and logged as given up. Ingestion records the first failure (attempt 1, due after
FIRST_RETRY: services/ingestion/sql.py's STORE_FAILED_SQL says so in SQL). Applying an event
late records what it owes as applying it at once would have (services/ingestion/follow_up.py).
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from models.db import SessionMaker, utcnow
from services.ingestion.apply import IngestionContext, UnusableEvent, reapply_event
from services.ingestion.events import EventType, IncomingEvent
from services.ingestion.follow_up import FollowUp, TemporalSource, run_follow_up
from services.ingestion.retries import FIRST_RETRY, MAX_RETRY, describe_failure, retry_delay
from workflows.contracts.maintenance import ReprocessReport

__all__ = [
    "FIRST_RETRY",
    "MAX_ATTEMPTS",
    "MAX_RETRY",
    "ReprocessReport",
    "reprocess_due",
    "retry_delay",
]

logger = logging.getLogger(__name__)

REPROCESS_BATCH = 100

# Failures after which an event is given up (about half a day of trying; FIRST_RETRY is also
# written in services/ingestion/sql.py's STORE_FAILED_SQL).
MAX_ATTEMPTS = 20


# Pending events that are due: when the next attempt is (since receipt for an event stored
# without one), then id. Keyset pages over that order, which a failure moves past `now`.
_DUE = "coalesce(next_attempt_at, received_at)"
_PENDING = text(
    f"""
    SELECT id, {_DUE} AS due FROM webhook_events
    WHERE processed_at IS NULL AND {_DUE} <= :now AND received_at <= :before
      AND ({_DUE}, id) > (:after_due, :after_id)
    ORDER BY {_DUE}, id LIMIT :batch
    """
)
_LOAD = text(
    f"""
    SELECT id, for_user_id, event_type, dedup_key, subject_user_id, payload, attempts
    FROM webhook_events WHERE id = :id AND processed_at IS NULL AND {_DUE} <= :now
    """
)
# One more failed attempt, unless another reprocessor has recorded this one already.
_FAILED = text(
    """
    UPDATE webhook_events SET error = :error, attempts = attempts + 1,
        next_attempt_at = CASE WHEN :final THEN NULL ELSE CAST(:next_attempt_at AS timestamptz) END,
        processed_at = CASE WHEN :final THEN CAST(:now AS timestamptz) END
    WHERE id = :id AND processed_at IS NULL AND attempts = :attempts
    RETURNING attempts
    """
)


async def reprocess_due(
    sessions: SessionMaker,
    context: IngestionContext,
    *,
    temporal: TemporalSource | None = None,
    limit: int = 1000,
    min_age: timedelta = timedelta(0),
) -> ReprocessReport:
    """Apply stored events that were not applied (their earlier attempts failed) and are due
    again, and report what happened to each one looked at (up to `limit`). Safe to run from
    several processes at once. With `temporal`, what the events owe is carried out afterwards,
    as for a fresh event (else by the maintenance step's next pass)."""
    now = utcnow()
    before = now - min_age
    after: tuple[datetime, uuid.UUID] = (datetime.min.replace(tzinfo=UTC), uuid.UUID(int=0))
    report = ReprocessReport()
    follow_up = FollowUp()
    while report.due < limit:
        async with sessions() as session:
            page = await session.execute(
                _PENDING,
                {
                    "now": now,
                    "before": before,
                    "after_due": after[0],
                    "after_id": after[1],
                    "batch": min(REPROCESS_BATCH, limit - report.due),
                },
            )
            rows = page.all()
        for event_id, due in rows:
            await _reprocess_one(sessions, context, event_id, now, follow_up, report)
            after = (due, event_id)
        report.due += len(rows)
        if len(rows) < REPROCESS_BATCH:
            break
    if report.due:
        logger.info("webhook.reprocessed", extra=report.model_dump())
    if temporal is not None:
        await run_follow_up(
            follow_up,
            temporal=temporal,
            sessions=sessions,
            settings=context.settings,
            triggers=context.triggers,
        )
    return report


def _event_type(value: str) -> EventType:
    try:
        return EventType(value)
    except ValueError:
        raise UnusableEvent(f"unknown event type {value!r}") from None


async def _reprocess_one(
    sessions: SessionMaker,
    context: IngestionContext,
    event_id: uuid.UUID,
    now: datetime,
    follow_up: FollowUp,
    report: ReprocessReport,
) -> None:
    async with sessions() as session:
        row = (await session.execute(_LOAD, {"id": event_id, "now": now})).first()
        if row is None:
            return  # applied meanwhile, or another reprocessor's failure made it due later
        attempts: int = row.attempts
        try:
            event = IncomingEvent(
                for_user_id=row.for_user_id,
                event_type=_event_type(row.event_type),
                dedup_key=row.dedup_key,
                subject_user_id=row.subject_user_id,
                payload=row.payload,
            )
            applied = await reapply_event(session, context, event, event_id)
            await session.commit()
        except Exception as exc:
            failure = exc
        else:
            follow_up.extend(applied.follow_up)
            report.applied += 1 if applied.route is not None else 0
            return
    await _record_failure(sessions, event_id, attempts, failure, report)


async def _record_failure(
    sessions: SessionMaker,
    event_id: uuid.UUID,
    attempts: int,
    failure: Exception,
    report: ReprocessReport,
) -> None:
    error = describe_failure(failure)
    unusable = isinstance(failure, UnusableEvent)
    now = utcnow()
    attempt = attempts + 1
    final = unusable or attempt >= MAX_ATTEMPTS
    next_attempt_at = None if final else now + retry_delay(attempt)
    async with sessions() as session:
        recorded = (
            await session.execute(
                _FAILED,
                {
                    "id": event_id,
                    "attempts": attempts,
                    "error": error,
                    "final": final,
                    "next_attempt_at": next_attempt_at,
                    "now": now,
                },
            )
        ).first()
        await session.commit()
    if recorded is None:
        return  # a concurrent reprocessor applied it or recorded this same attempt
    details = {"event_id": str(event_id), "attempts": attempt, "error": error}
    if final and not unusable:
        report.given_up += 1
        logger.error("webhook.reprocess_given_up", extra=details)
        return
    report.failed += 1
    logger.warning(
        "webhook.reprocess_failed",
        extra={
            **details,
            "will_retry": next_attempt_at is not None,
            "next_attempt_at": next_attempt_at.isoformat() if next_attempt_at else None,
        },
    )
