"""The periodic sweeps, one run per tick of the worker's Temporal Schedule
(`ids.maintenance_schedule_id`, services/maintenance/schedule.py): apply again the stored
webhook events that failed and are due, and start the deliveries left `queued`.

Each sweep is bounded and tried a few times; one failing does not keep the other from running,
and the run then fails so that the Web UI shows it (the next tick tries again)."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.maintenance import (
        REPROCESS_LIMIT,
        MaintenanceActivities,
        ReprocessInput,
        SweepOutboundInput,
    )
    from services.ingestion.reprocess import ReprocessReport
    from services.messaging.sweep import GRACE, SWEEP_LIMIT, SweepReport
    from workflows.ids import MAINTENANCE_WORKFLOW

SWEEP_TIMEOUT = timedelta(minutes=5)
SWEEP_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5),
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=3,
)


class MaintenanceInput(BaseModel):
    reprocess_limit: int = REPROCESS_LIMIT
    outbound_grace_seconds: float = GRACE.total_seconds()
    outbound_limit: int = SWEEP_LIMIT


class MaintenanceResult(BaseModel):
    webhook_events: ReprocessReport | None = None
    outbound: SweepReport | None = None


@workflow.defn(name=MAINTENANCE_WORKFLOW)
class MaintenanceWorkflow:
    @workflow.run
    async def run(self, request: MaintenanceInput) -> MaintenanceResult:
        result = MaintenanceResult()
        failures: list[str] = []
        try:
            result.webhook_events = await workflow.execute_activity_method(
                MaintenanceActivities.reprocess_webhook_events,
                ReprocessInput(limit=request.reprocess_limit),
                start_to_close_timeout=SWEEP_TIMEOUT,
                retry_policy=SWEEP_RETRY,
            )
        except ActivityError as err:
            failures.append(f"webhook events: {err.cause or err}")
        try:
            result.outbound = await workflow.execute_activity_method(
                MaintenanceActivities.sweep_outbound,
                SweepOutboundInput(
                    grace_seconds=request.outbound_grace_seconds, limit=request.outbound_limit
                ),
                start_to_close_timeout=SWEEP_TIMEOUT,
                retry_policy=SWEEP_RETRY,
            )
        except ActivityError as err:
            failures.append(f"outbound messages: {err.cause or err}")
        if failures:
            raise ApplicationError(
                "maintenance sweep failed: " + "; ".join(failures),
                result.model_dump(mode="json"),
                type="MaintenanceFailed",
                non_retryable=True,
            )
        return result


WORKFLOWS: list[type] = [MaintenanceWorkflow]
