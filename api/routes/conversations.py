"""Conversation Management: list, read, reply, close and assign."""

from __future__ import annotations

import logging
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query, Response

from api.deps import ContextDep, ReaderDep, SessionDep, TemporalDep, TemporalSourceDep, require
from api.envelope import Envelope, Page, error_responses, ok
from api.pagination import PageDep
from api.storable import StorableTextRoute
from models.conversation import (
    Conversation,
    ConversationAssign,
    ConversationClose,
    ConversationContact,
    ConversationDetail,
    ConversationPublic,
    ConversationStatus,
    Message,
    MessagePublic,
    MessageSend,
    MessageStatus,
)
from services.assistant import conversations as assistant
from services.assistant import escalations
from services.core.auth import Permission, Principal
from services.core.errors import (
    AppError,
    BadRequest,
    InvalidState,
    UpstreamError,
)
from services.inbox import conversations as conversation_service
from services.inbox import replies
from workflows.contracts.messaging import SendMessageResult

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/conversations", tags=["conversations"], route_class=StorableTextRoute)

AgentDep = Annotated[Principal, Depends(require(Permission.handle_conversations))]
ConversationId = Annotated[uuid.UUID, Path(alias="conversationId")]

_ACCEPTED: dict[int | str, dict[str, Any]] = {
    202: {
        "model": Envelope[MessagePublic],
        "description": (
            "X did not accept the message within the wait (X down or rate-limiting): it stays "
            "`queued` and is delivered durably; read its status on the conversation later."
        ),
    }
}


def _public(
    conversation: Conversation, contacts: dict[uuid.UUID, ConversationContact]
) -> dict[str, Any]:
    fields = ConversationPublic.model_validate(conversation).model_dump()
    fields["contact"] = contacts.get(conversation.contact_id)
    return fields


@router.get("", response_model=Page[ConversationPublic], responses=error_responses(401, 403, 422))
async def list_conversations(
    principal: ReaderDep,
    session: SessionDep,
    page: PageDep,
    account_id: Annotated[uuid.UUID | None, Query(alias="accountId")] = None,
    status: Annotated[ConversationStatus | None, Query(description="open or closed")] = None,
    assigned_to: Annotated[
        str | None, Query(alias="assignedTo", min_length=1, max_length=128)
    ] = None,
) -> Page[ConversationPublic]:
    """List conversations, most recent activity first, each with its contact's names."""
    statement = conversation_service.conversations_statement(
        principal.merchant_id, account_id=account_id, status=status, assigned_to=assigned_to
    )
    rows, total = await page.fetch(session, statement)
    contacts = await conversation_service.contacts_of(session, principal.merchant_id, rows)
    return page.page([ConversationPublic(**_public(row, contacts)) for row in rows], total)


@router.get(
    "/{conversationId}",
    response_model=Envelope[ConversationDetail],
    responses=error_responses(401, 404, 422),
)
async def get_conversation(
    principal: ReaderDep,
    session: SessionDep,
    conversation_id: ConversationId,
    include_messages: Annotated[bool, Query(alias="includeMessages")] = True,
) -> Envelope[ConversationDetail]:
    """One conversation with its messages, oldest first."""
    conversation = await conversation_service.get_conversation(
        session, principal.merchant_id, conversation_id
    )
    contacts = await conversation_service.contacts_of(
        session, principal.merchant_id, [conversation]
    )
    messages = None
    if include_messages:
        rows = await conversation_service.conversation_messages(session, conversation)
        messages = [MessagePublic.model_validate(row) for row in rows]
    return ok(ConversationDetail(**_public(conversation, contacts), messages=messages))


@router.post(
    "/{conversationId}/messages",
    response_model=Envelope[MessagePublic],
    responses={**error_responses(400, 401, 403, 404, 422, 429, 502, 503), **_ACCEPTED},
)
async def send_message(
    body: MessageSend,
    principal: AgentDep,
    session: SessionDep,
    context: ContextDep,
    temporal: TemporalDep,
    conversation_id: ConversationId,
    response: Response,
) -> Envelope[MessagePublic]:
    """Send a DM in the conversation; 200 once X accepted it, 202 if X is slow (still queued).
    A person writes here now: the bot stays quiet in this conversation, and its open escalation
    is resolved (`agent_replied`), committed with the reply."""
    resolved = await assistant.human_took_over(
        session, principal.merchant_id, conversation_id, escalations.AGENT_REPLIED
    )
    reply = await replies.send_reply(
        session,
        temporal,
        context.settings,
        merchant_id=principal.merchant_id,
        user_id=principal.user_id,
        conversation_id=conversation_id,
        body=body,
    )
    message, result = reply.message, reply.result
    if resolved is not None:
        await escalations.signal_resolved(temporal, conversation_id, escalations.AGENT_REPLIED)
    if message.status == MessageStatus.failed:
        raise _send_failure(message, result)
    if message.status == MessageStatus.queued:
        response.status_code = 202
    return ok(MessagePublic.model_validate(message))


def _send_failure(message: Message, result: SendMessageResult | None) -> AppError:
    reason = (result.reason if result else None) or message.error or "not delivered"
    details: dict[str, Any] = {"reason": reason, "messageId": str(message.id)}
    error_type = result.error_type if result else None
    if result and result.x_status is not None:
        details["xStatus"] = result.x_status
    if error_type in ("AccountNotUsable", "account_unusable"):
        return InvalidState("account is not active", details=details)
    if error_type == "MediaUnavailable":  # the attachment's URL, not X: the caller's to fix
        return BadRequest(f"the attachment cannot be sent: {reason}", details=details)
    if error_type in ("XTokenRevoked", "XUnauthorized"):
        return UpstreamError(
            "X no longer accepts this account's token; reconnect the account", details=details
        )
    return UpstreamError(f"X refused the message: {reason}", details=details)


@router.put(
    "/{conversationId}/close",
    response_model=Envelope[ConversationPublic],
    responses=error_responses(400, 401, 403, 404, 422),
)
async def close_conversation(
    principal: AgentDep,
    session: SessionDep,
    temporal: TemporalSourceDep,
    conversation_id: ConversationId,
    body: Annotated[ConversationClose | None, Body()] = None,
) -> Envelope[ConversationPublic]:
    """Close the conversation (resolving its escalation); the contact's next DM opens a new
    one, with a fresh AI session."""
    conversation = await conversation_service.close_conversation(
        session, principal.merchant_id, conversation_id, body.reason if body else None
    )
    resolved = await assistant.human_took_over(
        session, principal.merchant_id, conversation_id, escalations.CLOSED
    )
    await session.commit()
    if resolved is not None:
        await escalations.signal_resolved(await temporal(), conversation_id, escalations.CLOSED)
    contacts = await conversation_service.contacts_of(
        session, principal.merchant_id, [conversation]
    )
    logger.info("conversation.closed", extra={"conversation_id": str(conversation.id)})
    return ok(ConversationPublic(**_public(conversation, contacts)))


@router.post(
    "/{conversationId}/assign",
    response_model=Envelope[ConversationPublic],
    responses=error_responses(401, 403, 404, 422),
)
async def assign_conversation(
    body: ConversationAssign,
    principal: AgentDep,
    session: SessionDep,
    conversation_id: ConversationId,
) -> Envelope[ConversationPublic]:
    """Assign the conversation to a user of the merchant (the IAM service's user id)."""
    conversation = await conversation_service.assign_conversation(
        session, principal.merchant_id, conversation_id, body.user_id
    )
    contacts = await conversation_service.contacts_of(
        session, principal.merchant_id, [conversation]
    )
    return ok(ConversationPublic(**_public(conversation, contacts)))
