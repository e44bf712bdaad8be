"""Retention: what is past its window is deleted, oldest first, in short bounded batches, and
never while something still needs it.

- **Raw webhook events** older than `MKTX_RAW_EVENT_RETENTION_DAYS` (30). An event stays while
  reprocessing may still apply it (`processed_at` NULL) or while one of its follow-ups is not
  done (`event_follow_ups.done_at` NULL): the foreign key would take the follow-up with it
  (ON DELETE CASCADE), and the schedule would never carry it out. Done follow-ups go with
  their event. A `read` receipt is also what opens a campaign DM (services/campaigns/metrics.py
  `OPENING_READS`): before it goes, the recipients it opens get that open recorded on their
  own row (`campaign_recipients.read_at`, the earliest covering receipt, as the recipients
  list dates it), so a campaign's metrics and recipients read the same after as before.
  Follow-ups of events that came from no webhook (a tag added through the API, an import or a
  flow: `webhook_event_id` NULL) go once done for as long.
- **Spent quota-ledger rows**: reservations older than twice the 24 h window, which no limit
  and no "frees at" looks at any more (services/messaging/quota.py prunes them too, but only
  for an account that sends again; an account that stopped keeps them until this).
- **LLM call records** (`llm_calls`) older than `MKTX_LLM_CALL_RETENTION_DAYS` (90). Deleted with
  the analytics triggers off for the transaction (`mktx.analytics`, migration 0016): a pruned
  call was counted when it happened and stays counted in the rollups.

Each batch is one statement, `DELETE … WHERE id IN (SELECT … ORDER BY <time> LIMIT n FOR
UPDATE SKIP LOCKED)`, in its own transaction, served by an index on the time column
(migrations 0010, 0017, 0018): no long lock, no table scan, no wait on what another writer
holds (1,000 events with a few hundred opens to record: some 60 ms). A pass deletes at most
`batch × max_batches` rows per table; `more` says the next pass (the next maintenance run) has
more to do.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import TextClause, text

from mktx.settings import Settings
from models.db import SessionMaker
from services.campaigns.metrics import OPENING_READS
from services.messaging.quota import WINDOW as QUOTA_WINDOW
from workflows.contracts.maintenance import RetentionReport

logger = logging.getLogger(__name__)

# As services/messaging/quota.py's prune_ledger: older than this, no window sees a reservation.
LEDGER_SPENT_AFTER = 2 * QUOTA_WINDOW


@dataclass(frozen=True, slots=True)
class RetentionWindows:
    raw_events: timedelta
    llm_calls: timedelta
    ledger: timedelta = LEDGER_SPENT_AFTER

    @classmethod
    def from_settings(cls, settings: Settings) -> RetentionWindows:
        return cls(
            raw_events=timedelta(days=settings.raw_event_retention_days),
            llm_calls=timedelta(days=settings.llm_call_retention_days),
        )


# The oldest events past the window that nothing needs any more; the campaign recipients
# their read receipts open, given that open (the earliest receipt covering their DM, as
# recipients.py dates it) while the receipts still exist; then the events, follow-ups with them.
_PRUNE_EVENTS = text(
    f"""
WITH doomed AS (
    SELECT e.id FROM webhook_events e
    WHERE e.received_at < :cutoff
      AND e.processed_at IS NOT NULL
      AND NOT EXISTS (
          SELECT 1 FROM event_follow_ups f WHERE f.webhook_event_id = e.id AND f.done_at IS NULL)
    ORDER BY e.received_at
    LIMIT :batch
    FOR UPDATE SKIP LOCKED
), opened AS (
    UPDATE campaign_recipients r SET read_at = (SELECT min(w.received_at) {OPENING_READS})
    FROM contacts c, x_accounts a
    WHERE c.id = r.contact_id AND a.id = r.account_id
      AND r.state = 'sent' AND r.read_at IS NULL
      AND r.contact_id IN (
          SELECT k.id FROM webhook_events e
          JOIN x_accounts xa ON xa.merchant_id = e.merchant_id AND xa.twitter_user_id = e.for_user_id
          JOIN contacts k ON k.account_id = xa.id AND k.twitter_user_id = e.subject_user_id
          WHERE e.id IN (SELECT id FROM doomed) AND e.event_type = 'read')
      AND EXISTS (SELECT 1 {OPENING_READS})
    RETURNING r.id
), gone AS (
    DELETE FROM webhook_events WHERE id IN (SELECT id FROM doomed) RETURNING id
)
SELECT (SELECT count(*) FROM gone) AS deleted, (SELECT count(*) FROM opened) AS opens
"""
)

_PRUNE_FOLLOW_UPS = text(
    """
WITH gone AS (
    DELETE FROM event_follow_ups WHERE id IN (
        SELECT id FROM event_follow_ups
        WHERE webhook_event_id IS NULL AND done_at IS NOT NULL AND done_at < :cutoff
        ORDER BY done_at LIMIT :batch FOR UPDATE SKIP LOCKED)
    RETURNING id
)
SELECT count(*) AS deleted, 0 AS opens FROM gone
"""
)

_PRUNE_LEDGER = text(
    """
WITH gone AS (
    DELETE FROM send_reservations WHERE id IN (
        SELECT id FROM send_reservations WHERE reserved_at < :cutoff
        ORDER BY reserved_at LIMIT :batch FOR UPDATE SKIP LOCKED)
    RETURNING id
)
SELECT count(*) AS deleted, 0 AS opens FROM gone
"""
)

_PRUNE_LLM_CALLS = text(
    """
WITH gone AS (
    DELETE FROM llm_calls WHERE id IN (
        SELECT id FROM llm_calls WHERE created_at < :cutoff
        ORDER BY created_at LIMIT :batch FOR UPDATE SKIP LOCKED)
    RETURNING id
)
SELECT count(*) AS deleted, 0 AS opens FROM gone
"""
)
# The analytics rollups keep what they counted (a pruned call happened all the same).
_ANALYTICS_OFF = text("SELECT set_config('mktx.analytics', 'off', true)")


async def prune_retained(
    sessions: SessionMaker,
    windows: RetentionWindows,
    *,
    now: datetime,
    batch: int,
    max_batches: int,
) -> RetentionReport:
    """One pass over each table (see the module)."""
    report = RetentionReport()
    events, report.opens_recorded, more_events = await _prune(
        sessions, _PRUNE_EVENTS, now - windows.raw_events, batch, max_batches
    )
    follow_ups, _, more_follow_ups = await _prune(
        sessions, _PRUNE_FOLLOW_UPS, now - windows.raw_events, batch, max_batches
    )
    ledger, _, more_ledger = await _prune(
        sessions, _PRUNE_LEDGER, now - windows.ledger, batch, max_batches
    )
    calls, _, more_calls = await _prune(
        sessions, _PRUNE_LLM_CALLS, now - windows.llm_calls, batch, max_batches, _ANALYTICS_OFF
    )
    report.webhook_events, report.follow_ups = events, follow_ups
    report.ledger_rows, report.llm_calls = ledger, calls
    report.more = more_events or more_follow_ups or more_ledger or more_calls
    if events or follow_ups or ledger or calls:
        logger.info("maintenance.retention_pruned", extra=report.model_dump())
    return report


async def _prune(
    sessions: SessionMaker,
    statement: TextClause,
    cutoff: datetime,
    batch: int,
    max_batches: int,
    before: TextClause | None = None,
) -> tuple[int, int, bool]:
    """Batches of `statement` until one comes back short: (deleted, opens, more left)."""
    deleted = opens = 0
    params: dict[str, Any] = {"cutoff": cutoff, "batch": batch}
    for _ in range(max_batches):
        async with sessions() as session, session.begin():
            if before is not None:
                await session.execute(before)
            row = (await session.execute(statement, params)).one()
        deleted += int(row.deleted)
        opens += int(row.opens)
        if row.deleted < batch:
            return deleted, opens, False
    return deleted, opens, True
