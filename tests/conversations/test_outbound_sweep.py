"""The outbound sweep: a message committed `queued` whose delivery was never started (the
process died, or Temporal was away, before `start_delivery`) is delivered by the maintenance
workflow, once; a delivery still at work is left alone; one that was stopped is not resent."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import update
from sqlmodel import col
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from mktx.settings import Settings
from models.campaign import Campaign, CampaignStatus
from models.conversation import Message, MessageStatus
from models.db import SessionMaker, utcnow
from models.template import Template
from sandbox.admin import SandboxAdmin
from services.campaigns.batches import claim_batch
from services.campaigns.delivery import begin_occurrence
from services.messaging import start_delivery
from services.messaging.sweep import sweep_queued
from tests.campaigns.conftest import make_world
from tests.conftest import Api
from tests.conversations.inbox import Thread, connect_shop, open_thread, queue_message
from workflows import ids
from workflows.contracts.messaging import SendMessageResult
from workflows.maintenance import MaintenanceInput, MaintenanceResult, MaintenanceWorkflow


async def _age(sessions: SessionMaker, message_id: uuid.UUID, by: timedelta) -> None:
    async with sessions() as session, session.begin():
        await session.execute(
            update(Message)
            .where(col(Message.id) == message_id)
            .values(created_at=utcnow() - by, sent_at=utcnow() - by)
        )


async def _message(sessions: SessionMaker, message_id: uuid.UUID) -> Message:
    async with sessions() as session:
        row = await session.get(Message, message_id)
        assert row is not None
        return row


async def _wait_status(
    sessions: SessionMaker, message_id: uuid.UUID, wanted: MessageStatus, timeout: float = 30
) -> Message:
    deadline = asyncio.get_running_loop().time() + timeout
    while (row := await _message(sessions, message_id)).status != wanted:
        assert asyncio.get_running_loop().time() < deadline, f"still {row.status}"
        await asyncio.sleep(0.1)
    return row


async def _workflow_status(client: Client, message_id: uuid.UUID) -> WorkflowExecutionStatus | None:
    try:
        described = await client.get_workflow_handle(
            ids.send_message_id(str(message_id))
        ).describe()
    except RPCError as exc:
        assert exc.status == RPCStatusCode.NOT_FOUND, exc
        return None
    return described.status


async def _retrying(
    api: Api,
    x_admin: SandboxAdmin,
    sessions: SessionMaker,
    settings: Settings,
    temporal: Client,
    text: str,
) -> tuple[Thread, Message, WorkflowHandle[Any, SendMessageResult]]:
    """A message whose delivery runs and retries: X answers 503 until the test clears it."""
    shop = await connect_shop(api, x_admin)
    thread = await open_thread(sessions, x_admin, api.merchant.id, shop)
    path = f"/2/dm_conversations/with/{thread.customer.id}/messages"
    await x_admin.set_faults(error_rate=1.0, error_status=503, path_prefix=path)
    message = await queue_message(sessions, settings, shop, thread, text)
    handle = await start_delivery(temporal, settings, message)
    for _ in range(200):
        if any(r.status == 503 for r in await x_admin.requests(path_prefix=path)):
            return thread, message, handle
        await asyncio.sleep(0.05)
    raise AssertionError("the delivery never tried X")


async def _run_maintenance(client: Client, settings: Settings) -> MaintenanceResult:
    return await client.execute_workflow(
        MaintenanceWorkflow.run,
        MaintenanceInput(),
        id=f"maintenance-test-{uuid.uuid4().hex[:8]}",
        task_queue=settings.task_queue,
        execution_timeout=timedelta(seconds=60),
    )


async def test_a_message_left_queued_is_delivered_once_by_the_maintenance_workflow(
    api: Api,
    x_admin: SandboxAdmin,
    sessions: SessionMaker,
    settings: Settings,
    temporal_client: Client,
) -> None:
    shop = await connect_shop(api, x_admin)
    thread = await open_thread(sessions, x_admin, api.merchant.id, shop)
    stranded = await queue_message(sessions, settings, shop, thread, "Your order has shipped")
    await _age(sessions, stranded.id, timedelta(minutes=5))
    # Queued a moment ago: its sender may be about to start it, the sweep waits.
    fresh = await queue_message(sessions, settings, shop, thread, "Tracking number follows")

    result = await _run_maintenance(temporal_client, settings)

    assert result.outbound is not None and result.outbound.started >= 1
    assert result.webhook_events is not None
    sent = await _wait_status(sessions, stranded.id, MessageStatus.sent)
    [dm] = await x_admin.dms(recipient_id=thread.customer.id)
    assert dm.text == "Your order has shipped" and dm.id == sent.twitter_message_id
    assert await _workflow_status(temporal_client, fresh.id) is None
    assert (await _message(sessions, fresh.id)).status == MessageStatus.queued

    # Sent now: the next sweeps leave it be, and nothing reaches X twice.
    again = await sweep_queued(sessions, temporal_client, settings)
    assert again.errors == 0
    assert len(await x_admin.dms(recipient_id=thread.customer.id)) == 1
    shown = (await api.get(f"/conversations/{thread.id}")).json()["data"]["messages"]
    assert {m["content"]: m["status"] for m in shown} == {
        "Your order has shipped": "sent",
        "Tracking number follows": "queued",
    }


async def test_a_queued_message_whose_delivery_is_running_is_not_sent_twice(
    api: Api,
    x_admin: SandboxAdmin,
    sessions: SessionMaker,
    settings: Settings,
    temporal_client: Client,
) -> None:
    thread, message, handle = await _retrying(
        api, x_admin, sessions, settings, temporal_client, "X is down, retrying"
    )
    await _age(sessions, message.id, timedelta(minutes=5))
    run_id = (await handle.describe()).run_id

    report = await sweep_queued(sessions, temporal_client, settings)

    assert report.running >= 1 and report.errors == 0
    described = await handle.describe()
    assert described.run_id == run_id and described.status == WorkflowExecutionStatus.RUNNING
    await x_admin.clear_faults()
    result = await asyncio.wait_for(handle.result(), timeout=60)
    [dm] = await x_admin.dms(recipient_id=thread.customer.id)
    assert dm.text == "X is down, retrying" and dm.id == result.twitter_message_id
    assert (await _message(sessions, message.id)).status == MessageStatus.sent


async def test_a_delivery_stopped_before_x_confirmed_is_failed_not_resent(
    api: Api,
    x_admin: SandboxAdmin,
    sessions: SessionMaker,
    settings: Settings,
    temporal_client: Client,
) -> None:
    """An operator terminated the send while X was failing: whether X got it is unknown, and a
    new run would not look first, so the message fails (the agent may send it again)."""
    thread, message, handle = await _retrying(
        api, x_admin, sessions, settings, temporal_client, "never twice"
    )
    await handle.terminate("operator stopped it")
    await asyncio.sleep(1.5)  # an attempt already under way meets X down, too
    await x_admin.clear_faults()
    await _age(sessions, message.id, timedelta(minutes=5))

    report = await sweep_queued(sessions, temporal_client, settings)

    assert report.abandoned >= 1 and report.errors == 0
    row = await _message(sessions, message.id)
    assert row.status == MessageStatus.failed and row.error and "terminated" in row.error
    assert await _workflow_status(temporal_client, message.id) == WorkflowExecutionStatus.TERMINATED
    assert await x_admin.dms(recipient_id=thread.customer.id) == []
    shown = (await api.get(f"/conversations/{thread.id}")).json()["data"]["messages"]
    assert [(m["content"], m["status"]) for m in shown] == [("never twice", "failed")]


async def test_a_message_queued_longer_than_the_delivery_deadline_fails_unsent(
    api: Api,
    x_admin: SandboxAdmin,
    sessions: SessionMaker,
    settings: Settings,
    temporal_client: Client,
) -> None:
    shop = await connect_shop(api, x_admin)
    thread = await open_thread(sessions, x_admin, api.merchant.id, shop)
    message = await queue_message(sessions, settings, shop, thread, "yesterday's news")
    await _age(sessions, message.id, timedelta(hours=25))

    report = await sweep_queued(sessions, temporal_client, settings)

    assert report.expired >= 1
    row = await _message(sessions, message.id)
    assert row.status == MessageStatus.failed and row.error and "24 hours" in row.error
    assert await _workflow_status(temporal_client, message.id) is None
    assert await x_admin.dms(recipient_id=thread.customer.id) == []


async def test_a_campaigns_queued_dms_are_its_own_the_sweep_leaves_them(
    api: Api,
    x_admin: SandboxAdmin,
    sessions: SessionMaker,
    settings: Settings,
    temporal_client: Client,
) -> None:
    """A campaign's claimed DMs are delivered by its own batches (which look at X first): the
    sweep never gives them a delivery of their own, which could send one twice."""
    world = await make_world(api, x_admin, sessions, recipients=2)
    campaign = await world.campaign()
    campaign_id = uuid.UUID(campaign["id"])
    async with sessions() as session, session.begin():
        await session.execute(
            update(Campaign)
            .where(col(Campaign.id) == campaign_id)
            .values(status=CampaignStatus.running)
        )
        begun = await begin_occurrence(session, api.merchant.id, campaign_id, "sweep-test")
        assert begun is not None
        row = await session.get(Campaign, campaign_id)
        template = await session.get(Template, row.template_id if row else None)
        assert row is not None and template is not None
        claim = await claim_batch(
            session, settings, row, template, occurrence=begun.occurrence, room=2, now=utcnow()
        )
    assert len(claim.message_ids) == 2
    for message_id in claim.message_ids:
        await _age(sessions, message_id, timedelta(minutes=5))

    report = await sweep_queued(sessions, temporal_client, settings)

    assert report.errors == 0
    for message_id in claim.message_ids:
        assert await _workflow_status(temporal_client, message_id) is None
        assert (await _message(sessions, message_id)).status == MessageStatus.queued
    assert await x_admin.dms(sender_id=world.shop.id) == []
