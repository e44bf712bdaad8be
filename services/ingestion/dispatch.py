"""Carrying out one recorded follow-up: the one Temporal call it owes, made so that making it
again is harmless.

Each call carries the follow-up's id as its request id. The SDK's `handle.signal` and
`start_workflow(start_signal=...)` draw a fresh random one per call, so they are made here from
the same requests the SDK sends: Temporal then recognises a repeated call (the holder died after
Temporal took it, before the row was marked) and does not deliver the event again to a running
workflow. What a repeat can still meet is a workflow that ended meanwhile: a signal finds it
gone, and a start conflicts with it (`WorkflowStart.id_reuse_policy`, REJECT_DUPLICATE by
default): both are "done", not "do it again".

Made without the SDK's client methods, the calls are not seen by its tracing interceptor:
where tracing is on, each gets its span and the trace header here (mktx.tracing).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any, cast

from temporalio.api.common.v1 import Payload, Payloads, WorkflowExecution, WorkflowType
from temporalio.api.enums.v1 import WorkflowIdConflictPolicy, WorkflowIdReusePolicy
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import (
    SignalWithStartWorkflowExecutionRequest,
    SignalWorkflowExecutionRequest,
)
from temporalio.client import Client
from temporalio.converter import encode_search_attributes
from temporalio.service import RPCError, RPCStatusCode

from mktx import tracing
from models.webhook_event import FollowUpKind
from services.ingestion.retries import describe_failure
from services.ingestion.triggers import TriggerRegistry, WorkflowStart
from workflows.contracts.contact_events import CONTACT_EVENT_SIGNAL, ContactEvent

# One call to Temporal; the SDK retries it within this while Temporal answers "unavailable".
CALL_TIMEOUT = timedelta(seconds=5)

# A running workflow of the id gets the event (none running: one is started with it).
_USE_EXISTING = WorkflowIdConflictPolicy.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING

# Temporal is away or overwhelmed (as opposed to refusing this one call).
_UNAVAILABLE = frozenset(
    {RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.RESOURCE_EXHAUSTED}
)


class Outcome(StrEnum):
    """How a follow-up ended (event_follow_ups.outcome)."""

    signalled = "signalled"  # a running workflow got the event (a listener, or a trigger's)
    started = "started"  # a trigger's workflow was started with the event
    gone = "gone"  # the listening workflow no longer exists (or has ended): dropped
    already_ran = "already_ran"  # the trigger's workflow id has run already: nothing to do
    skipped = "skipped"  # the trigger decided nothing was to be started
    given_up = "given_up"  # failed MAX_ATTEMPTS times; the last error is kept


@dataclass(slots=True)
class RecordedFollowUp:
    """One row of event_follow_ups, as its holder carries it out."""

    id: uuid.UUID
    kind: FollowUpKind
    target: str  # the listener's workflow id (signal), the trigger's name (start)
    event: ContactEvent
    starts: list[WorkflowStart] | None = None  # a start's decision, once made
    attempts: int = 0  # attempts before this one

    @classmethod
    def of(cls, row: Mapping[Any, Any]) -> RecordedFollowUp:
        """From the row's columns (as the recording statement's JSON or as selected)."""
        start = row.get("start")
        if isinstance(start, dict):  # recorded by a release that decided one start at most
            start = [start]
        return cls(
            id=uuid.UUID(str(row["id"])),
            kind=FollowUpKind(row["kind"]),
            target=row["target"],
            event=ContactEvent.model_validate(row["payload"]),
            starts=[WorkflowStart.model_validate(s) for s in start] if start is not None else None,
            attempts=int(row.get("attempts") or 0),
        )


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one attempt came to: an outcome, or an error (then it is tried again later)."""

    outcome: Outcome | None
    starts: list[WorkflowStart] | None = None  # the decision this attempt made (to record)
    error: str | None = None
    unavailable: bool = False  # the error says Temporal is away: trying more now is useless

    @classmethod
    def failed(cls, exc: BaseException, starts: list[WorkflowStart] | None = None) -> Attempt:
        unavailable = isinstance(exc, TimeoutError | ConnectionError) or (
            isinstance(exc, RPCError) and exc.status in _UNAVAILABLE
        )
        return cls(None, starts, describe_failure(exc), unavailable)


class TriggerUnknown(LookupError):
    """The follow-up names a trigger this process does not have (a deploy renamed it?)."""


async def carry_out_one(
    client: Client, triggers: TriggerRegistry, follow_up: RecordedFollowUp
) -> Attempt:
    """Make the follow-up's call once. Never raises: a failure is an Attempt with its error."""
    starts = follow_up.starts
    try:
        if follow_up.kind is FollowUpKind.signal:
            return Attempt(await _signal(client, follow_up.target, follow_up.event, follow_up.id))
        if starts is None:
            trigger = triggers.get(follow_up.target)
            if trigger is None:
                raise TriggerUnknown(f"no trigger named {follow_up.target!r} in this process")
            decided = await trigger.decide(follow_up.event)
            if isinstance(decided, WorkflowStart):
                decided = [decided]
            starts = list(decided or ())
        if not starts:
            return Attempt(Outcome.skipped, starts)
        outcomes = [
            await _signal_with_start(client, start, follow_up.event, _request_id(follow_up.id, i))
            for i, start in enumerate(starts)
        ]
        return Attempt(_overall(outcomes), starts)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # Temporal away, a trigger failing: recorded, tried again later
        return Attempt.failed(exc, starts)


def _request_id(follow_up_id: uuid.UUID, index: int) -> uuid.UUID:
    """The request id of a decision's start: the follow-up's id for the first (or only) one,
    derived from it for the others, the same at every attempt."""
    return follow_up_id if index == 0 else uuid.uuid5(follow_up_id, str(index))


def _overall(outcomes: list[Outcome]) -> Outcome:
    """A decision of several starts: started if any started, else signalled if any was."""
    for outcome in (Outcome.started, Outcome.signalled):
        if outcome in outcomes:
            return outcome
    return Outcome.already_ran


async def _signal(
    client: Client, workflow_id: str, event: ContactEvent, request_id: uuid.UUID
) -> Outcome:
    request = SignalWorkflowExecutionRequest(
        namespace=client.namespace,
        workflow_execution=WorkflowExecution(workflow_id=workflow_id),
        signal_name=CONTACT_EVENT_SIGNAL,
        input=Payloads(payloads=await client.data_converter.encode([event])),
        identity=client.identity,
        request_id=str(request_id),
    )
    with tracing.temporal_call(f"SignalWorkflow:{CONTACT_EVENT_SIGNAL}", workflow_id) as header:
        _add_header(request, header)
        try:
            await client.workflow_service.signal_workflow_execution(
                request, retry=True, timeout=CALL_TIMEOUT
            )
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:  # never was, or has ended
                return Outcome.gone
            raise
    return Outcome.signalled


async def _signal_with_start(
    client: Client, start: WorkflowStart, event: ContactEvent, request_id: uuid.UUID
) -> Outcome:
    request = SignalWithStartWorkflowExecutionRequest(
        namespace=client.namespace,
        workflow_id=start.workflow_id,
        workflow_type=WorkflowType(name=start.workflow),
        task_queue=TaskQueue(name=start.task_queue),
        input=Payloads(payloads=await client.data_converter.encode([start.input])),
        signal_name=CONTACT_EVENT_SIGNAL,
        signal_input=Payloads(payloads=await client.data_converter.encode([event])),
        identity=client.identity,
        request_id=str(request_id),
        workflow_id_reuse_policy=cast(
            "WorkflowIdReusePolicy.ValueType", int(start.id_reuse_policy)
        ),
        workflow_id_conflict_policy=_USE_EXISTING,
    )
    encode_search_attributes(start.typed_search_attributes(), request.search_attributes)
    span = f"SignalWithStartWorkflow:{start.workflow}"
    with tracing.temporal_call(span, start.workflow_id) as header:
        _add_header(request, header)
        try:
            response = await client.workflow_service.signal_with_start_workflow_execution(
                request, retry=True, timeout=CALL_TIMEOUT
            )
        except RPCError as exc:
            if exc.status == RPCStatusCode.ALREADY_EXISTS:  # closed, the policy refuses a rerun
                return Outcome.already_ran
            raise
    return Outcome.started if response.started else Outcome.signalled


def _add_header(
    request: SignalWorkflowExecutionRequest | SignalWithStartWorkflowExecutionRequest,
    header: Mapping[str, Payload],
) -> None:
    """The workflow reads a start's header as its own and a signal's as the signal's."""
    for key, payload in header.items():
        request.header.fields[key].CopyFrom(payload)
