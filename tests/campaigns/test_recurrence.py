"""A recurring campaign runs through a Temporal Schedule; each occurrence snapshots the segment
again (a contact added between occurrences is included in the next one)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from temporalio.client import Client

from models.campaign import Campaign
from models.contact import Contact
from models.db import SessionMaker
from sandbox.admin import SandboxAdmin
from tests.campaigns.conftest import dms_per_person, make_world, recipients
from tests.conftest import Api
from workflows import ids

pytestmark = pytest.mark.usefixtures("worker")


async def _occurrence_done(sessions: SessionMaker, campaign_id: str, occurrence: int) -> None:
    for _ in range(300):
        async with sessions() as session:
            row = await session.get(Campaign, uuid.UUID(campaign_id))
            assert row is not None
            if row.occurrences == occurrence and row.status == "scheduled":
                return
        await asyncio.sleep(0.1)
    raise AssertionError(f"occurrence {occurrence} did not finish")


async def test_weekly_recurrence_runs_occurrences_that_reevaluate_segments(
    api: Api, x_admin: SandboxAdmin, sessions: SessionMaker, temporal_client: Client
) -> None:
    world = await make_world(api, x_admin, sessions, recipients=2)
    campaign = await world.campaign(
        schedule={
            "recurrence": {
                "frequency": "weekly",
                "dayOfWeek": "monday",
                "time": "10:00",
                "timezone": "Asia/Ho_Chi_Minh",
            }
        }
    )
    assert (await world.start(campaign["id"]))["status"] == "scheduled"
    schedule = temporal_client.get_schedule_handle(ids.campaign_schedule_id(campaign["id"]))
    described = await schedule.describe()
    spec = described.schedule.spec
    assert spec.time_zone_name == "Asia/Ho_Chi_Minh"
    assert spec.calendars[0].hour[0].start == 10
    assert spec.calendars[0].day_of_week[0].start == 1

    await schedule.trigger()
    await _occurrence_done(sessions, campaign["id"], 1)
    assert await dms_per_person(x_admin, world) == {p.id: 1 for p in world.people}

    newcomer = await x_admin.create_user(f"new_{uuid.uuid4().hex[:8]}", name="Newcomer")
    async with sessions() as session, session.begin():
        session.add(
            Contact(
                merchant_id=api.merchant.id,
                account_id=uuid.UUID(world.account_id),
                twitter_user_id=newcomer.id,
                username=newcomer.username,
                display_name=newcomer.name,
                tags=[world.tag],
            )
        )
    # A Schedule's run ids end in the action time to the second: trigger in another second.
    await asyncio.sleep(1.1)
    await schedule.trigger()
    await _occurrence_done(sessions, campaign["id"], 2)
    counts = await dms_per_person(x_admin, world)
    assert counts == {**{p.id: 2 for p in world.people}, newcomer.id: 1}
    rows = await recipients(sessions, campaign["id"])
    assert sorted(r.occurrence for r in rows) == [1, 1, 2, 2, 2]
    moved = await api.put(
        f"/campaigns/{campaign['id']}",
        json={"schedule": {"recurrence": {"cron": "30 8 * * *", "timezone": "Europe/Paris"}}},
    )
    assert moved.status_code == 200, moved.text
    spec = (await schedule.describe()).schedule.spec
    # Temporal stores a cron expression as calendar entries.
    assert spec.time_zone_name == "Europe/Paris"
    assert spec.calendars[0].hour[0].start == 8 and spec.calendars[0].minute[0].start == 30
    one_off = await api.put(f"/campaigns/{campaign['id']}", json={"schedule": {"recurrence": None}})
    assert one_off.status_code == 422
    await schedule.delete()
