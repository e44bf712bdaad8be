"""Queueing DMs: the first half of the one send path. Every DM the service sends (an agent's
reply, a campaign or test send, an opt-out confirmation, later flow steps and bot answers) is
queued here as an outbound message of the contact's conversation, after the checks of the
moment and with a slot of its account's quota; `services.messaging.delivery` then hands it
to X, checking again.

`queue_messages` only flushes: the caller commits, then delivers (the delivery reads the
committed rows).
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import text
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from mktx import metrics
from mktx.settings import Settings
from models.account import AccountStatus, XAccount
from models.contact import Contact
from models.conversation import MAX_DM_TEXT, Conversation, ConversationStatus, Message
from models.db import utcnow
from models.quota import SendKind
from services.core.errors import InvalidState, RateLimited, ValidationFailed
from services.messaging.quota import (
    APP_DM_QUOTA,
    QuotaExhausted,
    limits_from_settings,
    reserve_batch_quota,
)

logger = logging.getLogger(__name__)

# Opted-out contacts receive no marketing; they may still get answers to what they write (an
# agent's reply, a bot answer) and the confirmation of their choice.
MARKETING_KINDS = frozenset({SendKind.campaign, SendKind.flow})

# Attachments of these types are uploaded to X and attached to the DM; `link` and `file` go as
# links in the text.
MEDIA_ATTACHMENT_TYPES = frozenset({"image", "video", "gif"})


class Refusal(StrEnum):
    """Why a DM may not go out at this moment."""

    opted_out = "opted_out"  # marketing to a contact who opted out
    deleted = "deleted"  # the contact was erased
    account_unusable = "account_unusable"  # the account is not active or is disconnected
    quota = "quota"  # the account's 24 h quota is spent


def refusal(
    kind: SendKind | str | None, contact: Contact | None, account: XAccount | None
) -> tuple[Refusal, str] | None:
    """The one consent and account check, made when a DM is queued and again in the
    transaction that hands it to X: None when it may go out."""
    if contact is None:
        return Refusal.deleted, "the contact no longer exists"
    if kind in MARKETING_KINDS and contact.opted_out:
        return Refusal.opted_out, "the contact opted out of marketing messages"
    if account is None or account.status != AccountStatus.active:
        status = account.status if account is not None else "gone"
        reason = account.status_reason if account is not None else None
        return Refusal.account_unusable, reason or f"the account is not active ({status})"
    if account.disconnected_at is not None:
        return Refusal.account_unusable, "the account is disconnected"
    return None


def attached_media(attachments: Sequence[dict[str, Any]]) -> tuple[int, dict[str, Any]] | None:
    """The attachment X attaches to the DM, with its index: the first image, video or GIF. X
    attaches one media per DM, so any further ones go as links in the text."""
    for index, attachment in enumerate(attachments):
        if attachment.get("type") in MEDIA_ATTACHMENT_TYPES and attachment.get("url"):
            return index, attachment
    return None


def card_attachments(media_url: str | None) -> list[dict[str, Any]]:
    """A card's media as the attachment of its DMs (its kind is known once fetched; the
    delivery records what X attached)."""
    return [{"type": "image", "url": media_url}] if media_url else []


def dm_text(content: str, attachments: Sequence[dict[str, Any]]) -> str:
    """The text X receives: the message, then each attachment's URL on its own line, except
    the one X attaches as media (`attached_media`)."""
    found = attached_media(attachments)
    skip = found[0] if found else -1
    urls = [str(a["url"]) for i, a in enumerate(attachments) if a.get("url") and i != skip]
    return "\n".join(part for part in (content, *urls) if part)


@dataclass(slots=True)
class OutgoingDM:
    """One DM a sender asks for."""

    kind: SendKind
    contact_id: uuid.UUID
    content: str
    attachments: list[dict[str, Any]] = field(default_factory=list)
    message_type: str = "text"
    is_from_bot: bool = False
    sent_by_user_id: str | None = None
    campaign_id: uuid.UUID | None = None
    message_id: uuid.UUID = field(default_factory=uuid.uuid4)


@dataclass(frozen=True, slots=True)
class Refused:
    dm: OutgoingDM
    reason: Refusal
    detail: str
    account_id: uuid.UUID | None = None
    quota: QuotaExhausted | None = None


@dataclass(slots=True)
class Queued:
    """What `queue_messages` did: the DMs now queued (their message ids are `dm.message_id`)
    and the ones refused, with the reason."""

    queued: list[OutgoingDM] = field(default_factory=list)
    refused: list[Refused] = field(default_factory=list)


# The messages, each in its contact's open conversation (opened when there is none, counted in
# the contact's conversation_count), counted as recent activity; one statement for any number.
# Conversations are upserted in contact order, so that two batches touching the same contacts
# take their locks in the same order.
_QUEUE = text(
    """
WITH src AS (
    SELECT * FROM unnest(
        CAST(:ids AS uuid[]), CAST(:accounts AS uuid[]), CAST(:contacts AS uuid[]),
        CAST(:kinds AS text[]), CAST(:types AS text[]), CAST(:contents AS text[]),
        CAST(:attachments AS text[]), CAST(:bots AS boolean[]), CAST(:users AS text[]),
        CAST(:campaigns AS uuid[])
    ) AS v(id, account_id, contact_id, kind, type, content, attachments, is_from_bot,
        sent_by_user_id, campaign_id)
),
per_contact AS (
    SELECT gen_random_uuid() AS proposed, account_id, contact_id, count(*) AS n
    FROM src GROUP BY account_id, contact_id
),
conversation AS (
    INSERT INTO conversations AS o (
        id, merchant_id, created_at, updated_at, account_id, contact_id, status, channel,
        started_at, last_message_at, message_count)
    SELECT proposed, :merchant, :now, :now, account_id, contact_id, 'open', 'direct_message',
        :now, :now, n
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
    SET conversation_count = c.conversation_count + 1, updated_at = :now
    FROM conversation
    JOIN per_contact p ON p.contact_id = conversation.contact_id
    WHERE c.id = conversation.contact_id AND conversation.id = p.proposed
    RETURNING c.id
)
INSERT INTO messages (
    id, merchant_id, created_at, updated_at, conversation_id, account_id, contact_id,
    direction, type, content, attachments, is_from_bot, sent_at, status, sent_by_user_id,
    campaign_id, kind)
SELECT src.id, :merchant, :now, :now, conversation.id, src.account_id, src.contact_id,
    'outbound', src.type, src.content, CAST(src.attachments AS jsonb), src.is_from_bot, :now,
    'queued', src.sent_by_user_id, src.campaign_id, src.kind
FROM src JOIN conversation ON conversation.contact_id = src.contact_id
"""
)


async def queue_messages(
    session: AsyncSession,
    settings: Settings,
    merchant_id: str,
    dms: Sequence[OutgoingDM],
    *,
    now: datetime | None = None,
    loaded: Mapping[uuid.UUID, tuple[Contact, XAccount]] | None = None,
) -> Queued:
    """Check each DM at this moment (`refusal`), reserve its quota slot (one reservation per
    account for the lot) and add it as a `queued` outbound message; flushed, not committed.

    `now` is the caller's clock for the quota window (a campaign passes its workflow's).
    `loaded`: the contacts (with their accounts) the caller has just read in this
    transaction, by id, so as not to read them twice."""
    result = Queued()
    if not dms:
        return result
    moment = now or utcnow()
    if loaded is not None:
        found = dict(loaded)
    else:
        rows = await session.execute(
            select(Contact, XAccount)
            .join(XAccount, col(XAccount.id) == col(Contact.account_id))
            .where(
                col(Contact.id).in_({dm.contact_id for dm in dms}),
                col(Contact.merchant_id) == merchant_id,
            )
        )
        found = {contact.id: (contact, account) for contact, account in rows.tuples()}
    by_account: dict[uuid.UUID, list[OutgoingDM]] = {}
    accounts: dict[uuid.UUID, uuid.UUID] = {}
    for dm in dms:
        contact, account = found.get(dm.contact_id, (None, None))
        refused = refusal(dm.kind, contact, account)
        if refused is not None:
            account_id = account.id if account is not None else None
            result.refused.append(Refused(dm, *refused, account_id=account_id))
            continue
        assert account is not None
        by_account.setdefault(account.id, []).append(dm)
        accounts[dm.message_id] = account.id
    limits = limits_from_settings(settings)
    for account_id, group in by_account.items():
        # One kind per call and account in practice; reserved per kind all the same.
        for kind in dict.fromkeys(dm.kind for dm in group):
            wanted = [dm for dm in group if dm.kind == kind]
            grant = await reserve_batch_quota(
                session,
                merchant_id=merchant_id,
                account_id=account_id,
                kind=kind,
                message_ids=[dm.message_id for dm in wanted],
                limits=limits,
                now=moment,
            )
            result.queued += wanted[: grant.granted]
            if grant.granted < len(wanted):
                metrics.SEND_WAITS.inc(reason="quota")
            for dm in wanted[grant.granted :]:
                result.refused.append(
                    Refused(dm, Refusal.quota, str(grant.exhausted), account_id, grant.exhausted)
                )
    if result.queued:
        await session.execute(_QUEUE, _params(merchant_id, moment, result.queued, accounts))
    for refused_dm in result.refused:
        logger.info(
            "message.refused",
            extra={
                "contact_id": str(refused_dm.dm.contact_id),
                "refusal": refused_dm.reason.value,
            },
        )
    return result


def _params(
    merchant_id: str,
    now: datetime,
    dms: Sequence[OutgoingDM],
    accounts: dict[uuid.UUID, uuid.UUID],
) -> dict[str, Any]:
    return {
        "merchant": merchant_id,
        "now": now,
        "ids": [dm.message_id for dm in dms],
        "accounts": [accounts[dm.message_id] for dm in dms],
        "contacts": [dm.contact_id for dm in dms],
        "kinds": [dm.kind.value for dm in dms],
        "types": [dm.message_type for dm in dms],
        "contents": [dm.content for dm in dms],
        "attachments": [json.dumps(dm.attachments) for dm in dms],
        "bots": [dm.is_from_bot for dm in dms],
        "users": [dm.sent_by_user_id for dm in dms],
        "campaigns": [dm.campaign_id for dm in dms],
    }


def quota_error(exc: QuotaExhausted) -> RateLimited:
    frees_at = exc.frees_at.isoformat()
    retry_after = max(1, math.ceil((exc.frees_at - utcnow()).total_seconds()))
    whose = (
        "the X app's direct message quota (every merchant's accounts together)"
        if exc.kind == APP_DM_QUOTA
        else f"this X account's {exc.kind} quota"
    )
    return RateLimited(
        f"{whose} of {exc.limit} per 24 hours is spent; the next slot frees up at {frees_at}",
        retry_after=retry_after,
        details={
            "freesAt": frees_at,
            "limit": exc.limit,
            "quota": exc.kind,
            "accountId": str(exc.account_id),
        },
    )


class ContactOptedOut(InvalidState):
    """Marketing (campaign, flow) to a contact who opted out is refused."""


async def queue_outbound(
    session: AsyncSession,
    settings: Settings,
    conversation: Conversation,
    dm: OutgoingDM,
) -> Message:
    """Queue one DM in `conversation` (the contact's open one), answering the caller's
    mistakes and the refusals as API errors: ValidationFailed 400 on `content` (empty, or
    over X's 10,000 characters), InvalidState (closed conversation for an inbox reply,
    inactive account, erased contact), ContactOptedOut, RateLimited 429 (quota spent)."""
    if dm.kind is SendKind.inbox and conversation.status == ConversationStatus.closed:
        raise InvalidState(
            "conversation is closed; a new one opens when the contact writes again",
            details={"conversationId": str(conversation.id), "status": "closed"},
        )
    text_sent = dm_text(dm.content, dm.attachments)
    if not text_sent.strip() and attached_media(dm.attachments) is None:
        raise ValidationFailed("content", "must not be empty", status=400)
    if len(text_sent) > MAX_DM_TEXT:
        raise ValidationFailed(
            "content",
            f"must be at most {MAX_DM_TEXT} characters (attachment links included), "
            f"got {len(text_sent)}",
            status=400,
        )
    done = await queue_messages(session, settings, conversation.merchant_id, [dm])
    for refused in done.refused:
        if refused.quota is not None:
            raise quota_error(refused.quota)
        if refused.reason is Refusal.opted_out:
            raise ContactOptedOut(
                refused.detail, details={"contactId": str(dm.contact_id), "reason": "opted_out"}
            )
        raise InvalidState(
            "account is not active"
            if refused.reason is Refusal.account_unusable
            else refused.detail,
            details={"accountId": str(conversation.account_id), "reason": refused.reason.value},
        )
    message = await session.get(Message, dm.message_id, populate_existing=True)
    assert message is not None
    await session.refresh(conversation, ["message_count", "last_message_at"])
    logger.info(
        "message.queued",
        extra={
            "message_id": str(message.id),
            "account_id": str(message.account_id),
            "kind": dm.kind.value,
        },
    )
    return message
