"""Side effects of sending a DM: the call to X and what it leaves in the database."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.deps import WorkerDeps
from activities.x_failures import application_error_from_x
from integrations.x import (
    DMEvent,
    XClient,
    XCredentials,
    XError,
    XRequestRejected,
    XTokenRevoked,
)
from mktx.secrets import SecretBox
from mktx.settings import Settings
from models.account import AccountStatus, XAccount
from models.contact import Contact
from models.conversation import Message, MessageStatus
from models.db import SessionMaker, utcnow
from services.accounts.accounts import AccountNotUsable, load_credentials
from services.messaging.media import (
    MediaRef,
    MediaUnavailable,
    allow_private_hosts,
    fetch_media,
    refuses_media,
    upload_media,
)
from services.messaging.outbound import (
    CLOCK_SKEW,
    attached_media,
    dm_text,
    find_delivered,
    ids_held_by_earlier_messages,
    record_failed,
    record_sent,
)

logger = logging.getLogger(__name__)

# X's DM events are read newest first; this many pages reach far enough back for a message
# whose earlier attempt ended minutes ago.
RECONCILE_PAGES = 3


class SendMessageActivityInput(BaseModel):
    merchant_id: str
    message_id: uuid.UUID
    # The message's media attachment, uploaded (`message.prepare_media`): attached to the DM.
    media: MediaRef | None = None


class PrepareMediaInput(BaseModel):
    merchant_id: str
    message_id: uuid.UUID


class SentMessage(BaseModel):
    twitter_message_id: str
    sent_at: datetime
    reconciled: bool = False  # found at X after an attempt whose outcome was unknown


class RecordFailureInput(BaseModel):
    merchant_id: str
    message_id: uuid.UUID
    reason: str


@dataclass(frozen=True)
class _Outgoing:
    message: Message
    account: XAccount
    recipient_id: str
    credentials: XCredentials
    text: str
    media: MediaRef | None = None


def _final(message: str, kind: str, **details: Any) -> ApplicationError:
    return ApplicationError(message, details, type=kind, non_retryable=True)


class MessagingActivities:
    def __init__(
        self, sessions: SessionMaker, x: XClient, secrets: SecretBox, settings: Settings
    ) -> None:
        self._sessions = sessions
        self._x = x
        self._secrets = secrets
        self._settings = settings

    @activity.defn(name="message.prepare_media")
    async def prepare_media(self, request: PrepareMediaInput) -> MediaRef | None:
        """Fetch the message's media attachment (the first image, video or GIF) from its URL
        and upload it to X for the account; the send attaches the id. None: nothing to do
        (no media, or the message is already sent). A URL that cannot be had fails the
        message (MediaUnavailable, not retried): it is never sent without its media."""
        outgoing = await self._load(
            SendMessageActivityInput(merchant_id=request.merchant_id, message_id=request.message_id)
        )
        if isinstance(outgoing, SentMessage):
            return None
        found = attached_media(outgoing.message.attachments)
        if found is None:
            return None
        index, attachment = found
        try:
            fetched = await fetch_media(
                str(attachment["url"]), allow_private=allow_private_hosts(self._settings)
            )
        except MediaUnavailable as exc:
            raise _final(
                f"attachment {index + 1} cannot be sent: {exc}",
                "MediaUnavailable",
                reason=f"attachments[{index}].url: {exc}",
                field=f"attachments[{index}].url",
            ) from None
        try:
            media = await upload_media(self._x, outgoing.credentials, fetched)
        except XTokenRevoked as exc:
            await self._mark_token_refused(outgoing.account.id)
            raise _with_reason(exc) from None
        except XError as exc:
            raise _with_reason(exc) from None
        logger.info(
            "message.media_uploaded",
            extra={"message_id": str(request.message_id), "media_id": media.media_id},
        )
        return media

    @activity.defn(name="message.send")
    async def send_message(self, request: SendMessageActivityInput) -> SentMessage:
        """Send a queued message to X once, and record X's event id on it.

        A retry first looks for the DM at X (the previous attempt may have ended after X
        accepted it), so the contact never receives it twice.
        """
        outgoing = await self._load(request)
        if isinstance(outgoing, SentMessage):
            return outgoing
        if activity.info().attempt > 1:
            event = await self._find_at_x(outgoing)
            if event is not None:
                sent_at = event.created_at or utcnow()
                await self._record_sent(outgoing.message.id, event.id, sent_at)
                logger.info(
                    "message.reconciled",
                    extra={"message_id": str(outgoing.message.id), "dm_event_id": event.id},
                )
                return SentMessage(twitter_message_id=event.id, sent_at=sent_at, reconciled=True)
        if outgoing.media is not None and not outgoing.media.usable_for(
            outgoing.media.url, utcnow()
        ):
            # Checked after the look at X: a DM an earlier attempt sent is never sent again.
            raise _final("the uploaded media is about to expire", "MediaExpired")
        try:
            sent = await asyncio.to_thread(
                self._x.send_dm,
                outgoing.credentials,
                outgoing.recipient_id,
                outgoing.text,
                outgoing.media.media_id if outgoing.media else None,
            )
        except XTokenRevoked as exc:
            await self._mark_token_refused(outgoing.account.id)
            raise _with_reason(exc) from None
        except XRequestRejected as exc:
            if outgoing.media is not None and refuses_media(exc):
                # X no longer takes the media id (expired): the workflow uploads it again.
                raise _final(
                    f"X refused the media: {exc.reason}", "MediaExpired", reason=exc.reason
                ) from None
            raise _with_reason(exc) from None
        except XError as exc:
            raise _with_reason(exc) from None
        sent_at = utcnow()
        await self._record_sent(outgoing.message.id, sent.dm_event_id, sent_at)
        logger.info(
            "message.sent",
            extra={"message_id": str(outgoing.message.id), "dm_event_id": sent.dm_event_id},
        )
        return SentMessage(twitter_message_id=sent.dm_event_id, sent_at=sent_at)

    @activity.defn(name="message.record_failure")
    async def record_failure(self, request: RecordFailureInput) -> bool:
        """The message will not be delivered: failed, with the reason, and its slot given back."""
        async with self._sessions() as session, session.begin():
            changed = await record_failed(session, request.message_id, request.reason)
        if changed:
            logger.info(
                "message.failed",
                extra={"message_id": str(request.message_id), "reason": request.reason},
            )
        return changed

    async def _load(self, request: SendMessageActivityInput) -> _Outgoing | SentMessage:
        async with self._sessions() as session:
            message = await session.get(Message, request.message_id)
            if message is None or message.merchant_id != request.merchant_id:
                raise _final("the message no longer exists", "MessageGone")
            if message.twitter_message_id is not None:
                return SentMessage(
                    twitter_message_id=message.twitter_message_id, sent_at=message.sent_at
                )
            if message.status == MessageStatus.failed:
                raise _final(message.error or "the message failed", "MessageFailed")
            contact = await session.get(Contact, message.contact_id)
            if contact is None:
                raise _final("the contact no longer exists", "MessageGone")
            try:
                account, credentials = await load_credentials(
                    session, self._secrets, message.account_id, allow_disconnected=False
                )
            except AccountNotUsable as exc:
                raise _final(str(exc), "AccountNotUsable") from None
            if account.status != AccountStatus.active:
                raise _final(
                    f"account is not active ({account.status})",
                    "AccountNotUsable",
                    reason=account.status_reason,
                )
            return _Outgoing(
                message=message,
                account=account,
                recipient_id=contact.twitter_user_id,
                credentials=credentials,
                # Without an upload (a delivery started before media were attached), every
                # attachment goes as a link, as it did then.
                text=dm_text(
                    message.content,
                    message.attachments,
                    media_attached=request.media is not None,
                ),
                media=request.media,
            )

    async def _find_at_x(self, outgoing: _Outgoing) -> DMEvent | None:
        events: list[DMEvent] = []
        token: str | None = None
        try:
            for _ in range(RECONCILE_PAGES):
                page = await asyncio.to_thread(
                    self._x.list_dm_events,
                    outgoing.credentials,
                    participant_id=outgoing.recipient_id,
                    pagination_token=token,
                )
                events += page.events
                token = page.next_token
                oldest = min((e.created_at for e in page.events if e.created_at), default=None)
                reached = oldest is not None and oldest < outgoing.message.created_at - CLOCK_SKEW
                if token is None or reached:
                    break
        except XTokenRevoked as exc:
            await self._mark_token_refused(outgoing.account.id)
            raise _with_reason(exc) from None
        except XError as exc:
            raise _with_reason(exc) from None
        async with self._sessions() as session:
            taken = await ids_held_by_earlier_messages(
                session, outgoing.message, (e.id for e in events)
            )
        return find_delivered(
            events,
            sender_id=outgoing.account.twitter_user_id,
            text=outgoing.text,
            queued_at=outgoing.message.created_at,
            excluded_ids=taken,
            media=outgoing.media is not None,
        )

    async def _record_sent(
        self, message_id: uuid.UUID, twitter_message_id: str, sent_at: datetime
    ) -> None:
        # An echo stored between our check and our write trips the unique index: merge again.
        for attempt in range(3):
            try:
                async with self._sessions() as session, session.begin():
                    message = await session.get(Message, message_id, with_for_update=True)
                    if message is None:
                        return  # erased meanwhile (the contact was deleted)
                    await record_sent(session, message, twitter_message_id, sent_at)
                return
            except IntegrityError:
                if attempt == 2:
                    raise

    async def _mark_token_refused(self, account_id: uuid.UUID) -> None:
        async with self._sessions() as session, session.begin():
            await session.execute(
                update(XAccount)
                .where(col(XAccount.id) == account_id)
                .values(
                    status=AccountStatus.error,
                    status_reason=(
                        "X no longer accepts this account's token (revoked or expired); "
                        "connect the account again"
                    ),
                    updated_at=utcnow(),
                )
            )
        logger.warning("account.token_refused", extra={"account_id": str(account_id)})


def _with_reason(exc: XError) -> ApplicationError:
    """The Temporal error for an X failure, carrying X's own words for the API to show."""
    error = application_error_from_x(exc)
    return ApplicationError(
        error.message,
        {"reason": exc.reason, "x_status": exc.status},
        type=error.type,
        non_retryable=error.non_retryable,
        next_retry_delay=error.next_retry_delay,
    )


def build(deps: WorkerDeps) -> list[Callable[..., Any]]:
    """The messaging activities the worker registers."""
    messaging = MessagingActivities(deps.sessions, deps.x, deps.secrets, deps.settings)
    return [messaging.prepare_media, messaging.send_message, messaging.record_failure]
