"""Workflows waiting on a contact: who listens, and starting the simplest such workflow.

A workflow registers itself (through an activity) as a listener of a contact; webhook ingestion
records a signal for every live listener of that contact with each event it commits, and
carries it out after its answer (services/ingestion/follow_up.py). A listener whose workflow
turns out to be gone is forgotten then.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, text, tuple_
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import Client, WorkflowHandle

from models.db import utcnow
from models.listener import WorkflowListener
from services.core.errors import NotFound
from workflows import ids
from workflows.contracts.listeners import (
    AWAIT_CONTACT_REPLY_WORKFLOW,
    AwaitContactReplyInput,
    ContactReply,
)

_REGISTER = text(
    """
    INSERT INTO workflow_listeners (id, merchant_id, contact_id, workflow_id, created_at, expires_at)
    SELECT :id, c.merchant_id, c.id, :workflow_id, :now, :expires_at
    FROM contacts c WHERE c.id = :contact_id AND c.merchant_id = :merchant_id
    ON CONFLICT (workflow_id, contact_id) DO UPDATE SET expires_at = excluded.expires_at
    RETURNING id
    """
)


async def register_listener(
    session: AsyncSession,
    *,
    merchant_id: str,
    contact_id: uuid.UUID,
    workflow_id: str,
    expires_at: datetime,
) -> None:
    """Listen to a contact of this merchant until `expires_at` (registering again extends it).
    Another merchant's contact, or one that is gone, is not found."""
    row = (
        await session.execute(
            _REGISTER,
            {
                "id": uuid.uuid4(),
                "merchant_id": merchant_id,
                "contact_id": contact_id,
                "workflow_id": workflow_id,
                "now": utcnow(),
                "expires_at": expires_at,
            },
        )
    ).first()
    if row is None:
        raise NotFound("contact", contact_id)


async def unregister_listener(
    session: AsyncSession, *, workflow_id: str, contact_id: uuid.UUID | None = None
) -> int:
    """Stop listening (to one contact, or to all of them); returns how many rows went."""
    statement = delete(WorkflowListener).where(col(WorkflowListener.workflow_id) == workflow_id)
    if contact_id is not None:
        statement = statement.where(col(WorkflowListener.contact_id) == contact_id)
    result = await session.execute(statement)
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def forget_listeners(session: AsyncSession, gone: Iterable[tuple[uuid.UUID, str]]) -> int:
    """Drop the listeners `(contact id, workflow id)` whose workflow no longer exists."""
    pairs = list(dict.fromkeys(gone))
    if not pairs:
        return 0
    result = await session.execute(
        delete(WorkflowListener).where(
            tuple_(col(WorkflowListener.contact_id), col(WorkflowListener.workflow_id)).in_(pairs)
        )
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def listening_workflows(
    session: AsyncSession, merchant_id: str, contact_id: uuid.UUID, *, include_expired: bool = False
) -> list[str]:
    """Workflow ids listening to a contact (live ones unless `include_expired`)."""
    statement = select(col(WorkflowListener.workflow_id)).where(
        col(WorkflowListener.merchant_id) == merchant_id,
        col(WorkflowListener.contact_id) == contact_id,
    )
    if not include_expired:
        statement = statement.where(col(WorkflowListener.expires_at) > utcnow())
    return list((await session.execute(statement)).scalars().all())


async def start_reply_waiter(
    client: Client,
    *,
    task_queue: str,
    merchant_id: str,
    contact_id: uuid.UUID,
    key: str,
    timeout: timedelta,
) -> WorkflowHandle[Any, ContactReply]:
    """Start an AwaitContactReplyWorkflow for this contact (its result is the reply)."""
    return await client.start_workflow(
        AWAIT_CONTACT_REPLY_WORKFLOW,
        AwaitContactReplyInput(
            merchant_id=merchant_id,
            contact_id=contact_id,
            timeout_seconds=timeout.total_seconds(),
        ),
        id=ids.contact_reply_id(str(contact_id), key),
        task_queue=task_queue,
        search_attributes=ids.contact_attributes(merchant_id, str(contact_id)),
        result_type=ContactReply,
    )
