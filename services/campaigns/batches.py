"""Claiming a campaign batch: queued recipients rendered (links tracked) and queued through the
one send path (`services.messaging.queue_messages`, which checks consent, the account and the
quota at this moment). What it refuses is settled here: an opted-out or erased contact is
`skipped` with the reason; a recipient whose account cannot send or whose quota is spent stays
queued, and the batch says why (pause, or sleep until the quota frees)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime

from sqlmodel.ext.asyncio.session import AsyncSession

from mktx.settings import Settings
from models.campaign import Campaign, RecipientState
from models.db import utcnow
from models.quota import SendKind
from models.template import Template
from services.campaigns import delivery
from services.campaigns.links import PendingLink, redirect_base, rewrite_links, store_links
from services.messaging import OutgoingDM, Refusal, queue_messages
from services.messaging.queue import card_attachments
from services.templates.templates import TemplateRenderError, render_for_contact, stored_card

# Rounds of claiming per batch: a round that meets a spent or unusable account leaves that
# account out of the next, so one account does not hold back the recipients of the others.
CLAIM_ROUNDS = 3


@dataclass(slots=True)
class Claim:
    message_ids: list[uuid.UUID] = field(default_factory=list)  # queued, to deliver now
    failed: int = 0  # could not be rendered
    skipped: int = 0  # opted out or erased since the snapshot
    account_error: str | None = None  # an account cannot send: pause with this reason
    frees_at: datetime | None = None  # nothing claimable before the first quota frees


async def claim_batch(
    session: AsyncSession,
    settings: Settings,
    campaign: Campaign,
    template: Template,
    *,
    occurrence: int,
    room: int,
    now: datetime,
) -> Claim:
    """Claim up to `room` queued recipients in the caller's transaction. `now` is the
    workflow's clock (the quota window moves with durable timers)."""
    claim = Claim()
    card = stored_card(template)
    attachments = card_attachments(card.media_url if card else None)
    base = redirect_base(settings)
    blocked: list[uuid.UUID] = []
    seen: list[uuid.UUID] = []  # recipients looked at in an earlier round
    frees: list[datetime] = []
    claimed: list[tuple[uuid.UUID, uuid.UUID]] = []
    links: dict[uuid.UUID, list[PendingLink]] = {}
    settled: list[delivery.Outcome] = []
    for _ in range(CLAIM_ROUNDS):
        want = room - len(claimed)
        if want <= 0:
            break
        candidates = await delivery.claimable(session, campaign.id, occurrence, want, blocked, seen)
        if not candidates:
            break
        seen += [p.recipient.id for p in candidates]
        dms: dict[uuid.UUID, tuple[OutgoingDM, delivery.Pending]] = {}
        for p in candidates:
            try:
                rendered = render_for_contact(template, p.contact, campaign.variables)
            except TemplateRenderError as exc:
                settled.append(delivery.Outcome(p.recipient.id, RecipientState.failed, str(exc)))
                claim.failed += 1
                continue
            text, found = rewrite_links(
                rendered.text,
                base=base,
                owner_id=p.recipient.id,
                recipient_id=p.recipient.id,
                contact_id=p.contact.id,
            )
            links[p.recipient.id] = found
            dm = OutgoingDM(
                kind=SendKind.campaign,
                contact_id=p.contact.id,
                content=text,
                attachments=attachments,
                campaign_id=campaign.id,
            )
            dms[dm.message_id] = (dm, p)
        queued = await queue_messages(
            session,
            settings,
            campaign.merchant_id,
            [dm for dm, _ in dms.values()],
            now=now,
            loaded={p.contact.id: (p.contact, p.account) for _, p in dms.values()},
        )
        claimed += [(dms[dm.message_id][1].recipient.id, dm.message_id) for dm in queued.queued]
        for refused in queued.refused:
            pending = dms[refused.dm.message_id][1]
            if refused.reason in (Refusal.opted_out, Refusal.deleted):
                settled.append(
                    delivery.Outcome(
                        pending.recipient.id, RecipientState.skipped, refused.reason.value
                    )
                )
                claim.skipped += 1
                continue
            if pending.account.id not in blocked:
                blocked.append(pending.account.id)
            if refused.reason is Refusal.account_unusable:
                claim.account_error = refused.detail
            elif refused.quota is not None:
                frees.append(refused.quota.frees_at)
        if not blocked:
            break
    await store_links(
        session,
        campaign.merchant_id,
        campaign.id,
        [link for recipient_id, _ in claimed for link in links.get(recipient_id, [])],
    )
    await delivery.record_outcomes(session, settled)
    await delivery.mark_claimed(session, claimed, utcnow())
    claim.message_ids = [message_id for _, message_id in claimed]
    if frees and not claimed:
        claim.frees_at = min(frees)
    return claim
