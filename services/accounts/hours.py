"""Business hours: when an account's hours next open (a send step with `businessHoursOnly`
waits until then). Hours are local times of the account's time zone, per weekday; a day
without hours is closed; an account without hours (or with them turned off) is always open."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from models.account import BusinessHours

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def next_opening(hours: dict[str, Any] | None, now: datetime) -> datetime | None:
    """None when the hours are open at `now` (or none are set); else the moment they open
    next, within the coming week (None too when no day of the week has hours)."""
    if not hours:
        return None
    settings = BusinessHours.model_validate(hours)
    if not settings.enabled or not settings.schedule:
        return None
    zone = ZoneInfo(settings.timezone)
    local = now.astimezone(zone)
    for offset in range(8):
        day = local.date() + timedelta(days=offset)
        window = settings.schedule.get(WEEKDAYS[day.weekday()])  # type: ignore[call-overload]
        if window is None:
            continue
        opens = datetime.combine(day, time.fromisoformat(window.start), zone)
        closes = datetime.combine(day, time.fromisoformat(window.end), zone)
        if opens <= local < closes:
            return None
        if local < opens:
            return opens.astimezone(now.tzinfo)
    return None
