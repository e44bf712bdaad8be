"""The app's X Activity API subscriptions, as the sandbox keeps them: which user's events of
which type go to which webhook (the endpoints are in sandbox/activity.py)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True)
class ActivitySubscription:
    id: str
    event_type: str
    user_id: str
    tag: str | None
    webhook_id: str | None
    created_at: datetime
    updated_at: datetime

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "subscription_id": self.id,
            "event_type": self.event_type,
            "filter": {"user_id": self.user_id},
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
        }
        if self.tag is not None:
            data["tag"] = self.tag
        if self.webhook_id is not None:
            data["webhook_id"] = self.webhook_id
        return data


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


class DuplicateSubscription(Exception):
    pass


class ActivitySubscriptions:
    """Every subscription of the app, under its own lock."""

    def __init__(self, next_id: Callable[[], str]) -> None:
        self._next_id = next_id
        self._lock = threading.Lock()
        self._items: dict[str, ActivitySubscription] = {}

    def create(
        self, event_type: str, user_id: str, tag: str | None, webhook_id: str | None
    ) -> ActivitySubscription:
        with self._lock:
            if any(
                s.event_type == event_type and s.user_id == user_id for s in self._items.values()
            ):
                raise DuplicateSubscription(event_type)
            now = datetime.now(UTC)
            item = ActivitySubscription(
                self._next_id(), event_type, user_id, tag, webhook_id, now, now
            )
            self._items[item.id] = item
            return item

    def update(self, subscription_id: str, **values: Any) -> ActivitySubscription | None:
        with self._lock:
            item = self._items.get(subscription_id)
            if item is None:
                return None
            item = replace(item, **values, updated_at=datetime.now(UTC))
            self._items[subscription_id] = item
            return item

    def delete(self, subscription_id: str) -> bool:
        with self._lock:
            return self._items.pop(subscription_id, None) is not None

    def all(self) -> list[ActivitySubscription]:
        with self._lock:
            return sorted(self._items.values(), key=lambda s: int(s.id))

    def for_event(self, user_id: str, event_type: str) -> ActivitySubscription | None:
        with self._lock:
            return next(
                (
                    s
                    for s in self._items.values()
                    if s.user_id == user_id and s.event_type == event_type
                ),
                None,
            )

    def of_user(self, user_id: str) -> list[ActivitySubscription]:
        return [s for s in self.all() if s.user_id == user_id]

    def count(self) -> int:
        with self._lock:
            return len(self._items)
