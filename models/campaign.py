"""Campaigns: the campaign, its recipients (one row per contact and occurrence, holding the send
state and X's event id), tracked links and test sends; and the shapes the API reads and writes."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import Field as PydanticField
from pydantic import field_validator, model_validator
from sqlalchemy import Column, DateTime, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlmodel import Field, SQLModel

from models.camel import CamelModel
from models.db import TenantRow, utcnow
from workflows.contracts.campaigns import CampaignStatus

# workflows read it too


class CampaignType(StrEnum):
    promotional = "promotional"
    transactional = "transactional"
    engagement = "engagement"


# A campaign in these holds its template and segments: they may not change or go.
ACTIVE_STATUSES = (CampaignStatus.scheduled, CampaignStatus.running, CampaignStatus.paused)


class RecipientState(StrEnum):
    queued = "queued"
    sending = "sending"  # handed to X; the outcome is unknown until recorded (checked on retry)
    sent = "sent"
    failed = "failed"
    skipped = "skipped"  # endAt came first, or consent said no when sending (error says)


class Campaign(TenantRow, table=True):
    __tablename__ = "campaigns"
    __table_args__ = (
        Index("ix_campaigns_merchant_created", "merchant_id", "created_at"),
        Index("ix_campaigns_template", "template_id"),
        Index("ix_campaigns_segments", "segment_ids", postgresql_using="gin"),
    )

    name: str = Field(max_length=200)
    type: CampaignType = Field(default=CampaignType.promotional, sa_type=String(16))  # type: ignore[call-overload]
    status: CampaignStatus = Field(default=CampaignStatus.draft, sa_type=String(16))  # type: ignore[call-overload]
    status_reason: str | None = Field(default=None, max_length=1024)
    template_id: uuid.UUID | None = Field(
        default=None, sa_column=Column(ForeignKey("templates.id", ondelete="SET NULL"))
    )
    segment_ids: list[uuid.UUID] = Field(
        default_factory=list, sa_column=Column(ARRAY(UUID(as_uuid=True)), nullable=False)
    )
    # Campaign-level template values (e.g. shop_name); contacts' own values take precedence.
    variables: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False))
    start_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))  # type: ignore[call-overload]
    end_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))  # type: ignore[call-overload]
    recurrence: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB))
    # How many occurrences have begun (1 for a one-off campaign once it runs).
    occurrences: int = 0
    # The workflow run that began the latest occurrence (a retried begin does not count twice).
    last_run_key: str | None = Field(default=None, max_length=256)
    # When Temporal last took the run as this row describes it (started, then any schedule
    # change); NULL while that is owed (services/campaigns/starts.py).
    temporal_synced_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))  # type: ignore[call-overload]
    started_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))  # type: ignore[call-overload]
    completed_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))  # type: ignore[call-overload]


class CampaignRecipient(SQLModel, table=True):
    __tablename__ = "campaign_recipients"
    __table_args__ = (
        UniqueConstraint(
            "campaign_id", "occurrence", "contact_id", name="uq_campaign_recipients_contact"
        ),
        Index("ix_campaign_recipients_state", "campaign_id", "occurrence", "state", "id"),
        Index("ix_campaign_recipients_contact", "contact_id"),
        Index("ix_campaign_recipients_message", "message_id"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    merchant_id: str = Field(max_length=128)
    campaign_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("campaigns.id", ondelete="CASCADE"), nullable=False)
    )
    occurrence: int = 1  # a recurring campaign snapshots anew for each occurrence
    # Null once the contact is erased: the row stays, naming nobody, in the figures.
    contact_id: uuid.UUID | None = Field(
        default=None, sa_column=Column(ForeignKey("contacts.id", ondelete="SET NULL"))
    )
    account_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("x_accounts.id", ondelete="CASCADE"), nullable=False)
    )
    state: RecipientState = Field(default=RecipientState.queued, sa_type=String(16))  # type: ignore[call-overload]
    # The message carrying this recipient's DM, once claimed (the send path's unit of work).
    message_id: uuid.UUID | None = Field(
        default=None, sa_column=Column(ForeignKey("messages.id", ondelete="SET NULL"))
    )
    dm_event_id: str | None = Field(default=None, max_length=64)
    error: str | None = Field(default=None, max_length=1024)
    # When the send was handed to X (state sending): X's events from then on are candidates.
    attempt_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))  # type: ignore[call-overload]
    sent_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))  # type: ignore[call-overload]
    read_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))  # type: ignore[call-overload]
    replied_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))  # type: ignore[call-overload]
    clicked_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))  # type: ignore[call-overload]
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))  # type: ignore[call-overload]


class TrackedLink(SQLModel, table=True):
    __tablename__ = "tracked_links"
    __table_args__ = (Index("ix_tracked_links_campaign", "campaign_id"),)

    code: str = Field(primary_key=True, max_length=32)
    merchant_id: str = Field(max_length=128)
    campaign_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("campaigns.id", ondelete="CASCADE"), nullable=False)
    )
    recipient_id: uuid.UUID | None = Field(
        default=None,
        sa_column=Column(ForeignKey("campaign_recipients.id", ondelete="CASCADE")),
    )
    contact_id: uuid.UUID | None = None
    url: str = Field(sa_column=Column(Text, nullable=False))
    clicks: int = 0
    first_clicked_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))  # type: ignore[call-overload]
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))  # type: ignore[call-overload]


class CampaignTestSend(TenantRow, table=True):
    """A test message: sent now to a listed contact, never counted in the metrics."""

    __tablename__ = "campaign_test_sends"
    __table_args__ = (
        Index("ix_campaign_test_sends_campaign", "campaign_id"),
        Index("ix_campaign_test_sends_message", "message_id"),
    )

    campaign_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("campaigns.id", ondelete="CASCADE"), nullable=False)
    )
    contact_id: uuid.UUID | None = Field(
        default=None, sa_column=Column(ForeignKey("contacts.id", ondelete="SET NULL"))
    )
    text: str = Field(sa_column=Column(Text, nullable=False))
    message_id: uuid.UUID | None = Field(
        default=None, sa_column=Column(ForeignKey("messages.id", ondelete="SET NULL"))
    )
    state: RecipientState = Field(default=RecipientState.queued, sa_type=String(16))  # type: ignore[call-overload]
    dm_event_id: str | None = Field(default=None, max_length=64)
    error: str | None = Field(default=None, max_length=1024)


# API schemas -------------------------------------------------------------------------------

Weekday = Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]


class Recurrence(CamelModel):
    """A cron expression, or daily/weekly at a time of day in a timezone (the account's when
    omitted)."""

    cron: str | None = PydanticField(default=None, min_length=9, max_length=120)
    frequency: Literal["daily", "weekly"] | None = None
    time: str | None = PydanticField(default=None, pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    day_of_week: Weekday | None = None
    timezone: str | None = PydanticField(default=None, max_length=64)

    @model_validator(mode="after")
    def _one_kind(self) -> Recurrence:
        if (self.cron is None) == (self.frequency is None):
            raise ValueError("give either cron or frequency (daily/weekly)")
        if self.frequency is not None and self.time is None:
            raise ValueError("a daily/weekly recurrence needs a time (HH:MM)")
        if self.frequency == "weekly" and self.day_of_week is None:
            raise ValueError("a weekly recurrence needs a dayOfWeek")
        if self.cron is not None and len(self.cron.split()) != 5:
            raise ValueError("cron must have 5 fields (minute hour day month weekday)")
        return self


class CampaignSchedule(CamelModel):
    start_at: datetime | None = None
    end_at: datetime | None = None
    recurrence: Recurrence | None = None

    @field_validator("start_at", "end_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("must carry a timezone (e.g. 2026-01-20T10:00:00Z)")
        return value

    @model_validator(mode="after")
    def _ordered(self) -> CampaignSchedule:
        if self.start_at and self.end_at and self.end_at <= self.start_at:
            raise ValueError("endAt must be after startAt")
        return self


TemplateValue = str | int | float | bool


class CampaignCreate(CamelModel):
    name: str = PydanticField(min_length=1, max_length=200)
    type: CampaignType = CampaignType.promotional
    template_id: uuid.UUID | None = None
    segment_ids: list[uuid.UUID] = PydanticField(default_factory=list, max_length=50)
    variables: dict[str, TemplateValue] = {}
    schedule: CampaignSchedule = PydanticField(default_factory=CampaignSchedule)


class CampaignUpdate(CamelModel):
    name: str | None = PydanticField(default=None, min_length=1, max_length=200)
    type: CampaignType | None = None
    template_id: uuid.UUID | None = None
    segment_ids: list[uuid.UUID] | None = PydanticField(default=None, max_length=50)
    variables: dict[str, TemplateValue] | None = None
    schedule: CampaignSchedule | None = None


class CampaignMetrics(CamelModel):
    total_sent: int = 0
    delivered: int = 0
    opened: int = 0
    clicked: int = 0
    replied: int = 0
    failed: int = 0


class TimelineBucket(CamelModel):
    timestamp: datetime
    sent: int
    delivered: int
    failed: int = 0


class CampaignLive(CamelModel):
    """What the running workflow itself reports (its Query): where it is and why it waits."""

    phase: str  # waiting (for startAt), sending, done
    status: str
    occurrence: int | None = None
    batches: int = 0
    paused: bool = False
    waiting_until: datetime | None = None  # quota or X rate limit: the durable timer's end
    waiting_reason: str | None = None


class SkippedReasons(CamelModel):
    """Why recipients were skipped: consent said no when their DM was to go out (opted out,
    erased), or `other` (endAt passed first)."""

    opted_out: int = 0
    deleted: int = 0
    other: int = 0


class CampaignMetricsDetail(CampaignMetrics):
    recipients: int = 0
    queued: int = 0
    skipped: int = 0
    skipped_reasons: SkippedReasons = PydanticField(default_factory=SkippedReasons)
    open_rate: float = 0.0
    click_rate: float = 0.0
    reply_rate: float = 0.0
    delivery_rate: float = 0.0
    timeline: list[TimelineBucket] = []
    live: CampaignLive | None = None  # while a run exists (scheduled, running, paused)


class CampaignPublic(CamelModel):
    id: uuid.UUID
    merchant_id: str
    name: str
    type: CampaignType
    status: CampaignStatus
    status_reason: str | None = None
    template_id: uuid.UUID | None
    segment_ids: list[uuid.UUID]
    variables: dict[str, Any]
    schedule: CampaignSchedule
    metrics: CampaignMetrics
    started_at: datetime | None = None
    completed_at: datetime | None = None
    created_at: datetime
    updated_at: datetime


class CampaignTestRequest(CamelModel):
    contact_ids: list[uuid.UUID] = PydanticField(min_length=1, max_length=10)
    variables: dict[str, TemplateValue] = {}


class CampaignTestResult(CamelModel):
    contact_id: uuid.UUID
    status: RecipientState
    dm_event_id: str | None = None
    error: str | None = None
    rendered: str | None = None


class CampaignRecipientPublic(CamelModel):
    """One recipient of one occurrence of a campaign. Each time is set exactly when the metrics
    count the recipient so: `sentAt` for totalSent (handed to X: sent or failed),
    `deliveredAt` delivered, `openedAt` opened, `clickedAt` clicked, `repliedAt` replied."""

    contact_id: uuid.UUID | None  # null once the contact was erased (GDPR): the row stays
    username: str | None
    display_name: str | None
    occurrence: int  # a recurring campaign has a recipient row per occurrence
    state: RecipientState
    skip_reason: str | None  # when skipped: opted_out, deleted, or why (endAt passed)
    sent_at: datetime | None
    delivered_at: datetime | None
    opened_at: datetime | None  # the first read receipt covering the DM
    clicked_at: datetime | None  # the first click on one of its tracked links
    replied_at: datetime | None  # the first inbound DM within the reply window
