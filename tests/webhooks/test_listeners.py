"""Ingestion signals workflows waiting on a contact, and lets triggers start new ones."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select
from sqlmodel import col
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ActivityError, ApplicationError

from api.app import create_app
from mktx.settings import Settings
from models.db import SessionMaker, utcnow
from models.listener import WorkflowListener
from sandbox.admin import SandboxAdmin, SandboxUser
from services.inbox.listeners import ContactEvent, ContactEventKind, start_reply_waiter
from services.ingestion.payloads import TriggerContext, register_trigger, signal_with_start
from tests.conftest import Api
from tests.webhooks.conftest import (
    Shop,
    contacts_of,
    eventually,
    inbound,
    messages_of,
    post_signed,
)
from workflows import ids
from workflows.contact_reply import (
    AwaitContactReplyInput,
    AwaitContactReplyWorkflow,
    ContactReply,
)


async def _known_contact(
    api: Api, shop: Shop, customer: SandboxUser, sessions: SessionMaker
) -> uuid.UUID:
    assert (await post_signed(api.client, inbound(shop, customer, "hello"))).status_code == 200
    (contact,) = await contacts_of(sessions, shop.account_id)
    return contact.id


async def _listeners(sessions: SessionMaker, contact_id: uuid.UUID) -> list[str]:
    async with sessions() as session:
        rows = await session.execute(
            select(col(WorkflowListener.workflow_id)).where(
                col(WorkflowListener.contact_id) == contact_id
            )
        )
        return list(rows.scalars())


async def test_a_workflow_waiting_for_the_contacts_reply_gets_it(
    live_api: str,
    api: Api,
    shop: Shop,
    customer: SandboxUser,
    x_admin: SandboxAdmin,
    sessions: SessionMaker,
    temporal_client: Client,
    settings: Settings,
) -> None:
    contact_id = await _known_contact(api, shop, customer, sessions)
    handle = await start_reply_waiter(
        temporal_client,
        task_queue=settings.task_queue,
        merchant_id=api.merchant.id,
        contact_id=contact_id,
        key="test",
        timeout=timedelta(seconds=60),
    )
    listening = await eventually(
        lambda: handle.query(AwaitContactReplyWorkflow.listening), lambda yes: yes
    )
    assert listening
    assert await _listeners(sessions, contact_id) == [ids.contact_reply_id(str(contact_id), "test")]

    delivery = await x_admin.simulate_dm(customer.id, shop.x_id, "yes, tomorrow works")
    assert delivery.webhook_status == 200

    reply: ContactReply = await asyncio.wait_for(handle.result(), timeout=30)
    assert reply.replied and reply.text == "yes, tomorrow works"
    (message,) = [
        m for m in await messages_of(sessions, shop.account_id) if m.id == reply.message_id
    ]
    assert message.twitter_message_id == delivery.event_id
    assert await _listeners(sessions, contact_id) == []  # it unregistered on the way out

    described = await handle.describe()
    attributes = described.typed_search_attributes
    assert attributes.get(ids.MERCHANT_ID) == api.merchant.id
    assert attributes.get(ids.CONTACT_ID) == str(contact_id)


async def test_a_waiter_that_hears_nothing_times_out_and_unregisters(
    api: Api,
    shop: Shop,
    customer: SandboxUser,
    sessions: SessionMaker,
    temporal_client: Client,
    settings: Settings,
) -> None:
    contact_id = await _known_contact(api, shop, customer, sessions)
    handle = await start_reply_waiter(
        temporal_client,
        task_queue=settings.task_queue,
        merchant_id=api.merchant.id,
        contact_id=contact_id,
        key="quiet",
        timeout=timedelta(seconds=1),
    )
    reply = await asyncio.wait_for(handle.result(), timeout=30)
    assert reply.replied is False and reply.text is None
    assert await _listeners(sessions, contact_id) == []


async def test_another_merchants_contact_cannot_be_listened_to(
    api: Api,
    other_api: Api,
    shop: Shop,
    customer: SandboxUser,
    sessions: SessionMaker,
    temporal_client: Client,
    settings: Settings,
) -> None:
    contact_id = await _known_contact(api, shop, customer, sessions)
    handle = await start_reply_waiter(
        temporal_client,
        task_queue=settings.task_queue,
        merchant_id=other_api.merchant.id,
        contact_id=contact_id,
        key="intruder",
        timeout=timedelta(seconds=30),
    )
    with pytest.raises(WorkflowFailureError) as failed:
        await asyncio.wait_for(handle.result(), timeout=30)
    activity_error = failed.value.cause
    assert isinstance(activity_error, ActivityError)
    assert isinstance(activity_error.cause, ApplicationError)
    assert activity_error.cause.type == "ContactNotFound"  # final: not retried
    assert await _listeners(sessions, contact_id) == []


async def test_a_listener_whose_workflow_is_gone_is_dropped(
    api: Api, shop: Shop, customer: SandboxUser, sessions: SessionMaker
) -> None:
    contact_id = await _known_contact(api, shop, customer, sessions)
    async with sessions() as session:
        session.add(
            WorkflowListener(
                merchant_id=api.merchant.id,
                contact_id=contact_id,
                workflow_id=f"no-such-workflow-{uuid.uuid4().hex}",
                expires_at=utcnow() + timedelta(hours=1),
            )
        )
        await session.commit()
    assert (await post_signed(api.client, inbound(shop, customer, "anyone?"))).status_code == 200
    assert await eventually(lambda: _listeners(sessions, contact_id), lambda rows: not rows) == []


async def test_a_trigger_can_signal_with_start_a_workflow_for_the_contact(
    api: Api,
    shop: Shop,
    customer: SandboxUser,
    sessions: SessionMaker,
    temporal_client: Client,
    settings: Settings,
) -> None:
    contact_id = await _known_contact(api, shop, customer, sessions)
    seen: list[ContactEvent] = []

    async def on_message(event: ContactEvent, context: TriggerContext) -> None:
        if event.contact_id != contact_id or event.kind is not ContactEventKind.message:
            return
        seen.append(event)
        await signal_with_start(
            context.temporal,
            AwaitContactReplyWorkflow.run,
            AwaitContactReplyInput(merchant_id=event.merchant_id, contact_id=event.contact_id),
            event=event,
            workflow_id=ids.contact_reply_id(str(event.contact_id), "trigger"),
            task_queue=context.settings.task_queue,
            search_attributes=ids.contact_attributes(event.merchant_id, str(event.contact_id)),
        )

    remove = register_trigger(on_message)
    try:
        response = await post_signed(api.client, inbound(shop, customer, "start the flow"))
        assert response.status_code == 200
    finally:
        remove()

    assert [e.text for e in seen] == ["start the flow"]
    handle = temporal_client.get_workflow_handle_for(
        AwaitContactReplyWorkflow.run, ids.contact_reply_id(str(contact_id), "trigger")
    )
    reply = await asyncio.wait_for(handle.result(), timeout=30)
    assert reply.replied and reply.text == "start the flow"


async def test_temporal_being_unreachable_loses_no_event(
    api: Api, shop: Shop, customer: SandboxUser, sessions: SessionMaker, settings: Settings
) -> None:
    contact_id = await _known_contact(api, shop, customer, sessions)
    async with sessions() as session:
        session.add(
            WorkflowListener(
                merchant_id=api.merchant.id,
                contact_id=contact_id,
                workflow_id="someone-listening",
                expires_at=utcnow() + timedelta(hours=1),
            )
        )
        await session.commit()
    no_temporal = settings.model_copy(update={"temporal_address": "127.0.0.1:1"})
    app = create_app(no_temporal)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://x.test") as client:
            response = await post_signed(client, inbound(shop, customer, "still here"))
    assert response.status_code == 200
    assert "still here" in [m.content for m in await messages_of(sessions, shop.account_id)]
    assert await _listeners(sessions, contact_id) == ["someone-listening"]  # not dropped either
