"""Running automation flows: the definition each activation snapshotted (`flow_versions`), the
runs (`flow_runs`, one Temporal workflow each) and their steps (`flow_run_steps`); follow-ups
of events that came from no webhook (a tag added): `event_follow_ups.webhook_event_id` NULL;
the triggers armed per merchant (`armed_triggers`: ingestion records trigger starts only there).

Revision ID: 0013_flow_runs
Revises: 0012_flows
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0013_flow_runs"
down_revision: str | None = "0012_flows"
branch_labels = None
depends_on = None

_TEXT = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    op.create_table(
        "flow_versions",
        sa.Column(
            "flow_id",
            sa.Uuid(),
            sa.ForeignKey("automation_flows.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("merchant_id", _TEXT(length=128), nullable=False),
        sa.Column("definition", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("flow_id", "version"),
    )
    op.create_table(
        "flow_runs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("merchant_id", _TEXT(length=128), nullable=False),
        sa.Column(
            "flow_id",
            sa.Uuid(),
            sa.ForeignKey("automation_flows.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("flow_version", sa.Integer(), nullable=False),
        sa.Column(
            "contact_id",
            sa.Uuid(),
            sa.ForeignKey("contacts.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("workflow_id", _TEXT(length=256), nullable=False),
        sa.Column("trigger_event_id", sa.Uuid(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("current_node_id", _TEXT(length=64), nullable=True),
        sa.Column("exit_reason", _TEXT(length=32), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("flow_id", "trigger_event_id", name="uq_flow_runs_trigger_event"),
    )
    op.create_index("ix_flow_runs_flow_started", "flow_runs", ["flow_id", "started_at"])
    op.create_index("ix_flow_runs_flow_contact", "flow_runs", ["flow_id", "contact_id"])
    op.create_index("ix_flow_runs_contact", "flow_runs", ["contact_id"])
    op.create_index(
        "ix_flow_runs_running",
        "flow_runs",
        ["flow_id"],
        postgresql_where=sa.text("status = 'running'"),
    )
    op.create_table(
        "flow_run_steps",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column(
            "run_id", sa.Uuid(), sa.ForeignKey("flow_runs.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("node_id", _TEXT(length=64), nullable=False),
        sa.Column("type", _TEXT(length=32), nullable=False),
        sa.Column("outcome", _TEXT(length=32), nullable=True),
        sa.Column(
            "detail",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default="{}",
            nullable=False,
        ),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("run_id", "node_id", name="uq_flow_run_steps_node"),
    )
    op.alter_column("event_follow_ups", "webhook_event_id", nullable=True)
    op.create_table(
        "armed_triggers",
        sa.Column("merchant_id", _TEXT(length=128), nullable=False),
        sa.Column("trigger", _TEXT(length=128), nullable=False),
        sa.PrimaryKeyConstraint("merchant_id", "trigger"),
    )


def downgrade() -> None:
    op.drop_table("armed_triggers")
    op.execute("DELETE FROM event_follow_ups WHERE webhook_event_id IS NULL")
    op.alter_column("event_follow_ups", "webhook_event_id", nullable=False)
    op.drop_table("flow_run_steps")
    op.drop_index("ix_flow_runs_running", table_name="flow_runs")
    op.drop_index("ix_flow_runs_contact", table_name="flow_runs")
    op.drop_index("ix_flow_runs_flow_contact", table_name="flow_runs")
    op.drop_index("ix_flow_runs_flow_started", table_name="flow_runs")
    op.drop_table("flow_runs")
    op.drop_table("flow_versions")
