"""Rebuilding the facts and rollups from the raw tables, and folding every merchant's deltas.

`mkt-x analytics-rebuild` runs `rebuild`; the maintenance schedule (or a cron) may run
`fold_everything` so that merchants nobody reads keep few delta rows.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from services.analytics.rollups import ROLLUPS, fold


async def rebuild(session: AsyncSession, merchant_id: str | None = None) -> None:
    """Everything of one merchant (or of all) recomputed, in the caller's transaction; the
    analytics tables are locked meanwhile, so writers wait (minutes per million messages)."""
    await session.execute(
        text("SELECT mktx_analytics_rebuild(CAST(:merchant_id AS varchar))"),
        {"merchant_id": merchant_id},
    )


async def fold_everything(session: AsyncSession) -> int:
    """Fold the deltas of every merchant that has some; the rows merged."""
    merchants: set[str] = set()
    for rollup in ROLLUPS:
        rows = await session.execute(
            text(f"SELECT DISTINCT merchant_id FROM {rollup.table} WHERE NOT folded")
        )
        merchants.update(rows.scalars())
    merged = 0
    for merchant_id in sorted(merchants):
        while True:
            done = await fold(session, merchant_id)
            merged += done
            if not done:
                break
    return merged
