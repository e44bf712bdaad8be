"""An agent's reply: queued through the one send path, committed, delivered durably, and
waited for a little so that the answer can say whether X took it."""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass

from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import Client, WorkflowFailureError
from temporalio.service import RPCError

from mktx.settings import Settings
from models.conversation import Message, MessageSend
from models.quota import SendKind
from services.core.errors import ServiceUnavailable
from services.inbox.conversations import get_conversation
from services.messaging import OutgoingDM, queue_outbound, record_failed, start_delivery
from workflows.contracts.messaging import SendMessageResult

logger = logging.getLogger(__name__)

# How long a reply waits for X to accept the message before answering that it is on its way.
SEND_WAIT_SECONDS = 20.0


@dataclass(frozen=True, slots=True)
class Reply:
    message: Message  # as it stands when the wait ended (sent, failed or still queued)
    result: SendMessageResult | None  # the delivery's answer, if it finished in time


async def send_reply(
    session: AsyncSession,
    temporal: Client,
    settings: Settings,
    *,
    merchant_id: str,
    user_id: str,
    conversation_id: uuid.UUID,
    body: MessageSend,
) -> Reply:
    """Queue the reply and commit (the delivery reads the row), start its delivery and wait.
    Temporal refusing the start fails the message (nothing was sent; the agent may send it
    again) and raises ServiceUnavailable."""
    # Locked so that a close running at the same moment cannot slip between check and insert.
    conversation = await get_conversation(session, merchant_id, conversation_id, for_update=True)
    message = await queue_outbound(
        session,
        settings,
        conversation,
        OutgoingDM(
            kind=SendKind.inbox,
            contact_id=conversation.contact_id,
            content=body.content,
            attachments=[attachment.model_dump(mode="json") for attachment in body.attachments],
            message_type=body.type,
            sent_by_user_id=user_id,
        ),
    )
    await session.commit()
    try:
        handle = await start_delivery(temporal, settings, message)
    except RPCError as exc:
        await record_failed(session, message.id, "the delivery could not be started")
        await session.commit()
        raise ServiceUnavailable("could not start the delivery; try again") from exc
    result: SendMessageResult | None = None
    try:
        result = await asyncio.wait_for(handle.result(), timeout=SEND_WAIT_SECONDS)
    except TimeoutError:
        logger.info("message.delivery_pending", extra={"message_id": str(message.id)})
    except RPCError as exc:  # Temporal went away while we waited; the send itself is durable
        logger.warning(
            "message.wait_interrupted", extra={"message_id": str(message.id), "error": str(exc)}
        )
    except WorkflowFailureError:
        logger.exception("message.workflow_failed", extra={"message_id": str(message.id)})
    await session.refresh(message)
    return Reply(message, result)
