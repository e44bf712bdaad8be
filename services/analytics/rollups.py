"""The rollups and their folding.

The triggers of migration 0016 only append signed deltas; a slot's figure is the sum of its
rows. `fold` merges them now and then (each report folds its merchant first, a bounded amount;
`mkt-x analytics-fold` folds everything), which changes no sum. Reading them: counters.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

COUNTERS = (
    "contacts_known",
    "contacts_new",
    "new_inbound_message",
    "new_follower",
    "new_import",
    "new_manual",
    "new_other",
    "conversations_started",
    "conversations_closed",
    "inbound",
    "outbound",
    "bot_replies",
    "human_answered",
    "human_ms",
    "bot_answered",
    "bot_ms",
    "campaign_sent",
    "flow_runs",
    "ai_sessions",
    "escalations",
    "sla_breaches",
    "llm_calls",
    "prompt_tokens",
    "completion_tokens",
    "cost",
)
ASSIGNEE_COUNTERS = ("conversations", "human_answered", "human_ms", "bot_answered", "bot_ms")

Counts = dict[str, Any]  # counter name -> int (cost: Decimal)


@dataclass(frozen=True, slots=True)
class Rollup:
    table: str
    keys: tuple[str, ...]  # the first is the one indexed after merchant_id (never null)
    values: tuple[str, ...]


ROLLUPS = (
    Rollup("analytics_counts", ("slot", "account_id"), COUNTERS),
    Rollup("analytics_assignees", ("slot", "account_id", "assignee"), ASSIGNEE_COUNTERS),
    Rollup("analytics_wait_bins", ("day", "account_id", "bin"), ("waits",)),
    Rollup("analytics_returns", ("day", "account_id", "previous_day"), ("contacts",)),
    Rollup("analytics_tags", ("tag", "account_id"), ("contacts",)),
)

FOLD_LIMIT = 20_000  # delta rows per table a report folds before it reads


def _fold_sql(rollup: Rollup) -> str:
    keys = ", ".join(rollup.keys)
    first, *others = rollup.keys
    same = " AND ".join(
        [f"t.{first} = k.{first}"] + [f"t.{k} IS NOT DISTINCT FROM k.{k}" for k in others]
    )
    sums = ", ".join(f"sum({v})" for v in rollup.values)
    # Rows another fold holds are skipped (SKIP LOCKED): the slot keeps two rows, same sum.
    return f"""
WITH picked AS (
    SELECT ctid AS row_id, {keys} FROM {rollup.table}
    WHERE merchant_id = :merchant_id AND NOT folded
    LIMIT :limit FOR UPDATE SKIP LOCKED
), folded_rows AS (
    SELECT t.ctid AS row_id FROM (SELECT DISTINCT {keys} FROM picked) k
    JOIN {rollup.table} t ON t.merchant_id = :merchant_id AND {same}
    WHERE t.folded
    FOR UPDATE OF t SKIP LOCKED
), gone AS (
    DELETE FROM {rollup.table}
    WHERE ctid = ANY(ARRAY(SELECT row_id FROM picked UNION ALL SELECT row_id FROM folded_rows))
    RETURNING *
), merged AS (
    INSERT INTO {rollup.table} (merchant_id, {keys}, folded, {", ".join(rollup.values)})
    SELECT merchant_id, {keys}, true, {sums} FROM gone GROUP BY merchant_id, {keys}
)
SELECT count(*) FROM picked
"""


_FOLDS = {rollup.table: _fold_sql(rollup) for rollup in ROLLUPS}
# Which rollups have deltas to fold (the partial indexes on `NOT folded` answer at once).
_PENDING = "SELECT " + ", ".join(
    f"EXISTS (SELECT 1 FROM {r.table} WHERE merchant_id = :merchant_id AND NOT folded) AS {r.table}"
    for r in ROLLUPS
)


async def begin_report(session: AsyncSession, merchant_id: str) -> None:
    """What every report does first: no JIT (PostgreSQL would spend more compiling these
    short statements, hundreds of milliseconds, than running them), and fold its deltas."""
    await session.execute(text("SET LOCAL jit = off"))
    await fold(session, merchant_id)


async def fold(session: AsyncSession, merchant_id: str, limit: int = FOLD_LIMIT) -> int:
    """Merge up to `limit` deltas per rollup into their slot's row: how many were merged, 0
    when another session is folding this merchant already (it holds the lock until its transaction ends)."""
    got = await session.execute(
        text("SELECT pg_try_advisory_xact_lock(hashtext('mktx.analytics.fold'), hashtext(:m))"),
        {"m": merchant_id},
    )
    if not got.scalar_one():
        return 0
    pending = (await session.execute(text(_PENDING), {"merchant_id": merchant_id})).one()
    merged = 0
    for table, statement in _FOLDS.items():
        if getattr(pending, table):
            result = await session.execute(
                text(statement), {"merchant_id": merchant_id, "limit": limit}
            )
            merged += result.scalar_one()
    return merged
