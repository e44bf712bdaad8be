"""Contact Management: read, edit and tag a merchant's contacts.

Listing lives in `services/contacts/listing.py`, erasure in `services/contacts/erasure.py`, bulk
import in `services/contacts/importing.py`.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import text
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import SelectOfScalar

from models.contact import Contact, ContactEngagement, ContactUpdate
from models.conversation import Conversation, ConversationStatus
from services.contacts.fields import check_attributes, normalise_tag, normalise_tags
from services.core.errors import NotFound, ValidationFailed
from services.core.tenancy import get_owned, owned_by


async def get_contact(
    session: AsyncSession, merchant_id: str, contact_id: uuid.UUID, *, for_update: bool = False
) -> Contact:
    return await get_owned(
        session, Contact, merchant_id, contact_id, resource="contact", for_update=for_update
    )


# A contact's conversations -----------------------------------------------------------------


def conversations_statement(
    contact: Contact, status: ConversationStatus | None
) -> SelectOfScalar[Conversation]:
    statement = owned_by(Conversation, contact.merchant_id).where(
        Conversation.contact_id == contact.id
    )
    if status is not None:
        statement = statement.where(Conversation.status == status)
    return statement.order_by(
        col(Conversation.last_message_at).desc().nulls_last(),
        col(Conversation.started_at).desc(),
        col(Conversation.id),
    )


# Engagement ---------------------------------------------------------------------------------

# A response time is measured from the first inbound message the contact sent after our last
# reply (or at the start of the conversation) to our next outbound message in that
# conversation: how long the contact waited. Follow-ups sent while waiting do not restart the
# clock. Failed sends reached nobody and count for nothing.
_ENGAGEMENT = text(
    """
    WITH thread AS (
        SELECT
            direction,
            sent_at,
            lag(direction) OVER (PARTITION BY conversation_id ORDER BY sent_at, id) AS previous,
            min(sent_at) FILTER (WHERE direction = 'outbound') OVER (
                PARTITION BY conversation_id ORDER BY sent_at DESC, id DESC
                ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
            ) AS next_reply_at
        FROM messages
        WHERE merchant_id = :merchant_id
          AND contact_id = :contact_id
          AND NOT (direction = 'outbound' AND status = 'failed')
    )
    SELECT
        count(*) FILTER (WHERE direction = 'outbound') AS sent,
        count(*) FILTER (WHERE direction = 'inbound') AS received,
        extract(epoch FROM avg(next_reply_at - sent_at) FILTER (
            WHERE direction = 'inbound'
              AND previous IS DISTINCT FROM 'inbound'
              AND next_reply_at IS NOT NULL
        )) AS average_seconds
    FROM thread
    """
)


async def engagement(session: AsyncSession, contact: Contact) -> ContactEngagement:
    row = (
        await session.execute(
            _ENGAGEMENT, {"merchant_id": contact.merchant_id, "contact_id": contact.id}
        )
    ).one()
    seconds = None if row.average_seconds is None else float(row.average_seconds)
    return ContactEngagement(
        messages_sent=row.sent,
        messages_received=row.received,
        average_response_time=None if seconds is None else format_duration(seconds),
        average_response_seconds=None if seconds is None else round(seconds, 3),
    )


def format_duration(seconds: float) -> str:
    """45 -> "45s", 330 -> "5m 30s", 7500 -> "2h 5m", 97200 -> "1d 3h" (two units at most)."""
    total = max(0, round(seconds))
    days, rest = divmod(total, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    units = [(days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")]
    first = next((i for i, (value, _) in enumerate(units) if value), len(units) - 1)
    shown = [f"{value}{unit}" for value, unit in units[first : first + 2] if value]
    return " ".join(shown) or "0s"


# Changes ------------------------------------------------------------------------------------
# Callers load the contact with for_update=True, so read-modify-write cannot lose a change.


def update_contact(contact: Contact, body: ContactUpdate) -> None:
    changes = body.model_dump(exclude_unset=True)
    if not changes:
        raise ValidationFailed("body", "send displayName and/or attributes")
    if "display_name" in changes:
        name: str | None = changes["display_name"]
        # Whitespace-only clears the name, like null.
        contact.display_name = " ".join(name.split()) or None if name else None
    if changes.get("attributes") is not None:
        # Same as jsonb `||`: top-level keys are added or replaced, others are kept.
        merged: dict[str, Any] = {**contact.attributes, **changes["attributes"]}
        contact.attributes = check_attributes(merged)
    elif "attributes" in changes:
        raise ValidationFailed("attributes", "must be an object (use {} to change nothing)")


def add_tags(contact: Contact, raw_tags: list[str]) -> None:
    """Existing tags keep their place; new ones follow in the order given."""
    new = [tag for tag in normalise_tags(raw_tags) if tag not in contact.tags]
    if new:
        contact.tags = [*contact.tags, *new]


def remove_tag(contact: Contact, raw_tag: str) -> None:
    tag = normalise_tag(raw_tag, "tagName")
    if tag not in contact.tags:
        raise NotFound("tag", tag)
    contact.tags = [existing for existing in contact.tags if existing != tag]


def replace_attributes(contact: Contact, attributes: dict[str, Any]) -> None:
    contact.attributes = check_attributes(attributes)
