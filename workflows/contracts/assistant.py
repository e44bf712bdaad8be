"""Contracts of the AI assistant's workflows: the auto-reply of a conversation
(`AssistantWorkflow`, `assistant:{conversationId}`, started by an inbound DM through ingestion's
durable follow-ups, the DMs as `CONTACT_EVENT_SIGNAL`s) and the hand-over to humans
(`EscalationWorkflow`, `escalation:{conversationId}`: the handoff DM, the SLA timer)."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel

# Workflow types.
ASSISTANT_WORKFLOW = "Assistant"
ESCALATION_WORKFLOW = "Escalation"

# Signals and queries.
ESCALATION_RESOLVED_SIGNAL = "escalation_resolved"

# Activity names.
AUTO_REPLY = "assistant.auto_reply"
ESCALATION_BEGIN = "assistant.escalation_begin"
SLA_DUE = "assistant.sla_due"

# An auto-reply workflow with nothing to answer ends after this long (the next DM starts one).
IDLE_SECONDS = 600


class AssistantInput(BaseModel):
    merchant_id: str
    conversation_id: uuid.UUID
    contact_id: uuid.UUID


class AutoReplyInput(BaseModel):
    merchant_id: str
    conversation_id: uuid.UUID
    message_ids: list[uuid.UUID]  # the inbound DMs answered together, oldest first


class AutoReplyResult(BaseModel):
    reply_id: uuid.UUID | None = None  # the bot DM
    delivered: bool = False  # settled by the activity itself (else: deliver it)
    escalated: bool = False
    skipped: str | None = None  # why nothing was answered (bot paused, AI off, closed, ...)


class EscalationInput(BaseModel):
    merchant_id: str
    conversation_id: uuid.UUID
    escalation_id: uuid.UUID
    handoff: bool = False  # send the merchant's handoff message to the customer (auto-reply)


class EscalationBegun(BaseModel):
    open: bool  # False: resolved (or gone) already
    # Not there yet: the workflow is started just before the escalation's row is committed.
    missing: bool = False
    sla_due_at: datetime | None = None
    handoff_id: uuid.UUID | None = None  # the handoff DM to deliver


class EscalationInputRef(BaseModel):
    merchant_id: str
    escalation_id: uuid.UUID


class EscalationResolved(BaseModel):
    resolution: str  # agent_replied, closed


class EscalationResult(BaseModel):
    breached: bool
    resolution: str | None = None
