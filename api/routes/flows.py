"""Automation Flows: the definitions (create, list, get, update, delete), activation, manual
enrolment and the executions (each contact's run)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from api.deps import ContextDep, MarketingDep, ReaderDep, SessionDep, TemporalDep, TemporalSourceDep
from api.envelope import Envelope, Page, error_responses, ok
from api.pagination import PageDep
from api.storable import StorableTextRoute
from models.flow import AutomationFlow, FlowCreate, FlowPublic, FlowStatus, FlowUpdate
from models.flow_run import (
    EnrollRequest,
    EnrollResult,
    FlowExecution,
    FlowExecutionDetail,
    RunStatus,
)
from services.flows import executions, lifecycle, starts
from services.flows import flows as flow_service

router = APIRouter(
    prefix="/automation/flows", tags=["automation flows"], route_class=StorableTextRoute
)

FlowIdPath = Annotated[uuid.UUID, Path(alias="flowId")]


async def load_flow(
    principal: ReaderDep, session: SessionDep, flow_id: FlowIdPath
) -> AutomationFlow:
    return await flow_service.get_flow(session, principal.merchant_id, flow_id)


async def load_flow_for_change(
    principal: MarketingDep, session: SessionDep, flow_id: FlowIdPath
) -> AutomationFlow:
    return await flow_service.get_flow(session, principal.merchant_id, flow_id, for_update=True)


FlowDep = Annotated[AutomationFlow, Depends(load_flow)]
FlowForChangeDep = Annotated[AutomationFlow, Depends(load_flow_for_change)]


async def shown(session: SessionDep, flows: list[AutomationFlow]) -> list[FlowPublic]:
    return flow_service.public(flows, await executions.statistics(session, flows))


@router.post("", response_model=Envelope[FlowPublic], responses=error_responses(401, 403, 422))
async def create_flow(
    body: FlowCreate, principal: MarketingDep, session: SessionDep
) -> Envelope[FlowPublic]:
    """Create a flow (draft) from a trigger, nodes and the connections between them."""
    flow = await flow_service.create_flow(session, principal.merchant_id, body)
    return ok(flow_service.public([flow])[0])


@router.get("", response_model=Page[FlowPublic], responses=error_responses(401, 403, 422))
async def list_flows(
    principal: ReaderDep,
    session: SessionDep,
    page: PageDep,
    status: Annotated[FlowStatus | None, Query(description="active, inactive or draft")] = None,
) -> Page[FlowPublic]:
    """The merchant's flows, newest first."""
    statement = flow_service.list_statement(principal.merchant_id, status)
    rows, total = await page.fetch(session, statement)
    return page.page(await shown(session, list(rows)), total)


@router.get("/{flowId}", response_model=Envelope[FlowPublic], responses=error_responses(401, 404))
async def get_flow(flow: FlowDep, session: SessionDep) -> Envelope[FlowPublic]:
    """One flow with its definition and run statistics."""
    return ok((await shown(session, [flow]))[0])


@router.put(
    "/{flowId}",
    response_model=Envelope[FlowPublic],
    responses=error_responses(400, 401, 403, 404, 422),
)
async def update_flow(
    body: FlowUpdate, flow: FlowForChangeDep, session: SessionDep
) -> Envelope[FlowPublic]:
    """Update a draft or inactive flow (400 when active: deactivate it first)."""
    flow = await flow_service.update_flow(session, flow, body)
    return ok((await shown(session, [flow]))[0])


@router.delete(
    "/{flowId}", response_model=Envelope[None], responses=error_responses(400, 401, 403, 404)
)
async def delete_flow(flow: FlowForChangeDep, session: SessionDep) -> Envelope[None]:
    """Delete a draft or inactive flow (400 when active: deactivate it first)."""
    await flow_service.delete_flow(session, flow)
    return ok(None)


@router.post(
    "/{flowId}/activate",
    response_model=Envelope[FlowPublic],
    responses=error_responses(400, 401, 403, 404, 422),
)
async def activate_flow(flow: FlowForChangeDep, session: SessionDep) -> Envelope[FlowPublic]:
    """Check the flow again and make it `active` as a new version: its trigger enrols contacts
    from now on, and each run follows the version it started with."""
    flow = await lifecycle.activate(session, flow)
    return ok((await shown(session, [flow]))[0])


@router.post(
    "/{flowId}/deactivate",
    response_model=Envelope[FlowPublic],
    responses=error_responses(400, 401, 403, 404),
)
async def deactivate_flow(
    flow: FlowForChangeDep, session: SessionDep, temporal: TemporalSourceDep
) -> Envelope[FlowPublic]:
    """Make the flow `inactive`: no new enrolments; runs on their way end as `cancelled`."""
    flow = await lifecycle.deactivate(session, temporal, flow)
    return ok((await shown(session, [flow]))[0])


@router.post(
    "/{flowId}/enroll",
    response_model=Envelope[EnrollResult],
    responses=error_responses(400, 401, 403, 404, 422, 503),
)
async def enroll_contacts(
    body: EnrollRequest,
    flow: FlowDep,
    principal: MarketingDep,
    session: SessionDep,
    temporal: TemporalDep,
    context: ContextDep,
) -> Envelope[EnrollResult]:
    """Start the flow for up to 1,000 contacts (any active flow, whatever its trigger); the
    ones that may not run through it now are skipped with the reason."""
    result = await starts.enroll(session, temporal, context.settings, flow, body.contact_ids)
    return ok(result)


@router.get(
    "/{flowId}/executions",
    response_model=Page[FlowExecution],
    responses=error_responses(401, 404, 422),
)
async def list_executions(
    flow: FlowDep,
    session: SessionDep,
    page: PageDep,
    status: Annotated[
        RunStatus | None, Query(description="running, completed, failed, exited or cancelled")
    ] = None,
    contact_id: Annotated[uuid.UUID | None, Query(alias="contactId")] = None,
) -> Page[FlowExecution]:
    """The flow's runs, newest first."""
    rows, total = await page.fetch(session, executions.list_statement(flow, status, contact_id))
    return page.page(executions.public(rows), total)


@router.get(
    "/{flowId}/executions/{executionId}",
    response_model=Envelope[FlowExecutionDetail],
    responses=error_responses(401, 404),
)
async def get_execution(
    flow: FlowDep,
    session: SessionDep,
    execution_id: Annotated[uuid.UUID, Path(alias="executionId")],
) -> Envelope[FlowExecutionDetail]:
    """One run with its steps: each node reached, how it ended, and what it did."""
    return ok(await executions.get_execution(session, flow, execution_id))
