"""Tracked links: every URL in a campaign message becomes `{public base}/r/{code}`, one code per
recipient and URL, so a click is attributed to the recipient (counted once per recipient).

Codes are derived from (recipient, URL): rendering the same message twice (a retried send)
gives the same text, which the exactly-once check compares against X's DM events.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass

from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from mktx.settings import Settings
from models.campaign import CampaignRecipient, TrackedLink
from models.db import utcnow

REDIRECT_PREFIX = "/r/"
_URL = re.compile(r"https?://[^\s<>\"']+")
_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
CODE_LENGTH = 12  # 62^12 ≈ 3e21: unguessable enough for click counting


def redirect_base(settings: Settings) -> str:
    return (settings.public_url or settings.api_url).rstrip("/") + REDIRECT_PREFIX


def link_code(owner_id: uuid.UUID, url: str) -> str:
    digest = int.from_bytes(hashlib.sha256(f"{owner_id}|{url}".encode()).digest()[:16], "big")
    chars = []
    for _ in range(CODE_LENGTH):
        digest, index = divmod(digest, len(_ALPHABET))
        chars.append(_ALPHABET[index])
    return "".join(chars)


@dataclass(frozen=True, slots=True)
class PendingLink:
    code: str
    url: str
    recipient_id: uuid.UUID | None
    contact_id: uuid.UUID | None


def rewrite_links(
    text: str,
    *,
    base: str,
    owner_id: uuid.UUID,
    recipient_id: uuid.UUID | None,
    contact_id: uuid.UUID | None,
) -> tuple[str, list[PendingLink]]:
    """The text with each URL replaced by its tracked link, and the links to store."""
    links: list[PendingLink] = []

    def substitute(match: re.Match[str]) -> str:
        url = match.group(0).rstrip(".,;:!?)")
        tail = match.group(0)[len(url) :]
        if url.startswith(base):
            return match.group(0)  # already tracked
        code = link_code(owner_id, url)
        links.append(PendingLink(code, url, recipient_id, contact_id))
        return base + code + tail

    return _URL.sub(substitute, text), links


async def store_links(
    session: AsyncSession, merchant_id: str, campaign_id: uuid.UUID, links: list[PendingLink]
) -> None:
    if not links:
        return
    rows = {
        link.code: {
            "code": link.code,
            "merchant_id": merchant_id,
            "campaign_id": campaign_id,
            "recipient_id": link.recipient_id,
            "contact_id": link.contact_id,
            "url": link.url,
            "clicks": 0,
            "created_at": utcnow(),
        }
        for link in links
    }
    await session.execute(
        pg_insert(TrackedLink).values(list(rows.values())).on_conflict_do_nothing()
    )


async def follow(session: AsyncSession, code: str) -> str | None:
    """Count a click and answer where it goes (None: no such link). The recipient's first click
    sets `clicked_at`; later clicks only add to the link's counter."""
    now = utcnow()
    row = (
        await session.execute(
            update(TrackedLink)
            .where(col(TrackedLink.code) == code)
            .values(
                clicks=col(TrackedLink.clicks) + 1,
                first_clicked_at=func_coalesce(col(TrackedLink.first_clicked_at), now),
            )
            .returning(col(TrackedLink.url), col(TrackedLink.recipient_id))
        )
    ).first()
    if row is None:
        return None
    url, recipient_id = row
    if recipient_id is not None:
        await session.execute(
            update(CampaignRecipient)
            .where(
                col(CampaignRecipient.id) == recipient_id,
                col(CampaignRecipient.clicked_at).is_(None),
            )
            .values(clicked_at=now)
        )
    return str(url)


def func_coalesce(*args: object) -> object:
    from sqlalchemy import func

    return func.coalesce(*args)
