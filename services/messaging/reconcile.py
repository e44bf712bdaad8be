"""Reconciliation: before a DM whose earlier attempt has an unknown outcome (the worker died, X
timed out after taking it) is sent again, X's DM events are read to see whether X has it. The
one place that decides "X already has this message"."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from integrations.x import DMEvent, XClient, XCredentials
from models.conversation import Message

# How far X's clock may be behind ours when matching a DM event to a queued message.
CLOCK_SKEW = timedelta(seconds=60)
# X's DM events are read newest first; this many pages reach far enough back for a message
# whose earlier attempt ended minutes ago.
RECONCILE_PAGES = 3

_URL = re.compile(r"https?://\S+")


def _comparable(text: str) -> str:
    """X shortens links (t.co) and may trim whitespace in what it stores."""
    return " ".join(_URL.sub("<link>", text).split())


def find_delivered(
    events: Sequence[DMEvent],
    *,
    sender_id: str,
    text: str,
    since: datetime,
    excluded_ids: set[str],
    media: bool = False,
) -> DMEvent | None:
    """The DM event that is this message, if X already has it: sent by the account with the
    same text after the attempt began. The earliest such event wins; ids that other messages
    already hold are not candidates. With `media`, X may show the attached media as a link
    after the text."""
    earliest = since - CLOCK_SKEW
    wanted = {_comparable(text)}
    if media:
        wanted.add(f"{_comparable(text)} <link>".strip())
    matches = [
        event
        for event in events
        if event.event_type == "MessageCreate"
        and event.sender_id == sender_id
        and event.text is not None
        and _comparable(event.text) in wanted
        and (event.created_at is None or event.created_at >= earliest)
        and event.id not in excluded_ids
    ]
    return min(matches, key=lambda e: (e.created_at or since, int(e.id)), default=None)


async def recent_dm_events(
    x: XClient, credentials: XCredentials, participant_id: str, since: datetime
) -> list[DMEvent]:
    """The conversation's DM events back to `since` (at most RECONCILE_PAGES pages). Raises
    XError."""
    events: list[DMEvent] = []
    token: str | None = None
    for _ in range(RECONCILE_PAGES):
        page = await asyncio.to_thread(
            x.list_dm_events, credentials, participant_id=participant_id, pagination_token=token
        )
        events += page.events
        token = page.next_token
        oldest = min((e.created_at for e in page.events if e.created_at), default=None)
        if token is None or (oldest is not None and oldest < since - CLOCK_SKEW):
            break
    return events


async def ids_held_by_others(
    session: AsyncSession, message: Message, candidate_ids: Iterable[str]
) -> set[str]:
    """Which of these X event ids earlier messages of the account already hold. (An echo of
    this message, stored by the webhook after the send, is younger and stays a candidate.)"""
    candidates = list(set(candidate_ids))
    if not candidates:
        return set()
    rows = await session.exec(
        select(col(Message.twitter_message_id)).where(
            col(Message.account_id) == message.account_id,
            col(Message.twitter_message_id).in_(candidates),
            col(Message.id) != message.id,
            col(Message.created_at) < message.created_at,
        )
    )
    return {row for row in rows.all() if row is not None}


async def find_at_x(
    session: AsyncSession,
    x: XClient,
    credentials: XCredentials,
    message: Message,
    *,
    sender_id: str,
    recipient_id: str,
    text: str,
    media: bool,
) -> DMEvent | None:
    """The DM event X holds for this attempted message, or None (X does not have it: send it
    again). Raises XError (could not tell)."""
    since = message.attempt_at or message.created_at
    events = await recent_dm_events(x, credentials, recipient_id, since)
    taken = await ids_held_by_others(session, message, (e.id for e in events))
    return find_delivered(
        events, sender_id=sender_id, text=text, since=since, excluded_ids=taken, media=media
    )
