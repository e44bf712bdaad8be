"""Reprocessing backs off: a stored event that keeps failing to apply is tried again later and
later (5 s, doubling, at most an hour), never before it is due, and is given up (settled with
its error) after MAX_ATTEMPTS failures. The maintenance workflow applies due events."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import delete, update
from sqlmodel import col
from temporalio.client import Client

from mktx.settings import Settings
from models.conversation import Conversation, Message, MessageDirection, MessageStatus
from models.db import SessionMaker, utcnow
from models.webhook_event import WebhookEvent
from sandbox.admin import SandboxUser
from services.ingestion.reprocess import (
    FIRST_RETRY,
    MAX_ATTEMPTS,
    MAX_RETRY,
    reprocess_due,
    retry_delay,
)
from tests.conftest import Api
from tests.webhooks.conftest import (
    Shop,
    conversations_of,
    inbound,
    ingestion_of,
    messages_of,
    new_id,
    post_signed,
    raw_events,
)
from workflows.maintenance import MaintenanceInput, MaintenanceWorkflow


async def _failing_event(
    api: Api, shop: Shop, customer: SandboxUser, sessions: SessionMaker
) -> tuple[WebhookEvent, Message]:
    """A DM event that cannot be applied while another message holds the X id it carries."""
    await post_signed(api.client, inbound(shop, customer, "hello"))
    (conversation,) = await conversations_of(sessions, shop.account_id)
    x_id = new_id()
    blocker = await _blocker(sessions, shop, conversation, x_id)
    response = await post_signed(api.client, inbound(shop, customer, "late", event_id=x_id))
    assert response.status_code == 200, response.text  # acknowledged: the raw event is kept
    raw = next(r for r in await raw_events(sessions, shop.x_id) if x_id in r.dedup_key)
    return raw, blocker


async def _blocker(
    sessions: SessionMaker, shop: Shop, conversation: Conversation, x_id: str
) -> Message:
    message = Message(
        merchant_id=conversation.merchant_id,
        conversation_id=conversation.id,
        account_id=shop.account_id,
        contact_id=conversation.contact_id,
        direction=MessageDirection.outbound,
        content="x",
        status=MessageStatus.sent,
        twitter_message_id=x_id,
    )
    async with sessions() as session, session.begin():
        session.add(message)
    return message


async def _event(sessions: SessionMaker, event_id: uuid.UUID) -> WebhookEvent:
    async with sessions() as session:
        row = await session.get(WebhookEvent, event_id)
        assert row is not None
        return row


async def _set(sessions: SessionMaker, event_id: uuid.UUID, **values: object) -> None:
    async with sessions() as session, session.begin():
        await session.execute(
            update(WebhookEvent).where(col(WebhookEvent.id) == event_id).values(**values)
        )


def test_the_delay_doubles_from_five_seconds_up_to_an_hour() -> None:
    assert [retry_delay(n).total_seconds() for n in range(1, 6)] == [5, 10, 20, 40, 80]
    assert retry_delay(1) == FIRST_RETRY
    assert retry_delay(11) == MAX_RETRY and retry_delay(MAX_ATTEMPTS) == MAX_RETRY


async def test_a_failing_event_backs_off_and_is_not_retried_before_it_is_due(
    api: Api, shop: Shop, customer: SandboxUser, sessions: SessionMaker, settings: Settings
) -> None:
    raw, _ = await _failing_event(api, shop, customer, sessions)
    # Ingestion's failure was attempt 1; the next is due 5 s after it.
    assert raw.processed_at is None and raw.error is not None
    assert raw.attempts == 1
    assert raw.next_attempt_at == raw.received_at + FIRST_RETRY

    await reprocess_due(sessions, ingestion_of(settings))  # not due yet: untouched
    row = await _event(sessions, raw.id)
    assert (row.attempts, row.next_attempt_at) == (1, raw.next_attempt_at)

    await _set(sessions, raw.id, next_attempt_at=utcnow() - timedelta(seconds=1))
    before = utcnow()
    report = await reprocess_due(sessions, ingestion_of(settings))
    after = utcnow()
    assert report.failed >= 1
    row = await _event(sessions, raw.id)
    assert row.attempts == 2 and row.processed_at is None
    assert row.error is not None and "uq_messages_x_event" in row.error
    assert row.next_attempt_at is not None
    assert before + retry_delay(2) <= row.next_attempt_at <= after + retry_delay(2)

    await reprocess_due(sessions, ingestion_of(settings))  # due in 10 s: not tried again now
    assert (await _event(sessions, raw.id)).attempts == 2
    assert "late" not in [m.content for m in await messages_of(sessions, shop.account_id)]


async def test_an_event_failing_max_attempts_times_is_given_up_with_its_error(
    api: Api, shop: Shop, customer: SandboxUser, sessions: SessionMaker, settings: Settings
) -> None:
    raw, blocker = await _failing_event(api, shop, customer, sessions)
    await _set(
        sessions, raw.id, attempts=MAX_ATTEMPTS - 1, next_attempt_at=utcnow() - timedelta(seconds=1)
    )

    report = await reprocess_due(sessions, ingestion_of(settings))

    assert report.given_up >= 1
    row = await _event(sessions, raw.id)
    assert row.attempts == MAX_ATTEMPTS and row.next_attempt_at is None
    assert row.processed_at is not None  # settled: no longer pending
    assert row.error is not None and "uq_messages_x_event" in row.error
    # Even once it could apply, a settled event is not tried again.
    async with sessions() as session, session.begin():
        await session.execute(delete(Message).where(col(Message.id) == blocker.id))
    await reprocess_due(sessions, ingestion_of(settings))
    assert (await _event(sessions, raw.id)).attempts == MAX_ATTEMPTS
    assert "late" not in [m.content for m in await messages_of(sessions, shop.account_id)]


async def test_the_maintenance_workflow_applies_a_due_event(
    api: Api,
    shop: Shop,
    customer: SandboxUser,
    sessions: SessionMaker,
    settings: Settings,
    temporal_client: Client,
) -> None:
    raw, blocker = await _failing_event(api, shop, customer, sessions)
    async with sessions() as session, session.begin():
        await session.execute(delete(Message).where(col(Message.id) == blocker.id))
    await _set(sessions, raw.id, attempts=3, next_attempt_at=utcnow())

    result = await temporal_client.execute_workflow(
        MaintenanceWorkflow.run,
        MaintenanceInput(),
        id=f"maintenance-test-{uuid.uuid4().hex[:8]}",
        task_queue=settings.task_queue,
        execution_timeout=timedelta(seconds=60),
    )

    assert result.webhook_events is not None and result.webhook_events.applied >= 1
    late = [m for m in await messages_of(sessions, shop.account_id) if m.content == "late"]
    assert len(late) == 1 and late[0].direction == "inbound"
    row = await _event(sessions, raw.id)
    assert row.processed_at is not None and row.error is None
