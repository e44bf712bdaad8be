"""Request bodies over a size are refused with 413 in the error envelope, before anything reads
them: a declared `Content-Length` over the limit is answered at once, and a body streamed
without one is cut off once it passes the limit.

One layer for every route, also those FastAPI never reaches (an unknown path, the webhook's
fast path): no route can forget it. A path may be given a larger limit of its own (the
contacts import takes files). The route handler, should it read the body itself, sees the
refusal as `BodyTooLarge`, an HTTPException, which api/errors.py answers with the same body."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.envelope import error_body
from services.core.errors import ErrorCode

# What a JSON request may weigh (X's webhook deliveries are a few kilobytes, API bodies less).
MAX_JSON_BODY_BYTES = 1024 * 1024


def too_large_reason(limit: int) -> str:
    return f"must be at most {limit} bytes"


def too_large_body(limit: int) -> dict[str, Any]:
    """The envelope of a refused body: the spec's shape, as the webhook's own 413 has it."""
    reason = too_large_reason(limit)
    return error_body(
        ErrorCode.VALIDATION_ERROR, f"body: {reason}", {"field": "body", "reason": reason}
    )


class BodyTooLarge(HTTPException):
    """The body passed its path's limit while it was being read."""

    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=f"body: {too_large_reason(limit)}")
        self.limit = limit


class BodyLimitMiddleware:
    def __init__(
        self, app: ASGIApp, max_bytes: int, path_limits: Mapping[str, int] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.path_limits = dict(path_limits or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.path_limits.get(scope["path"], self.max_bytes)
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _refuse(send, limit)
            return

        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            # Raised where no exception handler answers it (an ASGI layer reading the body).
            if started:
                raise
            await _refuse(send, limit)


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", []):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server refuses it; nothing to judge here
    return None


async def _refuse(send: Send, limit: int) -> None:
    body = json.dumps(too_large_body(limit)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
