"""What the campaign activities do in the database: begin an occurrence (snapshot), claim a batch
with its quota slots, record outcomes. The X calls stay in `activities/campaign.py`.

Exactly once: a recipient is `sending` (committed) before its DM goes to X, and only becomes
`sent` with X's event id. A `sending` recipient found by a later attempt is checked against
X's DM events before it is sent again.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, literal, select, text, update
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from models.account import AccountStatus, XAccount
from models.campaign import Campaign, CampaignRecipient, CampaignStatus, RecipientState
from models.contact import Contact
from models.db import utcnow
from models.quota import SendKind, SendReservation
from models.segment import Segment
from services import segments as segment_service
from services.quota import WINDOW, QuotaLimits, prune_ledger
from services.segment_sql import CONTACTS

logger = logging.getLogger(__name__)


# Occurrences ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Begun:
    occurrence: int
    recipients: int
    status: CampaignStatus


async def begin_occurrence(
    session: AsyncSession, merchant_id: str, campaign_id: uuid.UUID, run_key: str
) -> Begun | None:
    """Mark the campaign running and snapshot its recipients for this run, once: a retried call
    with the same `run_key` answers the same occurrence (the snapshot dedups by its unique key).
    None: the campaign is gone or no longer startable (cancelled)."""
    campaign = (
        await session.execute(
            select(Campaign)
            .where(col(Campaign.id) == campaign_id, col(Campaign.merchant_id) == merchant_id)
            .with_for_update()
        )
    ).scalar_one_or_none()
    if campaign is None or campaign.status in (
        CampaignStatus.cancelled,
        CampaignStatus.draft,
    ):
        return None
    if campaign.last_run_key != run_key:
        campaign.occurrences += 1
        campaign.last_run_key = run_key
    now = utcnow()
    if campaign.status != CampaignStatus.paused:
        campaign.status = CampaignStatus.running
    campaign.started_at = campaign.started_at or now
    campaign.completed_at = None
    campaign.updated_at = now
    session.add(campaign)
    segments = (
        (
            await session.execute(
                select(Segment).where(
                    col(Segment.id).in_(list(campaign.segment_ids)),
                    col(Segment.merchant_id) == merchant_id,
                )
            )
        )
        .scalars()
        .all()
    )
    await segment_service.plan_with_values(session)
    _c = CONTACTS.c
    source = segment_service.compile_segment(
        merchant_id,
        list(segments),
        exclude_opted_out=True,
        columns=[
            func.gen_random_uuid(),
            literal(merchant_id),
            literal(campaign.id, PG_UUID(as_uuid=True)),
            literal(campaign.occurrences),
            _c.id,
            _c.account_id,
            literal(RecipientState.queued.value),
            func.now(),
        ],
    )
    table: Any = CampaignRecipient.__table__  # type: ignore[attr-defined]
    statement = (
        pg_insert(table)
        .from_select(
            [
                "id",
                "merchant_id",
                "campaign_id",
                "occurrence",
                "contact_id",
                "account_id",
                "state",
                "created_at",
            ],
            source,
        )
        .on_conflict_do_nothing(constraint="uq_campaign_recipients_contact")
    )
    await session.execute(statement)
    total = (
        await session.execute(
            select(func.count()).where(
                col(CampaignRecipient.campaign_id) == campaign.id,
                col(CampaignRecipient.occurrence) == campaign.occurrences,
            )
        )
    ).scalar_one()
    await session.flush()
    logger.info(
        "campaign.snapshot",
        extra={
            "campaign_id": str(campaign.id),
            "occurrence": campaign.occurrences,
            "recipients": total,
        },
    )
    return Begun(campaign.occurrences, int(total), CampaignStatus(campaign.status))


async def set_status(
    session: AsyncSession,
    merchant_id: str,
    campaign_id: uuid.UUID,
    status: CampaignStatus,
    reason: str | None,
    only_from: Sequence[CampaignStatus] = (),
) -> CampaignStatus | None:
    """Move the campaign to `status` (when it is in one of `only_from`, if given); answer the
    status it now has."""
    campaign = (
        await session.execute(
            select(Campaign)
            .where(col(Campaign.id) == campaign_id, col(Campaign.merchant_id) == merchant_id)
            .with_for_update()
        )
    ).scalar_one_or_none()
    if campaign is None:
        return None
    if only_from and campaign.status not in only_from:
        return CampaignStatus(campaign.status)
    now = utcnow()
    campaign.status = status
    campaign.status_reason = reason[:1024] if reason else None
    if status in (CampaignStatus.completed, CampaignStatus.failed, CampaignStatus.cancelled):
        campaign.completed_at = now
    campaign.updated_at = now
    session.add(campaign)
    await session.flush()
    logger.info("campaign.status", extra={"campaign_id": str(campaign_id), "status": status.value})
    return status


async def skip_remaining(
    session: AsyncSession, campaign_id: uuid.UUID, occurrence: int, reason: str
) -> int:
    """endAt passed: every recipient not yet handed to X is skipped with the reason."""
    result = await session.execute(
        update(CampaignRecipient)
        .where(
            col(CampaignRecipient.campaign_id) == campaign_id,
            col(CampaignRecipient.occurrence) == occurrence,
            col(CampaignRecipient.state) == RecipientState.queued,
        )
        .values(state=RecipientState.skipped, error=reason[:1024])
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def remaining(session: AsyncSession, campaign_id: uuid.UUID, occurrence: int) -> int:
    return int(
        (
            await session.execute(
                select(func.count()).where(
                    col(CampaignRecipient.campaign_id) == campaign_id,
                    col(CampaignRecipient.occurrence) == occurrence,
                    col(CampaignRecipient.state).in_(
                        [RecipientState.queued, RecipientState.sending]
                    ),
                )
            )
        ).scalar_one()
    )


# Batches --------------------------------------------------------------------------------------


@dataclass(slots=True)
class Pending:
    """One recipient of a batch, with what rendering and sending it needs."""

    recipient: CampaignRecipient
    contact: Contact
    account: XAccount


async def in_flight(
    session: AsyncSession, campaign_id: uuid.UUID, occurrence: int, limit: int
) -> list[Pending]:
    """Recipients left `sending` by an attempt that ended before recording the outcome."""
    return await _pending(session, campaign_id, occurrence, RecipientState.sending, limit)


async def claimable(
    session: AsyncSession,
    campaign_id: uuid.UUID,
    occurrence: int,
    limit: int,
    exclude_accounts: Sequence[uuid.UUID] = (),
    exclude_ids: Sequence[uuid.UUID] = (),
) -> list[Pending]:
    """Queued recipients, locked; `exclude_ids`: ones this transaction already took."""
    return await _pending(
        session,
        campaign_id,
        occurrence,
        RecipientState.queued,
        limit,
        exclude_accounts,
        exclude_ids,
    )


async def _pending(
    session: AsyncSession,
    campaign_id: uuid.UUID,
    occurrence: int,
    state: RecipientState,
    limit: int,
    exclude_accounts: Sequence[uuid.UUID] = (),
    exclude_ids: Sequence[uuid.UUID] = (),
) -> list[Pending]:
    statement = (
        select(CampaignRecipient, Contact, XAccount)
        .join(Contact, col(Contact.id) == col(CampaignRecipient.contact_id))
        .join(XAccount, col(XAccount.id) == col(CampaignRecipient.account_id))
        .where(
            col(CampaignRecipient.campaign_id) == campaign_id,
            col(CampaignRecipient.occurrence) == occurrence,
            col(CampaignRecipient.state) == state,
        )
        .order_by(col(CampaignRecipient.id))
        .limit(limit)
        .with_for_update(of=CampaignRecipient, skip_locked=True)  # type: ignore[arg-type]
    )
    if exclude_accounts:
        statement = statement.where(col(CampaignRecipient.account_id).not_in(exclude_accounts))
    if exclude_ids:
        statement = statement.where(col(CampaignRecipient.id).not_in(exclude_ids))
    rows = (await session.execute(statement)).all()
    return [Pending(r, c, a) for r, c, a in rows]


def account_usable(account: XAccount) -> bool:
    return account.status == AccountStatus.active and account.disconnected_at is None


async def reserve_slots(
    session: AsyncSession,
    *,
    merchant_id: str,
    account_id: uuid.UUID,
    recipient_ids: Sequence[uuid.UUID],
    limits: QuotaLimits,
    now: datetime,
) -> tuple[int, datetime | None]:
    """Take up to len(recipient_ids) campaign slots of the account's 24 h ledger in one go (the
    same ledger and per-account lock as `services.quota.reserve_send_quota`). Answers how many
    were granted (the first ones) and, when short, when the next slot frees up.

    `now` is the workflow's clock: the ledger window moves with durable timers, so a campaign
    that slept until its quota freed finds it free (also under a time-skipping test server)."""
    if not recipient_ids:
        return 0, None
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
        {"key": f"send-quota:{account_id}"},
    )
    await prune_ledger(session, account_id, now)
    since = now - WINDOW
    used, used_campaign, oldest, oldest_campaign = (
        await session.execute(
            select(
                func.count(),
                func.count().filter(col(SendReservation.kind) == SendKind.campaign),
                func.min(col(SendReservation.reserved_at)),
                func.min(col(SendReservation.reserved_at)).filter(
                    col(SendReservation.kind) == SendKind.campaign
                ),
            ).where(
                col(SendReservation.account_id) == account_id,
                col(SendReservation.reserved_at) > since,
            )
        )
    ).one()
    free = max(0, min(limits.dm_per_24h - used, limits.campaign_per_24h - used_campaign))
    granted = list(recipient_ids[:free])
    frees_at: datetime | None = None
    if len(granted) < len(recipient_ids):
        dm_spent = used >= limits.dm_per_24h or used + len(granted) >= limits.dm_per_24h
        moments = [oldest if dm_spent else oldest_campaign, oldest, oldest_campaign]
        first = next((m for m in moments if m is not None), now)
        frees_at = first + WINDOW
    if granted:
        await session.execute(
            insert(SendReservation),
            [
                {
                    "id": uuid.uuid4(),
                    "merchant_id": merchant_id,
                    "account_id": account_id,
                    "kind": SendKind.campaign.value,
                    "reserved_at": now,
                    "message_id": rid,
                }
                for rid in granted
            ],
        )
    return len(granted), frees_at


async def release_slots(
    session: AsyncSession, account_ids: Sequence[uuid.UUID], recipient_ids: Sequence[uuid.UUID]
) -> None:
    """Give back the slots of sends X never took (refused, rate limited, render failures)."""
    if not recipient_ids:
        return
    await session.execute(
        delete(SendReservation).where(
            col(SendReservation.account_id).in_(list(set(account_ids))),
            col(SendReservation.message_id).in_(list(recipient_ids)),
        )
    )


@dataclass(frozen=True, slots=True)
class Outcome:
    recipient_id: uuid.UUID
    state: RecipientState
    dm_event_id: str | None = None
    error: str | None = None
    at: datetime | None = None


_RECORD = text(
    """
UPDATE campaign_recipients AS r
SET state = v.state,
    dm_event_id = v.dm_event_id,
    error = v.error,
    sent_at = CASE WHEN v.state = 'sent' THEN v.at ELSE r.sent_at END,
    attempt_at = CASE WHEN v.state = 'queued' THEN NULL ELSE r.attempt_at END
FROM unnest(
        CAST(:ids AS uuid[]),
        CAST(:states AS text[]),
        CAST(:events AS text[]),
        CAST(:errors AS text[]),
        CAST(:ats AS timestamptz[])
     )
     AS v(id, state, dm_event_id, error, at)
WHERE r.id = v.id AND r.state IN ('sending', 'queued')
"""
)


async def record_outcomes(session: AsyncSession, outcomes: Sequence[Outcome]) -> None:
    """Write a batch's outcomes in one statement."""
    if not outcomes:
        return
    await session.execute(
        _RECORD,
        {
            "ids": [o.recipient_id for o in outcomes],
            "states": [o.state.value for o in outcomes],
            "events": [o.dm_event_id for o in outcomes],
            "errors": [o.error[:1024] if o.error else None for o in outcomes],
            "ats": [o.at for o in outcomes],
        },
    )


async def mark_sending(
    session: AsyncSession, recipient_ids: Sequence[uuid.UUID], at: datetime
) -> None:
    if recipient_ids:
        await session.execute(
            update(CampaignRecipient)
            .where(col(CampaignRecipient.id).in_(list(recipient_ids)))
            .values(state=RecipientState.sending, attempt_at=at)
        )


async def event_ids_taken(
    session: AsyncSession, contact_id: uuid.UUID, recipient_id: uuid.UUID, candidates: list[str]
) -> set[str]:
    """X event ids another recipient row of this contact already holds (an earlier occurrence or
    campaign with the same text): not candidates for this one."""
    if not candidates:
        return set()
    rows = await session.execute(
        select(col(CampaignRecipient.dm_event_id)).where(
            col(CampaignRecipient.contact_id) == contact_id,
            col(CampaignRecipient.id) != recipient_id,
            col(CampaignRecipient.dm_event_id).in_(candidates),
        )
    )
    return {r for r in rows.scalars().all() if r}
