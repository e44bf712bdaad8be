"""The triggers under events in any order: DMs each way and accepted sends shuffled, some
deleted, conversations assigned and closed; what they keep equals the rebuild's.

Rows are written through the models here, not the API: the point is orders of events X and the
send path produce only now and then (a DM delivered after the reply that followed it, a send
accepted after later DMs), and a seed makes them at will.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from models.account import XAccount
from models.contact import Contact, ContactSource
from models.conversation import (
    Conversation,
    ConversationStatus,
    Message,
    MessageDirection,
    MessageStatus,
)
from models.db import SessionMaker, utcnow
from tests.analytics.test_rollups import snapshot

START = datetime(2026, 2, 2, tzinfo=UTC)


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_shuffled_events_keep_what_the_rebuild_computes(
    sessions: SessionMaker, seed: int
) -> None:
    rng = random.Random(seed)
    merchant_id = f"shuffled-{uuid.uuid4()}"
    async with sessions() as session, session.begin():
        account = XAccount(
            merchant_id=merchant_id,
            twitter_user_id=str(rng.randrange(10**12, 10**13)),
            username="shop",
            display_name="Shop",
            connected_at=utcnow(),
        )
        session.add(account)
        await session.flush()
        threads = []
        for n in range(5):
            contact = Contact(
                merchant_id=merchant_id,
                account_id=account.id,
                twitter_user_id=str(rng.randrange(10**12, 10**13)),
                source=rng.choice(list(ContactSource)),
                tags=rng.sample(["vip", "lead", "hanoi"], rng.randint(0, 2)),
                first_interaction_at=START + timedelta(hours=n),
            )
            session.add(contact)
            await session.flush()
            conversation = Conversation(
                merchant_id=merchant_id,
                account_id=account.id,
                contact_id=contact.id,
                started_at=START + timedelta(hours=n),
            )
            session.add(conversation)
            threads.append((contact, conversation))
        await session.flush()

    events = [
        (contact, conversation, rng.choice(["in", "in", "human", "bot", "campaign"]))
        for contact, conversation in threads
        for _ in range(20)
    ]
    rng.shuffle(events)
    written: list[uuid.UUID] = []
    for contact, conversation, kind in events:
        at = START + timedelta(minutes=rng.randrange(0, 6 * 24 * 60))
        async with sessions() as session, session.begin():
            message = Message(
                merchant_id=merchant_id,
                conversation_id=conversation.id,
                account_id=account.id,
                contact_id=contact.id,
                direction=MessageDirection.inbound if kind == "in" else MessageDirection.outbound,
                content=kind,
                is_from_bot=kind == "bot",
                kind={"human": "inbox", "bot": "bot", "campaign": "campaign"}.get(kind),
                status=MessageStatus.received if kind == "in" else MessageStatus.queued,
                sent_at=at - timedelta(minutes=1),
            )
            session.add(message)
            await session.flush()
            if kind != "in":  # accepted by X later, at its own time (the send path's update)
                message.status, message.sent_at = MessageStatus.sent, at
            written.append(message.id)
    async with sessions() as session, session.begin():
        for message_id in rng.sample(written, 8):
            await session.execute(text("DELETE FROM messages WHERE id = :id"), {"id": message_id})
        first, second = threads[0][1], threads[1][1]
        await session.execute(
            text("UPDATE conversations SET assigned_to_user_id = 'agent-1' WHERE id = :id"),
            {"id": first.id},
        )
        await session.execute(
            text("UPDATE conversations SET status = :closed WHERE id = :id"),
            {"id": second.id, "closed": ConversationStatus.closed.value},
        )
        await session.execute(
            text("UPDATE contacts SET tags = ARRAY['vip']::varchar[] WHERE id = :id"),
            {"id": threads[2][0].id},
        )

    kept = await snapshot(sessions, merchant_id)
    assert kept["waits"] and kept["days"]
    async with sessions() as session, session.begin():
        await session.execute(text("SELECT mktx_analytics_rebuild(:m)"), {"m": merchant_id})
    rebuilt = await snapshot(sessions, merchant_id)
    for name in kept:
        assert kept[name] == rebuilt[name], name
