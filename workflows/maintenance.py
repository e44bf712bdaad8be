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


@workflow.defn(name=MAINTENANCE_WORKFLOW)
class MaintenanceWorkflow:
    @workflow.run
    async def run(self, request: MaintenanceInput) -> MaintenanceResult:
        result = MaintenanceResult()
        failures: list[str] = []
        try:
            result.webhook_events = await workflow.execute_activity(
                REPROCESS_WEBHOOK_EVENTS,
                ReprocessInput(limit=request.reprocess_limit),
                result_type=ReprocessReport,
                start_to_close_timeout=SWEEP_TIMEOUT,
                retry_policy=SWEEP_RETRY,
            )
        except ActivityError as err:
            failures.append(f"webhook events: {err.cause or err}")
        try:  # after reprocessing: the events it applied have just recorded theirs
            result.follow_ups = await workflow.execute_activity(
                contact_events.CARRY_OUT_FOLLOW_UPS,
                FollowUpsInput(limit=request.follow_up_limit),
                result_type=FollowUpReport,
                start_to_close_timeout=SWEEP_TIMEOUT,
                retry_policy=SWEEP_RETRY,
            )
        except ActivityError as err:
            failures.append(f"event follow-ups: {err.cause or err}")
        try:
            result.outbound = await workflow.execute_activity(
                SWEEP_OUTBOUND,
                SweepOutboundInput(
                    grace_seconds=request.outbound_grace_seconds, limit=request.outbound_limit
                ),
                result_type=SweepReport,
                start_to_close_timeout=SWEEP_TIMEOUT,
                retry_policy=SWEEP_RETRY,
            )
        except ActivityError as err:
            failures.append(f"outbound messages: {err.cause or err}")
        try:
            result.owed_starts = await workflow.execute_activity(
                owed_starts.START_OWED,
                StartOwedInput(grace_seconds=request.owed_grace_seconds, limit=request.owed_limit),
                result_type=OwedStartsReport,
                start_to_close_timeout=SWEEP_TIMEOUT,
                retry_policy=SWEEP_RETRY,
            )
        except ActivityError as err:
            failures.append(f"owed workflow starts: {err.cause or err}")
        if request.flow_exit_limit and workflow.patched("flow-exits"):
            try:
                result.flow_runs_exited = await workflow.execute_activity(
                    EXIT_FLOW_RUNS,
                    FlowExitsInput(limit=request.flow_exit_limit),
                    result_type=int,
                    start_to_close_timeout=SWEEP_TIMEOUT,
                    retry_policy=SWEEP_RETRY,
                )
            except ActivityError as err:
                failures.append(f"flow runs of unusable accounts: {err.cause or err}")
        if request.analytics_fold_budget and workflow.patched("analytics-fold"):
            try:
                result.analytics = await workflow.execute_activity(
                    FOLD_ANALYTICS,
                    FoldInput(budget=request.analytics_fold_budget),
                    result_type=FoldReport,
                    start_to_close_timeout=SWEEP_TIMEOUT,
                    retry_policy=SWEEP_RETRY,
                )
            except ActivityError as err:
                failures.append(f"analytics folding: {err.cause or err}")
        # Last: what the sweeps above still need (pending events, their follow-ups) is kept.
        if request.retention_batch and workflow.patched("retention"):
            try:
                result.retention = await workflow.execute_activity(
                    PRUNE_RETAINED,
                    RetentionInput(
                        batch=request.retention_batch, max_batches=request.retention_batches
                    ),
                    result_type=RetentionReport,
                    start_to_close_timeout=SWEEP_TIMEOUT,
                    retry_policy=SWEEP_RETRY,
                )
            except ActivityError as err:
                failures.append(f"retention: {err.cause or err}")
        if failures:
            raise ApplicationError(
                "maintenance sweep failed: " + "; ".join(failures),
                result.model_dump(mode="json"),
                type=MAINTENANCE_FAILED,
                non_retryable=True,
            )
        return result


WORKFLOWS: list[type] = [MaintenanceWorkflow]
