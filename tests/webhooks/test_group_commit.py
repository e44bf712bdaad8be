"""Group commit (services/ingestion/batch.py): concurrent deliveries share transactions, and a
batch that fails commits nothing of anyone's, each delivery then applying its events alone."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col

from mktx.settings import Settings
from models.db import SessionMaker, utcnow
from models.webhook_event import WebhookEvent
from sandbox.admin import SandboxAdmin
from services.ingestion import GroupCommit, IngestionConnections, ingest_payload
from services.ingestion.apply import event_params, plan_statement
from services.ingestion.batch import BatchFailed
from services.ingestion.events import split_payload
from tests.conftest import Api
from tests.webhooks.conftest import (
    Shop,
    contacts_of,
    conversations_of,
    inbound,
    ingestion_of,
    messages_of,
    post_signed,
    x_user,
)


async def test_a_burst_from_several_customers_lands_exactly_once_each(
    api: Api, shop: Shop, x_admin: SandboxAdmin, sessions: SessionMaker
) -> None:
    customers = [await x_user(x_admin, "burst") for _ in range(3)]
    payloads = [
        inbound(shop, c, f"message {i} from {c.username}") for c in customers for i in range(8)
    ]
    # Every event is delivered twice, the copies interleaved with the rest.
    answers = await asyncio.gather(*(post_signed(api.client, p) for p in payloads + payloads))
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    receipts = [a.json()["data"] for a in answers]
    assert sum(r["stored"] for r in receipts) == 24
    assert sum(r["duplicates"] for r in receipts) == 24

    contacts = await contacts_of(sessions, shop.account_id)
    assert sorted(c.twitter_user_id for c in contacts) == sorted(c.id for c in customers)
    assert all(c.conversation_count == 1 for c in contacts)
    conversations = await conversations_of(sessions, shop.account_id)
    assert sorted(c.message_count for c in conversations) == [8, 8, 8]
    messages = await messages_of(sessions, shop.account_id)
    assert sorted(m.content for m in messages) == sorted(
        p["direct_message_events"][0]["message_create"]["message_data"]["text"] for p in payloads
    )


@pytest.fixture
async def group(engine: AsyncEngine) -> Any:
    group = GroupCommit(IngestionConnections(engine, 2))
    yield group
    await group.aclose()


def _plans(settings: Settings, payload: dict[str, Any]) -> list[Any]:
    now = utcnow()
    return [
        plan_statement(ingestion_of(settings), event, event_params(event, now, uuid.uuid4()))
        for event in split_payload(json.loads(json.dumps(payload)))
    ]


async def _stored(sessions: SessionMaker, for_user_id: str) -> int:
    async with sessions() as session:
        count = await session.execute(
            select(func.count())
            .select_from(WebhookEvent)
            .where(col(WebhookEvent.for_user_id) == for_user_id)
        )
        return int(count.scalar_one())


async def test_a_failing_batch_commits_nothing_and_its_deliveries_apply_alone(
    group: GroupCommit,
    settings: Settings,
    shop: Shop,
    x_admin: SandboxAdmin,
    sessions: SessionMaker,
) -> None:
    customer = await x_user(x_admin, "batch")
    good = [inbound(shop, customer, f"fine {i}") for i in range(2)]
    (poisoned,) = _plans(settings, inbound(shop, customer, "poisoned"))
    # A value PostgreSQL refuses: the statement fails on the server, inside the batch.
    poisoned = dataclasses.replace(poisoned, params={**poisoned.params, "at": "not a time"})

    # Queued in the same turn of the event loop: one flusher takes all three as one batch.
    outcomes = await asyncio.gather(
        group.apply(_plans(settings, good[0])),
        group.apply([poisoned]),
        group.apply(_plans(settings, good[1])),
        return_exceptions=True,
    )
    assert all(isinstance(o, BatchFailed) for o in outcomes), outcomes
    assert await _stored(sessions, shop.x_id) == 0  # the good ones were rolled back too

    # What the webhook then does for each delivery: its events alone, each stored once.
    for payload in good:
        result = await ingest_payload(group, ingestion_of(settings), payload)
        assert (result.stored, result.duplicates, result.failed) == (1, 0, 0)
    assert await _stored(sessions, shop.x_id) == 2
    assert [m.content for m in await messages_of(sessions, shop.account_id)] == ["fine 0", "fine 1"]


async def test_a_lone_delivery_is_not_held_back(
    group: GroupCommit, settings: Settings, shop: Shop, x_admin: SandboxAdmin
) -> None:
    customer = await x_user(x_admin, "alone")
    rows = await asyncio.wait_for(
        group.apply(_plans(settings, inbound(shop, customer, "hello"))), timeout=5
    )
    assert len(rows) == 1 and rows[0] is not None
