"""Each rule of the common parameters: a 422 in the spec's envelope naming the parameter."""

from __future__ import annotations

import pytest

from tests.analytics.conftest import History

GOOD = {"startDate": "2026-03-02", "endDate": "2026-03-08"}


@pytest.mark.parametrize(
    ("report", "params", "field"),
    [
        ("overview", {"endDate": "2026-03-08"}, "startDate"),
        ("overview", {"startDate": "2026-03-02"}, "endDate"),
        ("contacts", {**GOOD, "startDate": "2026-13-01"}, "startDate"),
        ("contacts", {**GOOD, "endDate": "next week"}, "endDate"),
        ("conversations", {**GOOD, "startDate": "2026-03-02T10:00:00"}, "startDate"),
        ("overview", {"startDate": "2026-03-08", "endDate": "2026-03-02"}, "endDate"),
        ("contacts", {"startDate": "2025-01-01", "endDate": "2026-02-05"}, "endDate"),
        ("conversations", {**GOOD, "timezone": "Mars/Olympus"}, "timezone"),
        ("contacts", {**GOOD, "groupBy": "year"}, "groupBy"),
        ("overview", {**GOOD, "accountId": "shop-1"}, "accountId"),
        ("campaigns", {**GOOD, "campaignId": "42"}, "campaignId"),
    ],
    ids=[
        "start-missing",
        "end-missing",
        "start-unparsable",
        "end-unparsable",
        "date-time-without-offset",
        "end-before-start",
        "over-400-days",
        "unknown-timezone",
        "unknown-group-by",
        "account-not-an-id",
        "campaign-not-an-id",
    ],
)
async def test_refused(history: History, report: str, params: dict[str, str], field: str) -> None:
    response = await history.api.get(f"/analytics/{report}", params=params)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["success"] is False and body["code"] == "VALIDATION_ERROR"
    assert body["details"]["field"] == field, body


async def test_400_days_are_allowed(history: History) -> None:
    response = await history.api.get(
        "/analytics/contacts", params={"startDate": "2025-01-01", "endDate": "2026-02-04"}
    )
    assert response.status_code == 200, response.text


async def test_dates_default_to_the_last_30_days(history: History) -> None:
    data = await history.report("conversations")
    assert len(data["series"]) == 30
