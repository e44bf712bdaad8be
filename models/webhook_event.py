"""Account Activity events exactly as X delivered them, stored before anything else happens,
and what each one owes the workflows waiting on its contact."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Column, DateTime, ForeignKey, Index, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from models.db import utcnow


class WebhookEvent(SQLModel, table=True):
    __tablename__ = "webhook_events"
    __table_args__ = (
        # X retries and duplicates: the same event is stored (and processed) once.
        UniqueConstraint("dedup_key", name="uq_webhook_events_dedup"),
        # Events to reprocess, by when they are due (services/ingestion/reprocess.py); a pending
        # event without a retry time is due since it was received.
        Index(
            "ix_webhook_events_pending",
            text("coalesce(next_attempt_at, received_at)"),
            "id",
            postgresql_where=text("processed_at IS NULL"),
        ),
        Index("ix_webhook_events_merchant_subject", "merchant_id", "subject_user_id"),
        Index("ix_webhook_events_contact", "contact_id"),
        # Retention prunes the oldest first (services/maintenance/retention.py).
        Index("ix_webhook_events_received", "received_at"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    # Null when the event is for an X user no merchant has connected (acknowledged, not applied).
    merchant_id: str | None = Field(default=None, max_length=128)
    account_id: uuid.UUID | None = None
    for_user_id: str = Field(max_length=32)
    event_type: str = Field(max_length=64)
    # X's event id where it has one; else a composite of type, users and timestamp.
    dedup_key: str = Field(max_length=256)
    # The other X user the event is about (DM sender/recipient, follower, ...): GDPR erasure
    # finds a contact's raw events by it.
    subject_user_id: str | None = Field(default=None, max_length=32)
    contact_id: uuid.UUID | None = None
    payload: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    received_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))  # type: ignore[call-overload]
    processed_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))  # type: ignore[call-overload]
    error: str | None = Field(default=None, max_length=2048)
    # Failed attempts to apply it so far, and when the next one is due (reprocessing backs off;
    # after services/ingestion_reprocess.MAX_ATTEMPTS the event is settled with its error).
    attempts: int = Field(default=0, sa_column_kwargs={"server_default": text("0")})
    next_attempt_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))  # type: ignore[call-overload]


class FollowUpKind(StrEnum):
    signal = "signal"  # signal a listening workflow (target: its workflow id)
    start = "start"  # signal-with-start what a trigger decides (target: the trigger's name)


class EventFollowUp(SQLModel, table=True):
    """What an ingested event must cause in Temporal, recorded with the event (the outbox).

    One row per event and target, inserted by the very statement that stores and applies the
    event (services/ingestion/sql.py, through `mktx_record_follow_ups`), so the event and what
    it owes are committed together or not at all; an event that owes nothing has no row. A row is done once carried out
    (`outcome`), or settled after too many failed attempts (outcome `given_up`, `last_error`
    kept). Until then it is due at `next_attempt_at`: whoever carries it out (the API right
    after its answer, or the maintenance schedule) holds it until then, so two never work on it
    at once (services/ingestion/follow_up.py).

    Its own table rather than columns of webhook_events: an event may owe several targets, each
    with its own attempts and outcome; the pending rows stay a small index of their own instead
    of a partial index over every event ever received; and events with nothing to follow up,
    nearly all of them, pay nothing. Erasing an event (GDPR) erases its follow-ups, DM text
    included, through the foreign key.
    """

    __tablename__ = "event_follow_ups"
    __table_args__ = (
        # One per event and target: what makes "exactly once per event and target" a key.
        # (Neither index leads with merchant_id: the maintenance step looks across merchants.)
        UniqueConstraint("webhook_event_id", "kind", "target", name="uq_event_follow_ups_target"),
        Index(
            "ix_event_follow_ups_due",
            "next_attempt_at",
            "id",
            postgresql_where=text("done_at IS NULL"),
        ),
        Index("ix_event_follow_ups_done", "done_at", postgresql_where=text("done_at IS NOT NULL")),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)  # also the request id
    merchant_id: str = Field(max_length=128)
    # NULL for an event that came from no webhook (a tag added through the API, an import or a
    # flow): each such event is recorded once, by the transaction that made it.
    webhook_event_id: uuid.UUID | None = Field(
        default=None,
        sa_column=Column(ForeignKey("webhook_events.id", ondelete="CASCADE"), nullable=True),
    )
    kind: str = Field(max_length=16)  # FollowUpKind
    target: str = Field(max_length=256)
    # The ContactEvent to deliver (workflows/contracts/contact_events.py).
    payload: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    # A start's decision, once its trigger made it: the list of the WorkflowStarts
    # (services/ingestion/triggers.py) to carry out, empty when there was nothing to start.
    start: list[dict[str, Any]] | None = Field(default=None, sa_column=Column(JSONB, nullable=True))
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))  # type: ignore[call-overload]
    # When it is next due (whoever holds it until then: see services/ingestion/follow_up.py).
    next_attempt_at: datetime = Field(sa_type=DateTime(timezone=True))  # type: ignore[call-overload]
    attempts: int = Field(default=0, sa_column_kwargs={"server_default": text("0")})
    done_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))  # type: ignore[call-overload]
    outcome: str | None = Field(default=None, max_length=16)
    last_error: str | None = Field(default=None, max_length=2048)


class ArmedTrigger(SQLModel, table=True):
    """A trigger that wants a merchant's events (services/ingestion/triggers.py): ingestion
    records a start follow-up for an event only where its trigger is armed for the event's
    merchant, so that merchants with nothing to start pay nothing for a trigger (one index
    probe). Its domain arms it when something starts to need it (a flow is activated) and may
    disarm it when nothing does any more; armed with nothing to start costs a follow-up row
    whose decision is "nothing"."""

    __tablename__ = "armed_triggers"

    merchant_id: str = Field(max_length=128, primary_key=True)
    trigger: str = Field(max_length=128, primary_key=True)
