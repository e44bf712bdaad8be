"""Runs leaving because their account became unusable (disconnected, its token refused or
revoked), and telling workflows to stop.

The run's row is ended first, in a transaction (what the executions show at once); then its
workflow is signalled `flow_stop` so that it stops waiting. A workflow the signal misses finds
its row ended at its next step and stops there, having done nothing more. The account's own
disconnect ends its runs at once (api/routes/accounts.py); the maintenance schedule ends those
of accounts that became unusable otherwise (`exit_unusable_runs`).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import Client
from temporalio.service import RPCError

from models.db import SessionMaker, utcnow
from services.core.temporal import TemporalSource
from workflows.contracts.flows import FLOW_STOP_SIGNAL, ExitReason, FlowStop, RunStatus

logger = logging.getLogger(__name__)

STOP_CONCURRENCY = 32
STOP_TIMEOUT_SECONDS = 30.0
EXIT_LIMIT = 1000

# Ends running rows (the caller's WHERE on `r`), and their listeners with them.
_END_RUNS = """
WITH ended AS (
    UPDATE flow_runs r SET status = :status, exit_reason = :reason, completed_at = :now
    WHERE r.id IN (SELECT r.id FROM flow_runs r {join} WHERE r.status = 'running' AND {where}
        LIMIT :limit FOR UPDATE OF r SKIP LOCKED)
    RETURNING r.workflow_id, r.contact_id
), unlistened AS (
    DELETE FROM workflow_listeners l USING ended e
    WHERE l.workflow_id = e.workflow_id AND l.contact_id = e.contact_id
)
SELECT workflow_id FROM ended
"""

_OF_FLOW = text(_END_RUNS.format(join="", where="r.flow_id = :target"))
_OF_ACCOUNT = text(_END_RUNS.format(join="", where="r.account_id = :target"))
_OF_UNUSABLE = text(
    _END_RUNS.format(
        join="JOIN x_accounts a ON a.id = r.account_id",
        where="(a.status <> 'active' OR a.disconnected_at IS NOT NULL)",
    )
)


async def end_flow_runs(session: AsyncSession, flow_id: uuid.UUID) -> list[str]:
    """Cancel the flow's running runs (it is being deactivated); their workflow ids."""
    return await _end(session, _OF_FLOW, flow_id, RunStatus.cancelled, None, limit=None)


async def exit_account_runs(session: AsyncSession, account_id: uuid.UUID) -> list[str]:
    """The account's running runs exit (`account_unusable`); their workflow ids."""
    return await _end(
        session, _OF_ACCOUNT, account_id, RunStatus.exited, ExitReason.account_unusable, None
    )


async def exit_unusable_runs(
    sessions: SessionMaker, client: Client, limit: int = EXIT_LIMIT
) -> int:
    """The maintenance step: runs of accounts no longer usable exit, and are told to stop."""
    async with sessions() as session, session.begin():
        workflow_ids = await _end(
            session, _OF_UNUSABLE, None, RunStatus.exited, ExitReason.account_unusable, limit
        )
    if workflow_ids:
        stop = FlowStop(status=RunStatus.exited, exit_reason=ExitReason.account_unusable)
        await signal_stops(client, workflow_ids, stop)
        logger.info("flow.runs_exited", extra={"runs": len(workflow_ids), "reason": "account"})
    return len(workflow_ids)


async def _end(
    session: AsyncSession,
    statement: Any,
    target: uuid.UUID | None,
    status: RunStatus,
    reason: str | None,
    limit: int | None,
) -> list[str]:
    params: dict[str, Any] = {
        "status": status.value,
        "reason": str(reason) if reason is not None else None,
        "now": utcnow(),
        "limit": limit,
    }
    if target is not None:
        params["target"] = target
    rows = await session.execute(statement, params)
    return [row.workflow_id for row in rows]


async def stop_soon(temporal: TemporalSource, workflow_ids: list[str], stop: FlowStop) -> int:
    """Signal the stop, within a bounded time; failures are logged (the rows say it all)."""
    if not workflow_ids:
        return 0
    try:
        client = await asyncio.wait_for(temporal(), timeout=STOP_TIMEOUT_SECONDS)
        return await asyncio.wait_for(
            signal_stops(client, workflow_ids, stop), STOP_TIMEOUT_SECONDS
        )
    except Exception as exc:  # each run stops at its next step
        logger.warning("flow.stop_signals_failed", extra={"error": f"{type(exc).__name__}: {exc}"})
        return 0


async def signal_stops(client: Client, workflow_ids: list[str], stop: FlowStop) -> int:
    slots = asyncio.Semaphore(STOP_CONCURRENCY)

    async def one(workflow_id: str) -> bool:
        async with slots:
            try:
                await client.get_workflow_handle(workflow_id).signal(FLOW_STOP_SIGNAL, stop)
            except RPCError:  # ended meanwhile
                return False
            return True

    return sum(await asyncio.gather(*(one(w) for w in workflow_ids)))
