"""Test sends: a campaign's message rendered with the given variables and sent now to listed
contacts (allowed in draft). Each goes through the one send path — queued with its quota slot
and the checks of the moment, then delivered durably by its own SendMessageWorkflow, exactly
once — and is stored as a `CampaignTestSend` (never a recipient), so it never counts in the
metrics. The answer waits a little for the deliveries and says how each went; one still on
its way when the wait ends is `queued` (it is delivered all the same)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import Client

from mktx.settings import Settings
from models.campaign import Campaign, CampaignTestResult, CampaignTestSend, RecipientState
from models.contact import Contact
from models.conversation import Message
from models.quota import SendKind
from models.template import Template
from services.campaigns.links import redirect_base, rewrite_links, store_links
from services.core.errors import BadRequest, ValidationFailed
from services.messaging import OutgoingDM, Refusal, queue_messages, quota_error, start_delivery
from services.messaging.queue import card_attachments
from services.templates.templates import TemplateRenderError, render_for_contact, stored_card
from workflows.contracts.messaging import MediaRef, SendMessageResult, SendOutcome

logger = logging.getLogger(__name__)

# How long the answer waits for the deliveries (X answers in well under a second).
ANSWER_WAIT = timedelta(seconds=20)


async def send_tests(
    session: AsyncSession,
    *,
    settings: Settings,
    temporal: Client,
    campaign: Campaign,
    contact_ids: list[uuid.UUID],
    variables: Mapping[str, Any],
    wait: timedelta = ANSWER_WAIT,
) -> list[CampaignTestResult]:
    """Queue, commit, deliver and wait; the tests' rows are committed with what is known."""
    if campaign.template_id is None:
        raise BadRequest("the campaign has no template", details={"field": "templateId"})
    template = await session.get(Template, campaign.template_id)
    if template is None:
        raise BadRequest(
            "the campaign's template no longer exists", details={"field": "templateId"}
        )
    wanted = list(dict.fromkeys(contact_ids))
    contacts = {
        c.id: c
        for c in (
            await session.exec(
                select(Contact).where(
                    col(Contact.id).in_(wanted), col(Contact.merchant_id) == campaign.merchant_id
                )
            )
        ).all()
    }
    for i, contact_id in enumerate(wanted):
        if contact_id not in contacts:
            raise ValidationFailed(f"contactIds[{i}]", f"no contact {contact_id}")
    values = {**campaign.variables, **variables}
    card = stored_card(template)
    attachments = card_attachments(card.media_url if card else None)
    base = redirect_base(settings)
    tests: dict[uuid.UUID, CampaignTestSend] = {}
    dms: list[OutgoingDM] = []
    for contact_id in wanted:
        contact = contacts[contact_id]
        test = CampaignTestSend(
            merchant_id=campaign.merchant_id,
            campaign_id=campaign.id,
            contact_id=contact.id,
            text="",
        )
        tests[contact_id] = test
        try:
            rendered = render_for_contact(template, contact, values)
        except TemplateRenderError as exc:
            test.state, test.error = RecipientState.failed, str(exc)
            continue
        test.text, links = rewrite_links(
            rendered.text, base=base, owner_id=test.id, recipient_id=None, contact_id=contact.id
        )
        await store_links(session, campaign.merchant_id, campaign.id, links)
        dms.append(
            OutgoingDM(
                kind=SendKind.campaign,
                contact_id=contact.id,
                content=test.text,
                attachments=attachments,
                campaign_id=campaign.id,
            )
        )
    queued = await queue_messages(session, settings, campaign.merchant_id, dms)
    for refused in queued.refused:
        if refused.quota is not None:
            raise quota_error(refused.quota)
        test = tests[refused.dm.contact_id]
        test.state = (
            RecipientState.skipped
            if refused.reason
            in (
                Refusal.opted_out,
                Refusal.deleted,
            )
            else RecipientState.failed
        )
        test.error = f"{refused.detail} ({refused.reason.value})"
    for dm in queued.queued:
        tests[dm.contact_id].message_id = dm.message_id
    session.add_all(tests.values())
    # The deliveries read the messages: committed before they start.
    await session.commit()
    outcomes = await _deliver(
        temporal, settings, session, [dm.message_id for dm in queued.queued], wait
    )
    for test in tests.values():
        outcome = outcomes.get(test.message_id) if test.message_id else None
        if outcome is None:
            continue
        if outcome.outcome is SendOutcome.sent:
            test.state, test.dm_event_id = RecipientState.sent, outcome.twitter_message_id
        elif outcome.cause is not None:  # nothing goes out without the card's media
            test.state, test.error = RecipientState.failed, f"the card's media {outcome.cause}"
        else:
            test.state, test.error = RecipientState.failed, outcome.reason
    session.add_all(tests.values())
    await session.flush()
    logger.info(
        "campaign.test_sent", extra={"campaign_id": str(campaign.id), "contacts": len(tests)}
    )
    return [_result(test) for test in tests.values()]


async def _deliver(
    temporal: Client,
    settings: Settings,
    session: AsyncSession,
    message_ids: list[uuid.UUID],
    wait: timedelta,
) -> dict[uuid.UUID, SendMessageResult]:
    """Start each delivery and wait for them, up to `wait`. A delivery that could not be
    started (Temporal away) is started by the maintenance schedule's sweep; one not done in
    time goes on. Answers the results known by then."""
    rows = await session.exec(select(Message).where(col(Message.id).in_(message_ids)))
    messages = list(rows.all())
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait.total_seconds()

    async def one(
        message: Message, media: dict[str, MediaRef]
    ) -> tuple[uuid.UUID, SendMessageResult | None]:
        try:
            handle = await start_delivery(temporal, settings, message, media=media)
            left = max(0.0, deadline - loop.time())
            return message.id, await asyncio.wait_for(handle.result(), left)
        except Exception as exc:  # Temporal away or slow: the message stays queued, swept later
            logger.warning(
                "campaign.test_send_pending",
                extra={"message_id": str(message.id), "error": f"{type(exc).__name__}: {exc}"},
            )
            return message.id, None

    # A card's media: the first DM of each account uploads it, the others attach that upload.
    first: dict[uuid.UUID, Message] = {}
    for message in messages:
        if message.attachments:
            first.setdefault(message.account_id, message)
    done = list(await asyncio.gather(*(one(m, {}) for m in first.values())))
    held: dict[str, MediaRef] = {}
    for _, result in done:
        if result is not None:
            held.update(result.media)
    rest = [m for m in messages if m not in first.values()]
    done += await asyncio.gather(*(one(m, held) for m in rest))
    return {message_id: result for message_id, result in done if result is not None}


def _result(test: CampaignTestSend) -> CampaignTestResult:
    assert test.contact_id is not None
    return CampaignTestResult(
        contact_id=test.contact_id,
        status=RecipientState(test.state),
        dm_event_id=test.dm_event_id,
        error=test.error,
        rendered=test.text or None,
    )
