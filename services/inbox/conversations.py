"""Conversation management: list, read, reply, close and assign a merchant's DM threads."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Select, nulls_last
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.contact import Contact
from models.conversation import (
    Conversation,
    ConversationContact,
    ConversationStatus,
    Message,
)
from models.db import utcnow
from services.core.errors import InvalidState
from services.core.tenancy import get_owned, owned_by


async def get_conversation(
    session: AsyncSession, merchant_id: str, conversation_id: uuid.UUID, *, for_update: bool = False
) -> Conversation:
    return await get_owned(
        session,
        Conversation,
        merchant_id,
        conversation_id,
        resource="conversation",
        for_update=for_update,
    )


def conversations_statement(
    merchant_id: str,
    *,
    account_id: uuid.UUID | None = None,
    status: ConversationStatus | None = None,
    assigned_to: str | None = None,
) -> Select[Any]:
    """The merchant's conversations, most recent activity first."""
    statement = owned_by(Conversation, merchant_id)
    if account_id is not None:
        statement = statement.where(col(Conversation.account_id) == account_id)
    if status is not None:
        statement = statement.where(col(Conversation.status) == status)
    if assigned_to is not None:
        statement = statement.where(col(Conversation.assigned_to_user_id) == assigned_to)
    return statement.order_by(  # type: ignore[return-value]
        nulls_last(col(Conversation.last_message_at).desc()),
        col(Conversation.started_at).desc(),
        col(Conversation.id),
    )


async def contacts_of(
    session: AsyncSession, merchant_id: str, conversations: Iterable[Conversation]
) -> dict[uuid.UUID, ConversationContact]:
    """Username and display name of each conversation's contact (one query per page)."""
    contact_ids = {conversation.contact_id for conversation in conversations}
    if not contact_ids:
        return {}
    rows = await session.exec(
        select(Contact.id, Contact.username, Contact.display_name).where(
            col(Contact.merchant_id) == merchant_id, col(Contact.id).in_(contact_ids)
        )
    )
    return {row[0]: ConversationContact(username=row[1], display_name=row[2]) for row in rows.all()}


async def conversation_messages(session: AsyncSession, conversation: Conversation) -> list[Message]:
    """All messages of a conversation, oldest first."""
    statement = (
        owned_by(Message, conversation.merchant_id)
        .where(col(Message.conversation_id) == conversation.id)
        .order_by(col(Message.sent_at), col(Message.created_at), col(Message.id))
    )
    return list((await session.exec(statement)).all())


async def close_conversation(
    session: AsyncSession, merchant_id: str, conversation_id: uuid.UUID, reason: str | None
) -> Conversation:
    conversation = await get_conversation(session, merchant_id, conversation_id, for_update=True)
    if conversation.status == ConversationStatus.closed:
        raise InvalidState(
            "conversation is already closed",
            details={"conversationId": str(conversation.id), "status": "closed"},
        )
    conversation.status = ConversationStatus.closed
    conversation.closed_at = utcnow()
    conversation.close_reason = reason
    await session.flush()
    return conversation


async def assign_conversation(
    session: AsyncSession, merchant_id: str, conversation_id: uuid.UUID, user_id: str
) -> Conversation:
    conversation = await get_conversation(session, merchant_id, conversation_id, for_update=True)
    conversation.assigned_to_user_id = user_id
    await session.flush()
    return conversation
