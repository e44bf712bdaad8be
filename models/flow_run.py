"""Runs of automation flows: the definition each activation snapshotted (`flow_versions`), each
contact's run through a version (`flow_runs`, one Temporal workflow `flow:{flowId}:{contactId}`
each) and the steps it took (`flow_run_steps`).

The workflow walks the graph; these rows are what it has done, written by its activities in the
same transaction as each step's side effect, and what the executions endpoints read. A run's
status in the row is the truth: deactivating a flow cancels its running rows at once, and a
workflow whose row is no longer `running` stops at its next step.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import Field as PydanticField
from sqlalchemy import Column, DateTime, ForeignKey, Index, String, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from models.camel import CamelModel
from models.db import utcnow
from models.flow import NodeType
from workflows.contracts.flows import ExitReason as ExitReason
from workflows.contracts.flows import RunStatus

MAX_ENROLL = 1000


class FlowVersion(SQLModel, table=True):
    """The definition as it was activated: what runs of that version walk, whatever the flow
    becomes afterwards."""

    __tablename__ = "flow_versions"

    flow_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("automation_flows.id", ondelete="CASCADE"), primary_key=True)
    )
    version: int = Field(primary_key=True)
    merchant_id: str = Field(max_length=128)
    definition: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))  # type: ignore[call-overload]


class FlowRun(SQLModel, table=True):
    __tablename__ = "flow_runs"
    __table_args__ = (
        # A run per trigger event at most: X delivering the event twice enrols once.
        UniqueConstraint("flow_id", "trigger_event_id", name="uq_flow_runs_trigger_event"),
        Index("ix_flow_runs_flow_started", "flow_id", "started_at"),
        Index("ix_flow_runs_flow_contact", "flow_id", "contact_id"),
        Index("ix_flow_runs_contact", "contact_id"),
        # The running runs of a flow (deactivation, statistics) without a scan of the others.
        Index("ix_flow_runs_running", "flow_id", postgresql_where=text("status = 'running'")),
    )

    id: uuid.UUID = Field(primary_key=True)  # chosen by whoever enrols: the workflow's input
    merchant_id: str = Field(max_length=128)
    flow_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("automation_flows.id", ondelete="CASCADE"), nullable=False)
    )
    flow_version: int
    # An erased contact's runs go with it.
    contact_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False)
    )
    account_id: uuid.UUID
    workflow_id: str = Field(max_length=256)
    trigger_event_id: uuid.UUID | None = None
    status: RunStatus = Field(default=RunStatus.running, sa_type=String(16))  # type: ignore[call-overload]
    current_node_id: str | None = Field(default=None, max_length=64)
    exit_reason: str | None = Field(default=None, max_length=32)
    started_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))  # type: ignore[call-overload]
    completed_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))  # type: ignore[call-overload]


class FlowRunStep(SQLModel, table=True):
    """One node a run reached: the graph has no cycle, so a node is reached once per run."""

    __tablename__ = "flow_run_steps"
    __table_args__ = (UniqueConstraint("run_id", "node_id", name="uq_flow_run_steps_node"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    run_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("flow_runs.id", ondelete="CASCADE"), nullable=False)
    )
    seq: int
    node_id: str = Field(max_length=64)
    type: str = Field(max_length=32)
    outcome: str | None = Field(default=None, max_length=32)
    detail: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(JSONB, nullable=False, server_default="{}")
    )
    started_at: datetime = Field(sa_type=DateTime(timezone=True))  # type: ignore[call-overload]
    finished_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))  # type: ignore[call-overload]


# API shapes -----------------------------------------------------------------------------------


class EnrollRequest(CamelModel):
    contact_ids: list[uuid.UUID] = PydanticField(min_length=1, max_length=MAX_ENROLL)


class EnrollSkip(CamelModel):
    contact_id: uuid.UUID
    # not_found, opted_out, account_unusable, wrong_account, already_enrolled, already_ran
    reason: str


class EnrollResult(CamelModel):
    enrolled: int
    skipped: list[EnrollSkip]


class FlowExecution(CamelModel):
    id: uuid.UUID
    flow_id: uuid.UUID
    flow_version: int
    contact_id: uuid.UUID
    status: RunStatus
    current_node_id: str | None
    exit_reason: str | None
    started_at: datetime
    completed_at: datetime | None


class FlowStep(CamelModel):
    node_id: str
    type: NodeType
    # sent, skipped, failed, waited, true, false, replied, timeout, done, ended; null: under way
    outcome: str | None
    started_at: datetime
    finished_at: datetime | None
    detail: dict[str, Any]


class FlowExecutionDetail(FlowExecution):
    steps: list[FlowStep]
