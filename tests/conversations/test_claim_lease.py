"""Two attempts of one send never both send its DM (services/messaging/delivery.py): Temporal
tries an activity again once its heartbeat stops, while the old attempt — on a worker starved
of CPU or of database connections — may still be sending. A claim is a lease: the new attempt
leaves a DM claimed within the lease pending, and an attempt whose own lease is nearly over
stops sending."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta

import pytest

from integrations.x import XClient, x_client_from_settings
from mktx.secrets import SecretBox
from mktx.settings import Settings
from models.conversation import Message, MessageStatus
from models.db import SessionMaker, utcnow
from sandbox.admin import SandboxAdmin
from services.messaging import delivery as delivery_module
from services.messaging.delivery import CLAIM_LEASE, Delivery, claim_lease
from services.messaging.records import mark_attempted
from tests.conftest import Api
from tests.conversations.inbox import connect_shop, open_thread, queue_message
from workflows.contracts.messaging import OutcomeState


@pytest.fixture
def x_client(settings: Settings) -> Iterator[XClient]:
    client = x_client_from_settings(settings)
    yield client
    client.close()


def test_the_lease_follows_the_heartbeat_timeout() -> None:
    assert claim_lease(None) == CLAIM_LEASE
    assert claim_lease(timedelta(seconds=15)) == timedelta(seconds=30)
    assert claim_lease(timedelta(seconds=3)) == timedelta(seconds=8)
    assert claim_lease(timedelta(minutes=5)) == CLAIM_LEASE


async def test_a_dm_another_attempt_claimed_waits_for_its_lease_then_goes_once(
    api: Api, x_admin: SandboxAdmin, sessions: SessionMaker, settings: Settings, x_client: XClient
) -> None:
    shop = await connect_shop(api, x_admin)
    thread = await open_thread(sessions, x_admin, api.merchant.id, shop)
    message = await queue_message(sessions, settings, shop, thread, "one DM, sent once")
    claimed_at = utcnow()
    async with sessions() as session, session.begin():  # the first attempt's claim
        await mark_attempted(session, [message.id], claimed_at)
    delivery = Delivery(sessions, x_client, SecretBox.from_settings(settings), settings)
    lease = timedelta(seconds=2)

    early = await delivery.deliver(api.merchant.id, [message.id], lease=lease)

    assert [o.state for o in early.outcomes] == [OutcomeState.pending]
    assert early.wait_until is not None
    assert abs(early.wait_until - (claimed_at + lease)) < timedelta(seconds=1)
    assert await x_admin.dms(sender_id=shop.user.id) == []  # not even looked for: not sent

    await asyncio.sleep(max((early.wait_until - utcnow()).total_seconds(), 0) + 0.1)
    late = await delivery.deliver(api.merchant.id, [message.id], lease=lease)

    assert [o.state for o in late.outcomes] == [OutcomeState.sent]
    assert [dm.text for dm in await x_admin.dms(sender_id=shop.user.id)] == ["one DM, sent once"]


async def test_an_attempt_whose_lease_ran_out_before_sending_sends_nothing(
    api: Api,
    x_admin: SandboxAdmin,
    sessions: SessionMaker,
    settings: Settings,
    x_client: XClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shop = await connect_shop(api, x_admin)
    thread = await open_thread(sessions, x_admin, api.merchant.id, shop)
    message = await queue_message(sessions, settings, shop, thread, "held up before X")
    delivery = Delivery(sessions, x_client, SecretBox.from_settings(settings), settings)
    real_utcnow = delivery_module.utcnow
    claimed: list[bool] = []

    def later() -> object:  # the claim happens now; everything after it, a lease later
        if not claimed:
            claimed.append(True)
            return real_utcnow()
        return real_utcnow() + CLAIM_LEASE

    monkeypatch.setattr(delivery_module, "utcnow", later)
    stalled = await delivery.deliver(api.merchant.id, [message.id])

    assert [o.state for o in stalled.outcomes] == [OutcomeState.pending]
    assert stalled.outcomes[0].reason == "the claim ran out"
    assert await x_admin.dms(sender_id=shop.user.id) == []
    monkeypatch.undo()

    # Still attempted: the next attempt, past the lease, looks for it at X, then sends it once.
    async with sessions() as session, session.begin():
        await mark_attempted(session, [message.id], utcnow() - 2 * CLAIM_LEASE)
    retried = await delivery.deliver(api.merchant.id, [message.id])
    assert [o.state for o in retried.outcomes] == [OutcomeState.sent]
    assert [dm.text for dm in await x_admin.dms(sender_id=shop.user.id)] == ["held up before X"]


async def test_a_cancelled_delivery_hands_back_what_it_never_sent(
    api: Api, x_admin: SandboxAdmin, sessions: SessionMaker, settings: Settings, x_client: XClient
) -> None:
    """A worker stopped by SIGTERM cancels its deliveries: what X took is recorded, the DMs not
    yet handed to X are given back (the next attempt sends them at once), and the one whose call
    was under way keeps its lease (its thread may still reach X): looked for there after it."""
    shop = await connect_shop(api, x_admin)
    thread = await open_thread(sessions, x_admin, api.merchant.id, shop)
    texts = [f"DM {n} of five" for n in range(1, 6)]
    messages = [await queue_message(sessions, settings, shop, thread, text) for text in texts]
    ids = [m.id for m in messages]
    await x_admin.set_faults(latency_ms=400, path_prefix="/2/dm_conversations")
    delivery = Delivery(sessions, x_client, SecretBox.from_settings(settings), settings)
    lease = timedelta(seconds=3)

    cut = asyncio.create_task(delivery.deliver(api.merchant.id, ids, concurrency=1, lease=lease))
    await asyncio.sleep(0.6)  # the first DM is at X, the second under way
    cut.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cut
    await x_admin.clear_faults()

    async with sessions() as session:
        rows = {m.id: m for m in [await session.get(Message, i) for i in ids] if m is not None}
    assert rows[ids[0]].status == MessageStatus.sent  # recorded before the task ended
    assert rows[ids[1]].attempt_at is not None  # under way: its claim kept
    assert [rows[i].attempt_at for i in ids[2:]] == [None, None, None]  # handed back

    again = await delivery.deliver(api.merchant.id, ids, lease=lease)
    states = [o.state for o in again.outcomes]
    assert states == [OutcomeState.sent, OutcomeState.pending, *[OutcomeState.sent] * 3]

    await asyncio.sleep(max((again.wait_until - utcnow()).total_seconds(), 0) + 0.1)
    last = await delivery.deliver(api.merchant.id, ids, lease=lease)
    assert [o.state for o in last.outcomes] == [OutcomeState.sent] * 5
    sent = sorted(dm.text for dm in await x_admin.dms(sender_id=shop.user.id))
    assert sent == texts  # each once
