"""A campaign world per test: a connected shop account on the sandbox, recipients who are real
sandbox users stored as contacts with a tag of the test's own, a segment on that tag and a
template. Plus a time-skipping Temporal environment running the real workflow and activities."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select

import activities.campaign
from mktx.settings import Settings
from models.campaign import Campaign, CampaignRecipient
from models.contact import Contact
from models.db import SessionMaker
from sandbox.admin import SandboxAdmin, SandboxUser
from services.campaigns import runs as campaign_runs
from tests.conftest import Api
from tests.time_skipping import SkippingTemporal, time_skipping_worker
from workflows.campaign import WORKFLOWS


@dataclass
class World:
    api: Api
    shop: SandboxUser
    account_id: str
    tag: str
    segment_id: str
    template_id: str
    people: list[SandboxUser] = field(default_factory=list)
    contact_ids: list[uuid.UUID] = field(default_factory=list)

    async def campaign(self, **fields: Any) -> dict[str, Any]:
        body = {
            "name": "Promo",
            "type": "promotional",
            "templateId": self.template_id,
            "segmentIds": [self.segment_id],
            "variables": {"shop": "GoodGo"},
            **fields,
        }
        response = await self.api.post("/campaigns", json=body)
        assert response.status_code == 200, response.text
        return dict(response.json()["data"])

    async def start(self, campaign_id: str) -> dict[str, Any]:
        response = await self.api.post(f"/campaigns/{campaign_id}/start")
        assert response.status_code == 200, response.text
        return dict(response.json()["data"])

    async def status(self, campaign_id: str) -> str:
        response = await self.api.get(f"/campaigns/{campaign_id}")
        assert response.status_code == 200, response.text
        return str(response.json()["data"]["status"])

    async def wait_status(self, campaign_id: str, *wanted: str, timeout: float = 30) -> str:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            status = await self.status(campaign_id)
            if status in wanted:
                return status
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"campaign is {status}, not {wanted}")
            await asyncio.sleep(0.1)


async def make_world(
    api: Api,
    x_admin: SandboxAdmin,
    sessions: SessionMaker,
    recipients: int = 4,
    content: str = "Hi {{name}}, {{shop}} has a deal: https://shop.example/deal",
) -> World:
    suffix = uuid.uuid4().hex[:8]
    shop = await x_admin.create_user(f"shop_{suffix}", name="Shop")
    response = await api.post(
        "/accounts",
        json={"oauthToken": shop.access_token, "oauthTokenSecret": shop.access_token_secret},
    )
    assert response.status_code == 200, response.text
    account_id = response.json()["data"]["id"]
    tag = f"camp{suffix}"
    people = [
        await x_admin.create_user(f"p{i}_{suffix}", name=f"Person {i}") for i in range(recipients)
    ]
    contact_ids: list[uuid.UUID] = []
    async with sessions() as session, session.begin():
        for person in people:
            contact = Contact(
                merchant_id=api.merchant.id,
                account_id=uuid.UUID(account_id),
                twitter_user_id=person.id,
                username=person.username,
                display_name=person.name,
                tags=[tag],
            )
            session.add(contact)
            contact_ids.append(contact.id)
    segment = await api.post(
        "/segments",
        json={
            "name": "Campaign test",
            "conditions": [{"field": "tags", "operator": "contains", "value": tag}],
        },
    )
    assert segment.status_code == 200, segment.text
    template = await api.post("/templates", json={"name": "Deal", "content": content})
    assert template.status_code == 200, template.text
    return World(
        api=api,
        shop=shop,
        account_id=account_id,
        tag=tag,
        segment_id=segment.json()["data"]["id"],
        template_id=template.json()["data"]["id"],
        people=people,
        contact_ids=contact_ids,
    )


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Several batches per campaign, so that something can happen between them."""
    monkeypatch.setattr(campaign_runs, "BATCH_SIZE", 2)
    monkeypatch.setattr(campaign_runs, "CONCURRENCY", 2)


async def recipients(sessions: SessionMaker, campaign_id: str) -> list[CampaignRecipient]:
    async with sessions() as session:
        rows = await session.exec(
            select(CampaignRecipient).where(
                col(CampaignRecipient.campaign_id) == uuid.UUID(campaign_id)
            )
        )
        return list(rows.all())


async def occurrence_done(sessions: SessionMaker, campaign_id: str, occurrence: int) -> None:
    """Wait until a recurring campaign's occurrence has run and it is scheduled again."""
    for _ in range(300):
        async with sessions() as session:
            row = await session.get(Campaign, uuid.UUID(campaign_id))
            assert row is not None
            if row.occurrences == occurrence and row.status == "scheduled":
                return
        await asyncio.sleep(0.1)
    raise AssertionError(f"occurrence {occurrence} did not finish")


async def dms_per_person(x_admin: SandboxAdmin, world: World) -> dict[str, int]:
    counts: dict[str, int] = {}
    for dm in await x_admin.dms(sender_id=world.shop.id):
        counts[dm.recipient_id] = counts.get(dm.recipient_id, 0) + 1
    return counts


# Time skipping ------------------------------------------------------------------------------


SKIPPING_CAMPAIGN_QUOTA = 3


@pytest.fixture
async def time_skipping(
    settings: Settings, sessions: SessionMaker
) -> AsyncIterator[SkippingTemporal]:
    """Temporal's time-skipping test server with its own worker running the real campaign
    workflow and activities against the same database and sandbox."""
    async with time_skipping_worker(
        settings,
        sessions,
        task_queue=f"campaign-skip-{uuid.uuid4().hex[:8]}",
        workflows=WORKFLOWS,
        activity_builders=[activities.campaign.build],
        # A small campaign quota, so that a test spends it and sleeps until it frees.
        settings_update={"campaign_limit_per_24h": SKIPPING_CAMPAIGN_QUOTA},
    ) as skipping:
        yield skipping


WaitFor = Callable[[Callable[[], Awaitable[bool]]], Awaitable[None]]


# A worker in its own process (to be killed) -------------------------------------------------

BIN = Path(sys.executable).parent


def _worker_env(settings: Settings, queue: str) -> dict[str, str]:
    assert settings.database_url is not None
    return {
        **os.environ,
        "MKTX_ENV": "test",
        "MKTX_DATABASE_URL": settings.database_url,
        "MKTX_TEMPORAL_ADDRESS": settings.require_temporal_address(),
        "MKTX_TASK_QUEUE": queue,
        "MKTX_X_API_BASE_URL": settings.x_api_base_url,
        "MKTX_X_CONSUMER_KEY": settings.x_consumer_key.get_secret_value(),
        "MKTX_X_CONSUMER_SECRET": settings.x_consumer_secret.get_secret_value(),
        "MKTX_X_WEBHOOK_ID": settings.x_webhook_id,
        "MKTX_ENCRYPTION_KEY": settings.encryption_key.get_secret_value(),
        "MKTX_LOG_LEVEL": "WARNING",
    }


class WorkerProcess:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [str(BIN / "mkt-x"), "worker"],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def worker_process(settings: Settings) -> Iterator[WorkerProcess]:
    process = WorkerProcess(_worker_env(settings, f"campaign-kill-{uuid.uuid4().hex[:8]}"))
    yield process
    process.stop()
