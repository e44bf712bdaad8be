"""Carrying out, right after an answer, the follow-ups a request recorded (a tag added that
enrols the contact into a flow): sooner than the maintenance schedule would, which remains
the safety net when this cannot happen (the process stops, Temporal is away)."""

from __future__ import annotations

import asyncio
import logging

from fastapi import BackgroundTasks, Request

from api.context import AppContext
from services.ingestion import TriggerRegistry, carry_out_due

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_SECONDS = 5.0
LIMIT = 50


def carry_out_follow_ups_soon(background: BackgroundTasks, request: Request) -> None:
    context: AppContext = request.app.state.context
    triggers: TriggerRegistry = request.app.state.triggers

    async def carry_out() -> None:
        try:
            client = await asyncio.wait_for(context.temporal.client(), CONNECT_TIMEOUT_SECONDS)
            await carry_out_due(context.sessions, client, triggers, limit=LIMIT)
        except Exception as exc:  # the maintenance schedule carries them out later
            logger.warning("follow_ups.deferred", extra={"error": f"{type(exc).__name__}: {exc}"})

    background.add_task(carry_out)
