"""Request id, access log, request metrics, rate-limit headers and the last-resort 500, as one
ASGI layer."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.envelope import error_body
from api.rate_limit import RateLimitState
from mktx import metrics
from mktx.logs import request_id_var
from services.core.errors import ErrorCode

logger = logging.getLogger("api.access")

REQUEST_ID_HEADER = "X-Request-ID"
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")
RATE_LIMIT_STATE_KEY = "rate_limit"


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        incoming = _header(scope, b"x-request-id")
        request_id = incoming if incoming and _SAFE_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        state: dict[str, Any] = scope.setdefault("state", {})
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER.lower().encode(), request_id.encode()))
                limit: RateLimitState | None = state.get(RATE_LIMIT_STATE_KEY)
                if limit is not None:
                    headers += [
                        (k.lower().encode(), v.encode()) for k, v in limit.headers().items()
                    ]
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            logger.exception(
                "request.unhandled_error",
                extra={"method": scope["method"], "path": scope["path"]},
            )
            if not response_started:
                body = json.dumps(
                    error_body(
                        ErrorCode.INTERNAL_ERROR,
                        "internal error; quote the request id when reporting it",
                        {"requestId": request_id},
                    )
                ).encode()
                await send_with_headers(
                    {
                        "type": "http.response.start",
                        "status": 500,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
        finally:
            elapsed = time.perf_counter() - started
            logger.info(
                "request",
                extra={
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 2),
                    "merchant_id": state.get("merchant_id"),
                },
            )
            route = route_template(scope)
            metrics.HTTP_REQUESTS.inc(route=route, method=scope["method"], status=str(status))
            metrics.HTTP_DURATION.observe(elapsed, route=route, method=scope["method"])
            request_id_var.reset(token)


# A layer that answers without the router names its route here (the webhook fast path).
ROUTE_KEY = "mktx.route"


def route_template(scope: Scope) -> str:
    """The matched route's template (`/api/v1/mkt-x/contacts/{contactId}`), never the path
    itself: one series per route, whatever the ids. `unmatched` for a path no route has."""
    route = scope.get("route")
    template = getattr(route, "path", None)
    regex = getattr(route, "path_regex", None)
    if template is None or regex is None:
        return str(scope.get(ROUTE_KEY) or "unmatched")
    # A route of an included router knows its path below the router's prefix only: the
    # prefix is what comes before the part of the request's path the route matched.
    path: str = scope["path"]
    for cut in (i for i, ch in enumerate(path) if ch == "/"):
        if regex.fullmatch(path[cut:]):
            return path[:cut] + str(template)
    return str(template)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None
