"""maintenance: webhook event reprocessing backs off (attempts, next attempt), queued sends index

Revision ID: 0006_maintenance
Revises: 0005
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_maintenance"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "webhook_events",
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
    )
    op.add_column(
        "webhook_events",
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
    )
    # Events still pending failed once when they were stored.
    op.execute("UPDATE webhook_events SET attempts = 1 WHERE processed_at IS NULL")
    op.drop_index("ix_webhook_events_unprocessed", table_name="webhook_events")
    op.execute(
        "CREATE INDEX ix_webhook_events_pending ON webhook_events "
        "((coalesce(next_attempt_at, received_at)), id) WHERE processed_at IS NULL"
    )
    # The outbound sweep: messages still waiting for X (few, among all messages).
    op.execute("CREATE INDEX ix_messages_queued ON messages (created_at) WHERE status = 'queued'")


def downgrade() -> None:
    op.drop_index("ix_messages_queued", table_name="messages")
    op.drop_index("ix_webhook_events_pending", table_name="webhook_events")
    op.create_index(
        "ix_webhook_events_unprocessed",
        "webhook_events",
        ["received_at"],
        unique=False,
        postgresql_where="processed_at IS NULL",
    )
    op.drop_column("webhook_events", "next_attempt_at")
    op.drop_column("webhook_events", "attempts")
