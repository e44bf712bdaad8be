"""The shared send path used outside HTTP requests (opt-out confirmations, campaigns, flows)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from temporalio.client import Client

from mktx.settings import Settings
from models.contact import Contact
from models.conversation import Conversation, Message
from models.db import SessionMaker, utcnow
from models.quota import SendKind
from sandbox.admin import SandboxAdmin
from services.core.errors import InvalidState
from services.messaging import ContactOptedOut, start_delivery
from tests.conftest import Api
from tests.conversations.inbox import connect_shop, open_thread, queue_message
from workflows.contracts.messaging import SendOutcome


async def test_marketing_skips_opted_out_contacts_but_a_confirmation_goes_out(
    api: Api,
    x_admin: SandboxAdmin,
    sessions: SessionMaker,
    settings: Settings,
    temporal_client: Client,
) -> None:
    shop = await connect_shop(api, x_admin)
    thread = await open_thread(sessions, x_admin, api.merchant.id, shop)
    async with sessions() as session, session.begin():
        contact = await session.get(Contact, uuid.UUID(thread.contact_id))
        assert contact is not None
        contact.opted_out, contact.opted_out_at = True, utcnow()

    async def queue(kind: SendKind, text: str) -> Message:
        return await queue_message(sessions, settings, shop, thread, text, kind, is_from_bot=True)

    for kind in (SendKind.campaign, SendKind.flow):
        with pytest.raises(ContactOptedOut) as refused:
            await queue(kind, "50% off today!")
        assert isinstance(refused.value, InvalidState) and refused.value.status == 400

    message = await queue(SendKind.system, "You are unsubscribed.")
    handle = await start_delivery(temporal_client, settings, message)
    again = await start_delivery(temporal_client, settings, message)  # same run, not a second send
    assert again.id == handle.id
    result = await asyncio.wait_for(handle.result(), timeout=20)

    assert result.outcome == SendOutcome.sent
    [dm] = await x_admin.dms(recipient_id=thread.customer.id)
    assert dm.text == "You are unsubscribed." and dm.id == result.twitter_message_id
    async with sessions() as session:
        row = await session.get(Message, message.id)
        assert row is not None and row.status == "sent" and row.is_from_bot
        conversation = await session.get(Conversation, uuid.UUID(thread.id))
        assert conversation is not None and conversation.message_count == 1
