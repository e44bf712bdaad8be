"""The workflow's own life: continue-as-new carrying its counters without resending anyone,
the live progress Query, and a cancelled run leaving the campaign `cancelled`."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlmodel import col
from temporalio.client import Client, WorkflowExecutionStatus

from models.campaign import Campaign, CampaignStatus
from models.db import SessionMaker, utcnow
from sandbox.admin import SandboxAdmin
from tests.campaigns.conftest import dms_per_person, make_world
from tests.conftest import Api
from workflows import ids
from workflows.campaign import CampaignInput, CampaignWorkflow

pytestmark = pytest.mark.usefixtures("worker")


async def test_continue_as_new_carries_progress_and_sends_once(
    api: Api,
    x_admin: SandboxAdmin,
    sessions: SessionMaker,
    temporal_client: Client,
    settings: object,
) -> None:
    world = await make_world(api, x_admin, sessions, recipients=6)
    campaign = await world.campaign()
    campaign_id = uuid.UUID(campaign["id"])
    async with sessions() as session, session.begin():
        await session.execute(
            update(Campaign)
            .where(col(Campaign.id) == campaign_id)
            .values(status=CampaignStatus.running)
        )
    handle = await temporal_client.start_workflow(
        CampaignWorkflow.run,
        CampaignInput(
            merchant_id=api.merchant.id,
            campaign_id=campaign_id,
            batch_size=2,
            max_batches_per_run=1,
        ),
        id=ids.campaign_id(str(campaign_id)),
        task_queue=settings.task_queue,  # type: ignore[attr-defined]
    )
    progress = await asyncio.wait_for(handle.result(), timeout=30)
    assert progress.sent == 6 and progress.batches == 3 and progress.occurrence == 1
    first = temporal_client.get_workflow_handle(handle.id, run_id=handle.first_execution_run_id)
    assert (await first.describe()).status == WorkflowExecutionStatus.CONTINUED_AS_NEW
    assert await dms_per_person(x_admin, world) == {p.id: 1 for p in world.people}
    assert await world.status(campaign["id"]) == "completed"


async def test_progress_query_and_cancelled_run(
    api: Api, x_admin: SandboxAdmin, sessions: SessionMaker, temporal_client: Client
) -> None:
    world = await make_world(api, x_admin, sessions, recipients=1)
    later = utcnow() + timedelta(days=5)
    campaign = await world.campaign(schedule={"startAt": later.isoformat()})
    await world.start(campaign["id"])
    handle = temporal_client.get_workflow_handle_for(
        CampaignWorkflow.run, ids.campaign_id(campaign["id"])
    )
    progress = await handle.query(CampaignWorkflow.progress)
    assert progress.phase == "waiting" and progress.sent == 0
    await handle.cancel()
    await world.wait_status(campaign["id"], "cancelled")
    assert await dms_per_person(x_admin, world) == {}
