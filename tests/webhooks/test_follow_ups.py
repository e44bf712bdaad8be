"""Durable follow-ups: what an ingested event owes the workflows waiting on its contact is
recorded with the event and carried out exactly once per event and target — right after the
answer, or by the maintenance step when Temporal was away, or again after a holder died."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, update
from sqlmodel import col
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

import activities.listeners
import activities.maintenance
from activities.deps import WorkerDeps
from api.app import create_app
from integrations.x import x_client_from_settings
from mktx.secrets import SecretBox
from mktx.settings import Settings
from models.conversation import Message, MessageDirection, MessageStatus
from models.db import SessionMaker, utcnow
from models.listener import WorkflowListener
from models.webhook_event import EventFollowUp, WebhookEvent
from sandbox.admin import SandboxAdmin, SandboxUser
from services.inbox.listeners import start_reply_waiter
from services.ingestion import (
    Trigger,
    TriggerRegistry,
    WorkflowStart,
    carry_out_due,
    reprocess_due,
)
from services.ingestion.follow_up import MAX_ATTEMPTS
from services.ingestion.triggers import arm_triggers
from tests.conftest import Api, Merchant
from tests.stoppable_temporal import StoppableTemporal
from tests.webhooks.conftest import (
    Shop,
    contacts_of,
    conversations_of,
    eventually,
    follow_payload,
    follow_ups_of,
    inbound,
    ingestion_of,
    new_id,
    post_signed,
    raw_events,
    x_user,
)
from tests.webhooks.recorder import RECORDER_WORKFLOW, ContactEventRecorder, RecorderInput
from workflows import ids
from workflows.contact_reply import AwaitContactReplyWorkflow
from workflows.contracts.contact_events import ContactEvent, ContactEventKind
from workflows.contracts.listeners import ContactReply
from workflows.maintenance import MaintenanceInput, MaintenanceResult, MaintenanceWorkflow

RECORDER_TRIGGER = "test.recorder"


def recorder_id(contact_id: uuid.UUID) -> str:
    return f"test-recorder:{contact_id}"


def recorder_triggers(task_queue: str) -> TriggerRegistry:
    """A new follower starts a ContactEventRecorder for the contact (as a flow would enrol it)."""

    async def enrol(event: ContactEvent) -> WorkflowStart | None:
        return WorkflowStart.of(
            RECORDER_WORKFLOW,
            recorder_id(event.contact_id),
            RecorderInput(contact_id=event.contact_id),
            task_queue=task_queue,
            search_attributes=ids.contact_attributes(event.merchant_id, str(event.contact_id)),
        )

    return TriggerRegistry([Trigger(RECORDER_TRIGGER, frozenset({ContactEventKind.follow}), enrol)])


@pytest.fixture(autouse=True)
async def recorder_armed(sessions: SessionMaker, merchant: Merchant) -> None:
    """The recorder's trigger wants this test's merchant's events (as an active flow arms its
    trigger for its merchant)."""
    async with sessions() as session, session.begin():
        await arm_triggers(session, merchant.id, prefix="test.", armed=[RECORDER_TRIGGER])


@asynccontextmanager
async def api_of(settings: Settings, triggers: TriggerRegistry) -> AsyncIterator[httpx.AsyncClient]:
    """An API process of its own: these settings (its Temporal), these triggers."""
    app = create_app(settings, triggers=triggers)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://x.test") as client:
            yield client


async def signals_received(handle: WorkflowHandle[Any, Any]) -> int:
    """Contact events the workflow got, by its history (a signal-with-start's included)."""
    history = await handle.fetch_history()
    signalled = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
    return sum(1 for event in history.events if event.event_type == signalled)


async def settled(sessions: SessionMaker, merchant_id: str) -> list[EventFollowUp]:
    """The merchant's follow-ups once each has had its first attempt (after the answer)."""
    return await eventually(
        lambda: follow_ups_of(sessions, merchant_id),
        lambda rows: bool(rows) and all(r.attempts > 0 for r in rows),
    )


@pytest.fixture
async def recorder_queue(temporal_client: Client) -> AsyncIterator[str]:
    queue = f"recorder-{uuid.uuid4().hex[:8]}"
    async with Worker(temporal_client, task_queue=queue, workflows=[ContactEventRecorder]):
        yield queue


async def test_a_trigger_starts_its_workflow_once_however_often_x_delivers_the_event(
    api: Api,
    shop: Shop,
    x_admin: SandboxAdmin,
    sessions: SessionMaker,
    settings: Settings,
    temporal_client: Client,
    recorder_queue: str,
) -> None:
    fan = await x_user(x_admin, "fan")
    payload = follow_payload(shop, fan)
    async with api_of(settings, recorder_triggers(recorder_queue)) as client:
        answers = [(await post_signed(client, payload)).json()["data"] for _ in range(3)]
    assert [(a["stored"], a["duplicates"]) for a in answers] == [(1, 0), (0, 1), (0, 1)]

    (contact,) = await contacts_of(sessions, shop.account_id)
    (raw,) = await raw_events(sessions, shop.x_id)
    (follow_up,) = await follow_ups_of(sessions, api.merchant.id)
    assert (follow_up.kind, follow_up.target, follow_up.webhook_event_id) == (
        "start",
        RECORDER_TRIGGER,
        raw.id,
    )
    assert (follow_up.outcome, follow_up.attempts) == ("started", 1)
    assert follow_up.start is not None and follow_up.start[0]["workflow_id"] == recorder_id(
        contact.id
    )
    assert follow_up.payload.keys() == ContactEvent.model_fields.keys()

    handle = temporal_client.get_workflow_handle_for(
        ContactEventRecorder.run, recorder_id(contact.id)
    )
    await handle.signal(ContactEventRecorder.stop)
    (event,) = await asyncio.wait_for(handle.result(), timeout=30)
    assert (event.kind, event.contact_id, event.event_id) == (
        ContactEventKind.follow,
        contact.id,
        raw.id,
    )
    described = await handle.describe()
    assert described.typed_search_attributes.get(ids.CONTACT_ID) == str(contact.id)


async def test_a_follow_up_carried_out_again_after_its_holder_died_reaches_its_workflow_once(
    api: Api,
    shop: Shop,
    customer: SandboxUser,
    x_admin: SandboxAdmin,
    sessions: SessionMaker,
    settings: Settings,
    temporal_client: Client,
    recorder_queue: str,
) -> None:
    triggers = recorder_triggers(recorder_queue)
    fan = await x_user(x_admin, "fan")
    async with api_of(settings, triggers) as client:
        assert (await post_signed(client, follow_payload(shop, fan))).status_code == 200
        (contact,) = await contacts_of(sessions, shop.account_id)
        # The recorder also listens to the contact: the DM owes it a plain signal.
        async with sessions() as session:
            session.add(
                WorkflowListener(
                    merchant_id=api.merchant.id,
                    contact_id=contact.id,
                    workflow_id=recorder_id(contact.id),
                    expires_at=utcnow() + timedelta(hours=1),
                )
            )
            await session.commit()
        assert (await post_signed(client, inbound(shop, fan, "hi there"))).status_code == 200
    start, signal = await settled(sessions, api.merchant.id)
    assert (start.outcome, signal.outcome) == ("started", "signalled")
    handle = temporal_client.get_workflow_handle_for(
        ContactEventRecorder.run, recorder_id(contact.id)
    )
    assert await signals_received(handle) == 2

    # Temporal took both calls, then the holder died before marking them: due again.
    async with sessions() as session:
        await session.execute(
            update(EventFollowUp)
            .where(col(EventFollowUp.id).in_([start.id, signal.id]))
            .values(done_at=None, outcome=None, next_attempt_at=utcnow() - timedelta(seconds=1))
        )
        await session.commit()
    await carry_out_due(sessions, temporal_client, triggers)
    again = await follow_ups_of(sessions, api.merchant.id)
    assert [(f.outcome, f.attempts) for f in again] == [("signalled", 2), ("signalled", 2)]
    assert await signals_received(handle) == 2  # Temporal knew both requests: nothing twice
    await handle.signal(ContactEventRecorder.stop)
    events = await asyncio.wait_for(handle.result(), timeout=30)
    assert [e.kind for e in events] == [ContactEventKind.follow, ContactEventKind.message]


async def test_a_follow_up_that_keeps_failing_backs_off_then_is_given_up_with_its_error(
    api: Api,
    shop: Shop,
    x_admin: SandboxAdmin,
    sessions: SessionMaker,
    settings: Settings,
    temporal_client: Client,
    recorder_queue: str,
) -> None:
    fan = await x_user(x_admin, "fan")
    async with api_of(settings, recorder_triggers(recorder_queue)) as client:
        assert (await post_signed(client, follow_payload(shop, fan))).status_code == 200
    (follow_up,) = await settled(sessions, api.merchant.id)

    # A process that no longer has the trigger the row was recorded for (a deploy removed it).
    async with sessions() as session:
        await session.execute(
            update(EventFollowUp)
            .where(col(EventFollowUp.id) == follow_up.id)
            .values(done_at=None, outcome=None, next_attempt_at=utcnow(), start=None)
        )
        await session.commit()
    before = utcnow()
    await carry_out_due(sessions, temporal_client, TriggerRegistry())
    (failed,) = await follow_ups_of(sessions, api.merchant.id)
    assert (failed.done_at, failed.attempts) == (None, 2)
    assert failed.last_error and "no trigger named 'test.recorder'" in failed.last_error
    assert failed.next_attempt_at - before >= timedelta(seconds=9)  # the second backoff: 10 s

    async with sessions() as session:
        await session.execute(
            update(EventFollowUp)
            .where(col(EventFollowUp.id) == follow_up.id)
            .values(attempts=MAX_ATTEMPTS - 1, next_attempt_at=utcnow())
        )
        await session.commit()
    report = await carry_out_due(sessions, temporal_client, TriggerRegistry())
    assert report.given_up >= 1
    (given_up,) = await follow_ups_of(sessions, api.merchant.id)
    assert (given_up.outcome, given_up.attempts) == ("given_up", MAX_ATTEMPTS)
    assert given_up.done_at is not None and "no trigger named" in (given_up.last_error or "")


async def test_an_event_nobody_waits_for_records_nothing(
    api: Api, shop: Shop, customer: SandboxUser, sessions: SessionMaker
) -> None:
    assert (await post_signed(api.client, inbound(shop, customer, "hello"))).status_code == 200
    (contact,) = await contacts_of(sessions, shop.account_id)
    async with sessions() as session:  # a listener hears the contact, not the shop's own DMs
        session.add(
            WorkflowListener(
                merchant_id=api.merchant.id,
                contact_id=contact.id,
                workflow_id=f"listening-{uuid.uuid4().hex}",
                expires_at=utcnow() + timedelta(hours=1),
            )
        )
        await session.commit()
    echo = inbound(shop, customer, "ignored")
    create = echo["direct_message_events"][0]["message_create"]
    create["sender_id"], create["target"]["recipient_id"] = shop.x_id, customer.id
    assert (await post_signed(api.client, echo)).status_code == 200
    assert len(await raw_events(sessions, shop.x_id)) == 2
    assert await follow_ups_of(sessions, api.merchant.id) == []


# Temporal stopped and started again -----------------------------------------------------------

# A maintenance run that carries out follow-ups only (the other sweeps would act on whatever
# other tests left in the shared database).
FOLLOW_UPS_ONLY = MaintenanceInput(
    reprocess_limit=0, outbound_limit=0, owed_limit=0, flow_exit_limit=0, retention_batch=0
)


@asynccontextmanager
async def worker_on(
    client: Client, settings: Settings, sessions: SessionMaker, triggers: TriggerRegistry
) -> AsyncIterator[None]:
    """What these tests need of a worker: the reply waiter and its listener activities, the
    recorder, and the maintenance workflow with these triggers."""
    deps = WorkerDeps(
        settings=settings,
        sessions=sessions,
        x=x_client_from_settings(settings),
        secrets=SecretBox.from_settings(settings),
        temporal=client,
    )
    async with Worker(
        client,
        task_queue=settings.task_queue,
        workflows=[AwaitContactReplyWorkflow, ContactEventRecorder, MaintenanceWorkflow],
        activities=[
            *activities.listeners.build(deps),
            *activities.maintenance.build(deps, triggers),
        ],
    ):
        yield


async def maintenance(client: Client, settings: Settings) -> MaintenanceResult:
    """One run of the maintenance workflow, as the worker's schedule makes them."""
    return await client.execute_workflow(
        MaintenanceWorkflow.run,
        FOLLOW_UPS_ONLY,
        id=f"maintenance-test-{uuid.uuid4().hex[:8]}",
        task_queue=settings.task_queue,
        execution_timeout=timedelta(seconds=60),
    )


async def test_follow_ups_owed_while_temporal_is_stopped_are_carried_out_once_it_is_back(
    api: Api,
    shop: Shop,
    customer: SandboxUser,
    x_admin: SandboxAdmin,
    sessions: SessionMaker,
    settings: Settings,
    tmp_path: Path,
) -> None:
    temporal = StoppableTemporal(tmp_path / "temporal.db")
    own = settings.model_copy(
        update={"temporal_address": temporal.address, "task_queue": f"own-{uuid.uuid4().hex[:8]}"}
    )
    triggers = recorder_triggers(own.task_queue)
    assert (await post_signed(api.client, inbound(shop, customer, "hello"))).status_code == 200
    (contact,) = await contacts_of(sessions, shop.account_id)

    await temporal.start()
    try:
        client = await Client.connect(temporal.address, data_converter=pydantic_data_converter)
        async with worker_on(client, own, sessions, triggers):
            waiter = await start_reply_waiter(
                client,
                task_queue=own.task_queue,
                merchant_id=api.merchant.id,
                contact_id=contact.id,
                key="offline",
                timeout=timedelta(minutes=5),
            )
            assert await eventually(
                lambda: waiter.query(AwaitContactReplyWorkflow.listening), lambda yes: yes
            )
        temporal.stop()

        # Temporal is away: X still gets its 200s, and what the events owe is kept.
        fan = await x_user(x_admin, "fan")
        async with api_of(own, triggers) as api_client:
            reply = await post_signed(api_client, inbound(shop, customer, "are you there?"))
            follow = await post_signed(api_client, follow_payload(shop, fan))
        assert (reply.status_code, follow.status_code) == (200, 200)
        signal, start = await settled(sessions, api.merchant.id)
        assert (signal.kind, signal.target) == ("signal", waiter.id)
        assert (start.kind, start.target) == ("start", RECORDER_TRIGGER)
        for owed in (signal, start):
            assert (owed.done_at, owed.attempts) == (None, 1)
            assert owed.last_error and owed.next_attempt_at > owed.created_at

        await temporal.start()
        async with worker_on(client, own, sessions, triggers):
            # Due 5 s after the failure: the schedule's runs carry them out once they are.
            async def run() -> list[EventFollowUp]:
                await maintenance(client, own)
                return await follow_ups_of(sessions, api.merchant.id)

            done = await eventually(
                run, lambda rows: all(r.done_at is not None for r in rows), timeout=30
            )
            assert [(r.outcome, r.attempts) for r in done] == [("signalled", 2), ("started", 2)]

            answer: ContactReply = await asyncio.wait_for(waiter.result(), timeout=30)
            assert answer.replied and answer.text == "are you there?"
            (fan_contact,) = [
                c for c in await contacts_of(sessions, shop.account_id) if c.id != contact.id
            ]
            recorder = client.get_workflow_handle_for(
                ContactEventRecorder.run, recorder_id(fan_contact.id)
            )
            heard = await recorder.query(ContactEventRecorder.events)
            assert [(e.kind, e.event_id) for e in heard] == [
                (ContactEventKind.follow, start.webhook_event_id)
            ]

            # The next runs find nothing left to do for these events.
            for _ in range(2):
                assert (await maintenance(client, own)).follow_ups is not None
            again = await follow_ups_of(sessions, api.merchant.id)
            assert [(r.outcome, r.attempts) for r in again] == [("signalled", 2), ("started", 2)]
            assert await signals_received(waiter) == 1
            assert await signals_received(recorder) == 1
            await recorder.signal(ContactEventRecorder.stop)
            assert len(await asyncio.wait_for(recorder.result(), timeout=30)) == 1
    finally:
        temporal.stop()


async def test_erasing_a_contact_erases_what_its_events_owed(
    api: Api, shop: Shop, customer: SandboxUser, sessions: SessionMaker
) -> None:
    assert (await post_signed(api.client, inbound(shop, customer, "hello"))).status_code == 200
    (contact,) = await contacts_of(sessions, shop.account_id)
    async with sessions() as session:
        session.add(
            WorkflowListener(
                merchant_id=api.merchant.id,
                contact_id=contact.id,
                workflow_id=f"listening-{uuid.uuid4().hex}",
                expires_at=utcnow() + timedelta(hours=1),
            )
        )
        await session.commit()
    secret = "my address is 1 Private Lane"
    assert (await post_signed(api.client, inbound(shop, customer, secret))).status_code == 200
    (owed,) = await settled(sessions, api.merchant.id)
    assert owed.payload["text"] == secret  # the DM's text travels with it: personal data

    assert (await api.delete(f"/contacts/{contact.id}")).status_code == 200
    assert await follow_ups_of(sessions, api.merchant.id) == []


async def test_an_event_applied_late_owes_what_it_would_have_owed_at_once(
    api: Api,
    shop: Shop,
    customer: SandboxUser,
    sessions: SessionMaker,
    settings: Settings,
    temporal_client: Client,
    recorder_queue: str,
) -> None:
    assert (await post_signed(api.client, inbound(shop, customer, "hello"))).status_code == 200
    (contact,) = await contacts_of(sessions, shop.account_id)
    (conversation,) = await conversations_of(sessions, shop.account_id)
    recorder = await temporal_client.start_workflow(
        ContactEventRecorder.run,
        RecorderInput(contact_id=contact.id),
        id=recorder_id(contact.id),
        task_queue=recorder_queue,
    )
    x_id = new_id()
    async with sessions() as session, session.begin():
        session.add(
            WorkflowListener(
                merchant_id=api.merchant.id,
                contact_id=contact.id,
                workflow_id=recorder.id,
                expires_at=utcnow() + timedelta(hours=1),
            )
        )
        # Another message holds the X id the DM carries: the DM cannot be applied for now.
        blocker = Message(
            merchant_id=api.merchant.id,
            conversation_id=conversation.id,
            account_id=shop.account_id,
            contact_id=contact.id,
            direction=MessageDirection.outbound,
            content="x",
            status=MessageStatus.sent,
            twitter_message_id=x_id,
        )
        session.add(blocker)
    late = inbound(shop, customer, "late", event_id=x_id)
    assert (await post_signed(api.client, late)).status_code == 200
    assert await follow_ups_of(sessions, api.merchant.id) == []  # not applied: owes nothing yet

    async with sessions() as session, session.begin():
        await session.execute(delete(Message).where(col(Message.id) == blocker.id))
        await session.execute(
            update(WebhookEvent)
            .where(col(WebhookEvent.dedup_key).contains(x_id))
            .values(next_attempt_at=utcnow())
        )

    async def temporal() -> Client:
        return temporal_client

    report = await reprocess_due(sessions, ingestion_of(settings), temporal=temporal)
    assert report.applied >= 1
    (owed,) = await follow_ups_of(sessions, api.merchant.id)
    assert (owed.kind, owed.target, owed.outcome, owed.attempts) == (
        "signal",
        recorder.id,
        "signalled",
        1,
    )
    await recorder.signal(ContactEventRecorder.stop)
    (event,) = await asyncio.wait_for(recorder.result(), timeout=30)
    assert (event.kind, event.text, event.event_id) == (
        ContactEventKind.message,
        "late",
        owed.webhook_event_id,
    )
