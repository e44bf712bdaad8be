"""Campaign activities: begin an occurrence (snapshot), send one batch, settle statuses.

A batch delivers, through the one send path, the messages of recipients an earlier batch left
unsettled (looked for at X first where the outcome is unknown), then claims queued recipients
(`services.campaigns.batches`: consent, account and quota checked as each message is queued)
and delivers theirs; the send path checks each again when it hands it to X and settles the
recipient in the same transaction as the message.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.deps import WorkerDeps
from mktx.settings import Settings
from models.campaign import Campaign
from models.db import SessionMaker
from models.template import Template
from services.campaigns import delivery
from services.campaigns.batches import claim_batch
from services.messaging.delivery import Delivery, claim_lease
from workflows.contracts import campaigns as contract
from workflows.contracts.campaigns import (
    BatchResult,
    BeginInput,
    BeginResult,
    CampaignStatus,
    SendBatchInput,
    SetStatusInput,
    SkipInput,
)
from workflows.contracts.messaging import DeliveryResult, OutcomeState

logger = logging.getLogger(__name__)


class CampaignActivities:
    def __init__(self, settings: Settings, sessions: SessionMaker, sending: Delivery) -> None:
        self._settings = settings
        self._sessions = sessions
        self._sending = sending

    @activity.defn(name=contract.BEGIN)
    async def begin(self, request: BeginInput) -> BeginResult:
        async with self._sessions() as session, session.begin():
            begun = await delivery.begin_occurrence(
                session, request.merchant_id, request.campaign_id, request.run_key
            )
        if begun is None:
            raise ApplicationError(
                "the campaign is gone or no longer startable",
                type=contract.CAMPAIGN_GONE,
                non_retryable=True,
            )
        return BeginResult(
            occurrence=begun.occurrence, recipients=begun.recipients, status=begun.status
        )

    @activity.defn(name=contract.SET_STATUS)
    async def set_status(self, request: SetStatusInput) -> CampaignStatus | None:
        async with self._sessions() as session, session.begin():
            return await delivery.set_status(
                session,
                request.merchant_id,
                request.campaign_id,
                request.status,
                request.reason,
                request.only_from,
            )

    @activity.defn(name=contract.SKIP_REMAINING)
    async def skip_remaining(self, request: SkipInput) -> int:
        async with self._sessions() as session, session.begin():
            skipped = await delivery.skip_remaining(
                session, request.campaign_id, request.occurrence, request.reason
            )
        logger.info(
            "campaign.skipped",
            extra={"campaign_id": str(request.campaign_id), "skipped": skipped},
        )
        return skipped

    @activity.defn(name=contract.SEND_BATCH)
    async def send_batch(self, request: SendBatchInput) -> BatchResult:
        async with self._sessions() as session:
            campaign = await session.get(Campaign, request.campaign_id)
            template = (
                await session.get(Template, campaign.template_id)
                if campaign is not None and campaign.template_id is not None
                else None
            )
            unsettled = await delivery.in_flight(
                session, request.campaign_id, request.occurrence, request.batch_size
            )
        if campaign is None or campaign.merchant_id != request.merchant_id:
            return BatchResult(stop_reason="the campaign no longer exists")
        if template is None:
            return BatchResult(stop_reason="the campaign's template was deleted")
        result = BatchResult()
        claimed: list[Any] = []
        room = request.batch_size - len(unsettled)
        if room > 0:
            async with self._sessions() as session, session.begin():
                claim = await claim_batch(
                    session,
                    self._settings,
                    campaign,
                    template,
                    occurrence=request.occurrence,
                    room=room,
                    now=request.now,
                )
            claimed = claim.message_ids
            result.failed, result.skipped = claim.failed, claim.skipped
            result.account_error = claim.account_error
            if claim.frees_at is not None:
                result.wait_until = claim.frees_at
                result.wait_reason = "the account's 24 h quota is spent"
        done = 0

        def beat() -> None:
            nonlocal done
            done += 1
            activity.heartbeat(done)

        if unsettled or claimed:
            delivered = await self._sending.deliver(
                request.merchant_id,
                [*unsettled, *claimed],
                media=request.media,
                concurrency=request.concurrency,
                on_settled=delivery.settle_recipients,
                beat=beat,
                lease=claim_lease(activity.info().heartbeat_timeout),
            )
            _count(result, delivered)
        async with self._sessions() as session:
            result.remaining = await delivery.remaining(
                session, request.campaign_id, request.occurrence
            )
        logger.info(
            "campaign.batch",
            extra={
                "campaign_id": str(request.campaign_id),
                "sent": result.sent,
                "failed": result.failed,
                "skipped": result.skipped,
                "reconciled": result.reconciled,
                "remaining": result.remaining,
            },
        )
        return result


def _count(result: BatchResult, delivered: DeliveryResult) -> None:
    for outcome in delivered.outcomes:
        if outcome.state is OutcomeState.sent:
            result.sent += 1
            result.reconciled += outcome.reconciled
        elif outcome.state is OutcomeState.failed:
            result.failed += 1
        elif outcome.state is OutcomeState.skipped:
            result.skipped += 1
    if delivered.wait_until is not None and (
        result.wait_until is None or delivered.wait_until > result.wait_until
    ):
        result.wait_until, result.wait_reason = delivered.wait_until, delivered.wait_reason
    result.account_error = delivered.account_error or result.account_error
    if delivered.media_error is not None:
        result.media_error = f"the card's media cannot be sent: {delivered.media_error}"
    result.media = delivered.media
    result.media_dropped = delivered.media_dropped


def build(deps: WorkerDeps) -> list[Callable[..., Any]]:
    sending = Delivery(deps.sessions, deps.x, deps.secrets, deps.settings)
    campaigns = CampaignActivities(deps.settings, deps.sessions, sending)
    return [
        campaigns.begin,
        campaigns.set_status,
        campaigns.skip_remaining,
        campaigns.send_batch,
    ]
