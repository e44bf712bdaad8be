"""One contact's run through an automation flow: `flow:{flowId}:{contactId}`.

The interpreter walks the version's graph it was started with (the input carries it, so edits
made afterwards never reach a run on its way). Each node is entered by one local activity
(`flow.advance`), which records the step and does the node's database work in one transaction
(a tag, the attributes, an assignment, the condition's answer, `end`); the workflow itself does
the waiting, on durable timers: `wait`, a send's `delay` and business hours, `wait_for_reply`.
A `send_message` queues its DM once (`flow.queue_send`: the message id is the run's and the
node's, so a retry finds it) and delivers it through the one send path until X has taken it.

The run leaves at once when the contact opts out, is erased or its account becomes unusable:
each activity looks and says so, and the contact's DMs (signalled while the run listens to its
contact) make the waiting run look. Deactivating the flow cancels the run's row and signals
`flow_stop`. Every end goes through `flow.finish`, which settles the row if it is still running.

Deterministic code only: it imports contracts, never services or I/O.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal, TypeVar

from temporalio import workflow

from workflows.contracts.contact_events import CONTACT_EVENT_SIGNAL, ContactEvent, ContactEventKind
from workflows.contracts.flows import (
    ADVANCE,
    BEGIN,
    CHECK,
    FINISH,
    FLOW_RUN_WORKFLOW,
    FLOW_STATE_QUERY,
    FLOW_STOP_SIGNAL,
    QUEUE_SEND,
    AdvanceInput,
    BeginInput,
    BeginResult,
    CheckInput,
    ExitReason,
    FinishInput,
    FlowRunInput,
    FlowRunResult,
    FlowStop,
    GraphConnection,
    GraphNode,
    QueueSendInput,
    Resume,
    RunStatus,
    StepDone,
    StepResult,
    StepState,
)
from workflows.contracts.messaging import RECORD_FAILURE, OutcomeState, RecordFailureInput
from workflows.delivering import deliver_settled
from workflows.retry import DB_RETRY

CALL_TIMEOUT = timedelta(seconds=30)
# The database steps became local activities (see `_call`).
LOCAL_CALLS_PATCH = "flow-local-calls"
# Past this many history events the run continues as new at its next node.
HISTORY_LIMIT = 5_000
# Event ids remembered to drop a signal delivered twice.
SEEN_LIMIT = 200

Paused = Literal["elapsed", "stopped", "replied"]
T = TypeVar("T")
# A held DM whose account cannot send (the others, e.g. media X refuses, fail the step).
ACCOUNT_HELD = frozenset({"account_unusable", "XUnauthorized"})


class _Graph:
    def __init__(self, nodes: list[GraphNode], connections: list[GraphConnection]) -> None:
        self.nodes = {node.id: node for node in nodes}
        targets = {c.to_node_id for c in connections}
        self.entry = next(node for node in nodes if node.id not in targets)
        self._next = {(c.from_node_id, c.branch): c.to_node_id for c in connections}

    def after(self, node: GraphNode, outcome: str | None) -> GraphNode | None:
        """The node a run goes to after `node` ended with `outcome` (a branch, for the nodes
        that branch); None: the run has reached its end."""
        target = self._next.get((node.id, outcome)) or self._next.get((node.id, None))
        return self.nodes.get(target) if target is not None else None


@workflow.defn(name=FLOW_RUN_WORKFLOW)
class FlowRunWorkflow:
    @workflow.init
    def __init__(self, request: FlowRunInput) -> None:
        self._request = request
        self._stop: FlowStop | None = None
        self._look = False  # a DM came: look whether the contact opted out
        self._heard = 0  # the contact's DMs heard so far
        self._seen: list[str] = []
        self._current: str | None = None

    # Signals and query ---------------------------------------------------------------------

    @workflow.signal(name=CONTACT_EVENT_SIGNAL)
    def contact_event(self, event: ContactEvent) -> None:
        if (
            event.kind is not ContactEventKind.message
            or event.contact_id != self._request.contact_id
        ):
            return
        if event.event_id is not None and event.event_id == self._request.trigger_event_id:
            return  # the DM that enrolled the contact is not a reply to the flow
        key = str(event.event_id or event.message_id)
        if key in self._seen:
            return
        self._seen = [*self._seen[-(SEEN_LIMIT - 1) :], key]
        self._heard += 1
        self._look = True

    @workflow.signal(name=FLOW_STOP_SIGNAL)
    def stop(self, stop: FlowStop) -> None:
        if self._stop is None:
            self._stop = stop

    @workflow.query(name=FLOW_STATE_QUERY)
    def state(self) -> dict[str, str | None]:
        return {"currentNodeId": self._current}

    # The walk ---------------------------------------------------------------------------------

    @workflow.run
    async def run(self, request: FlowRunInput) -> FlowRunResult:
        graph = _Graph(request.nodes, request.connections)
        if request.resume is None:
            begun = await self._call(
                BEGIN,
                BeginInput(
                    run_id=request.run_id,
                    merchant_id=request.merchant_id,
                    flow_id=request.flow_id,
                    version=request.version,
                    contact_id=request.contact_id,
                    workflow_id=workflow.info().workflow_id,
                    trigger_event_id=request.trigger_event_id,
                ),
                BeginResult,
            )
            if not begun.started:
                return FlowRunResult(status=None, reason=begun.reason)
            node: GraphNode | None = graph.entry
            previous: StepDone | None = None
            seq = 0
        else:
            node = graph.nodes[request.resume.node_id]
            previous, seq = request.resume.previous, request.resume.seq
        while node is not None:
            if self._stop is not None:
                return await self._finish(self._stop.status, self._stop.exit_reason, previous)
            info = workflow.info()
            if (
                info.get_current_history_length() > HISTORY_LIMIT
                or info.is_continue_as_new_suggested()
            ):
                workflow.continue_as_new(
                    request.model_copy(
                        update={"resume": Resume(node_id=node.id, previous=previous, seq=seq)}
                    )
                )
            seq += 1
            self._current = node.id
            entered = await self._call(
                ADVANCE,
                AdvanceInput(
                    run_id=request.run_id,
                    merchant_id=request.merchant_id,
                    node=node,
                    seq=seq,
                    previous=previous,
                ),
                StepResult,
            )
            previous = None
            if entered.state is StepState.stopped:
                return await self._finish(entered.status, entered.exit_reason)
            if entered.state is StepState.failed:
                return await self._finish(
                    RunStatus.failed,
                    last=StepDone(node_id=node.id, outcome="failed", detail=entered.detail),
                )
            if node.type == "end":
                return await self._finish(RunStatus.completed)
            outcome = entered.outcome
            if not entered.done:
                performed = await self._perform(node)
                if isinstance(performed, FlowRunResult):
                    return performed
                previous, outcome = performed, performed.outcome
            node = graph.after(node, outcome)
        return await self._finish(RunStatus.completed, last=previous)

    async def _perform(self, node: GraphNode) -> StepDone | FlowRunResult:
        """What a node does beyond its entry: waiting, and sending."""
        config = node.config
        if node.type == "wait":
            if await self._pause(int(config["duration"])) == "stopped":
                return await self._stopped(node)
            return StepDone(node_id=node.id, outcome="waited")
        if node.type == "wait_for_reply":
            paused = await self._pause(int(config["timeout"]), reply_after=self._heard)
            if paused == "stopped":
                return await self._stopped(node)
            return StepDone(
                node_id=node.id, outcome="replied" if paused == "replied" else "timeout"
            )
        if node.type == "send_message":
            return await self._send(node)
        return StepDone(node_id=node.id, outcome="done")

    async def _send(self, node: GraphNode) -> StepDone | FlowRunResult:
        delay = int(node.config.get("delay") or 0)
        if delay and await self._pause(delay) == "stopped":
            return await self._stopped(node)
        while True:
            queued = await self._call(
                QUEUE_SEND,
                QueueSendInput(
                    run_id=self._request.run_id,
                    merchant_id=self._request.merchant_id,
                    node=node,
                    now=workflow.now(),
                ),
                StepResult,
            )
            if queued.state is StepState.stopped:
                return await self._finish(
                    queued.status, queued.exit_reason, self._closing(node, queued)
                )
            if queued.state is StepState.failed:
                return await self._finish(
                    RunStatus.failed,
                    last=StepDone(node_id=node.id, outcome="failed", detail=queued.detail),
                )
            if queued.state is StepState.wait and queued.until is not None:
                # Business hours closed, or the account's quota spent: wait, then ask again.
                pause = max(queued.until - workflow.now(), timedelta(seconds=1))
                if await self._pause(pause.total_seconds()) == "stopped":
                    return await self._stopped(node)
                continue
            break
        assert queued.message_id is not None
        # Once queued, the DM is delivered whatever happens meanwhile: X being down is waited
        # out, never a failure; consent is asked again when it goes.
        delivered = await deliver_settled(self._request.merchant_id, queued.message_id)
        outcome = delivered.outcome
        assert outcome is not None  # no deadline: only a settled outcome comes back
        detail: dict[str, object] = {"messageId": str(queued.message_id)}
        if outcome.state is OutcomeState.sent:
            return StepDone(
                node_id=node.id, outcome="sent", detail={**detail, "dmEventId": outcome.dm_event_id}
            )
        if outcome.state is OutcomeState.skipped:
            reason = (
                outcome.reason if outcome.reason in ExitReason.__members__ else ExitReason.opted_out
            )
            return await self._finish(
                RunStatus.exited,
                reason,
                StepDone(node_id=node.id, outcome="skipped", detail=detail),
            )
        if outcome.state is OutcomeState.held:
            # Not sent and never to be: settled as failed (its quota slot goes back).
            await self._call(
                RECORD_FAILURE,
                RecordFailureInput(
                    merchant_id=self._request.merchant_id,
                    message_id=queued.message_id,
                    reason=outcome.reason or "not delivered",
                ),
                bool,
            )
        if outcome.state is OutcomeState.held and outcome.error_type in ACCOUNT_HELD:
            return await self._finish(
                RunStatus.exited,
                ExitReason.account_unusable,
                StepDone(
                    node_id=node.id, outcome="skipped", detail={**detail, "reason": outcome.reason}
                ),
            )
        failure = {**detail, "reason": outcome.reason, "xStatus": outcome.x_status}
        return await self._finish(
            RunStatus.failed, last=StepDone(node_id=node.id, outcome="failed", detail=failure)
        )

    # Waiting ----------------------------------------------------------------------------------

    async def _pause(self, seconds: float, *, reply_after: int | None = None) -> Paused:
        """Wait `seconds` on a durable timer, unless the run is stopped first or (with
        `reply_after`: the DMs heard when the wait began) the contact writes. Each DM heard
        first makes the run look whether the contact is still one to message."""
        end = workflow.now() + timedelta(seconds=seconds)
        while True:
            if self._look and self._stop is None:
                self._look = False
                looked = await self._call(
                    CHECK,
                    CheckInput(run_id=self._request.run_id, merchant_id=self._request.merchant_id),
                    StepResult,
                )
                if looked.state is StepState.stopped:
                    self._stop = FlowStop(
                        status=looked.status or RunStatus.exited, exit_reason=looked.exit_reason
                    )
            if self._stop is not None:
                return "stopped"
            if reply_after is not None and self._heard > reply_after:
                return "replied"
            left = end - workflow.now()
            if left <= timedelta(0):
                return "elapsed"
            try:
                await workflow.wait_condition(
                    lambda: self._stop is not None or self._look, timeout=left
                )
            except TimeoutError:
                return "elapsed"

    # Ending -----------------------------------------------------------------------------------

    def _closing(self, node: GraphNode, result: StepResult) -> StepDone:
        return StepDone(node_id=node.id, outcome=result.outcome or "skipped", detail=result.detail)

    async def _stopped(self, node: GraphNode) -> FlowRunResult:
        stop = self._stop or FlowStop()
        outcome = "cancelled" if stop.status is RunStatus.cancelled else "exited"
        return await self._finish(
            stop.status, stop.exit_reason, StepDone(node_id=node.id, outcome=outcome)
        )

    async def _finish(
        self, status: RunStatus | None, exit_reason: str | None = None, last: StepDone | None = None
    ) -> FlowRunResult:
        settled = status or RunStatus.exited
        await self._call(
            FINISH,
            FinishInput(
                run_id=self._request.run_id,
                merchant_id=self._request.merchant_id,
                status=settled,
                exit_reason=exit_reason,
                last=last,
            ),
            StepResult,
        )
        current = None if settled is RunStatus.completed else self._current
        return FlowRunResult(status=settled, reason=exit_reason, current_node_id=current)

    async def _call(self, name: str, argument: object, result_type: type[T]) -> T:
        """One transaction of the run's database side. A local activity: it runs inside the
        workflow task that asks for it, so a run goes from its start to its first timer in one
        workflow task (a few history events, not four tasks and three activities). Runs whose
        history began before this (no patch marker) keep their scheduled activities."""
        if workflow.patched(LOCAL_CALLS_PATCH):
            return await workflow.execute_local_activity(
                name,
                argument,
                result_type=result_type,
                start_to_close_timeout=CALL_TIMEOUT,
                retry_policy=DB_RETRY,
            )
        return await workflow.execute_activity(
            name,
            argument,
            result_type=result_type,
            start_to_close_timeout=CALL_TIMEOUT,
            retry_policy=DB_RETRY,
        )


WORKFLOWS: list[type] = [FlowRunWorkflow]
