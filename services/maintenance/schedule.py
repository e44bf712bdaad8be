"""The worker's Temporal Schedule of MaintenanceWorkflow: created at worker start, or brought
up to date (interval, task queue) when it exists, keeping whatever an operator set on it in the
Web UI (paused, note)."""

from __future__ import annotations

import logging
from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleHandle,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)

from mktx.settings import Settings
from workflows import ids
from workflows.maintenance import MaintenanceInput, MaintenanceWorkflow

logger = logging.getLogger(__name__)

# A run that outlives this is cut short (the next tick starts afresh).
RUN_TIMEOUT = timedelta(minutes=30)


def maintenance_schedule(settings: Settings) -> Schedule:
    every = timedelta(seconds=settings.maintenance_interval_seconds)
    schedule_id = ids.maintenance_schedule_id(settings.task_queue)
    return Schedule(
        action=ScheduleActionStartWorkflow(
            MaintenanceWorkflow.run,
            MaintenanceInput(),
            id=schedule_id,
            task_queue=settings.task_queue,
            execution_timeout=RUN_TIMEOUT,
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
        # A run still going when the next is due: that tick is skipped. Ticks missed while
        # Temporal was away are not made up, beyond one interval.
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP, catchup_window=every),
    )


async def ensure_maintenance_schedule(client: Client, settings: Settings) -> ScheduleHandle:
    """Create the schedule, or update the one there (a second worker start is no error)."""
    schedule = maintenance_schedule(settings)
    schedule_id = ids.maintenance_schedule_id(settings.task_queue)
    try:
        handle = await client.create_schedule(schedule_id, schedule)
    except ScheduleAlreadyRunningError:
        handle = client.get_schedule_handle(schedule_id)

        def updater(current: ScheduleUpdateInput) -> ScheduleUpdate:
            schedule.state = current.description.schedule.state
            return ScheduleUpdate(schedule=schedule)

        await handle.update(updater)
        logger.info(
            "maintenance.schedule_updated",
            extra={
                "schedule_id": schedule_id,
                "every_seconds": settings.maintenance_interval_seconds,
            },
        )
        return handle
    logger.info(
        "maintenance.schedule_created",
        extra={"schedule_id": schedule_id, "every_seconds": settings.maintenance_interval_seconds},
    )
    return handle
