"""Contact analytics: new, active and total contacts per bucket, where the new ones came from,
and the tags most contacts hold."""

from __future__ import annotations

from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from models.analytics import ContactsPoint, ContactsReport, ContactsTotals, TagCount
from models.contact import ContactSource
from services.analytics.active import active_contacts
from services.analytics.counters import counters_by_bucket, known_before
from services.analytics.periods import Period
from services.analytics.rollups import begin_report

TOP_TAGS = 10

# Tag counts are kept for the contacts as they are now (tags have no history).
_TOP_TAGS = """
SELECT tag, sum(contacts) AS contacts FROM analytics_tags
WHERE merchant_id = :merchant_id{account}
GROUP BY tag HAVING sum(contacts) > 0
ORDER BY 2 DESC, 1 LIMIT :limit
"""

_SOURCES = {
    ContactSource.inbound_message.value: "new_inbound_message",
    ContactSource.new_follower.value: "new_follower",
    ContactSource.import_.value: "new_import",
    ContactSource.manual.value: "new_manual",
}


async def contacts_report(session: AsyncSession, period: Period) -> ContactsReport:
    await begin_report(session, period.merchant_id)
    buckets = period.buckets()
    per_bucket = await counters_by_bucket(session, period)
    total = await known_before(session, period, period.start)
    ranges = [(b.start, b.end) for b in buckets] + [(period.start, period.end)]
    *active, active_total = await active_contacts(session, period, ranges)
    series: list[ContactsPoint] = []
    for bucket, counts, active_in in zip(buckets, per_bucket, active, strict=True):
        total += counts["contacts_known"]
        series.append(
            ContactsPoint(
                period=bucket.period, new=counts["contacts_new"], active=active_in, total=total
            )
        )
    by_source = {source: sum(c[column] for c in per_bucket) for source, column in _SOURCES.items()}
    other = sum(c["new_other"] for c in per_bucket)
    if other:
        by_source["other"] = other
    account = " AND account_id = :account_id" if period.account_id else ""
    tags = await session.execute(
        text(_TOP_TAGS.format(account=account)),
        {"merchant_id": period.merchant_id, "account_id": period.account_id, "limit": TOP_TAGS},
    )
    return ContactsReport(
        period=period.shown(),
        group_by=period.group_by.value,
        timezone=period.timezone,
        series=series,
        totals=ContactsTotals(
            new=sum(c["contacts_new"] for c in per_bucket), active=active_total, total=total
        ),
        by_source=by_source,
        top_tags=[TagCount(tag=row.tag, count=int(row.contacts)) for row in tags],
    )
