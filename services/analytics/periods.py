"""The common parameters of every report, checked, and the time buckets they make.

A report covers `[start, end)` in UTC instants. `startDate` / `endDate` are ISO 8601 dates (a
whole day in `timezone`, `endDate` included) or date-times with an offset (`endDate` included
to the second it names). Buckets are the days, ISO weeks (Monday first) or months of
`timezone` that the range touches, each labelled by its first day; the calendar is Python's
(zoneinfo), so the database never needs to know the zone's name.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from functools import cache
from zoneinfo import ZoneInfo, available_timezones

from models.analytics import AnalyticsPeriod
from models.db import utcnow
from services.core.errors import ValidationFailed

MAX_SPAN = timedelta(days=400)
DEFAULT_DAYS = 30  # when a report other than the overview is asked without dates
SLOT = timedelta(minutes=15)  # the rollups' grain: every zone's midnights fall on one
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class GroupBy(StrEnum):
    day = "day"
    week = "week"
    month = "month"


@dataclass(frozen=True, slots=True)
class Bucket:
    period: date  # the bucket's first day (a Monday for weeks, the 1st for months)
    starts: datetime  # where the whole bucket begins (UTC): the label's midnight
    start: datetime  # where its counted part begins and ends, inside the report's range
    end: datetime


@dataclass(frozen=True, slots=True)
class Period:
    merchant_id: str
    start: datetime
    end: datetime
    zone: ZoneInfo
    group_by: GroupBy
    account_id: uuid.UUID | None

    @property
    def timezone(self) -> str:
        return self.zone.key

    @property
    def shown_start(self) -> datetime:
        return self.start.astimezone(self.zone)

    @property
    def shown_end(self) -> datetime:
        """The last second counted (the spec's `2026-01-18T23:59:59Z`)."""
        return (self.end - timedelta(microseconds=1)).astimezone(self.zone).replace(microsecond=0)

    def shown(self) -> AnalyticsPeriod:
        """The `period` of an answer: the first and the last second counted."""
        return AnalyticsPeriod(start_date=self.shown_start, end_date=self.shown_end)

    def buckets(self) -> list[Bucket]:
        found: list[Bucket] = []
        label = _bucket_start(self.start.astimezone(self.zone).date(), self.group_by)
        while True:
            starts = _midnight(label, self.zone)
            if starts >= self.end:
                return found
            following = _next_bucket(label, self.group_by)
            ends = _midnight(following, self.zone)
            found.append(Bucket(label, starts, max(starts, self.start), min(ends, self.end)))
            label = following


def parse_period(
    merchant_id: str,
    *,
    start_date: str | None,
    end_date: str | None,
    timezone: str | None,
    group_by: str | None = None,
    account_id: str | None = None,
    dates_required: bool = False,
    now: datetime | None = None,
) -> Period:
    """Every rule of the common parameters; a broken one is a 422 naming its parameter."""
    zone = parse_zone(timezone)
    grouping = _group_by(group_by)
    account = _account(account_id)
    if dates_required:
        for name, value in (("startDate", start_date), ("endDate", end_date)):
            if value is None or not value.strip():
                raise ValidationFailed(name, "is required (an ISO 8601 date or date-time)")
    today = (now or utcnow()).astimezone(zone).date()
    start = _bound("startDate", start_date, zone, end=False)
    end = _bound("endDate", end_date, zone, end=True)
    if end is None:  # through today
        end = _midnight(today + timedelta(days=1), zone)
    if start is None:  # the 30 days that end with endDate's
        last_day = (end - timedelta(microseconds=1)).astimezone(zone).date()
        start = _midnight(last_day - timedelta(days=DEFAULT_DAYS - 1), zone)
    if end <= start:
        raise ValidationFailed("endDate", "must not be before startDate")
    if end - start > MAX_SPAN:
        raise ValidationFailed("endDate", f"the range may span {MAX_SPAN.days} days at most")
    return Period(merchant_id, start, end, zone, grouping, account)


def parse_zone(name: str | None) -> ZoneInfo:
    if name is None or not name.strip():
        return ZoneInfo("UTC")
    if name not in _zones():
        raise ValidationFailed("timezone", f"unknown time zone '{name}' (an IANA name)")
    return ZoneInfo(name)


def parse_uuid(name: str, value: str | None) -> uuid.UUID | None:
    if value is None or not value.strip():
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        raise ValidationFailed(name, "must be a UUID") from None


def aligned(instant: datetime) -> bool:
    """On a slot boundary: the rollups hold exactly what is on either side."""
    return (instant - datetime(2000, 1, 1, tzinfo=UTC)) % SLOT == timedelta(0)


def floor_slot(instant: datetime) -> datetime:
    origin = datetime(2000, 1, 1, tzinfo=UTC)
    return instant - (instant - origin) % SLOT


def ceil_slot(instant: datetime) -> datetime:
    return instant if aligned(instant) else floor_slot(instant) + SLOT


@cache
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def _group_by(value: str | None) -> GroupBy:
    if value is None or not value.strip():
        return GroupBy.day
    try:
        return GroupBy(value)
    except ValueError:
        raise ValidationFailed("groupBy", "must be day, week or month") from None


def _account(value: str | None) -> uuid.UUID | None:
    return parse_uuid("accountId", value)


def _bound(name: str, value: str | None, zone: ZoneInfo, *, end: bool) -> datetime | None:
    if value is None or not value.strip():
        return None
    text = value.strip()
    if _DATE.match(text):
        try:
            day = date.fromisoformat(text)
        except ValueError:
            raise ValidationFailed(name, f"'{text}' is not a date") from None
        return _midnight(day + timedelta(days=1) if end else day, zone)
    try:
        instant = datetime.fromisoformat(text)
    except ValueError:
        raise ValidationFailed(
            name, f"'{text}' is not an ISO 8601 date (2026-01-18) or date-time with an offset"
        ) from None
    if instant.tzinfo is None:
        raise ValidationFailed(name, "a date-time needs an offset (Z or +07:00)")
    instant = instant.astimezone(UTC)
    if not end:
        return instant
    # endDate names the last moment counted: all of its second when it gives whole seconds.
    return instant + (
        timedelta(seconds=1) if instant.microsecond == 0 else timedelta(microseconds=1)
    )


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(), tzinfo=zone).astimezone(UTC)


def _bucket_start(day: date, group_by: GroupBy) -> date:
    if group_by is GroupBy.week:
        return day - timedelta(days=day.weekday())
    if group_by is GroupBy.month:
        return day.replace(day=1)
    return day


def _next_bucket(label: date, group_by: GroupBy) -> date:
    if group_by is GroupBy.week:
        return label + timedelta(days=7)
    if group_by is GroupBy.month:
        return (label.replace(day=28) + timedelta(days=4)).replace(day=1)
    return label + timedelta(days=1)
