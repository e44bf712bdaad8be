"""A message's attachment as its bytes: media X keeps for a DM, streamed with the account's
credentials (X serves a DM's media only to requests signed for one of its participants).

Only URLs on X's own media hosts are ever fetched (integrations.x.DM_MEDIA_HOSTS): an
attachment whose URL is anywhere else (an outbound link, a merchant's image) is not X's to
serve, and the account's credentials never go there.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

from sqlmodel.ext.asyncio.session import AsyncSession

from integrations.x import DMMedia, NotDMMedia, XClient, XError
from mktx.secrets import SecretBox
from models.conversation import Message
from services.accounts.accounts import AccountNotUsable, load_credentials
from services.core.errors import InvalidState, NotFound
from services.core.tenancy import get_owned
from services.core.x_errors import api_error_from_x

logger = logging.getLogger(__name__)


async def open_attachment(
    session: AsyncSession,
    x: XClient,
    secrets: SecretBox,
    *,
    merchant_id: str,
    conversation_id: uuid.UUID,
    message_id: uuid.UUID,
    index: int,
) -> DMMedia:
    """The attachment's media, streaming from X. NotFound: no such message in the
    conversation, no such attachment, or not media X keeps; InvalidState: the account can no
    longer reach X; X's refusals as api_error_from_x says (a 404 from X: NotFound)."""
    message = await get_owned(
        session,
        Message,
        merchant_id,
        message_id,
        resource="message",
        conversation_id=conversation_id,
    )
    if not 0 <= index < len(message.attachments):
        raise NotFound("attachment", index)
    url = message.attachments[index].get("url")
    if not isinstance(url, str) or not url:
        raise NotFound("attachment", index)
    try:
        _, credentials = await load_credentials(
            session, secrets, message.account_id, allow_disconnected=False
        )
    except AccountNotUsable:
        raise InvalidState(
            "the account is disconnected: X serves this media only to its participants",
            details={"accountId": str(message.account_id)},
        ) from None
    try:
        media = await asyncio.to_thread(x.open_dm_media, credentials, url)
    except NotDMMedia:
        raise NotFound("attachment media at X", index) from None
    except XError as exc:
        if exc.status == 404:
            raise NotFound("attachment media at X", index) from None
        raise api_error_from_x(exc) from None
    logger.info(
        "message.attachment_streamed",
        extra={"message_id": str(message_id), "index": index, "bytes": media.length},
    )
    return media
