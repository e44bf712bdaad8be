"""Segments: saved contact filters, and the shapes the API reads and writes."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import Field as PydanticField
from pydantic import JsonValue, field_validator
from sqlalchemy import Column, Index, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field

from models.camel import CamelModel, CamelUpdate
from models.db import TenantRow

MAX_CONDITIONS = 50
PREVIEW_DEFAULT = 10
PREVIEW_MAX = 50


class SegmentMatch(StrEnum):
    all = "all"  # every condition holds (AND)
    any = "any"  # at least one condition holds (OR)


class SegmentOperator(StrEnum):
    equals = "equals"
    not_equals = "notEquals"
    contains = "contains"
    not_contains = "notContains"
    in_ = "in"
    not_in = "notIn"
    greater_than = "greaterThan"
    greater_than_or_equal = "greaterThanOrEqual"
    less_than = "lessThan"
    less_than_or_equal = "lessThanOrEqual"
    before = "before"
    after = "after"
    exists = "exists"
    not_exists = "notExists"
    within_last_days = "withinLastDays"


class Segment(TenantRow, table=True):
    __tablename__ = "segments"
    __table_args__ = (Index("ix_segments_merchant_created", "merchant_id", "created_at"),)

    name: str = Field(max_length=200)
    match: SegmentMatch = Field(default=SegmentMatch.all, sa_type=String(8))  # type: ignore[call-overload]
    # [{"field": ..., "operator": ..., "value": ...}] as the caller sent them (validated).
    conditions: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSONB, nullable=False)
    )


# API schemas -------------------------------------------------------------------------------


_SCALARS: list[JsonValue] = [
    {"type": "string"},
    {"type": "number"},
    {"type": "boolean"},
    {"type": "null"},
]
_LIST: JsonValue = {"type": "array", "items": {"anyOf": _SCALARS}}


class SegmentCondition(CamelModel):
    field: str = PydanticField(
        min_length=1,
        max_length=128,
        description="tags, attributes.<key>, username, displayName, source, accountId, "
        "optedOut, firstInteractionAt, lastInteractionAt or conversationCount",
    )
    operator: SegmentOperator
    # Checked against the field and the operator by services/segments/sql.py, which words the
    # refusal; the document states the shapes it may take (never an object).
    value: Any = PydanticField(
        default=None,
        description="omitted for exists/notExists; a list for in/notIn",
        json_schema_extra={"anyOf": [*_SCALARS, _LIST]},
    )

    @field_validator("value")
    @classmethod
    def _scalar_or_list(cls, value: Any) -> Any:
        items = value if isinstance(value, list) else [value]
        if any(isinstance(item, dict | list) for item in items):
            raise ValueError("must be a string, a number, a boolean or a list of them")
        return value


class SegmentCreate(CamelModel):
    name: str = PydanticField(min_length=1, max_length=200)
    match: SegmentMatch = SegmentMatch.all
    # No conditions: every contact of the merchant.
    conditions: list[SegmentCondition] = PydanticField(max_length=MAX_CONDITIONS)


class SegmentUpdate(CamelUpdate):
    not_null = frozenset({"name", "match", "conditions"})

    name: str | None = PydanticField(default=None, min_length=1, max_length=200)
    match: SegmentMatch | None = None
    conditions: list[SegmentCondition] | None = PydanticField(
        default=None, max_length=MAX_CONDITIONS
    )


class SegmentPublic(CamelModel):
    id: uuid.UUID
    merchant_id: str
    name: str
    match: SegmentMatch
    conditions: list[SegmentCondition]
    contact_count: int  # counted when read: always current
    created_at: datetime
    updated_at: datetime


class SegmentContactSample(CamelModel):
    id: uuid.UUID
    username: str | None
    display_name: str | None
    tags: list[str]
    attributes: dict[str, Any]


class SegmentPreview(CamelModel):
    total_matches: int
    preview: list[SegmentContactSample]
