"""A 2,000-recipient campaign, created through the API, while its worker is killed -9, while
its worker is stopped by SIGTERM and replaced, while Temporal restarts and while PostgreSQL
restarts, each struck once a quarter of the DMs are out.

After each: the campaign completed, the sandbox received exactly one DM for every recipient
(and none for anyone else), each recipient row is `sent` with its own DM, and nothing
answered 500."""

from __future__ import annotations

import time
import uuid

import pytest

from tests.faults.stack import STRIKES, FaultStack, wait_for
from tests.faults.workloads import (
    connect_shop,
    people,
    rows,
    seed_contacts,
    start_campaign,
)

pytestmark = pytest.mark.faults

RECIPIENTS = 2_000
FAULT_AT = RECIPIENTS // 4
# Batches heartbeat every 3 s: a lost attempt's claims are taken over after 8 s, not 30 s
# (workloads.start_campaign).
HEARTBEAT_SECONDS = 3
# Deadlines are for a machine shared with other test runs (several times slower than 2 idle
# cores): the summary's wall and CPU seconds say what a test costs.
DONE_SECONDS = 120


FAULTS = ["worker-kill-9", "worker-sigterm", "temporal-restart", "postgres-restart"]


@pytest.mark.parametrize("fault", FAULTS)
async def test_a_campaign_sends_each_recipient_once(stack: FaultStack, fault: str) -> None:
    started = time.monotonic()
    shop, account_id = await connect_shop(stack)
    recipients = people(RECIPIENTS)
    stack.add_x_users(recipients)
    tag = f"fault{uuid.uuid4().hex[:6]}"
    await seed_contacts(stack, account_id, recipients, tag)
    # Each DM takes X a moment: DMs are in flight (sent, their outcome not yet recorded)
    # whenever the fault strikes.
    await stack.x_admin.set_faults(latency_ms=30, path_prefix="/2/dm_conversations")
    campaign_id = await start_campaign(stack, tag, heartbeat_seconds=HEARTBEAT_SECONDS)

    async def quarter_out() -> bool:
        return stack.dm_count(shop.id) >= FAULT_AT

    await wait_for("a quarter of the DMs out", quarter_out, 90, 0.05)
    at_fault = stack.dm_count(shop.id)
    await STRIKES[fault](stack)

    async def completed() -> bool:
        response = await stack.api.get(f"/campaigns/{campaign_id}")
        assert response.status_code in (200, 503), response.text  # 503: Temporal away
        return response.status_code == 200 and response.json()["data"]["status"] == "completed"

    await wait_for("the campaign completed", completed, DONE_SECONDS, 0.5)
    dms = stack.dms_by_recipient(shop.id)
    expected = {(p.id, f"Hi {p.name}, the fault sale starts now") for p in recipients}
    assert set(dms) == expected, f"{len(set(dms) - expected)} unexpected DMs"
    doubled = {key: n for key, n in dms.items() if n != 1}
    assert doubled == {}, f"{len(doubled)} recipients got more than one DM"
    states = await rows(
        stack,
        "SELECT state, count(*), count(DISTINCT dm_event_id) FROM campaign_recipients "
        "WHERE campaign_id = CAST(:c AS uuid) GROUP BY state",
        c=campaign_id,
    )
    assert states == [("sent", RECIPIENTS, RECIPIENTS)]
    assert stack.worker.running() and stack.api_process.running()
    assert stack.unhandled_errors() == []
    print(
        f"\ncampaign {fault}: {RECIPIENTS} recipients, {at_fault} DMs out at the fault, "
        f"one DM each, {time.monotonic() - started:.1f}s, faults {stack.faults}"
    )
