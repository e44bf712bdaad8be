"""Automation analytics: per flow, the runs started in the range with their status now, the
DMs their send steps had accepted, and how many of those runs reached each node."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from models.analytics import AutomationReport, FlowFigures, NodeReached, RunCounts
from services.analytics.periods import Period
from services.analytics.rollups import begin_report

_FLOWS = """
SELECT id, name, status, nodes FROM automation_flows
WHERE merchant_id = :merchant_id ORDER BY created_at, id
"""

_RUNS = """
SELECT r.flow_id, r.status, count(*) AS runs FROM flow_runs r
WHERE r.merchant_id = :merchant_id AND r.flow_id = ANY(:flow_ids)
  AND r.started_at >= :start AND r.started_at < :end{account}
GROUP BY 1, 2
"""

# A node is reached once per run at most (the graph has no cycle: flow_run_steps is unique
# per run and node).
_STEPS = """
SELECT r.flow_id, s.node_id, min(s.type) AS type, count(*) AS reached,
    count(*) FILTER (WHERE s.type = 'send_message' AND s.outcome = 'sent') AS sent
FROM flow_runs r JOIN flow_run_steps s ON s.run_id = r.id
WHERE r.merchant_id = :merchant_id AND r.flow_id = ANY(:flow_ids)
  AND r.started_at >= :start AND r.started_at < :end{account}
GROUP BY 1, 2
"""

_STATUSES = ("running", "completed", "failed", "exited", "cancelled")


async def automation_report(session: AsyncSession, period: Period) -> AutomationReport:
    await begin_report(session, period.merchant_id)
    account = " AND r.account_id = :account_id" if period.account_id else ""
    flows = (await session.execute(text(_FLOWS), {"merchant_id": period.merchant_id})).all()
    params: dict[str, Any] = {
        "merchant_id": period.merchant_id,
        "account_id": period.account_id,
        "flow_ids": [flow.id for flow in flows],
        "start": period.start,
        "end": period.end,
    }
    runs: dict[uuid.UUID, dict[str, int]] = {}
    for row in await session.execute(text(_RUNS.format(account=account)), params):
        runs.setdefault(row.flow_id, {})[row.status] = int(row.runs)
    steps: dict[uuid.UUID, dict[str, Any]] = {}
    for row in await session.execute(text(_STEPS.format(account=account)), params):
        steps.setdefault(row.flow_id, {})[row.node_id] = row
    figures = []
    for flow in flows:
        by_status = runs.get(flow.id, {})
        reached = steps.get(flow.id, {})
        nodes = [
            NodeReached(
                node_id=node["id"],
                type=node["type"],
                reached=int(reached[node["id"]].reached) if node["id"] in reached else 0,
            )
            for node in flow.nodes
        ]
        # Nodes of an earlier version that the flow no longer has, after its own.
        known = {node["id"] for node in flow.nodes}
        nodes += [
            NodeReached(node_id=node_id, type=row.type, reached=int(row.reached))
            for node_id, row in sorted(reached.items())
            if node_id not in known
        ]
        figures.append(
            FlowFigures(
                flow_id=flow.id,
                name=flow.name,
                status=flow.status,
                executions=sum(by_status.values()),
                messages_sent=sum(int(row.sent) for row in reached.values()),
                nodes=nodes,
                **{status: by_status.get(status, 0) for status in _STATUSES},
            )
        )
    totals = RunCounts(
        **{
            name: sum(getattr(f, name) for f in figures)
            for name in ("executions", *_STATUSES, "messages_sent")
        }
    )
    return AutomationReport(period=period.shown(), flows=figures, totals=totals)
