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
from workflows.contracts import assistant as contract
from workflows.contracts.assistant import (
    AutoReplyInput,
    AutoReplyResult,
    EscalationBegun,
    EscalationInput,
    EscalationInputRef,
)


class AssistantActivities:
    def __init__(self, deps: WorkerDeps, llm: LLMClient) -> None:
        self._deps = deps
        self._llm = llm

    @activity.defn(name=contract.AUTO_REPLY)
    async def auto_reply(self, request: AutoReplyInput) -> AutoReplyResult:
        deps = self._deps
        return await auto_reply.auto_reply(
            deps.sessions, deps.temporal, deps.settings, self._llm, request
        )

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
    assistant = AssistantActivities(deps, LLMClient(deps.settings))
    return [assistant.auto_reply, assistant.escalation_begin, assistant.sla_due]
