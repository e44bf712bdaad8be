"""Rebuilding the facts and rollups from the raw tables, and folding every merchant's deltas.

`mkt-x analytics-rebuild` runs `rebuild`, `mkt-x analytics-fold` runs `fold_everything`; the
maintenance schedule runs `fold_some` every tick, so that merchants nobody reads, and the
contacts list's tag totals (services/contacts/listing.py), find few delta rows.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from models.db import SessionMaker
from services.analytics.rollups import FOLD_LIMIT, ROLLUPS, fold

# Delta rows `fold_everything` folds between two looks for the merchants that have some.
FOLD_EVERYTHING_PASS = 1_000_000


async def rebuild(session: AsyncSession, merchant_id: str | None = None) -> None:
    """Everything of one merchant (or of all) recomputed, in the caller's transaction; the
    analytics tables are locked meanwhile, so writers wait (minutes per million messages)."""
    await session.execute(
        text("SELECT mktx_analytics_rebuild(CAST(:merchant_id AS varchar))"),
        {"merchant_id": merchant_id},
    )


async def fold_everything(sessions: SessionMaker) -> int:
    """Fold the deltas of every merchant that has some (`fold_some` until none is left, each
    fold its own short transaction); the rows merged."""
    merged, more = 0, True
    while more:
        done, more = await fold_some(sessions, FOLD_EVERYTHING_PASS)
        merged += done
    return merged


# The merchants with deltas, one index probe each (a loose scan of the partial `NOT folded`
# index: after an import one merchant may have a million entries there).
_WITH_DELTAS = """
WITH RECURSIVE m AS (
    (SELECT merchant_id FROM {table} WHERE NOT folded ORDER BY merchant_id LIMIT 1)
    UNION ALL
    SELECT (SELECT t.merchant_id FROM {table} t
            WHERE NOT t.folded AND t.merchant_id > m.merchant_id ORDER BY 1 LIMIT 1)
    FROM m WHERE m.merchant_id IS NOT NULL
)
SELECT merchant_id FROM m WHERE merchant_id IS NOT NULL
"""


async def fold_some(sessions: SessionMaker, budget: int) -> tuple[int, bool]:
    """Fold up to about `budget` delta rows, merchant after merchant, each fold its own short
    transaction (FOLD_LIMIT rows per rollup); (rows merged, whether some are left). A merchant
    a report is folding meanwhile is left to it."""
    async with sessions() as session:
        merchants: set[str] = set()
        for rollup in ROLLUPS:
            rows = await session.execute(text(_WITH_DELTAS.format(table=rollup.table)))
            merchants.update(rows.scalars())
    merged = 0
    for merchant_id in sorted(merchants):
        while True:
            if merged >= budget:
                return merged, True
            async with sessions() as session, session.begin():
                done = await fold(session, merchant_id, limit=min(FOLD_LIMIT, budget - merged))
            merged += done
            if not done:
                break
    return merged, False
