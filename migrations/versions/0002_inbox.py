"""inbox

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "workflow_listeners",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("merchant_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("contact_id", sa.Uuid(), nullable=False),
        sa.Column("workflow_id", sqlmodel.sql.sqltypes.AutoString(length=256), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["contact_id"], ["contacts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("workflow_id", "contact_id", name="uq_workflow_listeners_workflow"),
    )
    op.create_index(
        "ix_workflow_listeners_contact",
        "workflow_listeners",
        ["merchant_id", "contact_id"],
        unique=False,
    )
    op.create_table(
        "contact_deletions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("merchant_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("contact_id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column(
            "deleted_by_user_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False
        ),
        sa.Column("removed", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_contact_deletions_merchant",
        "contact_deletions",
        ["merchant_id", "created_at"],
        unique=False,
    )
    op.create_table(
        "webhook_events",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("merchant_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
        sa.Column("account_id", sa.Uuid(), nullable=True),
        sa.Column("for_user_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("event_type", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("dedup_key", sqlmodel.sql.sqltypes.AutoString(length=256), nullable=False),
        sa.Column("subject_user_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.Column("contact_id", sa.Uuid(), nullable=True),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sqlmodel.sql.sqltypes.AutoString(length=2048), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dedup_key", name="uq_webhook_events_dedup"),
    )
    op.create_index("ix_webhook_events_contact", "webhook_events", ["contact_id"], unique=False)
    op.create_index(
        "ix_webhook_events_merchant_subject",
        "webhook_events",
        ["merchant_id", "subject_user_id"],
        unique=False,
    )
    op.create_index(
        "ix_webhook_events_unprocessed",
        "webhook_events",
        ["received_at"],
        unique=False,
        postgresql_where="processed_at IS NULL",
    )
    op.create_table(
        "send_reservations",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("merchant_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("reserved_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("message_id", sa.Uuid(), nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["x_accounts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_send_reservations_account_time",
        "send_reservations",
        ["account_id", "reserved_at"],
        unique=False,
    )
    op.add_column("contacts", sa.Column("opted_out_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column(
        "contacts",
        sa.Column("conversation_count", sa.Integer(), nullable=False, server_default="0"),
    )
    op.execute(
        "UPDATE contacts SET conversation_count = "
        "(SELECT count(*) FROM conversations c WHERE c.contact_id = contacts.id)"
    )
    op.add_column(
        "contacts",
        sa.Column(
            "search_vector",
            postgresql.TSVECTOR(),
            sa.Computed(
                "to_tsvector('simple', coalesce(username, '') || ' ' || coalesce(display_name, ''))",
                persisted=True,
            ),
            nullable=True,
        ),
    )
    op.create_index(
        "ix_contacts_merchant_recent",
        "contacts",
        ["merchant_id", "last_interaction_at"],
        unique=False,
    )
    op.create_index(
        "ix_contacts_search", "contacts", ["search_vector"], unique=False, postgresql_using="gin"
    )
    op.add_column(
        "conversations",
        sa.Column("message_count", sa.Integer(), nullable=False, server_default="0"),
    )
    op.execute(
        "UPDATE conversations SET message_count = "
        "(SELECT count(*) FROM messages m WHERE m.conversation_id = conversations.id)"
    )
    op.create_index(
        "ix_conversations_merchant_activity",
        "conversations",
        ["merchant_id", "last_message_at"],
        unique=False,
    )
    op.create_index(
        "uq_conversations_open_per_contact",
        "conversations",
        ["contact_id"],
        unique=True,
        postgresql_where=sa.text("status = 'open'"),
    )
    op.add_column("messages", sa.Column("contact_id", sa.Uuid(), nullable=True))
    op.execute(
        "UPDATE messages SET contact_id = c.contact_id FROM conversations c "
        "WHERE c.id = messages.conversation_id"
    )
    op.alter_column("messages", "contact_id", nullable=False)
    op.add_column(
        "messages",
        sa.Column("status", sa.String(length=16), nullable=False, server_default="received"),
    )
    op.add_column(
        "messages", sa.Column("error", sqlmodel.sql.sqltypes.AutoString(length=1024), nullable=True)
    )
    op.add_column(
        "messages",
        sa.Column("sent_by_user_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
    )
    op.create_index(
        "ix_messages_merchant_contact", "messages", ["merchant_id", "contact_id"], unique=False
    )
    op.create_foreign_key(
        "fk_messages_contact", "messages", "contacts", ["contact_id"], ["id"], ondelete="CASCADE"
    )


def downgrade() -> None:
    op.drop_index("ix_workflow_listeners_contact", table_name="workflow_listeners")
    op.drop_table("workflow_listeners")
    op.drop_constraint("fk_messages_contact", "messages", type_="foreignkey")
    op.drop_index("ix_messages_merchant_contact", table_name="messages")
    op.drop_column("messages", "sent_by_user_id")
    op.drop_column("messages", "error")
    op.drop_column("messages", "status")
    op.drop_column("messages", "contact_id")
    op.drop_index(
        "uq_conversations_open_per_contact",
        table_name="conversations",
        postgresql_where=sa.text("status = 'open'"),
    )
    op.drop_index("ix_conversations_merchant_activity", table_name="conversations")
    op.drop_column("conversations", "message_count")
    op.drop_index("ix_contacts_search", table_name="contacts", postgresql_using="gin")
    op.drop_index("ix_contacts_merchant_recent", table_name="contacts")
    op.drop_column("contacts", "search_vector")
    op.drop_column("contacts", "conversation_count")
    op.drop_column("contacts", "opted_out_at")
    op.drop_index("ix_send_reservations_account_time", table_name="send_reservations")
    op.drop_table("send_reservations")
    op.drop_index(
        "ix_webhook_events_unprocessed",
        table_name="webhook_events",
        postgresql_where="processed_at IS NULL",
    )
    op.drop_index("ix_webhook_events_merchant_subject", table_name="webhook_events")
    op.drop_index("ix_webhook_events_contact", table_name="webhook_events")
    op.drop_table("webhook_events")
    op.drop_index("ix_contact_deletions_merchant", table_name="contact_deletions")
    op.drop_table("contact_deletions")
