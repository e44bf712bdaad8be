"""Contracts of waiting on a contact: `AwaitContactReplyWorkflow`
(`contact-reply:{contactId}:{key}`) and the activities that register a workflow as a listener
of a contact.

A listener is a row of workflow_listeners: while it lives, webhook ingestion signals the
workflow with every `ContactEvent` of that contact (workflows/contracts/contact_events.py).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel

# Workflow types.
AWAIT_CONTACT_REPLY_WORKFLOW = "AwaitContactReply"

# Activity names.
REGISTER_LISTENER = "listener.register"
UNREGISTER_LISTENER = "listener.unregister"

# ApplicationError types the activities raise and the workflows match on.
CONTACT_NOT_FOUND = "ContactNotFound"  # gone, or another merchant's: final


class RegisterListenerInput(BaseModel):
    merchant_id: str
    contact_id: uuid.UUID
    workflow_id: str
    expires_at: datetime


class UnregisterListenerInput(BaseModel):
    workflow_id: str
    contact_id: uuid.UUID | None = None  # None: every contact the workflow listens to


class AwaitContactReplyInput(BaseModel):
    merchant_id: str
    contact_id: uuid.UUID
    timeout_seconds: float = 24 * 3600


class ContactReply(BaseModel):
    replied: bool
    text: str | None = None
    message_id: uuid.UUID | None = None
    occurred_at: datetime | None = None
