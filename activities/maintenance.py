"""The maintenance sweeps as activities: stored webhook events to apply again, and outbound
messages whose delivery was never started (workflows/maintenance.py runs them)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from pydantic import BaseModel
from temporalio import activity
from temporalio.client import Client

from activities.deps import WorkerDeps
from services.ingestion.reprocess import ReprocessReport, reprocess_due
from services.messaging.sweep import GRACE, SWEEP_LIMIT, SweepReport, sweep_queued

REPROCESS_LIMIT = 1000


class ReprocessInput(BaseModel):
    limit: int = REPROCESS_LIMIT


class SweepOutboundInput(BaseModel):
    grace_seconds: float = GRACE.total_seconds()
    limit: int = SWEEP_LIMIT


class MaintenanceActivities:
    def __init__(self, deps: WorkerDeps) -> None:
        self._deps = deps

    async def _temporal(self) -> Client:
        return self._deps.temporal

    @activity.defn(name="maintenance.reprocess_webhook_events")
    async def reprocess_webhook_events(self, request: ReprocessInput) -> ReprocessReport:
        """Apply the due webhook events whose earlier attempts failed; then start what they
        queued and tell the contacts' listeners, as for a fresh event."""
        return await reprocess_due(
            self._deps.sessions, self._deps.settings, temporal=self._temporal, limit=request.limit
        )

    @activity.defn(name="maintenance.sweep_outbound")
    async def sweep_outbound(self, request: SweepOutboundInput) -> SweepReport:
        """Start the delivery of messages left `queued` (services/messaging/sweep.py)."""
        return await sweep_queued(
            self._deps.sessions,
            self._deps.temporal,
            self._deps.settings,
            grace=timedelta(seconds=request.grace_seconds),
            limit=request.limit,
        )


def build(deps: WorkerDeps) -> list[Callable[..., Any]]:
    """The maintenance activities the worker registers."""
    maintenance = MaintenanceActivities(deps)
    return [maintenance.reprocess_webhook_events, maintenance.sweep_outbound]
