"""Contracts of `CampaignWorkflow` (id `campaign:{campaignId}`; a recurring campaign's Schedule
starts `campaign:{campaignId}-<time>` per occurrence) and of the campaign activities."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel

from workflows.contracts.messaging import MediaRef

# Activity names.
BEGIN = "campaign.begin"
SET_STATUS = "campaign.set_status"
SKIP_REMAINING = "campaign.skip_remaining"
SEND_BATCH = "campaign.send_batch"

# Workflow type.
CAMPAIGN_WORKFLOW = "Campaign"

# ApplicationError types workflows match on.
CAMPAIGN_GONE = "CampaignGone"  # deleted, or no longer startable (cancelled)
INVALID_STATE = "InvalidState"  # an update's validator refused (pause a paused campaign)


class CampaignStatus(StrEnum):
    draft = "draft"
    scheduled = "scheduled"
    running = "running"
    paused = "paused"
    completed = "completed"
    cancelled = "cancelled"
    failed = "failed"


class CampaignInput(BaseModel):
    merchant_id: str
    campaign_id: uuid.UUID
    start_at: datetime | None = None
    end_at: datetime | None = None
    recurring: bool = False  # an occurrence of a Temporal Schedule
    batch_size: int = 500
    concurrency: int = 32
    heartbeat_seconds: int = 15
    # Continue-as-new after this many batches even if Temporal has not suggested it yet.
    max_batches_per_run: int = 1000
    # Carried across continue-as-new:
    occurrence: int | None = None
    paused: bool = False
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    batches: int = 0
    media: dict[str, MediaRef] = {}  # the card's media uploads, by account id


class ScheduleChange(BaseModel):
    start_at: datetime | None = None
    end_at: datetime | None = None


class CampaignProgress(BaseModel):
    phase: str  # waiting, sending, done
    status: str
    occurrence: int | None
    recipients: int
    sent: int
    failed: int
    skipped: int
    remaining: int
    batches: int
    paused: bool
    waiting_until: datetime | None = None
    waiting_reason: str | None = None


class BeginInput(BaseModel):
    merchant_id: str
    campaign_id: uuid.UUID
    run_key: str


class BeginResult(BaseModel):
    occurrence: int
    recipients: int
    status: CampaignStatus


class SetStatusInput(BaseModel):
    merchant_id: str
    campaign_id: uuid.UUID
    status: CampaignStatus
    reason: str | None = None
    only_from: list[CampaignStatus] = []


class SkipInput(BaseModel):
    merchant_id: str
    campaign_id: uuid.UUID
    occurrence: int
    reason: str


class SendBatchInput(BaseModel):
    merchant_id: str
    campaign_id: uuid.UUID
    occurrence: int
    now: datetime  # the workflow's clock, for the quota window
    batch_size: int = 500
    concurrency: int = 32
    # The card's media uploaded so far this occurrence, by account id (X's ids are per account).
    media: dict[str, MediaRef] = {}


class BatchResult(BaseModel):
    sent: int = 0
    failed: int = 0
    skipped: int = 0  # consent said no when sending (opted out, erased)
    reconciled: int = 0
    remaining: int = 0
    wait_until: datetime | None = None  # quota spent or X rate limit: sleep until then
    wait_reason: str | None = None
    account_error: str | None = None  # pause the campaign with this reason
    media_error: str | None = None  # the card's media cannot be sent: pause with this reason
    stop_reason: str | None = None  # the campaign cannot go on (template or campaign gone)
    media: dict[str, MediaRef] = {}  # media this batch uploaded (new or renewed), by account id
    media_dropped: list[str] = []  # accounts whose held media X no longer takes: upload again
