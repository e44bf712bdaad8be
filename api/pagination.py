"""`skip`/`take` in, the spec's `pagination` block out; shared by every list endpoint.

Totals follow `services.core.totals`: exact up to 10,000 matching rows, the planner's estimate
above (`pagination.totalIsEstimate`), so that a broad list costs a page, not a count of all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Query
from sqlalchemy import Select
from sqlmodel.ext.asyncio.session import AsyncSession

from api.envelope import Page, Pagination
from services.core.totals import Total, count_total, known_total

T = TypeVar("T")

MAX_TAKE = 100
DEFAULT_TAKE = 20
# Deeper than any merchant's list, and far inside PostgreSQL's bigint OFFSET (a larger number
# reached the database and failed there) and a JavaScript client's safe integers.
MAX_SKIP = 1_000_000_000


@dataclass(frozen=True, slots=True)
class PageParams:
    skip: int
    take: int

    def block(self, total: Total | int) -> Pagination:
        if isinstance(total, int):
            total = Total(total)
        return Pagination(
            page=self.skip // self.take + 1,
            limit=self.take,
            total=total.value,
            total_pages=math.ceil(total.value / self.take) if total.value else 0,
            total_is_estimate=total.is_estimate,
        )

    def page(self, items: list[T], total: Total | int) -> Page[T]:
        return Page[T](data=items, pagination=self.block(total))

    async def fetch(self, session: AsyncSession, statement: Select[Any]) -> tuple[list[Any], Total]:
        """Run one page of `statement`, and tell how many rows it has in all."""
        rows = (await session.execute(statement.offset(self.skip).limit(self.take))).scalars().all()
        total = known_total(self.skip, self.take, len(rows)) or await count_total(
            session, statement, seen=self.skip + len(rows) if rows else 0
        )
        return list(rows), total


def page_params(
    skip: Annotated[int, Query(ge=0, le=MAX_SKIP, description="rows to skip")] = 0,
    take: Annotated[int, Query(ge=1, le=MAX_TAKE, description="rows per page")] = DEFAULT_TAKE,
) -> PageParams:
    return PageParams(skip=skip, take=take)


PageDep = Annotated[PageParams, Depends(page_params)]
