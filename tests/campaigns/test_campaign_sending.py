"""Campaigns against the real worker, Temporal dev server and sandbox: every recipient gets
exactly one DM; X's refusals, rate limits, outages and revoked tokens; pause/resume; endAt;
reschedule; tracked links and metrics; test sends."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import httpx
import pytest
from sqlmodel import col, select

from models.account import XAccount
from models.campaign import CampaignTestSend
from models.contact import Contact
from models.db import SessionMaker, utcnow
from sandbox.admin import LoggedRequest, SandboxAdmin
from services.campaigns.links import REDIRECT_PREFIX
from tests.campaigns.conftest import dms_per_person, make_world, recipients
from tests.conftest import Api
from tests.webhooks.conftest import eventually

pytestmark = pytest.mark.usefixtures("worker")


async def test_sends_each_recipient_exactly_once_with_tracked_links(
    api: Api, x_admin: SandboxAdmin, sessions: SessionMaker, app_client: httpx.AsyncClient
) -> None:
    world = await make_world(api, x_admin, sessions, recipients=5)
    # One contact opted out (never snapshotted), one lacks the template's attribute... the
    # template here only needs name/shop, so use a second template for the missing-variable case.
    async with sessions() as session, session.begin():
        opted = await session.get(Contact, world.contact_ids[0])
        assert opted is not None
        opted.opted_out = True
        session.add(opted)
    campaign = await world.campaign()
    assert campaign["status"] == "draft"
    started = await world.start(campaign["id"])
    assert started["status"] == "running"
    await world.wait_status(campaign["id"], "completed")

    counts = await dms_per_person(x_admin, world)
    expected = {p.id: 1 for p in world.people[1:]}
    assert counts == expected
    rows = await recipients(sessions, campaign["id"])
    assert len(rows) == 4 and all(r.state == "sent" and r.dm_event_id for r in rows)

    dms = await x_admin.dms(sender_id=world.shop.id)
    text = dms[0].text
    assert "https://shop.example/deal" not in text and REDIRECT_PREFIX in text
    assert "{{" not in text and "GoodGo" in text
    path = text[text.index(REDIRECT_PREFIX) :].split()[0]
    for _ in range(2):  # counted once per recipient
        click = await app_client.get(path)
        assert click.status_code == 302
        assert click.headers["location"] == "https://shop.example/deal"

    metrics = (await api.get(f"/campaigns/{campaign['id']}/metrics")).json()["data"]
    assert metrics["live"] is None  # completed: no run to ask
    assert metrics["totalSent"] == 4
    assert metrics["delivered"] == 4
    assert metrics["failed"] == 0
    assert metrics["clicked"] == 1
    assert metrics["deliveryRate"] == 1.0
    assert metrics["clickRate"] == 0.25
    assert sum(b["sent"] for b in metrics["timeline"]) == 4
    listed = (await api.get("/campaigns", params={"status": "completed"})).json()
    assert [c["id"] for c in listed["data"]] == [campaign["id"]]
    assert listed["data"][0]["metrics"]["delivered"] == 4


async def test_missing_variable_and_refusing_recipient_fail_with_reasons(
    api: Api, x_admin: SandboxAdmin, sessions: SessionMaker
) -> None:
    world = await make_world(
        api, x_admin, sessions, recipients=3, content="Hi {{name}}, your code {{attributes.code}}"
    )
    async with sessions() as session, session.begin():
        for contact_id in world.contact_ids[:2]:
            contact = await session.get(Contact, contact_id)
            assert contact is not None
            contact.attributes = {"code": "X1"}
            session.add(contact)
    await x_admin.set_accepts_dms(world.people[1].id, False)  # X answers 403
    campaign = await world.campaign()
    await world.start(campaign["id"])
    await world.wait_status(campaign["id"], "completed")

    by_contact = {r.contact_id: r for r in await recipients(sessions, campaign["id"])}
    assert by_contact[world.contact_ids[0]].state == "sent"
    refused = by_contact[world.contact_ids[1]]
    assert refused.state == "failed" and refused.error
    missing = by_contact[world.contact_ids[2]]
    assert missing.state == "failed"
    assert missing.error == "no value for template variable 'attributes.code'"
    assert await dms_per_person(x_admin, world) == {world.people[0].id: 1}
    metrics = (await api.get(f"/campaigns/{campaign['id']}/metrics")).json()["data"]
    assert (metrics["totalSent"], metrics["delivered"], metrics["failed"]) == (3, 1, 2)


@pytest.mark.usefixtures("small_batches")
async def test_pause_mid_send_then_resume(
    api: Api, x_admin: SandboxAdmin, sessions: SessionMaker
) -> None:
    world = await make_world(api, x_admin, sessions, recipients=10)
    await x_admin.set_faults(latency_ms=150, path_prefix="/2/dm_conversations")
    campaign = await world.campaign()
    await world.start(campaign["id"])
    while not await dms_per_person(x_admin, world):
        await asyncio.sleep(0.05)
    paused = await api.post(f"/campaigns/{campaign['id']}/pause")
    assert paused.status_code == 200, paused.text
    assert paused.json()["data"]["status"] == "paused"
    again = await api.post(f"/campaigns/{campaign['id']}/pause")
    assert again.status_code == 400 and "paused" in again.json()["error"]
    await asyncio.sleep(0.6)  # the batch in flight settles
    settled = sum((await dms_per_person(x_admin, world)).values())
    await asyncio.sleep(0.6)
    assert sum((await dms_per_person(x_admin, world)).values()) == settled < 10
    live = (await api.get(f"/campaigns/{campaign['id']}/metrics")).json()["data"]["live"]
    assert live["paused"] is True and live["phase"] == "sending" and live["status"] == "paused"

    resumed = await api.post(f"/campaigns/{campaign['id']}/resume")
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["data"]["status"] == "running"
    await world.wait_status(campaign["id"], "completed")
    assert await dms_per_person(x_admin, world) == {p.id: 1 for p in world.people}


@pytest.mark.usefixtures("small_batches")
async def test_rate_limit_bursts_and_outages_still_send_once(
    api: Api, x_admin: SandboxAdmin, sessions: SessionMaker
) -> None:
    world = await make_world(api, x_admin, sessions, recipients=6)
    dms = "/2/dm_conversations"

    async def served(status: int) -> list[LoggedRequest]:
        """What the sandbox answered this shop's DM calls with `status`, as a fault."""
        answered = await x_admin.requests(path_prefix=dms, user_id=world.shop.id)
        return [r for r in answered if r.status == status and r.fault]

    await x_admin.set_faults(
        burst429=2, retry_after_seconds=1, path_prefix=dms, user_id=world.shop.id
    )
    campaign = await world.campaign()
    await world.start(campaign["id"])
    # X's burst of 429s was served to the campaign, then an outage (every call 503) is.
    limited = await eventually(lambda: served(429), lambda rs: len(rs) >= 2, 30)
    await x_admin.set_faults(
        error_rate=1.0, error_status=503, path_prefix=dms, user_id=world.shop.id
    )
    outage = await eventually(lambda: served(503), lambda rs: len(rs) >= 2, 30)
    await x_admin.clear_faults()
    await world.wait_status(campaign["id"], "completed", timeout=45)

    assert len(limited) == 2 and len(outage) >= 2
    assert await dms_per_person(x_admin, world) == {p.id: 1 for p in world.people}
    assert all(r.state == "sent" for r in await recipients(sessions, campaign["id"]))


async def test_revoked_token_pauses_the_campaign_with_the_reason(
    api: Api, x_admin: SandboxAdmin, sessions: SessionMaker
) -> None:
    world = await make_world(api, x_admin, sessions, recipients=2)
    await x_admin.revoke(world.shop.access_token)
    campaign = await world.campaign()
    await world.start(campaign["id"])
    await world.wait_status(campaign["id"], "paused")
    data = (await api.get(f"/campaigns/{campaign['id']}")).json()["data"]
    assert "token" in data["statusReason"]
    async with sessions() as session:
        account = await session.get(XAccount, uuid.UUID(world.account_id))
        assert account is not None and account.status == "error"
    assert all(r.state == "queued" for r in await recipients(sessions, campaign["id"]))
    assert await dms_per_person(x_admin, world) == {}


async def test_scheduled_campaign_waits_and_a_reschedule_takes_effect(
    api: Api, x_admin: SandboxAdmin, sessions: SessionMaker
) -> None:
    world = await make_world(api, x_admin, sessions, recipients=2)
    later = utcnow() + timedelta(days=30)
    campaign = await world.campaign(schedule={"startAt": later.isoformat()})
    started = await world.start(campaign["id"])
    assert started["status"] == "scheduled"
    await asyncio.sleep(0.5)
    assert await dms_per_person(x_admin, world) == {}
    soon = utcnow() + timedelta(seconds=1)
    moved = await api.put(
        f"/campaigns/{campaign['id']}", json={"schedule": {"startAt": soon.isoformat()}}
    )
    assert moved.status_code == 200, moved.text
    await world.wait_status(campaign["id"], "completed")
    assert await dms_per_person(x_admin, world) == {p.id: 1 for p in world.people}


@pytest.mark.usefixtures("small_batches")
async def test_end_at_skips_the_remaining_recipients(
    api: Api, x_admin: SandboxAdmin, sessions: SessionMaker
) -> None:
    world = await make_world(api, x_admin, sessions, recipients=8)
    await x_admin.set_faults(latency_ms=300, path_prefix="/2/dm_conversations")
    end = utcnow() + timedelta(seconds=1)
    campaign = await world.campaign(schedule={"endAt": end.isoformat()})
    await world.start(campaign["id"])
    await world.wait_status(campaign["id"], "completed")
    rows = await recipients(sessions, campaign["id"])
    skipped = [r for r in rows if r.state == "skipped"]
    sent = [r for r in rows if r.state == "sent"]
    assert skipped and sent and len(skipped) + len(sent) == 8
    assert sum((await dms_per_person(x_admin, world)).values()) == len(sent)
    metrics = (await api.get(f"/campaigns/{campaign['id']}/metrics")).json()["data"]
    assert metrics["skipped"] == len(skipped)


async def test_test_send_in_draft_is_not_counted(
    api: Api, x_admin: SandboxAdmin, sessions: SessionMaker
) -> None:
    world = await make_world(
        api, x_admin, sessions, recipients=2, content="Code {{code}} for {{name}}"
    )
    campaign = await world.campaign()
    response = await api.post(
        f"/campaigns/{campaign['id']}/test",
        json={"contactIds": [str(world.contact_ids[0])], "variables": {"code": "TEST10"}},
    )
    assert response.status_code == 200, response.text
    [result] = response.json()["data"]
    assert result["status"] == "sent" and result["dmEventId"]
    assert result["rendered"] == "Code TEST10 for Person 0"
    dms = await x_admin.dms(sender_id=world.shop.id)
    assert [d.text for d in dms] == ["Code TEST10 for Person 0"]
    missing = await api.post(
        f"/campaigns/{campaign['id']}/test", json={"contactIds": [str(world.contact_ids[1])]}
    )
    assert missing.json()["data"][0]["status"] == "failed"
    assert "code" in missing.json()["data"][0]["error"]
    assert (await world.status(campaign["id"])) == "draft"
    metrics = (await api.get(f"/campaigns/{campaign['id']}/metrics")).json()["data"]
    assert metrics["totalSent"] == 0
    async with sessions() as session:
        tests = (
            await session.exec(
                select(CampaignTestSend).where(
                    col(CampaignTestSend.campaign_id) == uuid.UUID(campaign["id"])
                )
            )
        ).all()
        assert len(tests) == 2
