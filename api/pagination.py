"""`skip`/`take` in, the spec's `pagination` block out; shared by every list endpoint."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Query
from sqlalchemy import Select, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from api.envelope import Page, Pagination

T = TypeVar("T")

MAX_TAKE = 100
DEFAULT_TAKE = 20


@dataclass(frozen=True, slots=True)
class PageParams:
    skip: int
    take: int

    def block(self, total: int) -> Pagination:
        return Pagination(
            page=self.skip // self.take + 1,
            limit=self.take,
            total=total,
            total_pages=math.ceil(total / self.take) if total else 0,
        )

    def page(self, items: list[T], total: int) -> Page[T]:
        return Page[T](data=items, pagination=self.block(total))

    async def fetch(self, session: AsyncSession, statement: Select[Any]) -> tuple[list[Any], int]:
        """Run one page of `statement` and count all its rows."""
        total = (
            await session.execute(
                select(func.count()).select_from(statement.order_by(None).subquery())
            )
        ).scalar_one()
        rows = (await session.execute(statement.offset(self.skip).limit(self.take))).scalars().all()
        return list(rows), total


def page_params(
    skip: Annotated[int, Query(ge=0, description="rows to skip")] = 0,
    take: Annotated[int, Query(ge=1, le=MAX_TAKE, description="rows per page")] = DEFAULT_TAKE,
) -> PageParams:
    return PageParams(skip=skip, take=take)


PageDep = Annotated[PageParams, Depends(page_params)]
