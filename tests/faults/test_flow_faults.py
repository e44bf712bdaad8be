"""200 runs of a flow — a DM, a 3-second wait, a DM — enrolled through the API, while the
worker is killed -9, while it is stopped by SIGTERM and replaced, while Temporal restarts and
while PostgreSQL restarts, each struck once half of the first DMs are out (the rest in flight or queued, the first runs on their timers).

After each: every run completed with each node reached once, in order, and the sandbox
received exactly the two DMs of the flow for every contact, each once."""

from __future__ import annotations

import time
import uuid

import pytest

from tests.faults.stack import STRIKES, FaultStack, wait_for
from tests.faults.workloads import (
    FLOW_STEPS,
    connect_shop,
    people,
    rows,
    scalar,
    seed_contacts,
    start_flow,
)

pytestmark = pytest.mark.faults

RUNS = 200
WAIT_SECONDS = 3
FAULT_AT = RUNS // 2
# Deadlines are for a machine shared with other test runs (several times slower than 2 idle
# cores): the summary's wall and CPU seconds say what a test costs.
DONE_SECONDS = 120


FAULTS = ["worker-kill-9", "worker-sigterm", "temporal-restart", "postgres-restart"]


@pytest.mark.parametrize("fault", FAULTS)
async def test_flow_runs_take_each_step_once(stack: FaultStack, fault: str) -> None:
    started = time.monotonic()
    shop, account_id = await connect_shop(stack)
    contacts = people(RUNS)
    stack.add_x_users(contacts)
    contact_ids = await seed_contacts(stack, account_id, contacts, f"flow{uuid.uuid4().hex[:6]}")
    await stack.x_admin.set_faults(latency_ms=30, path_prefix="/2/dm_conversations")
    flow_id = await start_flow(stack, contact_ids, WAIT_SECONDS)

    async def half_out() -> bool:
        return stack.dm_count(shop.id) >= FAULT_AT

    await wait_for("half of the first DMs out", half_out, 90, 0.05)
    at_fault = stack.dm_count(shop.id)
    await STRIKES[fault](stack)

    async def progress() -> tuple[int, int]:
        """(runs finished, DMs received); the API asked too, as a merchant watching would:
        never a 500 (503 while Temporal or PostgreSQL is away)."""
        answer = await stack.api.get(f"/automation/flows/{flow_id}")
        assert answer.status_code in (200, 503), answer.text
        done = await scalar(
            stack,
            "SELECT count(*) FROM flow_runs WHERE flow_id = CAST(:f AS uuid) "
            "AND status <> 'running'",
            f=flow_id,
        )
        return done, stack.dm_count(shop.id)

    await wait_for(
        "every run finished (runs, DMs)",
        progress,
        DONE_SECONDS,
        0.5,
        until=lambda p: p[0] == RUNS and p[1] >= 2 * RUNS,
    )
    statuses = await rows(
        stack,
        "SELECT status, count(*) FROM flow_runs WHERE flow_id = CAST(:f AS uuid) GROUP BY 1",
        f=flow_id,
    )
    assert statuses == [("completed", RUNS)]
    steps = await rows(
        stack,
        "SELECT r.id, array_agg(s.node_id || ':' || coalesce(s.outcome, '') ORDER BY s.seq) "
        "FROM flow_runs r JOIN flow_run_steps s ON s.run_id = r.id "
        "WHERE r.flow_id = CAST(:f AS uuid) GROUP BY r.id",
        f=flow_id,
    )
    expected_steps = [f"{node}:{outcome}" for node, outcome in FLOW_STEPS]
    assert len(steps) == RUNS
    assert all(list(path) == expected_steps for _, path in steps), steps[:3]
    dms = stack.dms_by_recipient(shop.id)
    expected = {(p.id, f"Hi {p.name}, step one") for p in contacts} | {
        (p.id, f"{p.name}, step two") for p in contacts
    }
    assert set(dms) == expected, f"{len(set(dms) ^ expected)} DMs differ"
    doubled = {key: n for key, n in dms.items() if n != 1}
    assert doubled == {}, f"{len(doubled)} DMs sent more than once"
    assert stack.worker.running() and stack.api_process.running()
    assert stack.unhandled_errors() == []
    print(
        f"\nflow {fault}: {RUNS} runs, {at_fault} DMs out at the fault, every step once, "
        f"{time.monotonic() - started:.1f}s, faults {stack.faults}"
    )
