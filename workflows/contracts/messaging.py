"""Contracts of the one send path: delivering outbound messages (`SendMessageWorkflow`, id
`message-send:{messageId}`, and the campaign batches, which call the same code).

A delivery is asked for message ids; it answers one `MessageOutcome` per id. `sent`, `failed`
and `skipped` are settled for good; `pending` means "not now" (X rate-limited or down: the
result says until when), `held` means the account cannot send (token refused, disconnected):
the caller decides whether that fails the message or waits for a person.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel

# Activity names.
DELIVER = "message.deliver"
RECORD_FAILURE = "message.record_failure"

# Workflow type.
SEND_MESSAGE_WORKFLOW = "SendMessage"

# ApplicationError types the delivery raises and workflows match on.
MESSAGE_GONE = "MessageGone"

# X may take a media id for 24 h after its upload; this close to expiry it is uploaded again.
MEDIA_REFRESH_MARGIN = timedelta(hours=1)


class MediaKind(StrEnum):
    image = "image"
    gif = "gif"
    video = "video"


class MediaRef(BaseModel):
    """Media X holds for one account: what a DM attaches (`media_id`) and what it was."""

    media_id: str
    url: str
    content_type: str
    kind: MediaKind
    size: int
    expires_at: datetime

    def usable_for(self, url: str, now: datetime) -> bool:
        return self.url == url and self.expires_at - now > MEDIA_REFRESH_MARGIN

    def attachment(self) -> dict[str, str]:
        """As a message's `attachments` entry (the inbox shows it)."""
        return {"type": self.kind.value, "url": self.url}


class OutcomeState(StrEnum):
    sent = "sent"  # X has it (just now, found at X after an unknown outcome, or before)
    failed = "failed"  # X refused it for good, or it could not be sent (reason)
    skipped = "skipped"  # consent said no at the moment of sending: opted_out, deleted
    pending = "pending"  # not now: X rate-limited, down, or the outcome unknown
    held = "held"  # the account cannot send (reason): a person must act


class SkipReason(StrEnum):
    opted_out = "opted_out"
    deleted = "deleted"


class MessageOutcome(BaseModel):
    message_id: uuid.UUID
    state: OutcomeState
    reason: str | None = None  # X's own words, or why it was skipped/held
    cause: str | None = None  # for media refusals: what is wrong with the media itself
    media: dict[str, MediaRef] = {}  # the uploads the delivery held at its end, by account id
    dm_event_id: str | None = None
    sent_at: datetime | None = None
    reconciled: bool = False  # found at X after an attempt whose outcome was unknown
    x_status: int | None = None
    error_type: str | None = None


class DeliverInput(BaseModel):
    merchant_id: str
    message_ids: list[uuid.UUID]
    # Uploads of media the caller holds, by account id: attached instead of uploading again.
    media: dict[str, MediaRef] = {}
    concurrency: int = 32


class DeliveryResult(BaseModel):
    outcomes: list[MessageOutcome] = []
    wait_until: datetime | None = None  # some are pending: try again from then on
    wait_reason: str | None = None
    account_error: str | None = None  # an account cannot send (held outcomes say which)
    media_error: str | None = None  # media cannot be had or X refused it
    media: dict[str, MediaRef] = {}  # media uploaded now (new or renewed), by account id
    media_dropped: list[str] = []  # accounts whose held media X no longer takes


class SendMessageInput(BaseModel):
    merchant_id: str
    message_id: uuid.UUID
    # A worker that dies mid-attempt is noticed this fast (the activity beats every 3 s), and
    # its DM, claimed for twice as long (services/messaging/delivery.py), goes out after that.
    heartbeat_seconds: int = 10
    # Uploads the caller holds, by account id (test sends of one card share one upload).
    media: dict[str, MediaRef] = {}


class SendOutcome(StrEnum):
    sent = "sent"
    failed = "failed"


class SendMessageResult(BaseModel):
    outcome: SendOutcome
    twitter_message_id: str | None = None
    sent_at: datetime | None = None
    reason: str | None = None  # X's own words when X refused
    error_type: str | None = None  # e.g. XForbidden, AccountNotUsable, opted_out
    x_status: int | None = None
    cause: str | None = None  # for media refusals: what is wrong with the media itself
    media: dict[str, MediaRef] = {}  # the uploads the delivery held at its end, by account id


class RecordFailureInput(BaseModel):
    merchant_id: str
    message_id: uuid.UUID
    reason: str
