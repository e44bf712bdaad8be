"""Handing a conversation to humans: the escalation's row, its workflow, its resolution.

Escalating pauses the bot for the conversation at once, assigns it (`escalation.assignTo`) and
starts `escalation:{conversationId}`, which sends the handoff DM in auto-reply and runs the
SLA timer (`slaMinutes`, counted from the next opening of the account's business hours when it
starts while they are closed). A conversation has at most one open escalation: escalating it
again answers that one. A human agent's message resolves it (`agent_replied`), so does closing
the conversation (`closed`): the row first, then a signal that ends the workflow.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.service import RPCError

from mktx.settings import Settings
from models.account import BusinessHours, XAccount
from models.ai import AISettings, Escalation, EscalationPublic, EscalationStatus
from models.conversation import Conversation
from models.db import utcnow
from models.quota import SendKind
from services.accounts.hours import next_opening
from services.assistant import sessions
from services.core.errors import ServiceUnavailable
from services.messaging import OutgoingDM, queue_messages
from workflows import ids
from workflows.contracts.assistant import (
    ESCALATION_RESOLVED_SIGNAL,
    ESCALATION_WORKFLOW,
    EscalationBegun,
    EscalationInput,
    EscalationInputRef,
    EscalationResolved,
)

logger = logging.getLogger(__name__)

AGENT_REPLIED = "agent_replied"
CLOSED = "closed"


def public(row: Escalation) -> EscalationPublic:
    return EscalationPublic.model_validate(row, from_attributes=True)


async def open_escalation(session: AsyncSession, conversation_id: uuid.UUID) -> Escalation | None:
    return (
        await session.exec(
            select(Escalation).where(
                col(Escalation.conversation_id) == conversation_id,
                col(Escalation.status) == EscalationStatus.open,
            )
        )
    ).first()


async def latest(session: AsyncSession, conversation_id: uuid.UUID) -> Escalation | None:
    return (
        await session.exec(
            select(Escalation)
            .where(col(Escalation.conversation_id) == conversation_id)
            .order_by(col(Escalation.escalated_at).desc())
        )
    ).first()


async def escalate(
    session: AsyncSession,
    temporal: Client,
    settings: Settings,
    ai: AISettings,
    conversation: Conversation,
    reason: str,
    *,
    handoff: bool,
) -> Escalation:
    """Hand the conversation to humans (or answer its open escalation). The workflow is
    started before the caller commits: if Temporal refuses, nothing is escalated."""
    existing = await open_escalation(session, conversation.id)
    if existing is not None:
        return existing
    account = await session.get(XAccount, conversation.account_id)
    now = utcnow()
    opening = next_opening(account.business_hours if account else None, now)
    row = Escalation(
        merchant_id=conversation.merchant_id,
        conversation_id=conversation.id,
        reason=reason,
        assigned_to_user_id=ai.escalation.assign_to,
        escalated_at=now,
        sla_due_at=(opening or now) + timedelta(minutes=ai.escalation.sla_minutes),
    )
    try:
        async with session.begin_nested():
            session.add(row)
    except IntegrityError:  # escalated at the same moment by another request
        found = await open_escalation(session, conversation.id)
        assert found is not None
        return found
    await sessions.pause_bot(session, conversation.merchant_id, conversation.id)
    if ai.escalation.assign_to:
        conversation.assigned_to_user_id = ai.escalation.assign_to
        session.add(conversation)
    await session.flush()
    try:
        await temporal.start_workflow(
            ESCALATION_WORKFLOW,
            EscalationInput(
                merchant_id=conversation.merchant_id,
                conversation_id=conversation.id,
                escalation_id=row.id,
                handoff=handoff,
            ),
            id=ids.escalation_id(str(conversation.id)),
            task_queue=settings.task_queue,
            search_attributes=ids.contact_attributes(
                conversation.merchant_id, str(conversation.contact_id)
            ),
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            # One left waiting after a breach belongs to an escalation resolved since.
            id_conflict_policy=WorkflowIDConflictPolicy.TERMINATE_EXISTING,
        )
    except RPCError as exc:  # nothing is escalated: the caller's transaction rolls back
        raise ServiceUnavailable("could not start the escalation; try again") from exc
    logger.info(
        "ai.escalated",
        extra={"conversation_id": str(conversation.id), "reason": reason, "handoff": handoff},
    )
    return row


def handoff_text(ai: AISettings, hours: dict | None, now: datetime) -> str:  # type: ignore[type-arg]
    """The handoff message; outside business hours it says when the team is back."""
    opening = next_opening(hours, now)
    if opening is None or not hours:
        return ai.escalation.handoff_message
    zone = ZoneInfo(BusinessHours.model_validate(hours).timezone)
    local = opening.astimezone(zone)
    return (
        f"{ai.escalation.handoff_message} Our team is back {local:%A} at {local:%H:%M} "
        f"({zone.key})."
    )


async def begin(
    session: AsyncSession, settings: Settings, ai: AISettings, request: EscalationInput
) -> EscalationBegun:
    """The workflow's first step: is it still open, and the handoff DM (queued once)."""
    row = await session.get(Escalation, request.escalation_id, with_for_update=True)
    if row is None:
        return EscalationBegun(open=False, missing=True)
    if row.status != EscalationStatus.open:
        return EscalationBegun(open=False)
    handoff_id: uuid.UUID | None = None
    if request.handoff:
        handoff_id = uuid.uuid5(row.id, "handoff")
        if not row.handoff_sent:
            conversation = await session.get(Conversation, row.conversation_id)
            account = await session.get(XAccount, conversation.account_id) if conversation else None
            if conversation is None or account is None:
                return EscalationBegun(open=True, sla_due_at=row.sla_due_at)
            dm = OutgoingDM(
                kind=SendKind.bot,
                contact_id=conversation.contact_id,
                content=handoff_text(ai, account.business_hours, utcnow()),
                is_from_bot=True,
                message_id=handoff_id,
            )
            queued = await queue_messages(session, settings, row.merchant_id, [dm])
            row.handoff_sent = True
            session.add(row)
            if not queued.queued:
                handoff_id = None  # refused (quota, account): the humans are told all the same
    return EscalationBegun(open=True, sla_due_at=row.sla_due_at, handoff_id=handoff_id)


async def sla_due(session: AsyncSession, request: EscalationInputRef) -> bool:
    """The SLA timer fired: breached, if no human has resolved it meanwhile."""
    row = await session.get(Escalation, request.escalation_id, with_for_update=True)
    if row is None or row.status != EscalationStatus.open:
        return False
    if not row.breached:
        row.breached = True
        session.add(row)
        logger.warning(
            "ai.sla_breached",
            extra={"conversation_id": str(row.conversation_id), "escalation_id": str(row.id)},
        )
    return True


_RESOLVE = text(
    """
    UPDATE escalations SET status = 'resolved', resolved_at = :now, resolution = :resolution,
        updated_at = :now
    WHERE conversation_id = :conversation_id AND merchant_id = :merchant_id AND status = 'open'
    RETURNING id
    """
)


async def resolve(
    session: AsyncSession, merchant_id: str, conversation_id: uuid.UUID, resolution: str
) -> uuid.UUID | None:
    """Resolve the conversation's open escalation (the caller commits, then `signal_resolved`)."""
    row = (
        await session.execute(
            _RESOLVE,
            {
                "now": utcnow(),
                "resolution": resolution,
                "conversation_id": conversation_id,
                "merchant_id": merchant_id,
            },
        )
    ).first()
    if row is None:
        return None
    logger.info(
        "ai.escalation_resolved",
        extra={"conversation_id": str(conversation_id), "resolution": resolution},
    )
    return uuid.UUID(str(row.id))


async def signal_resolved(temporal: Client, conversation_id: uuid.UUID, resolution: str) -> None:
    """Tell the escalation's workflow (best effort: its row is resolved already, and a breach
    is only marked on an open row)."""
    try:
        await temporal.get_workflow_handle(ids.escalation_id(str(conversation_id))).signal(
            ESCALATION_RESOLVED_SIGNAL, EscalationResolved(resolution=resolution)
        )
    except RPCError as exc:
        logger.info(
            "ai.escalation_signal_missed",
            extra={"conversation_id": str(conversation_id), "error": str(exc)},
        )
