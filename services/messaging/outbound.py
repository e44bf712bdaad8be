"""The one send path. Every DM the service sends (an agent's reply, a campaign or flow message, a
bot answer, an opt-out confirmation) is queued here as an outbound message that has reserved a
slot of its account's quota, then delivered durably by `SendMessageWorkflow`.

`queue_outbound` only flushes: the caller commits, then calls `start_delivery` (the workflow reads
the committed row). Neither needs an HTTP request around it.
"""

from __future__ import annotations

import logging
import math
import re
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import update
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

from integrations.x import DMEvent
from mktx.settings import Settings
from models.account import AccountStatus, XAccount
from models.contact import Contact
from models.conversation import (
    MAX_DM_TEXT,
    Conversation,
    ConversationStatus,
    Message,
    MessageDirection,
    MessageStatus,
)
from models.db import utcnow
from models.quota import SendKind
from services.core.errors import InvalidState, RateLimited, ValidationFailed
from services.messaging.quota import (
    QuotaExhausted,
    limits_from_settings,
    release_message_quota,
    reserve_send_quota,
)
from workflows import ids

if TYPE_CHECKING:
    from workflows.messaging import SendMessageResult

logger = logging.getLogger(__name__)

# Opted-out contacts receive no marketing; they may still get answers to what they write.
MARKETING_KINDS = frozenset({SendKind.campaign, SendKind.flow})

# How far X's clock may be behind ours when matching a DM event to a queued message.
CLOCK_SKEW = timedelta(seconds=60)


class ContactOptedOut(InvalidState):
    """Marketing (campaign, flow) to a contact who opted out is refused."""


# Attachments of these types are uploaded to X and attached to the DM; `link` and `file` go as
# links in the text.
MEDIA_ATTACHMENT_TYPES = frozenset({"image", "video", "gif"})


def attached_media(attachments: Sequence[dict[str, Any]]) -> tuple[int, dict[str, Any]] | None:
    """The attachment X attaches to the DM, with its index: the first image, video or GIF. X
    attaches one media per DM, so any further ones go as links in the text."""
    for index, attachment in enumerate(attachments):
        if attachment.get("type") in MEDIA_ATTACHMENT_TYPES and attachment.get("url"):
            return index, attachment
    return None


def dm_text(
    content: str, attachments: Sequence[dict[str, Any]], *, media_attached: bool = True
) -> str:
    """The text X receives: the message, then each attachment's URL on its own line, except
    the one X attaches as media (`attached_media`), unless `media_attached` is False (every
    URL then goes as a link)."""
    found = attached_media(attachments) if media_attached else None
    skip = found[0] if found else -1
    urls = [str(a["url"]) for i, a in enumerate(attachments) if a.get("url") and i != skip]
    return "\n".join(part for part in (content, *urls) if part)


def quota_error(exc: QuotaExhausted) -> RateLimited:
    frees_at = exc.frees_at.isoformat()
    retry_after = max(1, math.ceil((exc.frees_at - utcnow()).total_seconds()))
    return RateLimited(
        f"this X account's {exc.kind} quota of {exc.limit} per 24 hours is spent; "
        f"the next slot frees up at {frees_at}",
        retry_after=retry_after,
        details={
            "freesAt": frees_at,
            "limit": exc.limit,
            "quota": exc.kind,
            "accountId": str(exc.account_id),
        },
    )


async def queue_outbound(
    session: AsyncSession,
    *,
    settings: Settings,
    account: XAccount,
    conversation: Conversation,
    content: str,
    kind: SendKind,
    sent_by_user_id: str | None = None,
    is_from_bot: bool = False,
    attachments: list[dict[str, Any]] | None = None,
    message_type: str = "text",
) -> Message:
    """Check that the message may go out, reserve a quota slot and add it as `queued`.

    Raises InvalidState (inactive account, closed conversation for an inbox reply),
    ContactOptedOut (marketing to an opted-out contact), ValidationFailed 400 on `content`
    (empty, or over X's 10,000 characters) and RateLimited 429 when the quota is spent.
    """
    if conversation.account_id != account.id or conversation.merchant_id != account.merchant_id:
        raise ValueError("the conversation does not belong to this account")
    if account.status != AccountStatus.active or account.disconnected_at is not None:
        raise InvalidState(
            "account is not active",
            details={"accountId": str(account.id), "status": str(account.status)},
        )
    if kind is SendKind.inbox and conversation.status == ConversationStatus.closed:
        raise InvalidState(
            "conversation is closed; a new one opens when the contact writes again",
            details={"conversationId": str(conversation.id), "status": "closed"},
        )
    attachments = [dict(a) for a in attachments or []]
    text = dm_text(content, attachments)
    if not text.strip() and attached_media(attachments) is None:
        raise ValidationFailed("content", "must not be empty", status=400)
    if len(text) > MAX_DM_TEXT:
        raise ValidationFailed(
            "content",
            f"must be at most {MAX_DM_TEXT} characters (attachment links included), "
            f"got {len(text)}",
            status=400,
        )
    if kind in MARKETING_KINDS:
        contact = await session.get(Contact, conversation.contact_id)
        if contact is not None and contact.opted_out:
            raise ContactOptedOut(
                "the contact opted out of marketing messages",
                details={"contactId": str(contact.id), "reason": "opted_out"},
            )

    now = utcnow()
    message = Message(
        merchant_id=account.merchant_id,
        conversation_id=conversation.id,
        account_id=account.id,
        contact_id=conversation.contact_id,
        direction=MessageDirection.outbound,
        type=message_type,
        content=content,
        attachments=attachments,
        is_from_bot=is_from_bot,
        status=MessageStatus.queued,
        sent_by_user_id=sent_by_user_id,
        sent_at=now,
    )
    try:
        await reserve_send_quota(
            session,
            merchant_id=account.merchant_id,
            account_id=account.id,
            kind=kind,
            limits=limits_from_settings(settings),
            message_id=message.id,
        )
    except QuotaExhausted as exc:
        logger.info(
            "message.quota_spent",
            extra={"account_id": str(account.id), "kind": kind.value, "limit": exc.limit},
        )
        raise quota_error(exc) from None
    session.add(message)
    # One UPDATE, not read-modify-write: inbound messages bump the same counter concurrently.
    count = (
        await session.execute(
            update(Conversation)
            .where(col(Conversation.id) == conversation.id)
            .values(message_count=col(Conversation.message_count) + 1, last_message_at=now)
            .returning(col(Conversation.message_count))
        )
    ).scalar_one()
    set_committed_value(conversation, "message_count", count)
    set_committed_value(conversation, "last_message_at", now)
    await session.flush()
    logger.info(
        "message.queued",
        extra={"message_id": str(message.id), "account_id": str(account.id), "kind": kind.value},
    )
    return message


async def start_delivery(
    temporal: Client,
    settings: Settings,
    message: Message,
    *,
    id_reuse_policy: WorkflowIDReusePolicy = WorkflowIDReusePolicy.ALLOW_DUPLICATE,
) -> WorkflowHandle[Any, SendMessageResult]:
    """Start the durable send of a committed message (a second call returns the same run).
    With REJECT_DUPLICATE, a run that has ended is not followed by another: the call raises
    WorkflowAlreadyStartedError (services/messaging/sweep.py)."""
    # Imported here: the workflow module imports the activities, which use this module.
    from workflows.messaging import SendMessageInput, SendMessageWorkflow

    return await temporal.start_workflow(
        SendMessageWorkflow.run,
        SendMessageInput(
            merchant_id=message.merchant_id,
            message_id=message.id,
            has_media=attached_media(message.attachments) is not None,
        ),
        id=ids.send_message_id(str(message.id)),
        task_queue=settings.task_queue,
        search_attributes=ids.message_attributes(
            message.merchant_id, str(message.account_id), str(message.contact_id)
        ),
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=id_reuse_policy,
    )


async def record_sent(
    session: AsyncSession, message: Message, twitter_message_id: str, sent_at: datetime
) -> None:
    """X accepted the message. If the webhook's echo of this very DM arrived first and was
    stored as a message of its own, the two become one: ours stays, the echo goes.

    A concurrent echo insert can still raise IntegrityError at flush: the caller retries.
    """
    echo = (
        await session.exec(
            select(Message)
            .where(
                col(Message.account_id) == message.account_id,
                col(Message.twitter_message_id) == twitter_message_id,
                col(Message.id) != message.id,
            )
            .with_for_update()
        )
    ).first()
    if echo is not None:
        if echo.read_at is not None and message.read_at is None:
            message.read_at = echo.read_at  # the read receipt reached the echo first
        await session.execute(
            update(Conversation)
            .where(col(Conversation.id) == echo.conversation_id)
            .values(message_count=col(Conversation.message_count) - 1)
        )
        await session.delete(echo)
        await session.flush()
        logger.info(
            "message.echo_merged", extra={"message_id": str(message.id), "echo_id": str(echo.id)}
        )
    message.twitter_message_id = twitter_message_id
    message.status = MessageStatus.read if message.read_at else MessageStatus.sent
    message.sent_at = sent_at
    message.error = None
    await session.flush()


async def record_failed(session: AsyncSession, message_id: uuid.UUID, reason: str) -> bool:
    """X will not take the message: mark it failed and give its quota slot back. False when
    it is gone or already settled."""
    message = await session.get(Message, message_id, with_for_update=True)
    if message is None or message.status != MessageStatus.queued:
        return False
    message.status = MessageStatus.failed
    message.error = reason[:1024]
    await release_message_quota(session, message_id, message.account_id)
    await session.flush()
    return True


def find_delivered(
    events: Sequence[DMEvent],
    *,
    sender_id: str,
    text: str,
    queued_at: datetime,
    excluded_ids: set[str],
    media: bool = False,
) -> DMEvent | None:
    """The DM event that is this message, if X already has it: sent by the account with the
    same text after the message was queued. The earliest such event wins; ids that other,
    earlier messages already hold are not candidates. With `media`, X may show the attached
    media as a link after the text."""
    since = queued_at - CLOCK_SKEW
    wanted = {_comparable(text)}
    if media:
        wanted.add(f"{_comparable(text)} <link>".strip())
    matches = [
        event
        for event in events
        if event.event_type == "MessageCreate"
        and event.sender_id == sender_id
        and event.text is not None
        and _comparable(event.text) in wanted
        and (event.created_at is None or event.created_at >= since)
        and event.id not in excluded_ids
    ]
    return min(matches, key=lambda e: (e.created_at or queued_at, int(e.id)), default=None)


_URL = re.compile(r"https?://\S+")


def _comparable(text: str) -> str:
    """X shortens links (t.co) and may trim whitespace in what it stores."""
    return " ".join(_URL.sub("<link>", text).split())


async def ids_held_by_earlier_messages(
    session: AsyncSession, message: Message, candidate_ids: Iterable[str]
) -> set[str]:
    """Which of these X event ids earlier messages of the account already hold. (An echo of
    this message, stored by the webhook after the send, is younger and stays a candidate.)"""
    candidates = list(set(candidate_ids))
    if not candidates:
        return set()
    rows = await session.exec(
        select(col(Message.twitter_message_id)).where(
            col(Message.account_id) == message.account_id,
            col(Message.twitter_message_id).in_(candidates),
            col(Message.id) != message.id,
            col(Message.created_at) < message.created_at,
        )
    )
    return {row for row in rows.all() if row is not None}
