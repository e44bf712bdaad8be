"""Tags a contact gains, told to whoever waits for them (the automation flows' `tag_added`
trigger), in the transaction that adds them.

Contacts cannot know who waits: the waiter registers here (services/flows/tags.py does at
import). `wanted_tags` lets a bulk path (the import) pay for finding what each contact gained
only when some tag is waited for at all.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence

from sqlmodel.ext.asyncio.session import AsyncSession

# (contact id, account id, the tags it just gained)
TagsAdded = tuple[uuid.UUID, uuid.UUID, list[str]]
Wanted = Callable[[AsyncSession, str, uuid.UUID], Awaitable[set[str]]]
Record = Callable[[AsyncSession, str, Sequence[TagsAdded]], Awaitable[int]]

_waiters: list[tuple[Wanted, Record]] = []


def register(wanted: Wanted, record: Record) -> None:
    if (wanted, record) not in _waiters:
        _waiters.append((wanted, record))


async def wanted_tags(session: AsyncSession, merchant_id: str, account_id: uuid.UUID) -> set[str]:
    """The tags some waiter wants to hear about on this account (empty: none, skip the work)."""
    found: set[str] = set()
    for wanted, _ in _waiters:
        found |= await wanted(session, merchant_id, account_id)
    return found


async def tags_added(session: AsyncSession, merchant_id: str, added: Sequence[TagsAdded]) -> int:
    """Tell every waiter; returns how many events they recorded."""
    gained = [item for item in added if item[2]]
    if not gained:
        return 0
    return sum([await record(session, merchant_id, gained) for _, record in _waiters])
