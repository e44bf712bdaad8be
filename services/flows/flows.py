"""Automation flows: the definitions — create, read, update, delete — and their status rules.

A stored flow always passed `validation.check_flow` as it is now (create and every update check
the whole resulting document). An active flow does not change and does not go: runs under way
follow it (deactivate first, answered 400 otherwise). Every query is scoped by the merchant.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import select
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from models.db import utcnow
from models.flow import (
    AutomationFlow,
    FlowConnection,
    FlowCreate,
    FlowNode,
    FlowPublic,
    FlowStatistics,
    FlowStatus,
    FlowTrigger,
    FlowUpdate,
    NodeType,
)
from models.template import Template
from services.core.errors import InvalidState
from services.core.tenancy import get_owned, owned_by
from services.flows.validation import CheckedFlow, check_flow
from services.templates import templates as template_service

logger = logging.getLogger(__name__)


# Reading --------------------------------------------------------------------------------------


async def get_flow(
    session: AsyncSession, merchant_id: str, flow_id: uuid.UUID, *, for_update: bool = False
) -> AutomationFlow:
    return await get_owned(
        session, AutomationFlow, merchant_id, flow_id, resource="flow", for_update=for_update
    )


def list_statement(merchant_id: str, status: FlowStatus | None) -> Any:
    statement = owned_by(AutomationFlow, merchant_id).order_by(
        col(AutomationFlow.created_at).desc(), col(AutomationFlow.id)
    )
    if status is not None:
        statement = statement.where(col(AutomationFlow.status) == status)
    return statement


def public(
    flows: Sequence[AutomationFlow],
    statistics: Mapping[uuid.UUID, FlowStatistics] | None = None,
) -> list[FlowPublic]:
    """The flows as the API shows them, with their run counts (`executions.statistics`)."""
    counts = statistics or {}
    return [
        FlowPublic.model_validate(
            {
                "id": f.id,
                "merchant_id": f.merchant_id,
                "name": f.name,
                "account_id": f.account_id,
                "status": f.status,
                "trigger": f.trigger,
                "nodes": f.nodes,
                "connections": f.connections,
                "reentry": f.reentry,
                "version": f.version,
                "statistics": counts.get(f.id, FlowStatistics()),
                "created_at": f.created_at,
                "updated_at": f.updated_at,
                "activated_at": f.activated_at,
            }
        )
        for f in flows
    ]


# Writing --------------------------------------------------------------------------------------


def _store(flow: AutomationFlow, checked: CheckedFlow) -> None:
    flow.trigger = checked.trigger
    flow.nodes = checked.nodes
    flow.connections = checked.connections


async def create_flow(session: AsyncSession, merchant_id: str, body: FlowCreate) -> AutomationFlow:
    """A new flow, `draft`: nothing enrols contacts into it until it is activated."""
    checked = await check_flow(
        session,
        merchant_id,
        account_id=body.account_id,
        trigger=body.trigger,
        nodes=body.nodes,
        connections=body.connections,
    )
    flow = AutomationFlow(
        merchant_id=merchant_id,
        name=body.name,
        account_id=body.account_id,
        reentry=body.reentry,
        trigger=checked.trigger,
        nodes=checked.nodes,
        connections=checked.connections,
    )
    session.add(flow)
    await session.flush()
    logger.info("flow.created", extra={"flow_id": str(flow.id)})
    return flow


def _require_inactive(flow: AutomationFlow, action: str) -> None:
    if flow.status == FlowStatus.active:
        raise InvalidState(
            f"an active flow cannot be {action}: deactivate it first",
            details={"status": str(flow.status)},
        )


async def update_flow(
    session: AsyncSession, flow: AutomationFlow, body: FlowUpdate
) -> AutomationFlow:
    """Replace the fields sent of a draft or inactive flow (400 when active), then check the
    whole document as it would now stand: a new node list is checked against the connections
    kept, and the other way round."""
    _require_inactive(flow, "updated")
    sent = body.model_fields_set
    account_id = body.account_id if "account_id" in sent else flow.account_id
    checked = await check_flow(
        session,
        flow.merchant_id,
        account_id=account_id,
        trigger=(
            body.trigger if body.trigger is not None else FlowTrigger.model_validate(flow.trigger)
        ),
        nodes=(
            body.nodes
            if body.nodes is not None
            else [FlowNode.model_validate(n) for n in flow.nodes]
        ),
        connections=(
            body.connections
            if body.connections is not None
            else [FlowConnection.model_validate(c) for c in flow.connections]
        ),
    )
    _store(flow, checked)
    flow.account_id = account_id
    if body.name is not None:
        flow.name = body.name
    if body.reentry is not None:
        flow.reentry = body.reentry
    flow.updated_at = utcnow()
    session.add(flow)
    await session.flush()
    logger.info("flow.updated", extra={"flow_id": str(flow.id)})
    return flow


async def delete_flow(session: AsyncSession, flow: AutomationFlow) -> None:
    """Delete a draft or inactive flow (400 when active)."""
    _require_inactive(flow, "deleted")
    await session.delete(flow)
    await session.flush()
    logger.info("flow.deleted", extra={"flow_id": str(flow.id)})


# Templates in use by active flows ---------------------------------------------------------------


async def _active_flows_using_template(session: AsyncSession, template: Template) -> list[str]:
    """Active flows with a send_message node of this template: their runs render it when they
    reach the node, so it may neither change nor go (409, as for campaigns)."""
    uses = [{"type": NodeType.send_message.value, "config": {"templateId": str(template.id)}}]
    rows = await session.execute(
        select(col(AutomationFlow.id), col(AutomationFlow.name)).where(
            col(AutomationFlow.merchant_id) == template.merchant_id,
            col(AutomationFlow.status) == FlowStatus.active,
            col(AutomationFlow.nodes).contains(uses),
        )
    )
    return [f"flow '{row.name}' (active)" for row in rows]


template_service.register_usage_check(_active_flows_using_template)
