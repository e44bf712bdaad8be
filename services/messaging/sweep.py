"""The outbound sweep: messages still `queued` a while after they were committed get their
delivery started. `start_delivery` runs after the commit; if the process died (or Temporal was
away) in between, nothing else would ever send them.

Per message, its `SendMessageWorkflow` (same id, `message-send:{messageId}`) decides:
- none: started now, unless the message is older than the delivery deadline (then it failed,
  as the workflow itself would report it). Started with REJECT_DUPLICATE: a run that ended
  meanwhile is never followed by a second send.
- running: left alone (X is down or rate-limiting; the workflow retries).
- ended, yet the message is still queued: an inconsistency, logged. A completed run's own
  result is recorded (X's event id, or X's refusal). A run that was terminated, cancelled,
  timed out or failed may have reached X: the message is marked failed rather than sent again
  (a new run's first attempt does not look at X first, so it could send a duplicate DM).
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from enum import StrEnum

from sqlmodel import col, select
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from mktx.settings import Settings
from models.campaign import CampaignRecipient
from models.conversation import Message, MessageDirection, MessageStatus
from models.db import SessionMaker, utcnow
from models.quota import SendKind
from services.messaging.records import Accepted, record_accepted, record_failed
from services.messaging.runs import delivery_handle, start_delivery
from workflows.contracts.maintenance import OUTBOUND_GRACE_SECONDS, OUTBOUND_LIMIT, SweepReport
from workflows.contracts.messaging import SendOutcome

logger = logging.getLogger(__name__)

# A message this young may still be about to be started by the code that queued it.
GRACE = timedelta(seconds=OUTBOUND_GRACE_SECONDS)
# Messages looked at per sweep, oldest first (one Temporal call each).
SWEEP_LIMIT = OUTBOUND_LIMIT

EXPIRED_REASON = "X did not accept the message within 24 hours"
# SendMessageWorkflow's own deadline: a message older than this is not sent any more.
DELIVERY_DEADLINE = timedelta(hours=24)


class SweepAction(StrEnum):
    started = "started"  # no workflow: delivery started now
    running = "running"  # its workflow is still at it
    expired = "expired"  # no workflow, and too old to send: failed
    recorded = "recorded"  # its workflow had ended: its outcome recorded on the message
    abandoned = "abandoned"  # its workflow was stopped: failed, not sent again
    settled = "settled"  # no longer queued when looked at closely


async def sweep_queued(
    sessions: SessionMaker,
    temporal: Client,
    settings: Settings,
    *,
    grace: timedelta = GRACE,
    limit: int = SWEEP_LIMIT,
) -> SweepReport:
    """Look at up to `limit` outbound messages queued for longer than `grace`, oldest first,
    and start (or settle) their delivery as the module says. Safe to run concurrently."""
    now = utcnow()
    async with sessions() as session:
        rows = await session.exec(
            select(Message)
            .where(
                col(Message.status) == MessageStatus.queued,
                col(Message.created_at) <= now - grace,
                col(Message.direction) == MessageDirection.outbound,
                # A flow run delivers its own DMs (its send step retries until X takes them).
                col(Message.kind).is_distinct_from(SendKind.flow.value),
                # A campaign's DMs are its workflow's to deliver (its batches look again).
                ~select(CampaignRecipient.id)  # type: ignore[arg-type]
                .where(col(CampaignRecipient.message_id) == col(Message.id))
                .exists(),
            )
            .order_by(col(Message.created_at))
            .limit(limit)
        )
        messages = list(rows.all())
    report = SweepReport(examined=len(messages))
    for message in messages:
        try:
            action = await _sweep_one(sessions, temporal, settings, message)
        except Exception as exc:  # this one waits for the next sweep; the others go on
            report.errors += 1
            logger.warning(
                "message.sweep_failed",
                extra={"message_id": str(message.id), "error": f"{type(exc).__name__}: {exc}"},
            )
            continue
        setattr(report, action.value, getattr(report, action.value) + 1)
    if report.examined:
        logger.info("message.swept", extra=report.model_dump())
    return report


async def _sweep_one(
    sessions: SessionMaker, temporal: Client, settings: Settings, message: Message
) -> SweepAction:
    handle = delivery_handle(temporal, str(message.id))
    workflow_id = handle.id
    try:
        status = (await handle.describe()).status
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
        status = None
    extra = {"message_id": str(message.id), "workflow_id": workflow_id}

    if status is None:
        if message.created_at <= utcnow() - DELIVERY_DEADLINE:
            if not await _fail(sessions, message.id, EXPIRED_REASON):
                return SweepAction.settled
            logger.warning("message.delivery_expired", extra=extra)
            return SweepAction.expired
        try:
            await start_delivery(
                temporal,
                settings,
                message,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            )
        except WorkflowAlreadyStartedError:
            return SweepAction.running  # it ran meanwhile: the next sweep sees how it ended
        logger.warning("message.delivery_restarted", extra=extra)
        return SweepAction.started

    if status == WorkflowExecutionStatus.RUNNING:
        return SweepAction.running

    if status == WorkflowExecutionStatus.COMPLETED:
        result = await handle.result()
        async with sessions() as session, session.begin():
            row = await session.get(Message, message.id, with_for_update=True)
            if row is None or row.status != MessageStatus.queued:
                return SweepAction.settled  # the workflow's own writes landed meanwhile
            if result.outcome == SendOutcome.sent and result.twitter_message_id is not None:
                accepted = Accepted(
                    row.id, row.account_id, result.twitter_message_id, result.sent_at or utcnow()
                )
                await record_accepted(session, [accepted])
            else:
                await record_failed(session, row.id, result.reason or "not delivered")
        logger.error(
            "message.delivery_inconsistent",
            extra={**extra, "workflow_status": status.name, "recorded": result.outcome.value},
        )
        return SweepAction.recorded

    reason = (
        f"the delivery was stopped ({status.name.lower()}) before X confirmed the message; "
        "not sent again, so that the contact cannot receive it twice"
    )
    if not await _fail(sessions, message.id, reason):
        return SweepAction.settled
    logger.error(
        "message.delivery_inconsistent",
        extra={**extra, "workflow_status": status.name, "recorded": "failed"},
    )
    return SweepAction.abandoned


async def _fail(sessions: SessionMaker, message_id: uuid.UUID, reason: str) -> bool:
    async with sessions() as session, session.begin():
        return await record_failed(session, message_id, reason)
