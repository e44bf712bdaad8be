"""Escalations to humans as the merchant and the customer see them: assignment, the handoff DM
(once, and when the team is back outside business hours), the SLA timer (on Temporal's
time-skipping server), resolution on an agent's reply or a close, and the bot paused."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, time, timedelta
from typing import Any

import httpx
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle

from mktx.settings import Settings
from models.db import SessionMaker
from sandbox.admin import SandboxAdmin
from services.accounts.hours import WEEKDAYS
from services.assistant import escalations
from tests.assistant.conftest import Chat, ai_on
from tests.assistant.test_auto_replies import (
    SETTLE_SECONDS,
    auto_reply_on,
    context,
    dms_after_settling,
    messages,
    model_requests,
    reply_to,
    say,
    shop_dms,
)
from tests.conftest import Api
from tests.time_skipping import SkippingTemporal, time_skipping_worker
from tests.webhooks.conftest import eventually
from worker import ACTIVITY_BUILDERS, ALL_WORKFLOWS
from workflows import ids
from workflows.assistant import EscalationWorkflow
from workflows.contracts.assistant import EscalationInput, EscalationResult

HANDOFF = "A teammate will take it from here."


async def escalate(api: Api, chat: Chat, reason: str = "the customer is upset") -> dict[str, Any]:
    response = await api.post(
        f"/ai/conversations/{chat.conversation_id}/escalate", json={"reason": reason}
    )
    assert response.status_code == 200, response.text
    return response.json()["data"]  # type: ignore[no-any-return]


def escalation_handle(client: Client, chat: Chat) -> WorkflowHandle[Any, EscalationResult]:
    return client.get_workflow_handle(
        ids.escalation_id(chat.conversation_id), result_type=EscalationResult
    )


async def timer_started(handle: WorkflowHandle[Any, Any]) -> bool:
    history = await handle.fetch_history()
    return any(e.event_type == EventType.EVENT_TYPE_TIMER_STARTED for e in history.events)


async def waiting_on_its_sla(handle: WorkflowHandle[Any, Any]) -> None:
    """The escalation's workflow began (assigned, handoff queued) and runs its SLA timer."""
    assert await eventually(lambda: timer_started(handle), bool), "no SLA timer started"
    assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING


@pytest.fixture
async def skipping(settings: Settings, sessions: SessionMaker) -> AsyncIterator[SkippingTemporal]:
    """The time-skipping server with every workflow and activity on a queue of its own."""
    queue = f"escalation-skip-{uuid.uuid4().hex[:8]}"
    async with time_skipping_worker(
        settings,
        sessions,
        task_queue=queue,
        workflows=ALL_WORKFLOWS,
        activity_builders=ACTIVITY_BUILDERS,
        settings_update={"task_queue": queue},
    ) as running:
        yield running


async def test_an_escalation_assigns_the_conversation(
    api: Api, chat: Chat, temporal_client: Client
) -> None:
    await ai_on(api, escalation={"assignTo": "agent-42"})

    escalation = await escalate(api, chat)

    assert escalation["assignedToUserId"] == "agent-42" and escalation["status"] == "open"
    shown = (await api.get(f"/conversations/{chat.conversation_id}")).json()["data"]
    assert shown["assignedToUserId"] == "agent-42"
    assigned = await api.get("/conversations", params={"assignedTo": "agent-42"})
    assert [c["id"] for c in assigned.json()["data"]] == [chat.conversation_id]
    await waiting_on_its_sla(escalation_handle(temporal_client, chat))


async def test_an_escalating_answer_sends_the_handoff_once_not_the_models_response(
    api: Api, app_client: httpx.AsyncClient, chat: Chat, x_admin: SandboxAdmin
) -> None:
    await ai_on(api, escalation={"handoffMessage": HANDOFF})
    await auto_reply_on(api, chat)
    asked = "I want to talk to a human"

    await say(app_client, chat, asked)

    assert await dms_after_settling(x_admin, chat) == [HANDOFF]
    assert reply_to(asked) != HANDOFF
    ai = await context(api, chat.conversation_id)
    assert ai["escalation"]["reason"] == "human_request" and ai["botPaused"] is True
    bot = [m["content"] for m in await messages(api, chat.conversation_id) if m["isFromBot"]]
    assert bot == [HANDOFF]
    # Writing again (and asking again) neither answers nor hands off a second time.
    await say(app_client, chat, "hello? is a human there?")
    await asyncio.sleep(SETTLE_SECONDS)
    assert [dm.text for dm in await shop_dms(x_admin, chat)] == [HANDOFF]


async def test_outside_business_hours_the_handoff_says_when_the_team_is_back(
    api: Api, app_client: httpx.AsyncClient, chat: Chat, x_admin: SandboxAdmin
) -> None:
    # Open only on the weekday two days from now (UTC): closed now, open at 09:00 that day.
    day = datetime.now(UTC).date() + timedelta(days=2)
    opening = datetime.combine(day, time(9, 0), UTC)
    hours = {
        "enabled": True,
        "timezone": "UTC",
        "schedule": {WEEKDAYS[day.weekday()]: {"start": "09:00", "end": "17:00"}},
    }
    updated = await api.put(f"/accounts/{chat.shop.account_id}", json={"businessHours": hours})
    assert updated.status_code == 200, updated.text
    await ai_on(api, escalation={"handoffMessage": HANDOFF, "slaMinutes": 45})
    await auto_reply_on(api, chat)

    await say(app_client, chat, "can I speak to a person please")

    (handoff,) = await dms_after_settling(x_admin, chat)
    assert handoff.startswith(HANDOFF)
    assert f"{day:%A}" in handoff and "09:00" in handoff, handoff
    escalation = (await context(api, chat.conversation_id))["escalation"]
    assert datetime.fromisoformat(escalation["escalatedAt"]) < opening
    assert datetime.fromisoformat(escalation["slaDueAt"]) == opening + timedelta(minutes=45)


async def test_an_sla_breach_marks_the_escalation_breached_and_keeps_it_open(
    api: Api, chat: Chat, temporal_client: Client, skipping: SkippingTemporal
) -> None:
    await ai_on(api, escalation={"slaMinutes": 30})
    # The row through the API; its workflow on the time-skipping server (which has no search
    # attributes to start it with), the dev server's own run stopped first.
    escalation = await escalate(api, chat, "vip customer")
    await escalation_handle(temporal_client, chat).terminate("replaced by a time-skipping run")
    await skipping.client.start_workflow(
        EscalationWorkflow.run,
        EscalationInput(
            merchant_id=api.merchant.id,
            conversation_id=uuid.UUID(chat.conversation_id),
            escalation_id=uuid.UUID(escalation["id"]),
        ),
        id=ids.escalation_id(chat.conversation_id),
        task_queue=skipping.task_queue,
    )
    handle = escalation_handle(skipping.client, chat)
    await waiting_on_its_sla(handle)
    assert (await context(api, chat.conversation_id))["escalation"]["breached"] is False

    await skipping.env.sleep(timedelta(minutes=29))
    await asyncio.sleep(0.5)
    assert (await context(api, chat.conversation_id))["escalation"]["breached"] is False
    await skipping.env.sleep(timedelta(minutes=2))

    ai_context = await eventually(
        lambda: context(api, chat.conversation_id), lambda c: c["escalation"]["breached"]
    )
    escalation = ai_context["escalation"]
    assert escalation["breached"] is True
    assert escalation["status"] == "open" and escalation["resolvedAt"] is None
    assert escalation["resolution"] is None
    assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING


async def test_an_agents_reply_resolves_the_escalation(
    api: Api, chat: Chat, temporal_client: Client
) -> None:
    await escalate(api, chat)
    handle = escalation_handle(temporal_client, chat)
    await waiting_on_its_sla(handle)

    sent = await api.post(
        f"/conversations/{chat.conversation_id}/messages", json={"content": "Hi, Sam here."}
    )
    assert sent.status_code == 200, sent.text

    result = await asyncio.wait_for(handle.result(), 15)
    assert result == EscalationResult(breached=False, resolution="agent_replied")
    escalation = (await context(api, chat.conversation_id))["escalation"]
    assert escalation["status"] == "resolved" and escalation["resolution"] == "agent_replied"
    assert escalation["resolvedAt"] is not None and escalation["breached"] is False


async def test_closing_the_conversation_resolves_the_escalation(
    api: Api, chat: Chat, temporal_client: Client
) -> None:
    await escalate(api, chat)
    handle = escalation_handle(temporal_client, chat)
    await waiting_on_its_sla(handle)

    closed = await api.put(f"/conversations/{chat.conversation_id}/close")
    assert closed.status_code == 200, closed.text

    result = await asyncio.wait_for(handle.result(), 15)
    assert result == EscalationResult(breached=False, resolution="closed")
    escalation = (await context(api, chat.conversation_id))["escalation"]
    assert escalation["status"] == "resolved" and escalation["resolution"] == "closed"
    assert escalation["resolvedAt"] is not None


async def test_escalating_by_hand_pauses_the_bot(
    api: Api, app_client: httpx.AsyncClient, chat: Chat, x_admin: SandboxAdmin
) -> None:
    await auto_reply_on(api, chat)
    question = "where is my order #51011?"
    await say(app_client, chat, question)
    assert await dms_after_settling(x_admin, chat) == [reply_to(question)]

    escalation = await escalate(api, chat, "a refund over the limit")
    assert escalation["status"] == "open" and escalation["reason"] == "a refund over the limit"
    await say(app_client, chat, "and order #51022?")
    await asyncio.sleep(SETTLE_SECONDS)

    # Escalated by a person: no handoff DM, and no answer to the DM that followed.
    assert [dm.text for dm in await shop_dms(x_admin, chat)] == [reply_to(question)]
    assert await model_requests(x_admin, "#51022") == []
    assert (await context(api, chat.conversation_id))["botPaused"] is True


async def test_an_escalation_committed_slowly_still_runs_its_sla(
    api: Api, chat: Chat, temporal_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`escalate` starts the workflow before its caller commits the row: a commit that lands
    a moment later (a busy database) must not end the escalation unseen."""
    original = escalations.escalate

    async def slow_commit(*args: Any, **kwargs: Any) -> Any:
        row = await original(*args, **kwargs)
        await asyncio.sleep(1.0)  # the caller's commit comes after this
        return row

    monkeypatch.setattr(escalations, "escalate", slow_commit)

    await escalate(api, chat)

    handle = escalation_handle(temporal_client, chat)
    await asyncio.sleep(1.0)
    description = await handle.describe()
    assert description.status == WorkflowExecutionStatus.RUNNING, await handle.result()
    await waiting_on_its_sla(handle)
