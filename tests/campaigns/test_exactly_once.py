"""A worker process SIGKILLed mid-batch and started again: the sandbox's log shows exactly one
DM per recipient (sends whose outcome was unknown are found in X's DM events, not resent)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import update
from sqlmodel import col
from temporalio.client import Client

from models.campaign import Campaign, CampaignStatus, RecipientState
from models.db import SessionMaker
from sandbox.admin import SandboxAdmin
from tests.campaigns.conftest import WorkerProcess, dms_per_person, make_world, recipients
from tests.conftest import Api
from workflows import ids
from workflows.campaign import CampaignInput, CampaignWorkflow


@pytest.mark.usefixtures("worker")
async def test_worker_killed_mid_batch_sends_each_recipient_once(
    api: Api,
    x_admin: SandboxAdmin,
    sessions: SessionMaker,
    temporal_client: Client,
    worker_process: WorkerProcess,
) -> None:
    world = await make_world(api, x_admin, sessions, recipients=12)
    campaign = await world.campaign()
    campaign_id = uuid.UUID(campaign["id"])
    async with sessions() as session, session.begin():
        await session.execute(
            update(Campaign)
            .where(col(Campaign.id) == campaign_id)
            .values(status=CampaignStatus.running)
        )
    # Every call to X takes a while, so the kill lands with DMs in flight.
    await x_admin.set_faults(latency_ms=400, path_prefix="/2/dm_conversations")
    worker_process.start()
    handle = await temporal_client.start_workflow(
        CampaignWorkflow.run,
        CampaignInput(
            merchant_id=api.merchant.id,
            campaign_id=campaign_id,
            batch_size=6,
            concurrency=3,
            heartbeat_seconds=3,
        ),
        id=ids.campaign_id(str(campaign_id)),
        task_queue=worker_process.env["MKTX_TASK_QUEUE"],
    )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while sum((await dms_per_person(x_admin, world)).values()) < 2:
        assert loop.time() < deadline, "no DM went out"
        await asyncio.sleep(0.05)
    worker_process.kill()
    await asyncio.sleep(0.6)  # requests already at the sandbox land there
    before = await dms_per_person(x_admin, world)
    assert 0 < sum(before.values()) < 12
    # The batch's outcomes were never written: those DMs are `sending`, some already at X.
    states = [r.state for r in await recipients(sessions, campaign["id"])]
    assert states.count(RecipientState.sending) > 0

    worker_process.start()
    await asyncio.wait_for(handle.result(), timeout=60)
    assert await dms_per_person(x_admin, world) == {p.id: 1 for p in world.people}
    rows = await recipients(sessions, campaign["id"])
    assert all(r.state == "sent" and r.dm_event_id for r in rows)
    assert len({r.dm_event_id for r in rows}) == 12
    assert await world.status(campaign["id"]) == "completed"
    # The retry looked at X's DM events for the unknown outcomes before sending anything.
    logged = await x_admin.requests(path_prefix="/2/dm_conversations", user_id=world.shop.id)
    assert any(r.method == "GET" and r.path.endswith("/dm_events") for r in logged)
