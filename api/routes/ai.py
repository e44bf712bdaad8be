"""AI Chatbot: the merchant's settings, asking the assistant in a conversation, the
conversation's AI context, and escalating it to humans."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Path

from api.deps import ContextDep, ReaderDep, SessionDep, TemporalDep, require
from api.envelope import Envelope, error_responses, ok
from api.storable import StorableTextRoute
from models.ai import (
    AIAnswer,
    AIContext,
    AIMessageRequest,
    AISettingsPublic,
    AISettingsUpdate,
    EscalateRequest,
    EscalationPublic,
)
from services.assistant import conversations as assistant
from services.assistant import escalations
from services.assistant import settings as ai_settings
from services.core.auth import Permission, Principal
from services.messaging import start_delivery

router = APIRouter(prefix="/ai", tags=["ai chatbot"], route_class=StorableTextRoute)

AIAdminDep = Annotated[Principal, Depends(require(Permission.manage_ai))]
AgentDep = Annotated[Principal, Depends(require(Permission.handle_conversations))]
ConversationId = Annotated[uuid.UUID, Path(alias="conversationId")]


@router.get("/settings", response_model=Envelope[AISettingsPublic], responses=error_responses(401))
async def get_settings(
    principal: ReaderDep, session: SessionDep, context: ContextDep
) -> Envelope[AISettingsPublic]:
    """The merchant's AI settings (the defaults until a `PUT`)."""
    settings, row = await ai_settings.load(session, principal.merchant_id)
    return ok(ai_settings.public(settings, row, context.llm.default_model))


@router.put(
    "/settings",
    response_model=Envelope[AISettingsPublic],
    responses=error_responses(401, 403, 422),
)
async def update_settings(
    body: AISettingsUpdate, principal: AIAdminDep, session: SessionDep, context: ContextDep
) -> Envelope[AISettingsPublic]:
    """Change the fields sent (the escalation's one by one); the others are kept."""
    settings, row = await ai_settings.update(session, principal.merchant_id, body)
    return ok(ai_settings.public(settings, row, context.llm.default_model))


@router.post(
    "/conversations/{conversationId}/message",
    response_model=Envelope[AIAnswer],
    responses=error_responses(400, 401, 403, 404, 422, 429, 502, 503),
)
async def message(
    body: AIMessageRequest,
    principal: AgentDep,
    session: SessionDep,
    context: ContextDep,
    temporal: TemporalDep,
    conversation_id: ConversationId,
) -> Envelope[AIAnswer]:
    """The assistant's answer to a message in this conversation: intent, confidence, response,
    slots and whether a person should take over (then the conversation is escalated). With
    `reply: true` the response is also sent to the contact as a bot DM."""
    answer, sent = await assistant.message(
        session,
        context.sessions,
        temporal,
        context.settings,
        context.llm,
        principal.merchant_id,
        conversation_id,
        body,
    )
    await session.commit()
    if sent is not None:
        await start_delivery(temporal, context.settings, sent)
    return ok(answer)


@router.get(
    "/conversations/{conversationId}/context",
    response_model=Envelope[AIContext],
    responses=error_responses(401, 404),
)
async def get_context(
    principal: ReaderDep, session: SessionDep, conversation_id: ConversationId
) -> Envelope[AIContext]:
    """The conversation's AI session: the last 50 turns, intent, slots, the bot paused or not,
    and its latest escalation."""
    return ok(await assistant.context(session, principal.merchant_id, conversation_id))


@router.post(
    "/conversations/{conversationId}/escalate",
    response_model=Envelope[EscalationPublic],
    responses=error_responses(401, 403, 404, 422, 503),
)
async def escalate(
    body: EscalateRequest,
    principal: AgentDep,
    session: SessionDep,
    context: ContextDep,
    temporal: TemporalDep,
    conversation_id: ConversationId,
) -> Envelope[EscalationPublic]:
    """Hand the conversation to humans: the bot pauses, the SLA timer starts. A conversation
    with an open escalation answers that one."""
    row = await assistant.escalate(
        session, temporal, context.settings, principal.merchant_id, conversation_id, body.reason
    )
    return ok(escalations.public(row))
