"""Driving a campaign's Temporal run from the API: its input and Schedule spec, reschedule,
pause and resume (Updates), live progress (Query). Starting it, durably, is starts.py's.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import (
    Client,
    ScheduleCalendarSpec,
    ScheduleRange,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
)
from temporalio.service import RPCError, RPCStatusCode

from models.account import XAccount
from models.campaign import Campaign, CampaignStatus, Recurrence
from models.db import utcnow
from services.campaigns import campaigns as campaign_service
from services.core.errors import InvalidState, ServiceUnavailable
from workflows import ids
from workflows.campaign import CampaignWorkflow
from workflows.contracts.campaigns import CampaignInput, CampaignProgress, ScheduleChange

logger = logging.getLogger(__name__)

# Recipients per send_batch activity and DMs in flight at once (tests shrink the batch).
BATCH_SIZE = 500
CONCURRENCY = 32

_WEEKDAYS = ["sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"]


def run_input(campaign: Campaign, *, recurring: bool) -> CampaignInput:
    """What the campaign's workflow starts with (a recurrence's Schedule passes it to each
    occurrence, whose times are the Schedule's own)."""
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


def handle(temporal: Client, campaign: Campaign) -> WorkflowHandle[Any, CampaignProgress]:
    """The running occurrence: the one that began last (its workflow id is the run key)."""
    workflow_id = campaign.last_run_key or ids.campaign_id(str(campaign.id))
    return temporal.get_workflow_handle_for(CampaignWorkflow.run, workflow_id)


async def reschedule(temporal: Client, session: AsyncSession, campaign: Campaign) -> None:
    """A scheduled campaign's startAt/endAt reach its waiting workflow; a recurring one's
    recurrence, startAt and endAt its Temporal Schedule. Raises RPCError when Temporal cannot
    take them (the caller leaves them owed); a one-off run that has ended takes nothing."""
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
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
        logger.warning("campaign.reschedule_run_ended", extra={"campaign_id": str(campaign.id)})


async def pause_campaign(temporal: Client, session: AsyncSession, campaign: Campaign) -> Campaign:
    """Pause (see `pause`), answering the campaign as it is then; 400 naming the status when
    it cannot pause."""
    campaign_service.require_pausable(campaign)
    # No transaction held open while the run's Update waits on its own write to this row.
    await session.commit()
    await pause(temporal, session, campaign)
    await session.refresh(campaign)
    return campaign


async def resume_campaign(temporal: Client, session: AsyncSession, campaign: Campaign) -> Campaign:
    """Resume (see `resume`), answering the campaign as it is then; 400 unless paused."""
    campaign_service.require_status(campaign, CampaignStatus.paused, "resumed")
    await session.commit()  # as in pause_campaign
    await resume(temporal, session, campaign)
    await session.refresh(campaign)
    return campaign


async def pause(temporal: Client, session: AsyncSession, campaign: Campaign) -> CampaignStatus:
    """Pause the campaign: its sending occurrence (an Update), and for a recurring campaign also
    its Temporal Schedule, so no further occurrence starts until it is resumed."""
    if campaign.recurrence is None:
        return await _update(temporal, campaign, CampaignWorkflow.pause, "paused")
    await _schedule_paused(temporal, campaign, paused=True)
    # Between occurrences: the campaign row says so (an occurrence beginning meanwhile reads
    # it under its lock and begins paused). While one sends: that occurrence pauses itself.
    # Once more if the occurrence ended in between.
    for attempt in range(2):
        if await _move(session, campaign, CampaignStatus.scheduled, CampaignStatus.paused):
            return CampaignStatus.paused
        try:
            return await _update(temporal, campaign, CampaignWorkflow.pause, "paused")
        except InvalidState:
            if attempt:
                raise
    raise AssertionError("unreachable")


async def resume(temporal: Client, session: AsyncSession, campaign: Campaign) -> CampaignStatus:
    """Resume the campaign: a paused occurrence goes on sending; a recurring campaign's
    Schedule starts the next occurrences again."""
    if campaign.recurrence is None:
        return await _update(temporal, campaign, CampaignWorkflow.resume, "resumed")
    await _schedule_paused(temporal, campaign, paused=False)
    if campaign.last_run_key is not None and await _is_running(handle(temporal, campaign)):
        return await _update(temporal, campaign, CampaignWorkflow.resume, "resumed")
    await _move(session, campaign, CampaignStatus.paused, CampaignStatus.scheduled)
    return CampaignStatus.scheduled


PAUSE_NOTE = "paused by a user through the mkt-x API"


async def _schedule_paused(temporal: Client, campaign: Campaign, *, paused: bool) -> None:
    schedule = temporal.get_schedule_handle(ids.campaign_schedule_id(str(campaign.id)))
    try:
        if paused:
            await schedule.pause(note=PAUSE_NOTE)
        else:
            await schedule.unpause(note="resumed through the mkt-x API")
    except RPCError as exc:
        raise ServiceUnavailable(f"the workflow service is unavailable: {exc.message}") from None


async def _move(
    session: AsyncSession, campaign: Campaign, current: CampaignStatus, new: CampaignStatus
) -> bool:
    """Set the status if it still is `current` (one statement: no lost race with a workflow)."""
    result = await session.execute(
        update(Campaign)
        .where(col(Campaign.id) == campaign.id, col(Campaign.status) == current)
        .values(
            status=new,
            status_reason=PAUSE_NOTE if new == CampaignStatus.paused else None,
            updated_at=utcnow(),
        )
    )
    await session.commit()
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def _is_running(workflow_handle: WorkflowHandle[Any, Any]) -> bool:
    try:
        description = await workflow_handle.describe()
    except RPCError:
        return False
    return description.status == WorkflowExecutionStatus.RUNNING


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
