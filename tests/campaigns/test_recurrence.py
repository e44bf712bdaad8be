"""A recurring campaign runs through a Temporal Schedule; each occurrence snapshots the segment
again (a contact added between occurrences is included in the next one)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from temporalio.client import Client

from models.contact import Contact
from models.db import SessionMaker
from sandbox.admin import SandboxAdmin
from tests.campaigns.conftest import dms_per_person, make_world, occurrence_done, recipients
from tests.conftest import Api
from workflows import ids

pytestmark = pytest.mark.usefixtures("worker")


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
    await occurrence_done(sessions, campaign["id"], 1)
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
    await occurrence_done(sessions, campaign["id"], 2)
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


async def test_pausing_a_recurring_campaign_pauses_its_schedule_until_resumed(
    api: Api, x_admin: SandboxAdmin, sessions: SessionMaker, temporal_client: Client
) -> None:
    world = await make_world(api, x_admin, sessions, recipients=1)
    campaign = await world.campaign(
        schedule={"recurrence": {"frequency": "daily", "time": "09:00", "timezone": "UTC"}}
    )
    assert (await world.start(campaign["id"]))["status"] == "scheduled"
    schedule = temporal_client.get_schedule_handle(ids.campaign_schedule_id(campaign["id"]))

    # Between occurrences: nothing is sending, yet the merchant can stop the next ones.
    paused = await api.post(f"/campaigns/{campaign['id']}/pause")
    assert paused.status_code == 200, paused.text
    assert paused.json()["data"]["status"] == "paused"
    state = (await schedule.describe()).schedule.state
    assert state.paused and state.note and "paused by a user" in state.note
    again = await api.post(f"/campaigns/{campaign['id']}/pause")
    assert again.status_code == 400 and again.json()["details"]["status"] == "paused"

    resumed = await api.post(f"/campaigns/{campaign['id']}/resume")
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["data"]["status"] == "scheduled"
    assert not (await schedule.describe()).schedule.state.paused

    # Resumed, the next occurrence runs as usual.
    await schedule.trigger()
    await occurrence_done(sessions, campaign["id"], 1)
    assert await dms_per_person(x_admin, world) == {p.id: 1 for p in world.people}
    await schedule.delete()


async def test_a_one_off_scheduled_campaign_still_cannot_be_paused(
    api: Api, x_admin: SandboxAdmin, sessions: SessionMaker
) -> None:
    world = await make_world(api, x_admin, sessions, recipients=1)
    campaign = await world.campaign(schedule={"startAt": "2099-01-01T09:00:00Z"})
    assert (await world.start(campaign["id"]))["status"] == "scheduled"
    refused = await api.post(f"/campaigns/{campaign['id']}/pause")
    assert refused.status_code == 400
    assert refused.json()["details"]["status"] == "scheduled"
    assert "it must be running" in refused.json()["error"]
