"""The periodic sweeps, one run per tick of the worker's Temporal Schedule
(`ids.maintenance_schedule_id`, services/maintenance/schedule.py): apply again the stored
webhook events that failed and are due, carry out what ingested events still owe the
workflows waiting on their contacts (workflows/contracts/contact_events.py), start the
deliveries left `queued`, start the workflows committed rows still wait for
(workflows/contracts/owed_starts.py), end the flow runs of unusable accounts, fold the analytics
deltas (services/analytics/rebuild.py), and prune what is past its retention window
(services/maintenance/retention.py).

Each sweep is bounded and tried a few times; one failing does not keep the other from running,
and the run then fails so that the Web UI shows it (the next tick tries again)."""

from __future__ import annotations

from datetime import timedelta
from typing import TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

from workflows.contracts import contact_events, owed_starts
from workflows.contracts.contact_events import FollowUpReport, FollowUpsInput
from workflows.contracts.maintenance import (
    EXIT_FLOW_RUNS,
    FOLD_ANALYTICS,
    MAINTENANCE_FAILED,
    PRUNE_RETAINED,
    REPROCESS_WEBHOOK_EVENTS,
    SWEEP_OUTBOUND,
    FlowExitsInput,
    FoldInput,
    FoldReport,
    MaintenanceInput,
    MaintenanceResult,
    ReprocessInput,
    ReprocessReport,
    RetentionInput,
    RetentionReport,
    SweepOutboundInput,
    SweepReport,
)
from workflows.contracts.owed_starts import OwedStartsReport, StartOwedInput
from workflows.ids import MAINTENANCE_WORKFLOW

__all__ = ["MaintenanceInput", "MaintenanceResult", "MaintenanceWorkflow"]

SWEEP_TIMEOUT = timedelta(minutes=5)
SWEEP_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5),
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=3,
)


T = TypeVar("T")


@workflow.defn(name=MAINTENANCE_WORKFLOW)
class MaintenanceWorkflow:
    def __init__(self) -> None:
        self._failures: list[str] = []

    async def _sweep(
        self, what: str, activity: str, argument: object, result_type: type[T]
    ) -> T | None:
        """One sweep; its failure is noted (the run fails at the end) and the next one runs."""
        try:
            return await workflow.execute_activity(
                activity,
                argument,
                result_type=result_type,
                start_to_close_timeout=SWEEP_TIMEOUT,
                retry_policy=SWEEP_RETRY,
            )
        except ActivityError as err:
            self._failures.append(f"{what}: {err.cause or err}")
            return None

    @workflow.run
    async def run(self, request: MaintenanceInput) -> MaintenanceResult:
        result = MaintenanceResult()
        result.webhook_events = await self._sweep(
            "webhook events",
            REPROCESS_WEBHOOK_EVENTS,
            ReprocessInput(limit=request.reprocess_limit),
            ReprocessReport,
        )
        # After reprocessing: the events it applied have just recorded theirs.
        result.follow_ups = await self._sweep(
            "event follow-ups",
            contact_events.CARRY_OUT_FOLLOW_UPS,
            FollowUpsInput(limit=request.follow_up_limit),
            FollowUpReport,
        )
        result.outbound = await self._sweep(
            "outbound messages",
            SWEEP_OUTBOUND,
            SweepOutboundInput(
                grace_seconds=request.outbound_grace_seconds, limit=request.outbound_limit
            ),
            SweepReport,
        )
        result.owed_starts = await self._sweep(
            "owed workflow starts",
            owed_starts.START_OWED,
            StartOwedInput(grace_seconds=request.owed_grace_seconds, limit=request.owed_limit),
            OwedStartsReport,
        )
        if request.flow_exit_limit and workflow.patched("flow-exits"):
            result.flow_runs_exited = await self._sweep(
                "flow runs of unusable accounts",
                EXIT_FLOW_RUNS,
                FlowExitsInput(limit=request.flow_exit_limit),
                int,
            )
        if request.analytics_fold_budget and workflow.patched("analytics-fold"):
            result.analytics = await self._sweep(
                "analytics folding",
                FOLD_ANALYTICS,
                FoldInput(budget=request.analytics_fold_budget),
                FoldReport,
            )
        # Last: what the sweeps above still need (pending events, their follow-ups) is kept.
        if request.retention_batch and workflow.patched("retention"):
            result.retention = await self._sweep(
                "retention",
                PRUNE_RETAINED,
                RetentionInput(
                    batch=request.retention_batch, max_batches=request.retention_batches
                ),
                RetentionReport,
            )
        if self._failures:
            raise ApplicationError(
                "maintenance sweep failed: " + "; ".join(self._failures),
                result.model_dump(mode="json"),
                type=MAINTENANCE_FAILED,
                non_retryable=True,
            )
        return result


WORKFLOWS: list[type] = [MaintenanceWorkflow]
