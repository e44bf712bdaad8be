"""Connected X accounts: the table, and the shapes the API reads and writes."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, time
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import Field as PydanticField
from pydantic import JsonValue, field_validator, model_validator
from sqlalchemy import Column, DateTime, Index, String, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field

from models.camel import CamelModel
from models.db import TenantRow


class AccountStatus(StrEnum):
    active = "active"  # connected and usable
    inactive = "inactive"  # disconnected by the merchant
    error = "error"  # X refused its token (revoked or expired): reconnect it


class SubscriptionStatus(StrEnum):
    pending = "pending"  # the connect workflow is subscribing it to Account Activity
    subscribed = "subscribed"
    failed = "failed"
    unsubscribed = "unsubscribed"


class Weekday(StrEnum):
    monday = "monday"
    tuesday = "tuesday"
    wednesday = "wednesday"
    thursday = "thursday"
    friday = "friday"
    saturday = "saturday"
    sunday = "sunday"


class XAccount(TenantRow, table=True):
    __tablename__ = "x_accounts"
    __table_args__ = (
        # An X account is connected to at most one merchant at a time.
        Index(
            "uq_x_accounts_connected_user",
            "twitter_user_id",
            unique=True,
            postgresql_where=text("disconnected_at IS NULL"),
        ),
        Index("ix_x_accounts_merchant_status", "merchant_id", "status"),
    )

    twitter_user_id: str = Field(max_length=32)
    username: str = Field(max_length=64)
    display_name: str = Field(max_length=256)
    profile_image_url: str | None = Field(default=None, max_length=1024)
    status: AccountStatus = Field(default=AccountStatus.active, sa_type=String(16))  # type: ignore[call-overload]
    status_reason: str | None = Field(default=None, max_length=512)
    # Fernet ciphertexts; erased once the disconnect workflow has revoked the token.
    oauth_token_encrypted: str | None = Field(default=None, repr=False)
    oauth_token_secret_encrypted: str | None = Field(default=None, repr=False)
    webhook_id: str | None = Field(default=None, max_length=128)
    subscription_status: SubscriptionStatus = Field(
        default=SubscriptionStatus.pending,
        sa_type=String(16),  # type: ignore[call-overload]
    )
    auto_reply_enabled: bool = False
    business_hours: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB))
    connected_at: datetime = Field(sa_type=DateTime(timezone=True))  # type: ignore[call-overload]
    disconnected_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))  # type: ignore[call-overload]


# API schemas -------------------------------------------------------------------------------

_TOKEN_PATTERN = re.compile(r"^[\x21-\x7e]{1,512}$")  # printable ASCII, no spaces


_TOKEN_SCHEMA: dict[str, JsonValue] = {
    "pattern": _TOKEN_PATTERN.pattern,
    "minLength": 1,
    "maxLength": 512,
}


class AccountConnect(CamelModel):
    # The validator words the refusal; the document states the same shape.
    oauth_token: str = PydanticField(json_schema_extra=_TOKEN_SCHEMA)
    oauth_token_secret: str = PydanticField(json_schema_extra=_TOKEN_SCHEMA)

    @field_validator("oauth_token", "oauth_token_secret")
    @classmethod
    def _token_shape(cls, value: str) -> str:
        if not _TOKEN_PATTERN.match(value):
            raise ValueError("must be 1-512 printable characters without spaces")
        return value


_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


class DayHours(CamelModel):
    start: str
    end: str

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        if not _HHMM.match(value):
            raise ValueError("must be a 24-hour time HH:MM")
        return value

    @model_validator(mode="after")
    def _start_before_end(self) -> DayHours:
        if time.fromisoformat(self.start) >= time.fromisoformat(self.end):
            raise ValueError("start must be before end")
        return self


class BusinessHours(CamelModel):
    enabled: bool = True
    timezone: str
    schedule: dict[Weekday, DayHours] = {}

    @field_validator("timezone")
    @classmethod
    def _iana(cls, value: str) -> str:
        if value not in _known_timezones():
            raise ValueError("must be an IANA time zone such as Asia/Ho_Chi_Minh")
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError("must be an IANA time zone such as Asia/Ho_Chi_Minh") from exc
        return value


_TIMEZONES: set[str] = set()


def _known_timezones() -> set[str]:
    if not _TIMEZONES:
        _TIMEZONES.update(available_timezones())
    return _TIMEZONES


class AccountSettingsUpdate(CamelModel):
    auto_reply_enabled: bool | None = None
    business_hours: BusinessHours | None = None


class AccountStatistics(CamelModel):
    total_contacts: int
    total_conversations: int
    messages_this_month: int


class AccountPublic(CamelModel):
    id: uuid.UUID
    merchant_id: str
    twitter_user_id: str
    username: str
    display_name: str
    profile_image_url: str | None
    status: AccountStatus
    status_reason: str | None
    webhook_id: str | None
    subscription_status: SubscriptionStatus
    auto_reply_enabled: bool
    business_hours: BusinessHours | None
    connected_at: datetime
    disconnected_at: datetime | None


class AccountDetail(AccountPublic):
    statistics: AccountStatistics
