"""Contacts: the X users a merchant's account talks with."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import Field as PydanticField
from pydantic import StringConstraints
from sqlalchemy import (
    Column,
    Computed,
    DateTime,
    ForeignKey,
    Index,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TSVECTOR
from sqlmodel import Field

from models.camel import CamelModel
from models.db import TenantRow


class ContactSource(StrEnum):
    inbound_message = "inbound_message"
    new_follower = "new_follower"
    import_ = "import"
    manual = "manual"


class Contact(TenantRow, table=True):
    __tablename__ = "contacts"
    __table_args__ = (
        UniqueConstraint("account_id", "twitter_user_id", name="uq_contacts_account_user"),
        Index("ix_contacts_merchant_account", "merchant_id", "account_id"),
        Index("ix_contacts_tags", "tags", postgresql_using="gin"),
        Index("ix_contacts_attributes", "attributes", postgresql_using="gin"),
        Index("ix_contacts_search", "search_vector", postgresql_using="gin"),
        Index("ix_contacts_merchant_recent", "merchant_id", "last_interaction_at"),
        # The contacts list: one merchant's page in display order, served from the index.
        Index(
            "ix_contacts_merchant_list",
            "merchant_id",
            text("last_interaction_at DESC NULLS LAST"),
            "id",
            postgresql_include=["account_id", "tags", "search_vector"],
        ),
        # Tenant + account + tag + search filters in one GIN scan (services/contacts/listing.py
        # matches these exact expressions; see the comment there). The search words are their
        # first letters (mktx_word_prefixes, migration 0015): a word prefix is one exact key.
        Index(
            "ix_contacts_scope_filters",
            text("(ARRAY['m:' || merchant_id, 'a:' || account_id::text])"),
            "tags",
            text("mktx_word_prefixes(search_vector)"),
            postgresql_using="gin",
        ),
    )

    account_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("x_accounts.id", ondelete="CASCADE"), nullable=False)
    )
    twitter_user_id: str = Field(max_length=32)
    username: str | None = Field(default=None, max_length=64)
    display_name: str | None = Field(default=None, max_length=256)
    profile_image_url: str | None = Field(default=None, max_length=1024)
    tags: list[str] = Field(default_factory=list, sa_column=Column(ARRAY(String), nullable=False))
    attributes: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(JSONB, nullable=False)
    )
    source: ContactSource = Field(default=ContactSource.manual, sa_type=String(32))  # type: ignore[call-overload]
    opted_out: bool = False
    opted_out_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))  # type: ignore[call-overload]
    conversation_count: int = 0  # kept by the code that opens conversations
    first_interaction_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))  # type: ignore[call-overload]
    last_interaction_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))  # type: ignore[call-overload]
    # Case- and accent-insensitive word-prefix search over username and display name: words
    # folded by mktx_fold() inside mktx_search_vector() (migration 0008: lowercase, Trần → tran,
    # Đức → duc, ß → ss), then kept as they are ('simple'). No extension needed, so the embedded PostgreSQL has it too.
    search_vector: str | None = Field(
        default=None,
        sa_column=Column(
            TSVECTOR,
            Computed(
                "mktx_search_vector(username, display_name)",
                persisted=True,
            ),
        ),
        exclude=True,
    )


class ContactDeletion(TenantRow, table=True):
    """What remains of a contact erased on request (GDPR): an audit record without personal data."""

    __tablename__ = "contact_deletions"
    __table_args__ = (Index("ix_contact_deletions_merchant", "merchant_id", "created_at"),)

    contact_id: uuid.UUID  # random id; names nobody once the contact is gone
    account_id: uuid.UUID
    deleted_by_user_id: str = Field(max_length=128)
    removed: dict[str, int] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False))


# API schemas -------------------------------------------------------------------------------


class ContactPublic(CamelModel):
    id: uuid.UUID
    account_id: uuid.UUID
    twitter_user_id: str
    username: str | None
    display_name: str | None
    profile_image_url: str | None
    tags: list[str]
    attributes: dict[str, Any]
    source: ContactSource
    opted_out: bool
    opted_out_at: datetime | None
    conversation_count: int
    first_interaction_at: datetime | None
    last_interaction_at: datetime | None
    created_at: datetime


class ContactEngagement(CamelModel):
    messages_sent: int  # outbound messages, failed ones excluded
    messages_received: int  # inbound messages
    # How long the contact waited for a reply, averaged: "45s", "5m 30s", "2h 5m", "1d 3h".
    average_response_time: str | None
    average_response_seconds: float | None


class ContactDetail(ContactPublic):
    engagement: ContactEngagement


class ContactUpdate(CamelModel):
    """`displayName` replaces (null clears it); `attributes` are merged into the existing ones."""

    display_name: Annotated[str, StringConstraints(max_length=256)] | None = None
    attributes: dict[str, Any] | None = None


class ContactTagsAdd(CamelModel):
    tags: Annotated[list[str], PydanticField(min_length=1, max_length=100)]


class ContactAttributesReplace(CamelModel):
    attributes: dict[str, Any]


class ContactConversation(CamelModel):
    id: uuid.UUID
    contact_id: uuid.UUID
    account_id: uuid.UUID
    status: str
    channel: str
    assigned_to_user_id: str | None
    message_count: int
    started_at: datetime
    last_message_at: datetime | None
    closed_at: datetime | None


class ContactErased(CamelModel):
    contact_id: uuid.UUID
    removed: dict[str, int]
    workflows_stopped: int


class ImportRejection(CamelModel):
    row: int  # 1 = the first contact record (CSV header and blank lines not counted)
    reason: str


class ContactImportResult(CamelModel):
    received: int  # records read from the body
    created: int
    updated: int
    unchanged: int  # already present with the same data: re-importing a file changes nothing
    rejected: list[ImportRejection]  # the first ones only; rejectedCount has them all
    rejected_count: int
