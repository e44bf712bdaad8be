"""Activating and deactivating flows.

Activation checks the document again (a template may have gone since it was saved) and
snapshots it as a new version: runs started from then on carry that version's graph. While a
flow is active its triggers enrol contacts, and it does not change.

Deactivation stops new enrolments and cancels the runs on their way: their rows are cancelled
in the same transaction (what the executions show at once), then each workflow is told to stop
(`flow_stop`). A workflow the signal misses (Temporal away) finds its row cancelled at its next
step and stops there, having done nothing more.
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from models.db import utcnow
from models.flow import AutomationFlow, FlowConnection, FlowNode, FlowStatus, FlowTrigger
from models.flow_run import FlowVersion
from services.core.errors import InvalidState
from services.core.temporal import TemporalSource
from services.flows.exits import end_flow_runs, stop_soon
from services.flows.triggers import MESSAGE_TRIGGER, NEW_FOLLOWER_TRIGGER, TRIGGER_PREFIX
from services.flows.validation import check_flow
from services.ingestion.triggers import arm_triggers, lock_armed_triggers
from workflows.contracts.flows import FlowStop, RunStatus

logger = logging.getLogger(__name__)


async def activate(session: AsyncSession, flow: AutomationFlow) -> AutomationFlow:
    if flow.status == FlowStatus.active:
        raise InvalidState("the flow is active already", details={"status": "active"})
    checked = await check_flow(
        session,
        flow.merchant_id,
        account_id=flow.account_id,
        trigger=FlowTrigger.model_validate(flow.trigger),
        nodes=[FlowNode.model_validate(n) for n in flow.nodes],
        connections=[FlowConnection.model_validate(c) for c in flow.connections],
    )
    now = utcnow()
    flow.version += 1
    flow.status = FlowStatus.active
    flow.activated_at = now
    flow.updated_at = now
    session.add(flow)
    session.add(
        FlowVersion(
            flow_id=flow.id,
            version=flow.version,
            merchant_id=flow.merchant_id,
            definition={
                "trigger": checked.trigger,
                "nodes": checked.nodes,
                "connections": checked.connections,
                "reentry": str(flow.reentry),
                "accountId": str(flow.account_id) if flow.account_id else None,
            },
            created_at=now,
        )
    )
    await session.flush()
    await rearm(session, flow.merchant_id)
    logger.info("flow.activated", extra={"flow_id": str(flow.id), "version": flow.version})
    return flow


# The webhook triggers the merchant's active flows need (tag_added looks for its flows itself).
_WEBHOOK_TRIGGERS = {
    "new_follower": NEW_FOLLOWER_TRIGGER,
    "message_received": MESSAGE_TRIGGER,
}


async def rearm(session: AsyncSession, merchant_id: str) -> None:
    """Arm exactly the flow triggers the merchant's active flows need, so ingestion records
    starts for its follows and DMs only while a flow may take them."""
    await lock_armed_triggers(session, merchant_id)  # then read what the flows need
    rows = await session.execute(
        select(col(AutomationFlow.trigger)["type"].astext)
        .where(
            col(AutomationFlow.merchant_id) == merchant_id,
            col(AutomationFlow.status) == FlowStatus.active,
        )
        .distinct()
    )
    needed = {_WEBHOOK_TRIGGERS[t] for t in rows.scalars() if t in _WEBHOOK_TRIGGERS}
    await arm_triggers(session, merchant_id, prefix=TRIGGER_PREFIX, armed=needed)


async def deactivate(
    session: AsyncSession, temporal: TemporalSource, flow: AutomationFlow
) -> AutomationFlow:
    """Inactive, its running runs cancelled (committed here), then told to stop."""
    if flow.status != FlowStatus.active:
        raise InvalidState("the flow is not active", details={"status": str(flow.status)})
    flow.status = FlowStatus.inactive
    flow.updated_at = utcnow()
    session.add(flow)
    await session.flush()
    await rearm(session, flow.merchant_id)
    workflow_ids = await end_flow_runs(session, flow.id)
    await session.commit()
    stopped = await stop_soon(temporal, workflow_ids, FlowStop(status=RunStatus.cancelled))
    logger.info(
        "flow.deactivated",
        extra={"flow_id": str(flow.id), "runs_cancelled": len(workflow_ids), "signalled": stopped},
    )
    return flow
