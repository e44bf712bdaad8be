"""Account Activity events exactly as X delivered them, stored before anything else happens."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Column, DateTime, Index, UniqueConstraint, text
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
