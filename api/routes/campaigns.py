"""Campaign Management: create, list, get, update, start, pause, resume, metrics, recipients,
test send."""

from __future__ import annotations

import uuid
from datetime import timedelta
from enum import StrEnum
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import StreamingResponse

from api.deps import (
    ContextDep,
    MarketingDep,
    ReaderDep,
    SessionDep,
    TemporalDep,
    TemporalSourceDep,
)
from api.envelope import Envelope, Page, error_responses, ok
from api.pagination import PageDep
from api.storable import StorableTextRoute
from models.campaign import (
    Campaign,
    CampaignCreate,
    CampaignLive,
    CampaignMetricsDetail,
    CampaignPublic,
    CampaignRecipientPublic,
    CampaignStatus,
    CampaignTestRequest,
    CampaignTestResult,
    CampaignType,
    CampaignUpdate,
    RecipientState,
)
from services.campaigns import campaigns as campaign_service
from services.campaigns import metrics as campaign_metrics
from services.campaigns import recipients as campaign_recipients
from services.campaigns import runs as campaign_runs
from services.campaigns import starts as campaign_starts
from services.campaigns import test_sends as campaign_tests
from services.campaigns.campaigns import STARTED

router = APIRouter(prefix="/campaigns", tags=["campaigns"], route_class=StorableTextRoute)

CampaignIdPath = Annotated[uuid.UUID, Path(alias="campaignId")]


async def load_campaign(
    principal: ReaderDep, session: SessionDep, campaign_id: CampaignIdPath
) -> Campaign:
    return await campaign_service.get_campaign(session, principal.merchant_id, campaign_id)


async def load_campaign_for_change(
    principal: MarketingDep, session: SessionDep, campaign_id: CampaignIdPath
) -> Campaign:
    return await campaign_service.get_campaign(
        session, principal.merchant_id, campaign_id, for_update=True
    )


async def load_campaign_for_control(
    principal: MarketingDep, session: SessionDep, campaign_id: CampaignIdPath
) -> Campaign:
    # No row lock: the workflow's own status change (an activity) writes this row meanwhile.
    return await campaign_service.get_campaign(session, principal.merchant_id, campaign_id)


CampaignDep = Annotated[Campaign, Depends(load_campaign)]
CampaignForChangeDep = Annotated[Campaign, Depends(load_campaign_for_change)]
CampaignForControlDep = Annotated[Campaign, Depends(load_campaign_for_control)]


async def reply_window(context: ContextDep) -> timedelta:
    return timedelta(hours=context.settings.campaign_reply_window_hours)


ReplyWindowDep = Annotated[timedelta, Depends(reply_window)]


async def _one(
    session: SessionDep, campaign: Campaign, window: timedelta
) -> Envelope[CampaignPublic]:
    return ok((await campaign_service.public(session, [campaign], window))[0])


@router.post("", response_model=Envelope[CampaignPublic], responses=error_responses(401, 403, 422))
async def create_campaign(
    body: CampaignCreate, principal: MarketingDep, session: SessionDep, window: ReplyWindowDep
) -> Envelope[CampaignPublic]:
    """Create a campaign (draft) from a template, segments and a schedule."""
    campaign = await campaign_service.create_campaign(session, principal.merchant_id, body)
    return await _one(session, campaign, window)


@router.get("", response_model=Page[CampaignPublic], responses=error_responses(401, 403, 422))
async def list_campaigns(
    principal: ReaderDep,
    session: SessionDep,
    window: ReplyWindowDep,
    page: PageDep,
    status: Annotated[CampaignStatus | None, Query()] = None,
    type: Annotated[CampaignType | None, Query()] = None,
) -> Page[CampaignPublic]:
    """The merchant's campaigns, newest first, with their headline metrics."""
    rows, total = await page.fetch(
        session, campaign_service.list_statement(principal.merchant_id, status, type)
    )
    return page.page(await campaign_service.public(session, rows, window), total)


@router.get(
    "/{campaignId}", response_model=Envelope[CampaignPublic], responses=error_responses(401, 404)
)
async def get_campaign(
    campaign: CampaignDep, session: SessionDep, window: ReplyWindowDep
) -> Envelope[CampaignPublic]:
    """One campaign with its status and headline metrics."""
    return await _one(session, campaign, window)


@router.put(
    "/{campaignId}",
    response_model=Envelope[CampaignPublic],
    responses=error_responses(400, 401, 403, 404, 422, 503),
)
async def update_campaign(
    body: CampaignUpdate,
    campaign: CampaignForChangeDep,
    session: SessionDep,
    window: ReplyWindowDep,
    context: ContextDep,
    temporal: TemporalSourceDep,
) -> Envelope[CampaignPublic]:
    """Update a draft or scheduled campaign (400 otherwise); a new startAt of a scheduled one
    moves its workflow's timer."""
    campaign = await campaign_starts.update_campaign(
        session, temporal, context.settings, campaign, body
    )
    return await _one(session, campaign, window)


@router.post(
    "/{campaignId}/start",
    response_model=Envelope[CampaignPublic],
    responses=error_responses(400, 401, 403, 404, 409, 503),
)
async def start_campaign(
    campaign: CampaignForChangeDep,
    session: SessionDep,
    window: ReplyWindowDep,
    context: ContextDep,
    temporal: TemporalSourceDep,
) -> Envelope[CampaignPublic]:
    """Start: scheduled (future startAt or a recurrence) or running now. 400 without segments
    or with an invalid template; 409 when already started. Accepted for good even while the
    workflow service is away: the run then starts when it is back."""
    campaign = await campaign_starts.start_campaign(session, temporal, context.settings, campaign)
    return await _one(session, campaign, window)


@router.post(
    "/{campaignId}/pause",
    response_model=Envelope[CampaignPublic],
    responses=error_responses(400, 401, 403, 404),
)
async def pause_campaign(
    campaign: CampaignForControlDep,
    session: SessionDep,
    window: ReplyWindowDep,
    temporal: TemporalDep,
) -> Envelope[CampaignPublic]:
    """Pause a running campaign, or a recurring one between occurrences (its Schedule pauses:
    no occurrence starts until it is resumed); 400 naming the status otherwise."""
    campaign = await campaign_runs.pause_campaign(temporal, session, campaign)
    return await _one(session, campaign, window)


@router.post(
    "/{campaignId}/resume",
    response_model=Envelope[CampaignPublic],
    responses=error_responses(400, 401, 403, 404),
)
async def resume_campaign(
    campaign: CampaignForControlDep,
    session: SessionDep,
    window: ReplyWindowDep,
    temporal: TemporalDep,
) -> Envelope[CampaignPublic]:
    """Resume a paused campaign (400 naming the status otherwise)."""
    campaign = await campaign_runs.resume_campaign(temporal, session, campaign)
    return await _one(session, campaign, window)


@router.get(
    "/{campaignId}/metrics",
    response_model=Envelope[CampaignMetricsDetail],
    responses=error_responses(401, 404, 422),
)
async def get_metrics(
    campaign: CampaignDep,
    session: SessionDep,
    window: ReplyWindowDep,
    temporal: TemporalDep,
    bucket: Annotated[
        campaign_metrics.Bucket, Query(description="timeline bucket: minute, hour or day")
    ] = campaign_metrics.Bucket.hour,
) -> Envelope[CampaignMetricsDetail]:
    """Sent, delivered, failed, opened, clicked, replied, the four rates and a timeline; while
    a run exists, `live` is what the workflow reports (e.g. sleeping until the quota frees)."""
    metrics = await campaign_metrics.campaign_metrics(session, campaign.id, bucket, window)
    if campaign.status in STARTED:
        progress = await campaign_runs.progress(temporal, campaign)
        if progress is not None:
            reported = progress.model_dump()
            metrics.live = CampaignLive.model_validate(
                {k: v for k, v in reported.items() if k in CampaignLive.model_fields}
            )
    return ok(metrics)


class RecipientsFormat(StrEnum):
    json = "json"
    csv = "csv"


def _wants_csv(request: Request, requested: RecipientsFormat | None) -> bool:
    """`format` decides; without it, an Accept header preferring text/csv to JSON does."""
    if requested is not None:
        return requested is RecipientsFormat.csv
    weights: dict[str, float] = {}
    for item in request.headers.get("accept", "").split(","):
        media, _, params = item.partition(";")
        quality = 1.0
        for param in params.split(";"):
            key, _, value = param.partition("=")
            if key.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        weights[media.strip().lower()] = quality
    return weights.get("text/csv", 0.0) > weights.get("application/json", 0.0)


@router.get(
    "/{campaignId}/recipients",
    response_model=Page[CampaignRecipientPublic],
    responses={
        200: {
            "description": "A page of recipients (JSON), or with `format=csv` / "
            "`Accept: text/csv` all of them as a CSV file (header row, the same fields).",
            "content": {
                "text/csv": {
                    "schema": {"type": "string"},
                    "example": "contactId,username,displayName,occurrence,state,skipReason,"
                    "sentAt,deliveredAt,openedAt,clickedAt,repliedAt\r\n",
                }
            },
        },
        **error_responses(401, 404, 422),
    },
)
async def list_recipients(
    request: Request,
    campaign: CampaignDep,
    session: SessionDep,
    context: ContextDep,
    window: ReplyWindowDep,
    page: PageDep,
    state: Annotated[
        RecipientState | None, Query(description="only recipients in this state")
    ] = None,
    output: Annotated[
        RecipientsFormat | None,
        Query(alias="format", description="csv: the whole list as a file (skip/take ignored)"),
    ] = None,
) -> Page[CampaignRecipientPublic] | StreamingResponse:
    """Who the campaign went to, with the state and times its metrics count them by."""
    if _wants_csv(request, output):
        filename = campaign_recipients.csv_filename(campaign, state)
        return StreamingResponse(
            campaign_recipients.csv_lines(context.sessions, campaign, state, window),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )
    rows, total = await campaign_recipients.list_recipients(
        session, campaign, state, window, skip=page.skip, take=page.take
    )
    return page.page(rows, total)


@router.post(
    "/{campaignId}/test",
    response_model=Envelope[list[CampaignTestResult]],
    responses=error_responses(400, 401, 403, 404, 422, 429),
)
async def test_campaign(
    body: CampaignTestRequest,
    campaign: CampaignForControlDep,
    session: SessionDep,
    context: ContextDep,
    temporal: TemporalDep,
) -> Envelope[list[CampaignTestResult]]:
    """Send the message now to the listed contacts, as tests (never in the metrics)."""
    results = await campaign_tests.send_tests(
        session,
        settings=context.settings,
        temporal=temporal,
        campaign=campaign,
        contact_ids=body.contact_ids,
        variables=body.variables,
    )
    return ok(results)
