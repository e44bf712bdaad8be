"""Tags added to contacts as events a `tag_added` flow is triggered by, whether the tag came
through the API, an import or a flow's own `add_tag` node.

No webhook brings these events, so they are recorded here, in the transaction that adds the
tag, as follow-ups of ingestion's outbox (models.webhook_event.EventFollowUp, without a
webhook event): one per contact and tag that an active flow waits for. From there they are
carried out like any event's follow-up, exactly once (services/ingestion/follow_up.py): right
away by whoever added the tag when it can, else by the maintenance schedule.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable

from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from models.db import utcnow
from services.contacts import tag_events
from workflows.contracts.contact_events import ContactEvent, ContactEventKind

TAG_TRIGGER = "flows.tag_added"

# The tags active tag_added flows of the merchant wait for (on this contact's account).
_WANTED = text(
    """
    SELECT DISTINCT trigger -> 'config' ->> 'tag' AS tag FROM automation_flows
    WHERE merchant_id = :merchant_id AND status = 'active'
        AND trigger ->> 'type' = 'tag_added'
        AND (account_id IS NULL OR account_id = :account_id)
    """
)

_RECORD = text(
    """
    INSERT INTO event_follow_ups (id, merchant_id, webhook_event_id, kind, target, payload,
        created_at, next_attempt_at)
    SELECT gen_random_uuid(), :merchant_id, NULL, 'start', :target, CAST(p AS jsonb), :now, :now
    FROM unnest(CAST(:payloads AS text[])) AS p
    """
)


async def wanted_tags(session: AsyncSession, merchant_id: str, account_id: uuid.UUID) -> set[str]:
    rows = await session.execute(_WANTED, {"merchant_id": merchant_id, "account_id": account_id})
    return {row.tag for row in rows}


async def record_tags_added(
    session: AsyncSession,
    merchant_id: str,
    added: Iterable[tag_events.TagsAdded],
) -> int:
    """Record `(contact id, account id, tags it just gained)` for the flows that wait for one
    of those tags; returns how many events were recorded (0: no flow waits for them)."""
    payloads: list[str] = []
    now = utcnow()
    wanted_by_account: dict[uuid.UUID, set[str]] = {}
    for contact_id, account_id, tags in added:
        if not tags:
            continue
        if account_id not in wanted_by_account:
            wanted_by_account[account_id] = await wanted_tags(session, merchant_id, account_id)
        for tag in tags:
            if tag in wanted_by_account[account_id]:
                event = ContactEvent(
                    kind=ContactEventKind.tag_added,
                    merchant_id=merchant_id,
                    account_id=account_id,
                    contact_id=contact_id,
                    text=tag,
                    occurred_at=now,
                    event_id=uuid.uuid4(),  # the event's own id: one run per event at most
                )
                payloads.append(json.dumps(event.model_dump(mode="json")))
    if payloads:
        await session.execute(
            _RECORD,
            {"merchant_id": merchant_id, "target": TAG_TRIGGER, "payloads": payloads, "now": now},
        )
    return len(payloads)


tag_events.register(wanted_tags, record_tags_added)
