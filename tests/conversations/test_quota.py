"""The send ledger: a rolling 24-hour quota per X account that every send reserves from."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import httpx
import pytest
from sqlmodel import col, select

from api.app import create_app
from mktx.settings import Settings
from models.conversation import Message
from models.db import SessionMaker, utcnow
from models.quota import SendKind, SendReservation
from sandbox.admin import SandboxAdmin
from services.messaging.quota import QuotaExhausted, QuotaLimits, quota_usage, reserve_send_quota
from tests.conftest import Api
from tests.conversations.inbox import connect_shop, open_thread


@pytest.fixture
async def api_limited_to_two(settings: Settings, api: Api) -> AsyncIterator[Api]:
    """The same merchant, through an API process configured for 2 DMs per 24 h."""
    app = create_app(settings.model_copy(update={"dm_limit_per_24h": 2}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://mktx.test") as client:
            yield Api(client, api.merchant)


async def test_the_third_send_over_a_quota_of_two_is_429_with_when_it_frees(
    api: Api, api_limited_to_two: Api, x_admin: SandboxAdmin, sessions: SessionMaker
) -> None:
    shop = await connect_shop(api, x_admin)
    first = await open_thread(sessions, x_admin, api.merchant.id, shop)
    second = await open_thread(sessions, x_admin, api.merchant.id, shop)
    before = utcnow()
    for thread in (first, first):
        sent = await api_limited_to_two.post(
            f"/conversations/{thread.id}/messages", json={"content": "hello"}
        )
        assert sent.status_code == 200, sent.text

    refused = await api_limited_to_two.post(
        f"/conversations/{second.id}/messages", json={"content": "one too many"}
    )

    assert refused.status_code == 429
    body = refused.json()
    assert body["code"] == "RATE_LIMIT_EXCEEDED" and body["success"] is False
    frees_at = datetime.fromisoformat(body["details"]["freesAt"])
    # The first send's slot frees 24 hours after it was taken.
    assert before + timedelta(hours=24) <= frees_at <= utcnow() + timedelta(hours=24)
    retry_after = int(refused.headers["Retry-After"])
    assert abs(retry_after - (frees_at - utcnow()).total_seconds()) < 5
    assert body["details"]["limit"] == 2 and body["details"]["accountId"] == shop.account_id
    assert "frees up" in body["error"]
    # Nothing was stored or sent for the refused one.
    assert await x_admin.dms(recipient_id=second.customer.id) == []
    detail = (await api.get(f"/conversations/{second.id}")).json()["data"]
    assert detail["messages"] == [] and detail["messageCount"] == 0
    async with sessions() as session:
        assert await quota_usage(session, uuid.UUID(shop.account_id)) == 2


async def test_slots_older_than_24_hours_free_up(
    api: Api, api_limited_to_two: Api, x_admin: SandboxAdmin, sessions: SessionMaker
) -> None:
    shop = await connect_shop(api, x_admin)
    thread = await open_thread(sessions, x_admin, api.merchant.id, shop)
    for _ in range(2):
        ok = await api_limited_to_two.post(
            f"/conversations/{thread.id}/messages", json={"content": "hi"}
        )
        assert ok.status_code == 200
    account_id = uuid.UUID(shop.account_id)
    async with sessions() as session, session.begin():
        # One of the two slots was taken just over a day ago.
        oldest = (
            await session.exec(
                select(SendReservation).where(col(SendReservation.account_id) == account_id)
            )
        ).first()
        assert oldest is not None and oldest.message_id is not None
        oldest.reserved_at = utcnow() - timedelta(hours=24, seconds=1)
        message_id = oldest.message_id

    again = await api_limited_to_two.post(
        f"/conversations/{thread.id}/messages", json={"content": "and again"}
    )
    assert again.status_code == 200, again.text
    async with sessions() as session:
        assert await quota_usage(session, account_id) == 2
        assert await session.get(Message, message_id) is not None  # history is kept


async def test_the_ledger_forgets_reservations_no_window_sees(
    api: Api, x_admin: SandboxAdmin, sessions: SessionMaker
) -> None:
    shop = await connect_shop(api, x_admin)
    account_id = uuid.UUID(shop.account_id)
    limits = QuotaLimits(dm_per_24h=10, campaign_per_24h=10)
    async with sessions() as session, session.begin():
        for hours_ago in (72, 49, 30):
            session.add(
                SendReservation(
                    merchant_id=api.merchant.id,
                    account_id=account_id,
                    kind=SendKind.inbox,
                    reserved_at=utcnow() - timedelta(hours=hours_ago),
                )
            )
    async with sessions() as session, session.begin():
        await reserve_send_quota(
            session,
            merchant_id=api.merchant.id,
            account_id=account_id,
            kind=SendKind.inbox,
            limits=limits,
        )
    async with sessions() as session:
        kept = (
            await session.exec(
                select(SendReservation.reserved_at).where(
                    col(SendReservation.account_id) == account_id
                )
            )
        ).all()
    # Older than two windows: gone; the 30-hour-old one stays (it is harmless and cheap).
    assert len(kept) == 2
    assert all(utcnow() - at < timedelta(hours=48) for at in kept)


async def test_concurrent_reservations_never_exceed_the_limit(
    api: Api, x_admin: SandboxAdmin, sessions: SessionMaker
) -> None:
    shop = await connect_shop(api, x_admin)
    account_id = uuid.UUID(shop.account_id)
    limits = QuotaLimits(dm_per_24h=5, campaign_per_24h=100)
    start = asyncio.Event()

    async def reserve(kind: SendKind) -> bool:
        await start.wait()
        async with sessions() as session, session.begin():
            try:
                await reserve_send_quota(
                    session,
                    merchant_id=api.merchant.id,
                    account_id=account_id,
                    kind=kind,
                    limits=limits,
                )
            except QuotaExhausted:
                return False
            await asyncio.sleep(0.01)  # hold the transaction a moment, as a real send does
            return True

    kinds = [SendKind.inbox, SendKind.campaign, SendKind.flow, SendKind.bot] * 5
    tasks = [asyncio.create_task(reserve(kind)) for kind in kinds]
    started = time.monotonic()
    start.set()
    outcomes = await asyncio.gather(*tasks)

    assert sum(outcomes) == 5
    assert time.monotonic() - started < 10
    async with sessions() as session:
        assert await quota_usage(session, account_id) == 5


async def test_campaign_sends_have_their_own_daily_cap(
    api: Api, x_admin: SandboxAdmin, sessions: SessionMaker
) -> None:
    shop = await connect_shop(api, x_admin)
    account_id = uuid.UUID(shop.account_id)
    limits = QuotaLimits(dm_per_24h=5, campaign_per_24h=2)

    async def reserve(kind: SendKind) -> None:
        async with sessions() as session, session.begin():
            await reserve_send_quota(
                session,
                merchant_id=api.merchant.id,
                account_id=account_id,
                kind=kind,
                limits=limits,
            )

    await reserve(SendKind.campaign)
    await reserve(SendKind.campaign)
    with pytest.raises(QuotaExhausted) as refused:
        await reserve(SendKind.campaign)
    assert refused.value.kind == "campaign" and refused.value.limit == 2
    # Replies still have room in the DM quota, which the campaign sends count against too.
    await reserve(SendKind.inbox)
    await reserve(SendKind.flow)
    await reserve(SendKind.inbox)
    with pytest.raises(QuotaExhausted) as spent:
        await reserve(SendKind.inbox)
    assert spent.value.kind == "direct message" and spent.value.limit == 5
    with pytest.raises(QuotaExhausted):
        await reserve(SendKind.campaign)
    async with sessions() as session:
        assert await quota_usage(session, account_id) == 5
        kinds = await session.execute(
            select(SendReservation.kind).where(col(SendReservation.account_id) == account_id)
        )
        assert sorted(kinds.scalars().all()) == ["campaign", "campaign", "flow", "inbox", "inbox"]
