"""Driving CampaignWorkflow from the API: start (or a Temporal Schedule for a recurrence),
reschedule, pause and resume (Updates), live progress (Query)."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleCalendarSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
)
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from mktx.settings import Settings
from models.account import XAccount
from models.campaign import Campaign, CampaignStatus, Recurrence
from services.errors import Conflict, InvalidState, ServiceUnavailable
from workflows import ids
from workflows.campaign import CampaignInput, CampaignProgress, CampaignWorkflow, ScheduleChange

logger = logging.getLogger(__name__)

# Recipients per send_batch activity and DMs in flight at once (tests shrink the batch).
BATCH_SIZE = 500
CONCURRENCY = 32

_WEEKDAYS = ["sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"]


def _input(campaign: Campaign, *, recurring: bool) -> CampaignInput:
    return CampaignInput(
        merchant_id=campaign.merchant_id,
        campaign_id=campaign.id,
        start_at=None if recurring else campaign.start_at,
        end_at=None if recurring else campaign.end_at,
        recurring=recurring,
        batch_size=BATCH_SIZE,
        concurrency=CONCURRENCY,
    )


async def account_timezone(session: AsyncSession, merchant_id: str) -> str:
    """The timezone of the merchant's accounts (their business hours), else UTC."""
    rows = await session.exec(
        select(XAccount)
        .where(col(XAccount.merchant_id) == merchant_id)
        .order_by(col(XAccount.created_at))
    )
    for account in rows.all():
        timezone = (account.business_hours or {}).get("timezone")
        if timezone:
            return str(timezone)
    return "UTC"


def schedule_spec(
    recurrence: Recurrence, timezone: str, start_at: datetime | None, end_at: datetime | None
) -> ScheduleSpec:
    zone = recurrence.timezone or timezone
    if recurrence.cron is not None:
        return ScheduleSpec(
            cron_expressions=[recurrence.cron],
            time_zone_name=zone,
            start_at=start_at,
            end_at=end_at,
        )
    assert recurrence.time is not None
    hour, minute = (int(part) for part in recurrence.time.split(":"))
    calendar = ScheduleCalendarSpec(
        hour=[ScheduleRange(hour)],
        minute=[ScheduleRange(minute)],
        second=[ScheduleRange(0)],
        day_of_week=(
            [ScheduleRange(_WEEKDAYS.index(recurrence.day_of_week))]
            if recurrence.frequency == "weekly" and recurrence.day_of_week
            else [ScheduleRange(0, 6)]
        ),
    )
    return ScheduleSpec(calendars=[calendar], time_zone_name=zone, start_at=start_at, end_at=end_at)


async def start(
    temporal: Client, settings: Settings, session: AsyncSession, campaign: Campaign
) -> None:
    """Start the committed campaign's workflow, or its Schedule when it recurs."""
    attributes = ids.campaign_attributes(campaign.merchant_id, str(campaign.id))
    try:
        if campaign.recurrence is not None:
            recurrence = Recurrence.model_validate(campaign.recurrence)
            timezone = await account_timezone(session, campaign.merchant_id)
            await temporal.create_schedule(
                ids.campaign_schedule_id(str(campaign.id)),
                Schedule(
                    action=ScheduleActionStartWorkflow(
                        CampaignWorkflow.run,
                        _input(campaign, recurring=True),
                        id=ids.campaign_id(str(campaign.id)),
                        task_queue=settings.task_queue,
                        typed_search_attributes=attributes,
                    ),
                    spec=schedule_spec(recurrence, timezone, campaign.start_at, campaign.end_at),
                    # An occurrence still sending when the next is due: the next waits.
                    policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.BUFFER_ONE),
                ),
            )
        else:
            await temporal.start_workflow(
                CampaignWorkflow.run,
                _input(campaign, recurring=False),
                id=ids.campaign_id(str(campaign.id)),
                task_queue=settings.task_queue,
                search_attributes=attributes,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            )
    except (WorkflowAlreadyStartedError, ScheduleAlreadyRunningError):
        raise Conflict("the campaign is already started") from None
    except RPCError as exc:
        raise ServiceUnavailable(f"the workflow service is unavailable: {exc.message}") from None
    logger.info("campaign.workflow_started", extra={"campaign_id": str(campaign.id)})


def handle(temporal: Client, campaign: Campaign) -> WorkflowHandle[Any, CampaignProgress]:
    """The running occurrence: the one that began last (its workflow id is the run key)."""
    workflow_id = campaign.last_run_key or ids.campaign_id(str(campaign.id))
    return temporal.get_workflow_handle_for(CampaignWorkflow.run, workflow_id)


async def reschedule(temporal: Client, session: AsyncSession, campaign: Campaign) -> None:
    """A scheduled campaign's new startAt/endAt reaches its waiting workflow; a recurring
    one's new recurrence/startAt/endAt its Temporal Schedule."""
    if campaign.status != CampaignStatus.scheduled:
        return
    if campaign.recurrence is not None:
        spec = schedule_spec(
            Recurrence.model_validate(campaign.recurrence),
            await account_timezone(session, campaign.merchant_id),
            campaign.start_at,
            campaign.end_at,
        )

        def updater(current: ScheduleUpdateInput) -> ScheduleUpdate:
            schedule = current.description.schedule
            schedule.spec = spec
            return ScheduleUpdate(schedule=schedule)

        await temporal.get_schedule_handle(ids.campaign_schedule_id(str(campaign.id))).update(
            updater
        )
        return
    try:
        await handle(temporal, campaign).signal(
            CampaignWorkflow.reschedule,
            ScheduleChange(start_at=campaign.start_at, end_at=campaign.end_at),
        )
    except RPCError as exc:
        logger.warning(
            "campaign.reschedule_failed",
            extra={"campaign_id": str(campaign.id), "error": exc.message},
        )


async def pause(temporal: Client, campaign: Campaign) -> CampaignStatus:
    return await _update(temporal, campaign, CampaignWorkflow.pause, "paused")


async def resume(temporal: Client, campaign: Campaign) -> CampaignStatus:
    return await _update(temporal, campaign, CampaignWorkflow.resume, "resumed")


async def _update(temporal: Client, campaign: Campaign, update: Any, action: str) -> CampaignStatus:
    try:
        status = await handle(temporal, campaign).execute_update(update)
    except WorkflowUpdateFailedError as exc:
        raise InvalidState(
            f"a {campaign.status} campaign cannot be {action}",
            details={"status": str(campaign.status), "reason": str(exc.cause or exc)},
        ) from None
    except RPCError as exc:
        raise InvalidState(
            f"a {campaign.status} campaign cannot be {action} (its run has ended)",
            details={"status": str(campaign.status), "reason": exc.message},
        ) from None
    return CampaignStatus(status)


async def progress(temporal: Client, campaign: Campaign) -> CampaignProgress | None:
    try:
        return await handle(temporal, campaign).query(CampaignWorkflow.progress)
    except (RPCError, WorkflowQueryFailedError):
        return None
