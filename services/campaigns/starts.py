"""Starting a campaign's run durably, and keeping that run in line with the campaign's schedule.

Invariant: a started campaign (scheduled, running, paused) whose `temporal_synced_at` is set
has its run in Temporal as its row describes it: the CampaignWorkflow `campaign:{id}`, or for a
recurrence the Temporal Schedule `campaign-schedule:{id}`, holding the row's startAt, endAt and
recurrence. While that is owed the column is NULL:

- a start commits the new status with the column NULL (from then on the start is accepted;
  the workflow reads the row), asks Temporal for the run, then sets the column;
- a new startAt, endAt or recurrence of a scheduled campaign goes the same way;
- with Temporal away (or the process dying in between) the column stays NULL and the API
  answers as on success; the maintenance schedule (`sync_owed`) carries it out once the row is
  older than a grace period.

Carrying it out again starts nothing twice: the workflow id is the campaign's and is never
reused (REJECT_DUPLICATE: not even after its run ended) and a Schedule id exists once; a run
found there means the start was done, and the row's schedule is sent to it again (a signal or
a Schedule update, both idempotent). The column is set only while the row still holds the
schedule that was sent, so a change committed meanwhile is never taken as delivered.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleOverlapPolicy,
    SchedulePolicy,
)
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from mktx.settings import Settings
from models.campaign import Campaign, CampaignStatus, CampaignUpdate, Recurrence
from models.db import SessionMaker, utcnow
from services.campaigns import campaigns as campaign_service
from services.campaigns import runs
from services.core.errors import ServiceUnavailable
from services.core.owed_starts import start_each
from services.core.temporal import TemporalSource
from workflows import ids
from workflows.campaign import CampaignWorkflow
from workflows.contracts.owed_starts import StartsReport

logger = logging.getLogger(__name__)

# The process's Temporal client, connected on first use: a start is accepted without it.

# Temporal not reachable now, as opposed to refusing what it was asked: the work stays owed.
_AWAY = {
    RPCStatusCode.UNAVAILABLE,
    RPCStatusCode.DEADLINE_EXCEEDED,
    RPCStatusCode.RESOURCE_EXHAUSTED,
    RPCStatusCode.ABORTED,
    RPCStatusCode.CANCELLED,
}

Carried = tuple[datetime | None, datetime | None, dict[str, Any] | None]


async def start_campaign(
    session: AsyncSession, temporal: TemporalSource, settings: Settings, campaign: Campaign
) -> Campaign:
    """Start the campaign (409 when started already, 400 when it cannot start: see
    `mark_started`). It is then started for good, its run following now or, with Temporal
    away, from the maintenance schedule: the answer is the same. Only a run Temporal refuses
    answers 503, the campaign a draft again, as it always did."""
    await campaign_service.mark_started(session, campaign)
    await session.commit()
    try:
        await _sync_now(session, temporal, settings, campaign, "start")
    except RPCError as exc:
        campaign.status, campaign.started_at = CampaignStatus.draft, None
        campaign.updated_at = utcnow()
        await session.commit()
        raise ServiceUnavailable(f"the workflow service is unavailable: {exc.message}") from None
    return campaign


async def update_campaign(
    session: AsyncSession,
    temporal: TemporalSource,
    settings: Settings,
    campaign: Campaign,
    body: CampaignUpdate,
) -> Campaign:
    """Update the campaign (`campaigns.update_campaign`'s rules); a scheduled campaign's new
    startAt, endAt or recurrence then reaches its run as a start does. A schedule Temporal
    refuses answers 503, the change kept and still owed."""
    before = _carried(campaign)
    await campaign_service.update_campaign(session, campaign, body)
    if campaign.status != CampaignStatus.scheduled or _carried(campaign) == before:
        return campaign  # nothing for Temporal: the request's own commit keeps the change
    campaign.temporal_synced_at = None
    await session.commit()
    try:
        await _sync_now(session, temporal, settings, campaign, "reschedule")
    except RPCError as exc:
        raise ServiceUnavailable(
            f"the workflow service refused the new schedule: {exc.message}"
        ) from None
    return campaign


async def sync_owed(
    sessions: SessionMaker, temporal: Client, settings: Settings, *, grace: timedelta, limit: int
) -> StartsReport:
    """Carry out what Temporal owes the started campaigns not synced for longer than `grace`,
    oldest first, up to `limit` (the maintenance schedule's step). Safe to run concurrently."""
    async with sessions() as session:
        owed = list(
            (
                await session.exec(
                    select(col(Campaign.id))
                    .where(
                        col(Campaign.temporal_synced_at).is_(None),
                        col(Campaign.status).in_(campaign_service.STARTED),
                        col(Campaign.updated_at) <= utcnow() - grace,
                    )
                    .order_by(col(Campaign.updated_at))
                    .limit(limit)
                )
            ).all()
        )
    return await start_each(
        owed,
        lambda campaign_id: _sync_one(sessions, temporal, settings, campaign_id),
        event="campaign",
        describe=lambda campaign_id: {"campaign_id": str(campaign_id)},
    )


async def sync_run(
    session: AsyncSession, temporal: Client, settings: Settings, campaign: Campaign
) -> bool:
    """Make Temporal hold the campaign's run as the row says, then record that it does (see
    the module). True when the run was started now; False when it was there already, and was
    sent the row's schedule."""
    carried = _carried(campaign)
    started = await _start_run(temporal, settings, session, campaign)
    if not started:
        await runs.reschedule(temporal, session, campaign)
    await _mark_synced(session, campaign, carried)
    return started


async def _mark_synced(session: AsyncSession, campaign: Campaign, carried: Carried) -> bool:
    """Record that Temporal holds the run as `carried`, if the row still says so (under its
    lock: a change committed meanwhile stays owed, and is carried out by whoever made it or
    by the next maintenance pass)."""
    row = (
        await session.execute(
            select(
                col(Campaign.temporal_synced_at),
                col(Campaign.start_at),
                col(Campaign.end_at),
                col(Campaign.recurrence),
            )
            .where(col(Campaign.id) == campaign.id)
            .with_for_update()
        )
    ).one_or_none()
    marked = row is not None and row[0] is None and tuple(row[1:]) == carried
    if marked:
        now = utcnow()
        await session.execute(
            update(Campaign)
            .where(col(Campaign.id) == campaign.id)
            # Not a change of the campaign: its updatedAt stays.
            .values(temporal_synced_at=now, updated_at=col(Campaign.updated_at))
            .execution_options(synchronize_session=False)
        )
        set_committed_value(campaign, "temporal_synced_at", now)
    await session.commit()
    return marked


async def _sync_now(
    session: AsyncSession,
    temporal: TemporalSource,
    settings: Settings,
    campaign: Campaign,
    action: str,
) -> None:
    """`sync_run` within the request; Temporal away leaves it owed (logged), a refusal raises."""
    try:
        await sync_run(session, await temporal(), settings, campaign)
    except (RPCError, ServiceUnavailable) as exc:
        if isinstance(exc, RPCError) and exc.status not in _AWAY:
            raise
        logger.warning(
            "campaign.sync_deferred",
            extra={"campaign_id": str(campaign.id), "action": action, "error": str(exc)},
        )


async def _sync_one(
    sessions: SessionMaker, temporal: Client, settings: Settings, campaign_id: uuid.UUID
) -> bool:
    async with sessions() as session:
        campaign = await session.get(Campaign, campaign_id)
        if (
            campaign is None
            or campaign.temporal_synced_at is not None
            or campaign.status not in campaign_service.STARTED
        ):
            return False  # settled meanwhile (by the request itself, or another pass)
        return await sync_run(session, temporal, settings, campaign)


async def _start_run(
    temporal: Client, settings: Settings, session: AsyncSession, campaign: Campaign
) -> bool:
    """Start the campaign's workflow, or its Schedule when it recurs; False when it exists."""
    attributes = ids.campaign_attributes(campaign.merchant_id, str(campaign.id))
    try:
        if campaign.recurrence is not None:
            recurrence = Recurrence.model_validate(campaign.recurrence)
            timezone = await runs.account_timezone(session, campaign.merchant_id)
            await temporal.create_schedule(
                ids.campaign_schedule_id(str(campaign.id)),
                Schedule(
                    action=ScheduleActionStartWorkflow(
                        CampaignWorkflow.run,
                        runs.run_input(campaign, recurring=True),
                        id=ids.campaign_id(str(campaign.id)),
                        task_queue=settings.task_queue,
                        typed_search_attributes=attributes,
                    ),
                    spec=runs.schedule_spec(
                        recurrence, timezone, campaign.start_at, campaign.end_at
                    ),
                    # An occurrence still sending when the next is due: the next waits.
                    policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.BUFFER_ONE),
                ),
            )
        else:
            await temporal.start_workflow(
                CampaignWorkflow.run,
                runs.run_input(campaign, recurring=False),
                id=ids.campaign_id(str(campaign.id)),
                task_queue=settings.task_queue,
                search_attributes=attributes,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            )
    except (WorkflowAlreadyStartedError, ScheduleAlreadyRunningError):
        return False
    logger.info("campaign.workflow_started", extra={"campaign_id": str(campaign.id)})
    return True


def _carried(campaign: Campaign) -> Carried:
    """What of the row its run holds: the schedule (the rest it reads when it begins)."""
    return campaign.start_at, campaign.end_at, campaign.recurrence
