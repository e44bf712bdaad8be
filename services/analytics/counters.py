"""Reading the counters: the rollups' rows of a range summed (per bucket, or whole), plus the
ragged edges of a range whose bounds are not on a quarter hour, which come from the raw tables
through `mktx_analytics_counts_between` (the definition the rebuild uses too)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from services.analytics.periods import Period, aligned, ceil_slot, floor_slot
from services.analytics.rollups import ASSIGNEE_COUNTERS, COUNTERS, Counts

Window = tuple[datetime, datetime]
_COLUMNS = ", ".join(COUNTERS)


def _edges(start: datetime | None, end: datetime) -> tuple[datetime | None, datetime, list[Window]]:
    """The slots `[low, high)` the rollups answer for `[start, end)` (`start` None: since the
    beginning), and the partial windows left over for the raw tables."""
    high = floor_slot(end)
    tail = [] if aligned(end) else [(high, end)]
    if start is None:
        return None, high, tail
    low = ceil_slot(start)
    if low >= high:  # within one or two slots: all of it from the raw tables
        return low, low, [(start, end)]
    return low, high, ([] if aligned(start) else [(start, low)]) + tail


def _account(period: Period, alias: str = "") -> str:
    return f" AND {alias}account_id = :account_id" if period.account_id else ""


def _raw(function: str, columns: str, n: int, period: Period) -> str:
    """Window `n` (`:from_n`, `:to_n`) computed from the raw tables."""
    where = " WHERE account_id = :account_id" if period.account_id else ""
    return (
        f"SELECT {columns} FROM {function}(CAST(:merchant_id AS varchar), :from_{n}, :to_{n})"
        f"{where}"
    )


def _params(
    period: Period, low: datetime | None, high: datetime, windows: Sequence[Window]
) -> dict[str, Any]:
    params: dict[str, Any] = {
        "merchant_id": period.merchant_id,
        "account_id": period.account_id,
        "low": low,
        "high": high,
    }
    for n, (a, b) in enumerate(windows):
        params[f"from_{n}"], params[f"to_{n}"] = a, b
    return params


def _counts(row: dict[str, Any] | None) -> Counts:
    if row is None:
        return {c: 0 for c in COUNTERS}
    return {c: row[c] if c == "cost" else int(row[c]) for c in COUNTERS}


def _sums(prefix: str = "", only: str = "") -> str:
    condition = f" FILTER (WHERE {only})" if only else ""
    return ", ".join(f"coalesce(sum({prefix}{c}){condition}, 0) AS {c}" for c in COUNTERS)


async def counters_by_bucket(session: AsyncSession, period: Period) -> list[Counts]:
    """Every counter per bucket of the period (in `period.buckets()` order, zeros filled)."""
    buckets = period.buckets()
    low, high, windows = _edges(period.start, period.end)
    # One index range per bucket, summed there: grouping 50,000 slots by an expression would
    # have the planner sort them all (it cannot tell there are a few dozen buckets).
    stored = (
        "SELECT b.bucket, s.* FROM unnest(CAST(:bounds AS timestamptz[]), "
        "CAST(:bound_ends AS timestamptz[])) WITH ORDINALITY AS b (lo, hi, bucket), "
        f"LATERAL (SELECT {_sums('c.')} FROM analytics_counts c "
        "WHERE c.merchant_id = :merchant_id AND c.slot >= greatest(b.lo, :low) "
        f"AND c.slot < least(b.hi, :high){_account(period, 'c.')}) s"
    )
    edges = [
        "SELECT width_bucket(slot, CAST(:bounds AS timestamptz[])) AS bucket, "
        f"{_COLUMNS} FROM ({_raw('mktx_analytics_counts_between', f'slot, {_COLUMNS}', n, period)}) e"
        for n in range(len(windows))
    ]
    statement = (
        f"SELECT bucket, {_sums()} FROM ({' UNION ALL '.join([stored, *edges])}) r GROUP BY bucket"
    )
    params = _params(period, low, high, windows)
    params["bounds"] = [b.starts for b in buckets]
    params["bound_ends"] = [b.starts for b in buckets[1:]] + [period.end]
    found = {
        row.bucket: dict(row._mapping) for row in await session.execute(text(statement), params)
    }
    return [_counts(found.get(index + 1)) for index in range(len(buckets))]


async def counters_between(
    session: AsyncSession, period: Period, start: datetime | None, end: datetime
) -> Counts:
    """Every counter summed over `[start, end)`; `start` None: everything before `end`."""
    low, high, windows = _edges(start, end)
    stored = (
        f"SELECT {_COLUMNS} FROM analytics_counts WHERE merchant_id = :merchant_id "
        f"{'AND slot >= :low ' if low else ''}AND slot < :high{_account(period)}"
    )
    raw = [_raw("mktx_analytics_counts_between", _COLUMNS, n, period) for n in range(len(windows))]
    statement = f"SELECT {_sums()} FROM ({' UNION ALL '.join([stored, *raw])}) r"
    row = (await session.execute(text(statement), _params(period, low, high, windows))).one()
    return _counts(dict(row._mapping))


async def known_before(session: AsyncSession, period: Period, instant: datetime) -> int:
    """The contacts known before `instant` (created, or in touch, by then)."""
    _, high, windows = _edges(None, instant)
    stored = (
        "SELECT contacts_known FROM analytics_counts WHERE merchant_id = :merchant_id "
        f"AND slot < :high{_account(period)}"
    )
    raw = [
        _raw("mktx_analytics_counts_between", "contacts_known", n, period)
        for n in range(len(windows))
    ]
    statement = (
        f"SELECT coalesce(sum(contacts_known), 0) FROM ({' UNION ALL '.join([stored, *raw])}) r"
    )
    found = await session.execute(text(statement), _params(period, None, high, windows))
    return int(found.scalar_one())


async def range_and_known(session: AsyncSession, period: Period) -> tuple[Counts, int]:
    """Every counter over the period, and the contacts known at its end, in one pass: the rows
    before the end are read once, those of the range summed apart."""
    low, high, windows = _edges(period.start, period.end)
    known_high = floor_slot(period.end)
    known_window = None if aligned(period.end) else (known_high, period.end)
    flagged = [(w, True, w == known_window) for w in windows]
    if known_window is not None and known_window not in windows:
        flagged.append((known_window, False, True))
    parts = [
        f"SELECT slot >= :low AND slot < :high AS in_range, true AS in_known, {_COLUMNS} "
        f"FROM analytics_counts WHERE merchant_id = :merchant_id "
        f"AND slot < :known_high{_account(period)}"
    ] + [
        _raw(
            "mktx_analytics_counts_between",
            f"{in_range} AS in_range, {in_known}, {_COLUMNS}",
            n,
            period,
        )
        for n, (_, in_range, in_known) in enumerate(flagged)
    ]
    statement = (
        f"SELECT {_sums(only='in_range')}, "
        "coalesce(sum(contacts_known) FILTER (WHERE in_known), 0) AS known "
        f"FROM ({' UNION ALL '.join(parts)}) r"
    )
    params = _params(period, low, high, [w for w, _, _ in flagged])
    row = (await session.execute(text(statement), {**params, "known_high": known_high})).one()
    return _counts(dict(row._mapping)), int(row.known)


async def assignee_totals(session: AsyncSession, period: Period) -> dict[str | None, Counts]:
    """Per assignee (None: nobody), the conversations begun in the period and their waits."""
    low, high, windows = _edges(period.start, period.end)
    columns = "assignee, " + ", ".join(ASSIGNEE_COUNTERS)
    parts = [
        f"SELECT {columns} FROM analytics_assignees WHERE merchant_id = :merchant_id "
        f"AND slot >= :low AND slot < :high{_account(period)}"
    ] + [_raw("mktx_analytics_assignees_between", columns, n, period) for n in range(len(windows))]
    sums = ", ".join(f"sum({c}) AS {c}" for c in ASSIGNEE_COUNTERS)
    statement = f"SELECT assignee, {sums} FROM ({' UNION ALL '.join(parts)}) r GROUP BY assignee"
    rows = await session.execute(text(statement), _params(period, low, high, windows))
    return {
        row.assignee: {c: int(getattr(row, c)) for c in ASSIGNEE_COUNTERS}
        for row in rows
        if any(getattr(row, c) for c in ASSIGNEE_COUNTERS)
    }
