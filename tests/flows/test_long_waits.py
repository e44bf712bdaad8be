"""Day-long waits on Temporal's time-skipping test server, with the real flow interpreter and
its activities against the session's database and sandbox: the spec's example flow (a day
between its two DMs), a `wait_for_reply` that times out after three days, and a send held until
the account's business hours open.

A run is started as ingestion or enrolment would start it (`services.flows.starts.run_input` of
the flow's activated version, id `flow:{flowId}:{contactId}`), on the time-skipping server's own
task queue. Time moves only while a test awaits the run's result or `env.sleep`s."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
from sqlmodel import col, select
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle

from models.conversation import Message
from models.db import SessionMaker
from models.flow import AutomationFlow
from models.quota import SendReservation
from sandbox.admin import SandboxAdmin, SandboxUser
from services.accounts.hours import WEEKDAYS
from services.flows.starts import active_version, run_input
from tests.conftest import Api
from tests.flows.conftest import (
    activate,
    add_contact,
    create_flow,
    executions,
    spec_flow,
    steps,
)
from tests.time_skipping import SkippingTemporal
from tests.webhooks.conftest import Shop, connect, eventually, x_user
from workflows import ids
from workflows.contracts.flows import FlowRunResult, RunStatus
from workflows.flow import FlowRunWorkflow

DAY = 86_400

# Helpers, shared with test_durability.py ----------------------------------------------------


@dataclass
class OneFan:
    """A connected shop with an active flow, and Lan, a sandbox user stored as its contact."""

    shop: Shop
    flow: dict[str, Any]
    fan: SandboxUser
    contact_id: uuid.UUID


async def one_fan(
    api: Api, x_admin: SandboxAdmin, sessions: SessionMaker, body: dict[str, Any]
) -> OneFan:
    shop = await connect(api, await x_user(x_admin, "shop"))
    flow = await create_flow(api, body)
    await activate(api, flow["id"])
    fan = await x_user(x_admin, "fan", name="Lan")
    return OneFan(shop, flow, fan, await add_contact(sessions, api, shop, fan))


async def start_run(
    skipping: SkippingTemporal, sessions: SessionMaker, flow_id: str, contact_id: uuid.UUID
) -> WorkflowHandle[Any, FlowRunResult]:
    """Start the contact's run of the flow's active version, with the input ingestion gives it,
    on the time-skipping server's queue."""
    async with sessions() as session:
        flow = await session.get(AutomationFlow, uuid.UUID(flow_id))
        assert flow is not None
        version = await active_version(session, flow)
        assert version is not None, "activate the flow first"
        request = run_input(flow, version, contact_id)
    return await skipping.client.start_workflow(
        FlowRunWorkflow.run,
        request,
        id=ids.flow_id(flow_id, str(contact_id)),
        task_queue=skipping.task_queue,
    )


async def timer_started(handle: WorkflowHandle[Any, Any]) -> bool:
    history = await handle.fetch_history()
    return any(e.event_type == EventType.EVENT_TYPE_TIMER_STARTED for e in history.events)


async def reservations(sessions: SessionMaker, contact_id: uuid.UUID) -> list[datetime]:
    """When each DM to the contact took its quota slot (the send path's clock)."""
    async with sessions() as session:
        rows = await session.exec(
            select(SendReservation.reserved_at)
            .join(Message, col(Message.id) == col(SendReservation.message_id))
            .where(col(Message.contact_id) == contact_id)
            .order_by(col(SendReservation.reserved_at))
        )
        return list(rows.all())


def nudge_flow(template_ids: tuple[str, str]) -> dict[str, Any]:
    """Wait three days for a reply: thank a contact who writes, nudge one who does not."""
    welcome, gift = template_ids
    return {
        "name": "Nudge",
        "trigger": {"type": "manual", "config": {}},
        "nodes": [
            {"id": "ask", "type": "wait_for_reply", "config": {"timeout": 3 * DAY}},
            {"id": "thanks", "type": "send_message", "config": {"templateId": welcome}},
            {
                "id": "nudge",
                "type": "send_message",
                "config": {"templateId": gift, "variables": {"shop_name": "Ao"}},
            },
        ],
        "connections": [
            {"fromNodeId": "ask", "toNodeId": "thanks", "branch": "replied"},
            {"fromNodeId": "ask", "toNodeId": "nudge", "branch": "timeout"},
        ],
    }


# The tests -----------------------------------------------------------------------------------


async def test_spec_flow_sends_the_second_dm_only_once_the_day_has_passed(
    api: Api,
    x_admin: SandboxAdmin,
    sessions: SessionMaker,
    template_ids: tuple[str, str],
    flow_skipping: SkippingTemporal,
) -> None:
    world = await one_fan(api, x_admin, sessions, spec_flow(template_ids))  # node-2: 86,400 s
    flow, fan = world.flow, world.fan
    started = await flow_skipping.env.get_current_time()

    handle = await start_run(flow_skipping, sessions, flow["id"], world.contact_id)
    first = await eventually(lambda: x_admin.dms(recipient_id=fan.id), lambda d: len(d) >= 1)
    assert [dm.text for dm in first] == ["Hi Lan, thanks for following!"]
    assert await eventually(lambda: timer_started(handle), lambda yes: yes)
    (run,) = await executions(api, flow["id"])
    assert (run["status"], run["currentNodeId"]) == ("running", "node-2")

    # Most of the day goes by: still the one DM, still waiting.
    await flow_skipping.env.sleep(timedelta(hours=23))
    await asyncio.sleep(0.5)
    assert len(await x_admin.dms(recipient_id=fan.id)) == 1
    (run,) = await executions(api, flow["id"])
    assert (run["status"], run["currentNodeId"]) == ("running", "node-2")

    result = await asyncio.wait_for(handle.result(), timeout=60)  # the rest of the day skipped
    assert result.status is RunStatus.completed
    assert await flow_skipping.env.get_current_time() - started >= timedelta(seconds=DAY)
    dms = await x_admin.dms(recipient_id=fan.id)
    assert [dm.text for dm in dms] == [
        "Hi Lan, thanks for following!",
        "Lan, Ao has a gift for you",
    ]
    (run,) = await executions(api, flow["id"])
    assert run["status"] == "completed"
    assert run["currentNodeId"] is None and run["completedAt"] is not None
    assert await steps(api, flow["id"], run["id"]) == [
        ("node-1", "sent"),
        ("node-2", "waited"),
        ("node-3", "sent"),
    ]


async def test_wait_for_reply_without_a_reply_takes_the_timeout_branch_after_three_days(
    api: Api,
    x_admin: SandboxAdmin,
    sessions: SessionMaker,
    template_ids: tuple[str, str],
    flow_skipping: SkippingTemporal,
) -> None:
    world = await one_fan(api, x_admin, sessions, nudge_flow(template_ids))
    flow, fan = world.flow, world.fan
    started = await flow_skipping.env.get_current_time()

    handle = await start_run(flow_skipping, sessions, flow["id"], world.contact_id)
    assert await eventually(lambda: timer_started(handle), lambda yes: yes)
    await flow_skipping.env.sleep(timedelta(days=2, hours=23))
    await asyncio.sleep(0.5)
    assert await x_admin.dms(recipient_id=fan.id) == []  # not yet three days

    result = await asyncio.wait_for(handle.result(), timeout=60)
    assert result.status is RunStatus.completed
    assert await flow_skipping.env.get_current_time() - started >= timedelta(days=3)
    assert [dm.text for dm in await x_admin.dms(recipient_id=fan.id)] == [
        "Lan, Ao has a gift for you"
    ]
    (run,) = await executions(api, flow["id"])
    assert (run["status"], run["currentNodeId"]) == ("completed", None)
    assert await steps(api, flow["id"], run["id"]) == [("ask", "timeout"), ("nudge", "sent")]


async def test_a_business_hours_send_waits_until_the_hours_open(
    api: Api,
    x_admin: SandboxAdmin,
    sessions: SessionMaker,
    template_ids: tuple[str, str],
    flow_skipping: SkippingTemporal,
) -> None:
    welcome, _ = template_ids
    world = await one_fan(
        api,
        x_admin,
        sessions,
        {
            "name": "Office hours",
            "trigger": {"type": "manual", "config": {}},
            "nodes": [
                {
                    "id": "hello",
                    "type": "send_message",
                    "config": {"templateId": welcome, "businessHoursOnly": True},
                }
            ],
        },
    )
    flow, fan = world.flow, world.fan
    # Open tomorrow (UTC) from 09:00 to 10:00 only: closed now, whatever the time of day.
    now = (await flow_skipping.env.get_current_time()).astimezone(UTC)
    tomorrow = now.date() + timedelta(days=1)
    opens = datetime.combine(tomorrow, time(9), UTC)
    closes = opens + timedelta(hours=1)
    hours = {
        "enabled": True,
        "timezone": "UTC",
        "schedule": {WEEKDAYS[tomorrow.weekday()]: {"start": "09:00", "end": "10:00"}},
    }
    updated = await api.put(f"/accounts/{world.shop.account_id}", json={"businessHours": hours})
    assert updated.status_code == 200, updated.text

    handle = await start_run(flow_skipping, sessions, flow["id"], world.contact_id)
    assert await eventually(lambda: timer_started(handle), lambda yes: yes)
    await asyncio.sleep(0.5)
    assert await x_admin.dms(recipient_id=fan.id) == []  # closed: nothing goes out
    (run,) = await executions(api, flow["id"])
    assert (run["status"], run["currentNodeId"]) == ("running", "hello")

    try:
        result = await asyncio.wait_for(handle.result(), timeout=20)
    except TimeoutError:
        history = await handle.fetch_history()
        timers = sum(
            1 for e in history.events if e.event_type == EventType.EVENT_TYPE_TIMER_STARTED
        )
        await handle.terminate("the test gave up")
        pytest.fail(
            f"the business-hours send did not go out once the hours opened ({timers} timers, "
            f"workflow time {await flow_skipping.env.get_current_time()}, opening {opens})"
        )
    assert result.status is RunStatus.completed
    assert await flow_skipping.env.get_current_time() >= opens
    assert [dm.text for dm in await x_admin.dms(recipient_id=fan.id)] == [
        "Hi Lan, thanks for following!"
    ]
    (reserved,) = await reservations(sessions, world.contact_id)
    assert opens <= reserved < closes, (reserved, opens)
    (run,) = await executions(api, flow["id"])
    assert run["status"] == "completed"
    assert await steps(api, flow["id"], run["id"]) == [("hello", "sent")]
