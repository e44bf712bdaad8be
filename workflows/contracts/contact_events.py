"""Contracts of contact events: what a workflow waiting on a contact hears when the contact does
something on X, and the maintenance step that delivers what could not be delivered at once.

Every workflow that listens to a contact (or that a trigger starts) declares
`@workflow.signal(name=CONTACT_EVENT_SIGNAL)` taking a `ContactEvent`. Webhook ingestion records
each event's deliveries with the event itself (services/ingestion/follow_up.py) and carries them
out exactly once per event and target: Temporal recognises a repeated call by its request id,
and `event_id` is the same for every target and every retry, so a handler may still keep the
ids it has acted on where acting twice would matter.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel

# The signal every contact-event listener declares.
CONTACT_EVENT_SIGNAL = "contact_event"

# Activity names.
CARRY_OUT_FOLLOW_UPS = "maintenance.carry_out_follow_ups"

# Follow-ups a maintenance run carries out at most, oldest due first.
FOLLOW_UP_LIMIT = 500


class ContactEventKind(StrEnum):
    message = "message"  # the contact sent a DM (inbound only; our own echoes are not events)
    follow = "follow"
    unfollow = "unfollow"
    read = "read"  # the contact read our messages
    # A tag was added to the contact (`text`: the tag), through the API, an import or a flow:
    # no webhook event; recorded by the transaction that added it (services/flows/tags.py).
    tag_added = "tag_added"


class ContactEvent(BaseModel):
    """What a listening workflow receives on `CONTACT_EVENT_SIGNAL`. Ids and the DM text only."""

    kind: ContactEventKind
    merchant_id: str
    account_id: uuid.UUID
    contact_id: uuid.UUID
    message_id: uuid.UUID | None = None
    text: str | None = None
    occurred_at: datetime
    # The stored webhook event this comes from (None from senders older than the outbox).
    event_id: uuid.UUID | None = None


class FollowUpsInput(BaseModel):
    limit: int = FOLLOW_UP_LIMIT


class FollowUpReport(BaseModel):
    """One pass over the follow-ups that are due: how each one looked at ended."""

    due: int = 0
    signalled: int = 0  # a running workflow got the event (a listener, or a trigger's)
    started: int = 0  # a trigger's workflow was started with it
    gone: int = 0  # the listening workflow no longer exists: dropped
    already_ran: int = 0  # the trigger's workflow had run for this id already: nothing to do
    skipped: int = 0  # the trigger decided there was nothing to start
    failed: int = 0  # not now (Temporal away): due again later
    given_up: int = 0  # failed too often: settled with its last error
    purged: int = 0  # done long ago: deleted
