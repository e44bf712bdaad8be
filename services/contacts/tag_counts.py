"""How many of a merchant's contacts hold a tag, now and exactly, from the tag counts the
analytics triggers keep (`analytics_tags`, migration 0016: a signed delta row per change, in the
change's own transaction, folded by reports and the maintenance schedule).

The sum is cheap only while few delta rows are left unfolded: right after an import of many
tagged contacts, and before the maintenance schedule folds them, `tag_total` says it does not
know rather than read them all (the caller counts instead)."""

from __future__ import annotations

import uuid

from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

# At most this many rows (folded ones, one per account, and deltas) are summed.
TAG_TOTAL_ROWS = 2_000

_TAG_TOTAL = """
SELECT count(*), coalesce(sum(contacts), 0) FROM (
    SELECT contacts FROM analytics_tags
    WHERE merchant_id = :merchant_id AND tag = :tag{account}
    LIMIT :rows
) kept
"""


async def tag_total(
    session: AsyncSession, merchant_id: str, tag: str, account_id: uuid.UUID | None = None
) -> int | None:
    """The merchant's (or the account's) contacts holding `tag`; None when too many deltas
    are waiting to be folded to sum them quickly."""
    account = " AND account_id = :account_id" if account_id is not None else ""
    rows, total = (
        await session.execute(
            text(_TAG_TOTAL.format(account=account)),
            {
                "merchant_id": merchant_id,
                "tag": tag,
                "account_id": account_id,
                "rows": TAG_TOTAL_ROWS + 1,
            },
        )
    ).one()
    return None if rows > TAG_TOTAL_ROWS else int(total)
