"""'Still in use?' checks for things campaigns depend on (templates, segments).

The owner of a resource cannot know every user of it: users register a check, and deletes or
updates of the resource consult them all.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, Protocol, TypeVar

from sqlmodel.ext.asyncio.session import AsyncSession

from services.core.errors import Conflict


class _HasId(Protocol):
    @property
    def id(self) -> object: ...


RowT = TypeVar("RowT", bound=_HasId)


class UsageChecks(Generic[RowT]):
    def __init__(self, resource: str) -> None:
        self.resource = resource
        self._checks: list[Callable[[AsyncSession, RowT], Awaitable[Sequence[str]]]] = []

    def register(self, check: Callable[[AsyncSession, RowT], Awaitable[Sequence[str]]]) -> None:
        """Add a check naming who still uses a row (e.g. scheduled, running or paused
        campaigns)."""
        if check not in self._checks:
            self._checks.append(check)

    def unregister(self, check: Callable[[AsyncSession, RowT], Awaitable[Sequence[str]]]) -> None:
        if check in self._checks:
            self._checks.remove(check)

    async def ensure_not_in_use(self, session: AsyncSession, row: RowT) -> None:
        """Conflict (409) when any registered check reports a user of this row."""
        users = [user for check in self._checks for user in await check(session, row)]
        if users:
            raise Conflict(
                f"{self.resource} is used by "
                + ", ".join(users[:3])
                + (" and more" if users[3:] else ""),
                details={"resource": self.resource, "id": str(row.id), "usedBy": users},
            )
