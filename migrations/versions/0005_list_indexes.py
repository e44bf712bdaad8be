"""list indexes: contacts page and filters, inbox order

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "CREATE INDEX ix_contacts_merchant_list ON contacts "
        "(merchant_id, last_interaction_at DESC NULLS LAST, id) "
        "INCLUDE (account_id, tags, search_vector)"
    )
    op.execute(
        "CREATE INDEX ix_contacts_scope_filters ON contacts USING gin "
        "((ARRAY['m:' || merchant_id, 'a:' || account_id::text]), tags, search_vector)"
    )
    op.drop_index("ix_conversations_merchant_activity", table_name="conversations")
    op.execute(
        "CREATE INDEX ix_conversations_merchant_activity ON conversations "
        "(merchant_id, last_message_at DESC NULLS LAST, started_at DESC)"
    )


def downgrade() -> None:
    op.drop_index("ix_conversations_merchant_activity", table_name="conversations")
    op.create_index(
        "ix_conversations_merchant_activity", "conversations", ["merchant_id", "last_message_at"]
    )
    op.drop_index("ix_contacts_scope_filters", table_name="contacts")
    op.drop_index("ix_contacts_merchant_list", table_name="contacts")
