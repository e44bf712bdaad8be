"""Contracts of `MaintenanceWorkflow`, run by the worker's Temporal Schedule `mktx-maintenance`,
and of its sweeps of its own: stored webhook events applied again, deliveries of messages left
`queued` started, flow runs of unusable accounts ended, the analytics deltas folded, and what
is past its retention window pruned. (The follow-ups sweep's contracts are in contact_events.py, the owed starts' in
owed_starts.py.)"""

from __future__ import annotations

from pydantic import BaseModel

from workflows.contracts import contact_events, owed_starts
from workflows.contracts.contact_events import FollowUpReport
from workflows.contracts.owed_starts import OwedStartsReport

# Activity names.
REPROCESS_WEBHOOK_EVENTS = "maintenance.reprocess_webhook_events"
SWEEP_OUTBOUND = "maintenance.sweep_outbound"
EXIT_FLOW_RUNS = "maintenance.exit_flow_runs"
PRUNE_RETAINED = "maintenance.prune_retained"
FOLD_ANALYTICS = "maintenance.fold_analytics"

# ApplicationError type of a run in which a sweep failed (the Web UI shows it).
MAINTENANCE_FAILED = "MaintenanceFailed"

# Stored events applied again per run.
REPROCESS_LIMIT = 1000
# A queued message this young may still be about to be started by the code that queued it.
OUTBOUND_GRACE_SECONDS = 120.0
# Queued messages looked at per run, oldest first (one Temporal call each).
OUTBOUND_LIMIT = 500
# Flow runs of unusable accounts ended per run.
FLOW_EXIT_LIMIT = 1000
# Retention: rows deleted per statement (one short transaction each), and statements per
# table and run; a run deletes at most their product of each table, the next run goes on.
RETENTION_BATCH = 1000
RETENTION_BATCHES = 10
# Analytics delta rows folded per run at most (services/analytics/rebuild.py `fold_some`): a
# merchant nobody reads, or one that imported a million tagged contacts, keeps few of them.
ANALYTICS_FOLD_BUDGET = 1_000_000


class ReprocessInput(BaseModel):
    limit: int = REPROCESS_LIMIT


class ReprocessReport(BaseModel):
    """One pass: events looked at, applied, failed again (backing off) and given up."""

    due: int = 0
    applied: int = 0
    failed: int = 0
    given_up: int = 0


class SweepOutboundInput(BaseModel):
    grace_seconds: float = OUTBOUND_GRACE_SECONDS
    limit: int = OUTBOUND_LIMIT


class SweepReport(BaseModel):
    """One pass over messages left `queued` (services/messaging/sweep.py says what each
    count means)."""

    examined: int = 0
    started: int = 0
    running: int = 0
    expired: int = 0
    recorded: int = 0
    abandoned: int = 0
    settled: int = 0
    errors: int = 0


class FlowExitsInput(BaseModel):
    limit: int = FLOW_EXIT_LIMIT


class RetentionInput(BaseModel):
    batch: int = RETENTION_BATCH
    max_batches: int = RETENTION_BATCHES


class RetentionReport(BaseModel):
    """One pass of services/maintenance/retention.py: rows deleted per table."""

    webhook_events: int = 0  # raw events past MKTX_RAW_EVENT_RETENTION_DAYS (follow-ups go too)
    opens_recorded: int = 0  # campaign recipients whose open was kept before its receipt went
    follow_ups: int = 0  # done follow-ups of events from no webhook (tags), past the same window
    ledger_rows: int = 0  # quota reservations no 24 h window can see any more
    llm_calls: int = 0  # records of model calls past MKTX_LLM_CALL_RETENTION_DAYS
    more: bool = False  # a table still holds rows past its window: the next run goes on


class FoldInput(BaseModel):
    budget: int = ANALYTICS_FOLD_BUDGET


class FoldReport(BaseModel):
    folded: int = 0  # delta rows merged into their slot's row
    more: bool = False  # the budget ran out first: the next run goes on


class MaintenanceInput(BaseModel):
    reprocess_limit: int = REPROCESS_LIMIT
    follow_up_limit: int = contact_events.FOLLOW_UP_LIMIT
    outbound_grace_seconds: float = OUTBOUND_GRACE_SECONDS
    outbound_limit: int = OUTBOUND_LIMIT
    owed_grace_seconds: float = owed_starts.GRACE_SECONDS
    owed_limit: int = owed_starts.LIMIT
    flow_exit_limit: int = FLOW_EXIT_LIMIT
    retention_batch: int = RETENTION_BATCH  # 0: no pruning in this run
    retention_batches: int = RETENTION_BATCHES
    analytics_fold_budget: int = ANALYTICS_FOLD_BUDGET  # 0: no folding in this run


class MaintenanceResult(BaseModel):
    webhook_events: ReprocessReport | None = None
    follow_ups: FollowUpReport | None = None
    outbound: SweepReport | None = None
    owed_starts: OwedStartsReport | None = None
    flow_runs_exited: int | None = None  # runs of accounts no longer usable, ended
    retention: RetentionReport | None = None
    analytics: FoldReport | None = None
