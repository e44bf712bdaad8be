"""Webhooks: X's challenge-response check and Account Activity deliveries.

No bearer token here: X calls these. Deliveries are authenticated by their signature, checked
against the raw body before anything is parsed or stored.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, FastAPI, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.types import ASGIApp, Receive, Scope, Send

from api.context import AppContext
from api.deps import ContextDep
from api.envelope import Envelope, error_responses
from api.errors import app_error_body
from api.middleware import ROUTE_KEY
from models.camel import CamelModel
from services.core.errors import AppError, Unauthorized, ValidationFailed
from services.ingestion import (
    SIGNATURE_HEADER,
    FollowUp,
    FollowUpRelay,
    GroupCommit,
    IngestionConnections,
    IngestionContext,
    MalformedPayload,
    TriggerRegistry,
    crc_response_token,
    ingest_payload,
    run_follow_up,
    signature_is_valid,
)
from services.triggers import build_triggers

logger = logging.getLogger(__name__)


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Inside the app's own lifespan: kept connections go back before the engine is disposed."""
    yield
    ingestion: _Ingestion | None = getattr(app.state, "webhook_ingestion", None)
    if ingestion is not None:
        app.state.webhook_ingestion = None
        if not await ingestion.relay.drain(timeout=SHUTDOWN_DRAIN_SECONDS):
            logger.warning("webhook.follow_ups_left", extra={"deliveries": ingestion.relay.pending})
        await ingestion.group.aclose()


router = APIRouter(prefix="/webhooks", tags=["webhooks"], lifespan=_lifespan)

# At shutdown, how long the follow-ups handed over may take (the rest is the schedule's).
SHUTDOWN_DRAIN_SECONDS = 5.0

# Anyone may post here: bodies are refused past this size, before their signature is checked
# (X's deliveries are a few kilobytes).
MAX_DELIVERY_BYTES = 1024 * 1024


class CrcResponse(BaseModel):
    """X expects exactly this body, not the envelope."""

    response_token: str


class WebhookReceipt(CamelModel):
    received: int  # events in the payload
    stored: int  # new events stored
    duplicates: int  # events stored before (X retries), ignored


def _crc(context: AppContext, crc_token: str) -> CrcResponse:
    secret = context.settings.x_consumer_secret.get_secret_value()
    return CrcResponse(response_token=crc_response_token(secret, crc_token))


CrcToken = Annotated[str, Query(description="The challenge X sends", min_length=1, max_length=1024)]


@router.get("/verify", response_model=CrcResponse)
async def verify_webhook(context: ContextDep, crc_token: CrcToken) -> CrcResponse:
    """Answer X's challenge-response check (CRC)."""
    return _crc(context, crc_token)


@router.get("/twitter", response_model=CrcResponse)
async def verify_webhook_url(context: ContextDep, crc_token: CrcToken) -> CrcResponse:
    """Answer X's challenge-response check sent to the registered webhook URL itself."""
    return _crc(context, crc_token)


@router.post(
    "/twitter",
    response_model=Envelope[WebhookReceipt],
    # 401 before anything else when the signature does not match; only then is the body
    # parsed (422: not JSON, or no delivery X sends). 503: the database is away, X retries.
    responses=error_responses(401, 413, 422, 500, 503),
    openapi_extra={
        "parameters": [
            {
                "name": SIGNATURE_HEADER,
                "in": "header",
                "required": True,
                "description": "`sha256=` and the base64 HMAC-SHA256 of the raw body, keyed "
                "with the app's consumer secret",
                "schema": {"type": "string"},
            }
        ],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object"}}},
        },
    },
)
async def receive_events(request: Request, background: BackgroundTasks) -> JSONResponse:
    """Receive Account Activity events from X (signed with the app's consumer secret).

    Served by `DeliveryFastPath` in the running app; this route documents it and serves it
    where that layer is not installed."""
    body = await request.body()
    if len(body) > MAX_DELIVERY_BYTES:
        raise _too_large()
    data, follow_up = await deliver(request.app, body, request.headers.get(SIGNATURE_HEADER))
    if follow_up is not None:
        background.add_task(_hand_over, request.app, follow_up)
    return JSONResponse({"success": True, "data": data})


async def _hand_over(app: Starlette, follow_up: FollowUp) -> None:
    _ingestion(app, app.state.context).relay.submit(follow_up)


async def deliver(
    app: Starlette, body: bytes, signature: str | None
) -> tuple[dict[str, Any], FollowUp | None]:
    """Verify, store and apply one delivery: the receipt to answer with, and what the events
    owe the workflows waiting on their contacts, for the relay to carry out once X has its
    answer (what it cannot, the worker's maintenance schedule does). Events stored but not
    applied are retried by that schedule too (services/ingestion/reprocess.py). Raises
    AppError."""
    context: AppContext = app.state.context
    secret = context.settings.x_consumer_secret.get_secret_value()
    if not signature_is_valid(secret, body, signature):
        logger.warning(
            "webhook.signature_refused", extra={"signed": signature is not None, "bytes": len(body)}
        )
        raise Unauthorized(f"missing or invalid {SIGNATURE_HEADER}")
    try:
        payload = json.loads(body)
    except ValueError:
        raise ValidationFailed("body", "malformed JSON") from None
    ingestion = _ingestion(app, context)
    try:
        result = await ingest_payload(ingestion.group, ingestion.context, payload)
    except MalformedPayload as exc:
        raise ValidationFailed("body", str(exc)) from None
    data = {"received": result.received, "stored": result.stored, "duplicates": result.duplicates}
    return data, (result.follow_up or None)


class DeliveryFastPath:
    """ASGI layer serving `POST {path}` (X's deliveries) without the router.

    X delivers every event of every connected account here, so it is by far the busiest
    endpoint; FastAPI's routing, dependency solving and response models would cost as much
    CPU as storing the event. This layer sits inside RequestContextMiddleware (request id,
    access log, last-resort 500) and answers with the same envelope the route declares; any
    other request passes through untouched."""

    def __init__(self, app: ASGIApp, path: str) -> None:
        self.app = app
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        scope[ROUTE_KEY] = self.path
        app = scope["app"]
        relay = _ingestion(app, app.state.context).relay
        follow_up: FollowUp | None = None
        headers: dict[str, str] | None = None
        with relay.answering():
            try:
                body = await _read_body(receive)
                if body is None:
                    return  # the client went away before sending it all
                data, follow_up = await deliver(app, body, _signature(scope))
                status, answer = 200, {"success": True, "data": data}
            except AppError as exc:
                status, answer, headers = exc.status, app_error_body(exc), exc.headers
            content = json.dumps(answer, separators=(",", ":")).encode()
            raw_headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(content)).encode()),
            ]
            raw_headers += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
            await send({"type": "http.response.start", "status": status, "headers": raw_headers})
            await send({"type": "http.response.body", "body": content})
        if follow_up is not None:
            # Carried out with the other deliveries' follow-ups, in batches, answers first.
            relay.submit(follow_up)


async def _read_body(receive: Receive) -> bytes | None:
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_DELIVERY_BYTES:
            raise _too_large()
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _too_large() -> ValidationFailed:
    return ValidationFailed("body", f"must be at most {MAX_DELIVERY_BYTES} bytes", status=413)


_SIGNATURE_KEY = SIGNATURE_HEADER.lower().encode()


def _signature(scope: Scope) -> str | None:
    for key, value in scope["headers"]:
        if key == _SIGNATURE_KEY:
            return str(value.decode("latin-1"))
    return None


@dataclass(frozen=True)
class _Ingestion:
    group: GroupCommit
    context: IngestionContext
    relay: FollowUpRelay


def _ingestion(app: Starlette, context: AppContext) -> _Ingestion:
    """The process's group commit (its connections come from the pool) and what applying
    events depends on, made on first use: the triggers are those the app's lifespan built
    (api/app.py), else those `build_triggers` makes for these settings, the same."""
    ingestion: _Ingestion | None = getattr(app.state, "webhook_ingestion", None)
    if ingestion is None:
        triggers: TriggerRegistry | None = getattr(app.state, "triggers", None)
        if triggers is None:
            triggers = build_triggers(context.settings, context.sessions)
        size = max(2, context.settings.database_pool_size // 2)
        ingestion = _Ingestion(
            GroupCommit(IngestionConnections(context.engine, size)),
            IngestionContext(context.settings, triggers),
            FollowUpRelay(
                partial(
                    run_follow_up,
                    temporal=context.temporal.client,
                    sessions=context.sessions,
                    settings=context.settings,
                    triggers=triggers,
                )
            ),
        )
        app.state.webhook_ingestion = ingestion
    return ingestion
