"""Workflows waiting on a contact: ingestion signals each one when that contact does something."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Column, DateTime, ForeignKey, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from models.db import utcnow


class WorkflowListener(SQLModel, table=True):
    __tablename__ = "workflow_listeners"
    __table_args__ = (
        UniqueConstraint("workflow_id", "contact_id", name="uq_workflow_listeners_workflow"),
        Index("ix_workflow_listeners_contact", "merchant_id", "contact_id"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    merchant_id: str = Field(max_length=128)
    contact_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False)
    )
    workflow_id: str = Field(max_length=256)
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))  # type: ignore[call-overload]
    # A listener whose workflow died without unregistering stops being signalled after this.
    expires_at: datetime = Field(sa_type=DateTime(timezone=True))  # type: ignore[call-overload]
