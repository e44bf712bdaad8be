"""Active contacts: how many contacts sent at least one inbound DM in each range, exactly.

A distinct count cannot be summed from daily figures, so it comes from
`analytics_contact_days` (one row per contact and UTC day with an inbound DM: its first and last
DM that day and the contact's previous active day) and its histogram `analytics_returns`
(rows per day and previous active day). A range `[lo, hi)` is cut on UTC midnights into a head
(the rest of lo's day, when lo is not a midnight), whole days, and a tail (hi's day up to hi).
A contact is counted at its first activity in the range:

- head: a row of lo's day whose last DM is at or after lo;
- whole days: rows whose previous active day is before lo's day (the histogram, no row read),
  plus rows whose previous active day is lo's day but whose last DM there was before lo;
- tail: a row of hi's day whose first DM is before hi, the contact not active earlier in the
  range (previous active day before lo's day, or lo's day before lo).

In UTC every bound is a midnight and only the histogram is read; elsewhere each bucket boundary
reads one day of rows, three times. A range inside one UTC day is counted from the messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from services.analytics.periods import Period


@dataclass(frozen=True, slots=True)
class _Cut:
    lo: datetime
    hi: datetime
    lo_day: date
    head_day: date | None  # lo's day, when lo is not a midnight
    first_full: date
    last_full: date
    tail_day: date | None  # hi's day, when hi is not a midnight

    @classmethod
    def of(cls, lo: datetime, hi: datetime) -> _Cut:
        lo_day, hi_day = _day(lo), _day(hi)
        head = None if _midnight(lo) else lo_day
        return cls(
            lo=lo,
            hi=hi,
            lo_day=lo_day,
            head_day=head,
            first_full=lo_day if head is None else lo_day + timedelta(days=1),
            last_full=hi_day - timedelta(days=1),
            tail_day=None if _midnight(hi) else hi_day,
        )

    @property
    def within_a_day(self) -> bool:
        return self.head_day is not None and self.head_day == self.tail_day


def _day(instant: datetime) -> date:
    return instant.astimezone(UTC).date()


def _midnight(instant: datetime) -> bool:
    at = instant.astimezone(UTC)
    return (at.hour, at.minute, at.second, at.microsecond) == (0, 0, 0, 0)


# The whole days of each cut: the histogram, and the returns from its head day.
_DAYS = """
SELECT c.idx, (
    SELECT coalesce(sum(x.contacts), 0) FROM analytics_returns x
    WHERE x.merchant_id = :merchant_id AND x.day >= c.first_full AND x.day <= c.last_full
      AND x.previous_day < c.lo_day{account_x}
) + (
    SELECT count(*) FROM analytics_contact_days a
    WHERE a.merchant_id = :merchant_id AND a.previous_day = c.head_day
      AND a.day >= c.first_full AND a.day <= c.last_full AND a.previous_last_at < c.lo{account}
) AS active
FROM unnest(CAST(:idx AS int[]), CAST(:lo AS timestamptz[]), CAST(:lo_day AS date[]),
    CAST(:head_day AS date[]), CAST(:first_full AS date[]), CAST(:last_full AS date[]))
    AS c (idx, lo, lo_day, head_day, first_full, last_full)
"""

# The partial days, one scan per boundary: a bucket's boundary is the next one's head and the
# previous one's tail, so both are counted from the same rows (`tail_*`: the cut ending there).
_EDGES = """
SELECT p.pid, s.head, s.tail
FROM unnest(CAST(:pid AS int[]), CAST(:day AS date[]), CAST(:at AS timestamptz[]),
    CAST(:tail_lo AS timestamptz[]), CAST(:tail_lo_day AS date[]),
    CAST(:tail_head_day AS date[])) AS p (pid, day, at, tail_lo, tail_lo_day, tail_head_day),
LATERAL (
    SELECT count(*) FILTER (WHERE a.last_at >= p.at) AS head,
        count(*) FILTER (WHERE a.first_at < p.at AND (a.previous_day < p.tail_lo_day
            OR (a.previous_day = p.tail_head_day AND a.previous_last_at < p.tail_lo))) AS tail
    FROM analytics_contact_days a
    WHERE a.merchant_id = :merchant_id AND a.day = p.day{account}
) s
"""


@dataclass(slots=True)
class _Edge:
    """One partial day to scan: the head of the cuts starting at `at`, the tail of one ending
    there."""

    day: date
    at: datetime
    heads: list[int]
    tail: _Cut | None = None
    tail_of: int | None = None


# A range inside one UTC day: from the messages (one index range per account).
_WITHIN_A_DAY = """
SELECT count(DISTINCT m.contact_id) FROM x_accounts x
JOIN messages m ON m.merchant_id = x.merchant_id AND m.account_id = x.id
WHERE x.merchant_id = :merchant_id AND m.direction = 'inbound'
  AND m.sent_at >= :lo AND m.sent_at < :hi{account}
"""


async def active_contacts(
    session: AsyncSession, period: Period, ranges: list[tuple[datetime, datetime]]
) -> list[int]:
    """Active contacts in each `[lo, hi)` of `ranges` (buckets of the period, or the whole)."""
    account = " AND a.account_id = :account_id" if period.account_id else ""
    counts = [0] * len(ranges)
    cuts = [_Cut.of(lo, hi) for lo, hi in ranges]
    params: dict[str, Any] = {"merchant_id": period.merchant_id, "account_id": period.account_id}
    spread = [(i, c) for i, c in enumerate(cuts) if not c.within_a_day and c.lo < c.hi]
    if spread:
        columns = ("lo", "lo_day", "head_day", "first_full", "last_full")
        arrays = {name: [getattr(c, name) for _, c in spread] for name in columns}
        statement = _DAYS.format(account=account, account_x=account.replace("a.", "x."))
        days = await session.execute(
            text(statement), {**params, "idx": [i for i, _ in spread], **arrays}
        )
        for row in days:
            counts[row.idx] = int(row.active)
        edges = _edges(spread)
        if edges:
            found = await session.execute(
                text(_EDGES.format(account=account)),
                {
                    **params,
                    "pid": list(range(len(edges))),
                    "day": [e.day for e in edges],
                    "at": [e.at for e in edges],
                    "tail_lo": [e.tail.lo if e.tail else None for e in edges],
                    "tail_lo_day": [e.tail.lo_day if e.tail else None for e in edges],
                    "tail_head_day": [e.tail.head_day if e.tail else None for e in edges],
                },
            )
            for row in found:
                edge = edges[row.pid]
                for i in edge.heads:
                    counts[i] += int(row.head)
                if edge.tail_of is not None:
                    counts[edge.tail_of] += int(row.tail)
    for i, cut in enumerate(cuts):
        if cut.within_a_day:
            statement = _WITHIN_A_DAY.format(account=account.replace("a.", "m."))
            found_within = await session.execute(
                text(statement), {**params, "lo": cut.lo, "hi": cut.hi}
            )
            counts[i] = int(found_within.scalar_one())
    return counts


def _edges(spread: list[tuple[int, _Cut]]) -> list[_Edge]:
    """The partial days to scan, one per (day, instant): heads and a tail sharing it merged."""
    by_at: dict[tuple[date, datetime], _Edge] = {}
    tails: list[_Edge] = []
    for i, cut in spread:
        if cut.head_day is not None:
            edge = by_at.setdefault((cut.head_day, cut.lo), _Edge(cut.head_day, cut.lo, []))
            edge.heads.append(i)
    for i, cut in spread:
        if cut.tail_day is None:
            continue
        shared = by_at.get((cut.tail_day, cut.hi))
        if shared is None or shared.tail is not None:
            shared = _Edge(cut.tail_day, cut.hi, [])
            tails.append(shared)
        shared.tail, shared.tail_of = cut, i
    return list(by_at.values()) + tails
