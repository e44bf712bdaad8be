"""A card template's media goes to X as an uploaded media attached to every recipient's DM:
uploaded once per occurrence and account (again only when X stops taking the id), never sent
without it. Media that cannot be had pauses the campaign with the reason; test sends fail with
it. Media is served by the sandbox (`/_sandbox/media/{name}`), the uploads and DMs are read
from the sandbox's logs."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from typing import Any

import pytest
from temporalio.client import Client

from models.db import SessionMaker
from sandbox.admin import ReceivedDM, SandboxAdmin
from sandbox.media import sample_media
from services.campaigns.links import REDIRECT_PREFIX
from services.messaging.quota import quota_usage
from tests.campaigns.conftest import (
    World,
    dms_per_person,
    make_world,
    occurrence_done,
    recipients,
)
from tests.conftest import Api
from workflows import ids

pytestmark = pytest.mark.usefixtures("worker")

IMAGE_SIZE = 40_000
UNREACHABLE = "http://127.0.0.1:9/promo.png"  # nothing listens on the discard port


def digest(name: str, media_type: str = "image/png", size: int = IMAGE_SIZE) -> str:
    return hashlib.sha256(sample_media(name, media_type, size)).hexdigest()


async def card_world(
    api: Api, x_admin: SandboxAdmin, sessions: SessionMaker, media_url: str, recipients: int
) -> World:
    world = await make_world(api, x_admin, sessions, recipients=recipients)
    template = await api.post(
        "/templates",
        json={
            "name": "Card",
            "type": "card",
            "content": "Hi {{name}}, {{shop}} has new shoes",
            "card": {"linkUrl": "https://shop.example/shoes", "mediaUrl": media_url},
        },
    )
    assert template.status_code == 200, template.text
    world.template_id = template.json()["data"]["id"]
    return world


async def campaign_dms(x_admin: SandboxAdmin, world: World) -> list[ReceivedDM]:
    return await x_admin.dms(sender_id=world.shop.id)


async def get_campaign(api: Api, campaign_id: str) -> dict[str, Any]:
    response = await api.get(f"/campaigns/{campaign_id}")
    assert response.status_code == 200, response.text
    return dict(response.json()["data"])


@pytest.mark.usefixtures("small_batches")
async def test_every_recipient_gets_the_image_from_one_upload_per_occurrence(
    api: Api, x_admin: SandboxAdmin, sessions: SessionMaker
) -> None:
    url = x_admin.media_url("shoes.png", size=IMAGE_SIZE)
    world = await card_world(api, x_admin, sessions, url, recipients=5)  # 3 batches of <= 2
    campaign = await world.campaign()
    await world.start(campaign["id"])
    await world.wait_status(campaign["id"], "completed")

    [upload] = await x_admin.uploads(user_id=world.shop.id)
    assert (upload.category, upload.shared, upload.state) == ("dm_image", True, "succeeded")
    assert upload.sha256 == digest("shoes.png") and upload.dm_uses == 5
    dms = await campaign_dms(x_admin, world)
    assert sorted(dm.recipient_id for dm in dms) == sorted(p.id for p in world.people)
    for dm in dms:
        assert dm.media is not None
        assert (dm.media.media_id, dm.media.media_type) == (upload.id, "image/png")
        assert dm.media.sha256 == digest("shoes.png")
        assert REDIRECT_PREFIX in dm.text and "shoes.png" not in dm.text  # media, not a link
    initializations = await x_admin.requests("/2/media/upload/initialize", user_id=world.shop.id)
    assert len(initializations) == 1
    assert all(r.state == "sent" for r in await recipients(sessions, campaign["id"]))
    # The inbox shows the image with each campaign DM.
    conversations = (await api.get(f"/contacts/{world.contact_ids[0]}/conversations")).json()[
        "data"
    ]
    detail = (await api.get(f"/conversations/{conversations[0]['id']}")).json()["data"]
    [message] = detail["messages"]
    assert message["attachments"] == [{"type": "image", "url": url}]


async def test_each_occurrence_of_a_recurring_card_campaign_uploads_once(
    api: Api, x_admin: SandboxAdmin, sessions: SessionMaker, temporal_client: Client
) -> None:
    url = x_admin.media_url("weekly.gif", size=20_000)
    world = await card_world(api, x_admin, sessions, url, recipients=2)
    campaign = await world.campaign(
        schedule={
            "recurrence": {
                "frequency": "weekly",
                "dayOfWeek": "monday",
                "time": "10:00",
                "timezone": "UTC",
            }
        }
    )
    await world.start(campaign["id"])
    schedule = temporal_client.get_schedule_handle(ids.campaign_schedule_id(campaign["id"]))
    for occurrence in (1, 2):
        await schedule.trigger()
        await occurrence_done(sessions, campaign["id"], occurrence)
        await asyncio.sleep(1.1)  # a Schedule's run ids end in the action time to the second

    uploads = await x_admin.uploads(user_id=world.shop.id)
    assert len(uploads) == 2 and {u.category for u in uploads} == {"dm_gif"}
    dms = await campaign_dms(x_admin, world)
    assert len(dms) == 4
    for upload in uploads:  # each occurrence's DMs carry that occurrence's upload
        assert sorted(
            dm.recipient_id for dm in dms if dm.media and dm.media.media_id == upload.id
        ) == sorted(p.id for p in world.people)


async def test_unreachable_media_pauses_the_campaign_and_sends_nothing(
    api: Api, x_admin: SandboxAdmin, sessions: SessionMaker
) -> None:
    world = await card_world(api, x_admin, sessions, UNREACHABLE, recipients=3)
    campaign = await world.campaign()
    await world.start(campaign["id"])
    await world.wait_status(campaign["id"], "paused")

    data = await get_campaign(api, campaign["id"])
    assert data["statusReason"].startswith("the card's media cannot be sent: ")
    assert UNREACHABLE in data["statusReason"] and "could not be reached" in data["statusReason"]
    assert await dms_per_person(x_admin, world) == {}
    assert await x_admin.uploads(user_id=world.shop.id) == []
    assert all(r.state == "queued" for r in await recipients(sessions, campaign["id"]))
    async with sessions() as session:  # the slots claimed for the batch were given back
        assert await quota_usage(session, uuid.UUID(world.account_id)) == 0
    live = (await api.get(f"/campaigns/{campaign['id']}/metrics")).json()["data"]["live"]
    assert live["paused"] is True and live["status"] == "paused"


async def test_media_host_down_pauses_then_resume_sends_with_the_image(
    api: Api, x_admin: SandboxAdmin, sessions: SessionMaker
) -> None:
    url = x_admin.media_url("comeback.jpg", size=IMAGE_SIZE)
    await x_admin.set_media_status("comeback.jpg", 503)
    try:
        world = await card_world(api, x_admin, sessions, url, recipients=3)
        campaign = await world.campaign()
        await world.start(campaign["id"])
        await world.wait_status(campaign["id"], "paused")
        reason = (await get_campaign(api, campaign["id"]))["statusReason"]
        assert reason == f"the card's media cannot be sent: {url} answered HTTP 503"
        assert await dms_per_person(x_admin, world) == {}
    finally:
        await x_admin.set_media_status("comeback.jpg", None)

    resumed = await api.post(f"/campaigns/{campaign['id']}/resume")
    assert resumed.status_code == 200, resumed.text
    await world.wait_status(campaign["id"], "completed")
    dms = await campaign_dms(x_admin, world)
    assert len(dms) == 3
    assert {dm.media.sha256 if dm.media else None for dm in dms} == {
        digest("comeback.jpg", "image/jpeg")
    }
    assert (await get_campaign(api, campaign["id"]))["statusReason"] is None


async def test_media_over_xs_limit_pauses_before_anything_is_uploaded(
    api: Api, x_admin: SandboxAdmin, sessions: SessionMaker
) -> None:
    url = x_admin.media_url("huge.png", size=5 * 1024 * 1024 + 1)
    world = await card_world(api, x_admin, sessions, url, recipients=1)
    campaign = await world.campaign()
    await world.start(campaign["id"])
    await world.wait_status(campaign["id"], "paused")
    reason = (await get_campaign(api, campaign["id"]))["statusReason"]
    assert "5242881 bytes; X attaches images of up to 5 MB" in reason
    assert await x_admin.uploads(user_id=world.shop.id) == []
    assert await dms_per_person(x_admin, world) == {}


@pytest.mark.usefixtures("small_batches")
async def test_upload_rate_limits_wait_and_still_upload_once(
    api: Api, x_admin: SandboxAdmin, sessions: SessionMaker
) -> None:
    url = x_admin.media_url("limited.png", size=IMAGE_SIZE)
    world = await card_world(api, x_admin, sessions, url, recipients=4)
    await x_admin.set_faults(
        burst429=2, retry_after_seconds=1, path_prefix="/2/media/upload/initialize"
    )
    campaign = await world.campaign()
    await world.start(campaign["id"])
    await world.wait_status(campaign["id"], "completed", timeout=45)

    limited = [r for r in await x_admin.requests("/2/media") if r.fault == "burst429"]
    assert len(limited) == 2
    [upload] = await x_admin.uploads(user_id=world.shop.id)
    dms = await campaign_dms(x_admin, world)
    assert len(dms) == 4 and {dm.media.media_id if dm.media else None for dm in dms} == {upload.id}


@pytest.mark.usefixtures("small_batches")
async def test_a_media_id_x_stops_taking_is_uploaded_again(
    api: Api, x_admin: SandboxAdmin, sessions: SessionMaker
) -> None:
    url = x_admin.media_url("expiring.png", size=IMAGE_SIZE)
    world = await card_world(api, x_admin, sessions, url, recipients=6)
    await x_admin.set_faults(latency_ms=200, path_prefix="/2/dm_conversations")
    campaign = await world.campaign()
    await world.start(campaign["id"])
    while len(await campaign_dms(x_admin, world)) < 2:  # the first batch went out
        await asyncio.sleep(0.02)
    [first] = await x_admin.uploads(user_id=world.shop.id)
    await x_admin.expire_media(first.id)  # X forgets it early (as after its 24 h)
    await x_admin.clear_faults()
    await world.wait_status(campaign["id"], "completed")

    uploads = await x_admin.uploads(user_id=world.shop.id)
    assert len(uploads) == 2
    assert await dms_per_person(x_admin, world) == {p.id: 1 for p in world.people}
    used = {dm.media.media_id for dm in await campaign_dms(x_admin, world) if dm.media}
    assert used == {u.id for u in uploads}
    rows = await recipients(sessions, campaign["id"])
    assert all(r.state == "sent" for r in rows)


async def test_test_sends_attach_the_media_or_fail_with_the_reason(
    api: Api, x_admin: SandboxAdmin, sessions: SessionMaker
) -> None:
    url = x_admin.media_url("try.webp", size=IMAGE_SIZE)
    world = await card_world(api, x_admin, sessions, url, recipients=2)
    campaign = await world.campaign()
    response = await api.post(
        f"/campaigns/{campaign['id']}/test",
        json={"contactIds": [str(c) for c in world.contact_ids]},
    )
    assert response.status_code == 200, response.text
    results = response.json()["data"]
    assert [r["status"] for r in results] == ["sent", "sent"]
    dms = await campaign_dms(x_admin, world)
    assert {dm.media.sha256 if dm.media else None for dm in dms} == {
        digest("try.webp", "image/webp")
    }
    assert len(await x_admin.uploads(user_id=world.shop.id)) == 1  # one upload for both

    broken = await card_world(api, x_admin, sessions, UNREACHABLE, recipients=1)
    broken_campaign = await broken.campaign()
    failed = await api.post(
        f"/campaigns/{broken_campaign['id']}/test",
        json={"contactIds": [str(broken.contact_ids[0])]},
    )
    assert failed.status_code == 200, failed.text
    [result] = failed.json()["data"]
    assert result["status"] == "failed" and result["dmEventId"] is None
    assert result["error"].startswith(f"the card's media {UNREACHABLE} could not be reached")
    assert await campaign_dms(x_admin, broken) == []
    async with sessions() as session:
        assert await quota_usage(session, uuid.UUID(broken.account_id)) == 0
