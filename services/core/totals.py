"""How many rows a list has: exact up to `EXACT_TOTAL_LIMIT`, the planner's estimate above it.

Counting every match of a broad filter costs as much as reading them all (300,000 contacts
tagged `customer` took longer than the page itself), and nobody pages through 10,000 rows. So
a total is counted only as far as `EXACT_TOTAL_LIMIT` — `count(*)` over the statement with
`LIMIT EXACT_TOTAL_LIMIT + 1`, which stops reading there — and when more are found the answer is
the planner's row estimate for the whole statement (`EXPLAIN`: planned, nothing read), never
less than the rows known to exist, flagged as an estimate (`pagination.totalIsEstimate`). A
total up to the limit is always exact, whatever the statistics say.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement
from sqlmodel.ext.asyncio.session import AsyncSession

# Totals up to this are counted; above it they are the planner's estimate. Read when counting
# (as `totals.EXACT_TOTAL_LIMIT`), so a test can lower it.
EXACT_TOTAL_LIMIT = 10_000


@dataclass(frozen=True, slots=True)
class Total:
    value: int
    is_estimate: bool = False


class Explain(Executable, ClauseElement):
    """`EXPLAIN (FORMAT JSON) <statement>` with the statement's bound parameters: the plan is
    made for those very values, as the statement's own would be."""

    inherit_cache = False

    def __init__(self, statement: Select[Any]) -> None:
        self.statement = statement


@compiles(Explain, "postgresql")
def _explain(element: Explain, compiler: SQLCompiler, **kw: Any) -> str:
    return "EXPLAIN (FORMAT JSON) " + compiler.process(element.statement, **kw)


async def estimated_rows(session: AsyncSession, statement: Select[Any]) -> int:
    """The planner's estimate of how many rows `statement` returns."""
    plan = (await session.execute(Explain(statement.order_by(None)))).scalar_one()
    if isinstance(plan, str):
        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])


async def capped_count(
    session: AsyncSession, statement: Select[Any], *, ordered: bool = False
) -> int:
    """How many rows `statement` has, counting no further than `EXACT_TOTAL_LIMIT + 1`.
    `ordered` keeps its ORDER BY, which then decides how the rows are read (an index walk)."""
    capped = (statement if ordered else statement.order_by(None)).limit(EXACT_TOTAL_LIMIT + 1)
    counted = await session.execute(select(func.count()).select_from(capped.subquery("capped")))
    return int(counted.scalar_one())


def known_total(skip: int, take: int, rows: int) -> Total | None:
    """What a page of `rows` rows tells: the total when it is short (and not empty past the
    start, which says only that there are at most `skip`)."""
    if rows < take and (rows or skip == 0):
        return Total(skip + rows)
    return None


def settle(counted: int, planned: int, *, seen: int = 0) -> Total:
    """The total from a capped count and the planner's estimate (`seen`: rows known to exist)."""
    if counted <= EXACT_TOTAL_LIMIT:
        return Total(counted)
    return Total(max(planned, counted, seen), is_estimate=True)


async def count_total(session: AsyncSession, statement: Select[Any], *, seen: int = 0) -> Total:
    """The total of `statement`'s rows by the rule above; EXPLAIN runs only past the limit."""
    counted = await capped_count(session, statement)
    if counted <= EXACT_TOTAL_LIMIT:
        return Total(counted)
    return settle(counted, await estimated_rows(session, statement), seen=seen)
