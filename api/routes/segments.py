"""Segment Management: create, list, get, update, delete and preview contact segments."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from api.deps import MarketingDep, ReaderDep, SessionDep
from api.envelope import Envelope, Page, error_responses, ok
from api.pagination import PageDep
from api.storable import StorableTextRoute
from models.segment import (
    PREVIEW_DEFAULT,
    PREVIEW_MAX,
    Segment,
    SegmentCreate,
    SegmentPreview,
    SegmentPublic,
    SegmentUpdate,
)
from services.segments import segments as segment_service

router = APIRouter(prefix="/segments", tags=["segments"], route_class=StorableTextRoute)


async def load_segment(
    principal: ReaderDep,
    session: SessionDep,
    segment_id: Annotated[uuid.UUID, Path(alias="segmentId")],
) -> Segment:
    return await segment_service.get_segment(session, principal.merchant_id, segment_id)


async def load_segment_for_change(
    principal: MarketingDep,
    session: SessionDep,
    segment_id: Annotated[uuid.UUID, Path(alias="segmentId")],
) -> Segment:
    return await segment_service.get_segment(
        session, principal.merchant_id, segment_id, for_update=True
    )


SegmentDep = Annotated[Segment, Depends(load_segment)]
SegmentForChangeDep = Annotated[Segment, Depends(load_segment_for_change)]


@router.post("", response_model=Envelope[SegmentPublic], responses=error_responses(401, 403, 422))
async def create_segment(
    body: SegmentCreate, principal: MarketingDep, session: SessionDep
) -> Envelope[SegmentPublic]:
    """Create a segment: conditions on contact fields, all (default) or any of them."""
    segment = await segment_service.create_segment(session, principal.merchant_id, body)
    return ok((await segment_service.public(session, [segment]))[0])


@router.get("", response_model=Page[SegmentPublic], responses=error_responses(401, 403, 422))
async def list_segments(
    principal: ReaderDep,
    session: SessionDep,
    page: PageDep,
    search: Annotated[
        str | None, Query(max_length=200, description="part of the segment name")
    ] = None,
) -> Page[SegmentPublic]:
    """List the merchant's segments, newest first; the page's contact counts in one query."""
    statement = segment_service.list_statement(principal.merchant_id, search)
    rows, total = await page.fetch(session, statement)
    return page.page(await segment_service.public(session, rows), total)


@router.get(
    "/{segmentId}", response_model=Envelope[SegmentPublic], responses=error_responses(401, 404)
)
async def get_segment(segment: SegmentDep, session: SessionDep) -> Envelope[SegmentPublic]:
    """One segment with its current contact count."""
    return ok((await segment_service.public(session, [segment]))[0])


@router.put(
    "/{segmentId}",
    response_model=Envelope[SegmentPublic],
    responses=error_responses(401, 403, 404, 422),
)
async def update_segment(
    body: SegmentUpdate, segment: SegmentForChangeDep, session: SessionDep
) -> Envelope[SegmentPublic]:
    """Update a segment's name, match mode or conditions."""
    segment = await segment_service.update_segment(session, segment, body)
    return ok((await segment_service.public(session, [segment]))[0])


@router.delete(
    "/{segmentId}", response_model=Envelope[None], responses=error_responses(401, 403, 404, 409)
)
async def delete_segment(segment: SegmentForChangeDep, session: SessionDep) -> Envelope[None]:
    """Delete a segment (409 while an active campaign uses it)."""
    await segment_service.delete_segment(session, segment)
    return ok(None)


@router.post(
    "/{segmentId}/preview",
    response_model=Envelope[SegmentPreview],
    responses=error_responses(401, 404, 422),
)
async def preview_segment(
    segment: SegmentDep,
    session: SessionDep,
    limit: Annotated[
        int, Query(ge=1, le=PREVIEW_MAX, description="contacts to show (at most 50)")
    ] = PREVIEW_DEFAULT,
) -> Envelope[SegmentPreview]:
    """How many contacts match now, and a sample of them (most recently active first)."""
    return ok(await segment_service.preview(session, segment, limit))
