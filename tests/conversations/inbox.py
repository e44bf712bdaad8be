"""Building blocks for conversation tests: a connected shop account, and conversations made
as rows (as ingestion would leave them) with a real sandbox user as the contact."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import col, select

from mktx.settings import Settings
from models.account import XAccount
from models.contact import Contact, ContactSource
from models.conversation import Conversation, ConversationStatus, Message, MessageDirection
from models.db import SessionMaker, utcnow
from models.quota import SendKind
from sandbox.admin import SandboxAdmin, SandboxUser
from services.messaging import OutgoingDM, queue_outbound
from tests.conftest import Api


@dataclass(frozen=True)
class Shop:
    account_id: str
    user: SandboxUser


@dataclass(frozen=True)
class Thread:
    id: str
    contact_id: str
    customer: SandboxUser


async def connect_shop(api: Api, x_admin: SandboxAdmin) -> Shop:
    user = await x_admin.create_user(username=f"shop_{uuid.uuid4().hex[:8]}", name="Shop")
    response = await api.post(
        "/accounts",
        json={"oauthToken": user.access_token, "oauthTokenSecret": user.access_token_secret},
    )
    assert response.status_code == 200, response.text
    account_id = response.json()["data"]["id"]
    # Let the connect workflow finish first: a test that then revokes the token must not race
    # the workflow's own call to X (which would flag the account before the test's send).
    for _ in range(200):
        account = (await api.get(f"/accounts/{account_id}")).json()["data"]
        if account["subscriptionStatus"] != "pending":
            break
        await asyncio.sleep(0.05)
    assert account["subscriptionStatus"] == "subscribed", account
    return Shop(account_id=account_id, user=user)


async def open_thread(
    sessions: SessionMaker,
    x_admin: SandboxAdmin,
    merchant_id: str,
    shop: Shop,
    *,
    status: ConversationStatus = ConversationStatus.open,
    last_message_at: datetime | None = None,
    started_at: datetime | None = None,
    assigned_to: str | None = None,
    name: str = "Customer",
    customer: SandboxUser | None = None,
) -> Thread:
    customer = customer or await x_admin.create_user(
        username=f"cust_{uuid.uuid4().hex[:8]}", name=name
    )
    account_id = uuid.UUID(shop.account_id)
    async with sessions() as session, session.begin():
        contact = (
            await session.exec(
                select(Contact).where(
                    col(Contact.account_id) == account_id,
                    col(Contact.twitter_user_id) == customer.id,
                )
            )
        ).first()
        contact_id = contact.id if contact is not None else None
        if contact_id is None:
            row = Contact(
                merchant_id=merchant_id,
                account_id=account_id,
                twitter_user_id=customer.id,
                username=customer.username,
                display_name=customer.name,
                source=ContactSource.inbound_message,
                conversation_count=1,
            )
            session.add(row)
            await session.flush()
            contact_id = row.id
        conversation = Conversation(
            merchant_id=merchant_id,
            account_id=account_id,
            contact_id=contact_id,
            status=status,
            started_at=started_at or utcnow(),
            last_message_at=last_message_at,
            closed_at=utcnow() if status == ConversationStatus.closed else None,
            assigned_to_user_id=assigned_to,
        )
        session.add(conversation)
        await session.flush()
        return Thread(id=str(conversation.id), contact_id=str(contact_id), customer=customer)


async def add_message(
    sessions: SessionMaker,
    merchant_id: str,
    shop: Shop,
    thread: Thread,
    *,
    content: str,
    sent_at: datetime,
    direction: MessageDirection = MessageDirection.inbound,
    **fields: Any,
) -> str:
    async with sessions() as session, session.begin():
        message = Message(
            merchant_id=merchant_id,
            conversation_id=uuid.UUID(thread.id),
            account_id=uuid.UUID(shop.account_id),
            contact_id=uuid.UUID(thread.contact_id),
            direction=direction,
            content=content,
            sent_at=sent_at,
            **fields,
        )
        session.add(message)
        conversation = await session.get(Conversation, uuid.UUID(thread.id))
        assert conversation is not None
        conversation.message_count += 1
        conversation.last_message_at = max(conversation.last_message_at or sent_at, sent_at)
        await session.flush()
        return str(message.id)


async def queue_message(
    sessions: SessionMaker,
    settings: Settings,
    shop: Shop,
    thread: Thread,
    text: str,
    kind: SendKind = SendKind.inbox,
    **options: Any,
) -> Message:
    """An outbound message queued and committed through the one send path, its delivery not
    started (the caller starts it, or not: what a crash right after the commit leaves)."""
    async with sessions() as session, session.begin():
        account = await session.get(XAccount, uuid.UUID(shop.account_id))
        conversation = await session.get(Conversation, uuid.UUID(thread.id))
        assert account is not None and conversation is not None
        return await queue_outbound(
            session,
            settings,
            conversation,
            OutgoingDM(kind=kind, contact_id=conversation.contact_id, content=text, **options),
        )
