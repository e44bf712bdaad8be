"""Webhook ingestion: the one place where an Account Activity event becomes domain changes.

Each event of a payload is stored raw and applied by one atomic statement (the dedup key makes
X's retries and duplicates no-ops); the delivery is acknowledged only after that commit, so an
event X was told we have is never lost. When applying fails, the raw event is stored alone
with its error and `reprocess_pending` applies it later; when the database cannot store it at
all, the caller answers 503 and X retries. After commit, `run_follow_up` starts queued
deliveries, signals the contact's listening workflows and runs the registered contact
triggers (services/ingestion_dispatch.py).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg import Error as DriverError
from psycopg import OperationalError as DriverOperationalError
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from mktx.settings import Settings
from models.db import SessionMaker, utcnow
from services import ingestion_sql as sql
from services.errors import ServiceUnavailable
from services.ingestion_apply import (
    UnusableEvent,
    event_params,
    fetch_one,
    ingest_event,
    reapply_event,
)
from services.ingestion_connections import IngestionConnections
from services.ingestion_dispatch import (
    ContactTrigger,
    FollowUp,
    TemporalSource,
    TriggerContext,
    register_trigger,
    run_follow_up,
    signal_with_start,
)
from services.ingestion_events import EventType, IncomingEvent, MalformedPayload, split_payload

__all__ = [
    "ContactTrigger",
    "IngestionConnections",
    "FollowUp",
    "IngestResult",
    "MalformedPayload",
    "TriggerContext",
    "ingest_payload",
    "register_trigger",
    "reprocess_pending",
    "run_follow_up",
    "signal_with_start",
]

logger = logging.getLogger(__name__)

MAX_ERROR = 2048
REPROCESS_BATCH = 100
DATABASE_ERRORS = (SQLAlchemyError, DriverError, OSError)


@dataclass
class IngestResult:
    received: int = 0
    stored: int = 0
    duplicates: int = 0
    failed: int = 0  # stored, but not applied yet (see reprocess_pending)
    unrouted: int = 0  # for an X user no merchant has connected
    follow_up: FollowUp = field(default_factory=FollowUp)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:MAX_ERROR]


async def ingest_payload(
    connections: IngestionConnections, settings: Settings, body: Any
) -> IngestResult:
    """Store and apply every event of a verified payload. Raises MalformedPayload (not an
    Account Activity payload) and ServiceUnavailable (the database cannot store it: X retries)."""
    events = split_payload(body)
    result = IngestResult(received=len(events))
    for event in events:
        await _ingest_one(connections, settings, event, result)
    return result


async def _ingest_one(
    connections: IngestionConnections,
    settings: Settings,
    event: IncomingEvent,
    result: IngestResult,
) -> None:
    now = utcnow()
    failure: Exception | None = None
    for _ in range(2):
        try:
            async with connections.connect() as connection:
                applied = await ingest_event(connection, settings, event, now)
        except DriverOperationalError as exc:
            failure = exc  # e.g. a kept connection the server closed meanwhile: once more
            continue
        except Exception as exc:  # any failure to apply: keep the raw event with its error
            failure = exc
            break
        failure = None
        break
    if failure is not None:
        await _store_failed(connections, event, now, failure, result)
        return
    if applied.route is None:
        result.duplicates += 1
        return
    result.stored += 1
    if applied.route.account_id is None:
        result.unrouted += 1
        logger.info(
            "webhook.unrouted_event",
            extra={"for_user_id": event.for_user_id, "event_type": event.event_type.value},
        )
    result.follow_up.extend(applied.follow_up)


async def _store_failed(
    connections: IngestionConnections,
    event: IncomingEvent,
    now: datetime,
    failure: BaseException,
    result: IngestResult,
) -> None:
    unusable = isinstance(failure, UnusableEvent)
    params = event_params(event, now, uuid.uuid4())
    params.update(settled=unusable, error=_describe(failure))
    try:
        async with connections.connect() as connection:
            row = await fetch_one(connection.driver, sql.STORE_FAILED, params)
    except DATABASE_ERRORS as exc:
        logger.warning(
            "webhook.database_unavailable",
            extra={"error": _describe(exc), "dedup_key": event.dedup_key},
        )
        raise ServiceUnavailable("the database is unavailable; retry the delivery") from exc
    if row is None:
        result.duplicates += 1  # a concurrent delivery of the same event got there first
        return
    result.stored += 1
    result.failed += 0 if unusable else 1
    logger.warning(
        "webhook.event_not_applied",
        extra={
            "event_id": str(row[0]),
            "event_type": event.event_type.value,
            "error": _describe(failure),
            "will_retry": not unusable,
        },
        exc_info=None if isinstance(failure, (UnusableEvent, *DATABASE_ERRORS)) else failure,
    )


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
            {"id": event_id, "error": _describe(failure), "final": final, "now": utcnow()},
        )
        await session.commit()
    logger.warning(
        "webhook.reprocess_failed", extra={"event_id": str(event_id), "error": _describe(failure)}
    )
    return 0
