"""Analytics: overview, contacts, conversations, campaigns and automation reports."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from api.deps import ContextDep, ReaderDep, SessionDep
from api.envelope import Envelope, error_responses, ok
from api.storable import StorableTextRoute
from models.analytics import (
    AutomationReport,
    CampaignsReport,
    ContactsReport,
    ConversationsReport,
    Overview,
)
from services import analytics
from services.analytics import Period

router = APIRouter(prefix="/analytics", tags=["analytics"], route_class=StorableTextRoute)

_DATE = "ISO 8601 date (2026-01-18: the whole day in `timezone`) or date-time with an offset; "
StartDate = Annotated[
    str | None, Query(alias="startDate", description=_DATE + "the first moment counted")
]
EndDate = Annotated[
    str | None, Query(alias="endDate", description=_DATE + "the last moment counted (included)")
]
Timezone = Annotated[
    str | None,
    Query(description="IANA time zone of date-only bounds and of the buckets (default UTC)"),
]
AccountId = Annotated[str | None, Query(alias="accountId", description="one connected account")]
GroupBy = Annotated[
    str | None, Query(alias="groupBy", description="day (default), week (ISO, Monday) or month")
]
CampaignId = Annotated[
    str | None, Query(alias="campaignId", description="that campaign alone, with its timeline")
]


def _period(dates_required: bool) -> Callable[..., Period]:
    def dependency(
        principal: ReaderDep,
        start_date: StartDate = None,
        end_date: EndDate = None,
        timezone: Timezone = None,
        account_id: AccountId = None,
        group_by: GroupBy = None,
    ) -> Period:
        return analytics.parse_period(
            principal.merchant_id,
            start_date=start_date,
            end_date=end_date,
            timezone=timezone,
            group_by=group_by,
            account_id=account_id,
            dates_required=dates_required,
        )

    return dependency


# The overview needs both dates (the spec); the other reports default to the last 30 days.
OverviewPeriod = Annotated[Period, Depends(_period(dates_required=True))]
ReportPeriod = Annotated[Period, Depends(_period(dates_required=False))]

_ERRORS = error_responses(401, 403, 422)


@router.get("/overview", response_model=Envelope[Overview], responses=_ERRORS)
async def get_overview(period: OverviewPeriod, session: SessionDep) -> Envelope[Overview]:
    """Contacts, conversations, response times, campaigns, automation and the assistant."""
    return ok(await analytics.overview_report(session, period))


@router.get("/contacts", response_model=Envelope[ContactsReport], responses=_ERRORS)
async def get_contacts(period: ReportPeriod, session: SessionDep) -> Envelope[ContactsReport]:
    """New, active and total contacts per bucket; sources of the new ones; the top tags."""
    return ok(await analytics.contacts_report(session, period))


@router.get("/conversations", response_model=Envelope[ConversationsReport], responses=_ERRORS)
async def get_conversations(
    period: ReportPeriod, session: SessionDep
) -> Envelope[ConversationsReport]:
    """Conversations started and closed, DMs each way, response times, per assignee."""
    return ok(await analytics.conversations_report(session, period))


@router.get("/campaigns", response_model=Envelope[CampaignsReport], responses=_ERRORS)
async def get_campaigns(
    period: ReportPeriod,
    session: SessionDep,
    context: ContextDep,
    campaign_id: CampaignId = None,
) -> Envelope[CampaignsReport]:
    """The campaigns sending in the range, with the counts of their metrics endpoint."""
    window = timedelta(hours=context.settings.campaign_reply_window_hours)
    chosen = analytics.parse_uuid("campaignId", campaign_id)
    return ok(await analytics.campaigns_report(session, period, window, chosen))


@router.get("/automation", response_model=Envelope[AutomationReport], responses=_ERRORS)
async def get_automation(period: ReportPeriod, session: SessionDep) -> Envelope[AutomationReport]:
    """Runs per flow started in the range, by status now, and how many reached each node."""
    return ok(await analytics.automation_report(session, period))
