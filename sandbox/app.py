"""The sandbox app: X API v2 emulator + OpenAI-compatible LLM + the /_sandbox control API."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from fastapi import FastAPI, Request
from fastapi.exception_handlers import (
    http_exception_handler,
    request_validation_exception_handler,
)
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from mktx.settings import (
    DEV_X_CONSUMER_KEY,
    DEV_X_CONSUMER_SECRET,
    SANDBOX_WEBHOOK_ID,
    Settings,
)
from sandbox import activity, admin_api, dm_media_api, llm, media_api, x_api
from sandbox.oauth import AuthError, parse_oauth_header
from sandbox.problems import XProblem, invalid_request, openai_error
from sandbox.state import FaultConfig, RequestRecord, SandboxState

_LLM_PATHS = ("/v1/", "/chat/")
_random = random.Random()


class SandboxConfig(BaseModel):
    model_config = ConfigDict(frozen=True)

    consumer_key: str = DEV_X_CONSUMER_KEY
    consumer_secret: str = DEV_X_CONSUMER_SECRET
    webhook_id: str = SANDBOX_WEBHOOK_ID
    webhook_url: str = "http://127.0.0.1:5000/api/v1/mkt-x/webhooks/twitter"
    seed_demo: bool = True

    @classmethod
    def from_settings(cls, settings: Settings) -> SandboxConfig:
        return cls(
            consumer_key=settings.x_consumer_key.get_secret_value(),
            consumer_secret=settings.x_consumer_secret.get_secret_value(),
            webhook_id=settings.x_webhook_id,
            webhook_url=settings.webhook_url,
        )


def create_sandbox_app(config: SandboxConfig) -> FastAPI:
    app = FastAPI(title="mkt-x sandbox", description="X API v2 + LLM emulator for dev and tests")
    app.state.sandbox = SandboxState(
        consumer_key=config.consumer_key,
        consumer_secret=config.consumer_secret,
        webhook_id=config.webhook_id,
        webhook_url=config.webhook_url,
        seed_demo=config.seed_demo,
    )
    app.include_router(x_api.router)
    app.include_router(activity.router)
    app.include_router(dm_media_api.router)
    app.include_router(media_api.router)
    app.include_router(media_api.admin_router)
    app.include_router(llm.router)
    app.include_router(admin_api.router)
    _install_error_handlers(app)
    app.middleware("http")(_x_edge)
    return app


async def _x_edge(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    """Faults before the handler, rate-limit headers after it, and one log line per request."""
    path = request.url.path
    if path.startswith(admin_api.PREFIX):
        return await call_next(request)
    state: SandboxState = request.app.state.sandbox
    injected = await _injected_fault(request, state)
    if injected is not None:
        response, fault = injected
    else:
        response, fault = await call_next(request), None
        response.headers.update(getattr(request.state, "rate_headers", {}))
    state.log_request(
        RequestRecord(
            at=datetime.now(UTC),
            method=request.method,
            path=path,
            status=response.status_code,
            # Refused and fault-injected requests never reach auth: log who they claimed to be.
            user_id=getattr(request.state, "user_id", None) or _claimed_user(request, state),
            endpoint=getattr(request.state, "endpoint", None),
            fault=fault,
        )
    )
    return response


def _claimed_user(request: Request, state: SandboxState) -> str | None:
    """Who the request says it is (unverified): enough to scope a fault to one user."""
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("oauth "):
        return None
    try:
        token = state.find_token(parse_oauth_header(header).get("oauth_token", ""))
    except AuthError:
        return None
    return token.user_id if token else None


async def _injected_fault(request: Request, state: SandboxState) -> tuple[Response, str] | None:
    faults = state.faults
    if faults.path_prefix and not request.url.path.startswith(faults.path_prefix):
        return None
    if faults.user_id and _claimed_user(request, state) != faults.user_id:
        return None
    if faults.latency_ms:
        await asyncio.sleep(faults.latency_ms / 1000)
    if state.take_burst_429():
        return _fault_response(request, 429, faults), "burst429"
    if faults.error_rate and _random.random() < faults.error_rate:
        return _fault_response(request, faults.error_status, faults), f"error{faults.error_status}"
    return None


def _fault_response(request: Request, status: int, faults: FaultConfig) -> Response:
    headers: dict[str, str] = {}
    if status == 429:
        reset = int(datetime.now(UTC).timestamp()) + faults.retry_after_seconds
        headers = {
            "retry-after": str(faults.retry_after_seconds),
            "x-rate-limit-limit": "0",
            "x-rate-limit-remaining": "0",
            "x-rate-limit-reset": str(reset),
        }
    elif status == 503:
        headers = {"retry-after": str(faults.retry_after_seconds)}
    if request.url.path.startswith(_LLM_PATHS):
        return openai_error(status, "injected fault", headers)
    return XProblem(status, "Injected by the sandbox", headers=headers).response()


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(XProblem)
    async def _problem(request: Request, exc: XProblem) -> Response:
        return exc.response()

    @app.exception_handler(AuthError)
    async def _auth(request: Request, exc: AuthError) -> Response:
        return XProblem(exc.status, exc.detail).response()

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        if request.url.path.startswith(admin_api.PREFIX):
            return await request_validation_exception_handler(request, exc)
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ())[1:])
        return invalid_request(f"{where}: {first.get('msg', 'invalid')}").response()

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        if request.url.path.startswith(admin_api.PREFIX):
            return await http_exception_handler(request, exc)
        return XProblem(exc.status_code, str(exc.detail)).response()
