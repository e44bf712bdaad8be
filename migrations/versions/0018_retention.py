"""Retention: the maintenance schedule prunes raw webhook events and records of LLM calls past
their windows (services/maintenance/retention.py), oldest first, in bounded batches. These
indexes let each batch find its oldest rows without reading the whole table:
`ix_webhook_events_received` (webhook_events by `received_at`) and `ix_llm_calls_created`
(llm_calls by `created_at`; the merchant's index does not lead with time). The ledger's
`ix_send_reservations_time` exists already (0017).

Both are built CONCURRENTLY, outside a transaction: webhook ingestion keeps writing meanwhile.
A build that fails leaves an INVALID index: drop it and run the migration again.

Revision ID: 0018_retention
Revises: 0017_x_payloads
"""

from __future__ import annotations

from alembic import op

revision: str = "0018_retention"
down_revision: str | None = "0017_x_payloads"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_webhook_events_received",
            "webhook_events",
            ["received_at"],
            postgresql_concurrently=True,
        )
        op.create_index(
            "ix_llm_calls_created", "llm_calls", ["created_at"], postgresql_concurrently=True
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index("ix_llm_calls_created", table_name="llm_calls", postgresql_concurrently=True)
        op.drop_index(
            "ix_webhook_events_received", table_name="webhook_events", postgresql_concurrently=True
        )
