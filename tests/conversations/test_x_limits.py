"""X's limits as X states them: a spent 24-hour cap holds the account's sends until its reset
(none of them is tried again meanwhile), and the app's own 24-hour cap over every merchant's
accounts is reserved in the one send ledger (`MKTX_APP_DM_LIMIT_PER_24H`)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlmodel import col

from integrations.x import XClient, x_client_from_settings
from mktx.secrets import SecretBox
from mktx.settings import Settings
from models.db import SessionMaker, utcnow
from models.quota import SendKind, SendReservation
from sandbox.admin import SandboxAdmin
from services.messaging import quota_error
from services.messaging.delivery import Delivery
from services.messaging.quota import (
    APP_DM_QUOTA,
    QuotaExhausted,
    QuotaLimits,
    limits_from_settings,
    reserve_send_quota,
)
from tests.conftest import Api
from tests.conversations.inbox import connect_shop, open_thread, queue_message
from workflows.contracts.messaging import OutcomeState


@pytest.fixture
def x_client(settings: Settings) -> Iterator[XClient]:
    client = x_client_from_settings(settings)
    yield client
    client.close()


async def test_a_spent_24_hour_cap_holds_the_accounts_sends_until_its_reset(
    api: Api,
    x_admin: SandboxAdmin,
    sessions: SessionMaker,
    settings: Settings,
    x_client: XClient,
) -> None:
    shop = await connect_shop(api, x_admin)
    threads = [await open_thread(sessions, x_admin, api.merchant.id, shop) for _ in range(3)]
    queued = [
        await queue_message(sessions, settings, shop, thread, f"hello {n}")
        for n, thread in enumerate(threads)
    ]
    await x_admin.set_daily_limit("dm_send", "user", 1, user_id=shop.user.id)
    delivery = Delivery(sessions, x_client, SecretBox.from_settings(settings), settings)

    result = await delivery.deliver(api.merchant.id, [m.id for m in queued], concurrency=1)

    states = [o.state for o in result.outcomes]
    assert states == [OutcomeState.sent, OutcomeState.pending, OutcomeState.pending]
    assert result.wait_until is not None and result.wait_reason is not None
    assert (
        timedelta(hours=23, minutes=59)
        < result.wait_until - utcnow()
        <= timedelta(hours=24, seconds=2)
    )
    assert "user_24h" in result.wait_reason
    # X was asked twice: the third DM waited for the reset X named, untried.
    sends = await x_admin.requests(path_prefix="/2/dm_conversations/", user_id=shop.user.id)
    assert [r.status for r in sends] == [201, 429]
    assert len(await x_admin.dms(sender_id=shop.user.id)) == 1


async def test_the_apps_cap_counts_every_accounts_sends_in_one_ledger(
    api: Api, x_admin: SandboxAdmin, sessions: SessionMaker, settings: Settings
) -> None:
    first, second = await connect_shop(api, x_admin), await connect_shop(api, x_admin)
    capped = settings.model_copy(update={"app_dm_limit_per_24h": 1_000_000})
    assert limits_from_settings(capped).app_dm_per_24h == 1_000_000
    async with sessions() as session:
        await session.begin()
        used = (
            await session.execute(
                select(func.count()).where(
                    col(SendReservation.reserved_at) > utcnow() - timedelta(hours=24)
                )
            )
        ).scalar_one()
        limits = QuotaLimits(dm_per_24h=500, campaign_per_24h=500, app_dm_per_24h=used + 2)
        for shop in (first, second):  # two merchants' accounts would do the same
            await reserve_send_quota(
                session,
                merchant_id=api.merchant.id,
                account_id=uuid.UUID(shop.account_id),
                kind=SendKind.inbox,
                limits=limits,
            )
        with pytest.raises(QuotaExhausted) as caught:
            await reserve_send_quota(
                session,
                merchant_id=api.merchant.id,
                account_id=uuid.UUID(first.account_id),
                kind=SendKind.inbox,
                limits=limits,
            )
        await session.rollback()

    spent = caught.value
    assert (spent.kind, spent.limit) == (APP_DM_QUOTA, used + 2)
    assert utcnow() < spent.frees_at <= utcnow() + timedelta(hours=24)
    refusal = quota_error(spent)
    assert refusal.status == 429 and "every merchant's accounts" in refusal.message
    assert refusal.details is not None and refusal.details["quota"] == APP_DM_QUOTA
