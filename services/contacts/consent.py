"""Opt-out by keyword: a DM that is exactly STOP (or START) changes the contact's consent and
earns one confirmation DM, sent through the shared send path."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from enum import StrEnum
from functools import lru_cache

from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from mktx.settings import Settings
from models.account import XAccount
from models.conversation import Conversation, Message
from models.quota import SendKind
from services.core.errors import AppError
from services.messaging import OutgoingDM, queue_outbound

logger = logging.getLogger(__name__)


class ConsentKeyword(StrEnum):
    opt_out = "opt_out"
    opt_in = "opt_in"


def consent_keyword(settings: Settings, message_text: str) -> ConsentKeyword | None:
    """The keyword this DM is, if it is exactly one (trimmed, case-insensitive)."""
    if len(message_text) > 64:  # every DM comes through here: most are longer than a word
        return None
    word = message_text.strip().casefold()
    if not word:
        return None
    return _keywords(tuple(settings.opt_out_keywords), tuple(settings.opt_in_keywords)).get(word)


@lru_cache(maxsize=8)
def _keywords(opt_out: tuple[str, ...], opt_in: tuple[str, ...]) -> dict[str, ConsentKeyword]:
    words = {k.strip().casefold(): ConsentKeyword.opt_in for k in opt_in}
    words.update({k.strip().casefold(): ConsentKeyword.opt_out for k in opt_out})
    return words


# Only a change of state answers: a contact already opted out who writes STOP again is not
# sent a second confirmation (and a duplicate delivery never gets this far).
_SET_CONSENT = text(
    """
    UPDATE contacts
    SET opted_out = :opted_out, opted_out_at = :opted_out_at, updated_at = :now
    WHERE id = :contact_id AND opted_out = :was_opted_out
    RETURNING id
    """
)


async def apply_consent_keyword(
    session: AsyncSession,
    settings: Settings,
    *,
    keyword: ConsentKeyword,
    account_id: uuid.UUID,
    contact_id: uuid.UUID,
    conversation_id: uuid.UUID,
    at: datetime,
) -> Message | None:
    """Record the contact's choice and queue its confirmation (flushed, not committed; start
    its delivery after commit). None when nothing changed or the confirmation cannot go out."""
    opting_out = keyword is ConsentKeyword.opt_out
    changed = (
        await session.execute(
            _SET_CONSENT,
            {
                "opted_out": opting_out,
                "opted_out_at": at if opting_out else None,
                "now": at,
                "contact_id": contact_id,
                "was_opted_out": not opting_out,
            },
        )
    ).first()
    if changed is None:
        return None
    logger.info(
        "contact.opted_out" if opting_out else "contact.opted_in",
        extra={"contact_id": str(contact_id)},
    )
    account = await session.get(XAccount, account_id)
    conversation = await session.get(Conversation, conversation_id)
    if account is None or conversation is None:
        return None
    confirmation = settings.opt_out_confirmation if opting_out else settings.opt_in_confirmation
    try:
        # A refused confirmation (account revoked, quota spent) must not undo the choice.
        async with session.begin_nested():
            return await queue_outbound(
                session,
                settings,
                conversation,
                OutgoingDM(
                    kind=SendKind.system, contact_id=conversation.contact_id, content=confirmation
                ),
            )
    except AppError as exc:
        logger.warning(
            "contact.consent_confirmation_not_sent",
            extra={"contact_id": str(contact_id), "code": exc.code.value, "error": exc.message},
        )
        return None
