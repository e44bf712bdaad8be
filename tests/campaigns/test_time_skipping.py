"""Long timers on Temporal's time-skipping test server: a startAt days ahead, and a campaign
quota spent mid-campaign that frees up a day later, with the real workflow and activities."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlmodel import col, select

from models.campaign import Campaign, CampaignRecipient, CampaignStatus
from models.contact import Contact
from models.db import SessionMaker, utcnow
from models.quota import SendReservation
from sandbox.admin import SandboxAdmin
from tests.campaigns.conftest import (
    SKIPPING_CAMPAIGN_QUOTA,
    SkippingTemporal,
    dms_per_person,
    make_world,
    recipients,
)
from tests.conftest import Api
from workflows import ids
from workflows.campaign import CampaignInput, CampaignWorkflow

pytestmark = pytest.mark.usefixtures("worker")


async def test_start_days_ahead_then_quota_spent_and_resumed_a_day_later(
    api: Api, x_admin: SandboxAdmin, sessions: SessionMaker, time_skipping: SkippingTemporal
) -> None:
    world = await make_world(api, x_admin, sessions, recipients=5)
    campaign = await world.campaign()
    campaign_id = uuid.UUID(campaign["id"])
    async with sessions() as session, session.begin():
        await session.execute(
            update(Campaign)
            .where(col(Campaign.id) == campaign_id)
            .values(status=CampaignStatus.scheduled)
        )
    start_at = utcnow() + timedelta(days=2)
    handle = await time_skipping.client.start_workflow(
        CampaignWorkflow.run,
        CampaignInput(merchant_id=api.merchant.id, campaign_id=campaign_id, start_at=start_at),
        id=ids.campaign_id(str(campaign_id)),
        task_queue=time_skipping.task_queue,
    )
    progress = await handle.result()

    assert progress.sent == 5 and progress.batches >= 2
    assert await dms_per_person(x_admin, world) == {p.id: 1 for p in world.people}
    async with sessions() as session:
        reserved = (
            await session.exec(
                select(SendReservation.reserved_at).where(
                    col(SendReservation.account_id) == uuid.UUID(world.account_id)
                )
            )
        ).all()
    moments = sorted(set(reserved))
    assert len(reserved) == 5 and len(moments) == 2
    assert moments[0] >= start_at  # nothing before startAt
    # The first three used the quota; the rest went out when it freed, a day later.
    assert sum(1 for m in reserved if m == moments[0]) == SKIPPING_CAMPAIGN_QUOTA
    assert moments[1] - moments[0] >= timedelta(hours=24)
    assert all(r.state == "sent" for r in await recipients(sessions, campaign["id"]))
    assert await world.status(campaign["id"]) == "completed"


async def test_a_spent_account_does_not_hold_back_another_accounts_recipients(
    api: Api, x_admin: SandboxAdmin, sessions: SessionMaker, time_skipping: SkippingTemporal
) -> None:
    world = await make_world(api, x_admin, sessions, recipients=5)
    other_shop = await x_admin.create_user(f"shop2_{uuid.uuid4().hex[:8]}", name="Shop 2")
    response = await api.post(
        "/accounts",
        json={
            "oauthToken": other_shop.access_token,
            "oauthTokenSecret": other_shop.access_token_secret,
        },
    )
    other_account = uuid.UUID(response.json()["data"]["id"])
    others = [await x_admin.create_user(f"o{i}_{uuid.uuid4().hex[:8]}") for i in range(2)]
    async with sessions() as session, session.begin():
        for person in others:
            session.add(
                Contact(
                    merchant_id=api.merchant.id,
                    account_id=other_account,
                    twitter_user_id=person.id,
                    username=person.username,
                    tags=[world.tag],
                )
            )
    campaign = await world.campaign()
    campaign_id = uuid.UUID(campaign["id"])
    async with sessions() as session, session.begin():
        await session.execute(
            update(Campaign)
            .where(col(Campaign.id) == campaign_id)
            .values(status=CampaignStatus.running)
        )
    handle = await time_skipping.client.start_workflow(
        CampaignWorkflow.run,
        CampaignInput(merchant_id=api.merchant.id, campaign_id=campaign_id, batch_size=2),
        id=ids.campaign_id(str(campaign_id)),
        task_queue=time_skipping.task_queue,
    )
    progress = await handle.result()
    assert progress.sent == 7
    async with sessions() as session:
        rows = (
            await session.exec(
                select(SendReservation.account_id, SendReservation.reserved_at).where(
                    col(SendReservation.message_id).in_(
                        select(CampaignRecipient.message_id).where(
                            col(CampaignRecipient.campaign_id) == campaign_id
                        )
                    )
                )
            )
        ).all()
    first_day = min(at for _, at in rows)
    late = [account for account, at in rows if at - first_day >= timedelta(hours=24)]
    # Only the first account's last two waited for its quota; the other account's went at once.
    assert sorted(str(a) for a in late) == [world.account_id] * 2
    assert sum(1 for account, _ in rows if account == other_account) == 2
    assert await dms_per_person(x_admin, world) == {p.id: 1 for p in world.people}
    to_others = [dm.recipient_id for dm in await x_admin.dms(sender_id=other_shop.id)]
    assert sorted(to_others) == sorted(p.id for p in others)
