"""The rollups the triggers keep equal what the rebuild computes from the raw tables, and the
reports equal hand-written SQL over the raw tables (bounds on and off the quarter hours)."""

from __future__ import annotations

import math
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from temporalio.client import Client

from mktx.settings import Settings
from models.db import SessionMaker
from services.analytics.periods import parse_period
from services.analytics.rebuild import fold_some
from services.analytics.rollups import ASSIGNEE_COUNTERS, COUNTERS, ROLLUPS
from tests.analytics.conftest import NY, History
from workflows.maintenance import MaintenanceInput, MaintenanceWorkflow

# Each rollup summed by its key (deltas and folded rows alike), zero sums left out; the facts.
SNAPSHOTS = {
    "counts": "SELECT account_id, slot, {sums} FROM analytics_counts WHERE merchant_id = :m "
    "GROUP BY 1, 2",
    "assignees": "SELECT account_id, slot, assignee, {sums} FROM analytics_assignees "
    "WHERE merchant_id = :m GROUP BY 1, 2, 3",
    "bins": "SELECT account_id, day, bin, {sums} FROM analytics_wait_bins WHERE merchant_id = :m "
    "GROUP BY 1, 2, 3",
    "returns": "SELECT account_id, day, previous_day::text, {sums} FROM analytics_returns "
    "WHERE merchant_id = :m GROUP BY 1, 2, 3",
    "tags": "SELECT account_id, tag, {sums} FROM analytics_tags WHERE merchant_id = :m "
    "GROUP BY 1, 2",
}
VALUES = {
    "counts": COUNTERS,
    "assignees": ASSIGNEE_COUNTERS,
    "bins": ("waits",),
    "returns": ("contacts",),
    "tags": ("contacts",),
}
FACTS = {
    "waits": "SELECT inbound_message_id, conversation_id, account_id, assignee, inbound_at, "
    "replied_at, by_bot, ms, bin FROM analytics_waits WHERE merchant_id = :m",
    "days": "SELECT contact_id, day, account_id, first_at, last_at, previous_day::text, "
    "previous_last_at FROM analytics_contact_days WHERE merchant_id = :m",
}


async def snapshot(sessions: SessionMaker, merchant_id: str) -> dict[str, set[tuple[Any, ...]]]:
    found: dict[str, set[tuple[Any, ...]]] = {}
    async with sessions() as session:
        for name, statement in SNAPSHOTS.items():
            sums = ", ".join(f"sum({v})" for v in VALUES[name])
            having = " OR ".join(f"sum({v}) <> 0" for v in VALUES[name])
            rows = await session.execute(
                text(statement.format(sums=sums) + f" HAVING {having}"), {"m": merchant_id}
            )
            found[name] = {tuple(row) for row in rows}
        for name, statement in FACTS.items():
            found[name] = {
                tuple(row) for row in await session.execute(text(statement), {"m": merchant_id})
            }
    return found


async def test_the_triggers_keep_what_the_rebuild_computes(
    history: History, sessions: SessionMaker
) -> None:
    merchant_id = history.api.merchant.id
    kept = await snapshot(sessions, merchant_id)
    assert kept["waits"] and kept["days"] and kept["counts"]
    async with sessions() as session, session.begin():
        await session.execute(text("SELECT mktx_analytics_rebuild(:m)"), {"m": merchant_id})
    rebuilt = await snapshot(sessions, merchant_id)
    for name in kept:
        assert kept[name] == rebuilt[name], name


# The figures as someone would write them, straight from the raw tables. A wait: an inbound
# DM after a reply (or first in its conversation), answered by the next reply; replies are
# accepted outbound DMs of the inbox (kind inbox, or none: typed in X) or of the assistant.
RAW = """
WITH thread AS (
    SELECT m.conversation_id, m.contact_id, m.id, m.sent_at, m.is_from_bot,
        m.direction = 'outbound' AS reply
    FROM messages m
    WHERE m.merchant_id = :m AND (m.direction = 'inbound' OR (m.status IN ('sent', 'read')
        AND coalesce(m.kind, 'inbox') IN ('inbox', 'bot')))
), ordered AS (
    SELECT t.*, lag(t.reply) OVER (PARTITION BY t.conversation_id ORDER BY t.sent_at, t.id)
        AS after_reply
    FROM thread t
)
SELECT extract(epoch FROM (
    SELECT r.sent_at FROM ordered r WHERE r.conversation_id = i.conversation_id AND r.reply
      AND (r.sent_at, r.id) > (i.sent_at, i.id) ORDER BY r.sent_at, r.id LIMIT 1) - i.sent_at
    ) AS seconds
FROM ordered i
WHERE NOT i.reply AND (i.after_reply IS NULL OR i.after_reply)
  AND i.sent_at >= :s AND i.sent_at < :e
"""
RAW_COUNTS = """
SELECT
    (SELECT count(*) FROM contacts WHERE merchant_id = :m
        AND least(created_at, first_interaction_at) < :e) AS total,
    (SELECT count(*) FROM contacts WHERE merchant_id = :m
        AND first_interaction_at >= :s AND first_interaction_at < :e) AS new,
    (SELECT count(DISTINCT contact_id) FROM messages WHERE merchant_id = :m
        AND direction = 'inbound' AND sent_at >= :s AND sent_at < :e) AS active,
    (SELECT count(*) FROM conversations WHERE merchant_id = :m
        AND started_at >= :s AND started_at < :e) AS started,
    (SELECT count(*) FROM conversations WHERE merchant_id = :m AND status = 'closed'
        AND started_at >= :s AND started_at < :e) AS closed
"""


def percentile(values: list[float], fraction: float) -> float | None:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(fraction * len(ordered))) - 1] if ordered else None


@pytest.mark.parametrize(
    "params",
    [
        {"startDate": "2026-03-02", "endDate": "2026-03-08", "timezone": NY},
        {"startDate": "2026-03-01", "endDate": "2026-04-30", "timezone": "Asia/Kathmandu"},
        # Off the quarter hours: the edges come from the raw tables.
        {"startDate": "2026-03-02T09:03:00Z", "endDate": "2026-03-04T05:07:12+00:00"},
        {"startDate": "2026-03-02T09:01:00+00:00", "endDate": "2026-03-02T10:01:00Z"},
        {"startDate": "2026-03-02T10:00:00.5+00:00", "endDate": "2026-03-03T12:00:00Z"},
    ],
    ids=["new-york-week", "kathmandu-months", "odd-bounds", "within-an-hour", "sub-second"],
)
async def test_reports_equal_hand_written_sql(
    history: History, sessions: SessionMaker, params: dict[str, str]
) -> None:
    merchant_id = history.api.merchant.id
    period = parse_period(
        merchant_id,
        start_date=params["startDate"],
        end_date=params["endDate"],
        timezone=params.get("timezone"),
        dates_required=True,
    )
    bounds = {"m": merchant_id, "s": period.start, "e": period.end}
    async with sessions() as session:
        raw = (await session.execute(text(RAW_COUNTS), bounds)).one()
        waits = [
            float(row.seconds)
            for row in await session.execute(text(RAW), bounds)
            if row.seconds is not None
        ]
    overview = await history.report("overview", **params)
    assert overview["contacts"] == {"total": raw.total, "new": raw.new, "active": raw.active}
    conversations = overview["conversations"]
    assert (conversations["total"], conversations["closed"]) == (raw.started, raw.closed)
    assert conversations["answered"] == len(waits)
    total_ms = sum(round(w * 1000) for w in waits)
    expected = (2 * total_ms + len(waits)) // (2 * len(waits)) / 1000 if waits else None
    assert conversations["averageResponseSeconds"] == expected
    assert conversations["medianResponseSeconds"] == percentile(waits, 0.5)
    assert conversations["p90ResponseSeconds"] == percentile(waits, 0.9)
    # The buckets add up to the range (active contacts excepted: one may be active in two).
    contacts = await history.report("contacts", **params)
    assert sum(p["new"] for p in contacts["series"]) == raw.new
    assert contacts["series"][-1]["total"] == raw.total == contacts["totals"]["total"]
    assert contacts["totals"]["active"] == raw.active


async def test_active_contacts_per_local_day_equal_hand_written_sql(
    history: History, sessions: SessionMaker
) -> None:
    for zone in (NY, "Asia/Ho_Chi_Minh", "Asia/Kolkata", "UTC"):
        data = await history.report(
            "contacts", startDate="2026-03-01", endDate="2026-04-05", timezone=zone
        )
        async with sessions() as session:
            rows = await session.execute(
                text(
                    "SELECT (sent_at AT TIME ZONE :zone)::date AS day, count(DISTINCT contact_id) "
                    "FROM messages WHERE merchant_id = :m AND direction = 'inbound' GROUP BY 1"
                ),
                {"zone": zone, "m": history.api.merchant.id},
            )
            expected = {row.day.isoformat(): row[1] for row in rows}
        got = {p["period"]: p["active"] for p in data["series"] if p["active"]}
        assert got == {d: n for d, n in expected.items() if "2026-03-01" <= d <= "2026-04-05"}, zone
        assert datetime.fromisoformat(data["period"]["startDate"]).utcoffset() is not None


FOLD_ONLY = MaintenanceInput(
    reprocess_limit=0,
    follow_up_limit=0,
    outbound_limit=0,
    owed_limit=0,
    flow_exit_limit=0,
    retention_batch=0,
)


async def unfolded(sessions: SessionMaker, merchant_id: str) -> int:
    async with sessions() as session:
        return int(
            (
                await session.execute(
                    text(
                        " + ".join(
                            f"(SELECT count(*) FROM {r.table} WHERE merchant_id = :m "
                            "AND NOT folded)"
                            for r in ROLLUPS
                        ).join(["SELECT ", ""])
                    ),
                    {"m": merchant_id},
                )
            ).scalar_one()
        )


async def test_the_maintenance_schedule_folds_the_deltas_and_no_sum_changes(
    history: History,
    sessions: SessionMaker,
    settings: Settings,
    temporal_client: Client,
    worker: None,
) -> None:
    merchant_id = history.api.merchant.id
    # New deltas: tags given to and taken from the shop's contacts (the triggers append them).
    async with sessions() as session, session.begin():
        await session.execute(
            text("UPDATE contacts SET tags = array_append(tags, 'folded') WHERE merchant_id = :m"),
            {"m": merchant_id},
        )
        await session.execute(
            text(
                "UPDATE contacts SET tags = array_remove(tags, 'folded') WHERE id = "
                "(SELECT id FROM contacts WHERE merchant_id = :m ORDER BY id LIMIT 1)"
            ),
            {"m": merchant_id},
        )
    before = await snapshot(sessions, merchant_id)
    deltas = await unfolded(sessions, merchant_id)
    assert deltas >= len(history.people)

    result = await temporal_client.execute_workflow(
        MaintenanceWorkflow.run,
        FOLD_ONLY,
        id=f"maintenance-fold-{uuid.uuid4().hex[:8]}",
        task_queue=settings.task_queue,
        execution_timeout=timedelta(seconds=60),
    )

    assert result.analytics is not None and result.analytics.folded >= deltas
    assert result.analytics.more is False
    assert await unfolded(sessions, merchant_id) == 0
    assert await snapshot(sessions, merchant_id) == before
    async with sessions() as session:
        tagged = await session.execute(
            text("SELECT count(*) FROM contacts WHERE merchant_id = :m AND 'folded' = ANY(tags)"),
            {"m": merchant_id},
        )
    assert sum(n for _, tag, n in before["tags"] if tag == "folded") == tagged.scalar_one()


async def test_a_fold_budget_leaves_the_rest_to_the_next_run(
    history: History, sessions: SessionMaker
) -> None:
    merchant_id = history.api.merchant.id
    async with sessions() as session, session.begin():
        await session.execute(
            text("UPDATE contacts SET tags = array_append(tags, 'budget') WHERE merchant_id = :m"),
            {"m": merchant_id},
        )
    before = await snapshot(sessions, merchant_id)
    folded, more = await fold_some(sessions, budget=1)
    assert (folded, more) == (1, True)
    while more:
        _, more = await fold_some(sessions, budget=100_000)
    assert await unfolded(sessions, merchant_id) == 0
    assert await snapshot(sessions, merchant_id) == before
