"""A conversation's AI session: the turns the model sees again, the intent and slots so far,
and whether the bot is paused (a human took over)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import text
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.ai import MAX_CONTEXT, AIAnswer, AISession
from models.db import utcnow

_OPEN = text(
    """
    INSERT INTO ai_sessions (id, merchant_id, created_at, updated_at, conversation_id, context,
        slots, bot_paused)
    VALUES (:id, :merchant_id, :now, :now, :conversation_id, '[]', '{}', false)
    ON CONFLICT (conversation_id) DO NOTHING
    """
)


async def find(session: AsyncSession, conversation_id: uuid.UUID) -> AISession | None:
    return (
        await session.exec(
            select(AISession).where(col(AISession.conversation_id) == conversation_id)
        )
    ).first()


async def open_session(
    session: AsyncSession, merchant_id: str, conversation_id: uuid.UUID
) -> AISession:
    """The conversation's session, created on first use, locked for this transaction."""
    await session.execute(
        _OPEN,
        {
            "id": uuid.uuid4(),
            "merchant_id": merchant_id,
            "now": utcnow(),
            "conversation_id": conversation_id,
        },
    )
    found = (
        await session.exec(
            select(AISession)
            .where(col(AISession.conversation_id) == conversation_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).one()
    return found


def record_turn(ai_session: AISession, user_text: str, answer: AIAnswer) -> None:
    """The customer's text and the assistant's response, the last MAX_CONTEXT turns kept; the
    slots merged (new values win)."""
    turns: list[dict[str, Any]] = [
        *ai_session.context,
        {"role": "user", "content": user_text},
        {"role": "assistant", "content": answer.response},
    ]
    ai_session.context = turns[-MAX_CONTEXT:]
    ai_session.current_intent = answer.intent
    ai_session.slots = {**ai_session.slots, **answer.slots}
    ai_session.updated_at = utcnow()


async def pause_bot(session: AsyncSession, merchant_id: str, conversation_id: uuid.UUID) -> None:
    ai_session = await open_session(session, merchant_id, conversation_id)
    if not ai_session.bot_paused:
        ai_session.bot_paused = True
        ai_session.updated_at = utcnow()
        session.add(ai_session)
