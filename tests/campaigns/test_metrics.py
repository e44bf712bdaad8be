"""Opened and replied come from what webhook ingestion stores: X's read receipts and the
contact's inbound DMs, delivered to the live API as X would deliver them."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from api.app import BASE_PATH
from models.db import SessionMaker
from sandbox.admin import SandboxAdmin
from services.ingestion.signatures import SIGNATURE_HEADER, body_signature
from tests.campaigns.conftest import make_world, recipients
from tests.conftest import CONSUMER_SECRET, Api


async def _read_receipt(live_api: str, shop_id: str, reader_id: str, event_id: str) -> None:
    body = json.dumps(
        {
            "for_user_id": shop_id,
            "direct_message_mark_read_events": [
                {
                    "created_timestamp": str(int(time.time() * 1000)),
                    "sender_id": reader_id,
                    "target": {"recipient_id": shop_id},
                    "last_read_event_id": event_id,
                }
            ],
        }
    ).encode()
    async with httpx.AsyncClient() as client:
        response = await client.post(
            f"{live_api}{BASE_PATH}/webhooks/twitter",
            content=body,
            headers={
                SIGNATURE_HEADER: body_signature(CONSUMER_SECRET, body),
                "content-type": "application/json",
            },
        )
    assert response.status_code == 200, response.text


@pytest.mark.usefixtures("worker")
async def test_opened_and_replied_from_read_receipts_and_inbound_dms(
    api: Api, x_admin: SandboxAdmin, sessions: SessionMaker, live_api: str
) -> None:
    world = await make_world(api, x_admin, sessions, recipients=4)
    campaign = await world.campaign()
    await world.start(campaign["id"])
    await world.wait_status(campaign["id"], "completed")
    by_contact = {r.contact_id: r for r in await recipients(sessions, campaign["id"])}
    first, second = world.people[0], world.people[1]
    first_dm = by_contact[world.contact_ids[0]].dm_event_id
    assert first_dm is not None
    await _read_receipt(live_api, world.shop.id, first.id, first_dm)
    await _read_receipt(live_api, world.shop.id, second.id, "1")  # read older DMs only
    delivery = await x_admin.simulate_dm(second.id, world.shop.id, "Is it still on?")
    assert delivery.webhook_status == 200

    metrics: dict[str, object] = {}
    for _ in range(100):
        metrics = (await api.get(f"/campaigns/{campaign['id']}/metrics")).json()["data"]
        if metrics["opened"] == 1 and metrics["replied"] == 1:
            break
        await asyncio.sleep(0.1)
    assert metrics["opened"] == 1
    assert metrics["replied"] == 1
    assert metrics["openRate"] == 0.25 and metrics["replyRate"] == 0.25
