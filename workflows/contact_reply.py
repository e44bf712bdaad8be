"""A small workflow that waits for a contact's reply: the simplest listener of contact events,
and the model for the automation flows and AI escalations that wait on contacts later.

The payloads and activity names are in workflows/contracts/listeners.py; this module is
deterministic code and imports nothing that does I/O.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

from workflows.contracts.contact_events import CONTACT_EVENT_SIGNAL, ContactEvent, ContactEventKind
from workflows.contracts.listeners import (
    AWAIT_CONTACT_REPLY_WORKFLOW,
    CONTACT_NOT_FOUND,
    REGISTER_LISTENER,
    UNREGISTER_LISTENER,
    AwaitContactReplyInput,
    ContactReply,
    RegisterListenerInput,
    UnregisterListenerInput,
)

DB_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=30),
    non_retryable_error_types=[CONTACT_NOT_FOUND],
)
CALL_TIMEOUT = timedelta(seconds=30)
# A listener row outlives the wait a little, so a slow unregister never drops a late signal.
LISTENER_GRACE = timedelta(minutes=5)


@workflow.defn(name=AWAIT_CONTACT_REPLY_WORKFLOW)
class AwaitContactReplyWorkflow:
    """Waits (up to `timeout_seconds`) for the contact's next DM and returns it.
    Id: `ids.contact_reply_id(contactId, key)`; search attributes MerchantId and ContactId."""

    @workflow.init
    def __init__(self, request: AwaitContactReplyInput) -> None:
        self._contact_id = request.contact_id
        self._reply: ContactEvent | None = None
        self._listening = False

    @workflow.run
    async def run(self, request: AwaitContactReplyInput) -> ContactReply:
        workflow_id = workflow.info().workflow_id
        timeout = timedelta(seconds=request.timeout_seconds)
        await workflow.execute_activity(
            REGISTER_LISTENER,
            RegisterListenerInput(
                merchant_id=request.merchant_id,
                contact_id=request.contact_id,
                workflow_id=workflow_id,
                expires_at=workflow.now() + timeout + LISTENER_GRACE,
            ),
            start_to_close_timeout=CALL_TIMEOUT,
            retry_policy=DB_RETRY,
        )
        self._listening = True
        with contextlib.suppress(TimeoutError):  # no reply in time: answer replied=False
            await workflow.wait_condition(lambda: self._reply is not None, timeout=timeout)
        self._listening = False
        await workflow.execute_activity(
            UNREGISTER_LISTENER,
            UnregisterListenerInput(workflow_id=workflow_id, contact_id=request.contact_id),
            result_type=int,
            start_to_close_timeout=CALL_TIMEOUT,
            retry_policy=DB_RETRY,
        )
        reply = self._reply
        if reply is None:
            return ContactReply(replied=False)
        return ContactReply(
            replied=True,
            text=reply.text,
            message_id=reply.message_id,
            occurred_at=reply.occurred_at,
        )

    @workflow.signal(name=CONTACT_EVENT_SIGNAL)
    def contact_event(self, event: ContactEvent) -> None:
        # Only the first reply counts, so an event delivered twice changes nothing.
        if (
            self._reply is None
            and event.kind is ContactEventKind.message
            and event.contact_id == self._contact_id
        ):
            self._reply = event

    @workflow.query
    def listening(self) -> bool:
        """True once registered as the contact's listener, until the reply (or timeout)."""
        return self._listening


WORKFLOWS: list[type] = [AwaitContactReplyWorkflow]
