"""The one send path: every DM the service sends is a message row, claimed and consent-checked
when it is handed to X.

- `messages.kind`: the send kind of an outbound message (inbox, campaign, flow, bot, system):
  opt-out is checked for the marketing kinds when the message is sent.
- `messages.attempt_at`: when the message was handed to X; set while the outcome is unknown,
  so that a later attempt looks for it at X before sending again.
- `campaign_recipients.message_id`, `campaign_test_sends.message_id`: the message that carries
  the recipient's (or test's) DM.
- `campaign_recipients.contact_id` nullable, ON DELETE SET NULL: a contact erased after the
  snapshot leaves its recipient row, without anything naming the person, counted as skipped
  (`deleted`) instead of vanishing from the campaign's figures.

Revision ID: 0009_send_path
Revises: 0008_search_fold
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0009_send_path"
down_revision: str | None = "0008_search_fold"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("messages", sa.Column("kind", sa.String(16), nullable=True))
    op.add_column("messages", sa.Column("attempt_at", sa.DateTime(timezone=True), nullable=True))
    op.execute(
        "UPDATE messages SET kind = CASE WHEN campaign_id IS NULL THEN 'inbox' ELSE 'campaign' END "
        "WHERE direction = 'outbound'"
    )
    for table in ("campaign_recipients", "campaign_test_sends"):
        op.add_column(table, sa.Column("message_id", sa.Uuid(), nullable=True))
        op.create_foreign_key(
            f"{table}_message_id_fkey",
            table,
            "messages",
            ["message_id"],
            ["id"],
            ondelete="SET NULL",
        )
    # Settling a batch finds its recipients by message; deleting a message nulls the reference.
    op.create_index("ix_campaign_recipients_message", "campaign_recipients", ["message_id"])
    op.create_index("ix_campaign_test_sends_message", "campaign_test_sends", ["message_id"])
    op.alter_column("campaign_recipients", "contact_id", nullable=True)
    op.drop_constraint(
        "campaign_recipients_contact_id_fkey", "campaign_recipients", type_="foreignkey"
    )
    op.create_foreign_key(
        "campaign_recipients_contact_id_fkey",
        "campaign_recipients",
        "contacts",
        ["contact_id"],
        ["id"],
        ondelete="SET NULL",
    )


def downgrade() -> None:
    op.execute("DELETE FROM campaign_recipients WHERE contact_id IS NULL")
    op.drop_constraint(
        "campaign_recipients_contact_id_fkey", "campaign_recipients", type_="foreignkey"
    )
    op.create_foreign_key(
        "campaign_recipients_contact_id_fkey",
        "campaign_recipients",
        "contacts",
        ["contact_id"],
        ["id"],
        ondelete="CASCADE",
    )
    op.alter_column("campaign_recipients", "contact_id", nullable=False)
    op.drop_index("ix_campaign_test_sends_message", table_name="campaign_test_sends")
    op.drop_index("ix_campaign_recipients_message", table_name="campaign_recipients")
    for table in ("campaign_recipients", "campaign_test_sends"):
        op.drop_constraint(f"{table}_message_id_fkey", table, type_="foreignkey")
        op.drop_column(table, "message_id")
    op.drop_column("messages", "attempt_at")
    op.drop_column("messages", "kind")
