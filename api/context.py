"""What one API process holds for its lifetime: engine, Temporal client, X client, secrets."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from api.rate_limit import RateLimiter
from integrations.llm import LLMClient
from integrations.x import XClient
from mktx.secrets import SecretBox
from mktx.settings import Settings
from mktx.temporal import connect_temporal
from models.db import SessionMaker
from services.core.errors import ServiceUnavailable

logger = logging.getLogger(__name__)


@dataclass
class TemporalConnection:
    """The process's one Temporal client, connected on first use so the API can start (and
    answer /readyz with 503) while Temporal is still coming up."""

    settings: Settings
    _client: Client | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def client(self) -> Client:
        if self._client is not None:
            return self._client
        async with self._lock:
            if self._client is None:
                try:
                    self._client = await connect_temporal(self.settings)
                except Exception as exc:  # any connection failure means "not available now"
                    logger.warning("temporal.unreachable", extra={"error": str(exc)})
                    raise ServiceUnavailable("workflow engine (Temporal) is unreachable") from exc
        return self._client


@dataclass
class AppContext:
    settings: Settings
    engine: AsyncEngine
    sessions: SessionMaker
    temporal: TemporalConnection
    x: XClient
    secrets: SecretBox
    rate_limiter: RateLimiter
    llm: LLMClient
