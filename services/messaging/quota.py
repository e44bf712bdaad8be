"""The send ledger: every DM (inbox, campaign, flow, bot) reserves a slot of its X account's
rolling 24-hour quota here first, atomically, so that no two senders overspend it together.

This module owns the ledger: the per-account lock, pruning, the limits (the account's 24 h DM
limit, its campaign limit and, when set, the app's 24 h DM cap that every merchant's accounts
share), one-slot reservations (`reserve_send_quota`) and batches of them
(`reserve_batch_quota`), and giving slots back.

With the app-wide cap set, every reservation first takes the app's lock, then its account's:
the one order every transaction takes them in (a transaction reserving for several accounts
holds the app's lock from its first reservation), so they never deadlock, at the price of
reservations queueing one at a time across the app."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, insert, select, text
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
    app_dm_per_24h: int | None = None  # every account of the app together; None: no cap


APP_DM_QUOTA = "app direct message"  # the label of the app-wide cap (QuotaExhausted.kind)


class QuotaExhausted(Exception):
    """The account's quota is spent; a slot frees up at `frees_at`."""

    def __init__(self, account_id: uuid.UUID, limit: int, frees_at: datetime, kind: str) -> None:
        super().__init__(f"{kind} quota of {limit} per 24 h is spent until {frees_at.isoformat()}")
        self.account_id = account_id
        self.limit = limit
        self.frees_at = frees_at
        self.kind = kind


@dataclass(frozen=True, slots=True)
class _Check:
    """One limit a reservation must fit: how many slots of it the window already holds."""

    label: str
    limit: int
    only_kind: SendKind | None  # None: every kind counts
    used: int
    app_wide: bool = False  # counts every account's reservations, not only this account's


async def _lock_and_count(
    session: AsyncSession,
    account_id: uuid.UUID,
    kind: SendKind,
    limits: QuotaLimits,
    now: datetime,
) -> tuple[int, list[_Check]]:
    """Take the account's ledger lock (held until the transaction ends, so concurrent senders of
    one account queue here instead of overspending), prune, and answer how many slots of `kind`
    are free now with the limits that apply: the 24 h DM limit, for campaign sends the
    campaign limit too, and the app's cap when it is set (its lock first: see the module)."""
    checks: list[_Check] = []
    if limits.app_dm_per_24h is not None:
        await session.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
            {"key": "send-quota:app"},
        )
        used_app = (
            await session.execute(
                select(func.count()).where(col(SendReservation.reserved_at) > now - WINDOW)
            )
        ).scalar_one()
        checks.append(_Check(APP_DM_QUOTA, limits.app_dm_per_24h, None, int(used_app), True))
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
        {"key": f"send-quota:{account_id}"},
    )
    await prune_ledger(session, account_id, now)
    used, used_campaign = (
        await session.execute(
            select(
                func.count(),
                func.count().filter(col(SendReservation.kind) == SendKind.campaign),
            ).where(
                col(SendReservation.account_id) == account_id,
                col(SendReservation.reserved_at) > now - WINDOW,
            )
        )
    ).one()
    checks.append(_Check("direct message", limits.dm_per_24h, None, int(used)))
    if kind is SendKind.campaign:
        checks.append(
            _Check("campaign", limits.campaign_per_24h, SendKind.campaign, int(used_campaign))
        )
    return max(0, min(c.limit - c.used for c in checks)), checks


async def _exhausted(
    session: AsyncSession,
    account_id: uuid.UUID,
    now: datetime,
    checks: Sequence[_Check],
    taken: int,
) -> QuotaExhausted:
    """The first limit that is spent once `taken` more slots are held, and when its next slot
    frees: when the window loses enough of its oldest reservations to fall under the limit."""
    for check in checks:
        used = check.used + taken
        if used >= check.limit:
            since = now - WINDOW
            frees_at = await _nth_oldest_expiry(
                session,
                None if check.app_wide else account_id,
                since,
                used - check.limit,
                check.only_kind,
            )
            return QuotaExhausted(account_id, check.limit, frees_at or now + WINDOW, check.label)
    raise ValueError("no limit is spent")


async def reserve_send_quota(
    session: AsyncSession,
    *,
    merchant_id: str,
    account_id: uuid.UUID,
    kind: SendKind,
    limits: QuotaLimits,
    message_id: uuid.UUID | None = None,
) -> SendReservation:
    """Take one slot or raise QuotaExhausted (the account stays locked until the transaction
    ends)."""
    now = utcnow()
    free, checks = await _lock_and_count(session, account_id, kind, limits, now)
    if free < 1:
        raise await _exhausted(session, account_id, now, checks, 0)
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


@dataclass(frozen=True, slots=True)
class BatchGrant:
    granted: int  # the first `granted` of the ids asked for hold a slot
    frees_at: datetime | None = None  # when short: when the account's next slot frees up
    exhausted: QuotaExhausted | None = None  # when short: which limit is spent


async def reserve_batch_quota(
    session: AsyncSession,
    *,
    merchant_id: str,
    account_id: uuid.UUID,
    kind: SendKind,
    message_ids: Sequence[uuid.UUID],
    limits: QuotaLimits,
    now: datetime,
) -> BatchGrant:
    """Take up to one slot per id in one go, under the same lock and limits as
    `reserve_send_quota`; each reservation is tagged with its id (to release it later).

    `now` is the caller's clock: a campaign passes its workflow's, so the window moves with
    durable timers (a campaign that slept until its quota freed finds it free, also under a
    time-skipping test server)."""
    if not message_ids:
        return BatchGrant(0)
    free, checks = await _lock_and_count(session, account_id, kind, limits, now)
    granted = list(message_ids[:free])
    if granted:
        await session.execute(
            insert(SendReservation),
            [
                {
                    "id": uuid.uuid4(),
                    "merchant_id": merchant_id,
                    "account_id": account_id,
                    "kind": kind.value,
                    "reserved_at": now,
                    "message_id": message_id,
                }
                for message_id in granted
            ],
        )
    if len(granted) == len(message_ids):
        return BatchGrant(len(granted))
    spent = await _exhausted(session, account_id, now, checks, len(granted))
    return BatchGrant(len(granted), spent.frees_at, spent)


async def _nth_oldest_expiry(
    session: AsyncSession,
    account_id: uuid.UUID | None,
    since: datetime,
    offset: int,
    only_kind: SendKind | None,
) -> datetime | None:
    """When the window loses its (offset+1)-th oldest reservation: of the account's, or of
    the whole app's (`account_id` None)."""
    statement = (
        select(col(SendReservation.reserved_at))
        .where(col(SendReservation.reserved_at) > since)
        .order_by(col(SendReservation.reserved_at))
        .offset(offset)
        .limit(1)
    )
    if account_id is not None:
        statement = statement.where(col(SendReservation.account_id) == account_id)
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


async def release_batch_quota(
    session: AsyncSession, account_ids: Sequence[uuid.UUID], message_ids: Sequence[uuid.UUID]
) -> None:
    """Give back the slots a batch took for sends X never accepted (refused, rate limited, not
    rendered)."""
    if not message_ids:
        return
    await session.execute(
        delete(SendReservation).where(
            col(SendReservation.account_id).in_(list(set(account_ids))),
            col(SendReservation.message_id).in_(list(message_ids)),
        )
    )


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
        dm_per_24h=settings.dm_limit_per_24h,
        campaign_per_24h=settings.campaign_limit_per_24h,
        app_dm_per_24h=settings.app_dm_limit_per_24h,
    )
