"""Auto-reply: the assistant answering a conversation's DMs by itself, and the trigger that
starts it.

It answers when the account's `autoReplyEnabled` and the merchant's assistant are both on, in
an open conversation whose bot is not paused, a DM that is not an opt-out or opt-in keyword.
The DMs waiting when it answers are answered together, in one call; its bot DM's id derives
from the first of them, so an answer retried after a crash is not sent twice. When it cannot
answer (the model failing) or should not (it asks for a person), the conversation is escalated
and the customer gets the handoff message instead.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy

from integrations.llm import LLMClient
from mktx.settings import Settings
from models.account import XAccount
from models.ai import AISettings
from models.conversation import Conversation, ConversationStatus, Message
from models.db import SessionMaker
from models.quota import SendKind
from services.assistant import answering, escalations
from services.assistant import sessions as ai_sessions
from services.assistant import settings as ai_settings
from services.contacts.consent import consent_keyword
from services.ingestion.triggers import Trigger, TriggerRegistry, WorkflowStart
from services.messaging import OutgoingDM, queue_messages
from workflows import ids
from workflows.contracts.assistant import (
    ASSISTANT_WORKFLOW,
    AssistantInput,
    AutoReplyInput,
    AutoReplyResult,
)
from workflows.contracts.contact_events import ContactEvent, ContactEventKind

logger = logging.getLogger(__name__)


@dataclass
class _Moment:
    """What decides whether the assistant answers now, read in one session."""

    why_not: str | None
    conversation: Conversation | None = None
    ai: AISettings | None = None
    turns: list[dict[str, Any]] = field(default_factory=list)


async def _moment(session: AsyncSession, merchant_id: str, conversation_id: uuid.UUID) -> _Moment:
    conversation = await session.get(Conversation, conversation_id)
    if conversation is None or conversation.merchant_id != merchant_id:
        return _Moment("gone")
    if conversation.status != ConversationStatus.open:
        return _Moment("closed", conversation)
    account = await session.get(XAccount, conversation.account_id)
    if account is None or not account.auto_reply_enabled:
        return _Moment("auto_reply_off", conversation)
    ai, _ = await ai_settings.load(session, merchant_id)
    if not ai.enabled:
        return _Moment("ai_off", conversation)
    found = await ai_sessions.find(session, conversation_id)
    if found is not None and found.bot_paused:
        return _Moment("bot_paused", conversation)
    return _Moment(None, conversation, ai, list(found.context) if found else [])


def register_triggers(
    registry: TriggerRegistry, settings: Settings, sessions: SessionMaker
) -> None:
    async def decide(event: ContactEvent) -> WorkflowStart | None:
        if event.message_id is None or consent_keyword(settings, event.text or ""):
            return None
        async with sessions() as session:
            message = await session.get(Message, event.message_id)
            if message is None:
                return None
            moment = await _moment(session, event.merchant_id, message.conversation_id)
        conversation = moment.conversation
        if moment.why_not is not None or conversation is None:
            return None
        return WorkflowStart.of(
            ASSISTANT_WORKFLOW,
            ids.assistant_id(str(conversation.id)),
            AssistantInput(
                merchant_id=event.merchant_id,
                conversation_id=conversation.id,
                contact_id=conversation.contact_id,
            ),
            task_queue=settings.task_queue,
            search_attributes=ids.contact_attributes(event.merchant_id, str(event.contact_id)),
            # Each quiet spell ends a run; the next DM starts the next one.
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        )

    kinds = frozenset({ContactEventKind.message})
    registry.register(Trigger(ai_settings.AUTO_REPLY_TRIGGER, kinds, decide))


async def auto_reply(
    sessions: SessionMaker,
    temporal: Client,
    settings: Settings,
    llm: LLMClient,
    request: AutoReplyInput,
) -> AutoReplyResult:
    if not request.message_ids:
        return AutoReplyResult(skipped="nothing")
    reply_id = uuid.uuid5(request.conversation_id, f"reply:{request.message_ids[0]}")
    async with sessions() as session:
        if await session.get(Message, reply_id) is not None:  # answered by an earlier attempt
            return AutoReplyResult(reply_id=reply_id)
        moment = await _moment(session, request.merchant_id, request.conversation_id)
        conversation, ai, turns = moment.conversation, moment.ai, moment.turns
        if moment.why_not is not None or conversation is None or ai is None:
            return AutoReplyResult(skipped=moment.why_not)
        text = "\n".join(await _texts(session, request.message_ids))
    try:
        answered = await answering.answer(
            llm,
            sessions,
            ai,
            merchant_id=request.merchant_id,
            conversation_id=conversation.id,
            turns=turns,
            text=text,
        )
    except answering.AIServiceError as exc:
        logger.warning("ai.auto_reply_failed", extra={"error": str(exc)[:300]})
        await _escalate(sessions, temporal, settings, conversation.id, answering.AI_UNAVAILABLE)
        return AutoReplyResult(escalated=True)
    async with sessions() as session, session.begin():
        locked = await session.get(Conversation, conversation.id, with_for_update=True)
        ai_session = await ai_sessions.open_session(session, request.merchant_id, conversation.id)
        if locked is None or locked.status != ConversationStatus.open or ai_session.bot_paused:
            return AutoReplyResult(skipped="bot_paused")  # a person took over meanwhile
        answer, reason = answered.answer, answered.escalation
        ai_sessions.record_turn(ai_session, text, answer)
        session.add(ai_session)
        if reason is not None:
            await escalations.escalate(
                session, temporal, settings, ai, locked, reason, handoff=True
            )
            return AutoReplyResult(escalated=True)
        dm = OutgoingDM(
            kind=SendKind.bot,
            contact_id=locked.contact_id,
            content=answer.response,
            is_from_bot=True,
            message_id=reply_id,
        )
        queued = await queue_messages(session, settings, request.merchant_id, [dm])
    if not queued.queued:
        return AutoReplyResult(skipped=queued.refused[0].reason.value)
    return AutoReplyResult(reply_id=reply_id)


async def _texts(session: AsyncSession, message_ids: Sequence[uuid.UUID]) -> list[str]:
    rows = await session.exec(
        select(Message.content)
        .where(col(Message.id).in_(list(message_ids)))
        .order_by(col(Message.created_at))
    )
    return [str(content) for content in rows.all() if content]


async def _escalate(
    sessions: SessionMaker,
    temporal: Client,
    settings: Settings,
    conversation_id: uuid.UUID,
    reason: str,
) -> None:
    async with sessions() as session, session.begin():
        conversation = await session.get(Conversation, conversation_id, with_for_update=True)
        if conversation is None:
            return
        ai, _ = await ai_settings.load(session, conversation.merchant_id)
        await escalations.escalate(
            session, temporal, settings, ai, conversation, reason, handoff=True
        )
