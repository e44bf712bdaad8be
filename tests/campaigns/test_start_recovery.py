"""A campaign started (or rescheduled) while Temporal is away: the API answers as on success,
the start is kept in the campaign's row, and the maintenance schedule carries it out once
Temporal is back; carried out again, it starts nothing twice. Each test runs its own Temporal
(stopped and started again) with its own worker and API."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update
from sqlmodel import col
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from mktx.settings import Settings
from models.campaign import Campaign
from models.db import SessionMaker, utcnow
from sandbox.admin import SandboxAdmin
from tests.campaigns.conftest import World, dms_per_person, make_world
from tests.conftest import Merchant
from tests.stoppable_temporal import PAST_GRACE, OwnStack, own_stack
from workflows import ids
from workflows.campaign import CampaignWorkflow


@pytest.fixture
async def stack(
    settings: Settings, sessions: SessionMaker, merchant: Merchant, tmp_path: Path
) -> AsyncIterator[OwnStack]:
    async with own_stack(settings, sessions, merchant, tmp_path) as stack:
        yield stack


async def _row(sessions: SessionMaker, campaign_id: str) -> Campaign:
    async with sessions() as session:
        row = await session.get(Campaign, uuid.UUID(campaign_id))
        assert row is not None
        return row


async def _date_back(sessions: SessionMaker, campaign_id: str, **values: Any) -> None:
    """Make the campaign's unsynced state older than the grace (and set `values`)."""
    async with sessions() as session, session.begin():
        await session.execute(
            update(Campaign)
            .where(col(Campaign.id) == uuid.UUID(campaign_id))
            .values(updated_at=utcnow() - PAST_GRACE, **values)
        )


async def _runs(client: Client, campaign_id: str) -> list[str]:
    """The run ids of the campaign's workflow (one, unless something started it twice)."""
    query = f'WorkflowId = "{ids.campaign_id(campaign_id)}"'
    return [execution.run_id async for execution in client.list_workflows(query)]


async def _no_workflow(client: Client, campaign_id: str) -> bool:
    try:
        await client.get_workflow_handle(ids.campaign_id(campaign_id)).describe()
    except RPCError as exc:
        return exc.status == RPCStatusCode.NOT_FOUND
    return False


async def test_a_campaign_started_while_temporal_is_stopped_sends_once_it_is_back(
    stack: OwnStack, x_admin: SandboxAdmin, sessions: SessionMaker
) -> None:
    world = await make_world(stack.api, x_admin, sessions, recipients=3)
    campaign = await world.campaign()
    await stack.stop_temporal()

    response = await stack.api.post(f"/campaigns/{campaign['id']}/start")

    # The answer a start always gave: the campaign, running.
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True and body["data"]["id"] == campaign["id"]
    assert body["data"]["status"] == "running" and body["data"]["startedAt"] is not None
    row = await _row(sessions, campaign["id"])
    assert row.status == "running" and row.temporal_synced_at is None
    assert await world.status(campaign["id"]) == "running"
    # Started again while it waits: 409, as for any started campaign.
    assert (await stack.api.post(f"/campaigns/{campaign['id']}/start")).status_code == 409

    await stack.start_temporal()
    # Still within the grace: the request that accepted it could be at it; left alone.
    first = await stack.maintenance()
    assert first.owed_starts is not None and first.owed_starts.campaigns.errors == 0
    assert await _no_workflow(stack.client, campaign["id"])

    await _date_back(sessions, campaign["id"])
    second = await stack.maintenance()
    assert second.owed_starts is not None and second.owed_starts.campaigns.started >= 1
    await world.wait_status(campaign["id"], "completed")
    assert await dms_per_person(x_admin, world) == {p.id: 1 for p in world.people}
    assert (await _row(sessions, campaign["id"])).temporal_synced_at is not None

    # Once more, and as if the process had died before recording the start: nothing again.
    await stack.maintenance()
    await _date_back(sessions, campaign["id"], temporal_synced_at=None, status="running")
    again = await stack.maintenance()
    assert again.owed_starts is not None and again.owed_starts.campaigns.existing >= 1
    assert len(await _runs(stack.client, campaign["id"])) == 1
    await asyncio.sleep(0.5)
    assert await dms_per_person(x_admin, world) == {p.id: 1 for p in world.people}
    assert (await _row(sessions, campaign["id"])).temporal_synced_at is not None


async def test_a_new_start_time_given_while_temporal_is_stopped_reaches_the_waiting_run(
    stack: OwnStack, x_admin: SandboxAdmin, sessions: SessionMaker
) -> None:
    world = await make_world(stack.api, x_admin, sessions, recipients=2)
    later = (utcnow() + timedelta(days=3)).isoformat()
    campaign = await world.campaign(schedule={"startAt": later})
    assert (await world.start(campaign["id"]))["status"] == "scheduled"
    handle = stack.client.get_workflow_handle_for(
        CampaignWorkflow.run, ids.campaign_id(campaign["id"])
    )
    assert (await handle.query(CampaignWorkflow.progress)).phase == "waiting"
    run_id = (await handle.describe()).run_id
    await stack.stop_temporal()

    moved = await stack.api.put(
        f"/campaigns/{campaign['id']}", json={"schedule": {"startAt": None}}
    )

    assert moved.status_code == 200, moved.text
    assert moved.json()["data"]["schedule"]["startAt"] is None
    assert (await _row(sessions, campaign["id"])).temporal_synced_at is None
    await stack.start_temporal()
    await _date_back(sessions, campaign["id"])
    result = await stack.maintenance()
    assert result.owed_starts is not None and result.owed_starts.campaigns.existing >= 1
    # The waiting run was told (no second run): it begins now and sends.
    await world.wait_status(campaign["id"], "completed")
    assert await dms_per_person(x_admin, world) == {p.id: 1 for p in world.people}
    assert await _runs(stack.client, campaign["id"]) == [run_id]


async def test_a_start_temporal_refuses_answers_503_and_leaves_a_draft(
    stack: OwnStack, x_admin: SandboxAdmin, sessions: SessionMaker
) -> None:
    world: World = await make_world(stack.api, x_admin, sessions, recipients=1)
    campaign = await world.campaign(
        schedule={"recurrence": {"cron": "0 9 * * 1", "timezone": "Nowhere/Atlantis"}}
    )

    response = await stack.api.post(f"/campaigns/{campaign['id']}/start")

    assert response.status_code == 503, response.text
    assert response.json()["code"] == "SERVICE_UNAVAILABLE"
    assert await world.status(campaign["id"]) == "draft"
