"""Response times: averages from the counters, exact median and p90 from the waits.

A wait is an inbound DM that found its conversation waiting (no reply since the contact's
previous inbound DM) and was answered; its response time runs to the reply, in milliseconds.
The median and the p90 are `percentile_disc` over the waits of the range (the smallest time with
at least half, or nine tenths, of the waits at or below it): the log-scale bin holding that rank
is found by summing `analytics_wait_bins` (whole UTC days) and the facts (partial days), then the
value is read from that bin's waits alone, in the order of the index on (bin, ms).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from models.analytics import ResponseTimes
from services.analytics.periods import Period
from services.analytics.rollups import Counts
from services.contacts.contacts import format_duration

_BINS = """
SELECT bin, sum(waits) AS waits FROM (
    SELECT bin, waits FROM analytics_wait_bins
    WHERE merchant_id = :merchant_id AND day >= :first_full AND day <= :last_full{account}
    UNION ALL
    SELECT bin, 1 FROM analytics_waits
    WHERE merchant_id = :merchant_id{account}
      AND ((inbound_at >= :start AND inbound_at < :head_end)
           OR (inbound_at >= :tail_start AND inbound_at < :end))
) w GROUP BY bin ORDER BY bin
"""

_NTH = """
SELECT ms FROM analytics_waits
WHERE merchant_id = :merchant_id AND bin = :bin AND inbound_at >= :start AND inbound_at < :end
  {account}
ORDER BY ms OFFSET :offset LIMIT 1
"""


def seconds(ms: int, count: int) -> float | None:
    """The mean of `count` times totalling `ms`, in seconds to the millisecond (half up)."""
    return (2 * ms + count) // (2 * count) / 1000 if count else None


def shown(value: float | None) -> str | None:
    return None if value is None else format_duration(value)


async def response_times(session: AsyncSession, period: Period, counts: Counts) -> ResponseTimes:
    human = seconds(counts["human_ms"], counts["human_answered"])
    bot = seconds(counts["bot_ms"], counts["bot_answered"])
    answered = counts["human_answered"] + counts["bot_answered"]
    average = seconds(counts["human_ms"] + counts["bot_ms"], answered)
    median, p90 = await percentiles(session, period, (0.5, 0.9))
    return ResponseTimes(
        average_response_time=shown(average),
        human_response_time=shown(human),
        bot_response_time=shown(bot),
        median_response_time=shown(median),
        p90_response_time=shown(p90),
        average_response_seconds=average,
        human_response_seconds=human,
        bot_response_seconds=bot,
        median_response_seconds=median,
        p90_response_seconds=p90,
        answered=answered,
    )


async def percentiles(
    session: AsyncSession, period: Period, fractions: tuple[float, ...]
) -> list[float | None]:
    """`percentile_disc` of the range's response times, in seconds, for each fraction."""
    account = " AND account_id = :account_id" if period.account_id else ""
    params: dict[str, Any] = {
        "merchant_id": period.merchant_id,
        "account_id": period.account_id,
        "start": period.start,
        "end": period.end,
        **_days(period.start, period.end),
    }
    bins = [
        (int(row.bin), int(row.waits))
        for row in await session.execute(text(_BINS.format(account=account)), params)
        if row.waits
    ]
    total = sum(waits for _, waits in bins)
    found: list[float | None] = []
    for fraction in fractions:
        if not total:
            found.append(None)
            continue
        # As PostgreSQL's percentile_disc: the row at ceil(fraction * n), counted from 1.
        rank = max(1, math.ceil(fraction * total))
        chosen = bins[-1][0]
        for bin_number, waits in bins:
            if rank <= waits:
                chosen = bin_number
                break
            rank -= waits
        row = await session.execute(
            text(_NTH.format(account=account)), {**params, "bin": chosen, "offset": rank - 1}
        )
        found.append(int(row.scalar_one()) / 1000)
    return found


def _days(start: datetime, end: datetime) -> dict[str, Any]:
    """The whole UTC days of `[start, end)` (for the bins) and the partial ones around them
    (for the facts). A range inside one day is all partial."""
    first_day = start.astimezone(UTC).date()
    first_midnight = datetime.combine(first_day, datetime.min.time(), tzinfo=UTC)
    head_end = first_midnight if first_midnight == start else first_midnight + timedelta(days=1)
    tail_start = datetime.combine(end.astimezone(UTC).date(), datetime.min.time(), tzinfo=UTC)
    if tail_start <= head_end:  # no whole day
        return {
            "first_full": head_end.date(),
            "last_full": head_end.date() - timedelta(days=1),
            "head_end": end,
            "tail_start": end,
        }
    return {
        "first_full": head_end.date(),
        "last_full": tail_start.date() - timedelta(days=1),
        "head_end": head_end,
        "tail_start": tail_start,
    }
