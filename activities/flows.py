"""The automation flows' activities: each one transaction of services/flows/runs.py (names and
payloads: workflows/contracts/flows.py). A tag a step added may enrol the contact into a
`tag_added` flow: its recorded follow-up is carried out right after the commit."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from temporalio import activity

from activities.deps import WorkerDeps
from services.flows import runs
from services.ingestion import TriggerRegistry, carry_out_due
from services.triggers import build_triggers
from workflows.contracts import flows as contract
from workflows.contracts.flows import (
    AdvanceInput,
    BeginInput,
    BeginResult,
    CheckInput,
    FinishInput,
    QueueSendInput,
    StepResult,
)

logger = logging.getLogger(__name__)


class FlowActivities:
    def __init__(self, deps: WorkerDeps, triggers: TriggerRegistry | None = None) -> None:
        self._deps = deps
        self._sessions = deps.sessions
        self._triggers = triggers or build_triggers(deps.settings, deps.sessions)

    @activity.defn(name=contract.BEGIN)
    async def begin(self, request: BeginInput) -> BeginResult:
        async with self._sessions() as session, session.begin():
            return await runs.begin(session, request)

    @activity.defn(name=contract.ADVANCE)
    async def advance(self, request: AdvanceInput) -> StepResult:
        async with self._sessions() as session, session.begin():
            result = await runs.advance(session, self._deps.settings, request)
        if result.tag_events:
            await self._enrol_tagged()
        return result

    @activity.defn(name=contract.QUEUE_SEND)
    async def queue_send(self, request: QueueSendInput) -> StepResult:
        async with self._sessions() as session, session.begin():
            return await runs.queue_send(session, self._deps.settings, request)

    @activity.defn(name=contract.CHECK)
    async def check(self, request: CheckInput) -> StepResult:
        async with self._sessions() as session, session.begin():
            return await runs.check(session, request)

    @activity.defn(name=contract.FINISH)
    async def finish(self, request: FinishInput) -> StepResult:
        async with self._sessions() as session, session.begin():
            return await runs.finish(session, request)

    async def _enrol_tagged(self) -> None:
        """Carry out the tag events just recorded now rather than at the next maintenance
        run; a failure here leaves them to it."""
        try:
            await carry_out_due(self._sessions, self._deps.temporal, self._triggers, limit=50)
        except Exception as exc:
            logger.warning(
                "flow.tag_events_deferred", extra={"error": f"{type(exc).__name__}: {exc}"}
            )


def build(deps: WorkerDeps) -> list[Callable[..., Any]]:
    """The flow activities the worker registers."""
    flows = FlowActivities(deps)
    return [flows.begin, flows.advance, flows.queue_send, flows.check, flows.finish]
