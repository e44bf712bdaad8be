"""The worker keeps a Temporal Schedule of the maintenance sweeps: `mkt-x worker` creates it at
start (visible to operators like any schedule), its runs execute on that worker, and a later
start brings it up to date without undoing what an operator set (paused)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

from temporalio.client import (
    Client,
    ScheduleActionExecutionStartWorkflow,
    ScheduleActionStartWorkflow,
    ScheduleDescription,
    ScheduleOverlapPolicy,
)
from temporalio.service import RPCError, RPCStatusCode

from mktx.settings import Settings
from services.maintenance.schedule import ensure_maintenance_schedule
from tests.conftest import CONSUMER_KEY, CONSUMER_SECRET
from workflows import ids
from workflows.maintenance import MaintenanceWorkflow

ROOT = Path(__file__).resolve().parent.parent


def _worker_env(settings: Settings, task_queue: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MKTX_")}
    env.update(
        PYTHONPATH=str(ROOT),
        LITELLM_LOCAL_MODEL_COST_MAP="True",
        MKTX_ENV="test",
        MKTX_DATABASE_URL=settings.require_database_url(),
        MKTX_TEMPORAL_ADDRESS=settings.require_temporal_address(),
        MKTX_TASK_QUEUE=task_queue,
        MKTX_X_API_BASE_URL=settings.x_api_base_url,
        MKTX_X_CONSUMER_KEY=CONSUMER_KEY,
        MKTX_X_CONSUMER_SECRET=CONSUMER_SECRET,
        MKTX_MAINTENANCE_INTERVAL_SECONDS="600",
    )
    return env


async def _described(
    client: Client, schedule_id: str, worker: subprocess.Popen[bytes]
) -> ScheduleDescription:
    for _ in range(600):
        try:
            return await client.get_schedule_handle(schedule_id).describe()
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
        assert worker.poll() is None, "the worker exited"
        await asyncio.sleep(0.1)
    raise AssertionError(f"no schedule {schedule_id}")


async def test_the_worker_creates_the_maintenance_schedule_and_runs_it(
    settings: Settings, temporal_client: Client, tmp_path: Path
) -> None:
    queue = f"maintenance-{uuid.uuid4().hex[:8]}"
    schedule_id = ids.maintenance_schedule_id(queue)
    log = tmp_path / "worker.log"
    with log.open("wb") as output:
        worker = subprocess.Popen(
            [sys.executable, "-m", "mktx.cli", "worker"],
            env=_worker_env(settings, queue),
            cwd=tmp_path,  # no .env of the repository
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    handle = temporal_client.get_schedule_handle(schedule_id)
    try:
        described = await _described(temporal_client, schedule_id, worker)
        schedule = described.schedule
        assert [i.every for i in schedule.spec.intervals] == [timedelta(seconds=600)]
        assert schedule.policy.overlap == ScheduleOverlapPolicy.SKIP
        action = schedule.action
        assert isinstance(action, ScheduleActionStartWorkflow)
        assert action.workflow == ids.MAINTENANCE_WORKFLOW and action.task_queue == queue

        # A run now, as the schedule makes every interval: the worker executes it.
        await handle.trigger()
        for _ in range(300):
            recent = (await handle.describe()).info.recent_actions
            if recent:
                break
            await asyncio.sleep(0.1)
        run = recent[0].action
        assert isinstance(run, ScheduleActionExecutionStartWorkflow)
        assert run.workflow_id.startswith(schedule_id)
        result = await asyncio.wait_for(
            temporal_client.get_workflow_handle_for(
                MaintenanceWorkflow.run, run.workflow_id
            ).result(),
            timeout=60,
        )
        assert result.webhook_events is not None and result.outbound is not None

        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0

        # An operator paused it; the next start (another interval) keeps it paused.
        await handle.pause(note="paused by an operator")
        restarted = settings.model_copy(
            update={"task_queue": queue, "maintenance_interval_seconds": 120}
        )
        await ensure_maintenance_schedule(temporal_client, restarted)
        again = await handle.describe()
        assert [i.every for i in again.schedule.spec.intervals] == [timedelta(seconds=120)]
        assert again.schedule.state.paused
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        with contextlib.suppress(RPCError):
            await handle.delete()
    logged = log.read_text(errors="replace")
    assert "Traceback" not in logged and "maintenance.schedule_created" in logged, logged
