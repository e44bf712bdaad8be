"""Erasing a contact on request (GDPR): every row that names the person goes, in one transaction,
then every workflow still running for them; an audit record without personal data remains."""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass

from sqlalchemy import Delete, delete, or_, select, update
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import Client
from temporalio.service import RPCError

from models.campaign import CampaignRecipient, RecipientState
from models.contact import Contact, ContactDeletion
from models.conversation import Conversation, Message
from models.listener import WorkflowListener
from models.webhook_event import WebhookEvent
from services.core.temporal import TemporalSource
from workflows.contracts.messaging import SkipReason

logger = logging.getLogger(__name__)

TEMPORAL_TIMEOUT_SECONDS = 5.0
TERMINATE_REASON = "contact erased on request"  # no personal data: it stays in the history


@dataclass(frozen=True, slots=True)
class Erasure:
    deletion: ContactDeletion
    # Workflows registered as waiting on the contact, read before their rows went.
    listener_workflow_ids: list[str]


async def erase_contact(session: AsyncSession, contact: Contact, *, deleted_by: str) -> Erasure:
    """Delete the contact and everything naming it; the caller commits, then calls
    `stop_contact_workflows`. `contact` must have been loaded for update."""
    merchant_id, contact_id = contact.merchant_id, contact.id
    listener_workflow_ids = list(
        (
            await session.execute(
                select(col(WorkflowListener.workflow_id)).where(
                    col(WorkflowListener.merchant_id) == merchant_id,
                    col(WorkflowListener.contact_id) == contact_id,
                )
            )
        ).scalars()
    )
    # Campaign DMs not yet sent to the person never will be: skipped, counted as such in the
    # campaign's figures (their rows stay, the contact's id nulled by the foreign key).
    skipped = await session.execute(
        update(CampaignRecipient)
        .where(
            col(CampaignRecipient.contact_id) == contact_id,
            col(CampaignRecipient.state).in_([RecipientState.queued, RecipientState.sending]),
        )
        .values(state=RecipientState.skipped, error=SkipReason.deleted.value)
    )
    # Explicit deletes (the foreign keys would cascade) so the audit record can count them.
    removed = {
        "messages": await _delete(
            session,
            delete(Message).where(
                col(Message.merchant_id) == merchant_id, col(Message.contact_id) == contact_id
            ),
        ),
        "conversations": await _delete(
            session,
            delete(Conversation).where(
                col(Conversation.merchant_id) == merchant_id,
                col(Conversation.contact_id) == contact_id,
            ),
        ),
        "workflowListeners": await _delete(
            session,
            delete(WorkflowListener).where(
                col(WorkflowListener.merchant_id) == merchant_id,
                col(WorkflowListener.contact_id) == contact_id,
            ),
        ),
        # Raw events: those linked to the contact, and those about the same X user on the same
        # account stored before (or without) the link, e.g. a follow that made no contact.
        "webhookEvents": await _delete(
            session,
            delete(WebhookEvent).where(
                or_(
                    col(WebhookEvent.contact_id) == contact_id,
                    (col(WebhookEvent.merchant_id) == merchant_id)
                    & (col(WebhookEvent.subject_user_id) == contact.twitter_user_id)
                    & or_(
                        col(WebhookEvent.account_id) == contact.account_id,
                        col(WebhookEvent.account_id).is_(None),
                    ),
                )
            ),
        ),
    }
    await session.delete(contact)
    deletion = ContactDeletion(
        merchant_id=merchant_id,
        contact_id=contact_id,
        account_id=contact.account_id,
        deleted_by_user_id=deleted_by,
        removed=removed,
    )
    session.add(deletion)
    await session.flush()
    logger.info(
        "contact.erased",
        extra={
            "contact_id": str(contact_id),
            "deletion_id": str(deletion.id),
            "campaign_dms_skipped": int(skipped.rowcount or 0),  # type: ignore[attr-defined]
            **removed,
        },
    )
    return Erasure(deletion=deletion, listener_workflow_ids=listener_workflow_ids)


async def _delete(session: AsyncSession, statement: Delete) -> int:
    result = await session.execute(statement)
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def stop_contact_workflows(client: TemporalSource, erasure: Erasure) -> int:
    """Terminate every running workflow for the erased contact: the registered listeners and
    whatever Temporal's visibility store lists under its ContactId. Returns how many stopped.

    Temporal being unreachable does not undo the erasure (the rows are gone already): it is
    logged, and such a workflow finds no contact when it next looks."""
    contact_id = str(erasure.deletion.contact_id)
    try:
        return await asyncio.wait_for(
            _terminate_all(await client(), contact_id, erasure.listener_workflow_ids),
            timeout=TEMPORAL_TIMEOUT_SECONDS,
        )
    except Exception as exc:  # any Temporal failure: log it, the erasure stands
        logger.warning(
            "contact.erase_workflows_failed",
            extra={"contact_id": contact_id, "error": f"{type(exc).__name__}: {exc}"},
        )
        return 0


async def _terminate_all(client: Client, contact_id: str, listener_ids: list[str]) -> int:
    targets: dict[str, str | None] = dict.fromkeys(listener_ids)
    query = f'ContactId = "{uuid.UUID(contact_id)}" AND ExecutionStatus = "Running"'
    async for execution in client.list_workflows(query):
        targets[execution.id] = execution.run_id
    stopped = 0
    for workflow_id, run_id in targets.items():
        try:
            await client.get_workflow_handle(workflow_id, run_id=run_id).terminate(
                reason=TERMINATE_REASON
            )
            stopped += 1
        except RPCError:  # finished already, or never started
            continue
    logger.info("contact.workflows_stopped", extra={"contact_id": contact_id, "stopped": stopped})
    return stopped
