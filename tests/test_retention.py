"""Retention (services/maintenance/retention.py): raw webhook events, spent quota-ledger rows and
LLM call records past their windows are pruned by the maintenance schedule in bounded batches,
and what is still needed stays: events reprocessing may still apply, events whose follow-ups
are not done, the opens a read receipt gave a campaign, the analytics counted from the calls.

The pruning looks at every merchant's rows. The service tests date their rows in 2001 and pass
a `now` of that year, so that only their own rows can be past the window; the workflow test
runs the real step (the session's worker, the real clock and settings) and looks at its own."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, text
from sqlmodel import col
from temporalio.client import Client

from mktx.settings import Settings
from models.account import XAccount
from models.ai import LLMCall
from models.campaign import Campaign, CampaignRecipient, CampaignStatus, RecipientState
from models.contact import Contact
from models.db import SessionMaker, utcnow
from models.quota import SendKind, SendReservation
from models.webhook_event import EventFollowUp, WebhookEvent
from services.maintenance.retention import RetentionWindows, prune_retained
from tests.conftest import Api
from workflows.maintenance import MaintenanceInput, MaintenanceWorkflow

WINDOWS = RetentionWindows(raw_events=timedelta(days=30), llm_calls=timedelta(days=90))
# "Now" for the service tests: rows dated before its windows are theirs alone.
NOW = datetime(2001, 6, 1, tzinfo=UTC)
RETENTION_ONLY = MaintenanceInput(
    reprocess_limit=0, follow_up_limit=0, outbound_limit=0, owed_limit=0, flow_exit_limit=0
)


def _x_id() -> str:
    return str(uuid.uuid4().int % 10**18 + 10**18)


@dataclass
class Shop:
    merchant_id: str
    account: XAccount
    contact: Contact
    campaign: Campaign


async def _shop(sessions: SessionMaker, merchant_id: str) -> Shop:
    """An account, a contact, and a campaign that sent it DM 5000 (opened by a receipt only)."""
    account = XAccount(
        merchant_id=merchant_id,
        twitter_user_id=_x_id(),
        username=f"shop_{uuid.uuid4().hex[:6]}",
        display_name="Shop",
        connected_at=NOW - timedelta(days=365),
    )
    campaign = Campaign(merchant_id=merchant_id, name="Sale", status=CampaignStatus.completed)
    async with sessions() as session, session.begin():
        session.add_all([account, campaign])
        await session.flush()
        contact = Contact(
            merchant_id=merchant_id,
            account_id=account.id,
            twitter_user_id=_x_id(),
            username=f"fan_{uuid.uuid4().hex[:6]}",
        )
        session.add(contact)
        await session.flush()
        session.add(
            CampaignRecipient(
                merchant_id=merchant_id,
                campaign_id=campaign.id,
                contact_id=contact.id,
                account_id=account.id,
                state=RecipientState.sent,
                dm_event_id="5000",
                attempt_at=NOW - timedelta(days=60),
                sent_at=NOW - timedelta(days=60),
            )
        )
    return Shop(merchant_id, account, contact, campaign)


def _event(
    shop: Shop, at: datetime, *, kind: str = "direct_message", **fields: Any
) -> WebhookEvent:
    payload: dict[str, Any] = {"for_user_id": shop.account.twitter_user_id}
    if kind == "read":
        payload["direct_message_mark_read_events"] = [
            {"sender_id": shop.contact.twitter_user_id, "last_read_event_id": fields.pop("read")}
        ]
    return WebhookEvent(
        merchant_id=shop.merchant_id,
        account_id=shop.account.id,
        for_user_id=shop.account.twitter_user_id,
        event_type=kind,
        dedup_key=f"{kind}:{uuid.uuid4()}",
        subject_user_id=shop.contact.twitter_user_id,
        contact_id=shop.contact.id,
        payload=payload,
        received_at=at,
        **{"processed_at": at, **fields},
    )


def _follow_up(shop: Shop, event: WebhookEvent, *, done: bool) -> EventFollowUp:
    at = event.received_at
    return EventFollowUp(
        merchant_id=shop.merchant_id,
        webhook_event_id=event.id,
        kind="signal",
        target=f"listener:{uuid.uuid4()}",
        payload={},
        next_attempt_at=at,
        attempts=1,
        done_at=at if done else None,
        outcome="signalled" if done else None,
    )


async def _existing(sessions: SessionMaker, model: type, ids: list[uuid.UUID]) -> set[uuid.UUID]:
    async with sessions() as session:
        rows = await session.execute(select(model.id).where(col(model.id).in_(ids)))  # type: ignore[attr-defined]
        return set(rows.scalars().all())


async def _llm_calls_counted(sessions: SessionMaker, merchant_id: str) -> int:
    """What the analytics rollups say the merchant's model calls were (migration 0016)."""
    async with sessions() as session:
        counted = await session.execute(
            text("SELECT coalesce(sum(llm_calls), 0) FROM analytics_counts WHERE merchant_id = :m"),
            {"m": merchant_id},
        )
        return int(counted.scalar_one())


async def test_what_is_past_its_window_goes_and_what_is_needed_stays(
    api: Api, sessions: SessionMaker
) -> None:
    shop = await _shop(sessions, api.merchant.id)
    old, young = NOW - timedelta(days=31), NOW - timedelta(days=29)
    applied = _event(shop, old)
    answered = _event(shop, old)  # its follow-up was carried out: both go
    owing = _event(shop, old)  # its follow-up is still due: both stay
    unapplied = _event(shop, old, processed_at=None, attempts=3)  # reprocessing may apply it
    recent = _event(shop, young)
    receipt = _event(shop, old, kind="read", read="5000")  # opens the campaign DM
    events = [applied, answered, owing, unapplied, recent, receipt]
    follow_ups = [_follow_up(shop, answered, done=True), _follow_up(shop, owing, done=False)]
    tagged_long_ago, tagged_lately, tag_owed = (  # events from no webhook: tags added by the API
        EventFollowUp(
            merchant_id=shop.merchant_id,
            kind="start",
            target="flows.tag_added",
            payload={},
            next_attempt_at=at,
            done_at=at if done else None,
            outcome="started" if done else None,
        )
        for at, done in ((old, True), (young, True), (old, False))
    )
    spent = SendReservation(
        merchant_id=shop.merchant_id,
        account_id=shop.account.id,
        kind=SendKind.campaign,
        reserved_at=NOW - timedelta(hours=49),
    )
    in_window = SendReservation(
        merchant_id=shop.merchant_id,
        account_id=shop.account.id,
        kind=SendKind.inbox,
        reserved_at=NOW - timedelta(hours=47),
    )
    old_call, new_call = (
        LLMCall(merchant_id=shop.merchant_id, model="m", latency_ms=5, outcome="ok", created_at=at)
        for at in (NOW - timedelta(days=91), NOW - timedelta(days=89))
    )
    async with sessions() as session, session.begin():
        session.add_all(events)
        await session.flush()
        session.add_all([*follow_ups, tagged_long_ago, tagged_lately, tag_owed])
        session.add_all([spent, in_window, old_call, new_call])

    metrics_path = f"/campaigns/{shop.campaign.id}/metrics"
    before = (await api.get(metrics_path)).json()["data"]
    recipients_path = f"/campaigns/{shop.campaign.id}/recipients"
    listed_before = (await api.get(recipients_path)).json()["data"]
    counted_before = await _llm_calls_counted(sessions, shop.merchant_id)
    assert before["opened"] == 1 and counted_before == 2

    report = await prune_retained(sessions, WINDOWS, now=NOW, batch=100, max_batches=5)

    assert (report.webhook_events, report.opens_recorded, report.follow_ups) == (3, 1, 1)
    assert (report.ledger_rows, report.llm_calls, report.more) == (1, 1, False)
    kept = await _existing(sessions, WebhookEvent, [e.id for e in events])
    assert kept == {owing.id, unapplied.id, recent.id}
    tags = [tagged_long_ago, tagged_lately, tag_owed]
    assert await _existing(sessions, EventFollowUp, [f.id for f in follow_ups + tags]) == {
        follow_ups[1].id,
        tagged_lately.id,
        tag_owed.id,
    }
    assert await _existing(sessions, SendReservation, [spent.id, in_window.id]) == {in_window.id}
    assert await _existing(sessions, LLMCall, [old_call.id, new_call.id]) == {new_call.id}
    # What the merchant reads is what it read before: the open, its date, the calls counted.
    assert (await api.get(metrics_path)).json()["data"] == before
    assert (await api.get(recipients_path)).json()["data"] == listed_before
    assert listed_before[0]["openedAt"] is not None
    assert await _llm_calls_counted(sessions, shop.merchant_id) == counted_before


async def test_a_pass_deletes_in_bounded_batches_and_the_next_goes_on(
    api: Api, sessions: SessionMaker
) -> None:
    shop = await _shop(sessions, api.merchant.id)
    events = [_event(shop, NOW - timedelta(days=40, minutes=i)) for i in range(5)]
    async with sessions() as session, session.begin():
        session.add_all(events)
    ids = [e.id for e in events]

    first = await prune_retained(sessions, WINDOWS, now=NOW, batch=2, max_batches=2)
    assert (first.webhook_events, first.more) == (4, True)
    # Oldest first: the one received last (40 days ago exactly) is what is left.
    assert await _existing(sessions, WebhookEvent, ids) == {events[0].id}

    second = await prune_retained(sessions, WINDOWS, now=NOW, batch=2, max_batches=2)
    assert (second.webhook_events, second.more) == (1, False)
    assert await _existing(sessions, WebhookEvent, ids) == set()


async def test_the_maintenance_schedule_prunes_with_the_configured_windows(
    api: Api, sessions: SessionMaker, settings: Settings, temporal_client: Client, worker: None
) -> None:
    shop = await _shop(sessions, api.merchant.id)
    now = utcnow()
    past = _event(shop, now - timedelta(days=31))  # MKTX_RAW_EVENT_RETENTION_DAYS: 30
    within = _event(shop, now - timedelta(days=29))
    calls = [
        LLMCall(merchant_id=shop.merchant_id, model="m", latency_ms=5, outcome="ok", created_at=at)
        for at in (now - timedelta(days=91), now - timedelta(days=89))  # ...LLM_CALL...: 90
    ]
    async with sessions() as session, session.begin():
        session.add_all([past, within, *calls])

    result = await temporal_client.execute_workflow(
        MaintenanceWorkflow.run,
        RETENTION_ONLY,
        id=f"maintenance-retention-{uuid.uuid4().hex[:8]}",
        task_queue=settings.task_queue,
        execution_timeout=timedelta(seconds=60),
    )

    assert result.retention is not None and result.retention.webhook_events >= 1
    assert result.retention.llm_calls >= 1
    assert await _existing(sessions, WebhookEvent, [past.id, within.id]) == {within.id}
    assert await _existing(sessions, LLMCall, [c.id for c in calls]) == {calls[1].id}
    async with sessions() as session:
        left = await session.execute(
            select(func.count()).where(col(WebhookEvent.merchant_id) == shop.merchant_id)
        )
        assert left.scalar_one() == 1

    # A run told to skip it (as the other sweeps' tests do) prunes nothing.
    skipped = await temporal_client.execute_workflow(
        MaintenanceWorkflow.run,
        RETENTION_ONLY.model_copy(update={"retention_batch": 0}),
        id=f"maintenance-retention-{uuid.uuid4().hex[:8]}",
        task_queue=settings.task_queue,
        execution_timeout=timedelta(seconds=60),
    )
    assert skipped.retention is None
