"""A flow's runs as the executions endpoints show them, and the run counts of its statistics."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from models.flow import AutomationFlow, FlowStatistics
from models.flow_run import (
    FlowExecution,
    FlowExecutionDetail,
    FlowRun,
    FlowRunStep,
    FlowStep,
    RunStatus,
)
from services.core.errors import NotFound


def list_statement(
    flow: AutomationFlow, status: RunStatus | None, contact_id: uuid.UUID | None
) -> Any:
    statement = (
        select(FlowRun)
        .where(col(FlowRun.flow_id) == flow.id, col(FlowRun.merchant_id) == flow.merchant_id)
        .order_by(col(FlowRun.started_at).desc(), col(FlowRun.id))
    )
    if status is not None:
        statement = statement.where(col(FlowRun.status) == status)
    if contact_id is not None:
        statement = statement.where(col(FlowRun.contact_id) == contact_id)
    return statement


def public(runs: Sequence[FlowRun]) -> list[FlowExecution]:
    return [FlowExecution.model_validate(run, from_attributes=True) for run in runs]


async def get_execution(
    session: AsyncSession, flow: AutomationFlow, execution_id: uuid.UUID
) -> FlowExecutionDetail:
    run = await session.get(FlowRun, execution_id)
    if run is None or run.flow_id != flow.id or run.merchant_id != flow.merchant_id:
        raise NotFound("execution", execution_id)
    steps = (
        await session.execute(
            select(FlowRunStep)
            .where(col(FlowRunStep.run_id) == run.id)
            .order_by(col(FlowRunStep.seq))
        )
    ).scalars()
    return FlowExecutionDetail.model_validate(
        {
            **FlowExecution.model_validate(run, from_attributes=True).model_dump(),
            "steps": [FlowStep.model_validate(s, from_attributes=True) for s in steps],
        }
    )


async def statistics(
    session: AsyncSession, flows: Sequence[AutomationFlow]
) -> dict[uuid.UUID, FlowStatistics]:
    """Runs by status, per flow: one grouped count for the lot."""
    found: dict[uuid.UUID, FlowStatistics] = {flow.id: FlowStatistics() for flow in flows}
    if not found:
        return found
    rows = await session.execute(
        select(col(FlowRun.flow_id), col(FlowRun.status), func.count())
        .where(col(FlowRun.flow_id).in_(list(found)))
        .group_by(col(FlowRun.flow_id), col(FlowRun.status))
    )
    for flow_id, status, count in rows.tuples():
        setattr(found[flow_id], str(status), int(count))
    return found
