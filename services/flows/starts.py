"""Starting runs: the workflow input of a run of a flow's active version, as a trigger's
decision (`run_start`) or started at once by manual enrolment (`enroll`).

A run carries the version's graph in its input: edits of the flow never reach it. Its workflow
id is `flow:{flowId}:{contactId}`: Temporal keeps a contact from having two runs of one flow at
once (a second start meets the first, and only gives it the event). A flow that runs a contact
once (`reentry: never`) refuses a second run of the id while Temporal remembers the first, and
the run's first activity refuses it after that (services/flows/runs.begin).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import Client
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from mktx.settings import Settings
from models.account import XAccount
from models.contact import Contact
from models.flow import AutomationFlow, FlowReentry, FlowStatus
from models.flow_run import EnrollResult, EnrollSkip, FlowVersion
from models.quota import SendKind
from services.core.errors import InvalidState, ServiceUnavailable
from services.flows.runs import reentry_refusals
from services.ingestion.triggers import WorkflowStart
from services.messaging import refusal
from workflows import ids
from workflows.contracts.flows import (
    FLOW_RUN_WORKFLOW,
    FlowRunInput,
    GraphConnection,
    GraphNode,
)

logger = logging.getLogger(__name__)

# Temporal calls in flight at once while enrolling.
START_CONCURRENCY = 32


def run_input(
    flow: AutomationFlow,
    version: FlowVersion,
    contact_id: uuid.UUID,
    *,
    trigger_event_id: uuid.UUID | None = None,
) -> FlowRunInput:
    definition = version.definition
    return FlowRunInput(
        run_id=uuid.uuid4(),
        merchant_id=flow.merchant_id,
        flow_id=flow.id,
        version=version.version,
        contact_id=contact_id,
        nodes=[GraphNode.model_validate(n) for n in definition["nodes"]],
        connections=[
            GraphConnection(
                from_node_id=c["fromNodeId"], to_node_id=c["toNodeId"], branch=c.get("branch")
            )
            for c in definition["connections"]
        ],
        trigger_event_id=trigger_event_id,
    )


def run_attributes(
    flow: AutomationFlow, contact_id: uuid.UUID, account_id: uuid.UUID
) -> TypedSearchAttributes:
    return TypedSearchAttributes(
        [
            SearchAttributePair(ids.MERCHANT_ID, flow.merchant_id),
            SearchAttributePair(ids.FLOW_ID, str(flow.id)),
            SearchAttributePair(ids.CONTACT_ID, str(contact_id)),
            SearchAttributePair(ids.ACCOUNT_ID, str(account_id)),
        ]
    )


def reuse_policy(flow: AutomationFlow) -> WorkflowIDReusePolicy:
    if flow.reentry == FlowReentry.after_exit:
        return WorkflowIDReusePolicy.ALLOW_DUPLICATE
    return WorkflowIDReusePolicy.REJECT_DUPLICATE


async def active_version(session: AsyncSession, flow: AutomationFlow) -> FlowVersion | None:
    if flow.status != FlowStatus.active:
        return None
    return await session.get(FlowVersion, (flow.id, flow.version))


def run_start(
    settings: Settings,
    flow: AutomationFlow,
    version: FlowVersion,
    contact_id: uuid.UUID,
    account_id: uuid.UUID,
    trigger_event_id: uuid.UUID | None,
) -> WorkflowStart:
    """A trigger's decision: signal-with-start this contact's run of the flow."""
    return WorkflowStart.of(
        FLOW_RUN_WORKFLOW,
        ids.flow_id(str(flow.id), str(contact_id)),
        run_input(flow, version, contact_id, trigger_event_id=trigger_event_id),
        task_queue=settings.task_queue,
        search_attributes=run_attributes(flow, contact_id, account_id),
        id_reuse_policy=reuse_policy(flow),
    )


async def enroll(
    session: AsyncSession,
    temporal: Client,
    settings: Settings,
    flow: AutomationFlow,
    contact_ids: Sequence[uuid.UUID],
) -> EnrollResult:
    """Start a run for each listed contact that may run through the flow now; the others are
    skipped with the reason. Any active flow accepts manual enrolment, whatever its trigger."""
    version = await active_version(session, flow)
    if version is None:
        raise InvalidState(
            "only an active flow enrols contacts: activate it first",
            details={"status": str(flow.status)},
        )
    wanted = list(dict.fromkeys(contact_ids))
    rows = await session.execute(
        select(Contact, XAccount)
        .join(XAccount, col(XAccount.id) == col(Contact.account_id))
        .where(col(Contact.id).in_(wanted), col(Contact.merchant_id) == flow.merchant_id)
    )
    found = {contact.id: (contact, account) for contact, account in rows.tuples()}
    skipped: list[EnrollSkip] = []
    starts: list[tuple[uuid.UUID, uuid.UUID]] = []
    for contact_id in wanted:
        contact, account = found.get(contact_id, (None, None))
        if contact is None:
            skipped.append(EnrollSkip(contact_id=contact_id, reason="not_found"))
            continue
        refused = refusal(SendKind.flow, contact, account)
        if refused is not None:
            skipped.append(EnrollSkip(contact_id=contact_id, reason=refused[0].value))
        elif flow.account_id is not None and contact.account_id != flow.account_id:
            skipped.append(EnrollSkip(contact_id=contact_id, reason="wrong_account"))
        else:
            starts.append((contact_id, contact.account_id))
    again = await reentry_refusals(session, [(flow, c) for c, _ in starts])
    refusals = {contact_id: reason for (_, contact_id), reason in again.items()}
    skipped += [EnrollSkip(contact_id=c, reason=r) for c, r in refusals.items()]
    starts = [(c, a) for c, a in starts if c not in refusals]
    slots = asyncio.Semaphore(START_CONCURRENCY)

    async def start(contact_id: uuid.UUID, account_id: uuid.UUID) -> EnrollSkip | None:
        async with slots:
            try:
                await temporal.start_workflow(
                    FLOW_RUN_WORKFLOW,
                    run_input(flow, version, contact_id),
                    id=ids.flow_id(str(flow.id), str(contact_id)),
                    task_queue=settings.task_queue,
                    search_attributes=run_attributes(flow, contact_id, account_id),
                    id_reuse_policy=reuse_policy(flow),
                    id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                )
            except WorkflowAlreadyStartedError:
                return EnrollSkip(contact_id=contact_id, reason="already_enrolled")
            return None

    outcomes = await asyncio.gather(*(start(c, a) for c, a in starts), return_exceptions=True)
    if any(isinstance(o, RPCError) for o in outcomes):
        # Those started are on their way; the same call again skips them (already_enrolled).
        raise ServiceUnavailable("Temporal did not take every enrolment; send the call again")
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    done = [o for o in outcomes if not isinstance(o, BaseException)]
    skipped += [s for s in done if s is not None]
    enrolled = len(starts) - sum(1 for s in done if s is not None)
    logger.info(
        "flow.enrolled",
        extra={"flow_id": str(flow.id), "enrolled": enrolled, "skipped": len(skipped)},
    )
    return EnrollResult(enrolled=enrolled, skipped=skipped)
