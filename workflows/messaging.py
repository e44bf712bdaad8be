"""Durable delivery of one outbound DM: retried while X is down or rate-limiting, settled as
failed when X refuses it. Id: `message-send:{messageId}`.

A message with an image, video or GIF attachment first has it uploaded to X (one activity,
whose media id the send then attaches); should X no longer take the id when the send finally
happens (24 h later), it is uploaded once more."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel
from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, TimeoutError

from workflows.retry import DB_RETRY, x_retry

with workflow.unsafe.imports_passed_through():
    from activities.messaging import (
        MessagingActivities,
        PrepareMediaInput,
        RecordFailureInput,
        SendMessageActivityInput,
        SentMessage,
    )
    from services.messaging.media import MediaRef

SEND_RETRY = x_retry("MessageGone", "MessageFailed", "MediaUnavailable", "MediaExpired")
# One attempt: a look at X's DM events (after an unknown outcome) plus the send itself.
ATTEMPT_TIMEOUT = timedelta(seconds=60)
# A DM X has not taken within a day is reported failed rather than sent late.
DELIVERY_DEADLINE = timedelta(hours=24)
# One attempt at fetching the media from its URL and uploading it to X (up to 512 MB of video).
MEDIA_ATTEMPT_TIMEOUT = timedelta(minutes=10)
# Uploads of one message's media at most (X refusing an expired id triggers the next one).
MEDIA_ROUNDS = 2


class SendOutcome(StrEnum):
    sent = "sent"
    failed = "failed"


class SendMessageInput(BaseModel):
    merchant_id: str
    message_id: uuid.UUID
    has_media: bool = False  # an image/video/GIF attachment to upload and attach


class SendMessageResult(BaseModel):
    outcome: SendOutcome
    twitter_message_id: str | None = None
    sent_at: datetime | None = None
    reason: str | None = None  # X's own words when X refused
    error_type: str | None = None  # e.g. XForbidden, XTokenRevoked, AccountNotUsable
    x_status: int | None = None


@workflow.defn(name="SendMessage")
class SendMessageWorkflow:
    @workflow.run
    async def run(self, request: SendMessageInput) -> SendMessageResult:
        try:
            if request.has_media:
                sent = await self._send_with_media(request)
            else:
                sent = await workflow.execute_activity_method(
                    MessagingActivities.send_message,
                    SendMessageActivityInput(
                        merchant_id=request.merchant_id, message_id=request.message_id
                    ),
                    start_to_close_timeout=ATTEMPT_TIMEOUT,
                    schedule_to_close_timeout=DELIVERY_DEADLINE,
                    retry_policy=SEND_RETRY,
                )
        except ActivityError as err:
            result = _failure(err)
            await workflow.execute_activity_method(
                MessagingActivities.record_failure,
                RecordFailureInput(
                    merchant_id=request.merchant_id,
                    message_id=request.message_id,
                    reason=result.reason or "not delivered",
                ),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=DB_RETRY,
            )
            return result
        return SendMessageResult(
            outcome=SendOutcome.sent,
            twitter_message_id=sent.twitter_message_id,
            sent_at=sent.sent_at,
        )

    async def _send_with_media(self, request: SendMessageInput) -> SentMessage:
        deadline = workflow.info().start_time + DELIVERY_DEADLINE
        for attempt in range(1, MEDIA_ROUNDS + 1):
            media: MediaRef | None = await workflow.execute_activity_method(
                MessagingActivities.prepare_media,
                PrepareMediaInput(merchant_id=request.merchant_id, message_id=request.message_id),
                start_to_close_timeout=MEDIA_ATTEMPT_TIMEOUT,
                schedule_to_close_timeout=_left(deadline),
                retry_policy=SEND_RETRY,
            )
            try:
                return await workflow.execute_activity_method(
                    MessagingActivities.send_message,
                    SendMessageActivityInput(
                        merchant_id=request.merchant_id,
                        message_id=request.message_id,
                        media=media,
                    ),
                    start_to_close_timeout=ATTEMPT_TIMEOUT,
                    schedule_to_close_timeout=_left(deadline),
                    retry_policy=SEND_RETRY,
                )
            except ActivityError as err:
                expired = isinstance(err.cause, ApplicationError) and (
                    err.cause.type == "MediaExpired"
                )
                if not expired or attempt == MEDIA_ROUNDS:
                    raise
        raise AssertionError("unreachable")


def _left(deadline: datetime) -> timedelta:
    return max(deadline - workflow.now(), timedelta(seconds=1))


def _failure(err: ActivityError) -> SendMessageResult:
    cause = err.cause
    if isinstance(cause, ApplicationError):
        details: dict[str, Any] = {}
        if cause.details and isinstance(cause.details[0], dict):
            details = cause.details[0]
        reason = details.get("reason") or cause.message
        x_status = details.get("x_status")
        return SendMessageResult(
            outcome=SendOutcome.failed,
            reason=str(reason),
            error_type=cause.type,
            x_status=x_status if isinstance(x_status, int) else None,
        )
    if isinstance(cause, TimeoutError):
        return SendMessageResult(
            outcome=SendOutcome.failed,
            reason="X did not accept the message within 24 hours",
            error_type="DeliveryDeadline",
        )
    return SendMessageResult(outcome=SendOutcome.failed, reason=str(cause or err))


WORKFLOWS: list[type] = [SendMessageWorkflow]
