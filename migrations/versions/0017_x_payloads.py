"""What X's own payloads need: a DM's quick-reply answer on its message
(`messages.quick_reply`, `{type, metadata}`), and the send ledger by time alone
(`ix_send_reservations_time`), which the app-wide 24 h DM cap counts across accounts
(`MKTX_APP_DM_LIMIT_PER_24H`).

Adding the nullable column rewrites nothing. The index is built with a lock on
`send_reservations` (it holds about one day of reservations per account: seconds).

Revision ID: 0017_x_payloads
Revises: 0016_analytics
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0017_x_payloads"
down_revision: str | None = "0016_analytics"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "messages",
        sa.Column("quick_reply", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    )
    op.create_index("ix_send_reservations_time", "send_reservations", ["reserved_at"])


def downgrade() -> None:
    op.drop_index("ix_send_reservations_time", table_name="send_reservations")
    op.drop_column("messages", "quick_reply")
