"""The AI assistant's two durable processes.

`AssistantWorkflow` (`assistant:{conversationId}`) answers a conversation's DMs while the
merchant's auto-reply is on: each inbound DM reaches it as a contact event (the first one as the
signal that started it); DMs that arrive while an answer is being prepared are answered together,
once, by the next call. It ends after a quiet while; the next DM starts it again.

`EscalationWorkflow` (`escalation:{conversationId}`) is a conversation handed to humans: its
first activity assigns it and, in auto-reply, queues the handoff DM (once); then the SLA timer
runs. It ends when a human replies or the conversation closes (the services resolve the row and
signal it), or marks the SLA breached when the timer fires first and waits on.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta

from temporalio import workflow

from workflows.contracts.assistant import (
    ASSISTANT_WORKFLOW,
    AUTO_REPLY,
    ESCALATION_BEGIN,
    ESCALATION_RESOLVED_SIGNAL,
    ESCALATION_WORKFLOW,
    IDLE_SECONDS,
    SLA_DUE,
    AssistantInput,
    AutoReplyInput,
    AutoReplyResult,
    EscalationBegun,
    EscalationInput,
    EscalationInputRef,
    EscalationResolved,
    EscalationResult,
)
from workflows.contracts.contact_events import CONTACT_EVENT_SIGNAL, ContactEvent, ContactEventKind
from workflows.delivering import deliver_settled
from workflows.retry import DB_RETRY

# One answer: a model call (and its repair) and the database around it.
ANSWER_TIMEOUT = timedelta(minutes=2)
CALL_TIMEOUT = timedelta(seconds=30)
# After a breach, how long the escalation still waits for its resolution before it ends (the
# row stays open; resolving it later needs no workflow).
AFTER_BREACH = timedelta(days=30)
SEEN_LIMIT = 200
# Looks for the escalation's row, a second apart.
ROW_WAITS = 30


@workflow.defn(name=ASSISTANT_WORKFLOW)
class AssistantWorkflow:
    @workflow.init
    def __init__(self, request: AssistantInput) -> None:
        self._request = request
        self._pending: list[ContactEvent] = []
        self._seen: list[str] = []

    @workflow.signal(name=CONTACT_EVENT_SIGNAL)
    def contact_event(self, event: ContactEvent) -> None:
        if event.kind is not ContactEventKind.message or event.message_id is None:
            return
        key = str(event.event_id or event.message_id)
        if key in self._seen:  # delivered twice (the trigger and a listener, or a retry)
            return
        self._seen = [*self._seen[-(SEEN_LIMIT - 1) :], key]
        self._pending.append(event)

    @workflow.run
    async def run(self, request: AssistantInput) -> int:
        answered = 0
        while True:
            try:
                await workflow.wait_condition(
                    lambda: bool(self._pending), timeout=timedelta(seconds=IDLE_SECONDS)
                )
            except TimeoutError:
                return answered
            batch, self._pending = self._pending, []
            result = await workflow.execute_activity(
                AUTO_REPLY,
                AutoReplyInput(
                    merchant_id=request.merchant_id,
                    conversation_id=request.conversation_id,
                    message_ids=[e.message_id for e in batch if e.message_id is not None],
                ),
                result_type=AutoReplyResult,
                start_to_close_timeout=ANSWER_TIMEOUT,
                retry_policy=DB_RETRY,
            )
            if result.reply_id is not None:
                if not result.delivered:  # X down or rate-limiting: waited out here
                    await deliver_settled(request.merchant_id, result.reply_id)
                answered += 1
            if result.escalated or result.skipped == "bot_paused":
                return answered  # a person has the conversation now


@workflow.defn(name=ESCALATION_WORKFLOW)
class EscalationWorkflow:
    @workflow.init
    def __init__(self, request: EscalationInput) -> None:
        self._resolution: str | None = None

    @workflow.signal(name=ESCALATION_RESOLVED_SIGNAL)
    def resolved(self, resolved: EscalationResolved) -> None:
        if self._resolution is None:
            self._resolution = resolved.resolution

    @workflow.run
    async def run(self, request: EscalationInput) -> EscalationResult:
        ref = EscalationInputRef(
            merchant_id=request.merchant_id, escalation_id=request.escalation_id
        )
        for _ in range(ROW_WAITS):
            begun = await workflow.execute_activity(
                ESCALATION_BEGIN,
                request,
                result_type=EscalationBegun,
                start_to_close_timeout=CALL_TIMEOUT,
                retry_policy=DB_RETRY,
            )
            if not begun.missing:
                break
            # Started just before its row's commit: wait for it (a row never committed —
            # the request failed — leaves nothing to do).
            await workflow.sleep(timedelta(seconds=1))
        if not begun.open or begun.sla_due_at is None:
            return EscalationResult(breached=False, resolution="resolved")
        if begun.handoff_id is not None:
            await deliver_settled(request.merchant_id, begun.handoff_id)
        try:
            await workflow.wait_condition(
                lambda: self._resolution is not None,
                timeout=max(begun.sla_due_at - workflow.now(), timedelta(seconds=1)),
            )
            return EscalationResult(breached=False, resolution=self._resolution)
        except TimeoutError:
            pass
        breached = await workflow.execute_activity(
            SLA_DUE,
            ref,
            result_type=bool,
            start_to_close_timeout=CALL_TIMEOUT,
            retry_policy=DB_RETRY,
        )
        with contextlib.suppress(TimeoutError):  # ends; the row stays open for a human
            await workflow.wait_condition(
                lambda: self._resolution is not None, timeout=AFTER_BREACH
            )
        return EscalationResult(breached=breached, resolution=self._resolution)


WORKFLOWS: list[type] = [AssistantWorkflow, EscalationWorkflow]
