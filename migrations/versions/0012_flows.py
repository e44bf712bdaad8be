"""Automation flows: the flow definitions (`automation_flows`).

- One row per flow; its document (trigger, nodes, connections) as checked JSONB.
- `account_id` NULL: any of the merchant's accounts; an account that goes takes its flows.
- Indexes with `merchant_id` first: the list (newest first), and the list by status (also the
  active flows a trigger will look up).

Revision ID: 0012_flows
Revises: 0011_campaign_starts
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0012_flows"
down_revision: str | None = "0011_campaign_starts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "automation_flows",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("merchant_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column(
            "account_id",
            sa.Uuid(),
            sa.ForeignKey("x_accounts.id", ondelete="CASCADE"),
            nullable=True,
        ),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("trigger", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("nodes", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("connections", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("reentry", sa.String(length=16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("activated_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_automation_flows_merchant_created", "automation_flows", ["merchant_id", "created_at"]
    )
    op.create_index(
        "ix_automation_flows_merchant_status",
        "automation_flows",
        ["merchant_id", "status", "created_at"],
    )
    # The account's flows, found when it goes (the cascade) without a scan.
    op.create_index("ix_automation_flows_account", "automation_flows", ["account_id"])


def downgrade() -> None:
    op.drop_index("ix_automation_flows_account", table_name="automation_flows")
    op.drop_index("ix_automation_flows_merchant_status", table_name="automation_flows")
    op.drop_index("ix_automation_flows_merchant_created", table_name="automation_flows")
    op.drop_table("automation_flows")
