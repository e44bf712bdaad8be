"""The database engine and sessions (async SQLAlchemy over psycopg 3)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import DateTime
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel import Field, SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

SessionMaker = async_sessionmaker[AsyncSession]


def utcnow() -> datetime:
    return datetime.now(UTC)


def make_engine(url: str, *, pool_size: int = 10, pool_timeout: float = 10.0) -> AsyncEngine:
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=pool_timeout,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args={"connect_timeout": 5},
    )


def make_sessionmaker(engine: AsyncEngine) -> SessionMaker:
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


class TenantRow(SQLModel):
    """Columns every merchant-owned row has."""

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    merchant_id: str = Field(max_length=128)  # first column of every composite index
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))  # type: ignore[call-overload]
    updated_at: datetime = Field(
        default_factory=utcnow,
        sa_type=DateTime(timezone=True),  # type: ignore[call-overload]
        sa_column_kwargs={"onupdate": utcnow},
    )
