"""Conversation analytics: conversations started (and their status now), DMs each way and
response times per bucket, the range's totals with the median and p90, and the assignees."""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from models.analytics import (
    AssigneeFigures,
    ConversationsPoint,
    ConversationsReport,
    ConversationsTotals,
)
from services.analytics.counters import assignee_totals, counters_by_bucket
from services.analytics.periods import Period
from services.analytics.response_times import response_times, seconds, shown
from services.analytics.rollups import COUNTERS, begin_report


async def conversations_report(session: AsyncSession, period: Period) -> ConversationsReport:
    await begin_report(session, period.merchant_id)
    buckets = period.buckets()
    per_bucket = await counters_by_bucket(session, period)
    series = []
    for bucket, counts in zip(buckets, per_bucket, strict=True):
        average = seconds(
            counts["human_ms"] + counts["bot_ms"],
            counts["human_answered"] + counts["bot_answered"],
        )
        series.append(
            ConversationsPoint(
                period=bucket.period,
                started=counts["conversations_started"],
                closed=counts["conversations_closed"],
                inbound=counts["inbound"],
                outbound=counts["outbound"],
                average_response_time=shown(average),
                average_response_seconds=average,
            )
        )
    totals = {name: sum(c[name] for c in per_bucket) for name in COUNTERS}
    times = await response_times(session, period, totals)
    started, closed = totals["conversations_started"], totals["conversations_closed"]
    assignees = await assignee_totals(session, period)
    by_assignee = [
        AssigneeFigures(
            user_id=user_id,
            conversations=figures["conversations"],
            average_response_time=shown(seconds(figures["human_ms"], figures["human_answered"])),
            average_response_seconds=seconds(figures["human_ms"], figures["human_answered"]),
        )
        # Most conversations first; nobody's (null) last among equals.
        for user_id, figures in sorted(
            assignees.items(),
            key=lambda item: (-item[1]["conversations"], item[0] is None, item[0] or ""),
        )
    ]
    return ConversationsReport(
        period=period.shown(),
        group_by=period.group_by.value,
        timezone=period.timezone,
        series=series,
        totals=ConversationsTotals(
            started=started,
            closed=closed,
            open=started - closed,
            inbound=totals["inbound"],
            outbound=totals["outbound"],
            **times.model_dump(),
        ),
        by_assignee=by_assignee,
    )
