"""Campaigns: create/update rules and the status machine (runs.py and starts.py drive the run).

Statuses: draft → scheduled → running ⇄ paused → completed, plus cancelled and failed. The
workflow owns the transitions after start (running, paused, completed, failed); the API checks
the current status first so the caller gets a 400 naming it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from models.campaign import (
    ACTIVE_STATUSES,
    Campaign,
    CampaignCreate,
    CampaignMetrics,
    CampaignPublic,
    CampaignSchedule,
    CampaignStatus,
    CampaignType,
    CampaignUpdate,
    RecipientState,
)
from models.db import utcnow
from models.segment import Segment
from models.template import Template, TemplateType
from services.core.errors import BadRequest, Conflict, InvalidState, ValidationFailed
from services.core.tenancy import get_owned, owned_by
from services.segments import segments as segment_service
from services.templates import templates as template_service

logger = logging.getLogger(__name__)

UPDATABLE = (CampaignStatus.draft, CampaignStatus.scheduled)
STARTED = (CampaignStatus.scheduled, CampaignStatus.running, CampaignStatus.paused)


# Reading --------------------------------------------------------------------------------------


async def get_campaign(
    session: AsyncSession, merchant_id: str, campaign_id: uuid.UUID, *, for_update: bool = False
) -> Campaign:
    return await get_owned(
        session, Campaign, merchant_id, campaign_id, resource="campaign", for_update=for_update
    )


def list_statement(
    merchant_id: str, status: CampaignStatus | None, type: CampaignType | None
) -> Any:
    statement = owned_by(Campaign, merchant_id).order_by(
        col(Campaign.created_at).desc(), col(Campaign.id)
    )
    if status is not None:
        statement = statement.where(col(Campaign.status) == status)
    if type is not None:
        statement = statement.where(col(Campaign.type) == type)
    return statement


def schedule_of(campaign: Campaign) -> CampaignSchedule:
    return CampaignSchedule.model_validate(
        {
            "start_at": campaign.start_at,
            "end_at": campaign.end_at,
            "recurrence": campaign.recurrence,
        }
    )


async def summary_metrics(
    session: AsyncSession, campaign_ids: Sequence[uuid.UUID], reply_window: timedelta
) -> dict[uuid.UUID, CampaignMetrics]:
    """The headline counts of several campaigns in one grouped query (opened/clicked/replied
    come from `services.campaigns.metrics`, which joins the webhook-derived data)."""
    from services.campaigns.metrics import headline_counts

    return await headline_counts(session, campaign_ids, reply_window)


async def public(
    session: AsyncSession, campaigns: Sequence[Campaign], reply_window: timedelta
) -> list[CampaignPublic]:
    metrics = await summary_metrics(session, [c.id for c in campaigns], reply_window)
    return [
        CampaignPublic.model_validate(
            {
                "id": c.id,
                "merchant_id": c.merchant_id,
                "name": c.name,
                "type": c.type,
                "status": c.status,
                "status_reason": c.status_reason,
                "template_id": c.template_id,
                "segment_ids": list(c.segment_ids),
                "variables": c.variables,
                "schedule": schedule_of(c),
                "metrics": metrics.get(c.id, CampaignMetrics()),
                "started_at": c.started_at,
                "completed_at": c.completed_at,
                "created_at": c.created_at,
                "updated_at": c.updated_at,
            }
        )
        for c in campaigns
    ]


# Writing --------------------------------------------------------------------------------------


async def _check_template(session: AsyncSession, merchant_id: str, template_id: uuid.UUID) -> None:
    found = (
        await session.execute(
            select(col(Template.id)).where(
                col(Template.id) == template_id, col(Template.merchant_id) == merchant_id
            )
        )
    ).first()
    if found is None:
        raise ValidationFailed("templateId", f"no template {template_id}")


async def _check_segments(
    session: AsyncSession, merchant_id: str, segment_ids: Sequence[uuid.UUID]
) -> list[uuid.UUID]:
    unique = list(dict.fromkeys(segment_ids))
    if not unique:
        return []
    found = set(
        (
            await session.execute(
                select(col(Segment.id)).where(
                    col(Segment.id).in_(unique), col(Segment.merchant_id) == merchant_id
                )
            )
        )
        .scalars()
        .all()
    )
    for i, segment_id in enumerate(unique):
        if segment_id not in found:
            raise ValidationFailed(f"segmentIds[{i}]", f"no segment {segment_id}")
    return unique


def _recurrence_json(schedule: CampaignSchedule) -> dict[str, Any] | None:
    if schedule.recurrence is None:
        return None
    return schedule.recurrence.model_dump(mode="json", by_alias=True, exclude_none=True)


async def create_campaign(
    session: AsyncSession, merchant_id: str, body: CampaignCreate
) -> Campaign:
    if body.template_id is not None:
        await _check_template(session, merchant_id, body.template_id)
    segment_ids = await _check_segments(session, merchant_id, body.segment_ids)
    campaign = Campaign(
        merchant_id=merchant_id,
        name=body.name,
        type=body.type,
        template_id=body.template_id,
        segment_ids=segment_ids,
        variables=dict(body.variables),
        start_at=body.schedule.start_at,
        end_at=body.schedule.end_at,
        recurrence=_recurrence_json(body.schedule),
    )
    session.add(campaign)
    await session.flush()
    logger.info("campaign.created", extra={"campaign_id": str(campaign.id)})
    return campaign


async def update_campaign(
    session: AsyncSession, campaign: Campaign, body: CampaignUpdate
) -> Campaign:
    """Only a draft or scheduled campaign changes (400 naming the status otherwise)."""
    if campaign.status not in UPDATABLE:
        raise InvalidState(
            f"a {campaign.status} campaign cannot be updated (only draft or scheduled)",
            details={"status": str(campaign.status)},
        )
    sent = body.model_fields_set
    if "name" in sent and body.name is not None:
        campaign.name = body.name
    if "type" in sent and body.type is not None:
        campaign.type = body.type
    if "template_id" in sent:
        if body.template_id is None and campaign.status == CampaignStatus.scheduled:
            raise ValidationFailed("templateId", "a scheduled campaign needs its template")
        if body.template_id is not None:
            await _check_template(session, campaign.merchant_id, body.template_id)
        campaign.template_id = body.template_id
    if "segment_ids" in sent and body.segment_ids is not None:
        ids = await _check_segments(session, campaign.merchant_id, body.segment_ids)
        if not ids and campaign.status == CampaignStatus.scheduled:
            raise ValidationFailed("segmentIds", "a scheduled campaign needs a segment")
        campaign.segment_ids = ids
    if "variables" in sent and body.variables is not None:
        campaign.variables = dict(body.variables)
    if "schedule" in sent and body.schedule is not None:
        given = body.schedule.model_fields_set
        if "start_at" in given:
            campaign.start_at = body.schedule.start_at
        if "end_at" in given:
            campaign.end_at = body.schedule.end_at
        if "recurrence" in given:
            recurrence = _recurrence_json(body.schedule)
            started = campaign.status == CampaignStatus.scheduled
            if started and (recurrence is None) != (campaign.recurrence is None):
                raise ValidationFailed(
                    "schedule.recurrence",
                    "a started campaign keeps being one-off or recurring; change the "
                    "recurrence itself, or create another campaign",
                )
            campaign.recurrence = recurrence
        if campaign.start_at and campaign.end_at and campaign.end_at <= campaign.start_at:
            raise ValidationFailed("schedule.endAt", "must be after startAt")
    if campaign.status == CampaignStatus.scheduled:
        await _check_startable(session, campaign)
    campaign.updated_at = utcnow()
    session.add(campaign)
    await session.flush()
    logger.info("campaign.updated", extra={"campaign_id": str(campaign.id)})
    return campaign


async def _check_startable(session: AsyncSession, campaign: Campaign) -> Template:
    if not campaign.segment_ids:
        raise BadRequest("the campaign has no segments", details={"field": "segmentIds"})
    if campaign.template_id is None:
        raise BadRequest("the campaign has no template", details={"field": "templateId"})
    template = await session.get(Template, campaign.template_id)
    if template is None or template.merchant_id != campaign.merchant_id:
        raise BadRequest(
            "the campaign's template no longer exists", details={"field": "templateId"}
        )
    try:
        template_service.validate_definition(
            type=TemplateType(template.type),
            content=template.content,
            variables=list(template.variables),
            options=template_service.stored_options(template) or None,
            card=template_service.stored_card(template),
        )
    except ValidationFailed as exc:
        raise BadRequest(
            f"the campaign's template is invalid: {exc.message}",
            details={"field": "templateId", "reason": exc.message},
        ) from None
    return template


async def mark_started(session: AsyncSession, campaign: Campaign) -> Campaign:
    """Check a campaign may start and move it to scheduled (future startAt or a recurrence)
    or running, its run owed to Temporal (`starts.start_campaign` commits, then starts it)."""
    if campaign.status in STARTED:
        raise Conflict(
            f"the campaign is already started ({campaign.status})",
            details={"status": str(campaign.status)},
        )
    if campaign.status != CampaignStatus.draft:
        raise InvalidState(
            f"a {campaign.status} campaign cannot be started",
            details={"status": str(campaign.status)},
        )
    await _check_startable(session, campaign)
    future = campaign.start_at is not None and campaign.start_at > utcnow()
    if future or campaign.recurrence is not None:
        campaign.status = CampaignStatus.scheduled
    else:
        campaign.status = CampaignStatus.running
        campaign.started_at = utcnow()
    campaign.status_reason = None
    campaign.temporal_synced_at = None
    campaign.updated_at = utcnow()
    session.add(campaign)
    await session.flush()
    logger.info(
        "campaign.started", extra={"campaign_id": str(campaign.id), "status": campaign.status}
    )
    return campaign


def require_status(campaign: Campaign, wanted: CampaignStatus, action: str) -> None:
    if campaign.status != wanted:
        raise InvalidState(
            f"a {campaign.status} campaign cannot be {action}; it must be {wanted}",
            details={"status": str(campaign.status)},
        )


def require_pausable(campaign: Campaign) -> None:
    """A running campaign may pause; so may a recurring one waiting for its next occurrence."""
    if campaign.status == CampaignStatus.scheduled and campaign.recurrence is not None:
        return
    wanted = "running (or scheduled, when it recurs)" if campaign.recurrence else "running"
    if campaign.status != CampaignStatus.running:
        raise InvalidState(
            f"a {campaign.status} campaign cannot be paused; it must be {wanted}",
            details={"status": str(campaign.status)},
        )


# In use by campaigns ----------------------------------------------------------------------------


# Each user is named as the merchant knows it, as the flows name theirs: "campaign 'Sale'
# (scheduled)" (the 409's `usedBy`, and its message).
def _named(rows: Sequence[Any]) -> list[str]:
    return [f"campaign '{row.name}' ({row.status})" for row in rows]


async def _campaigns_using_template(session: AsyncSession, template: Template) -> list[str]:
    rows = await session.execute(
        select(col(Campaign.name), col(Campaign.status))
        .where(
            col(Campaign.merchant_id) == template.merchant_id,
            col(Campaign.template_id) == template.id,
            col(Campaign.status).in_(list(ACTIVE_STATUSES)),
        )
        .order_by(col(Campaign.created_at))
    )
    return _named(rows.all())


async def _campaigns_using_segment(session: AsyncSession, segment: Segment) -> list[str]:
    rows = await session.execute(
        select(col(Campaign.name), col(Campaign.status))
        .where(
            col(Campaign.merchant_id) == segment.merchant_id,
            col(Campaign.segment_ids).contains([segment.id]),
            col(Campaign.status).in_(list(ACTIVE_STATUSES)),
        )
        .order_by(col(Campaign.created_at))
    )
    return _named(rows.all())


template_service.register_usage_check(_campaigns_using_template)
segment_service.register_usage_check(_campaigns_using_segment)


# Helpers for the status counts ----------------------------------------------------------------


async def recipient_counts(
    session: AsyncSession, campaign_id: uuid.UUID
) -> dict[RecipientState, int]:
    from models.campaign import CampaignRecipient

    rows = await session.execute(
        select(col(CampaignRecipient.state), func.count())
        .where(col(CampaignRecipient.campaign_id) == campaign_id)
        .group_by(col(CampaignRecipient.state))
    )
    return {RecipientState(state): int(n) for state, n in rows.all()}


def is_future(moment: datetime | None) -> bool:
    return moment is not None and moment > utcnow()
