"""CampaignWorkflow: one occurrence of a campaign, durably. Id `campaign:{campaignId}` (a
recurring campaign's Temporal Schedule starts `campaign:{campaignId}-<time>` per occurrence);
search attributes MerchantId and CampaignId.

Waits for `startAt` (a `reschedule` signal moves the timer), snapshots the recipients once,
then sends in batches: each batch reserves its quota slots, and when the quota (or X's rate
limit) is spent the workflow sleeps on a durable timer until it frees. `pause`/`resume` are
Updates answering the new status; `progress` is a Query. Continues-as-new when Temporal
suggests it, carrying its counters.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

from workflows.contracts.campaigns import (
    BEGIN,
    CAMPAIGN_GONE,
    CAMPAIGN_WORKFLOW,
    INVALID_STATE,
    SEND_BATCH,
    SET_STATUS,
    SKIP_REMAINING,
    BatchResult,
    BeginInput,
    BeginResult,
    CampaignInput,
    CampaignProgress,
    CampaignStatus,
    ScheduleChange,
    SendBatchInput,
    SetStatusInput,
    SkipInput,
)
from workflows.contracts.messaging import MediaRef
from workflows.retry import DB_RETRY

__all__ = ["CampaignInput", "CampaignProgress", "CampaignWorkflow", "ScheduleChange"]

BATCH_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=30),
    non_retryable_error_types=[CAMPAIGN_GONE],
)
SHORT = timedelta(seconds=60)
BATCH_TIMEOUT = timedelta(minutes=10)
# ~7 history events per batch: a run stays well under Temporal's limits at any campaign size.
# (A worker killed mid-batch is noticed within CampaignInput.heartbeat_seconds; the retry
# looks at X for the DMs that batch had handed over.)


@workflow.defn(name=CAMPAIGN_WORKFLOW)
class CampaignWorkflow:
    def __init__(self) -> None:
        self._input: CampaignInput | None = None
        self._start_at: datetime | None = None
        self._end_at: datetime | None = None
        self._phase = "waiting"
        self._status = CampaignStatus.scheduled
        self._paused = False
        self._recipients = 0
        self._remaining = 0
        self._skipped = 0
        self._sent = 0
        self._failed = 0
        self._batches = 0
        self._waiting_until: datetime | None = None
        self._waiting_reason: str | None = None
        self._schedule_changed = False
        self._occurrence: int | None = None
        # The card's media as X holds it for each account: uploaded once per occurrence (again
        # only when an id nears X's 24 h expiry), attached to every recipient's DM.
        self._media: dict[str, MediaRef] = {}

    @workflow.run
    async def run(self, request: CampaignInput) -> CampaignProgress:
        try:
            return await self._run(request)
        except asyncio.CancelledError:
            # Cancelled through Temporal (an operator): the campaign says so, then the run ends.
            await self._set(CampaignStatus.cancelled, "the campaign's workflow was cancelled")
            raise

    async def _run(self, request: CampaignInput) -> CampaignProgress:
        self._input = request
        self._start_at, self._end_at = request.start_at, request.end_at
        self._paused = request.paused
        self._sent, self._failed, self._batches = request.sent, request.failed, request.batches
        self._skipped = request.skipped
        self._media = dict(request.media)
        occurrence = request.occurrence
        if occurrence is None:
            await self._wait_for_start()
            begun = await workflow.execute_activity(
                BEGIN,
                BeginInput(
                    merchant_id=request.merchant_id,
                    campaign_id=request.campaign_id,
                    run_key=workflow.info().workflow_id,
                ),
                result_type=BeginResult,
                start_to_close_timeout=timedelta(minutes=10),
                retry_policy=BATCH_RETRY,
            )
            occurrence = begun.occurrence
            self._recipients = self._remaining = begun.recipients
            self._paused = begun.status == CampaignStatus.paused
        self._occurrence = occurrence
        self._phase = "sending"
        self._status = CampaignStatus.paused if self._paused else CampaignStatus.running
        while True:
            await workflow.wait_condition(lambda: not self._paused)
            if self._end_at is not None and workflow.now() >= self._end_at:
                self._skipped += await self._skip(occurrence, "the campaign's endAt passed")
                break
            result = await workflow.execute_activity(
                SEND_BATCH,
                SendBatchInput(
                    merchant_id=request.merchant_id,
                    campaign_id=request.campaign_id,
                    occurrence=occurrence,
                    now=workflow.now(),
                    batch_size=request.batch_size,
                    concurrency=request.concurrency,
                    media=self._media,
                ),
                result_type=BatchResult,
                start_to_close_timeout=BATCH_TIMEOUT,
                heartbeat_timeout=timedelta(seconds=request.heartbeat_seconds),
                retry_policy=BATCH_RETRY,
            )
            self._count(result)
            if result.stop_reason is not None:
                await self._set(CampaignStatus.failed, result.stop_reason)
                return self.progress()
            pause_reason = result.account_error or result.media_error
            if pause_reason is not None:
                # X refused the account's token, or the card's media cannot be had: paused
                # (nothing sent without its image) until someone fixes it and resumes.
                self._paused = True
                await self._set(CampaignStatus.paused, pause_reason, [CampaignStatus.running])
                continue
            if result.remaining == 0:
                break
            if result.wait_until is not None:
                await self._sleep_until(result.wait_until, result.wait_reason)
            run_batches = self._batches - request.batches
            if (
                workflow.info().is_continue_as_new_suggested()
                or run_batches >= request.max_batches_per_run
            ):
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(
                    request.model_copy(
                        update={
                            "occurrence": occurrence,
                            "paused": self._paused,
                            "sent": self._sent,
                            "failed": self._failed,
                            "skipped": self._skipped,
                            "batches": self._batches,
                            "media": self._media,
                            "start_at": None,
                            "end_at": self._end_at,
                        }
                    )
                )
        self._phase = "done"
        await workflow.wait_condition(workflow.all_handlers_finished)
        final = CampaignStatus.scheduled if request.recurring else CampaignStatus.completed
        await self._set(final, None, [CampaignStatus.running, CampaignStatus.paused])
        return self.progress()

    # Handlers ---------------------------------------------------------------------------------

    @workflow.signal
    def reschedule(self, change: ScheduleChange) -> None:
        """A scheduled campaign's new startAt/endAt (before it begins; endAt also later)."""
        if self._phase == "waiting":
            self._start_at = change.start_at
        self._end_at = change.end_at
        self._schedule_changed = True

    @workflow.update
    async def pause(self) -> CampaignStatus:
        self._paused = True
        await self._set(CampaignStatus.paused, "paused by a user", [CampaignStatus.running])
        return self._status

    @pause.validator
    def _can_pause(self) -> None:
        if self._phase != "sending" or self._paused:
            raise ApplicationError(
                f"a {self._status} campaign cannot be paused", type=INVALID_STATE
            )

    @workflow.update
    async def resume(self) -> CampaignStatus:
        self._paused = False
        await self._set(CampaignStatus.running, None, [CampaignStatus.paused])
        return self._status

    @resume.validator
    def _can_resume(self) -> None:
        if self._phase != "sending" or not self._paused:
            raise ApplicationError(
                f"a {self._status} campaign cannot be resumed", type=INVALID_STATE
            )

    @workflow.query
    def progress(self) -> CampaignProgress:
        return CampaignProgress(
            phase=self._phase,
            status=self._status.value,
            occurrence=self._occurrence,
            recipients=self._recipients,
            sent=self._sent,
            failed=self._failed,
            skipped=self._skipped,
            remaining=self._remaining,
            batches=self._batches,
            paused=self._paused,
            waiting_until=self._waiting_until,
            waiting_reason=self._waiting_reason,
        )

    # Steps ------------------------------------------------------------------------------------

    async def _wait_for_start(self) -> None:
        while self._start_at is not None and self._start_at > workflow.now():
            self._schedule_changed = False
            try:
                await workflow.wait_condition(
                    lambda: self._schedule_changed, timeout=self._start_at - workflow.now()
                )
            except TimeoutError:
                return

    async def _sleep_until(self, until: datetime, reason: str | None) -> None:
        if self._end_at is not None and self._end_at < until:
            until = self._end_at
        delay = until - workflow.now()
        if delay <= timedelta(0):
            return
        self._waiting_until, self._waiting_reason = until, reason
        await workflow.sleep(delay)
        self._waiting_until = self._waiting_reason = None

    def _count(self, result: BatchResult) -> None:
        for account_id in result.media_dropped:
            self._media.pop(account_id, None)
        self._media.update(result.media)
        self._batches += 1
        self._sent += result.sent
        self._failed += result.failed
        self._skipped += result.skipped
        self._remaining = result.remaining

    async def _skip(self, occurrence: int, reason: str) -> int:
        assert self._input is not None
        return await workflow.execute_activity(
            SKIP_REMAINING,
            SkipInput(
                merchant_id=self._input.merchant_id,
                campaign_id=self._input.campaign_id,
                occurrence=occurrence,
                reason=reason,
            ),
            result_type=int,
            start_to_close_timeout=SHORT,
            retry_policy=DB_RETRY,
        )

    async def _set(
        self,
        status: CampaignStatus,
        reason: str | None,
        only_from: list[CampaignStatus] | None = None,
    ) -> None:
        assert self._input is not None
        now = await workflow.execute_activity(
            SET_STATUS,
            SetStatusInput(
                merchant_id=self._input.merchant_id,
                campaign_id=self._input.campaign_id,
                status=status,
                reason=reason,
                only_from=only_from or [],
            ),
            result_type=CampaignStatus | None,  # type: ignore[arg-type]
            start_to_close_timeout=SHORT,
            retry_policy=DB_RETRY,
        )
        if now is not None:
            self._status = now


WORKFLOWS: list[type] = [CampaignWorkflow]
