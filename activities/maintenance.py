"""The maintenance sweeps as activities: stored webhook events to apply again, what ingested
events still owe the workflows waiting on their contacts, outbound messages whose delivery was
never started, workflows committed rows still wait for, flow runs of unusable accounts, the
analytics deltas to fold, and what is past its retention window (workflows/maintenance.py runs them)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from temporalio import activity
from temporalio.client import Client

from activities.deps import WorkerDeps
from models.db import utcnow
from services.accounts import lifecycle as account_lifecycle
from services.analytics.rebuild import fold_some
from services.campaigns import starts as campaign_starts
from services.flows import exits as flow_exits
from services.ingestion import (
    IngestionContext,
    TriggerRegistry,
    carry_out_due,
    reprocess_due,
)
from services.maintenance.retention import RetentionWindows, prune_retained
from services.messaging.sweep import sweep_queued
from services.triggers import build_triggers
from workflows.contracts.contact_events import (
    CARRY_OUT_FOLLOW_UPS,
    FollowUpReport,
    FollowUpsInput,
)
from workflows.contracts.maintenance import (
    EXIT_FLOW_RUNS,
    FOLD_ANALYTICS,
    PRUNE_RETAINED,
    REPROCESS_WEBHOOK_EVENTS,
    SWEEP_OUTBOUND,
    FlowExitsInput,
    FoldInput,
    FoldReport,
    ReprocessInput,
    ReprocessReport,
    RetentionInput,
    RetentionReport,
    SweepOutboundInput,
    SweepReport,
)
from workflows.contracts.owed_starts import START_OWED, OwedStartsReport, StartOwedInput


class MaintenanceActivities:
    def __init__(self, deps: WorkerDeps, triggers: TriggerRegistry | None = None) -> None:
        self._deps = deps
        # Built with the worker, as the API builds its own: the same triggers in both.
        self._ingestion = IngestionContext(
            deps.settings,
            triggers if triggers is not None else build_triggers(deps.settings, deps.sessions),
        )

    async def _temporal(self) -> Client:
        return self._deps.temporal

    @activity.defn(name=REPROCESS_WEBHOOK_EVENTS)
    async def reprocess_webhook_events(self, request: ReprocessInput) -> ReprocessReport:
        """Apply the due webhook events whose earlier attempts failed; then start what they
        queued and carry out what they owe, as for a fresh event."""
        return await reprocess_due(
            self._deps.sessions, self._ingestion, temporal=self._temporal, limit=request.limit
        )

    @activity.defn(name=CARRY_OUT_FOLLOW_UPS)
    async def carry_out_follow_ups(self, request: FollowUpsInput) -> FollowUpReport:
        """Signal the listeners and start the trigger workflows ingested events still owe
        (services/ingestion/follow_up.py)."""
        return await carry_out_due(
            self._deps.sessions, self._deps.temporal, self._ingestion.triggers, limit=request.limit
        )

    @activity.defn(name=SWEEP_OUTBOUND)
    async def sweep_outbound(self, request: SweepOutboundInput) -> SweepReport:
        """Start the delivery of messages left `queued` (services/messaging/sweep.py)."""
        return await sweep_queued(
            self._deps.sessions,
            self._deps.temporal,
            self._deps.settings,
            grace=timedelta(seconds=request.grace_seconds),
            limit=request.limit,
        )

    @activity.defn(name=START_OWED)
    async def start_owed_workflows(self, request: StartOwedInput) -> OwedStartsReport:
        """Start the workflows committed rows still wait for: campaign runs (or their new
        schedule) Temporal has not taken, account connects and disconnects never started."""
        grace = timedelta(seconds=request.grace_seconds)
        deps = self._deps
        campaigns = await campaign_starts.sync_owed(
            deps.sessions, deps.temporal, deps.settings, grace=grace, limit=request.limit
        )
        connects, disconnects = await account_lifecycle.start_owed(
            deps.sessions, deps.temporal, deps.settings, grace=grace, limit=request.limit
        )
        return OwedStartsReport(
            campaigns=campaigns, account_connects=connects, account_disconnects=disconnects
        )

    @activity.defn(name=EXIT_FLOW_RUNS)
    async def exit_flow_runs(self, request: FlowExitsInput) -> int:
        """End the flow runs of accounts that became unusable (services/flows/exits.py)."""
        return await flow_exits.exit_unusable_runs(
            self._deps.sessions, self._deps.temporal, request.limit
        )

    @activity.defn(name=FOLD_ANALYTICS)
    async def fold_analytics(self, request: FoldInput) -> FoldReport:
        """Fold the analytics deltas the triggers appended (services/analytics/rebuild.py)."""
        folded, more = await fold_some(self._deps.sessions, request.budget)
        return FoldReport(folded=folded, more=more)

    @activity.defn(name=PRUNE_RETAINED)
    async def prune_retained(self, request: RetentionInput) -> RetentionReport:
        """Delete what is past its retention window, in batches (services/maintenance/
        retention.py): raw webhook events, spent quota-ledger rows, LLM call records."""
        return await prune_retained(
            self._deps.sessions,
            RetentionWindows.from_settings(self._deps.settings),
            now=utcnow(),
            batch=request.batch,
            max_batches=request.max_batches,
        )


def build(deps: WorkerDeps, triggers: TriggerRegistry | None = None) -> list[Callable[..., Any]]:
    """The maintenance activities the worker registers (`triggers`: instead of the process's
    own, in tests)."""
    maintenance = MaintenanceActivities(deps, triggers)
    return [
        maintenance.reprocess_webhook_events,
        maintenance.carry_out_follow_ups,
        maintenance.sweep_outbound,
        maintenance.start_owed_workflows,
        maintenance.exit_flow_runs,
        maintenance.fold_analytics,
        maintenance.prune_retained,
    ]
