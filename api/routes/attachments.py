"""A message's attachments, streamed from X with the account's credentials."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Path
from starlette.concurrency import iterate_in_threadpool
from starlette.responses import StreamingResponse

from api.deps import ContextDep, ReaderDep, SessionDep
from api.envelope import error_responses
from integrations.x import DMMedia
from services.messaging.attachments import open_attachment

router = APIRouter(prefix="/conversations", tags=["conversations"])

ConversationId = Annotated[uuid.UUID, Path(alias="conversationId")]
MessageId = Annotated[uuid.UUID, Path(alias="messageId")]
AttachmentIndex = Annotated[int, Path(alias="n", ge=0, le=64, description="0 for the first")]


async def _stream(media: DMMedia) -> AsyncIterator[bytes]:
    try:
        async for chunk in iterate_in_threadpool(media.chunks):
            yield chunk
    finally:
        media.close()


@router.get(
    "/{conversationId}/messages/{messageId}/attachments/{n}",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/octet-stream": {}}, "description": "The media's bytes"},
        **error_responses(400, 401, 404, 422, 429, 502, 503),
    },
)
async def get_attachment(
    principal: ReaderDep,
    session: SessionDep,
    context: ContextDep,
    conversation_id: ConversationId,
    message_id: MessageId,
    index: AttachmentIndex,
) -> StreamingResponse:
    """The bytes of a message's attachment that X keeps (a DM's photo, GIF or video)."""
    media = await open_attachment(
        session,
        context.x,
        context.secrets,
        merchant_id=principal.merchant_id,
        conversation_id=conversation_id,
        message_id=message_id,
        index=index,
    )
    headers = {"cache-control": "private, max-age=300"}
    if media.length is not None:
        headers["content-length"] = str(media.length)
    return StreamingResponse(
        _stream(media),
        media_type=media.content_type or "application/octet-stream",
        headers=headers,
    )
