"""Operations: liveness, readiness and the Postman collection."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from api.deps import ContextDep
from api.envelope import Envelope, error_body, ok
from api.postman import postman_collection
from services.core.errors import ErrorCode

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


@router.get("/postman-collection.json", include_in_schema=False)
async def postman(request: Request) -> dict[str, Any]:
    """The API as a Postman collection, generated from the OpenAPI schema."""
    base = str(request.base_url).rstrip("/") + "/api/v1/mkt-x"
    return postman_collection(request.app.openapi(), base)
