"""Delivering queued messages to X: the second half of the one send path, the same code for a
single reply and for a campaign batch of hundreds.

For the messages asked for, in order:
1. Claim (one transaction): each still-queued message is checked again at this moment —
   the contact still exists, has not opted out (marketing kinds), the account is active and
   connected (`services.messaging.queue.refusal`) — and marked attempted (`attempt_at`) before
   anything goes to X. A refused one is settled (`skipped`: opted_out, deleted) or held (the
   account cannot send: the caller decides).
2. Reconcile: a message an earlier attempt left attempted is first looked for at X; found, it
   is recorded as sent; not found, it is claimed and sent like the others. A claim is a lease
   of CLAIM_LEASE: one claimed more recently than that is another attempt's, which may still be
   sending it (Temporal retries an activity whose heartbeat stopped while the old attempt
   still runs: a worker starved of CPU or of database connections), so it is left pending
   until the lease ends and looked for at X then; and an attempt sends a DM only in the first
   three quarters of its own lease. The two never send the same DM.
3. Media: a message's image, video or GIF is uploaded once per account (`MediaUploads`), an
   upload the caller holds reused.
4. Send, at most `concurrency` at a time; then one transaction records every outcome (and runs
   the caller's `on_settled`, e.g. a campaign's recipient rows, in the same transaction).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from integrations.x import (
    RateLimitScope,
    XClient,
    XCredentials,
    XError,
    XForbidden,
    XRateLimited,
    XRequestRejected,
    XUnauthorized,
)
from mktx import metrics
from mktx.secrets import SecretBox
from mktx.settings import Settings
from models.account import XAccount
from models.contact import Contact
from models.conversation import Message, MessageStatus
from models.db import SessionMaker, utcnow
from services.accounts.accounts import (
    TOKEN_REFUSED,
    AccountNotUsable,
    load_credentials,
    refuse_tokens,
)
from services.messaging import records
from services.messaging.media import MediaUnavailable, MediaUploads, refuses_media
from services.messaging.queue import Refusal, attached_media, dm_text, refusal
from services.messaging.reconcile import find_at_x
from workflows.contracts.messaging import (
    DeliveryResult,
    MediaRef,
    MessageOutcome,
    OutcomeState,
)

logger = logging.getLogger(__name__)

# X down or the outcome unknown: a short pause, then the attempted messages are looked for.
UNAVAILABLE_PAUSE = timedelta(seconds=2)
# How long a claim keeps another attempt from sending the message (module docstring, 2.): far
# longer than claiming and sending a batch takes, and longer than the activities' heartbeat
# timeouts (15 s: a lease of 30 s), after which Temporal tries again (`claim_lease`). An attempt stops sending a
# quarter of its lease before it ends (for its last request to reach X, and for clocks a
# little apart).
CLAIM_LEASE = timedelta(seconds=60)
MIN_LEASE = timedelta(seconds=8)


def claim_lease(heartbeat_timeout: timedelta | None) -> timedelta:
    """The lease of an activity's claims: two heartbeat timeouts (Temporal tries again after
    one of silence; a killed worker's DMs go a heartbeat timeout after that), within MIN_LEASE
    and CLAIM_LEASE (an activity without heartbeats: its retry comes after its whole timeout)."""
    if not heartbeat_timeout:
        return CLAIM_LEASE
    return min(CLAIM_LEASE, max(2 * heartbeat_timeout, MIN_LEASE))


SettleHook = Callable[[AsyncSession, Sequence[MessageOutcome]], Awaitable[None]]


@dataclass(slots=True)
class _Job:
    message: Message
    account: XAccount
    recipient_id: str
    credentials: XCredentials
    text: str
    media_url: str | None
    media_index: int = 0  # which attachment X attaches
    claimed_at: datetime | None = None  # when this run's claim (its lease) began
    media: MediaRef | None = None
    media_retried: bool = False  # X refused an upload once: uploaded again, sent again
    handed_to_x: bool = False  # its call to X has begun: it may be at X whatever happens next


class Delivery:
    """Hands queued messages to X. Built once per worker from its dependencies."""

    def __init__(
        self, sessions: SessionMaker, x: XClient, secrets: SecretBox, settings: Settings
    ) -> None:
        self._sessions = sessions
        self._x = x
        self._secrets = secrets
        self._settings = settings

    async def deliver(
        self,
        merchant_id: str,
        message_ids: Sequence[uuid.UUID],
        *,
        media: dict[str, MediaRef] | None = None,
        concurrency: int = 32,
        on_settled: SettleHook | None = None,
        beat: Callable[[], None] = lambda: None,
        lease: timedelta = CLAIM_LEASE,
    ) -> DeliveryResult:
        run = _Run(self, merchant_id, media or {}, on_settled, lease)
        try:
            return await self._deliver(run, message_ids, concurrency, beat)
        except asyncio.CancelledError:
            # The worker is stopping (SIGTERM) or the attempt was cancelled: what X took is
            # recorded and the DMs not yet handed to X are given back, so that the next
            # attempt, on another worker, sends them at once instead of waiting out the lease.
            await run.hand_over()
            raise

    async def _deliver(
        self,
        run: _Run,
        message_ids: Sequence[uuid.UUID],
        concurrency: int,
        beat: Callable[[], None],
    ) -> DeliveryResult:
        attempted = await run.claim(list(dict.fromkeys(message_ids)), check_at_x=True)
        semaphore = asyncio.Semaphore(concurrency)

        async def look(job: _Job) -> _Job | None:
            async with semaphore:
                try:
                    return await run.reconcile(job)
                finally:
                    beat()

        unsent = [j for j in await asyncio.gather(*(look(j) for j in attempted)) if j]
        if unsent:
            # Not at X: sent like new ones, after the checks of this moment.
            await run.claim([j.message.id for j in unsent], check_at_x=False)
        ready = await run.prepare_media()

        async def send(job: _Job) -> None:
            async with semaphore:
                try:
                    await run.send(job)
                finally:
                    beat()

        await asyncio.gather(*(send(job) for job in ready))
        if run.media_retry:
            run.to_send, run.media_retry = run.media_retry, []
            await asyncio.gather(*(send(job) for job in await run.prepare_media()))
        return await run.record()


class _Run:
    """One `deliver` call: what it has claimed, learned and must record."""

    def __init__(
        self,
        delivery: Delivery,
        merchant_id: str,
        media: dict[str, MediaRef],
        on_settled: SettleHook | None,
        lease: timedelta = CLAIM_LEASE,
    ) -> None:
        self.d = delivery
        self.lease = lease
        self.merchant_id = merchant_id
        self.uploads = MediaUploads(delivery._x, delivery._settings, media)
        self.on_settled = on_settled
        self.result = DeliveryResult()
        self.to_send: list[_Job] = []
        self.accepted: list[records.Accepted] = []
        self.refused: list[tuple[uuid.UUID, str]] = []
        self.released: list[records.Released] = []  # claims given back (records.py)
        self.token_refused: set[uuid.UUID] = set()
        self.media_retry: list[_Job] = []  # X refused their media: upload again, send again
        self.outcomes: dict[uuid.UUID, MessageOutcome] = {}
        self.kinds: dict[uuid.UUID, str] = {}  # each claimed message's kind (the metrics')
        self.settled_before: set[uuid.UUID] = set()  # outcomes an earlier run recorded
        # What X answered 429 to in this run, until its reset: an account, or the whole app.
        self.rate_limited: dict[uuid.UUID, XRateLimited] = {}
        self.app_limited: XRateLimited | None = None
        self.credentials: dict[uuid.UUID, XCredentials | None] = {}

    # 1. Claim ---------------------------------------------------------------------------------

    async def claim(self, message_ids: list[uuid.UUID], *, check_at_x: bool) -> list[_Job]:
        """Lock the messages, settle what is settled or refused, mark the rest attempted;
        answers the jobs to look for at X first (when `check_at_x`)."""
        if not message_ids:
            return []
        attempted: list[_Job] = []
        now = utcnow()
        async with self.d._sessions() as session, session.begin():
            rows = await session.execute(
                select(Message, Contact, XAccount)
                .join(XAccount, col(XAccount.id) == col(Message.account_id))
                .outerjoin(Contact, col(Contact.id) == col(Message.contact_id))
                .where(
                    col(Message.id).in_(message_ids), col(Message.merchant_id) == self.merchant_id
                )
                .with_for_update(of=Message)  # type: ignore[arg-type]
            )
            found = {m.id: (m, c, a) for m, c, a in rows.tuples()}
            claimed: list[uuid.UUID] = []
            for message_id in message_ids:
                if message_id not in found:  # erased with its contact
                    self._outcome(message_id, OutcomeState.skipped, Refusal.deleted.value)
                    continue
                message, contact, account = found[message_id]
                self.kinds[message_id] = str(message.kind or "unknown")
                if message.twitter_message_id is not None:
                    self.settled_before.add(message_id)
                    self._outcome(
                        message_id,
                        OutcomeState.sent,
                        dm_event_id=message.twitter_message_id,
                        sent_at=message.sent_at,
                    )
                    continue
                if message.status != MessageStatus.queued:
                    self.settled_before.add(message_id)
                    self._outcome(message_id, OutcomeState.failed, message.error or "not sent")
                    continue
                # A message an earlier attempt may have delivered is looked for at X before
                # consent is asked again: what X has is recorded as sent, whatever came since.
                look_first = check_at_x and message.attempt_at is not None
                if look_first and message.attempt_at is not None:
                    leased_until = _aware(message.attempt_at) + self.lease
                    if leased_until > now:  # another attempt's, maybe sending it right now
                        self._wait(leased_until, "another attempt is sending it", "claimed")
                        self._outcome(message_id, OutcomeState.pending, "claimed by an attempt")
                        continue
                refused = refusal(None if look_first else message.kind, contact, account)
                credentials = None
                if refused is None:
                    credentials = await self._credentials(session, account)
                    if credentials is None:
                        refused = (Refusal.account_unusable, "the account has no usable token")
                if refused is not None:
                    self._refuse(message, account, *refused)
                    continue
                assert contact is not None and credentials is not None
                media_url, media_index = _media_of(message)
                job = _Job(
                    message=message,
                    account=account,
                    recipient_id=contact.twitter_user_id,
                    credentials=credentials,
                    text=dm_text(message.content, message.attachments),
                    media_url=media_url,
                    media_index=media_index,
                )
                if look_first:
                    attempted.append(job)
                else:
                    job.claimed_at = now
                    claimed.append(message_id)
                    self.to_send.append(job)
            await records.mark_attempted(session, claimed, now)
            # Settled with the claim: `record` writes only what sending itself refuses.
            await records.record_refused(session, self.refused)
            self.refused.clear()
        return attempted

    def _refuse(self, message: Message, account: XAccount, reason: Refusal, detail: str) -> None:
        if reason is Refusal.account_unusable:
            self.result.account_error = detail or f"account @{account.username} is not usable"
            self._outcome(message.id, OutcomeState.held, detail, error_type=reason.value)
            return
        self.refused.append((message.id, f"not sent: {detail} ({reason.value})"))
        self._outcome(message.id, OutcomeState.skipped, reason.value, error_type=reason.value)

    async def _credentials(self, session: AsyncSession, account: XAccount) -> XCredentials | None:
        if account.id not in self.credentials:
            try:
                _, creds = await load_credentials(
                    session, self.d._secrets, account.id, allow_disconnected=False
                )
            except AccountNotUsable:
                creds = None
            self.credentials[account.id] = creds
        return self.credentials[account.id]

    # 2. Reconcile -----------------------------------------------------------------------------

    async def reconcile(self, job: _Job) -> _Job | None:
        """Found at X: recorded as sent. Answers the job when X does not have it."""
        try:
            async with self.d._sessions() as session:
                event = await find_at_x(
                    session,
                    self.d._x,
                    job.credentials,
                    job.message,
                    sender_id=job.account.twitter_user_id,
                    recipient_id=job.recipient_id,
                    text=job.text,
                    media=job.media_url is not None,
                )
        except XError as exc:
            self._x_failed(job, exc, taken_unknown=True)  # still attempted: looked at again
            return None
        if event is None:
            return job
        at = event.created_at or utcnow()
        self._accept(job, event.id, at, reconciled=True)
        logger.info(
            "message.reconciled", extra={"message_id": str(job.message.id), "dm_event_id": event.id}
        )
        return None

    # 3. Media ---------------------------------------------------------------------------------

    async def prepare_media(self) -> list[_Job]:
        """Give each job with media its account's upload; answers the jobs ready to send."""
        ready: list[_Job] = []
        now = utcnow()
        for job in self.to_send:
            if job.media_url is None:
                ready.append(job)
                continue
            try:
                job.media = await self.uploads.for_account(
                    str(job.account.id), job.credentials, job.media_url, now
                )
            except MediaUnavailable as exc:
                self._media_refused(job, str(exc), f"attachments[{job.media_index}].url: {exc}")
                continue
            except (XForbidden, XRequestRejected) as exc:
                self._media_refused(job, exc.reason, f"X refused the media: {exc.reason}")
                continue
            except XError as exc:
                self._x_failed(job, exc, taken_unknown=False)
                continue
            ready.append(job)
        return ready

    def _media_refused(self, job: _Job, cause: str, reason: str) -> None:
        # Never sent without its media: held until someone fixes it (or the caller fails it).
        # `media_error` names the cause alone: a campaign says which of its parts it is.
        self.result.media_error = cause
        self._release(job, maybe_at_x=False)
        self._outcome(
            job.message.id, OutcomeState.held, reason, error_type="MediaUnavailable", cause=cause
        )

    # 4. Send ----------------------------------------------------------------------------------

    async def send(self, job: _Job) -> None:
        if job.claimed_at is None or utcnow() >= job.claimed_at + self.lease * 0.75:
            # This run's lease is (nearly) over: another attempt may claim it now. Not sent;
            # still attempted, so the next attempt looks for it at X first, then sends it.
            self._wait(utcnow() + UNAVAILABLE_PAUSE, "the claim ran out before sending", "claimed")
            self._outcome(job.message.id, OutcomeState.pending, "the claim ran out")
            return
        limited = self.app_limited or self.rate_limited.get(job.account.id)
        if limited is not None:
            # X said no until its reset (the account's window or 24 h cap, or the app's cap):
            # the account's other DMs of this run wait for it too, unsent.
            self._x_failed(job, limited, taken_unknown=False)
            return
        job.handed_to_x = True
        try:
            sent = await asyncio.to_thread(
                self.d._x.send_dm,
                job.credentials,
                job.recipient_id,
                job.text,
                job.media.media_id if job.media else None,
            )
        except (XForbidden, XRequestRejected) as exc:
            if job.media is not None and refuses_media(exc):
                if job.media_retried:
                    self._media_refused(job, exc.reason, f"X refused the media: {exc.reason}")
                    return
                # X no longer takes the upload (expired early, say): uploaded again, and the
                # DM sent once more in this same delivery.
                job.media_retried = True
                job.handed_to_x = False  # X refused it: certainly not taken
                self.uploads.drop(str(job.account.id))
                self.media_retry.append(job)
                return
            self.refused.append((job.message.id, exc.reason))
            self._outcome(
                job.message.id,
                OutcomeState.failed,
                exc.reason,
                x_status=exc.status,
                error_type=type(exc).__name__,
            )
            return
        except XRateLimited as exc:  # X certainly did not take it
            if exc.scope is RateLimitScope.app_day:
                self.app_limited = exc
            else:
                self.rate_limited[job.account.id] = exc
            self._x_failed(job, exc, taken_unknown=False)
            return
        except XError as exc:
            self._x_failed(job, exc, taken_unknown=True)
            return
        self._accept(job, sent.dm_event_id, utcnow())

    def _accept(self, job: _Job, event_id: str, at: datetime, *, reconciled: bool = False) -> None:
        attachment = (job.media_index, job.media.attachment()) if job.media else None
        self.accepted.append(
            records.Accepted(job.message.id, job.account.id, event_id, at, attachment)
        )
        self._outcome(
            job.message.id,
            OutcomeState.sent,
            dm_event_id=event_id,
            sent_at=at,
            reconciled=reconciled,
        )

    def _x_failed(self, job: _Job, exc: XError, *, taken_unknown: bool) -> None:
        """X did not answer yes: the token refused (held), rate-limited (pending until X's
        reset), or down / the outcome unknown (pending, looked for at X next time)."""
        message_id = job.message.id
        kind = type(exc).__name__
        if isinstance(exc, XUnauthorized):
            self.token_refused.add(job.account.id)
            self.result.account_error = TOKEN_REFUSED
            self._release(job, maybe_at_x=False)
            self._outcome(message_id, OutcomeState.held, TOKEN_REFUSED, exc.status, kind)
            return
        if isinstance(exc, XRateLimited):
            self._release(job, maybe_at_x=False)
            self._wait(
                exc.reset_at, f"X rate limit ({exc.scope.value}): {exc.reason}", "rate_limit"
            )
        else:
            self._release(job, maybe_at_x=taken_unknown)
            self._wait(utcnow() + UNAVAILABLE_PAUSE, f"X unavailable: {exc.reason}", "unavailable")
        self._outcome(message_id, OutcomeState.pending, exc.reason, exc.status, kind)

    def _release(self, job: _Job, *, maybe_at_x: bool) -> None:
        """Give back this run's claim of the job (none: looked for at X, not claimed here)."""
        if job.claimed_at is not None:
            self.released.append(records.Released(job.message.id, job.claimed_at, maybe_at_x))

    def _wait(self, until: datetime, reason: str, cause: str) -> None:
        metrics.SEND_WAITS.inc(reason=cause)
        if self.result.wait_until is None or until > self.result.wait_until:
            self.result.wait_until, self.result.wait_reason = until, reason

    def _outcome(
        self,
        message_id: uuid.UUID,
        state: OutcomeState,
        reason: str | None = None,
        x_status: int | None = None,
        error_type: str | None = None,
        **values: object,
    ) -> None:
        self.outcomes[message_id] = MessageOutcome(
            message_id=message_id,
            state=state,
            reason=reason,
            x_status=x_status,
            error_type=error_type,
            **values,  # type: ignore[arg-type]
        )

    # Record -----------------------------------------------------------------------------------

    async def hand_over(self) -> None:
        """Cut short: record what is known and give back the claims of the DMs never handed to
        X. A DM whose call was under way keeps its claim: the call's thread may still reach X,
        so the next attempt looks for it there once the lease has run out."""
        for job in self.to_send:
            if job.message.id not in self.outcomes and not job.handed_to_x:
                self._release(job, maybe_at_x=False)
                self._outcome(job.message.id, OutcomeState.pending, "handed over")
        await self.record()

    async def record(self) -> DeliveryResult:
        outcomes = list(self.outcomes.values())
        self.result.media = dict(self.uploads.uploaded)
        self.result.media_dropped = [
            a for a in self.uploads.dropped if a not in self.uploads.uploaded
        ]
        async with self.d._sessions() as session, session.begin():
            await records.record_accepted(session, self.accepted)
            await records.record_refused(session, self.refused)
            await records.release_claims(session, self.released, self.lease)
            await refuse_tokens(session, sorted(self.token_refused))
            if self.on_settled is not None:
                await self.on_settled(session, outcomes)
        self.result.outcomes = outcomes
        for outcome in outcomes:
            if outcome.state is not OutcomeState.pending and (
                outcome.message_id not in self.settled_before
            ):
                kind = self.kinds.get(outcome.message_id, "unknown")
                metrics.DMS.inc(kind=kind, outcome=outcome.state.value)
            if outcome.state in (OutcomeState.sent, OutcomeState.failed, OutcomeState.skipped):
                logger.info(
                    f"message.{outcome.state.value}",
                    extra={"message_id": str(outcome.message_id), "reason": outcome.reason},
                )
        return self.result


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _media_of(message: Message) -> tuple[str | None, int]:
    """The URL of the media X attaches to the message, and its index among the attachments."""
    found = attached_media(message.attachments)
    if found is None:
        return None, 0
    return str(found[1]["url"]), found[0]
