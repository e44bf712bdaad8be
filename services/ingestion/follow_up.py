"""Durable follow-ups: what an ingested event owes Temporal is carried out once per event and
target, however often X delivers the event and whoever happens to carry it out.

The statement that stores and applies an event records what the event owes, in the same
transaction (models.webhook_event.EventFollowUp, services/ingestion/sql.py): a signal to each
workflow listening to its contact, a start for each trigger that wants its kind of event.
After answering X, the API carries out what it recorded (`run_follow_up`); the maintenance
schedule carries out whatever is still due later (`carry_out_due`): follow-ups whose first try
failed (Temporal away) or never happened (the process died between commit and dispatch).

Why once:
- One row per event and target, recorded only where the event is stored (or first applied):
  a duplicate delivery stores nothing, so it records nothing.
- One holder at a time. A row is due at `next_attempt_at`, which recording sets a hold ahead
  (the API that recorded it is carrying it out) and a maintenance run's claim moves ahead
  again (FOR UPDATE SKIP LOCKED: two runs never claim the same row). A holder that dies
  leaves the row to whoever comes after the hold.
- Done is marked once: an attempt's mark applies only to a row not done yet.
- A call made again is harmless (services/ingestion/dispatch.py): the row's id is the request
  id, so Temporal drops a repeat to a running workflow, and an ended one is "done" (gone, or a
  start's conflict).
Attempts that fail back off (services/ingestion/retries.py); after MAX_ATTEMPTS a follow-up
is settled as given up with its last error. Done rows are purged after RETENTION.

Deliveries queued by an event (the STOP/START confirmation DM) are started here too; one that
is not is started by the outbound sweep (services/messaging/sweep.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import text
from temporalio.client import Client

from mktx import tracing
from mktx.settings import Settings
from models.conversation import Message
from models.db import SessionMaker, utcnow
from models.webhook_event import FollowUpKind
from services.core.temporal import TemporalSource
from services.inbox.listeners import forget_listeners
from services.ingestion.dispatch import Attempt, Outcome, RecordedFollowUp, carry_out_one
from services.ingestion.retries import (
    CLAIMED_HOLD,
    describe_failure,
    retry_delay,
)
from services.ingestion.triggers import TriggerRegistry
from services.messaging import start_delivery
from workflows.contracts.contact_events import FOLLOW_UP_LIMIT, FollowUpReport

logger = logging.getLogger(__name__)


CONNECT_TIMEOUT_SECONDS = 5.0
# Temporal calls in flight at once per holder.
CONCURRENCY = 16
# Follow-ups a maintenance run claims at a time; it stops early once Temporal seems away.
CLAIM_PAGE = 50
# Failed attempts after which a follow-up is given up (about half a day of trying).
MAX_ATTEMPTS = 20
# Done follow-ups are kept this long (to see what happened), then purged.
RETENTION = timedelta(days=7)
PURGE_LIMIT = 5000


@dataclass
class FollowUp:
    """Work for after commit, gathered while events are applied: the follow-ups their
    statements recorded, and the deliveries they queued."""

    recorded: list[RecordedFollowUp] = field(default_factory=list)
    deliveries: list[Message] = field(default_factory=list)
    # Where tracing is on, the trace context each item was handed over in (by follow-up or
    # message id): carried out in a batch with other deliveries' items, in another task, each
    # Temporal call is still part of the trace of the delivery that owed it.
    traces: dict[uuid.UUID, object] = field(default_factory=dict)

    def add_recorded(self, rows: Sequence[dict[str, Any]] | None) -> None:
        """The `follow_ups` column of an ingestion statement (None: it recorded none)."""
        self.recorded.extend(RecordedFollowUp.of(row) for row in rows or ())

    def extend(self, other: FollowUp) -> None:
        self.recorded.extend(other.recorded)
        self.deliveries.extend(other.deliveries)
        self.traces.update(other.traces)

    def keep_trace(self) -> None:
        """Remember the current trace context for the items not holding one yet (when it is
        handed to another task; nothing when tracing is off)."""
        trace = tracing.current_context()
        if trace is None:
            return
        for item_id in (*(f.id for f in self.recorded), *(m.id for m in self.deliveries)):
            self.traces.setdefault(item_id, trace)

    def __bool__(self) -> bool:
        return bool(self.recorded or self.deliveries)


async def run_follow_up(
    follow_up: FollowUp,
    *,
    temporal: TemporalSource,
    sessions: SessionMaker,
    settings: Settings,
    triggers: TriggerRegistry,
) -> None:
    """Right after the commit (and the answer): start the deliveries, carry out the recorded
    follow-ups and mark them. Nothing raises: what is not done here is done later."""
    if not follow_up:
        return
    try:
        client = await asyncio.wait_for(temporal(), timeout=CONNECT_TIMEOUT_SECONDS)
    except Exception as exc:  # unreachable: every follow-up is recorded; say what waits
        logger.warning(
            "ingestion.temporal_unreachable",
            extra={
                "error": describe_failure(exc),
                "follow_ups": len(follow_up.recorded),
                "deliveries": [str(m.id) for m in follow_up.deliveries],
            },
        )
        failure = Attempt.failed(exc)
        await _mark_logged(sessions, [(row, failure) for row in follow_up.recorded])
        return
    for message in follow_up.deliveries:
        try:
            with tracing.attached(follow_up.traces.get(message.id)):
                await start_delivery(client, settings, message)
        except Exception as exc:
            logger.warning(
                "ingestion.delivery_not_started",
                extra={"message_id": str(message.id), "error": describe_failure(exc)},
            )
    if follow_up.recorded:
        attempts = await _carry_out(client, triggers, follow_up.recorded, follow_up.traces)
        for row, attempt in attempts:
            if attempt.outcome is None:
                logger.warning(
                    "ingestion.follow_up_failed",
                    extra={
                        "follow_up_id": str(row.id),
                        "kind": row.kind.value,
                        "target": row.target,
                        "error": attempt.error,
                    },
                )
        await _mark_logged(sessions, attempts)


async def carry_out_due(
    sessions: SessionMaker,
    client: Client,
    triggers: TriggerRegistry,
    *,
    limit: int = FOLLOW_UP_LIMIT,
) -> FollowUpReport:
    """The maintenance step: claim the follow-ups that are due (oldest first, up to `limit`),
    carry them out and mark them; then purge the ones done long ago. Stops early when Temporal
    answers as if it were away (the rest is due for the next run). Safe to run concurrently."""
    report = FollowUpReport()
    while report.due < limit:
        claimed = await _claim(sessions, min(CLAIM_PAGE, limit - report.due))
        if not claimed:
            break
        attempts = await _carry_out(client, triggers, claimed)
        await _mark(sessions, attempts, report)
        report.due += len(claimed)
        if len(claimed) < CLAIM_PAGE or any(a.unavailable for _, a in attempts):
            break
    report.purged = await _purge(sessions)
    if report.due or report.purged:
        logger.info("ingestion.follow_ups_carried_out", extra=report.model_dump())
    return report


async def _carry_out(
    client: Client,
    triggers: TriggerRegistry,
    follow_ups: Sequence[RecordedFollowUp],
    traces: Mapping[uuid.UUID, object] | None = None,
) -> list[tuple[RecordedFollowUp, Attempt]]:
    await _decide_together(triggers, follow_ups)
    slots = asyncio.Semaphore(CONCURRENCY)
    # One contact's follow-ups go one after the other, in the order of their events (the
    # batch's order): two DMs reach the conversation's assistant, or a run's wait, in the order
    # they were sent, not in whichever order two concurrent calls happen to land. Different
    # contacts go CONCURRENCY at a time.
    by_contact: dict[uuid.UUID, list[RecordedFollowUp]] = {}
    for follow_up in follow_ups:
        by_contact.setdefault(follow_up.event.contact_id, []).append(follow_up)

    async def in_order(rows: list[RecordedFollowUp]) -> list[tuple[RecordedFollowUp, Attempt]]:
        done = []
        for row in rows:
            async with slots:
                with tracing.attached(traces.get(row.id) if traces else None):
                    done.append((row, await carry_out_one(client, triggers, row)))
        return done

    chains = await asyncio.gather(*(in_order(rows) for rows in by_contact.values()))
    return [pair for chain in chains for pair in chain]


async def _decide_together(
    triggers: TriggerRegistry, follow_ups: Sequence[RecordedFollowUp]
) -> None:
    """Decide at once, per trigger that can (`Trigger.decide_many`), the starts not decided
    yet: each follow-up then carries its decision, recorded when it is marked. A batch that
    fails leaves its follow-ups to be decided one by one."""
    undecided: dict[str, list[RecordedFollowUp]] = {}
    for follow_up in follow_ups:
        if follow_up.kind is FollowUpKind.start and follow_up.starts is None:
            undecided.setdefault(follow_up.target, []).append(follow_up)
    for name, group in undecided.items():
        trigger = triggers.get(name)
        if trigger is None or trigger.decide_many is None or len(group) < 2:
            continue
        try:
            decisions = await trigger.decide_many([f.event for f in group])
        except Exception as exc:
            logger.warning(
                "ingestion.batch_decision_failed",
                extra={"trigger": name, "events": len(group), "error": describe_failure(exc)},
            )
            continue
        for follow_up, decision in zip(group, decisions, strict=True):
            follow_up.starts = list(decision)


# Claimed rows are held for CLAIMED_HOLD: a run that dies leaves them to the one after.
_CLAIM = text(
    """
    UPDATE event_follow_ups f SET next_attempt_at = :held_until
    FROM (
        SELECT id FROM event_follow_ups
        WHERE done_at IS NULL AND next_attempt_at <= :now
        ORDER BY next_attempt_at, id LIMIT :limit
        FOR UPDATE SKIP LOCKED
    ) AS due
    WHERE f.id = due.id
    RETURNING f.id, f.kind, f.target, f.payload, f.start, f.attempts
    """
)

# A claimed row this code cannot read (written by other code?) would fail every run: settled.
_UNREADABLE = text(
    """
    UPDATE event_follow_ups SET outcome = 'given_up', done_at = :now, last_error = :error,
        attempts = attempts + 1
    WHERE id = :id AND done_at IS NULL
    """
)

# One attempt's mark, on a row not done yet (a slower holder's late mark changes nothing). The
# last error is kept after a success, to tell what it took.
_MARK = text(
    """
    UPDATE event_follow_ups SET
        attempts = attempts + 1,
        outcome = :outcome,
        done_at = :done_at,
        next_attempt_at = coalesce(CAST(:next_attempt_at AS timestamptz), next_attempt_at),
        last_error = coalesce(:error, last_error),
        start = coalesce(CAST(:start AS jsonb), start)
    WHERE id = :id AND done_at IS NULL
    """
)

_PURGE = text(
    """
    DELETE FROM event_follow_ups WHERE id IN (
        SELECT id FROM event_follow_ups WHERE done_at < :before ORDER BY done_at LIMIT :limit)
    """
)


async def _claim(sessions: SessionMaker, limit: int) -> list[RecordedFollowUp]:
    now = utcnow()
    claimed: list[RecordedFollowUp] = []
    unreadable: list[dict[str, Any]] = []
    async with sessions() as session, session.begin():
        rows = await session.execute(
            _CLAIM, {"now": now, "held_until": now + CLAIMED_HOLD, "limit": limit}
        )
        for row in rows:
            try:
                claimed.append(RecordedFollowUp.of(row._mapping))
            except ValueError as exc:  # pydantic's ValidationError included
                unreadable.append({"id": row.id, "now": now, "error": describe_failure(exc)})
        if unreadable:
            await session.execute(_UNREADABLE, unreadable)
            logger.error(
                "ingestion.follow_ups_unreadable",
                extra={"follow_ups": {str(u["id"]): u["error"] for u in unreadable}},
            )
    return claimed


async def _mark(
    sessions: SessionMaker,
    attempts: Iterable[tuple[RecordedFollowUp, Attempt]],
    report: FollowUpReport | None = None,
) -> None:
    now = utcnow()
    marks: list[dict[str, Any]] = []
    gone: list[tuple[Any, str]] = []
    for follow_up, attempt in attempts:
        outcome = attempt.outcome
        count = follow_up.attempts + 1
        if outcome is None and count >= MAX_ATTEMPTS:
            outcome = Outcome.given_up
            logger.error(
                "ingestion.follow_up_given_up",
                extra={
                    "follow_up_id": str(follow_up.id),
                    "attempts": count,
                    "error": attempt.error,
                },
            )
        if outcome is Outcome.gone:
            gone.append((follow_up.event.contact_id, follow_up.target))
        marks.append(
            {
                "id": follow_up.id,
                "outcome": outcome.value if outcome is not None else None,
                "done_at": now if outcome is not None else None,
                "next_attempt_at": None if outcome is not None else now + retry_delay(count),
                "error": attempt.error,
                "start": (
                    json.dumps([s.model_dump(mode="json") for s in attempt.starts])
                    if attempt.starts is not None
                    else None
                ),
            }
        )
        if report is not None:
            _count(report, outcome)
    if not marks:
        return
    async with sessions() as session, session.begin():
        await session.execute(_MARK, marks)
        if gone:  # their workflows have ended: stop recording signals for them
            await forget_listeners(session, gone)
    if gone:
        logger.info("listener.removed_gone", extra={"workflows": len(gone)})


async def _mark_logged(
    sessions: SessionMaker, attempts: Sequence[tuple[RecordedFollowUp, Attempt]]
) -> None:
    """Mark after the answer, where nothing may raise: an unmarked row is simply due again
    after its hold (and carrying it out again is harmless)."""
    try:
        await _mark(sessions, attempts)
    except Exception as exc:
        logger.warning(
            "ingestion.follow_ups_not_marked",
            extra={"follow_ups": [str(f.id) for f, _ in attempts], "error": describe_failure(exc)},
        )


def _count(report: FollowUpReport, outcome: Outcome | None) -> None:
    # The report has a counter per outcome, named after it (and `failed` for "not yet").
    name = outcome.value if outcome is not None else "failed"
    setattr(report, name, getattr(report, name) + 1)


async def _purge(sessions: SessionMaker) -> int:
    async with sessions() as session, session.begin():
        result = await session.execute(
            _PURGE, {"before": utcnow() - RETENTION, "limit": PURGE_LIMIT}
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]
