"""Every query on tenant data starts here: a merchant sees its own rows and nothing else."""

from __future__ import annotations

import uuid
from typing import Any, TypeVar

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import SelectOfScalar

from models.db import TenantRow
from services.core.errors import NotFound

RowT = TypeVar("RowT", bound=TenantRow)


def owned_by(model: type[RowT], merchant_id: str) -> SelectOfScalar[RowT]:
    return select(model).where(model.merchant_id == merchant_id)


async def get_owned(
    session: AsyncSession,
    model: type[RowT],
    merchant_id: str,
    row_id: uuid.UUID,
    *,
    resource: str,
    for_update: bool = False,
    **filters: Any,
) -> RowT:
    """Load one row of this merchant or raise NotFound: another merchant's row is not found."""
    statement = owned_by(model, merchant_id).where(model.id == row_id)
    for name, value in filters.items():
        statement = statement.where(getattr(model, name) == value)
    if for_update:
        statement = statement.with_for_update()
    row = (await session.exec(statement)).first()
    if row is None:
        raise NotFound(resource, row_id)
    return row
