"""The AI assistant's activities: answering a conversation's DMs (auto-reply) and the steps
of an escalation (services/assistant/). Names and payloads: workflows/contracts/assistant.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from temporalio import activity

from activities.deps import WorkerDeps
from integrations.llm import LLMClient
from services.assistant import auto_reply, escalations
from services.assistant import settings as ai_settings
from services.messaging.delivery import Delivery
from workflows.contracts import assistant as contract
from workflows.contracts.assistant import (
    AutoReplyInput,
    AutoReplyResult,
    EscalationBegun,
    EscalationInput,
    EscalationInputRef,
)
from workflows.contracts.messaging import OutcomeState

# Outcomes the workflow has nothing more to do about (held: the account cannot send; the
# message stays as the delivery recorded it).
SETTLED = frozenset({OutcomeState.sent, OutcomeState.failed, OutcomeState.skipped})


class AssistantActivities:
    def __init__(self, deps: WorkerDeps, llm: LLMClient, delivery: Delivery) -> None:
        self._deps = deps
        self._llm = llm
        self._delivery = delivery

    @activity.defn(name=contract.AUTO_REPLY)
    async def auto_reply(self, request: AutoReplyInput) -> AutoReplyResult:
        """Answer the DMs, then hand the answer to X at once through the one send path (a
        retry finds the answer queued, and the delivery never sends it twice); only when X
        does not take it now is it left to the workflow's delivery loop."""
        deps = self._deps
        result = await auto_reply.auto_reply(
            deps.sessions, deps.temporal, deps.settings, self._llm, request
        )
        if result.reply_id is None:
            return result
        delivered = await self._delivery.deliver(request.merchant_id, [result.reply_id])
        settled = delivered.outcomes and delivered.outcomes[0].state in SETTLED
        return result.model_copy(update={"delivered": bool(settled)})

    @activity.defn(name=contract.ESCALATION_BEGIN)
    async def escalation_begin(self, request: EscalationInput) -> EscalationBegun:
        async with self._deps.sessions() as session, session.begin():
            ai, _ = await ai_settings.load(session, request.merchant_id)
            return await escalations.begin(session, self._deps.settings, ai, request)

    @activity.defn(name=contract.SLA_DUE)
    async def sla_due(self, request: EscalationInputRef) -> bool:
        async with self._deps.sessions() as session, session.begin():
            return await escalations.sla_due(session, request)


def build(deps: WorkerDeps) -> list[Callable[..., Any]]:
    """The assistant's activities the worker registers."""
    delivery = Delivery(deps.sessions, deps.x, deps.secrets, deps.settings)
    assistant = AssistantActivities(deps, LLMClient(deps.settings), delivery)
    return [assistant.auto_reply, assistant.escalation_begin, assistant.sla_due]
