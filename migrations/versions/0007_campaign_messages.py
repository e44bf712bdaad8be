"""campaign messages: the inbox records campaign DMs, each tagged with its campaign

Revision ID: 0007_campaign_messages
Revises: 0006_maintenance
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_campaign_messages"
down_revision: str | None = "0006_maintenance"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable, no default: adding it rewrites nothing.
    op.add_column("messages", sa.Column("campaign_id", sa.Uuid(), nullable=True))
    op.create_foreign_key(
        "messages_campaign_id_fkey",
        "messages",
        "campaigns",
        ["campaign_id"],
        ["id"],
        ondelete="SET NULL",
    )
    # Few messages are a campaign's; deleting a campaign finds them through this.
    op.execute(
        "CREATE INDEX ix_messages_campaign ON messages (campaign_id) WHERE campaign_id IS NOT NULL"
    )


def downgrade() -> None:
    op.drop_index("ix_messages_campaign", table_name="messages")
    op.drop_constraint("messages_campaign_id_fkey", "messages", type_="foreignkey")
    op.drop_column("messages", "campaign_id")
