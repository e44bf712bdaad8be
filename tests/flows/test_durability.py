"""Flows that outlive their worker and their Temporal: a worker SIGKILLed while a send node's
DM is at X (the contact still gets one DM), a follow that arrives while Temporal is stopped
(the contact is enrolled once Temporal is back, once, however often X delivered it), and a run
whose history grows past its limit (it continues as new and ends as it would have).

Judged as a user would: the sandbox's DM log and the flow's executions over the API."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlmodel import col, select
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus

from mktx.settings import Settings
from models.contact import Contact
from models.conversation import Message, MessageStatus
from models.db import SessionMaker, utcnow
from models.flow import AutomationFlow
from models.webhook_event import EventFollowUp
from sandbox.admin import SandboxAdmin
from services.flows import starts
from services.ingestion import carry_out_due
from services.triggers import build_triggers
from tests.campaigns.conftest import WorkerProcess, _worker_env
from tests.conftest import Api, Merchant
from tests.flows.conftest import activate, create_flow, executions, spec_flow, steps
from tests.flows.test_long_waits import nudge_flow, one_fan, start_run, timer_started
from tests.stoppable_temporal import OwnStack, own_stack
from tests.time_skipping import SkippingTemporal
from tests.webhooks.conftest import (
    connect,
    eventually,
    follow_payload,
    follow_ups_of,
    post_signed,
    x_user,
)
from workflows import ids
from workflows.contracts.contact_events import CONTACT_EVENT_SIGNAL, ContactEvent, ContactEventKind
from workflows.contracts.flows import FlowRunResult, RunStatus
from workflows.flow import HISTORY_LIMIT


def one_send(template_id: str) -> dict[str, Any]:
    return {
        "name": "One DM",
        "trigger": {"type": "manual", "config": {}},
        "nodes": [
            {"id": "hello", "type": "send_message", "config": {"templateId": template_id}},
            {"id": "done", "type": "end", "config": {}},
        ],
        "connections": [{"fromNodeId": "hello", "toNodeId": "done"}],
    }


# A worker killed during a send node ------------------------------------------------------


@pytest.fixture
def flow_worker(settings: Settings) -> Iterator[WorkerProcess]:
    """A worker in its own OS process (to SIGKILL), on a task queue of its own."""
    process = WorkerProcess(_worker_env(settings, f"flow-kill-{uuid.uuid4().hex[:8]}"))
    yield process
    process.stop()


async def attempted_dms(sessions: SessionMaker, contact_id: uuid.UUID) -> list[Message]:
    """The contact's DMs that have been handed to X (or are being), whatever X answered."""
    async with sessions() as session:
        rows = await session.exec(
            select(Message).where(
                col(Message.contact_id) == contact_id, col(Message.attempt_at).is_not(None)
            )
        )
        return list(rows.all())


async def test_a_worker_killed_during_a_send_node_sends_the_dm_once(
    api: Api,
    x_admin: SandboxAdmin,
    sessions: SessionMaker,
    settings: Settings,
    temporal_client: Client,
    template_ids: tuple[str, str],
    flow_worker: WorkerProcess,
) -> None:
    world = await one_fan(api, x_admin, sessions, one_send(template_ids[0]))
    shop, flow, fan, contact_id = world.shop, world.flow, world.fan, world.contact_id

    # X takes a second to answer: time for the test to hold the DM's row once it is handed
    # to X, so that the worker, X's answer in hand, cannot record it before it is killed.
    await x_admin.set_faults(latency_ms=1000, path_prefix="/2/dm_conversations")
    flow_worker.start()
    queue = flow_worker.env["MKTX_TASK_QUEUE"]
    async with sessions() as session:
        row = await session.get(AutomationFlow, uuid.UUID(flow["id"]))
        assert row is not None
        enrolled = await starts.enroll(
            session,
            temporal_client,
            settings.model_copy(update={"task_queue": queue}),
            row,
            [contact_id],
        )
    assert (enrolled.enrolled, enrolled.skipped) == (1, [])
    handle = temporal_client.get_workflow_handle(
        ids.flow_id(flow["id"], str(contact_id)), result_type=FlowRunResult
    )

    (sending,) = await eventually(
        lambda: attempted_dms(sessions, contact_id), lambda rows: len(rows) == 1, timeout=30
    )
    async with sessions() as holder, holder.begin():
        await holder.execute(
            text("SELECT 1 FROM messages WHERE id = :id FOR UPDATE"), {"id": sending.id}
        )
        # X has the DM; the worker waits on the row to record it, and dies there.
        landed = await eventually(lambda: x_admin.dms(recipient_id=fan.id), bool, timeout=10)
        assert len(landed) == 1
        await asyncio.sleep(0.3)
        flow_worker.kill()
    await x_admin.clear_faults()
    (unknown,) = await attempted_dms(sessions, contact_id)
    assert (unknown.status, unknown.twitter_message_id) == (MessageStatus.queued, None)
    (run,) = await executions(api, flow["id"])
    assert (run["status"], run["currentNodeId"]) == ("running", "hello")

    flow_worker.start()
    result = await asyncio.wait_for(handle.result(), timeout=60)
    assert result.status is RunStatus.completed
    (dm,) = await x_admin.dms(recipient_id=fan.id)  # one DM: found at X, not sent again
    assert (dm.id, dm.text) == (landed[0].id, "Hi Lan, thanks for following!")
    logged = await x_admin.requests(path_prefix="/2/dm_conversations", user_id=shop.x_id)
    assert any(r.method == "GET" and r.path.endswith("/dm_events") for r in logged)
    (run,) = await executions(api, flow["id"])
    assert (run["status"], run["currentNodeId"]) == ("completed", None)
    detail = (await api.get(f"/automation/flows/{flow['id']}/executions/{run['id']}")).json()
    (send, end) = detail["data"]["steps"]
    assert (send["nodeId"], send["outcome"], send["detail"]["dmEventId"]) == (
        "hello",
        "sent",
        dm.id,
    )
    assert (end["nodeId"], end["outcome"]) == ("done", "ended")
    async with sessions() as session:
        (sent,) = (
            await session.exec(select(Message).where(col(Message.contact_id) == contact_id))
        ).all()
    assert (sent.id, sent.status, sent.twitter_message_id) == (sending.id, "sent", dm.id)


# A follow while Temporal is stopped ---------------------------------------------------------


@pytest.fixture
async def stack(
    settings: Settings, sessions: SessionMaker, merchant: Merchant, tmp_path: Path
) -> AsyncIterator[OwnStack]:
    async with own_stack(settings, sessions, merchant, tmp_path) as stack:
        yield stack


async def test_a_follow_while_temporal_is_stopped_enrols_the_contact_once_it_is_back(
    api: Api,
    x_admin: SandboxAdmin,
    sessions: SessionMaker,
    template_ids: tuple[str, str],
    stack: OwnStack,
) -> None:
    shop = await connect(stack.api, await x_user(x_admin, "shop"))
    body = spec_flow(template_ids)  # trigger: new_follower
    body["nodes"][1]["config"]["duration"] = 1
    flow = await create_flow(stack.api, body)
    await activate(stack.api, flow["id"])
    fan = await x_user(x_admin, "fan", name="Lan")
    await stack.stop_temporal()

    # X delivers the follow twice while Temporal is away: both answered, one event kept.
    payload = follow_payload(shop, fan)
    answers = [(await post_signed(stack.api.client, payload)) for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 200]
    assert [(a.json()["data"]["stored"], a.json()["data"]["duplicates"]) for a in answers] == [
        (1, 0),
        (0, 1),
    ]
    (owed,) = await eventually(
        lambda: follow_ups_of(sessions, api.merchant.id),
        lambda rows: bool(rows) and rows[0].attempts > 0,
    )
    assert (owed.kind, owed.target, owed.done_at, owed.attempts) == (
        "start",
        "flows.new_follower",
        None,
        1,
    )
    assert await executions(api, flow["id"]) == []
    assert await x_admin.dms(recipient_id=fan.id) == []

    await stack.start_temporal()
    triggers = build_triggers(stack.settings, sessions)

    # What maintenance does once the follow-up is due again (its backoff: a few seconds).
    async def carried_out() -> list[EventFollowUp]:
        await carry_out_due(sessions, stack.client, triggers)
        return await follow_ups_of(sessions, api.merchant.id)

    (done,) = await eventually(carried_out, lambda rows: rows[0].done_at is not None, 30)
    assert (done.outcome, done.attempts) == ("started", 2)
    dms = await eventually(lambda: x_admin.dms(recipient_id=fan.id), lambda d: len(d) >= 2, 30)
    assert len(dms) == 2
    runs = await eventually(
        lambda: executions(api, flow["id"]), lambda r: r and r[0]["status"] == "completed"
    )
    (contact_id,) = {run["contactId"] for run in runs}

    # Delivered a third time now, and carried out again: nothing more.
    again = await post_signed(stack.api.client, payload)
    assert again.json()["data"]["duplicates"] == 1
    await carry_out_due(sessions, stack.client, triggers)
    await asyncio.sleep(1)
    assert [dm.text for dm in await x_admin.dms(recipient_id=fan.id)] == [
        "Hi Lan, thanks for following!",
        "Lan, Ao has a gift for you",
    ]
    (run,) = await executions(api, flow["id"])
    assert (run["status"], run["currentNodeId"], run["contactId"]) == (
        "completed",
        None,
        contact_id,
    )
    query = f'WorkflowId = "{ids.flow_id(flow["id"], contact_id)}"'
    assert len([e async for e in stack.client.list_workflows(query)]) == 1
    async with sessions() as session:
        contact = await session.get(Contact, uuid.UUID(contact_id))
        assert contact is not None and contact.twitter_user_id == fan.id


# A run whose history grows large ------------------------------------------------------------


async def test_a_run_whose_history_grows_large_continues_as_new_and_ends_as_it_would_have(
    api: Api,
    x_admin: SandboxAdmin,
    sessions: SessionMaker,
    template_ids: tuple[str, str],
    flow_skipping: SkippingTemporal,
) -> None:
    world = await one_fan(api, x_admin, sessions, nudge_flow(template_ids))
    shop, flow, fan, contact_id = world.shop, world.flow, world.fan, world.contact_id
    handle = await start_run(flow_skipping, sessions, flow["id"], contact_id)
    assert await eventually(lambda: timer_started(handle), lambda yes: yes)

    # The contact reads our DMs over and over (events the run hears, and that are no reply).
    read = ContactEvent(
        kind=ContactEventKind.read,
        merchant_id=api.merchant.id,
        account_id=shop.account_id,
        contact_id=contact_id,
        occurred_at=utcnow(),
    )
    slots = asyncio.Semaphore(8)

    async def signal() -> None:
        async with slots:
            await handle.signal(CONTACT_EVENT_SIGNAL, read)

    async def history_length() -> int:
        described = await handle.describe()
        return described.raw_description.workflow_execution_info.history_length

    for _ in range(20):
        if await history_length() > HISTORY_LIMIT:
            break
        await asyncio.gather(*(signal() for _ in range(400)))
    assert await history_length() > HISTORY_LIMIT

    result = await asyncio.wait_for(handle.result(), timeout=60)  # three days skipped
    assert result.status is RunStatus.completed
    first_run = handle.first_execution_run_id
    assert first_run is not None
    first = await flow_skipping.client.get_workflow_handle(
        handle.id, run_id=first_run
    ).fetch_history()
    assert first.events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
    latest = await flow_skipping.client.get_workflow_handle(handle.id).describe()
    assert latest.run_id != first_run and latest.status == WorkflowExecutionStatus.COMPLETED
    assert [dm.text for dm in await x_admin.dms(recipient_id=fan.id)] == [
        "Lan, Ao has a gift for you"
    ]
    (run,) = await executions(api, flow["id"])
    assert (run["status"], run["currentNodeId"]) == ("completed", None)
    assert await steps(api, flow["id"], run["id"]) == [("ask", "timeout"), ("nudge", "sent")]
