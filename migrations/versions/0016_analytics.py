"""Analytics: facts and rollups kept in the transaction of the events they count.

Why triggers: the events come from many writers (webhook ingestion's one-statement-per-event
SQL, the send path, imports, erasure, campaign and flow activities); a trigger sees every one of
them in its own transaction, whoever wrote it, and costs nothing when its WHEN clause is false.

- Facts, kept exact row by row: `analytics_contact_days` (a contact's first and last inbound DM
  of each UTC day, and its previous active day: what "active contacts" needs) and
  `analytics_waits` (each answered wait: the inbound DM that found its conversation waiting and
  the reply that ended the wait, see `mktx_analytics_conversation_waits`).
- Rollups, append-only: `analytics_counts` (15-minute UTC slots, so any time zone's midnights
  fall on slot boundaries), `analytics_assignees`, `analytics_wait_bins`, `analytics_returns`
  and `analytics_tags`. A trigger only INSERTs a signed delta row, never updates a shared row:
  no hot row, no lock between concurrent writers, no deadlock. Readers sum the rows; folding
  (services/analytics/rollups.py) merges the deltas of a slot into one row now and then.
- `mktx_analytics_rebuild(merchant)` recomputes facts and rollups from the raw tables (the
  `mkt-x analytics-rebuild` command, and once here for data written before this migration).
  `SET mktx.analytics = 'off'` in a session skips every trigger (bulk loads, the rebuild itself).

Revision ID: 0016_analytics
Revises: 0015_list_scale
"""

from __future__ import annotations

from alembic import op

from migrations.analytics_0016.facts import CONTACT_DAYS, WAITS
from migrations.analytics_0016.rebuild import COUNTS_BETWEEN, REBUILD
from migrations.analytics_0016.tables import DROP, HELPERS, TABLES
from migrations.analytics_0016.triggers import TRIGGERS

revision: str = "0016_analytics"
down_revision: str | None = "0015_list_scale"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for block in (HELPERS, TABLES, WAITS, CONTACT_DAYS, TRIGGERS, COUNTS_BETWEEN, REBUILD):
        op.execute(block)
    # What was written before the triggers existed (nothing on a fresh database).
    op.execute("SELECT mktx_analytics_rebuild(NULL)")


def downgrade() -> None:
    op.execute(DROP)
