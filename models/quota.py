"""The send ledger: every DM any part of mkt-x sends reserves a slot of its X account's quota."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import Column, DateTime, ForeignKey, Index, String
from sqlmodel import Field, SQLModel

from models.db import utcnow


class SendKind(StrEnum):
    inbox = "inbox"  # an agent's reply
    campaign = "campaign"
    flow = "flow"
    bot = "bot"
    system = "system"  # opt-out confirmations and the like


class SendReservation(SQLModel, table=True):
    __tablename__ = "send_reservations"
    __table_args__ = (
        Index("ix_send_reservations_account_time", "account_id", "reserved_at"),
        # The app-wide 24 h cap counts every account's reservations (MKTX_APP_DM_LIMIT_PER_24H).
        Index("ix_send_reservations_time", "reserved_at"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    merchant_id: str = Field(max_length=128)
    account_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("x_accounts.id", ondelete="CASCADE"), nullable=False)
    )
    kind: SendKind = Field(sa_type=String(16))  # type: ignore[call-overload]
    reserved_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))  # type: ignore[call-overload]
    message_id: uuid.UUID | None = None
