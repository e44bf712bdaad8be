"""The AI assistant: the merchants' settings (`ai_settings`), each conversation's AI session
(`ai_sessions`), escalations to humans (`escalations`, one open per conversation) and the
record of model calls (`llm_calls`).

Revision ID: 0014_assistant
Revises: 0013_flow_runs
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0014_assistant"
down_revision: str | None = "0013_flow_runs"
branch_labels = None
depends_on = None

_TEXT = sqlmodel.sql.sqltypes.AutoString
_JSONB = postgresql.JSONB(astext_type=sa.Text())


def _tenant() -> list[sa.Column]:  # type: ignore[type-arg]
    return [
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("merchant_id", _TEXT(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    ]


def _conversation() -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(
        "conversation_id",
        sa.Uuid(),
        sa.ForeignKey("conversations.id", ondelete="CASCADE"),
        nullable=False,
    )


def upgrade() -> None:
    op.create_table(
        "ai_settings",
        sa.Column("merchant_id", _TEXT(length=128), primary_key=True),
        sa.Column("settings", _JSONB, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "ai_sessions",
        *_tenant(),
        _conversation(),
        sa.Column("context", _JSONB, server_default="[]", nullable=False),
        sa.Column("current_intent", _TEXT(length=64), nullable=True),
        sa.Column("slots", _JSONB, server_default="{}", nullable=False),
        sa.Column("bot_paused", sa.Boolean(), nullable=False),
        sa.UniqueConstraint("conversation_id"),
    )
    op.create_table(
        "escalations",
        *_tenant(),
        _conversation(),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", _TEXT(length=200), nullable=False),
        sa.Column("assigned_to_user_id", _TEXT(length=128), nullable=True),
        sa.Column("escalated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sla_due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("breached", sa.Boolean(), nullable=False),
        sa.Column("handoff_sent", sa.Boolean(), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolution", _TEXT(length=32), nullable=True),
    )
    op.create_index(
        "uq_escalations_open",
        "escalations",
        ["conversation_id"],
        unique=True,
        postgresql_where=sa.text("status = 'open'"),
    )
    op.create_index(
        "ix_escalations_merchant_escalated", "escalations", ["merchant_id", "escalated_at"]
    )
    op.create_table(
        "llm_calls",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("merchant_id", _TEXT(length=128), nullable=False),
        sa.Column("conversation_id", sa.Uuid(), nullable=True),
        sa.Column("model", _TEXT(length=200), nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), nullable=True),
        sa.Column("completion_tokens", sa.Integer(), nullable=True),
        sa.Column("cost", sa.Float(), nullable=True),
        sa.Column("latency_ms", sa.Integer(), nullable=False),
        sa.Column("outcome", _TEXT(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_llm_calls_merchant_at", "llm_calls", ["merchant_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_llm_calls_merchant_at", table_name="llm_calls")
    op.drop_table("llm_calls")
    op.drop_index("ix_escalations_merchant_escalated", table_name="escalations")
    op.drop_index("uq_escalations_open", table_name="escalations")
    op.drop_table("escalations")
    op.drop_table("ai_sessions")
    op.drop_table("ai_settings")
