"""Test sends: a campaign's message rendered with the given variables and sent now to listed
contacts (allowed in draft). Each goes through the quota ledger, is stored as a
`CampaignTestSend` (never a recipient), and so never counts in the metrics. What X took is
also an outbound message of the contact's conversation, like the campaign's own DMs."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from integrations.x import XClient, XCredentials, XError
from mktx.secrets import SecretBox
from mktx.settings import Settings
from models.account import XAccount
from models.campaign import Campaign, CampaignTestResult, CampaignTestSend, RecipientState
from models.contact import Contact
from models.db import utcnow
from models.quota import SendKind
from models.template import Template
from services.accounts.accounts import AccountNotUsable, load_credentials
from services.campaigns.delivery import CampaignDM, account_usable, record_in_inbox
from services.campaigns.links import redirect_base, rewrite_links, store_links
from services.core.errors import BadRequest, ValidationFailed
from services.messaging.media import (
    FetchedMedia,
    MediaRef,
    MediaUnavailable,
    allow_private_hosts,
    fetch_media,
    upload_media,
)
from services.messaging.outbound import quota_error
from services.messaging.quota import (
    QuotaExhausted,
    limits_from_settings,
    release_send_quota,
    reserve_send_quota,
)
from services.templates.templates import TemplateRenderError, render_for_contact, stored_card

logger = logging.getLogger(__name__)


async def send_tests(
    session: AsyncSession,
    *,
    settings: Settings,
    x: XClient,
    secrets: SecretBox,
    campaign: Campaign,
    contact_ids: list[uuid.UUID],
    variables: Mapping[str, Any],
) -> list[CampaignTestResult]:
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
    media = _CardMedia(settings, x, card.media_url) if card and card.media_url else None
    base = redirect_base(settings)
    results: list[CampaignTestResult] = []
    delivered: list[CampaignDM] = []  # what X took: shown in the contacts' conversations
    for contact_id in wanted:
        contact = contacts[contact_id]
        test = CampaignTestSend(
            merchant_id=campaign.merchant_id,
            campaign_id=campaign.id,
            contact_id=contact.id,
            text="",
        )
        try:
            rendered = render_for_contact(template, contact, values)
        except TemplateRenderError as exc:
            test.text, test.state, test.error = "", RecipientState.failed, str(exc)
            session.add(test)
            results.append(_result(test))
            continue
        text, links = rewrite_links(
            rendered.text, base=base, owner_id=test.id, recipient_id=None, contact_id=contact.id
        )
        test.text = text
        account = await session.get(XAccount, contact.account_id)
        if account is None or not account_usable(account):
            test.state, test.error = RecipientState.failed, "the contact's X account is not usable"
            session.add(test)
            results.append(_result(test))
            continue
        try:
            reservation = await reserve_send_quota(
                session,
                merchant_id=campaign.merchant_id,
                account_id=account.id,
                kind=SendKind.campaign,
                limits=limits_from_settings(settings),
                message_id=test.id,
            )
        except QuotaExhausted as exc:
            raise quota_error(exc) from None
        await store_links(session, campaign.merchant_id, campaign.id, links)
        try:
            _, credentials = await load_credentials(
                session, secrets, account.id, allow_disconnected=False
            )
            ref = await media.for_account(account.id, credentials) if media else None
            sent = await asyncio.to_thread(
                x.send_dm,
                credentials,
                contact.twitter_user_id,
                text,
                ref.media_id if ref else None,
            )
        except (XError, AccountNotUsable, MediaUnavailable) as exc:
            await release_send_quota(session, reservation.id)
            test.state = RecipientState.failed
            if isinstance(exc, MediaUnavailable):
                test.error = f"the card's media {exc}"  # nothing sent without it
            else:
                test.error = getattr(exc, "reason", None) or str(exc)
        else:
            test.state, test.dm_event_id = RecipientState.sent, sent.dm_event_id
            delivered.append(
                CampaignDM(
                    merchant_id=campaign.merchant_id,
                    account_id=account.id,
                    contact_id=contact.id,
                    campaign_id=campaign.id,
                    dm_event_id=sent.dm_event_id,
                    text=text,
                    sent_at=utcnow(),
                    attachments=(ref.attachment(),) if ref else (),
                )
            )
        session.add(test)
        results.append(_result(test, rendered=text))
    await session.flush()
    await record_in_inbox(session, delivered)
    logger.info(
        "campaign.test_sent", extra={"campaign_id": str(campaign.id), "contacts": len(results)}
    )
    return results


class _CardMedia:
    """The card's media for test sends: fetched once, uploaded once per account; a failure
    fails the tests of that account with the reason (none goes out without its image)."""

    def __init__(self, settings: Settings, x: XClient, url: str) -> None:
        self._settings = settings
        self._x = x
        self._url = url
        self._fetched: FetchedMedia | MediaUnavailable | None = None
        self._refs: dict[uuid.UUID, MediaRef | MediaUnavailable] = {}

    async def for_account(self, account_id: uuid.UUID, credentials: XCredentials) -> MediaRef:
        if self._fetched is None:
            try:
                self._fetched = await fetch_media(
                    self._url, allow_private=allow_private_hosts(self._settings)
                )
            except MediaUnavailable as exc:
                self._fetched = exc
        if isinstance(self._fetched, MediaUnavailable):
            raise self._fetched
        if account_id not in self._refs:
            try:
                self._refs[account_id] = await upload_media(self._x, credentials, self._fetched)
            except XError as exc:
                self._refs[account_id] = MediaUnavailable(
                    self._url, f"could not be uploaded to X: {exc}"
                )
        ref = self._refs[account_id]
        if isinstance(ref, MediaUnavailable):
            raise ref
        return ref


def _result(test: CampaignTestSend, rendered: str | None = None) -> CampaignTestResult:
    assert test.contact_id is not None
    return CampaignTestResult(
        contact_id=test.contact_id,
        status=RecipientState(test.state),
        dm_event_id=test.dm_event_id,
        error=test.error,
        rendered=rendered,
    )
