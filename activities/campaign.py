"""Campaign activities: begin an occurrence (snapshot), send one batch, settle statuses.

A batch: recipients a previous attempt left `sending` are first checked against X's DM events
(sent → recorded, not found → sent again); then queued recipients are claimed with their quota
slots and marked `sending` in one transaction; a card's media is uploaded for each account
that the workflow holds no usable upload for (one per occurrence and account); then their DMs
go to X with bounded concurrency, the media attached; then every outcome is written in one
statement, and the DMs X accepted are put in their contacts' conversations in one more, in the
same transaction.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import update
from sqlmodel import col
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.deps import WorkerDeps
from integrations.x import (
    DMEvent,
    XClient,
    XCredentials,
    XError,
    XForbidden,
    XRateLimited,
    XRequestRejected,
    XUnauthorized,
)
from mktx.secrets import SecretBox
from mktx.settings import Settings
from models.account import AccountStatus, XAccount
from models.campaign import Campaign, CampaignStatus, RecipientState
from models.db import SessionMaker, utcnow
from models.quota import SendKind
from models.template import Template
from services.accounts.accounts import AccountNotUsable, load_credentials
from services.campaigns import delivery
from services.campaigns.links import redirect_base, rewrite_links, store_links
from services.messaging.media import (
    FetchedMedia,
    MediaRef,
    MediaUnavailable,
    allow_private_hosts,
    fetch_media,
    refuses_media,
    upload_media,
)
from services.messaging.outbound import CLOCK_SKEW, find_delivered
from services.messaging.quota import limits_from_settings, release_batch_quota, reserve_batch_quota
from services.templates.templates import TemplateRenderError, render_for_contact, stored_card

logger = logging.getLogger(__name__)

RECONCILE_PAGES = 3
CLAIM_ROUNDS = 3
TOKEN_REFUSED = (
    "X no longer accepts this account's token (revoked or expired); connect the account again"
)


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
    reconciled: int = 0
    remaining: int = 0
    wait_until: datetime | None = None  # quota spent or X rate limit: sleep until then
    wait_reason: str | None = None
    account_error: str | None = None  # pause the campaign with this reason
    media_error: str | None = None  # the card's media cannot be sent: pause with this reason
    stop_reason: str | None = None  # the campaign cannot go on (template or campaign gone)
    media: dict[str, MediaRef] = {}  # media this batch uploaded (new or renewed), by account id
    media_dropped: list[str] = []  # accounts whose held media X no longer takes: upload again


@dataclass(slots=True)
class _Job:
    pending: delivery.Pending
    text: str
    credentials: XCredentials
    media: MediaRef | None = None  # the card's media, attached to the DM


class CampaignActivities:
    def __init__(
        self, settings: Settings, sessions: SessionMaker, x: XClient, secrets: SecretBox
    ) -> None:
        self._settings = settings
        self._sessions = sessions
        self._x = x
        self._secrets = secrets

    @activity.defn(name="campaign.begin")
    async def begin(self, request: BeginInput) -> BeginResult:
        async with self._sessions() as session, session.begin():
            begun = await delivery.begin_occurrence(
                session, request.merchant_id, request.campaign_id, request.run_key
            )
        if begun is None:
            raise ApplicationError(
                "the campaign is gone or no longer startable",
                type="CampaignGone",
                non_retryable=True,
            )
        return BeginResult(
            occurrence=begun.occurrence, recipients=begun.recipients, status=begun.status
        )

    @activity.defn(name="campaign.set_status")
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

    @activity.defn(name="campaign.skip_remaining")
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

    @activity.defn(name="campaign.send_batch")
    async def send_batch(self, request: SendBatchInput) -> BatchResult:
        async with self._sessions() as session:
            campaign = await session.get(Campaign, request.campaign_id)
            template = (
                await session.get(Template, campaign.template_id)
                if campaign is not None and campaign.template_id is not None
                else None
            )
        if campaign is None or campaign.merchant_id != request.merchant_id:
            return BatchResult(stop_reason="the campaign no longer exists")
        if template is None:
            return BatchResult(stop_reason="the campaign's template was deleted")
        result = BatchResult()
        credentials: dict[uuid.UUID, XCredentials] = {}
        outcomes: list[delivery.Outcome] = []
        semaphore = asyncio.Semaphore(request.concurrency)
        refused: set[uuid.UUID] = set()  # accounts whose token X refused
        stale: dict[uuid.UUID, str] = {}  # accounts whose media id X refused, with X's reason
        done = 0

        def beat() -> None:
            nonlocal done
            done += 1
            activity.heartbeat(done)

        # 1. Sends whose outcome a previous attempt never recorded: look at X first.
        async with self._sessions() as session, session.begin():
            stuck = await delivery.in_flight(
                session, request.campaign_id, request.occurrence, request.batch_size
            )
            jobs = await self._jobs(
                session, campaign, template, stuck, credentials, outcomes, result
            )
        # Those that can no longer render failed: their slots (reserved at claim) go back.
        accounts = {p.recipient.id: p.recipient.account_id for p in stuck}
        released: list[tuple[uuid.UUID, uuid.UUID]] = [
            (accounts[o.recipient_id], o.recipient_id) for o in outcomes
        ]
        resend: list[_Job] = []

        media_url = _card_media_url(template)

        async def check(job: _Job) -> None:
            async with semaphore:
                try:
                    event = await self._find_at_x(job, media=media_url is not None)
                except XError as exc:
                    if isinstance(exc, XUnauthorized):
                        refused.add(job.pending.account.id)
                    self._note_error(result, exc)
                    return  # stays `sending`: checked again next time
                finally:
                    beat()
            if event is not None:
                result.reconciled += 1
                outcomes.append(
                    delivery.Outcome(
                        job.pending.recipient.id,
                        RecipientState.sent,
                        dm_event_id=event.id,
                        at=event.created_at or utcnow(),
                        text=job.text,
                        media=_attachment(request.media, job, media_url),
                    )
                )
            else:
                resend.append(job)

        await asyncio.gather(*(check(job) for job in jobs))
        if result.account_error is not None or result.wait_until is not None:
            await self._record(outcomes, released, refused)
            return await self._finish(result, request, outcomes)

        # 2. Claim queued recipients with their quota slots; mark them `sending` (committed).
        fresh: list[_Job] = []
        room = request.batch_size - len(resend)
        if room > 0:
            fresh = await self._claim(
                request, campaign, template, room, credentials, result, outcomes
            )

        # 3. The card's media, uploaded once per account and occurrence; a recipient whose
        # media cannot be had goes back to the queue: a DM never leaves without its image.
        to_send = [*resend, *fresh]
        if media_url is not None and to_send:
            to_send = await self._attach_media(
                request, media_url, to_send, result, outcomes, released, refused
            )

        # 4. Hand the DMs to X, at most `concurrency` at a time.

        async def send(job: _Job) -> None:
            recipient = job.pending.recipient
            async with semaphore:
                try:
                    sent = await asyncio.to_thread(
                        self._x.send_dm,
                        job.credentials,
                        job.pending.contact.twitter_user_id,
                        job.text,
                        job.media.media_id if job.media else None,
                    )
                except (XForbidden, XRequestRejected) as exc:
                    if job.media is not None and refuses_media(exc):
                        # X no longer takes the media id (expired early, say): queued again.
                        stale[recipient.account_id] = exc.reason
                        outcomes.append(delivery.Outcome(recipient.id, RecipientState.queued))
                    else:
                        outcomes.append(
                            delivery.Outcome(recipient.id, RecipientState.failed, error=exc.reason)
                        )
                    released.append((recipient.account_id, recipient.id))
                    return
                except (XUnauthorized, XRateLimited) as exc:
                    # X did not take it: back in the queue, its slot given back.
                    if isinstance(exc, XUnauthorized):
                        refused.add(recipient.account_id)
                    self._note_error(result, exc)
                    outcomes.append(delivery.Outcome(recipient.id, RecipientState.queued))
                    released.append((recipient.account_id, recipient.id))
                    return
                except XError as exc:
                    # Unknown outcome (5xx, timeout): stays `sending`, checked at X next time.
                    self._note_error(result, exc)
                    return
                finally:
                    beat()
            outcomes.append(
                delivery.Outcome(
                    recipient.id,
                    RecipientState.sent,
                    dm_event_id=sent.dm_event_id,
                    at=utcnow(),
                    text=job.text,
                    media=job.media.attachment() if job.media else None,
                )
            )

        await asyncio.gather(*(send(job) for job in to_send))
        for account_id, reason in stale.items():
            if str(account_id) in result.media:
                # Refused although just uploaded: uploading again would not help.
                result.media_error = f"X refused the card's media ({media_url}): {reason}"
            else:
                result.media_dropped.append(str(account_id))
        await self._record(outcomes, released, refused)
        return await self._finish(result, request, outcomes)

    # Helpers ----------------------------------------------------------------------------------

    async def _jobs(
        self,
        session: Any,
        campaign: Campaign,
        template: Template,
        pending: Sequence[delivery.Pending],
        credentials: dict[uuid.UUID, XCredentials],
        outcomes: list[delivery.Outcome],
        result: BatchResult,
    ) -> list[_Job]:
        """Render each recipient's message (links tracked); a render failure fails it."""
        base = redirect_base(self._settings)
        jobs: list[_Job] = []
        links = []
        for p in pending:
            creds = await self._credentials(session, p.account, credentials)
            if creds is None:  # stays as it is until the account works again
                result.account_error = p.account.status_reason or (
                    f"account @{p.account.username} is not usable ({p.account.status})"
                )
                continue
            try:
                rendered = render_for_contact(template, p.contact, campaign.variables)
            except TemplateRenderError as exc:
                outcomes.append(
                    delivery.Outcome(p.recipient.id, RecipientState.failed, error=str(exc))
                )
                continue
            text, found = rewrite_links(
                rendered.text,
                base=base,
                owner_id=p.recipient.id,
                recipient_id=p.recipient.id,
                contact_id=p.contact.id,
            )
            links += found
            jobs.append(_Job(p, text, creds))
        await store_links(session, campaign.merchant_id, campaign.id, links)
        return jobs

    async def _credentials(
        self, session: Any, account: XAccount, cache: dict[uuid.UUID, XCredentials]
    ) -> XCredentials | None:
        if account.id in cache:
            return cache[account.id]
        if not delivery.account_usable(account):
            return None
        try:
            _, creds = await load_credentials(
                session, self._secrets, account.id, allow_disconnected=False
            )
        except AccountNotUsable:
            return None
        cache[account.id] = creds
        return creds

    async def _claim(
        self,
        request: SendBatchInput,
        campaign: Campaign,
        template: Template,
        room: int,
        credentials: dict[uuid.UUID, XCredentials],
        result: BatchResult,
        outcomes: list[delivery.Outcome],
    ) -> list[_Job]:
        limits = limits_from_settings(self._settings)
        # Accounts whose quota is spent (or that are unusable) are left out of the next round,
        # so one spent account does not hold back the recipients of the others.
        blocked: list[uuid.UUID] = []
        frees: list[datetime] = []
        granted: list[delivery.Pending] = []
        claimed: set[uuid.UUID] = set()
        seen: list[uuid.UUID] = []  # recipients already looked at in an earlier round
        async with self._sessions() as session, session.begin():
            for _ in range(CLAIM_ROUNDS):
                want = room - len(granted)
                if want <= 0:
                    break
                candidates = await delivery.claimable(
                    session, request.campaign_id, request.occurrence, want, blocked, seen
                )
                if not candidates:
                    break
                seen += [p.recipient.id for p in candidates]
                by_account: dict[uuid.UUID, list[delivery.Pending]] = {}
                for p in candidates:
                    by_account.setdefault(p.account.id, []).append(p)
                for account_id, group in by_account.items():
                    claimed.add(account_id)
                    account = group[0].account
                    if not delivery.account_usable(account):
                        result.account_error = account.status_reason or (
                            f"account @{account.username} is {account.status}"
                        )
                        blocked.append(account_id)
                        continue
                    grant = await reserve_batch_quota(
                        session,
                        merchant_id=campaign.merchant_id,
                        account_id=account_id,
                        kind=SendKind.campaign,
                        message_ids=[p.recipient.id for p in group],
                        limits=limits,
                        now=request.now,
                    )
                    granted += group[: grant.granted]
                    if grant.frees_at is not None:
                        blocked.append(account_id)
                        frees.append(grant.frees_at)
                if not blocked:
                    break
            if frees and not granted:
                # Nothing can go out now: sleep until the first account's quota frees.
                self._wait(result, min(frees), "the account's 24 h quota is spent")
            render_failures = len(outcomes)
            jobs = await self._jobs(
                session, campaign, template, granted, credentials, outcomes, result
            )
            failed_now = [o.recipient_id for o in outcomes[render_failures:]]
            await release_batch_quota(session, list(claimed), failed_now)
            await delivery.record_outcomes(session, outcomes[render_failures:])
            await delivery.mark_sending(session, [j.pending.recipient.id for j in jobs], utcnow())
        return jobs

    async def _attach_media(
        self,
        request: SendBatchInput,
        url: str,
        jobs: list[_Job],
        result: BatchResult,
        outcomes: list[delivery.Outcome],
        released: list[tuple[uuid.UUID, uuid.UUID]],
        refused: set[uuid.UUID],
    ) -> list[_Job]:
        """Give each job its account's upload of the card's media: one the workflow holds if
        still good, else a new one (the URL fetched once for the batch). Answer the jobs that
        have it; the others are queued again with their slots given back."""
        now = utcnow()
        accounts: dict[uuid.UUID, XCredentials] = {}
        for job in jobs:
            accounts.setdefault(job.pending.account.id, job.credentials)
        refs: dict[uuid.UUID, MediaRef] = {}
        fetched: FetchedMedia | None = None
        for account_id, creds in accounts.items():
            held = request.media.get(str(account_id))
            if held is not None and held.usable_for(url, now):
                refs[account_id] = held
                continue
            try:
                if fetched is None:
                    fetched = await fetch_media(
                        url, allow_private=allow_private_hosts(self._settings)
                    )
                ref = await upload_media(self._x, creds, fetched)
            except MediaUnavailable as exc:
                result.media_error = f"the card's media cannot be sent: {exc}"
                break
            except (XForbidden, XRequestRejected) as exc:
                result.media_error = f"X refused the card's media ({url}): {exc.reason}"
                break
            except XError as exc:
                if isinstance(exc, XUnauthorized):
                    refused.add(account_id)
                self._note_error(result, exc)
                continue
            logger.info(
                "campaign.media_uploaded",
                extra={
                    "campaign_id": str(request.campaign_id),
                    "account_id": str(account_id),
                    "media_id": ref.media_id,
                    "bytes": ref.size,
                },
            )
            refs[account_id] = result.media[str(account_id)] = ref
        ready: list[_Job] = []
        for job in jobs:
            recipient = job.pending.recipient
            job.media = refs.get(recipient.account_id)
            if job.media is not None:
                ready.append(job)
            else:
                outcomes.append(delivery.Outcome(recipient.id, RecipientState.queued))
                released.append((recipient.account_id, recipient.id))
        return ready

    async def _find_at_x(self, job: _Job, *, media: bool) -> DMEvent | None:
        recipient = job.pending.recipient
        attempt_at = recipient.attempt_at or recipient.created_at
        events: list[DMEvent] = []
        token: str | None = None
        for _ in range(RECONCILE_PAGES):
            page = await asyncio.to_thread(
                self._x.list_dm_events,
                job.credentials,
                participant_id=job.pending.contact.twitter_user_id,
                pagination_token=token,
            )
            events += page.events
            token = page.next_token
            oldest = min((e.created_at for e in page.events if e.created_at), default=None)
            if token is None or (oldest is not None and oldest < attempt_at - CLOCK_SKEW):
                break
        async with self._sessions() as session:
            taken = await delivery.event_ids_taken(
                session, job.pending.contact.id, recipient.id, [e.id for e in events]
            )
        return find_delivered(
            events,
            sender_id=job.pending.account.twitter_user_id,
            text=job.text,
            queued_at=attempt_at,
            excluded_ids=taken,
            media=media,
        )

    def _note_error(self, result: BatchResult, exc: XError) -> None:
        if isinstance(exc, XUnauthorized):
            result.account_error = TOKEN_REFUSED
        elif isinstance(exc, XRateLimited):
            self._wait(result, exc.reset_at, f"X rate limit: {exc.reason}")
        else:
            # X down or the outcome unknown: a short pause, then the `sending` check.
            self._wait(result, utcnow() + _UNAVAILABLE_PAUSE, f"X unavailable: {exc.reason}")

    @staticmethod
    def _wait(result: BatchResult, until: datetime, reason: str) -> None:
        if result.wait_until is None or until > result.wait_until:
            result.wait_until = until
            result.wait_reason = reason

    async def _record(
        self,
        outcomes: Sequence[delivery.Outcome],
        released: Sequence[tuple[uuid.UUID, uuid.UUID]],
        refused: set[uuid.UUID],
    ) -> None:
        async with self._sessions() as session, session.begin():
            await delivery.record_outcomes(session, outcomes)
            await release_batch_quota(session, [a for a, _ in released], [r for _, r in released])
            if refused:
                await session.execute(
                    update(XAccount)
                    .where(col(XAccount.id).in_(list(refused)))
                    .values(
                        status=AccountStatus.error,
                        status_reason=TOKEN_REFUSED,
                        updated_at=utcnow(),
                    )
                )
                for account_id in refused:
                    logger.warning("account.token_refused", extra={"account_id": str(account_id)})

    async def _finish(
        self,
        result: BatchResult,
        request: SendBatchInput,
        outcomes: Sequence[delivery.Outcome],
    ) -> BatchResult:
        result.sent = sum(1 for o in outcomes if o.state is RecipientState.sent)
        result.failed = sum(1 for o in outcomes if o.state is RecipientState.failed)
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
                "reconciled": result.reconciled,
                "remaining": result.remaining,
            },
        )
        return result


_UNAVAILABLE_PAUSE = timedelta(seconds=2)


def _card_media_url(template: Template) -> str | None:
    card = stored_card(template)
    return card.media_url if card is not None else None


def _attachment(held: dict[str, MediaRef], job: _Job, url: str | None) -> dict[str, str] | None:
    """The media a DM found at X carried, as far as the workflow knows it (the inbox shows it)."""
    if url is None:
        return None
    ref = held.get(str(job.pending.account.id))
    return ref.attachment() if ref is not None and ref.url == url else None


def build(deps: WorkerDeps) -> list[Callable[..., Any]]:
    campaigns = CampaignActivities(deps.settings, deps.sessions, deps.x, deps.secrets)
    return [
        campaigns.begin,
        campaigns.set_status,
        campaigns.skip_remaining,
        campaigns.send_batch,
    ]
