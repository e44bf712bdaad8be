"""What the campaign activities do in the database: begin an occurrence (snapshot), claim a batch
(its quota slots come from `services.messaging.quota`), record outcomes, and put each DM X accepted in
the contact's conversation, so the inbox shows what the campaign sent. The X calls stay in
`activities/campaign.py`.

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

from sqlalchemy import func, literal, select, text, update
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from models.account import AccountStatus, XAccount
from models.campaign import Campaign, CampaignRecipient, CampaignStatus, RecipientState
from models.contact import Contact
from models.db import utcnow
from models.segment import Segment
from services.messaging import records
from services.segments import segments as segment_service
from services.segments.sql import CONTACTS
from workflows.contracts.messaging import MessageOutcome, OutcomeState

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
    """One queued recipient of a batch, with what rendering its message needs."""

    recipient: CampaignRecipient
    contact: Contact
    account: XAccount


async def in_flight(
    session: AsyncSession, campaign_id: uuid.UUID, occurrence: int, limit: int
) -> list[uuid.UUID]:
    """The messages of recipients an earlier batch claimed but did not settle (the worker
    died, X was down, the account or the media was held): delivered again, looked for at X
    first where the outcome is unknown."""
    rows = await session.execute(
        select(col(CampaignRecipient.message_id))
        .where(
            col(CampaignRecipient.campaign_id) == campaign_id,
            col(CampaignRecipient.occurrence) == occurrence,
            col(CampaignRecipient.state) == RecipientState.sending,
            col(CampaignRecipient.message_id).is_not(None),
        )
        .order_by(col(CampaignRecipient.id))
        .limit(limit)
    )
    return [row for row in rows.scalars().all() if row is not None]


async def claimable(
    session: AsyncSession,
    campaign_id: uuid.UUID,
    occurrence: int,
    limit: int,
    exclude_accounts: Sequence[uuid.UUID] = (),
    exclude_ids: Sequence[uuid.UUID] = (),
) -> list[Pending]:
    """Queued recipients, locked; `exclude_ids`: ones this transaction already took."""
    statement = (
        select(CampaignRecipient, Contact, XAccount)
        .join(Contact, col(Contact.id) == col(CampaignRecipient.contact_id))
        .join(XAccount, col(XAccount.id) == col(CampaignRecipient.account_id))
        .where(
            col(CampaignRecipient.campaign_id) == campaign_id,
            col(CampaignRecipient.occurrence) == occurrence,
            col(CampaignRecipient.state) == RecipientState.queued,
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


async def mark_claimed(
    session: AsyncSession, claimed: Sequence[tuple[uuid.UUID, uuid.UUID]], at: datetime
) -> None:
    """Recipients whose message is queued (recipient id, message id): `sending` from now on."""
    if claimed:
        await session.execute(
            text(
                """
UPDATE campaign_recipients AS r SET state = 'sending', message_id = v.message_id, attempt_at = :at
FROM unnest(CAST(:ids AS uuid[]), CAST(:messages AS uuid[])) AS v(id, message_id)
WHERE r.id = v.id
"""
            ),
            {"ids": [r for r, _ in claimed], "messages": [m for _, m in claimed], "at": at},
        )


@dataclass(frozen=True, slots=True)
class Outcome:
    recipient_id: uuid.UUID
    state: RecipientState
    error: str | None = None


async def record_outcomes(session: AsyncSession, outcomes: Sequence[Outcome]) -> None:
    """Settle recipients that never got a message (not rendered, refused at claim)."""
    if outcomes:
        await session.execute(
            text(
                """
UPDATE campaign_recipients AS r SET state = v.state, error = v.error
FROM unnest(CAST(:ids AS uuid[]), CAST(:states AS text[]), CAST(:errors AS text[]))
    AS v(id, state, error)
WHERE r.id = v.id AND r.state IN ('queued', 'sending')
"""
            ),
            {
                "ids": [o.recipient_id for o in outcomes],
                "states": [o.state.value for o in outcomes],
                "errors": [o.error[:1024] if o.error else None for o in outcomes],
            },
        )


# What a message's outcome makes of its recipient; pending and held ones stay `sending`.
_RECIPIENT_STATES = {
    OutcomeState.sent: RecipientState.sent,
    OutcomeState.failed: RecipientState.failed,
    OutcomeState.skipped: RecipientState.skipped,
}


async def settle_recipients(session: AsyncSession, outcomes: Sequence[MessageOutcome]) -> None:
    """The send path's outcomes, written to the recipients whose messages they are, in the
    send path's own transaction (its `on_settled`). A message held back (the account cannot
    send, the card's media cannot be had) that X certainly never had is withdrawn: its
    recipient is queued again, claimed afresh when the campaign resumes."""
    held = await records.withdrawable(
        session, [o.message_id for o in outcomes if o.state is OutcomeState.held]
    )
    if held:
        await session.execute(
            update(CampaignRecipient)
            .where(col(CampaignRecipient.message_id).in_(held))
            .values(state=RecipientState.queued, message_id=None, attempt_at=None)
        )
        await records.withdraw(session, held)
    settled = [o for o in outcomes if o.state in _RECIPIENT_STATES]
    if not settled:
        return
    await session.execute(
        text(
            """
UPDATE campaign_recipients AS r
SET state = v.state, dm_event_id = v.dm_event_id, error = v.error,
    sent_at = CASE WHEN v.state = 'sent' THEN v.at ELSE r.sent_at END
FROM unnest(
        CAST(:messages AS uuid[]), CAST(:states AS text[]), CAST(:events AS text[]),
        CAST(:errors AS text[]), CAST(:ats AS timestamptz[])
     ) AS v(message_id, state, dm_event_id, error, at)
WHERE r.message_id = v.message_id AND r.state IN ('sending', 'queued')
"""
        ),
        {
            "messages": [o.message_id for o in settled],
            "states": [_RECIPIENT_STATES[o.state].value for o in settled],
            "events": [o.dm_event_id for o in settled],
            "errors": [
                None if o.state is OutcomeState.sent else (o.reason or "")[:1024] for o in settled
            ],
            "ats": [o.sent_at for o in settled],
        },
    )
