"""A merchant's AI settings: read with the defaults filled in, changed field by field.

Turning the assistant on or off also arms or disarms its auto-reply trigger for the merchant
(services/ingestion/triggers.arm_triggers), so that ingestion asks about a merchant's DMs only
while an answer may follow.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from models.ai import AISettings, AISettingsPublic, AISettingsRow, AISettingsUpdate
from models.db import utcnow
from services.ingestion.triggers import arm_triggers, lock_armed_triggers

logger = logging.getLogger(__name__)

TRIGGER_PREFIX = "assistant."
AUTO_REPLY_TRIGGER = "assistant.auto_reply"


async def load(session: AsyncSession, merchant_id: str) -> tuple[AISettings, AISettingsRow | None]:
    row = await session.get(AISettingsRow, merchant_id)
    if row is None:
        return AISettings(), None
    return AISettings.model_validate(row.settings), row


def public(settings: AISettings, row: AISettingsRow | None, default_model: str) -> AISettingsPublic:
    data = settings.model_dump()
    data["model"] = settings.model or default_model
    return AISettingsPublic.model_validate({**data, "updated_at": row.updated_at if row else None})


def merged(current: AISettings, body: AISettingsUpdate) -> AISettings:
    """The fields sent replace the stored ones (the escalation's, field by field)."""
    changes: dict[str, Any] = body.model_dump(exclude_unset=True)
    escalation = changes.pop("escalation", None)
    data = current.model_dump()
    data.update(changes)
    if escalation is not None:
        data["escalation"] = {**data["escalation"], **escalation}
    return AISettings.model_validate(data)


async def update(
    session: AsyncSession, merchant_id: str, body: AISettingsUpdate
) -> tuple[AISettings, AISettingsRow]:
    await lock_armed_triggers(session, merchant_id)
    current, row = await load(session, merchant_id)
    settings = merged(current, body)
    document = settings.model_dump(mode="json")
    if row is None:
        row = AISettingsRow(merchant_id=merchant_id, settings=document)
    else:
        row.settings = document
        row.updated_at = utcnow()
    session.add(row)
    await arm_triggers(
        session,
        merchant_id,
        prefix=TRIGGER_PREFIX,
        armed=[AUTO_REPLY_TRIGGER] if settings.enabled else [],
    )
    await session.flush()
    logger.info("ai.settings_updated", extra={"enabled": settings.enabled})
    return settings, row
