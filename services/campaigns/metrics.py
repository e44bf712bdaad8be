"""Campaign metrics, computed in SQL when read.

- totalSent: recipients a send was settled for (accepted by X or refused): sent + failed;
- delivered: accepted by X (`sent`, with X's dm_event_id);
- opened: the contact's read receipt reached the account after the campaign DM — a stored
  `read` webhook event from that contact whose `last_read_event_id` is at or past the DM's
  event id (X event ids grow with time), or a `read_at` set on the recipient;
- clicked: the recipient followed one of its tracked links (`clicked_at`);
- replied: an inbound DM from the contact within the reply window (configurable) after the
  campaign DM.

Reading receipts and replies from the data webhook ingestion already stores keeps ingestion
unaware of campaigns. Test sends live in their own table and are never counted.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta
from enum import StrEnum

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlmodel.ext.asyncio.session import AsyncSession

from models.campaign import (
    CampaignMetrics,
    CampaignMetricsDetail,
    SkippedReasons,
    TimelineBucket,
)

# An inbound DM this long after the campaign message counts as a reply to it.
DEFAULT_REPLY_WINDOW = timedelta(hours=72)  # MKTX_CAMPAIGN_REPLY_WINDOW_HOURS


class Bucket(StrEnum):
    minute = "minute"
    hour = "hour"
    day = "day"


# What opens and what answers a recipient's DM, over `campaign_recipients r`, `contacts c`
# (its contact, NULL once erased) and `x_accounts a` (its account): the read receipts from the
# contact covering the DM (X event ids grow with time), and the contact's inbound DMs within the
# reply window after it. The recipients list (recipients.py) dates them with the same clauses.
OPENING_READS = """
FROM webhook_events w
WHERE w.merchant_id = r.merchant_id
  AND w.subject_user_id = c.twitter_user_id
  AND w.event_type = 'read'
  AND w.for_user_id = a.twitter_user_id
  AND (w.payload #>> '{direct_message_mark_read_events,0,last_read_event_id}') ~ '^[0-9]{1,30}$'
  AND (w.payload #>> '{direct_message_mark_read_events,0,last_read_event_id}')::numeric
      >= r.dm_event_id::numeric
"""
REPLYING_DMS = """
FROM messages m
WHERE m.merchant_id = r.merchant_id
  AND m.contact_id = r.contact_id
  AND m.direction = 'inbound'
  AND m.sent_at > r.sent_at
  AND m.sent_at <= r.sent_at + :reply_window
"""

_PER_RECIPIENT = f"""
SELECT r.campaign_id,
       r.state,
       r.error,
       (r.clicked_at IS NOT NULL) AS clicked,
       (r.state = 'sent' AND (r.read_at IS NOT NULL OR EXISTS (SELECT 1 {OPENING_READS})))
           AS opened,
       (r.state = 'sent' AND (r.replied_at IS NOT NULL OR EXISTS (SELECT 1 {REPLYING_DMS})))
           AS replied
FROM campaign_recipients r
LEFT JOIN contacts c ON c.id = r.contact_id  -- an erased contact's row stays, naming nobody
JOIN x_accounts a ON a.id = r.account_id
WHERE r.campaign_id = ANY(:campaign_ids)
"""

_HEADLINE = text(
    f"""
SELECT campaign_id,
       count(*) FILTER (WHERE state IN ('sent', 'failed')) AS total_sent,
       count(*) FILTER (WHERE state = 'sent') AS delivered,
       count(*) FILTER (WHERE state = 'failed') AS failed,
       count(*) FILTER (WHERE opened) AS opened,
       count(*) FILTER (WHERE clicked AND state = 'sent') AS clicked,
       count(*) FILTER (WHERE replied) AS replied,
       count(*) AS recipients,
       count(*) FILTER (WHERE state IN ('queued', 'sending')) AS queued,
       count(*) FILTER (WHERE state = 'skipped') AS skipped,
       count(*) FILTER (WHERE state = 'skipped' AND error = 'opted_out') AS skipped_opted_out,
       count(*) FILTER (WHERE state = 'skipped' AND error = 'deleted') AS skipped_deleted
FROM ({_PER_RECIPIENT}) per
GROUP BY campaign_id
"""
).bindparams(bindparam("campaign_ids", type_=ARRAY(UUID(as_uuid=True))))

_TIMELINE = text(
    """
SELECT date_trunc(:bucket, coalesce(sent_at, attempt_at, created_at)) AS at,
       count(*) FILTER (WHERE state IN ('sent', 'failed')) AS sent,
       count(*) FILTER (WHERE state = 'sent') AS delivered,
       count(*) FILTER (WHERE state = 'failed') AS failed
FROM campaign_recipients
WHERE campaign_id = :campaign_id AND state IN ('sent', 'failed')
GROUP BY 1
ORDER BY 1
"""
)


async def _rows(
    session: AsyncSession, campaign_ids: Sequence[uuid.UUID], reply_window: timedelta
) -> dict[uuid.UUID, dict[str, int]]:
    if not campaign_ids:
        return {}
    result = await session.execute(
        _HEADLINE, {"campaign_ids": list(campaign_ids), "reply_window": reply_window}
    )
    return {row.campaign_id: dict(row._mapping) for row in result}


async def headline_counts(
    session: AsyncSession,
    campaign_ids: Sequence[uuid.UUID],
    reply_window: timedelta = DEFAULT_REPLY_WINDOW,
) -> dict[uuid.UUID, CampaignMetrics]:
    """The six headline counts of several campaigns, in one statement."""
    rows = await _rows(session, campaign_ids, reply_window)
    return {
        campaign_id: CampaignMetrics(
            total_sent=row["total_sent"],
            delivered=row["delivered"],
            opened=row["opened"],
            clicked=row["clicked"],
            replied=row["replied"],
            failed=row["failed"],
        )
        for campaign_id, row in rows.items()
    }


def _rate(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


async def campaign_metrics(
    session: AsyncSession,
    campaign_id: uuid.UUID,
    bucket: Bucket = Bucket.hour,
    reply_window: timedelta = DEFAULT_REPLY_WINDOW,
) -> CampaignMetricsDetail:
    row = (await _rows(session, [campaign_id], reply_window)).get(campaign_id)
    timeline = [
        TimelineBucket(timestamp=r.at, sent=r.sent, delivered=r.delivered, failed=r.failed)
        for r in await session.execute(
            _TIMELINE, {"campaign_id": campaign_id, "bucket": bucket.value}
        )
    ]
    if row is None:
        return CampaignMetricsDetail(timeline=timeline)
    delivered = row["delivered"]
    return CampaignMetricsDetail(
        total_sent=row["total_sent"],
        delivered=delivered,
        opened=row["opened"],
        clicked=row["clicked"],
        replied=row["replied"],
        failed=row["failed"],
        recipients=row["recipients"],
        queued=row["queued"],
        skipped=row["skipped"],
        skipped_reasons=SkippedReasons(
            opted_out=row["skipped_opted_out"],
            deleted=row["skipped_deleted"],
            other=row["skipped"] - row["skipped_opted_out"] - row["skipped_deleted"],
        ),
        open_rate=_rate(row["opened"], delivered),
        click_rate=_rate(row["clicked"], delivered),
        reply_rate=_rate(row["replied"], delivered),
        delivery_rate=_rate(delivered, row["total_sent"]),
        timeline=timeline,
    )
