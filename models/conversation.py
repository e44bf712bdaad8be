"""Conversations (a contact's DM thread with an account) and their messages."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from annotated_types import MaxLen
from pydantic import AnyHttpUrl, StringConstraints
from sqlalchemy import Column, DateTime, ForeignKey, Index, String, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field

from models.camel import CamelModel
from models.db import TenantRow, utcnow


class ConversationStatus(StrEnum):
    open = "open"
    closed = "closed"


class MessageDirection(StrEnum):
    inbound = "inbound"
    outbound = "outbound"


class MessageStatus(StrEnum):
    received = "received"  # inbound
    queued = "queued"  # outbound, not yet accepted by X
    sent = "sent"  # X accepted it (has a twitter_message_id)
    read = "read"  # the contact's read receipt arrived
    failed = "failed"  # X refused it for good; see error


class Conversation(TenantRow, table=True):
    __tablename__ = "conversations"
    __table_args__ = (
        Index("ix_conversations_merchant_account", "merchant_id", "account_id", "status"),
        Index("ix_conversations_merchant_contact", "merchant_id", "contact_id"),
        # The inbox list: newest activity first, conversations without messages last.
        Index(
            "ix_conversations_merchant_activity",
            "merchant_id",
            text("last_message_at DESC NULLS LAST"),
            text("started_at DESC"),
        ),
        # At most one open conversation per contact: a new inbound DM after close opens another.
        Index(
            "uq_conversations_open_per_contact",
            "contact_id",
            unique=True,
            postgresql_where=text("status = 'open'"),
        ),
    )

    account_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("x_accounts.id", ondelete="CASCADE"), nullable=False)
    )
    contact_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False)
    )
    status: ConversationStatus = Field(default=ConversationStatus.open, sa_type=String(16))  # type: ignore[call-overload]
    channel: str = Field(default="direct_message", max_length=32)
    assigned_to_user_id: str | None = Field(default=None, max_length=128)
    started_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))  # type: ignore[call-overload]
    last_message_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))  # type: ignore[call-overload]
    closed_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))  # type: ignore[call-overload]
    close_reason: str | None = Field(default=None, max_length=256)
    message_count: int = 0  # kept by the code that adds messages


class Message(TenantRow, table=True):
    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("account_id", "twitter_message_id", name="uq_messages_x_event"),
        Index("ix_messages_conversation", "conversation_id", "sent_at"),
        Index("ix_messages_merchant_account_sent", "merchant_id", "account_id", "sent_at"),
        Index("ix_messages_merchant_contact", "merchant_id", "contact_id"),
        # The outbound sweep (services/messaging/sweep.py) looks for messages left queued.
        Index("ix_messages_queued", "created_at", postgresql_where=text("status = 'queued'")),
        Index(
            "ix_messages_campaign", "campaign_id", postgresql_where=text("campaign_id IS NOT NULL")
        ),
    )

    conversation_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False)
    )
    account_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("x_accounts.id", ondelete="CASCADE"), nullable=False)
    )
    contact_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False)
    )
    direction: MessageDirection = Field(sa_type=String(16))  # type: ignore[call-overload]
    type: str = Field(default="text", max_length=32)
    content: str
    attachments: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSONB, nullable=False)
    )
    # Inbound: the option a quick reply's answer chose, as X sends it ({type, metadata}).
    quick_reply: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB))
    is_from_bot: bool = False
    twitter_message_id: str | None = Field(default=None, max_length=64)
    sent_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))  # type: ignore[call-overload]
    read_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))  # type: ignore[call-overload]
    status: MessageStatus = Field(default=MessageStatus.received, sa_type=String(16))  # type: ignore[call-overload]
    error: str | None = Field(default=None, max_length=1024)
    sent_by_user_id: str | None = Field(default=None, max_length=128)
    # The campaign that sent it (its DM or a test send); the inbox shows campaign DMs too.
    # Outbound only: the send kind (opt-out is checked for marketing kinds when it is sent),
    # and when it was handed to X while the outcome is unknown (looked for at X before resending).
    kind: str | None = Field(default=None, max_length=16)
    attempt_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))  # type: ignore[call-overload]
    campaign_id: uuid.UUID | None = Field(
        default=None, sa_column=Column(ForeignKey("campaigns.id", ondelete="SET NULL"))
    )


# API schemas -------------------------------------------------------------------------------

MAX_DM_TEXT = 10_000  # X's limit on a DM's text


class ConversationContact(CamelModel):
    username: str | None
    display_name: str | None


class ConversationPublic(CamelModel):
    id: uuid.UUID
    contact_id: uuid.UUID
    account_id: uuid.UUID
    status: ConversationStatus
    channel: str
    assigned_to_user_id: str | None
    message_count: int
    started_at: datetime
    last_message_at: datetime | None
    closed_at: datetime | None
    close_reason: str | None
    contact: ConversationContact | None = None


class MessagePublic(CamelModel):
    id: uuid.UUID
    conversation_id: uuid.UUID
    direction: MessageDirection
    type: str
    content: str
    attachments: list[dict[str, Any]]
    quick_reply: dict[str, Any] | None = None  # an answer to quick-reply options: {type, metadata}
    is_from_bot: bool
    status: MessageStatus
    twitter_message_id: str | None
    sent_at: datetime
    read_at: datetime | None
    error: str | None
    sent_by_user_id: str | None
    campaign_id: uuid.UUID | None = None  # the campaign that sent it (null otherwise)


class ConversationDetail(ConversationPublic):
    messages: list[MessagePublic] | None = None  # null when includeMessages=false


class AttachmentIn(CamelModel):
    type: Literal["image", "video", "gif", "file", "link"]
    url: AnyHttpUrl


class MessageSend(CamelModel):
    # The 10,000-character limit is checked by the send path (400 VALIDATION_ERROR, as the spec
    # says), not here, so that every sender (inbox, campaigns, flows) answers the same way.
    content: str
    type: Literal["text", "image", "video", "gif", "file"] = "text"
    attachments: Annotated[list[AttachmentIn], MaxLen(4)] = []


class ConversationClose(CamelModel):
    reason: (
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=256)]
        | None
    ) = None


class ConversationAssign(CamelModel):
    user_id: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]
