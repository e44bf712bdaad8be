"""Automation Flows: create, list, get, update and delete flow definitions."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from api.deps import MarketingDep, ReaderDep, SessionDep
from api.envelope import Envelope, Page, error_responses, ok
from api.pagination import PageDep
from models.flow import AutomationFlow, FlowCreate, FlowPublic, FlowStatus, FlowUpdate
from services.flows import flows as flow_service

router = APIRouter(prefix="/automation/flows", tags=["automation flows"])

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
    return page.page(flow_service.public(rows), total)


@router.get("/{flowId}", response_model=Envelope[FlowPublic], responses=error_responses(401, 404))
async def get_flow(flow: FlowDep) -> Envelope[FlowPublic]:
    """One flow with its definition and run statistics."""
    return ok(flow_service.public([flow])[0])


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
    return ok(flow_service.public([flow])[0])


@router.delete(
    "/{flowId}", response_model=Envelope[None], responses=error_responses(400, 401, 403, 404)
)
async def delete_flow(flow: FlowForChangeDep, session: SessionDep) -> Envelope[None]:
    """Delete a draft or inactive flow (400 when active: deactivate it first)."""
    await flow_service.delete_flow(session, flow)
    return ok(None)
