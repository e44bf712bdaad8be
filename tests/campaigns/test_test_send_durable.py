"""A test send is a durable delivery through the one send path: the worker SIGKILLed while the
DM is at X, and started again, delivers it exactly once (found at X, not sent again)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

from sqlmodel import col, select
from temporalio.client import Client

from mktx.settings import Settings
from models.campaign import Campaign, CampaignTestSend
from models.conversation import Message
from models.db import SessionMaker
from sandbox.admin import SandboxAdmin
from services.campaigns.test_sends import send_tests
from services.messaging import delivery_handle
from tests.campaigns.conftest import WorkerProcess, make_world
from tests.conftest import Api
from workflows.contracts.messaging import SendOutcome


async def test_test_send_interrupted_by_a_worker_kill_is_delivered_once(
    api: Api,
    x_admin: SandboxAdmin,
    sessions: SessionMaker,
    settings: Settings,
    temporal_client: Client,
    worker_process: WorkerProcess,
) -> None:
    world = await make_world(api, x_admin, sessions, recipients=1, content="Test {{name}}")
    campaign = await world.campaign()
    person = world.people[0]
    # X takes its time answering: the kill lands while the DM is at X.
    await x_admin.set_faults(latency_ms=1500, path_prefix="/2/dm_conversations")
    worker_process.start()
    queue = worker_process.env["MKTX_TASK_QUEUE"]
    async with sessions() as session:
        row = await session.get(Campaign, uuid.UUID(campaign["id"]))
        assert row is not None
        (result,) = await send_tests(
            session,
            settings=settings.model_copy(update={"task_queue": queue}),
            temporal=temporal_client,
            campaign=row,
            contact_ids=[world.contact_ids[0]],
            variables={},
            wait=timedelta(seconds=0.5),
        )
        await session.commit()
    assert result.status == "queued"  # still on its way when the answer was given
    # The delivery claims the message (attempt_at, committed) right before it calls X: the
    # kill lands while X is still answering (1.5 s), and X keeps the DM.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while True:
        async with sessions() as session:
            test = (
                await session.exec(
                    select(CampaignTestSend).where(
                        col(CampaignTestSend.campaign_id) == uuid.UUID(campaign["id"])
                    )
                )
            ).one()
            assert test.message_id is not None
            message = await session.get(Message, test.message_id)
        assert message is not None
        if message.attempt_at is not None:
            break
        assert loop.time() < deadline, "the delivery never began"
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)
    worker_process.kill()
    await x_admin.clear_faults()

    worker_process.start()
    outcome = await asyncio.wait_for(
        delivery_handle(temporal_client, str(test.message_id)).result(), timeout=90
    )
    assert outcome.outcome is SendOutcome.sent
    (dm,) = await x_admin.dms(sender_id=world.shop.id, recipient_id=person.id)
    assert dm.text == f"Test {person.name}" and outcome.twitter_message_id == dm.id
    # The retry looked at X before deciding: the DM was found, not sent a second time.
    logged = await x_admin.requests(path_prefix="/2/dm_conversations", user_id=world.shop.id)
    assert [r.method for r in logged].count("POST") == 1
    assert any(r.method == "GET" and r.path.endswith("/dm_events") for r in logged)
    detail = await api.get(f"/contacts/{world.contact_ids[0]}/conversations")
    assert detail.status_code == 200
