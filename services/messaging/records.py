"""What a delivery writes: messages handed to X (`attempt_at`), accepted by X (its event id),
refused for good (failed, the quota slot given back), or not taken (back to plain `queued`).
Each works on any number of messages in one or two statements, in the caller's transaction.

Exactly once: a message is marked attempted (committed) before its DM goes to X, and only
becomes `sent` with X's event id; an attempted message found by a later delivery is looked
for at X before it is sent again (`services.messaging.reconcile`).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import text, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from models.conversation import Message

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Accepted:
    """X took the message: its event id, when, and the media it carried (as an attachment)."""

    message_id: uuid.UUID
    account_id: uuid.UUID
    dm_event_id: str
    sent_at: datetime
    attachment: tuple[int, dict[str, str]] | None = None  # (index, what X attached)


async def mark_attempted(
    session: AsyncSession, message_ids: Sequence[uuid.UUID], at: datetime
) -> None:
    if message_ids:
        await session.execute(
            update(Message)
            .where(col(Message.id).in_(list(message_ids)))
            .values(attempt_at=at, updated_at=at)
        )


# What an attempt releases of its claims (services/messaging/delivery.py), only where the claim
# is still its own (`attempt_at` unchanged: no later attempt claimed the message meanwhile):
# what X certainly did not take goes back to plain `queued` (sent next time without looking at
# X first); what X may have taken stays attempted, its lease ended (looked for at X at once).
_RELEASE = text(
    """
UPDATE messages m
SET attempt_at = CASE WHEN v.maybe_at_x THEN v.claimed_at - CAST(:lease AS interval) END,
    updated_at = now()
FROM unnest(CAST(:ids AS uuid[]), CAST(:claimed AS timestamptz[]), CAST(:maybe AS boolean[]))
    AS v (id, claimed_at, maybe_at_x)
WHERE m.id = v.id AND m.status = 'queued' AND m.attempt_at = v.claimed_at
"""
)


@dataclass(frozen=True, slots=True)
class Released:
    message_id: uuid.UUID
    claimed_at: datetime
    maybe_at_x: bool  # the outcome is unknown (X down, no answer): looked for at X next


async def release_claims(
    session: AsyncSession, released: Sequence[Released], lease: timedelta
) -> None:
    if released:
        await session.execute(
            _RELEASE,
            {
                "ids": [r.message_id for r in released],
                "claimed": [r.claimed_at for r in released],
                "maybe": [r.maybe_at_x for r in released],
                "lease": lease,
            },
        )


# The webhook's echo of a DM we sent may arrive before we record X's answer; it was then
# stored as an outbound message of its own, counted in its conversation. It goes (its read
# receipt kept for ours), and its conversation stops counting it. Kept apart from the UPDATE
# below: in one statement the unique (account, X event id) index could see both at once.
_DROP_ECHOES = text(
    """
WITH v AS (
    SELECT * FROM unnest(CAST(:ids AS uuid[]), CAST(:accounts AS uuid[]), CAST(:events AS text[]))
        AS v(id, account_id, event_id)
),
echo AS (
    DELETE FROM messages e
    USING v
    WHERE e.account_id = v.account_id AND e.twitter_message_id = v.event_id AND e.id <> v.id
    RETURNING v.id AS ours_id, e.conversation_id, e.read_at
),
uncounted AS (
    UPDATE conversations c SET message_count = c.message_count - x.n
    FROM (SELECT conversation_id, count(*) AS n FROM echo GROUP BY conversation_id) x
    WHERE c.id = x.conversation_id
    RETURNING c.id
)
SELECT ours_id, read_at FROM echo
"""
)

# The conversation shows the DM as its latest activity from when X took it (it was queued
# earlier; an inbound DM that came meanwhile may be later still).
_SENT = text(
    """
WITH sent AS (
    UPDATE messages m
    SET twitter_message_id = v.event_id,
        sent_at = v.at,
        read_at = coalesce(m.read_at, v.read_at),
        status = CASE WHEN coalesce(m.read_at, v.read_at) IS NULL THEN 'sent' ELSE 'read' END,
        attachments = CASE WHEN v.attachment IS NULL THEN m.attachments
                           ELSE jsonb_set(m.attachments, ARRAY[CAST(v.position AS text)],
                                          CAST(v.attachment AS jsonb)) END,
        attempt_at = NULL, error = NULL, updated_at = now()
    FROM unnest(
            CAST(:ids AS uuid[]), CAST(:events AS text[]), CAST(:ats AS timestamptz[]),
            CAST(:read_ats AS timestamptz[]), CAST(:attachments AS text[]),
            CAST(:positions AS integer[])
         ) AS v(id, event_id, at, read_at, attachment, position)
    WHERE m.id = v.id AND m.status = 'queued'
    RETURNING m.id, m.conversation_id, m.sent_at
),
latest AS (
    UPDATE conversations c SET last_message_at = greatest(c.last_message_at, x.at)
    FROM (SELECT conversation_id, max(sent_at) AS at FROM sent GROUP BY conversation_id
          ORDER BY conversation_id) x
    WHERE c.id = x.conversation_id
    RETURNING c.id
)
SELECT id FROM sent
"""
)

ATTEMPTS = 3


async def record_accepted(session: AsyncSession, accepted: Sequence[Accepted]) -> set[uuid.UUID]:
    """Record X's event ids (and merge the echoes that got here first); answers the ids this
    call settled. An echo stored concurrently trips the unique index: tried again with a
    fresh look, inside a savepoint so that the transaction stays usable."""
    if not accepted:
        return set()
    params = {
        "ids": [a.message_id for a in accepted],
        "events": [a.dm_event_id for a in accepted],
    }
    # The account of each: the echo is found by (account, X event id), the unique index.
    accounts = {"accounts": [a.account_id for a in accepted]}
    for attempt in range(ATTEMPTS):
        try:
            async with session.begin_nested():
                read = {
                    row.ours_id: row.read_at
                    for row in await session.execute(_DROP_ECHOES, {**params, **accounts})
                }
                rows = await session.execute(
                    _SENT,
                    {
                        **params,
                        "ats": [a.sent_at for a in accepted],
                        "read_ats": [read.get(a.message_id) for a in accepted],
                        "attachments": [
                            json.dumps(a.attachment[1]) if a.attachment else None for a in accepted
                        ],
                        "positions": [a.attachment[0] if a.attachment else 0 for a in accepted],
                    },
                )
                settled = {row.id for row in rows}
        except IntegrityError:
            if attempt == ATTEMPTS - 1:
                raise
            continue
        if read:
            logger.info("message.echo_merged", extra={"messages": len(read)})
        return settled
    raise AssertionError("unreachable")


async def record_refused(
    session: AsyncSession, failures: Sequence[tuple[uuid.UUID, str]]
) -> set[uuid.UUID]:
    """These will not be delivered: failed with the reason, their quota slots given back.
    Answers the ids this call settled (gone or settled ones are left as they are)."""
    if not failures:
        return set()
    rows = await session.execute(
        text(
            """
UPDATE messages m SET status = 'failed', error = v.reason, attempt_at = NULL, updated_at = now()
FROM unnest(CAST(:ids AS uuid[]), CAST(:reasons AS text[])) AS v(id, reason)
WHERE m.id = v.id AND m.status = 'queued'
RETURNING m.id, m.account_id
"""
        ),
        {"ids": [i for i, _ in failures], "reasons": [r[:1024] for _, r in failures]},
    )
    settled = {(row.id, row.account_id) for row in rows}
    if settled:
        await session.execute(
            text(
                "DELETE FROM send_reservations WHERE account_id = ANY(:accounts) "
                "AND message_id = ANY(:ids)"
            ),
            {
                "accounts": list({account for _, account in settled}),
                "ids": [message_id for message_id, _ in settled],
            },
        )
    return {message_id for message_id, _ in settled}


async def record_failed(session: AsyncSession, message_id: uuid.UUID, reason: str) -> bool:
    """One message will not be delivered. False when it is gone or already settled."""
    return bool(await record_refused(session, [(message_id, reason)]))


async def withdrawable(session: AsyncSession, message_ids: Sequence[uuid.UUID]) -> list[uuid.UUID]:
    """Of these, the queued messages X certainly never had (no attempt of unknown outcome),
    locked: they may be withdrawn."""
    if not message_ids:
        return []
    rows = await session.execute(
        text(
            "SELECT id FROM messages WHERE id = ANY(:ids) AND status = 'queued' "
            "AND attempt_at IS NULL AND twitter_message_id IS NULL ORDER BY id FOR UPDATE"
        ),
        {"ids": list(message_ids)},
    )
    return [row.id for row in rows]


async def withdraw(session: AsyncSession, message_ids: Sequence[uuid.UUID]) -> None:
    """Take back queued messages that will not go out as they are (a paused campaign claims
    its recipients again on resume): the messages go, their quota slots are given back, and a
    conversation opened for nothing else goes with them. Call with `withdrawable`'s ids."""
    if not message_ids:
        return
    emptied = await session.execute(
        text(
            """
WITH gone AS (
    DELETE FROM messages WHERE id = ANY(:ids) RETURNING id, account_id, conversation_id
),
released AS (
    DELETE FROM send_reservations r USING gone
    WHERE r.account_id = gone.account_id AND r.message_id = gone.id
    RETURNING r.id
),
uncounted AS (
    UPDATE conversations c SET message_count = c.message_count - x.n
    FROM (SELECT conversation_id, count(*) AS n FROM gone GROUP BY conversation_id
          ORDER BY conversation_id) x
    WHERE c.id = x.conversation_id
    RETURNING c.id, c.message_count
)
SELECT id FROM uncounted WHERE message_count = 0
"""
        ),
        {"ids": list(message_ids)},
    )
    empty = [row.id for row in emptied]
    if empty:
        await session.execute(
            text(
                """
WITH gone AS (DELETE FROM conversations WHERE id = ANY(:ids) RETURNING contact_id)
UPDATE contacts c SET conversation_count = c.conversation_count - 1
FROM gone WHERE c.id = gone.contact_id
"""
            ),
            {"ids": empty},
        )
    logger.info("message.withdrawn", extra={"messages": len(message_ids)})
