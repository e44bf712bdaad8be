"""Ingestion signals workflows waiting on a contact, and lets triggers start new ones, right
after its answer (tests/webhooks/test_follow_ups.py: when that cannot be done at once)."""

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
from services.inbox.listeners import start_reply_waiter
from services.ingestion import Trigger, TriggerRegistry, WorkflowStart
from services.ingestion.triggers import arm_triggers
from tests.conftest import Api
from tests.webhooks.conftest import (
    Shop,
    contacts_of,
    eventually,
    follow_ups_of,
    inbound,
    messages_of,
    post_signed,
)
from workflows import ids
from workflows.contact_reply import AwaitContactReplyWorkflow
from workflows.contracts.contact_events import ContactEvent, ContactEventKind
from workflows.contracts.listeners import (
    AWAIT_CONTACT_REPLY_WORKFLOW,
    AwaitContactReplyInput,
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
    # Recorded with the event, carried out right after the answer, marked done.
    (follow_up,) = await follow_ups_of(sessions, api.merchant.id)
    assert (follow_up.kind, follow_up.target) == ("signal", handle.id)
    assert (follow_up.outcome, follow_up.attempts) == ("signalled", 1)
    assert follow_up.done_at is not None and follow_up.last_error is None
    assert follow_up.payload["message_id"] == str(reply.message_id)

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
    (follow_up,) = await follow_ups_of(sessions, api.merchant.id)
    assert (follow_up.outcome, follow_up.attempts) == ("gone", 1)  # done: never tried again


async def test_a_trigger_can_signal_with_start_a_workflow_for_the_contact(
    shop: Shop,
    customer: SandboxUser,
    api: Api,
    sessions: SessionMaker,
    temporal_client: Client,
    settings: Settings,
    worker: None,
) -> None:
    contact_id = await _known_contact(api, shop, customer, sessions)
    seen: list[ContactEvent] = []

    async def reply_waiter(event: ContactEvent) -> WorkflowStart | None:
        if event.contact_id != contact_id:
            return None
        seen.append(event)
        return WorkflowStart.of(
            AWAIT_CONTACT_REPLY_WORKFLOW,
            ids.contact_reply_id(str(event.contact_id), "trigger"),
            AwaitContactReplyInput(merchant_id=event.merchant_id, contact_id=event.contact_id),
            task_queue=settings.task_queue,
            search_attributes=ids.contact_attributes(event.merchant_id, str(event.contact_id)),
        )

    triggers = TriggerRegistry(
        [Trigger("test.reply_waiter", frozenset({ContactEventKind.message}), reply_waiter)]
    )
    async with sessions() as session, session.begin():  # it wants this merchant's events
        await arm_triggers(session, api.merchant.id, prefix="test.", armed=["test.reply_waiter"])
    app = create_app(settings, triggers=triggers)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://x.test") as client:
            response = await post_signed(client, inbound(shop, customer, "start the flow"))
    assert response.status_code == 200

    assert [e.text for e in seen] == ["start the flow"]
    handle = temporal_client.get_workflow_handle_for(
        AwaitContactReplyWorkflow.run, ids.contact_reply_id(str(contact_id), "trigger")
    )
    reply = await asyncio.wait_for(handle.result(), timeout=30)
    assert reply.replied and reply.text == "start the flow"
    (follow_up,) = await follow_ups_of(sessions, api.merchant.id)
    assert (follow_up.kind, follow_up.target, follow_up.outcome) == (
        "start",
        "test.reply_waiter",
        "started",
    )
    assert follow_up.start is not None and follow_up.start[0]["workflow_id"] == handle.id


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
    # What it owes waits for Temporal, due again after the first backoff.
    (follow_up,) = await follow_ups_of(sessions, api.merchant.id)
    assert (follow_up.target, follow_up.attempts, follow_up.done_at) == (
        "someone-listening",
        1,
        None,
    )
    assert follow_up.last_error and follow_up.next_attempt_at > follow_up.created_at
