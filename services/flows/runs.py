"""What a run's activities do (workflows/flow.py walks the graph; this is the database side).

Each function is one activity's transaction: it reads the run's row (locked), looks whether the
run may go on — the row still `running`, the contact still there and not opted out, its
account usable — and then records the step and does its work together. Each is safe to run
again: a step recorded already answers as recorded (a condition keeps the branch it took, a
send keeps its message), so a worker that dies between a commit and its answer changes nothing.

Ends are written by `finish` alone, and only over a row that is still running: deactivation
(which cancels the rows itself) and erasure (whose cascade deletes them) are never overwritten.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import exists, literal, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from mktx import metrics
from mktx.settings import Settings
from models.account import XAccount
from models.contact import Contact
from models.conversation import Conversation, ConversationStatus, Message
from models.db import utcnow
from models.flow import AutomationFlow, FlowReentry, FlowStatus, SendMessageConfig
from models.flow_run import FlowRun, FlowRunStep
from models.quota import SendKind
from models.segment import SegmentMatch
from models.template import Template
from services.accounts.hours import next_opening
from services.contacts.contacts import add_tags
from services.contacts.fields import check_attributes
from services.core.errors import ValidationFailed
from services.flows.tags import record_tags_added
from services.inbox.listeners import register_listener, unregister_listener
from services.messaging import OutgoingDM, Refusal, queue_messages, refusal
from services.messaging.queue import card_attachments
from services.segments.sql import conditions_clause
from services.templates.templates import TemplateRenderError, render_for_contact, stored_card
from workflows.contracts.flows import (
    AdvanceInput,
    BeginInput,
    BeginResult,
    CheckInput,
    ExitReason,
    FinishInput,
    QueueSendInput,
    RunStatus,
    StepDone,
    StepResult,
    StepState,
)

logger = logging.getLogger(__name__)

# A run listens to its contact (its DMs are signalled to it) until it ends; the row's expiry
# only guards against a run that vanished without ending (terminated by an operator).
LISTEN_FOR = timedelta(days=400)

# Why a contact may not be (or stay) in a run, as the refusal of the send path says it.
_EXITS = {
    Refusal.opted_out: ExitReason.opted_out,
    Refusal.deleted: ExitReason.deleted,
    Refusal.account_unusable: ExitReason.account_unusable,
}


@dataclass(frozen=True)
class Entered:
    """What entering a node did: its outcome (None: the workflow carries on with it) and the
    step's detail; `tag_events`: events add_tag recorded for tag_added flows."""

    outcome: str | None
    detail: dict[str, Any] = field(default_factory=dict)
    tag_events: int = 0


def message_id_of(run_id: uuid.UUID, node_id: str) -> uuid.UUID:
    """The DM a send step queues: the same at every attempt, so it is queued once."""
    return uuid.uuid5(run_id, f"send:{node_id}")


# Beginning ------------------------------------------------------------------------------------


async def begin(session: AsyncSession, request: BeginInput) -> BeginResult:
    """Create the run's row (once), unless the contact may not run through the flow now."""
    if await session.get(FlowRun, request.run_id) is not None:
        return BeginResult(started=True)  # a retry of a begin that committed
    flow = await session.get(AutomationFlow, request.flow_id)
    if flow is None or flow.merchant_id != request.merchant_id:
        return BeginResult(started=False, reason="flow_gone")
    if flow.status != FlowStatus.active:
        return BeginResult(started=False, reason="flow_inactive")
    contact, account = await _contact(session, request.merchant_id, request.contact_id)
    refused = refusal(SendKind.flow, contact, account)
    if refused is not None:
        return BeginResult(started=False, reason=refused[0].value)
    assert contact is not None
    if flow.account_id is not None and contact.account_id != flow.account_id:
        return BeginResult(started=False, reason="wrong_account")
    reason = await reentry_refusal(session, flow, request.contact_id)
    if reason is not None:
        return BeginResult(started=False, reason=reason)
    inserted = await session.execute(
        text(
            """
            INSERT INTO flow_runs (id, merchant_id, flow_id, flow_version, contact_id,
                account_id, workflow_id, trigger_event_id, status, started_at)
            VALUES (:id, :merchant_id, :flow_id, :version, :contact_id, :account_id,
                :workflow_id, :event_id, 'running', :now)
            ON CONFLICT DO NOTHING RETURNING id
            """
        ),
        {
            "id": request.run_id,
            "merchant_id": request.merchant_id,
            "flow_id": request.flow_id,
            "version": request.version,
            "contact_id": request.contact_id,
            "account_id": contact.account_id,
            "workflow_id": request.workflow_id,
            "event_id": request.trigger_event_id,
            "now": utcnow(),
        },
    )
    if inserted.first() is None:  # this event enrolled the contact already
        return BeginResult(started=False, reason="already_enrolled")
    await register_listener(
        session,
        merchant_id=request.merchant_id,
        contact_id=request.contact_id,
        workflow_id=request.workflow_id,
        expires_at=utcnow() + LISTEN_FOR,
    )
    metrics.FLOW_RUNS.inc(status="started")
    logger.info(
        "flow.run_started",
        extra={"flow_id": str(request.flow_id), "run_id": str(request.run_id)},
    )
    return BeginResult(started=True)


async def reentry_refusal(
    session: AsyncSession, flow: AutomationFlow, contact_id: uuid.UUID
) -> str | None:
    """`already_enrolled`: a run of this contact is on its way; `already_ran`: the flow runs
    a contact once (`reentry: never`) and this one has been through."""
    return (await reentry_refusals(session, [(flow, contact_id)])).get((flow.id, contact_id))


async def reentry_refusals(
    session: AsyncSession, pairs: Sequence[tuple[AutomationFlow, uuid.UUID]]
) -> dict[tuple[uuid.UUID, uuid.UUID], str]:
    """`reentry_refusal` for many (flow, contact) pairs in one query: the refused pairs, by
    (flow id, contact id)."""
    if not pairs:
        return {}
    flows = {flow.id: flow for flow, _ in pairs}
    rows = await session.execute(
        select(col(FlowRun.flow_id), col(FlowRun.contact_id), col(FlowRun.status)).where(
            tuple_(col(FlowRun.flow_id), col(FlowRun.contact_id)).in_(
                list({(flow.id, contact_id) for flow, contact_id in pairs})
            )
        )
    )
    refused: dict[tuple[uuid.UUID, uuid.UUID], str] = {}
    for flow_id, contact_id, status in rows.tuples():
        if status == RunStatus.running:
            refused[(flow_id, contact_id)] = "already_enrolled"
        elif flows[flow_id].reentry == FlowReentry.never:
            refused.setdefault((flow_id, contact_id), "already_ran")
    return refused


# Steps ----------------------------------------------------------------------------------------


async def advance(session: AsyncSession, settings: Settings, request: AdvanceInput) -> StepResult:
    """Close the step the run leaves, enter `request.node` and do its database work."""
    run, stopped = await _going_on(session, request.run_id, request.merchant_id)
    if stopped is not None:
        return stopped
    assert run is not None
    now = utcnow()
    if request.previous is not None:
        await _close(session, run.id, request.previous, now)
    node = request.node
    recorded = await session.scalar(
        select(FlowRunStep).where(
            col(FlowRunStep.run_id) == run.id, col(FlowRunStep.node_id) == node.id
        )
    )
    if recorded is not None:  # entered by an attempt that committed: answer as it did
        finished = recorded.finished_at is not None
        return StepResult(
            state=StepState.go,
            done=finished,
            outcome=recorded.outcome,
            detail=recorded.detail,
        )
    contact, account = await _contact(session, run.merchant_id, run.contact_id, lock=True)
    refused = refusal(SendKind.flow, contact, account)
    if refused is not None:
        return _exit(refused[0], refused[1])
    assert contact is not None
    step = FlowRunStep(
        run_id=run.id, seq=request.seq, node_id=node.id, type=node.type, started_at=now
    )
    run.current_node_id = node.id
    try:
        entered = await _enter(session, settings, run, contact, node.type, node.config)
    except ValidationFailed as exc:  # e.g. attributes the contact cannot take
        failure = {"reason": exc.message}
        step.outcome, step.detail, step.finished_at = "failed", failure, now
        session.add(step)
        session.add(run)
        await session.flush()
        return StepResult(state=StepState.failed, detail=failure)
    outcome, detail = entered.outcome, entered.detail
    step.outcome, step.detail = outcome, detail
    if outcome is not None:
        step.finished_at = now
    session.add(step)
    session.add(run)
    await session.flush()
    return StepResult(
        state=StepState.go,
        done=outcome is not None,
        outcome=outcome,
        branch=outcome if node.type == "condition" else None,
        detail=detail,
        tag_events=entered.tag_events,
    )


async def _enter(
    session: AsyncSession,
    settings: Settings,
    run: FlowRun,
    contact: Contact,
    node_type: str,
    config: dict[str, Any],
) -> Entered:
    """A node's database work on entry: its outcome and detail, or no outcome for the nodes
    the workflow goes on with (waits and sends)."""
    if node_type == "condition":
        match = SegmentMatch(config.get("match", "all"))
        clause = conditions_clause(config["conditions"], match)
        matching = select(col(Contact.id)).where(col(Contact.id) == contact.id, clause)
        held = (await session.execute(select(exists(matching)))).scalar()
        return Entered("true" if held else "false")
    if node_type == "add_tag":
        before = list(contact.tags)
        add_tags(contact, list(config["tags"]))
        added = [tag for tag in contact.tags if tag not in before]
        session.add(contact)
        recorded = 0
        if added:
            recorded = await record_tags_added(
                session, run.merchant_id, [(contact.id, contact.account_id, added)]
            )
        return Entered("done", {"added": added}, tag_events=recorded)
    if node_type == "remove_tag":
        tag = str(config["tag"])
        removed = tag in contact.tags
        contact.tags = [existing for existing in contact.tags if existing != tag]
        session.add(contact)
        return Entered("done", {"removed": [tag] if removed else []})
    if node_type == "update_attributes":
        contact.attributes = check_attributes({**contact.attributes, **config["attributes"]})
        session.add(contact)
        return Entered("done", {"attributes": sorted(config["attributes"])})
    if node_type == "assign_conversation":
        conversation = await session.scalar(
            select(Conversation)
            .where(
                col(Conversation.contact_id) == contact.id,
                col(Conversation.merchant_id) == run.merchant_id,
                col(Conversation.status) == ConversationStatus.open,
            )
            .with_for_update()
        )
        if conversation is None:
            return Entered("skipped", {"reason": "the contact has no open conversation"})
        conversation.assigned_to_user_id = str(config["userId"])
        session.add(conversation)
        return Entered("done", {"conversationId": str(conversation.id), "userId": config["userId"]})
    if node_type == "end":
        return Entered("ended")
    return Entered(None)


async def queue_send(
    session: AsyncSession, settings: Settings, request: QueueSendInput
) -> StepResult:
    """Queue the send step's DM (once): rendered for the contact now, through the one send
    path's checks and quota. `wait` when business hours are closed or the quota is spent."""
    message_id = message_id_of(request.run_id, request.node.id)
    run, stopped = await _going_on(session, request.run_id, request.merchant_id)
    if stopped is not None:
        return stopped
    assert run is not None
    if await session.get(Message, message_id) is not None:  # queued by an earlier attempt
        return StepResult(state=StepState.queued, message_id=message_id)
    config = SendMessageConfig.model_validate(request.node.config)
    contact, account = await _contact(session, run.merchant_id, run.contact_id)
    refused = refusal(SendKind.flow, contact, account)
    if refused is not None:
        return _exit(refused[0], refused[1])
    assert contact is not None and account is not None
    now = request.now or utcnow()
    if config.business_hours_only:
        opening = next_opening(account.business_hours, now)
        if opening is not None:
            return StepResult(
                state=StepState.wait, until=opening, detail={"reason": "business_hours"}
            )
    template = await session.get(Template, config.template_id)
    if template is None or template.merchant_id != run.merchant_id:
        return StepResult(
            state=StepState.failed, detail={"reason": "the template no longer exists"}
        )
    try:
        rendered = render_for_contact(template, contact, config.variables)
    except TemplateRenderError as exc:
        return StepResult(state=StepState.failed, detail={"reason": str(exc)})
    card = stored_card(template)
    dm = OutgoingDM(
        kind=SendKind.flow,
        contact_id=contact.id,
        content=rendered.text,
        attachments=card_attachments(card.media_url if card else None),
        message_id=message_id,
    )
    done = await queue_messages(
        session, settings, run.merchant_id, [dm], now=now, loaded={contact.id: (contact, account)}
    )
    for refused_dm in done.refused:
        if refused_dm.quota is not None:
            return StepResult(
                state=StepState.wait, until=refused_dm.quota.frees_at, detail={"reason": "quota"}
            )
        return _exit(refused_dm.reason, refused_dm.detail)
    await session.execute(
        update(FlowRunStep)
        .where(col(FlowRunStep.run_id) == run.id, col(FlowRunStep.node_id) == request.node.id)
        .values(detail={"messageId": str(message_id)})
    )
    return StepResult(state=StepState.queued, message_id=message_id)


async def check(session: AsyncSession, request: CheckInput) -> StepResult:
    """May the run go on? (Asked when the contact writes during a wait: a STOP ends it.)"""
    run, stopped = await _going_on(session, request.run_id, request.merchant_id)
    if stopped is not None:
        return stopped
    assert run is not None
    contact, account = await _contact(session, run.merchant_id, run.contact_id)
    refused = refusal(SendKind.flow, contact, account)
    if refused is not None:
        return _exit(refused[0], refused[1])
    return StepResult(state=StepState.go)


async def finish(session: AsyncSession, request: FinishInput) -> StepResult:
    """End the run as the workflow says, if its row is still running; close its last step and
    stop listening to its contact."""
    run = await session.get(FlowRun, request.run_id, with_for_update=True)
    if run is None or run.merchant_id != request.merchant_id:
        return StepResult(state=StepState.stopped, status=RunStatus.exited, exit_reason="deleted")
    now = utcnow()
    if request.last is not None:
        await _close(session, run.id, request.last, now)
    if run.status == RunStatus.running:
        run.status = request.status
        run.exit_reason = request.exit_reason
        run.completed_at = now
        if request.status == RunStatus.completed:
            run.current_node_id = None
        session.add(run)
        metrics.FLOW_RUNS.inc(status=request.status.value)
        logger.info(
            "flow.run_ended",
            extra={
                "flow_id": str(run.flow_id),
                "run_id": str(run.id),
                "status": request.status.value,
                "exit_reason": request.exit_reason,
            },
        )
    await unregister_listener(session, workflow_id=run.workflow_id, contact_id=run.contact_id)
    return StepResult(state=StepState.stopped, status=run.status, exit_reason=run.exit_reason)


# Helpers --------------------------------------------------------------------------------------


async def _going_on(
    session: AsyncSession, run_id: uuid.UUID, merchant_id: str
) -> tuple[FlowRun | None, StepResult | None]:
    """The run's row (locked), or the answer that it is over: cancelled, ended, or gone."""
    run = await session.get(FlowRun, run_id, with_for_update=True)
    if run is None or run.merchant_id != merchant_id:
        # Its contact was erased (the row went with it).
        return None, StepResult(
            state=StepState.stopped, status=RunStatus.exited, exit_reason=ExitReason.deleted
        )
    if run.status != RunStatus.running:
        return None, StepResult(
            state=StepState.stopped, status=run.status, exit_reason=run.exit_reason
        )
    return run, None


def _exit(reason: Refusal, detail: str) -> StepResult:
    exit_reason = _EXITS.get(reason, ExitReason.account_unusable)
    return StepResult(
        state=StepState.stopped,
        status=RunStatus.exited,
        exit_reason=exit_reason,
        outcome="skipped",
        detail={"reason": detail},
    )


async def _contact(
    session: AsyncSession, merchant_id: str, contact_id: uuid.UUID, *, lock: bool = False
) -> tuple[Contact | None, XAccount | None]:
    statement = (
        select(Contact, XAccount)
        .join(XAccount, col(XAccount.id) == col(Contact.account_id))
        .where(col(Contact.id) == contact_id, col(Contact.merchant_id) == merchant_id)
    )
    if lock:
        statement = statement.with_for_update(of=Contact)  # type: ignore[arg-type]
    row = (await session.execute(statement)).first()
    if row is None:
        return None, None
    return row[0], row[1]


async def _close(session: AsyncSession, run_id: uuid.UUID, done: StepDone, now: datetime) -> None:
    """Record how a step the workflow waited on ended (once: a retry finds it closed)."""
    await session.execute(
        update(FlowRunStep)
        .where(
            col(FlowRunStep.run_id) == run_id,
            col(FlowRunStep.node_id) == done.node_id,
            col(FlowRunStep.finished_at).is_(None),
        )
        .values(
            outcome=done.outcome,
            detail=col(FlowRunStep.detail).op("||")(literal(done.detail, type_=JSONB)),
            finished_at=now,
        )
    )
