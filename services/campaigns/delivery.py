"""What the campaign activities do in the database: begin an occurrence (snapshot), claim a batch
(its quota slots come from `services.messaging.quota`), record outcomes, and put each DM X accepted in
the contact's conversation, so the inbox shows what the campaign sent. The X calls stay in
`activities/campaign.py`.

Exactly once: a recipient is `sending` (committed) before its DM goes to X, and only becomes
`sent` with X's event id. A `sending` recipient found by a later attempt is checked against
X's DM events before it is sent again.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, literal, select, text, update
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from models.account import AccountStatus, XAccount
from models.campaign import Campaign, CampaignRecipient, CampaignStatus, RecipientState
from models.contact import Contact
from models.db import utcnow
from models.segment import Segment
from services.segments import segments as segment_service
from services.segments.sql import CONTACTS

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


@dataclass(frozen=True, slots=True)
class Outcome:
    recipient_id: uuid.UUID
    state: RecipientState
    dm_event_id: str | None = None
    error: str | None = None
    at: datetime | None = None
    text: str | None = None  # what X received (sent): the inbox shows it
    media: dict[str, str] | None = None  # the media attached to it, as a message attachment


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
RETURNING r.id, r.merchant_id, r.account_id, r.contact_id, r.campaign_id, r.state,
    r.dm_event_id, r.sent_at
"""
)


async def record_outcomes(session: AsyncSession, outcomes: Sequence[Outcome]) -> None:
    """Write a batch's outcomes in one statement; the DMs it settles as sent are then put in
    their contacts' conversations (`record_in_inbox`), in the same transaction."""
    if not outcomes:
        return
    recorded = await session.execute(
        _RECORD,
        {
            "ids": [o.recipient_id for o in outcomes],
            "states": [o.state.value for o in outcomes],
            "events": [o.dm_event_id for o in outcomes],
            "errors": [o.error[:1024] if o.error else None for o in outcomes],
            "ats": [o.at for o in outcomes],
        },
    )
    texts = {o.recipient_id: o.text for o in outcomes}
    media = {o.recipient_id: o.media for o in outcomes if o.media}
    await record_in_inbox(
        session,
        [
            CampaignDM(
                merchant_id=row.merchant_id,
                account_id=row.account_id,
                contact_id=row.contact_id,
                campaign_id=row.campaign_id,
                dm_event_id=row.dm_event_id,
                text=texts[row.id] or "",
                sent_at=row.sent_at,
                attachments=(media[row.id],) if row.id in media else (),
            )
            for row in recorded
            # Only what this call settled as sent: a recipient recorded before is in already.
            if row.state == RecipientState.sent and row.dm_event_id and texts.get(row.id)
        ],
    )


# The inbox ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CampaignDM:
    """A DM a campaign (or a test send of it) delivered: X's event id and the text X took."""

    merchant_id: str
    account_id: uuid.UUID
    contact_id: uuid.UUID
    campaign_id: uuid.UUID
    dm_event_id: str
    text: str
    sent_at: datetime
    attachments: tuple[dict[str, str], ...] = ()  # the media X attached, if any


# Each DM becomes an outbound `sent` message in the contact's open conversation (one is opened
# when there is none; the contact's conversation_count counts it), which shows it as recent
# activity (message_count, last_message_at), as ingestion does for a DM it records.
#
# The webhook's echo of a DM settles the message holding its X event id (ingestion's MESSAGE
# statement), so once this is committed the echo adds nothing. An echo that got here first was
# stored as an outbound message of its own, already counted in the conversation: that message
# becomes the campaign's (`echoed`), none is added. An echo stored concurrently, after this
# statement's snapshot, makes the INSERT hit the unique X event id: the caller retries with a
# fresh snapshot, which finds it. (A contact erased concurrently fails a foreign key: the
# retry finds it gone, and records nothing for it.)
#
# Conversations are upserted in contact order, so that two batches touching the same contacts
# take their locks in the same order.
_INBOX = text(
    """
WITH src AS (
    SELECT v.merchant_id, v.account_id, v.contact_id, v.campaign_id, v.event_id, v.content, v.at,
        CAST(v.attachments AS jsonb) AS attachments
    FROM unnest(
            CAST(:merchants AS text[]),
            CAST(:accounts AS uuid[]),
            CAST(:contacts AS uuid[]),
            CAST(:campaigns AS uuid[]),
            CAST(:events AS text[]),
            CAST(:contents AS text[]),
            CAST(:ats AS timestamptz[]),
            CAST(:attachments AS text[])
         ) AS v(merchant_id, account_id, contact_id, campaign_id, event_id, content, at,
            attachments)
    JOIN contacts k ON k.id = v.contact_id AND k.merchant_id = v.merchant_id
),
echoed AS (
    UPDATE messages m
    SET campaign_id = src.campaign_id, content = src.content, updated_at = now(),
        attachments = CASE WHEN src.attachments = '[]'::jsonb THEN m.attachments
                           ELSE src.attachments END
    FROM src
    WHERE m.account_id = src.account_id AND m.twitter_message_id = src.event_id
    RETURNING m.id
),
fresh AS (
    SELECT src.* FROM src
    WHERE NOT EXISTS (
        SELECT 1 FROM messages m
        WHERE m.account_id = src.account_id AND m.twitter_message_id = src.event_id
    )
),
per_contact AS (
    SELECT gen_random_uuid() AS proposed, merchant_id, account_id, contact_id,
        count(*) AS n, min(at) AS first_at, max(at) AS last_at
    FROM fresh
    GROUP BY merchant_id, account_id, contact_id
),
conversation AS (
    INSERT INTO conversations AS o (
        id, merchant_id, created_at, updated_at, account_id, contact_id, status, channel,
        started_at, last_message_at, message_count)
    SELECT proposed, merchant_id, now(), now(), account_id, contact_id, 'open', 'direct_message',
        first_at, last_at, n
    FROM per_contact
    ORDER BY contact_id
    ON CONFLICT (contact_id) WHERE status = 'open' DO UPDATE SET
        message_count = o.message_count + excluded.message_count,
        last_message_at = greatest(o.last_message_at, excluded.last_message_at),
        updated_at = excluded.updated_at
    RETURNING o.id, o.contact_id
),
opened AS (
    UPDATE contacts c
    SET conversation_count = c.conversation_count + 1, updated_at = now()
    FROM conversation
    JOIN per_contact p ON p.contact_id = conversation.contact_id
    WHERE c.id = conversation.contact_id AND conversation.id = p.proposed
    RETURNING c.id
),
message AS (
    INSERT INTO messages (
        id, merchant_id, created_at, updated_at, conversation_id, account_id, contact_id,
        direction, type, content, attachments, is_from_bot, twitter_message_id, sent_at,
        status, campaign_id)
    SELECT gen_random_uuid(), fresh.merchant_id, now(), now(), conversation.id,
        fresh.account_id, fresh.contact_id, 'outbound', 'text', fresh.content, fresh.attachments,
        false, fresh.event_id, fresh.at, 'sent', fresh.campaign_id
    FROM fresh
    JOIN conversation ON conversation.contact_id = fresh.contact_id
    RETURNING id
)
SELECT (SELECT count(*) FROM message) AS added,
    (SELECT count(*) FROM echoed) AS echoed,
    (SELECT count(*) FROM opened) AS opened
"""
)

INBOX_ATTEMPTS = 3


async def record_in_inbox(session: AsyncSession, dms: Sequence[CampaignDM]) -> None:
    """Record campaign DMs X accepted as outbound messages of their contacts' conversations,
    in one statement (see `_INBOX`), in the caller's transaction."""
    if not dms:
        return
    params = {
        "merchants": [d.merchant_id for d in dms],
        "accounts": [d.account_id for d in dms],
        "contacts": [d.contact_id for d in dms],
        "campaigns": [d.campaign_id for d in dms],
        "events": [d.dm_event_id for d in dms],
        "contents": [d.text for d in dms],
        "ats": [d.sent_at for d in dms],
        "attachments": [json.dumps(list(d.attachments)) if d.attachments else "[]" for d in dms],
    }
    for attempt in range(INBOX_ATTEMPTS):
        try:
            async with session.begin_nested():  # a failed try leaves the transaction usable
                row = (await session.execute(_INBOX, params)).one()
        except IntegrityError:
            if attempt == INBOX_ATTEMPTS - 1:
                raise
            logger.debug("campaign.inbox_retry", extra={"dms": len(dms)})
            continue
        logger.debug(
            "campaign.inbox",
            extra={"added": row.added, "echoed": row.echoed, "opened": row.opened},
        )
        return


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
