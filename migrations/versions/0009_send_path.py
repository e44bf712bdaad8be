"""The one send path: every DM a message row with its send kind and attempt time.

Revision ID: 0009_send_path
Revises: 0008_search_fold
"""

from __future__ import annotations

revision: str = "0009_send_path"
down_revision: str | None = "0008_search_fold"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
