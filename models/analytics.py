"""Analytics: what the five reports answer (camelCase), and the index the rollups' edges need.

The facts and rollups themselves (`analytics_*` tables, their triggers and functions) are
PostgreSQL's own, created by migration 0016: no code writes them but those triggers and the
rebuild (services/analytics/rebuild.py). Their definitions are in docs/analytics.md.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import Index

from models.ai import AISession
from models.camel import CamelModel

# The assistant's sessions of a merchant over time (migration 0016).
_ai_sessions = AISession.__table__.c  # type: ignore[attr-defined]
Index("ix_ai_sessions_merchant_created", _ai_sessions.merchant_id, _ai_sessions.created_at)


class AnalyticsPeriod(CamelModel):
    start_date: datetime  # the first instant counted, in the report's time zone
    end_date: datetime  # the last second counted


# Overview -----------------------------------------------------------------------------------


class OverviewContacts(CamelModel):
    total: int
    new: int
    active: int


class ResponseTimes(CamelModel):
    """Formatted like a contact's engagement ("5m 30s"); null when nothing was answered."""

    average_response_time: str | None
    human_response_time: str | None
    bot_response_time: str | None
    median_response_time: str | None
    p90_response_time: str | None
    average_response_seconds: float | None
    human_response_seconds: float | None
    bot_response_seconds: float | None
    median_response_seconds: float | None
    p90_response_seconds: float | None
    answered: int  # the waits these figures are over (human + bot)


class OverviewConversations(ResponseTimes):
    total: int
    open: int
    closed: int


class OverviewCampaigns(CamelModel):
    active: int
    completed: int
    total_messages_sent: int


class OverviewAutomation(CamelModel):
    active_flows: int
    total_executions: int


class OverviewAI(CamelModel):
    conversations: int  # conversations the assistant took part in (AI sessions opened)
    bot_replies: int
    escalations: int
    escalation_rate: float
    sla_breaches: int
    model_calls: int
    prompt_tokens: int
    completion_tokens: int
    tokens: int
    cost: float  # USD, where the provider's price is known


class Overview(CamelModel):
    period: AnalyticsPeriod
    contacts: OverviewContacts
    conversations: OverviewConversations
    campaigns: OverviewCampaigns
    automation: OverviewAutomation
    ai: OverviewAI


# Contacts -----------------------------------------------------------------------------------


class ContactsPoint(CamelModel):
    period: date  # the bucket's first day
    new: int
    active: int
    total: int  # contacts at the bucket's end


class ContactsTotals(CamelModel):
    new: int
    active: int
    total: int


class TagCount(CamelModel):
    tag: str
    count: int


class ContactsReport(CamelModel):
    period: AnalyticsPeriod
    group_by: str
    timezone: str
    series: list[ContactsPoint]
    totals: ContactsTotals
    by_source: dict[str, int]  # the new contacts by the source that brought them
    top_tags: list[TagCount]


# Conversations ------------------------------------------------------------------------------


class ConversationsPoint(CamelModel):
    period: date
    started: int
    closed: int
    inbound: int
    outbound: int
    average_response_time: str | None
    average_response_seconds: float | None


class ConversationsTotals(ResponseTimes):
    started: int
    closed: int
    open: int
    inbound: int
    outbound: int


class AssigneeFigures(CamelModel):
    user_id: str | None  # null: conversations nobody is assigned to
    conversations: int
    average_response_time: str | None  # people's replies in these conversations
    average_response_seconds: float | None


class ConversationsReport(CamelModel):
    period: AnalyticsPeriod
    group_by: str
    timezone: str
    series: list[ConversationsPoint]
    totals: ConversationsTotals
    by_assignee: list[AssigneeFigures]


# Campaigns ----------------------------------------------------------------------------------


class CampaignCounts(CamelModel):
    total_sent: int = 0
    delivered: int = 0
    opened: int = 0
    clicked: int = 0
    replied: int = 0
    failed: int = 0
    skipped: int = 0
    open_rate: float = 0.0
    click_rate: float = 0.0
    reply_rate: float = 0.0
    delivery_rate: float = 0.0


class CampaignFigures(CampaignCounts):
    campaign_id: uuid.UUID
    name: str
    type: str
    status: str


class CampaignTimelinePoint(CamelModel):
    timestamp: datetime
    sent: int
    delivered: int
    failed: int


class CampaignsReport(CamelModel):
    period: AnalyticsPeriod
    campaigns: list[CampaignFigures]
    totals: CampaignCounts
    timeline: list[CampaignTimelinePoint] | None = None  # with campaignId only


# Automation ---------------------------------------------------------------------------------


class NodeReached(CamelModel):
    node_id: str
    type: str
    reached: int


class RunCounts(CamelModel):
    executions: int = 0
    running: int = 0
    completed: int = 0
    failed: int = 0
    exited: int = 0
    cancelled: int = 0
    messages_sent: int = 0


class FlowFigures(RunCounts):
    flow_id: uuid.UUID
    name: str
    status: str
    nodes: list[NodeReached]


class AutomationReport(CamelModel):
    period: AnalyticsPeriod
    flows: list[FlowFigures]
    totals: RunCounts
