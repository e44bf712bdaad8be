"""100 requests a minute per merchant, counted in PostgreSQL so every API process shares it.

A fixed one-minute window per merchant: one upsert per request, no read-modify-write race.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

WINDOW = timedelta(minutes=1)

_HIT = text(
    """
    INSERT INTO api_rate_limits AS r (merchant_id, window_start, hits)
    VALUES (:merchant_id, :window_start, 1)
    ON CONFLICT (merchant_id, window_start) DO UPDATE SET hits = r.hits + 1
    RETURNING hits
    """
)
_PRUNE = text("DELETE FROM api_rate_limits WHERE window_start < :before")


@dataclass(frozen=True, slots=True)
class RateLimitState:
    limit: int
    remaining: int
    reset_at: datetime
    exceeded: bool

    @property
    def retry_after(self) -> int:
        return max(1, int((self.reset_at - datetime.now(UTC)).total_seconds() + 0.999))

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(int(self.reset_at.timestamp())),
        }


class RateLimiter:
    def __init__(self, engine: AsyncEngine, limit_per_minute: int) -> None:
        # Its own autocommit connections: a request that fails still counts.
        self._engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        self.limit = limit_per_minute

    async def hit(self, merchant_id: str) -> RateLimitState:
        now = datetime.now(UTC)
        window_start = now.replace(second=0, microsecond=0)
        async with self._engine.connect() as conn:
            hits = (
                await conn.execute(_HIT, {"merchant_id": merchant_id, "window_start": window_start})
            ).scalar_one()
            if random.random() < 0.01:  # keep the table small without a scheduled job
                await conn.execute(_PRUNE, {"before": window_start - 5 * WINDOW})
        return RateLimitState(
            limit=self.limit,
            remaining=max(0, self.limit - hits),
            reset_at=window_start + WINDOW,
            exceeded=hits > self.limit,
        )
