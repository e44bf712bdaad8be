"""The AI assistant: a merchant's settings, each conversation's AI session, escalations to
humans, and the record of every model call.

Settings are one JSONB document per merchant (what `GET /ai/settings` shows, defaults filled
in): they are read whole on every answer and changed whole by a `PUT`, never queried by field.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import Field as PydanticField
from pydantic import field_validator
from sqlalchemy import Column, DateTime, ForeignKey, Index, String, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from models.camel import CamelModel, CamelUpdate
from models.db import TenantRow, utcnow

MAX_PROMPT = 10_000
MAX_KNOWLEDGE = 200
MAX_INTENTS = 100
MAX_CONTEXT = 50  # turns kept (and shown) per AI session
MAX_MESSAGE = 10_000
INTENT_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
# Intents the assistant always knows besides the merchant's.
HUMAN_REQUEST = "human_request"
OTHER = "other"


# Tables ---------------------------------------------------------------------------------------


class AISettingsRow(SQLModel, table=True):
    __tablename__ = "ai_settings"

    merchant_id: str = Field(max_length=128, primary_key=True)
    settings: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))  # type: ignore[call-overload]


class AISession(TenantRow, table=True):
    """A conversation's dialogue with the assistant: its turns, intent and slots. A closed
    conversation's next DM opens a new conversation, and with it a fresh session."""

    __tablename__ = "ai_sessions"

    conversation_id: uuid.UUID = Field(
        sa_column=Column(
            ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False, unique=True
        )
    )
    context: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSONB, nullable=False, server_default="[]")
    )
    current_intent: str | None = Field(default=None, max_length=64)
    slots: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(JSONB, nullable=False, server_default="{}")
    )
    # A human took over (an agent wrote, or an escalation began): the bot stays quiet here.
    bot_paused: bool = False


class EscalationStatus(StrEnum):
    open = "open"
    resolved = "resolved"


class Escalation(TenantRow, table=True):
    __tablename__ = "escalations"
    __table_args__ = (
        # One open escalation per conversation: escalating again answers that one.
        Index(
            "uq_escalations_open",
            "conversation_id",
            unique=True,
            postgresql_where=text("status = 'open'"),
        ),
        Index("ix_escalations_merchant_escalated", "merchant_id", "escalated_at"),
    )

    conversation_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False)
    )
    status: EscalationStatus = Field(default=EscalationStatus.open, sa_type=String(16))  # type: ignore[call-overload]
    reason: str = Field(max_length=200)
    assigned_to_user_id: str | None = Field(default=None, max_length=128)
    escalated_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))  # type: ignore[call-overload]
    sla_due_at: datetime = Field(sa_type=DateTime(timezone=True))  # type: ignore[call-overload]
    breached: bool = False
    handoff_sent: bool = False
    resolved_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))  # type: ignore[call-overload]
    resolution: str | None = Field(default=None, max_length=32)


class LLMCall(SQLModel, table=True):
    """One model call (an answer, or its repair): what it cost and how it went. Never the
    prompt or the answer's text."""

    __tablename__ = "llm_calls"
    __table_args__ = (
        Index("ix_llm_calls_merchant_at", "merchant_id", "created_at"),
        # Retention prunes the oldest first (services/maintenance/retention.py).
        Index("ix_llm_calls_created", "created_at"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    merchant_id: str = Field(max_length=128)
    conversation_id: uuid.UUID | None = None
    model: str = Field(max_length=200)
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost: float | None = None
    latency_ms: int
    # ok, invalid (not the contract: repaired or failed), timeout, error
    outcome: str = Field(max_length=16)
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))  # type: ignore[call-overload]


# Settings -------------------------------------------------------------------------------------


class Intent(CamelModel):
    name: str = PydanticField(description="snake_case, unique")
    description: str = PydanticField(default="", max_length=1000)

    @field_validator("name")
    @classmethod
    def _snake(cls, value: str) -> str:
        if not INTENT_NAME.match(value):
            raise ValueError("must be snake_case: a-z, 0-9 and _, starting with a letter")
        if value in (HUMAN_REQUEST, OTHER):
            raise ValueError(f"'{value}' is built in")
        return value


class KnowledgeEntry(CamelModel):
    question: str = PydanticField(min_length=1, max_length=2000)
    answer: str = PydanticField(min_length=1, max_length=5000)


DEFAULT_HANDOFF = (
    "Thanks for your patience! I'm passing you to a member of our team, who will reply here."
)


class EscalationSettings(CamelModel):
    sla_minutes: int = PydanticField(default=30, ge=1, le=10_080)
    assign_to: str | None = PydanticField(default=None, min_length=1, max_length=128)
    handoff_message: str = PydanticField(default=DEFAULT_HANDOFF, min_length=1, max_length=2000)


class EscalationSettingsUpdate(CamelUpdate):
    not_null = frozenset({"sla_minutes", "handoff_message"})

    sla_minutes: int | None = PydanticField(default=None, ge=1, le=10_080)
    assign_to: str | None = PydanticField(default=None, min_length=1, max_length=128)
    handoff_message: str | None = PydanticField(default=None, min_length=1, max_length=2000)


def _unique_intents(intents: list[Intent]) -> list[Intent]:
    names = [i.name for i in intents]
    for index, name in enumerate(names):
        if name in names[:index]:
            raise ValueError(f"intent names must be unique: '{name}' appears twice")
    return intents


class AISettings(CamelModel):
    """The stored document; `model` None means the configured default (MKTX_LLM_MODEL)."""

    enabled: bool = False
    model: str | None = None
    temperature: float = PydanticField(default=0.7, ge=0, le=2)
    max_tokens: int = PydanticField(default=500, ge=1, le=4096)
    auto_escalation_threshold: float = PydanticField(default=0.6, ge=0, le=1)
    system_prompt: str = PydanticField(default="", max_length=MAX_PROMPT)
    intents: list[Intent] = PydanticField(default=[], max_length=MAX_INTENTS)
    knowledge_base: list[KnowledgeEntry] = PydanticField(default=[], max_length=MAX_KNOWLEDGE)
    escalation: EscalationSettings = EscalationSettings()

    @field_validator("intents")
    @classmethod
    def _unique(cls, value: list[Intent]) -> list[Intent]:
        return _unique_intents(value)


class AISettingsUpdate(CamelUpdate):
    """`PUT /ai/settings`: the fields sent replace the stored ones; the others are kept.
    `model` null: the configured default model (MKTX_LLM_MODEL)."""

    not_null = frozenset(
        {
            "enabled",
            "temperature",
            "max_tokens",
            "auto_escalation_threshold",
            "system_prompt",
            "intents",
            "knowledge_base",
            "escalation",
        }
    )

    enabled: bool | None = None
    model: str | None = PydanticField(default=None, min_length=1, max_length=200)
    temperature: float | None = PydanticField(default=None, ge=0, le=2)
    max_tokens: int | None = PydanticField(default=None, ge=1, le=4096)
    auto_escalation_threshold: float | None = PydanticField(default=None, ge=0, le=1)
    system_prompt: str | None = PydanticField(default=None, max_length=MAX_PROMPT)
    intents: list[Intent] | None = PydanticField(default=None, max_length=MAX_INTENTS)
    knowledge_base: list[KnowledgeEntry] | None = PydanticField(
        default=None, max_length=MAX_KNOWLEDGE
    )
    escalation: EscalationSettingsUpdate | None = None

    @field_validator("intents")
    @classmethod
    def _unique(cls, value: list[Intent] | None) -> list[Intent] | None:
        return _unique_intents(value) if value is not None else None


class AISettingsPublic(AISettings):
    model: str  # type: ignore[assignment]  # the model answers use (the default filled in)
    updated_at: datetime | None


# Answers, sessions, escalations ------------------------------------------------------------


class AIMessageRequest(CamelModel):
    message: str = PydanticField(min_length=1, max_length=MAX_MESSAGE)
    reply: bool = PydanticField(default=False, description="also send the response as a bot DM")


class AIAnswer(CamelModel):
    """The model's answer, as the contract has it (and the endpoint answers it)."""

    intent: str = PydanticField(min_length=1, max_length=64)
    confidence: float = PydanticField(ge=0, le=1)
    response: str = PydanticField(min_length=1, max_length=MAX_MESSAGE)
    slots: dict[str, str] = {}
    requires_escalation: bool = False


class EscalateRequest(CamelModel):
    reason: str = PydanticField(min_length=1, max_length=200)


class EscalationPublic(CamelModel):
    id: uuid.UUID
    status: EscalationStatus
    reason: str
    assigned_to_user_id: str | None
    escalated_at: datetime
    sla_due_at: datetime
    breached: bool
    resolved_at: datetime | None
    resolution: str | None


class ContextTurn(CamelModel):
    role: str
    content: str


class AIContext(CamelModel):
    session_id: uuid.UUID | None
    context: list[ContextTurn]
    current_intent: str | None
    slots: dict[str, Any]
    bot_paused: bool
    escalation: EscalationPublic | None
