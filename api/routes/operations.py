"""Operations: liveness, readiness, metrics and the Postman collection."""

from __future__ import annotations

import asyncio
import hmac
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import text

from api.deps import ContextDep
from api.envelope import Envelope, error_body, error_responses, ok
from api.postman import postman_collection
from mktx import metrics
from services.core.errors import ErrorCode, Forbidden, Unauthorized

probes = APIRouter(tags=["operations"])
router = APIRouter(tags=["operations"])


@probes.get("/healthz", response_model=Envelope[dict[str, str]])
async def healthz() -> Envelope[dict[str, str]]:
    """The process is up."""
    return ok({"status": "ok"})


@probes.get("/readyz", response_model=Envelope[dict[str, str]], responses={503: {}})
async def readyz(context: ContextDep) -> Any:
    """The database and Temporal are reachable."""

    async def database() -> str:
        async with context.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return "ok"

    async def temporal() -> str:
        client = await context.temporal.client()
        await client.service_client.check_health(timeout=timedelta(seconds=2))
        return "ok"

    checks: dict[str, str] = {}
    for name, probe in (("database", database), ("temporal", temporal)):
        try:
            checks[name] = await asyncio.wait_for(probe(), timeout=3)
        except Exception as exc:  # readiness reports any failure, it does not raise
            checks[name] = f"unavailable: {type(exc).__name__}"
    if all(value == "ok" for value in checks.values()):
        return ok(checks)
    return JSONResponse(
        error_body(ErrorCode.SERVICE_UNAVAILABLE, "not ready", {"checks": checks}), status_code=503
    )


_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


@probes.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {}}, "description": "Prometheus text exposition"},
        **error_responses(401, 403),
    },
)
async def metrics_exposition(request: Request, context: ContextDep) -> Response:
    """The API's metrics in Prometheus text (every API process's, summed). Open to loopback
    clients; with MKTX_METRICS_TOKEN set, to whoever sends it as a Bearer token instead."""
    token = context.settings.metrics_token
    if token is not None:
        sent = request.headers.get("authorization", "")
        expected = f"Bearer {token.get_secret_value()}"
        if not hmac.compare_digest(sent.encode(), expected.encode()):
            raise Unauthorized("send MKTX_METRICS_TOKEN as a Bearer token")
    elif request.client is None or request.client.host not in _LOOPBACK:
        raise Forbidden("metrics are served to loopback clients; set MKTX_METRICS_TOKEN")
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)


@router.get("/postman-collection.json", include_in_schema=False)
async def postman(request: Request) -> dict[str, Any]:
    """The API as a Postman collection, generated from the OpenAPI schema."""
    base = str(request.base_url).rstrip("/") + "/api/v1/mkt-x"
    return postman_collection(request.app.openapi(), base)
