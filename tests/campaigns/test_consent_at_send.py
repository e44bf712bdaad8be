"""Consent is checked when a campaign DM goes out, not only when its audience was chosen: a
customer who replies STOP, or is erased, after the recipients' snapshot — while the campaign
waits out X's rate limit, or is paused — receives no campaign DM. The others receive theirs
exactly once, and the metrics count the two as skipped, with their reasons."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from models.db import SessionMaker
from sandbox.admin import SandboxAdmin
from tests.campaigns.conftest import World, make_world, recipients
from tests.conftest import Api
from tests.webhooks.conftest import Shop, inbound, post_signed

pytestmark = pytest.mark.usefixtures("worker")

CONTENT = "Hi {{name}}, {{shop}} has a deal"


def _shop(world: World) -> Shop:
    return Shop(user=world.shop, account_id=uuid.UUID(world.account_id))


async def _stop(api: Api, world: World, index: int) -> None:
    response = await post_signed(api.client, inbound(_shop(world), world.people[index], "STOP"))
    assert response.status_code == 200, response.text


async def _erase(api: Api, world: World, index: int) -> None:
    response = await api.delete(f"/contacts/{world.contact_ids[index]}")
    assert response.status_code in (200, 204), response.text


async def _campaign_dms(x_admin: SandboxAdmin, world: World) -> dict[str, list[str]]:
    """The campaign DMs each person received (the opt-out confirmation is not one)."""
    received: dict[str, list[str]] = {}
    for dm in await x_admin.dms(sender_id=world.shop.id):
        if "has a deal" in dm.text:
            received.setdefault(dm.recipient_id, []).append(dm.text)
    return received


async def _metrics(api: Api, campaign_id: str) -> dict[str, Any]:
    response = await api.get(f"/campaigns/{campaign_id}/metrics")
    assert response.status_code == 200, response.text
    return dict(response.json()["data"])


def _assert_outcome(world: World, received: dict[str, list[str]], metrics: dict[str, Any]) -> None:
    stopped, erased, *others = world.people
    assert stopped.id not in received
    assert erased.id not in received
    for person in others:
        assert received[person.id] == [f"Hi {person.name}, GoodGo has a deal"]
    assert metrics["delivered"] == len(others) and metrics["failed"] == 0
    assert metrics["skipped"] == 2
    assert metrics["skippedReasons"] == {"optedOut": 1, "deleted": 1, "other": 0}
    assert metrics["recipients"] == len(world.people)


async def test_stop_and_erasure_while_x_rate_limits_stop_the_campaign_dm(
    api: Api, x_admin: SandboxAdmin, sessions: SessionMaker
) -> None:
    world = await make_world(api, x_admin, sessions, recipients=4, content=CONTENT)
    campaign = await world.campaign()
    # X answers every DM with 429 for now: the snapshot is taken, the batch claimed and
    # handed over, and the campaign sleeps until X's reset.
    await x_admin.set_faults(
        error_rate=1.0, error_status=429, retry_after_seconds=3, path_prefix="/2/dm_conversations"
    )
    await world.start(campaign["id"])
    for _ in range(200):
        rows = await recipients(sessions, campaign["id"])
        if len(rows) == 4 and all(r.state == "sending" for r in rows):
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the first batch was never claimed")

    await _stop(api, world, 0)
    await _erase(api, world, 1)
    await x_admin.clear_faults()
    await world.wait_status(campaign["id"], "completed", timeout=60)

    _assert_outcome(world, await _campaign_dms(x_admin, world), await _metrics(api, campaign["id"]))
    states = {r.contact_id: (r.state, r.error) for r in await recipients(sessions, campaign["id"])}
    assert states[world.contact_ids[0]] == ("skipped", "opted_out")
    assert states[None] == ("skipped", "deleted")  # the erased contact's row names nobody


@pytest.mark.usefixtures("small_batches")
async def test_stop_and_erasure_while_paused_stop_the_campaign_dm(
    api: Api, x_admin: SandboxAdmin, sessions: SessionMaker
) -> None:
    world = await make_world(api, x_admin, sessions, recipients=8, content=CONTENT)
    campaign = await world.campaign()
    await x_admin.set_faults(latency_ms=200, path_prefix="/2/dm_conversations")
    await world.start(campaign["id"])
    for _ in range(300):
        if any(r.state == "sent" for r in await recipients(sessions, campaign["id"])):
            break
        await asyncio.sleep(0.05)
    paused = await api.post(f"/campaigns/{campaign['id']}/pause")
    assert paused.status_code == 200, paused.text
    await asyncio.sleep(1.0)  # the batch under way settles
    waiting = [
        r.contact_id for r in await recipients(sessions, campaign["id"]) if r.state == "queued"
    ]
    assert len(waiting) >= 2, "the campaign finished before it could be paused"
    # Who replies STOP and who is erased: two of those still waiting, in the world's order.
    order = [world.contact_ids.index(c) for c in waiting if c is not None][:2]
    world.people = [
        world.people[order[0]],
        world.people[order[1]],
        *(p for i, p in enumerate(world.people) if i not in order),
    ]
    world.contact_ids = [
        world.contact_ids[order[0]],
        world.contact_ids[order[1]],
        *(c for i, c in enumerate(world.contact_ids) if i not in order),
    ]
    await _stop(api, world, 0)
    await _erase(api, world, 1)
    await x_admin.clear_faults()
    resumed = await api.post(f"/campaigns/{campaign['id']}/resume")
    assert resumed.status_code == 200, resumed.text
    await world.wait_status(campaign["id"], "completed", timeout=60)

    _assert_outcome(world, await _campaign_dms(x_admin, world), await _metrics(api, campaign["id"]))
