"""The assistant in a conversation: the endpoint's answer, the context, escalating by hand,
and a human taking over (an agent's message, a close).

A model call is made with no transaction open (it may take seconds); its turn is recorded
afterwards, in the transaction that also queues the bot DM or escalates.
"""

from __future__ import annotations

import logging
import uuid

from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import Client

from integrations.llm import LLMClient
from mktx.settings import Settings
from models.ai import AIAnswer, AIContext, AIMessageRequest, AISettings, ContextTurn, Escalation
from models.conversation import Conversation, Message
from models.db import SessionMaker
from models.quota import SendKind
from services.assistant import answering, escalations
from services.assistant import sessions as ai_sessions
from services.assistant import settings as ai_settings
from services.core.errors import AIUnavailable, BadRequest
from services.inbox.conversations import get_conversation
from services.messaging import OutgoingDM, queue_outbound

logger = logging.getLogger(__name__)


async def enabled_settings(session: AsyncSession, merchant_id: str) -> AISettings:
    ai, _ = await ai_settings.load(session, merchant_id)
    if not ai.enabled:
        raise BadRequest(
            "the AI assistant is off for this merchant: turn it on with PUT /ai/settings",
            details={"enabled": False},
        )
    return ai


async def message(
    session: AsyncSession,
    sessions: SessionMaker,
    temporal: Client,
    settings: Settings,
    llm: LLMClient,
    merchant_id: str,
    conversation_id: uuid.UUID,
    body: AIMessageRequest,
) -> tuple[AIAnswer, Message | None]:
    """The assistant's answer to `body.message`; with `reply`, also queued as a bot DM (the
    caller commits, then starts its delivery)."""
    ai = await enabled_settings(session, merchant_id)
    conversation = await get_conversation(session, merchant_id, conversation_id)
    found = await ai_sessions.find(session, conversation.id)
    turns = list(found.context) if found else []
    await session.commit()  # no transaction held open across the model call
    try:
        answered = await answering.answer(
            llm,
            sessions,
            ai,
            merchant_id=merchant_id,
            conversation_id=conversation.id,
            turns=turns,
            text=body.message,
        )
    except answering.AIServiceError as exc:
        raise AIUnavailable(str(exc)) from exc
    answer = answered.answer
    conversation = await get_conversation(session, merchant_id, conversation_id, for_update=True)
    ai_session = await ai_sessions.open_session(session, merchant_id, conversation.id)
    ai_sessions.record_turn(ai_session, body.message, answer)
    session.add(ai_session)
    sent: Message | None = None
    if body.reply:
        sent = await queue_outbound(
            session,
            settings,
            conversation,
            OutgoingDM(
                kind=SendKind.bot,
                contact_id=conversation.contact_id,
                content=answer.response,
                is_from_bot=True,
            ),
        )
    reason = answered.escalation
    if reason is not None:
        await escalations.escalate(
            session, temporal, settings, ai, conversation, reason, handoff=False
        )
    return answer, sent


async def context(session: AsyncSession, merchant_id: str, conversation_id: uuid.UUID) -> AIContext:
    conversation = await get_conversation(session, merchant_id, conversation_id)
    found = await ai_sessions.find(session, conversation.id)
    latest = await escalations.latest(session, conversation.id)
    return AIContext(
        session_id=found.id if found else None,
        context=[ContextTurn.model_validate(t) for t in (found.context if found else [])],
        current_intent=found.current_intent if found else None,
        slots=found.slots if found else {},
        bot_paused=found.bot_paused if found else False,
        escalation=escalations.public(latest) if latest else None,
    )


async def escalate(
    session: AsyncSession,
    temporal: Client,
    settings: Settings,
    merchant_id: str,
    conversation_id: uuid.UUID,
    reason: str,
) -> Escalation:
    """Escalate by hand (whether the assistant is on or not: a person asks for people)."""
    conversation: Conversation = await get_conversation(
        session, merchant_id, conversation_id, for_update=True
    )
    ai, _ = await ai_settings.load(session, merchant_id)
    return await escalations.escalate(
        session, temporal, settings, ai, conversation, reason, handoff=False
    )


async def human_took_over(
    session: AsyncSession, merchant_id: str, conversation_id: uuid.UUID, resolution: str
) -> uuid.UUID | None:
    """An agent wrote (or closed the conversation): the bot stays quiet here from now on, and
    the open escalation is resolved (the caller commits, then `escalations.signal_resolved`)."""
    conversation = await get_conversation(session, merchant_id, conversation_id)
    if resolution == escalations.AGENT_REPLIED:
        await ai_sessions.pause_bot(session, merchant_id, conversation.id)
    return await escalations.resolve(session, merchant_id, conversation.id, resolution)
