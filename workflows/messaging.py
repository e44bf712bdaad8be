"""Durable delivery of one outbound DM (an agent's reply, a test send, an opt-out confirmation):
`message-send:{messageId}`. It asks the one send path (`message.deliver`) to deliver the
message, sleeps while X is down or rate-limiting, and settles it as failed when the account
cannot send or X has not taken it within a day. Media uploaded by one attempt is kept for the
next (a 512 MB video is not uploaded again because X answered 503)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

from workflows.contracts.messaging import (
    DELIVER,
    RECORD_FAILURE,
    SEND_MESSAGE_WORKFLOW,
    DeliverInput,
    DeliveryResult,
    MediaRef,
    OutcomeState,
    RecordFailureInput,
    SendMessageInput,
    SendMessageResult,
    SendOutcome,
)
from workflows.retry import DB_RETRY

# A DM X has not taken within a day is reported failed rather than sent late.
DELIVERY_DEADLINE = timedelta(hours=24)
# One attempt: a look at X's DM events, a media upload (up to 512 MB of video), the send.
ATTEMPT_TIMEOUT = timedelta(minutes=10)
MIN_PAUSE = timedelta(seconds=1)
# The activity's own failures (the database away); X's answers come back as outcomes.
DELIVER_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=60),
)


@workflow.defn(name=SEND_MESSAGE_WORKFLOW)
class SendMessageWorkflow:
    @workflow.run
    async def run(self, request: SendMessageInput) -> SendMessageResult:
        deadline = workflow.info().start_time + DELIVERY_DEADLINE
        media: dict[str, MediaRef] = dict(request.media)
        while True:
            left = deadline - workflow.now()
            if left <= timedelta(0):
                return await self._fail(request, "X did not accept the message within 24 hours")
            try:
                result = await workflow.execute_activity(
                    DELIVER,
                    DeliverInput(
                        merchant_id=request.merchant_id,
                        message_ids=[request.message_id],
                        media=media,
                    ),
                    result_type=DeliveryResult,
                    start_to_close_timeout=ATTEMPT_TIMEOUT,
                    heartbeat_timeout=timedelta(seconds=request.heartbeat_seconds),
                    schedule_to_close_timeout=left,
                    retry_policy=DELIVER_RETRY,
                )
            except ActivityError:
                return await self._fail(request, "X did not accept the message within 24 hours")
            for account_id in result.media_dropped:
                media.pop(account_id, None)
            media.update(result.media)
            outcome = result.outcomes[0]
            if outcome.state is OutcomeState.sent:
                return SendMessageResult(
                    outcome=SendOutcome.sent,
                    twitter_message_id=outcome.dm_event_id,
                    sent_at=outcome.sent_at,
                    media=media,
                )
            if outcome.state is OutcomeState.held:
                # The account cannot send, or the media cannot be had: nobody is waiting on
                # this one message, so it fails with the reason (and its slot goes back).
                failed = await self._fail(
                    request, outcome.reason or "not delivered", outcome.error_type
                )
                return failed.model_copy(update={"cause": outcome.cause})
            if outcome.state is not OutcomeState.pending:  # failed or skipped: settled already
                return SendMessageResult(
                    outcome=SendOutcome.failed,
                    reason=outcome.reason,
                    error_type=outcome.error_type,
                    x_status=outcome.x_status,
                )
            until = min(result.wait_until or workflow.now(), deadline)
            await workflow.sleep(max(until - workflow.now(), MIN_PAUSE))

    async def _fail(
        self, request: SendMessageInput, reason: str, error_type: str | None = None
    ) -> SendMessageResult:
        await workflow.execute_activity(
            RECORD_FAILURE,
            RecordFailureInput(
                merchant_id=request.merchant_id, message_id=request.message_id, reason=reason
            ),
            result_type=bool,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=DB_RETRY,
        )
        return SendMessageResult(outcome=SendOutcome.failed, reason=reason, error_type=error_type)


WORKFLOWS: list[type] = [SendMessageWorkflow]
