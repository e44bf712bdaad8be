"""Campaign analytics: the campaigns that were sending in the range, each with the counts of
`GET /campaigns/{id}/metrics` (the same code computes them: services/campaigns/metrics.py),
and their totals. A campaign's counts are its whole life's, so that they agree with its own
metrics; the range chooses the campaigns."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from models.analytics import CampaignCounts, CampaignFigures, CampaignsReport, CampaignTimelinePoint
from services.analytics.periods import Period
from services.analytics.rollups import begin_report
from services.campaigns.metrics import Bucket, campaign_metrics, headline_counts

# Started before the range ended and not completed before it began; with campaignId, that one.
_CAMPAIGNS = """
SELECT k.id, k.name, k.type, k.status,
    (SELECT count(*) FROM campaign_recipients r
     WHERE r.campaign_id = k.id AND r.state = 'skipped') AS skipped
FROM campaigns k
WHERE k.merchant_id = :merchant_id AND {which}
ORDER BY k.started_at, k.id
"""
_IN_RANGE = (
    "k.started_at IS NOT NULL AND k.started_at < :end "
    "AND (k.completed_at IS NULL OR k.completed_at >= :start)"
)


def _rate(part: int, whole: int) -> float:
    # As the campaign metrics endpoint rounds them.
    return round(part / whole, 4) if whole else 0.0


def _with_rates(counts: CampaignCounts) -> CampaignCounts:
    counts.open_rate = _rate(counts.opened, counts.delivered)
    counts.click_rate = _rate(counts.clicked, counts.delivered)
    counts.reply_rate = _rate(counts.replied, counts.delivered)
    counts.delivery_rate = _rate(counts.delivered, counts.total_sent)
    return counts


async def campaigns_report(
    session: AsyncSession,
    period: Period,
    reply_window: timedelta,
    campaign_id: uuid.UUID | None = None,
) -> CampaignsReport:
    await begin_report(session, period.merchant_id)
    which = "k.id = :campaign_id" if campaign_id is not None else _IN_RANGE
    rows = (
        await session.execute(
            text(_CAMPAIGNS.format(which=which)),
            {
                "merchant_id": period.merchant_id,
                "campaign_id": campaign_id,
                "start": period.start,
                "end": period.end,
            },
        )
    ).all()
    headlines = await headline_counts(session, [row.id for row in rows], reply_window)
    campaigns = []
    for row in rows:
        headline = headlines.get(row.id)
        counts = CampaignCounts(
            **(headline.model_dump() if headline else {}), skipped=int(row.skipped)
        )
        campaigns.append(
            CampaignFigures(
                campaign_id=row.id,
                name=row.name,
                type=row.type,
                status=row.status,
                **_with_rates(counts).model_dump(),
            )
        )
    totals = CampaignCounts(
        **{
            name: sum(getattr(c, name) for c in campaigns)
            for name in (
                "total_sent",
                "delivered",
                "opened",
                "clicked",
                "replied",
                "failed",
                "skipped",
            )
        }
    )
    timeline = None
    if campaign_id is not None:
        timeline = []
        if rows:
            detail = await campaign_metrics(session, rows[0].id, Bucket.hour, reply_window)
            timeline = [
                CampaignTimelinePoint(
                    timestamp=point.timestamp,
                    sent=point.sent,
                    delivered=point.delivered,
                    failed=point.failed,
                )
                for point in detail.timeline
            ]
    return CampaignsReport(
        period=period.shown(), campaigns=campaigns, totals=_with_rates(totals), timeline=timeline
    )
