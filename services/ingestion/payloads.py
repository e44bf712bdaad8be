"""A verified delivery of X's: every event of its payload stored and applied.

Each event of a payload is stored raw and applied by one atomic statement (the dedup key makes
X's retries and duplicates no-ops), which also records what the event owes the workflows
waiting on its contact; the delivery is acknowledged only after that commit, so an event X was
told we have is never lost, nor what it owes. When applying fails, the raw event is stored
alone with its error and `reprocess_due` applies it later; when the database cannot store it
at all, the caller answers 503 and X retries. After the answer, `run_follow_up` carries out
what the events owe (services/ingestion/follow_up.py).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from psycopg import Error as DriverError
from psycopg import OperationalError as DriverOperationalError
from sqlalchemy.exc import SQLAlchemyError

from mktx import metrics
from models.db import utcnow
from services.core.errors import ServiceUnavailable
from services.ingestion import sql
from services.ingestion.apply import (
    Applied,
    IngestionContext,
    Plan,
    UnusableEvent,
    event_params,
    fetch_one,
    finish,
    ingest_event,
    plan_statement,
)
from services.ingestion.batch import BatchFailed, GroupCommit
from services.ingestion.connections import IngestionConnections
from services.ingestion.events import IncomingEvent, routing_candidates, split_payload
from services.ingestion.follow_up import FollowUp
from services.ingestion.retries import describe_failure

logger = logging.getLogger(__name__)

DATABASE_ERRORS = (SQLAlchemyError, DriverError, OSError)


@dataclass
class IngestResult:
    received: int = 0
    stored: int = 0
    duplicates: int = 0
    failed: int = 0  # stored, but not applied yet (see reprocess_due)
    unrouted: int = 0  # for an X user no merchant has connected
    follow_up: FollowUp = field(default_factory=FollowUp)


async def ingest_payload(group: GroupCommit, context: IngestionContext, body: Any) -> IngestResult:
    """Store and apply every event of a verified delivery (Account Activity or X Activity API).
    Raises MalformedPayload (not an X delivery) and ServiceUnavailable (the database cannot
    store it: X retries)."""
    candidates = routing_candidates(body)
    connected = await _connected(group.connections, candidates) if candidates else frozenset()
    events = split_payload(body, connected)
    result = IngestResult(received=len(events))
    now = utcnow()
    plans = _batchable(context, events, now)
    if plans is not None:
        try:
            rows = await group.apply(plans)
        except BatchFailed:
            pass  # nothing of it was committed: each event alone, as below
        else:
            for plan, row in zip(plans, rows, strict=True):
                _record(result, plan.event, await finish(None, context, plan, row))
            return result
    for event in events:
        await _ingest_one(group.connections, context, event, result, now)
    return result


async def _connected(connections: IngestionConnections, user_ids: list[str]) -> frozenset[str]:
    """Which of these X users are connected accounts (a payload without for_user_id)."""
    try:
        async with connections.connect() as connection:
            row = await fetch_one(connection.driver, sql.CONNECTED_USERS, {"user_ids": user_ids})
    except DATABASE_ERRORS as exc:
        raise ServiceUnavailable("the database is unavailable; retry the delivery") from exc
    return frozenset(row[0] if row else ())


def _batchable(
    context: IngestionContext, events: list[IncomingEvent], now: datetime
) -> list[Plan] | None:
    """The payload's statements when each is one plain statement (None: an event X sent
    unusable, or a STOP/START with its confirmation, goes the way of one event alone)."""
    plans = []
    for event in events:
        try:
            plan = plan_statement(context, event, event_params(event, now, uuid.uuid4()))
        except UnusableEvent:
            return None
        if plan.keyword is not None:
            return None
        plans.append(plan)
    return plans


async def _ingest_one(
    connections: IngestionConnections,
    context: IngestionContext,
    event: IncomingEvent,
    result: IngestResult,
    now: datetime,
) -> None:
    failure: Exception | None = None
    for _ in range(2):
        try:
            async with connections.connect() as connection:
                applied = await ingest_event(connection, context, event, now)
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
    _record(result, event, applied)


def _record(result: IngestResult, event: IncomingEvent, applied: Applied) -> None:
    if applied.route is None:
        result.duplicates += 1
        _count(event, "duplicate")
        return
    result.stored += 1
    if applied.route.account_id is None:
        result.unrouted += 1
        _count(event, "unrouted")
        logger.info(
            "webhook.unrouted_event",
            extra={"for_user_id": event.for_user_id, "event_type": event.event_type.value},
        )
    else:
        _count(event, "stored")
    result.follow_up.extend(applied.follow_up)


def _count(event: IncomingEvent, outcome: str) -> None:
    metrics.WEBHOOK_EVENTS.inc(type=event.event_type.value, outcome=outcome)


async def _store_failed(
    connections: IngestionConnections,
    event: IncomingEvent,
    now: datetime,
    failure: BaseException,
    result: IngestResult,
) -> None:
    unusable = isinstance(failure, UnusableEvent)
    params = event_params(event, now, uuid.uuid4())
    params.update(settled=unusable, error=describe_failure(failure))
    try:
        async with connections.connect() as connection:
            row = await fetch_one(connection.driver, sql.STORE_FAILED, params)
    except DATABASE_ERRORS as exc:
        logger.warning(
            "webhook.database_unavailable",
            extra={"error": describe_failure(exc), "dedup_key": event.dedup_key},
        )
        raise ServiceUnavailable("the database is unavailable; retry the delivery") from exc
    if row is None:
        result.duplicates += 1  # a concurrent delivery of the same event got there first
        _count(event, "duplicate")
        return
    result.stored += 1
    result.failed += 0 if unusable else 1
    _count(event, "unusable" if unusable else "failed")
    logger.warning(
        "webhook.event_not_applied",
        extra={
            "event_id": str(row[0]),
            "event_type": event.event_type.value,
            "error": describe_failure(failure),
            "will_retry": not unusable,
        },
        exc_info=None if isinstance(failure, (UnusableEvent, *DATABASE_ERRORS)) else failure,
    )
