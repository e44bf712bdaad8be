"""The send ledger: every DM (inbox, campaign, flow, bot) reserves a slot of its X account's
rolling 24-hour quota here first, atomically, so that no two senders overspend it together."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, text
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from mktx.settings import Settings
from models.db import utcnow
from models.quota import SendKind, SendReservation

WINDOW = timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class QuotaLimits:
    dm_per_24h: int
    campaign_per_24h: int


class QuotaExhausted(Exception):
    """The account's quota is spent; a slot frees up at `frees_at`."""

    def __init__(self, account_id: uuid.UUID, limit: int, frees_at: datetime, kind: str) -> None:
        super().__init__(f"{kind} quota of {limit} per 24 h is spent until {frees_at.isoformat()}")
        self.account_id = account_id
        self.limit = limit
        self.frees_at = frees_at
        self.kind = kind


async def reserve_send_quota(
    session: AsyncSession,
    *,
    merchant_id: str,
    account_id: uuid.UUID,
    kind: SendKind,
    limits: QuotaLimits,
    message_id: uuid.UUID | None = None,
) -> SendReservation:
    """Take one slot or raise QuotaExhausted. Holds a per-account lock until the transaction ends,
    so concurrent senders of one account queue here instead of overspending."""
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
        {"key": f"send-quota:{account_id}"},
    )
    now = utcnow()
    await prune_ledger(session, account_id, now)
    since = now - WINDOW
    checks: list[tuple[str, int, SendKind | None]] = [("direct message", limits.dm_per_24h, None)]
    if kind is SendKind.campaign:
        checks.append(("campaign", limits.campaign_per_24h, SendKind.campaign))
    for label, limit, only_kind in checks:
        statement = select(func.count(), func.min(col(SendReservation.reserved_at))).where(
            col(SendReservation.account_id) == account_id,
            col(SendReservation.reserved_at) > since,
        )
        if only_kind is not None:
            statement = statement.where(col(SendReservation.kind) == only_kind)
        used, oldest = (await session.execute(statement)).one()
        if used >= limit:
            # The slot the oldest reservation in the window holds frees first.
            frees_at = await _nth_oldest_expiry(session, account_id, since, used - limit, only_kind)
            raise QuotaExhausted(account_id, limit, frees_at or (oldest + WINDOW), label)
    reservation = SendReservation(
        merchant_id=merchant_id,
        account_id=account_id,
        kind=kind,
        reserved_at=now,
        message_id=message_id,
    )
    session.add(reservation)
    await session.flush()
    return reservation


async def _nth_oldest_expiry(
    session: AsyncSession,
    account_id: uuid.UUID,
    since: datetime,
    offset: int,
    only_kind: SendKind | None,
) -> datetime | None:
    statement = (
        select(col(SendReservation.reserved_at))
        .where(
            col(SendReservation.account_id) == account_id,
            col(SendReservation.reserved_at) > since,
        )
        .order_by(col(SendReservation.reserved_at))
        .offset(offset)
        .limit(1)
    )
    if only_kind is not None:
        statement = statement.where(col(SendReservation.kind) == only_kind)
    reserved_at = (await session.execute(statement)).scalar_one_or_none()
    return reserved_at + WINDOW if reserved_at is not None else None


async def prune_ledger(session: AsyncSession, account_id: uuid.UUID, now: datetime) -> None:
    """Forget reservations no window can see any more (call under the account's lock): the
    ledger stays about one window long per account instead of growing with every send."""
    await session.execute(
        delete(SendReservation).where(
            col(SendReservation.account_id) == account_id,
            col(SendReservation.reserved_at) < now - 2 * WINDOW,
        )
    )


async def release_send_quota(session: AsyncSession, reservation_id: uuid.UUID) -> None:
    """Give a slot back when X did not accept the message (it was never sent)."""
    await session.execute(delete(SendReservation).where(col(SendReservation.id) == reservation_id))


async def release_message_quota(
    session: AsyncSession, message_id: uuid.UUID, account_id: uuid.UUID
) -> int:
    """Give back the slot a message reserved when X refused it for good (it was never sent)."""
    result = await session.execute(
        delete(SendReservation).where(
            col(SendReservation.account_id) == account_id,  # served by the account index
            col(SendReservation.message_id) == message_id,
        )
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def quota_usage(session: AsyncSession, account_id: uuid.UUID) -> int:
    since = utcnow() - WINDOW
    statement = select(func.count()).where(
        col(SendReservation.account_id) == account_id,
        col(SendReservation.reserved_at) > since,
    )
    return int((await session.execute(statement)).scalar_one())


def limits_from_settings(settings: Settings) -> QuotaLimits:
    return QuotaLimits(
        dm_per_24h=settings.dm_limit_per_24h, campaign_per_24h=settings.campaign_limit_per_24h
    )
