"""Durable follow-ups: what an ingested event owes the workflows waiting on its contact (signals
to listeners, starts decided by triggers), recorded with the event (see
models.webhook_event.EventFollowUp), by `mktx_record_follow_ups` (RECORD_FOLLOW_UPS: why a
function, services/ingestion/sql.py's `_follow_ups` says).

Revision ID: 0010_follow_ups
Revises: 0009_send_path
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010_follow_ups"
down_revision: str | None = "0009_send_path"
branch_labels = None
depends_on = None

# Records an event's follow-ups, one row per (kind, target) pair, and returns them as JSON
# (id, kind, target, payload), as the ingestion statement that calls it returns them.
RECORD_FOLLOW_UPS = """
CREATE FUNCTION mktx_record_follow_ups(
    p_event_id uuid, p_merchant_id varchar, p_kinds text[], p_targets varchar[],
    p_payload jsonb, p_now timestamptz, p_due timestamptz
) RETURNS json LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    recorded json;
BEGIN
    WITH inserted AS (
        INSERT INTO event_follow_ups (
            id, merchant_id, webhook_event_id, kind, target, payload, created_at,
            next_attempt_at)
        SELECT gen_random_uuid(), p_merchant_id, p_event_id, t.kind, t.target, p_payload,
            p_now, p_due
        FROM unnest(p_kinds, p_targets) AS t (kind, target)
        RETURNING id, kind, target, payload
    )
    SELECT json_agg(inserted) INTO recorded FROM inserted;
    RETURN recorded;
END
$$
"""


def upgrade() -> None:
    op.create_table(
        "event_follow_ups",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("merchant_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("webhook_event_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("target", sqlmodel.sql.sqltypes.AutoString(length=256), nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("start", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
        sa.Column("last_error", sqlmodel.sql.sqltypes.AutoString(length=2048), nullable=True),
        sa.ForeignKeyConstraint(["webhook_event_id"], ["webhook_events.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "webhook_event_id", "kind", "target", name="uq_event_follow_ups_target"
        ),
    )
    op.create_index(
        "ix_event_follow_ups_due",
        "event_follow_ups",
        ["next_attempt_at", "id"],
        postgresql_where=sa.text("done_at IS NULL"),
    )
    op.create_index(
        "ix_event_follow_ups_done",
        "event_follow_ups",
        ["done_at"],
        postgresql_where=sa.text("done_at IS NOT NULL"),
    )
    op.execute(RECORD_FOLLOW_UPS)


def downgrade() -> None:
    op.execute(
        "DROP FUNCTION mktx_record_follow_ups(uuid, varchar, text[], varchar[], jsonb, "
        "timestamptz, timestamptz)"
    )
    op.drop_index("ix_event_follow_ups_done", table_name="event_follow_ups")
    op.drop_index("ix_event_follow_ups_due", table_name="event_follow_ups")
    op.drop_table("event_follow_ups")
