"""Message templates: the table, and the shapes the API reads and writes."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import Field as PydanticField
from pydantic import field_validator
from sqlalchemy import Column, Index, String, Text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlmodel import Field

from models.camel import CamelModel, CamelUpdate
from models.db import TenantRow

# X refuses direct messages longer than this; the rendered text must fit too.
MAX_DM_LENGTH = 10_000
MAX_OPTIONS = 20  # X's own limit for quick-reply options


class TemplateType(StrEnum):
    text = "text"
    quick_reply = "quick_reply"  # numbered choices appended to the text
    card = "card"  # text with a link (and an optional media URL)


class Template(TenantRow, table=True):
    __tablename__ = "templates"
    __table_args__ = (Index("ix_templates_merchant_created", "merchant_id", "created_at"),)

    name: str = Field(max_length=200)
    type: TemplateType = Field(default=TemplateType.text, sa_type=String(16))  # type: ignore[call-overload]
    content: str = Field(sa_column=Column(Text, nullable=False))
    variables: list[str] = Field(
        default_factory=list, sa_column=Column(ARRAY(String), nullable=False)
    )
    # [{"label": ..., "value": ...}] for quick_reply, else NULL.
    options: list[dict[str, Any]] | None = Field(default=None, sa_column=Column(JSONB))
    # {"linkUrl": ..., "mediaUrl": ...} for card, else NULL.
    card: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB))


# API schemas -------------------------------------------------------------------------------


def _http_url(value: str) -> str:
    if (
        not value.startswith(("https://", "http://"))
        or len(value) < 11
        or any(ch.isspace() for ch in value)
    ):
        raise ValueError("must be an http(s) URL without spaces")
    return value


class QuickReplyOption(CamelModel):
    label: str = PydanticField(min_length=1, max_length=36)
    # What the choice means to the merchant (e.g. "yes"); the label stands in when absent.
    value: str | None = PydanticField(default=None, min_length=1, max_length=100)


class TemplateCard(CamelModel):
    link_url: str = PydanticField(max_length=2048)
    media_url: str | None = PydanticField(default=None, max_length=2048)

    @field_validator("link_url", "media_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else _http_url(value)


class TemplateCreate(CamelModel):
    name: str = PydanticField(min_length=1, max_length=200)
    type: TemplateType = TemplateType.text
    content: str = PydanticField(min_length=1, max_length=MAX_DM_LENGTH)
    # When omitted, the placeholders found in the content; when given, exactly those.
    variables: list[str] | None = PydanticField(default=None, max_length=100)
    options: list[QuickReplyOption] | None = PydanticField(
        default=None, min_length=1, max_length=MAX_OPTIONS
    )
    card: TemplateCard | None = None


class TemplateUpdate(CamelUpdate):
    not_null = frozenset({"name", "type", "content"})

    name: str | None = PydanticField(default=None, min_length=1, max_length=200)
    type: TemplateType | None = None
    content: str | None = PydanticField(default=None, min_length=1, max_length=MAX_DM_LENGTH)
    variables: list[str] | None = PydanticField(default=None, max_length=100)
    options: list[QuickReplyOption] | None = PydanticField(
        default=None, min_length=1, max_length=MAX_OPTIONS
    )
    card: TemplateCard | None = None


class TemplatePublic(CamelModel):
    id: uuid.UUID
    merchant_id: str
    name: str
    type: TemplateType
    content: str
    variables: list[str]
    options: list[QuickReplyOption] | None
    card: TemplateCard | None
    created_at: datetime
    updated_at: datetime


class TemplatePreviewRequest(CamelModel):
    variables: dict[str, str | int | float | bool] = {}


class TemplatePreview(CamelModel):
    rendered: str  # the direct message exactly as it would be sent
    media_url: str | None = None  # a card's media, sent alongside the text
