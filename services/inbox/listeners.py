"""Workflows waiting on a contact: who listens, and telling them what the contact just did.

A workflow registers itself (through an activity) as a listener of a contact; webhook ingestion
signals every live listener of that contact with a `ContactEvent` once the event is committed.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel
from sqlalchemy import delete, select, text
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from models.db import SessionMaker, utcnow
from models.listener import WorkflowListener
from services.core.errors import NotFound
from workflows import ids
from workflows.ids import CONTACT_EVENT_SIGNAL

logger = logging.getLogger(__name__)

SIGNAL_TIMEOUT_SECONDS = 5.0


class ContactEventKind(StrEnum):
    message = "message"  # the contact sent a DM (inbound only; our own echoes are not events)
    follow = "follow"
    unfollow = "unfollow"
    read = "read"  # the contact read our messages


class ContactEvent(BaseModel):
    """What a listening workflow receives on `CONTACT_EVENT_SIGNAL`. Ids and the DM text only."""

    kind: ContactEventKind
    merchant_id: str
    account_id: uuid.UUID
    contact_id: uuid.UUID
    message_id: uuid.UUID | None = None
    text: str | None = None
    occurred_at: datetime


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


async def signal_listeners(
    client: Client, sessions: SessionMaker, event: ContactEvent, workflow_ids: Iterable[str]
) -> int:
    """Signal each listener; a workflow that no longer exists loses its listener row. Returns
    how many were signalled. Failures are logged: the event itself is stored already."""
    targets = list(dict.fromkeys(workflow_ids))
    if not targets:
        return 0
    outcomes = await asyncio.gather(*(_signal(client, w, event) for w in targets))
    gone = [w for w, outcome in zip(targets, outcomes, strict=True) if outcome is False]
    if gone:
        async with sessions() as session, session.begin():
            await session.execute(
                delete(WorkflowListener).where(
                    col(WorkflowListener.contact_id) == event.contact_id,
                    col(WorkflowListener.workflow_id).in_(gone),
                )
            )
        logger.info(
            "listener.removed_gone",
            extra={"contact_id": str(event.contact_id), "workflows": len(gone)},
        )
    return sum(1 for outcome in outcomes if outcome is True)


async def _signal(client: Client, workflow_id: str, event: ContactEvent) -> bool | None:
    """True: signalled; False: the workflow is gone (or finished); None: could not tell."""
    try:
        await asyncio.wait_for(
            client.get_workflow_handle(workflow_id).signal(CONTACT_EVENT_SIGNAL, event),
            timeout=SIGNAL_TIMEOUT_SECONDS,
        )
        return True
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return False
        logger.warning(
            "listener.signal_failed",
            extra={"workflow_id": workflow_id, "status": exc.status.name, "error": str(exc)},
        )
    except Exception as exc:  # Temporal unreachable or slow: the event is stored, log it
        logger.warning(
            "listener.signal_failed",
            extra={"workflow_id": workflow_id, "error": f"{type(exc).__name__}: {exc}"},
        )
    return None


async def start_reply_waiter(
    client: Client,
    *,
    task_queue: str,
    merchant_id: str,
    contact_id: uuid.UUID,
    key: str,
    timeout: timedelta,
) -> WorkflowHandle[Any, Any]:
    """Start an AwaitContactReplyWorkflow for this contact (its result is the reply)."""
    # Imported here: the workflow module imports this one for ContactEvent.
    from workflows.contact_reply import AwaitContactReplyInput, AwaitContactReplyWorkflow

    return await client.start_workflow(
        AwaitContactReplyWorkflow.run,
        AwaitContactReplyInput(
            merchant_id=merchant_id,
            contact_id=contact_id,
            timeout_seconds=timeout.total_seconds(),
        ),
        id=ids.contact_reply_id(str(contact_id), key),
        task_queue=task_queue,
        search_attributes=ids.contact_attributes(merchant_id, str(contact_id)),
    )
