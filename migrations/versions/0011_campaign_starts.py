"""Durable starts: what Temporal still owes a campaign or an account is readable in its row.

- `campaigns.temporal_synced_at`: when Temporal last took the campaign's run as the row
  describes it (its workflow or Schedule started, then any new startAt/endAt/recurrence).
  NULL while that is owed: a start or a schedule change commits it NULL, then tells Temporal,
  then sets it; the maintenance schedule carries out what Temporal being away (or a process
  dying) left undone. Campaigns started before this revision were started then: set.
- Partial indexes for the maintenance schedule's look at what is owed (few rows among many):
  started campaigns not synced; connected accounts still subscribing; disconnected accounts
  still holding a token (their disconnect workflow has not finished).

Revision ID: 0011_campaign_starts
Revises: 0010_follow_ups
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0011_campaign_starts"
down_revision: str | None = "0010_follow_ups"
branch_labels = None
depends_on = None

_STARTED = "('scheduled', 'running', 'paused')"


def upgrade() -> None:
    op.add_column(
        "campaigns", sa.Column("temporal_synced_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.execute("UPDATE campaigns SET temporal_synced_at = updated_at WHERE status <> 'draft'")
    op.execute(
        "CREATE INDEX ix_campaigns_sync_owed ON campaigns (updated_at) "
        f"WHERE temporal_synced_at IS NULL AND status IN {_STARTED}"
    )
    op.execute(
        "CREATE INDEX ix_x_accounts_subscribing ON x_accounts (connected_at) "
        "WHERE subscription_status = 'pending' AND disconnected_at IS NULL "
        "AND oauth_token_encrypted IS NOT NULL"
    )
    op.execute(
        "CREATE INDEX ix_x_accounts_revoking ON x_accounts (disconnected_at) "
        "WHERE disconnected_at IS NOT NULL AND oauth_token_encrypted IS NOT NULL"
    )


def downgrade() -> None:
    op.drop_index("ix_x_accounts_revoking", table_name="x_accounts")
    op.drop_index("ix_x_accounts_subscribing", table_name="x_accounts")
    op.drop_index("ix_campaigns_sync_owed", table_name="campaigns")
    op.drop_column("campaigns", "temporal_synced_at")
