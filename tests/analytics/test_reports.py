"""The five reports over the known history of conftest.py: every definition, exactly."""

from __future__ import annotations

from typing import Any

from tests.analytics.conftest import NY, History

MARCH_WEEK = {"startDate": "2026-03-02", "endDate": "2026-03-08"}


def zero_day(period: str) -> dict[str, Any]:
    return {"period": period, "new": 0, "active": 0}


async def test_overview_of_a_week_in_utc(history: History) -> None:
    data = await history.report("overview", **MARCH_WEEK)
    assert data["period"] == {
        "startDate": "2026-03-02T00:00:00Z",
        "endDate": "2026-03-08T23:59:59Z",
    }
    # alice, bob, carol (a follow) and dave: known and new; carol never wrote: not active.
    assert data["contacts"] == {"total": 4, "new": 4, "active": 3}
    conversations = data["conversations"]
    # alice's (closed since), bob's and dave's; carol has none.
    assert (conversations["total"], conversations["open"], conversations["closed"]) == (3, 2, 1)
    # Waits: alice 5m and 30m (her 10:02 DM found the conversation already waiting), bob 40s
    # (the assistant), dave 1h; bob's DM of Thursday was never answered.
    assert conversations["answered"] == 4
    assert conversations["averageResponseTime"] == "23m 55s"  # (300 + 1800 + 40 + 3600) / 4
    assert conversations["humanResponseTime"] == "31m 40s"  # (300 + 1800 + 3600) / 3
    assert conversations["botResponseTime"] == "40s"
    assert conversations["medianResponseTime"] == "5m"  # 40, [300], 1800, 3600
    assert conversations["p90ResponseTime"] == "1h"
    assert conversations["averageResponseSeconds"] == 1435.0
    assert data["campaigns"] == {"active": 0, "completed": 0, "totalMessagesSent": 0}
    assert data["automation"] == {"activeFlows": 1, "totalExecutions": 0}
    assert data["ai"]["botReplies"] == 1
    assert data["ai"]["escalations"] == 0


async def test_overview_of_today(history: History) -> None:
    start, end = history.today
    data = await history.report("overview", startDate=start, endDate=end)
    # Everyone, frank (imported today, never in touch) included; nobody new or active today.
    assert data["contacts"] == {"total": 7, "new": 0, "active": 0}
    assert data["campaigns"] == {"active": 0, "completed": 1, "totalMessagesSent": 2}
    assert data["automation"] == {"activeFlows": 1, "totalExecutions": 2}
    ai = data["ai"]
    assert (ai["conversations"], ai["escalations"], ai["escalationRate"]) == (1, 1, 1.0)
    assert ai["slaBreaches"] == 0
    assert ai["modelCalls"] >= 1 and ai["tokens"] == ai["promptTokens"] + ai["completionTokens"]
    assert ai["tokens"] > 0


async def test_contacts_by_day_in_new_york(history: History) -> None:
    data = await history.report("contacts", timezone=NY, **MARCH_WEEK)
    assert data["timezone"] == NY and data["groupBy"] == "day"
    # The 8th is 23 hours long there (daylight saving time begins): the range ends at 04:00Z.
    assert data["period"] == {
        "startDate": "2026-03-02T00:00:00-05:00",
        "endDate": "2026-03-08T23:59:59-04:00",
    }
    series = [{k: p[k] for k in ("period", "new", "active", "total")} for p in data["series"]]
    assert series == [
        {"period": "2026-03-02", "new": 1, "active": 1, "total": 1},  # alice
        # bob, and dave whose DM at 23:30 New York time is the 4th in UTC
        {"period": "2026-03-03", "new": 2, "active": 2, "total": 3},
        {"period": "2026-03-04", "new": 1, "active": 0, "total": 4},  # carol follows
        {"period": "2026-03-05", "new": 0, "active": 1, "total": 4},  # bob again
        {"period": "2026-03-06", "new": 0, "active": 0, "total": 4},
        {"period": "2026-03-07", "new": 0, "active": 0, "total": 4},
        {"period": "2026-03-08", "new": 0, "active": 0, "total": 4},
    ]
    assert data["totals"] == {"new": 4, "active": 3, "total": 4}
    assert data["bySource"] == {
        "inbound_message": 3,
        "new_follower": 1,
        "import": 0,
        "manual": 0,
    }


async def test_contacts_by_day_in_utc_put_dave_on_his_utc_day(history: History) -> None:
    data = await history.report("contacts", **MARCH_WEEK)
    assert [(p["period"], p["new"], p["active"]) for p in data["series"][:4]] == [
        ("2026-03-02", 1, 1),
        ("2026-03-03", 1, 1),
        ("2026-03-04", 2, 1),  # carol and dave
        ("2026-03-05", 0, 1),
    ]


async def test_contacts_by_week_and_by_month(history: History) -> None:
    weeks = await history.report(
        "contacts", startDate="2026-03-02", endDate="2026-03-15", groupBy="week"
    )
    assert [(p["period"], p["new"], p["active"], p["total"]) for p in weeks["series"]] == [
        ("2026-03-02", 4, 3, 4),
        ("2026-03-09", 2, 2, 6),  # erin, and gina on the second shop
    ]
    # A range starting mid-week still labels the week by its Monday.
    mid = await history.report(
        "contacts", startDate="2026-03-04", endDate="2026-03-10", groupBy="week"
    )
    assert [(p["period"], p["new"]) for p in mid["series"]] == [
        ("2026-03-02", 2),
        ("2026-03-09", 2),
    ]
    months = await history.report(
        "contacts", startDate="2026-03-01", endDate="2026-05-31", groupBy="month"
    )
    assert [(p["period"], p["new"], p["active"], p["total"]) for p in months["series"]] == [
        ("2026-03-01", 6, 5, 6),
        ("2026-04-01", 0, 1, 6),  # alice wrote again
        ("2026-05-01", 0, 0, 6),  # zero-filled
    ]
    assert months["totals"] == {"new": 6, "active": 5, "total": 6}


async def test_contacts_of_one_account(history: History) -> None:
    params = {"startDate": "2026-03-09", "endDate": "2026-03-15", "groupBy": "week"}
    first = await history.report("contacts", accountId=str(history.shop.account_id), **params)
    second = await history.report(
        "contacts", accountId=str(history.second_shop.account_id), **params
    )
    assert first["totals"] == {"new": 1, "active": 1, "total": 5}  # erin; 5 known on the shop
    assert second["totals"] == {"new": 1, "active": 1, "total": 1}  # gina


async def test_top_tags_and_sources(history: History) -> None:
    start, end = history.today
    data = await history.report("contacts", startDate=start, endDate=end)
    assert data["topTags"] == [{"tag": "vip", "count": 2}, {"tag": "lead", "count": 1}]


async def test_conversations_by_day_in_new_york(history: History) -> None:
    data = await history.report("conversations", timezone=NY, **MARCH_WEEK)
    series = {p["period"]: p for p in data["series"]}
    assert len(series) == 7
    first = series["2026-03-02"]
    assert (first["started"], first["closed"], first["inbound"], first["outbound"]) == (1, 1, 3, 2)
    assert first["averageResponseTime"] == "17m 30s"  # (300 + 1800) / 2
    tuesday = series["2026-03-03"]
    # bob's and dave's (23:30 there); the bot's reply that day, dave's answer after midnight.
    assert (tuesday["started"], tuesday["inbound"], tuesday["outbound"]) == (2, 2, 1)
    assert tuesday["averageResponseTime"] == "30m 20s"  # (40 + 3600) / 2, by the DM's day
    wednesday = series["2026-03-04"]
    assert (wednesday["inbound"], wednesday["outbound"], wednesday["averageResponseTime"]) == (
        0,
        1,
        None,
    )
    assert series["2026-03-05"]["inbound"] == 1  # bob, unanswered
    assert series["2026-03-07"] == {
        "period": "2026-03-07",
        "started": 0,
        "closed": 0,
        "inbound": 0,
        "outbound": 0,
        "averageResponseTime": None,
        "averageResponseSeconds": None,
    }
    totals = data["totals"]
    assert (totals["started"], totals["closed"], totals["open"]) == (3, 1, 2)
    assert (totals["inbound"], totals["outbound"]) == (6, 4)
    assert (totals["medianResponseTime"], totals["p90ResponseTime"]) == ("5m", "1h")
    assert data["byAssignee"] == [
        # alice's and dave's: people answered in 5m, 30m and 1h
        {
            "userId": None,
            "conversations": 2,
            "averageResponseTime": "31m 40s",
            "averageResponseSeconds": 1900.0,
        },
        # bob's: only the assistant answered
        {
            "userId": "agent-7",
            "conversations": 1,
            "averageResponseTime": None,
            "averageResponseSeconds": None,
        },
    ]


async def test_response_times_of_april(history: History) -> None:
    data = await history.report(
        "conversations", startDate="2026-04-01", endDate="2026-04-30", groupBy="month"
    )
    totals = data["totals"]
    # alice's April DM, in her conversation that started in March: not started in April.
    assert (totals["started"], totals["inbound"], totals["answered"]) == (0, 1, 1)
    assert totals["averageResponseTime"] == totals["medianResponseTime"] == "10m"
    assert totals["botResponseTime"] is None


async def test_campaigns_agree_with_the_campaign_metrics(history: History) -> None:
    start, end = history.today
    data = await history.report("campaigns", startDate=start, endDate=end)
    (campaign,) = data["campaigns"]
    metrics = (await history.api.get(f"/campaigns/{history.campaign_id}/metrics")).json()["data"]
    assert campaign["campaignId"] == history.campaign_id and campaign["status"] == "completed"
    for name in ("totalSent", "delivered", "opened", "clicked", "replied", "failed", "skipped"):
        assert campaign[name] == metrics[name], name
    for name in ("openRate", "clickRate", "replyRate", "deliveryRate"):
        assert campaign[name] == metrics[name], name
    assert (campaign["totalSent"], campaign["delivered"], campaign["deliveryRate"]) == (2, 2, 1.0)
    assert data["totals"]["delivered"] == 2 and data["timeline"] is None
    alone = await history.report("campaigns", campaignId=history.campaign_id)
    assert [c["campaignId"] for c in alone["campaigns"]] == [history.campaign_id]
    assert sum(p["delivered"] for p in alone["timeline"]) == 2
    # March had no campaign sending.
    assert (await history.report("campaigns", **MARCH_WEEK))["campaigns"] == []


async def test_automation_per_flow_and_node(history: History) -> None:
    start, end = history.today
    data = await history.report("automation", startDate=start, endDate=end)
    (flow,) = data["flows"]
    assert flow["flowId"] == history.flow_id and flow["status"] == "active"
    assert (flow["executions"], flow["completed"], flow["running"], flow["messagesSent"]) == (
        2,
        2,
        0,
        2,
    )
    assert flow["nodes"] == [
        {"nodeId": "hello", "type": "send_message", "reached": 2},
        {"nodeId": "done", "type": "end", "reached": 2},
    ]
    assert data["totals"]["executions"] == 2
    march = await history.report("automation", **MARCH_WEEK)
    assert march["flows"][0]["executions"] == 0
    assert [n["reached"] for n in march["flows"][0]["nodes"]] == [0, 0]


async def test_another_merchant_sees_zeros(history: History) -> None:
    wide = {"startDate": "2026-01-01", "endDate": history.today[1]}
    overview = await history.report_as(history.other, "overview", **wide)
    assert overview["contacts"] == {"total": 0, "new": 0, "active": 0}
    assert overview["conversations"]["total"] == 0
    assert overview["conversations"]["averageResponseTime"] is None
    assert overview["campaigns"]["totalMessagesSent"] == 0
    assert overview["automation"] == {"activeFlows": 0, "totalExecutions": 0}
    assert overview["ai"]["modelCalls"] == 0
    contacts = await history.report_as(history.other, "contacts", groupBy="month", **wide)
    assert all(p["new"] == p["active"] == p["total"] == 0 for p in contacts["series"])
    assert contacts["topTags"] == []
    conversations = await history.report_as(history.other, "conversations", groupBy="month", **wide)
    assert conversations["byAssignee"] == [] and conversations["totals"]["inbound"] == 0
    assert (await history.report_as(history.other, "campaigns", **wide))["campaigns"] == []
    alone = await history.report_as(history.other, "campaigns", campaignId=history.campaign_id)
    assert alone["campaigns"] == [] and alone["timeline"] == []
    assert (await history.report_as(history.other, "automation", **wide))["flows"] == []
    # Naming the first merchant's account changes nothing.
    theirs = await history.report_as(
        history.other, "overview", accountId=str(history.shop.account_id), **wide
    )
    assert theirs["contacts"] == {"total": 0, "new": 0, "active": 0}
