"""The dashboard overview: the spec's five blocks, plus the response times and the assistant."""

from __future__ import annotations

import dataclasses

from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from models.analytics import (
    Overview,
    OverviewAI,
    OverviewAutomation,
    OverviewCampaigns,
    OverviewContacts,
    OverviewConversations,
)
from services.analytics.active import active_contacts
from services.analytics.counters import counters_between, range_and_known
from services.analytics.periods import Period
from services.analytics.response_times import response_times
from services.analytics.rollups import Counts, begin_report

# Campaigns and flows now (a handful of rows per merchant): straight from their tables.
_NOW = """
SELECT
    (SELECT count(*) FROM campaigns WHERE merchant_id = :merchant_id
        AND status IN ('scheduled', 'running', 'paused')) AS active_campaigns,
    (SELECT count(*) FROM campaigns WHERE merchant_id = :merchant_id AND status = 'completed'
        AND completed_at >= :start AND completed_at < :end) AS completed_campaigns,
    (SELECT count(*) FROM automation_flows WHERE merchant_id = :merchant_id
        AND status = 'active' {flow_account}) AS active_flows
"""


async def overview_report(session: AsyncSession, period: Period) -> Overview:
    await begin_report(session, period.merchant_id)
    counts, known = await range_and_known(session, period)
    (active,) = await active_contacts(session, period, [(period.start, period.end)])
    times = await response_times(session, period, counts)
    flow_account = (
        "AND (account_id = :account_id OR account_id IS NULL)" if period.account_id else ""
    )
    now = (
        await session.execute(
            text(_NOW.format(flow_account=flow_account)),
            {
                "merchant_id": period.merchant_id,
                "account_id": period.account_id,
                "start": period.start,
                "end": period.end,
            },
        )
    ).one()
    started, closed = counts["conversations_started"], counts["conversations_closed"]
    return Overview(
        period=period.shown(),
        contacts=OverviewContacts(total=known, new=counts["contacts_new"], active=active),
        conversations=OverviewConversations(
            total=started, open=started - closed, closed=closed, **times.model_dump()
        ),
        campaigns=OverviewCampaigns(
            active=now.active_campaigns,
            completed=now.completed_campaigns,
            total_messages_sent=counts["campaign_sent"],
        ),
        automation=OverviewAutomation(
            active_flows=now.active_flows, total_executions=counts["flow_runs"]
        ),
        ai=await _ai(session, period, counts),
    )


async def _ai(session: AsyncSession, period: Period, counts: Counts) -> OverviewAI:
    # The assistant's figures are the merchant's (see migration 0016): read them without the
    # account filter, the bot's replies excepted (they are DMs of an account).
    merchant = counts
    if period.account_id is not None:
        whole = dataclasses.replace(period, account_id=None)
        merchant = await counters_between(session, whole, period.start, period.end)
    sessions, escalations = merchant["ai_sessions"], merchant["escalations"]
    prompt, completion = merchant["prompt_tokens"], merchant["completion_tokens"]
    return OverviewAI(
        conversations=sessions,
        bot_replies=counts["bot_replies"],
        escalations=escalations,
        escalation_rate=round(escalations / sessions, 4) if sessions else 0.0,
        sla_breaches=merchant["sla_breaches"],
        model_calls=merchant["llm_calls"],
        prompt_tokens=prompt,
        completion_tokens=completion,
        tokens=prompt + completion,
        cost=round(float(merchant["cost"]), 6),
    )
