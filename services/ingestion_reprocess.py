"""Reprocessing: stored webhook events whose first application failed are applied later, from
any process, at most once each (services/ingestion_sql.py's REPROCESS form claims the row)."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from mktx.settings import Settings
from models.db import SessionMaker, utcnow
from services.ingestion_apply import UnusableEvent, describe_failure, reapply_event
from services.ingestion_dispatch import FollowUp, TemporalSource, run_follow_up
from services.ingestion_events import EventType, IncomingEvent

logger = logging.getLogger(__name__)

REPROCESS_BATCH = 100


# Reprocessing ----------------------------------------------------------------------------------

# Keyset pages over everything pending, oldest first: events that keep failing do not hide
# newer ones behind them.
_PENDING = text(
    """
    SELECT id, received_at FROM webhook_events
    WHERE processed_at IS NULL AND received_at <= :before
      AND (received_at, id) > (:after_received_at, :after_id)
    ORDER BY received_at, id LIMIT :batch
    """
)
_LOAD = text(
    """
    SELECT id, for_user_id, event_type, dedup_key, subject_user_id, payload
    FROM webhook_events WHERE id = :id AND processed_at IS NULL
    """
)
_SETTLE = text(
    """
    UPDATE webhook_events SET error = :error,
        processed_at = CASE WHEN :final THEN CAST(:now AS timestamptz) END
    WHERE id = :id
    """
)


async def reprocess_pending(
    sessions: SessionMaker,
    settings: Settings,
    *,
    temporal: TemporalSource | None = None,
    limit: int = 1000,
    min_age: timedelta = timedelta(0),
) -> int:
    """Apply stored events that were not applied (their first attempt failed); returns how many
    now are. Looks at up to `limit` of them. Safe to run from several processes at once. With
    `temporal`, listeners and triggers are told afterwards as for a fresh event."""
    before = utcnow() - min_age
    after: tuple[datetime, uuid.UUID] = (datetime.min.replace(tzinfo=UTC), uuid.UUID(int=0))
    seen = applied = 0
    follow_up = FollowUp()
    while seen < limit:
        async with sessions() as session:
            page = await session.execute(
                _PENDING,
                {
                    "before": before,
                    "after_received_at": after[0],
                    "after_id": after[1],
                    "batch": min(REPROCESS_BATCH, limit - seen),
                },
            )
            rows = page.all()
        for event_id, received_at in rows:
            applied += await _reprocess_one(sessions, settings, event_id, follow_up)
            after = (received_at, event_id)
        seen += len(rows)
        if len(rows) < REPROCESS_BATCH:
            break
    if seen:
        logger.info("webhook.reprocessed", extra={"pending": seen, "applied": applied})
    if temporal is not None:
        await run_follow_up(follow_up, temporal=temporal, sessions=sessions, settings=settings)
    return applied


def _event_type(value: str) -> EventType:
    try:
        return EventType(value)
    except ValueError:
        raise UnusableEvent(f"unknown event type {value!r}") from None


async def _reprocess_one(
    sessions: SessionMaker, settings: Settings, event_id: uuid.UUID, follow_up: FollowUp
) -> int:
    async with sessions() as session:
        row = (await session.execute(_LOAD, {"id": event_id})).first()
        if row is None:
            return 0  # applied meanwhile
        try:
            event = IncomingEvent(
                for_user_id=row.for_user_id,
                event_type=_event_type(row.event_type),
                dedup_key=row.dedup_key,
                subject_user_id=row.subject_user_id,
                payload=row.payload,
            )
            applied = await reapply_event(session, settings, event, event_id)
            await session.commit()
        except Exception as exc:
            failure = exc
        else:
            follow_up.extend(applied.follow_up)
            return 1 if applied.route is not None else 0
    async with sessions() as session:
        final = isinstance(failure, UnusableEvent)
        await session.execute(
            _SETTLE,
            {"id": event_id, "error": describe_failure(failure), "final": final, "now": utcnow()},
        )
        await session.commit()
    logger.warning(
        "webhook.reprocess_failed",
        extra={"event_id": str(event_id), "error": describe_failure(failure)},
    )
    return 0
