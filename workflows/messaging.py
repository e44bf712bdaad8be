"""Durable delivery of one outbound DM (an agent's reply, a test send, an opt-out confirmation):
`message-send:{messageId}`. It delivers the message through the one send path
(workflows/delivering.py) and settles it as failed when the account cannot send or X has not
taken it within a day."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

from workflows.contracts.messaging import (
    RECORD_FAILURE,
    SEND_MESSAGE_WORKFLOW,
    OutcomeState,
    RecordFailureInput,
    SendMessageInput,
    SendMessageResult,
    SendOutcome,
)
from workflows.delivering import deliver_settled
from workflows.retry import DB_RETRY

# A DM X has not taken within a day is reported failed rather than sent late.
DELIVERY_DEADLINE = timedelta(hours=24)


@workflow.defn(name=SEND_MESSAGE_WORKFLOW)
class SendMessageWorkflow:
    @workflow.run
    async def run(self, request: SendMessageInput) -> SendMessageResult:
        delivered = await deliver_settled(
            request.merchant_id,
            request.message_id,
            media=request.media,
            heartbeat_seconds=request.heartbeat_seconds,
            deadline=workflow.info().start_time + DELIVERY_DEADLINE,
        )
        outcome, media = delivered.outcome, delivered.media
        if outcome is None:
            return await self._fail(request, "X did not accept the message within 24 hours")
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
        # failed or skipped: settled already
        return SendMessageResult(
            outcome=SendOutcome.failed,
            reason=outcome.reason,
            error_type=outcome.error_type,
            x_status=outcome.x_status,
        )

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
