"""Contracts of `FlowRunWorkflow` (id `flow:{flowId}:{contactId}`): one contact's run through
one version of an automation flow, and the activities it calls.

The input carries the version's graph as it was activated, so later edits never change a run
on its way. Signals: `CONTACT_EVENT_SIGNAL` (the contact's DMs: `wait_for_reply`, and the
moment to look whether the contact opted out) and `FLOW_STOP_SIGNAL` (the flow was deactivated).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel

# Workflow type.
FLOW_RUN_WORKFLOW = "FlowRun"

# Signals and queries.
FLOW_STOP_SIGNAL = "flow_stop"
FLOW_STATE_QUERY = "state"

# Activity names.
BEGIN = "flow.begin"
ADVANCE = "flow.advance"
QUEUE_SEND = "flow.queue_send"
CHECK = "flow.check"
FINISH = "flow.finish"


class RunStatus(StrEnum):
    running = "running"
    completed = "completed"  # reached an end (an `end` node, or a node without a next one)
    failed = "failed"  # a step could not be done (the reason is in its step's detail)
    exited = "exited"  # the contact left: opted out, erased, or its account unusable
    cancelled = "cancelled"  # the flow was deactivated while the run was on its way


class ExitReason(StrEnum):
    opted_out = "opted_out"
    deleted = "deleted"
    account_unusable = "account_unusable"


class GraphNode(BaseModel):
    id: str
    type: str  # models.flow.NodeType
    config: dict[str, Any] = {}


class GraphConnection(BaseModel):
    from_node_id: str
    to_node_id: str
    branch: str | None = None


class Resume(BaseModel):
    """Where a run continued as new picks up: the node to enter, and the one it just left."""

    node_id: str
    previous: StepDone | None = None
    seq: int = 0


class FlowRunInput(BaseModel):
    run_id: uuid.UUID  # the flow_runs row, chosen by whoever enrols
    merchant_id: str
    flow_id: uuid.UUID
    version: int
    contact_id: uuid.UUID
    nodes: list[GraphNode]
    connections: list[GraphConnection]
    trigger_event_id: uuid.UUID | None = None  # the event that enrolled it (None: manual)
    resume: Resume | None = None


class StepDone(BaseModel):
    """How a node the workflow waited on ended (recorded when the run moves on)."""

    node_id: str
    outcome: str
    detail: dict[str, Any] = {}


class BeginInput(BaseModel):
    run_id: uuid.UUID
    merchant_id: str
    flow_id: uuid.UUID
    version: int
    contact_id: uuid.UUID
    workflow_id: str
    trigger_event_id: uuid.UUID | None = None


class BeginResult(BaseModel):
    started: bool
    reason: str | None = None  # why not: flow_inactive, already_ran, already_enrolled, ...


class StepState(StrEnum):
    go = "go"  # the node is entered (and done, when `done`)
    stopped = "stopped"  # the run is over (its row says how): exit, cancel, or gone
    wait = "wait"  # a send must wait (business hours, quota) until `until`
    queued = "queued"  # a send's DM is queued: deliver `message_id`
    failed = "failed"  # the step cannot be done: the run fails with `detail`


class AdvanceInput(BaseModel):
    run_id: uuid.UUID
    merchant_id: str
    node: GraphNode
    seq: int
    previous: StepDone | None = None


class StepResult(BaseModel):
    state: StepState
    done: bool = False  # the node's work is done already (tags, condition, end)
    outcome: str | None = None
    branch: str | None = None  # condition: "true" / "false"
    status: RunStatus | None = None  # stopped: how the run ended
    exit_reason: str | None = None
    message_id: uuid.UUID | None = None
    until: datetime | None = None
    detail: dict[str, Any] = {}
    # add_tag: events recorded for tag_added flows, to carry out right after the commit.
    tag_events: int = 0


class QueueSendInput(BaseModel):
    run_id: uuid.UUID
    merchant_id: str
    node: GraphNode
    # The workflow's clock: business hours and the quota window are judged at the moment the
    # run's timer fired, as campaigns do (None: the activity's own clock).
    now: datetime | None = None


class CheckInput(BaseModel):
    run_id: uuid.UUID
    merchant_id: str


class FinishInput(BaseModel):
    run_id: uuid.UUID
    merchant_id: str
    status: RunStatus
    exit_reason: str | None = None
    last: StepDone | None = None  # the step to close with the run


class FlowStop(BaseModel):
    status: RunStatus = RunStatus.cancelled
    exit_reason: str | None = None


class FlowRunResult(BaseModel):
    status: RunStatus | None  # None: it never started (see `reason`)
    reason: str | None = None
    current_node_id: str | None = None


Resume.model_rebuild()
