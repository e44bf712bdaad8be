"""Webhooks: X's challenge-response check and Account Activity deliveries.

No bearer token here: X calls these. Deliveries are authenticated by their signature, checked
against the raw body before anything is parsed or stored.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, FastAPI, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from api.context import AppContext
from api.deps import ContextDep
from api.envelope import Envelope, error_responses
from models.camel import CamelModel
from services.errors import Unauthorized, ValidationFailed
from services.ingestion import MalformedPayload, ingest_payload, reprocess_pending, run_follow_up
from services.ingestion_connections import IngestionConnections
from services.webhook_security import SIGNATURE_HEADER, crc_response_token, signature_is_valid

logger = logging.getLogger(__name__)


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Inside the app's own lifespan: kept connections go back before the engine is disposed."""
    yield
    ingestion: _Ingestion | None = getattr(app.state, "webhook_ingestion", None)
    if ingestion is not None:
        app.state.webhook_ingestion = None
        await ingestion.connections.aclose()


router = APIRouter(prefix="/webhooks", tags=["webhooks"], lifespan=_lifespan)

# Events stored unapplied are retried this long after the failure, and every process sweeps
# for ones another process left behind at most this often (one indexed query when none).
RETRY_AFTER_SECONDS = 5.0
SWEEP_INTERVAL_SECONDS = 60.0


class CrcResponse(BaseModel):
    """X expects exactly this body, not the envelope."""

    response_token: str


class WebhookReceipt(CamelModel):
    received: int  # events in the payload
    stored: int  # new events stored
    duplicates: int  # events stored before (X retries), ignored


def _crc(context: AppContext, crc_token: str | None) -> CrcResponse:
    if not crc_token:
        raise ValidationFailed("crc_token", "is required", status=400)
    secret = context.settings.x_consumer_secret.get_secret_value()
    return CrcResponse(response_token=crc_response_token(secret, crc_token))


CrcToken = Annotated[str | None, Query(description="The challenge X sends", max_length=1024)]


@router.get("/verify", response_model=CrcResponse, responses=error_responses(400))
async def verify_webhook(context: ContextDep, crc_token: CrcToken = None) -> CrcResponse:
    """Answer X's challenge-response check (CRC)."""
    return _crc(context, crc_token)


@router.get("/twitter", response_model=CrcResponse, responses=error_responses(400))
async def verify_webhook_url(context: ContextDep, crc_token: CrcToken = None) -> CrcResponse:
    """Answer X's challenge-response check sent to the registered webhook URL itself."""
    return _crc(context, crc_token)


@router.post(
    "/twitter",
    response_model=Envelope[WebhookReceipt],
    responses=error_responses(400, 401, 503),
)
async def receive_events(request: Request, background: BackgroundTasks) -> JSONResponse:
    """Receive Account Activity events from X (signed with the app's consumer secret)."""
    # Read directly rather than through a dependency: this is the hottest path of the API.
    context: AppContext = request.app.state.context
    body = await request.body()
    secret = context.settings.x_consumer_secret.get_secret_value()
    if not signature_is_valid(secret, body, request.headers.get(SIGNATURE_HEADER)):
        logger.warning(
            "webhook.signature_refused",
            extra={"signed": SIGNATURE_HEADER in request.headers, "bytes": len(body)},
        )
        raise Unauthorized(f"missing or invalid {SIGNATURE_HEADER}")
    try:
        payload = json.loads(body)
    except ValueError:
        raise ValidationFailed("body", "malformed JSON", status=400) from None
    ingestion = _ingestion(request.app, context)
    try:
        result = await ingest_payload(ingestion.connections, context.settings, payload)
    except MalformedPayload as exc:
        raise ValidationFailed("body", str(exc), status=400) from None

    # After the answer: X waits for nothing it does not need.
    if result.follow_up:
        background.add_task(
            run_follow_up,
            result.follow_up,
            temporal=context.temporal.client,
            sessions=context.sessions,
            settings=context.settings,
        )
    if result.failed:
        ingestion.pending = True
    if ingestion.claim_reprocessing():
        background.add_task(ingestion.reprocess, context)

    receipt = WebhookReceipt(
        received=result.received, stored=result.stored, duplicates=result.duplicates
    )
    return JSONResponse({"success": True, "data": receipt.model_dump(by_alias=True)})


@dataclass
class _Ingestion:
    """Per process: the connections deliveries use, and when this process last looked for
    stored-but-unapplied events."""

    connections: IngestionConnections
    last_run: float = float("-inf")
    pending: bool = False
    running: bool = False

    def claim_reprocessing(self) -> bool:
        """True (once) when it is time to look for unapplied events: the caller does."""
        interval = RETRY_AFTER_SECONDS if self.pending else SWEEP_INTERVAL_SECONDS
        if self.running or time.monotonic() - self.last_run < interval:
            return False
        self.running = True
        return True

    async def reprocess(self, context: AppContext) -> None:
        self.pending = False
        try:
            await reprocess_pending(
                context.sessions, context.settings, temporal=context.temporal.client
            )
        except Exception as exc:  # the database again: the next delivery tries again
            self.pending = True
            logger.warning("webhook.reprocess_deferred", extra={"error": f"{exc}"})
        finally:
            self.last_run = time.monotonic()
            self.running = False


def _ingestion(app: FastAPI, context: AppContext) -> _Ingestion:
    state: _Ingestion | None = getattr(app.state, "webhook_ingestion", None)
    if state is None:
        size = max(2, context.settings.database_pool_size // 2)
        state = _Ingestion(connections=IngestionConnections(context.engine, size))
        app.state.webhook_ingestion = state
    return state
