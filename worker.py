"""Temporal worker entry point: registers every workflow and activity on the task queue."""

from __future__ import annotations

import asyncio
import compileall
import logging
import signal
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

import activities.accounts
import activities.assistant
import activities.campaign
import activities.flows
import activities.listeners
import activities.maintenance
import activities.messaging
import workflows.accounts
import workflows.assistant
import workflows.campaign
import workflows.contact_reply
import workflows.flow
import workflows.maintenance
import workflows.messaging
from activities.deps import WorkerDeps
from integrations.x import x_client_from_settings
from mktx import metrics
from mktx.logs import configure_logging
from mktx.secrets import SecretBox
from mktx.settings import Settings, load_settings
from mktx.temporal import connect_temporal, ensure_search_attributes, metrics_runtime
from mktx.tracing import WORKER_SERVICE, configure_tracing
from models.db import SessionMaker, make_engine, make_sessionmaker
from services.maintenance.schedule import ensure_maintenance_schedule

logger = logging.getLogger("worker")

# The contracts (pydantic models and constants) and the helpers the workflows share (delivering,
# retry policies, ids) are deterministic and free of I/O and of module state (import contracts
# hold them to it): shared with the sandbox instead of being imported afresh for every workflow
# it starts, which costs milliseconds per workflow (a flood of new followers starting flows).
# Each workflow's own module is still imported in the sandbox, under its restrictions.
# OpenTelemetry, which the tracing interceptor uses inside workflows when tracing is on, must be
# the host's: its context is process state (and reimporting it would cost each workflow).
WORKFLOW_RUNNER = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_modules(
        "workflows.contracts",
        "workflows.delivering",
        "workflows.retry",
        "workflows.ids",
        "opentelemetry",
    )
)

# Each workflows module lists its workflows; each activities module builds its activities.
ALL_WORKFLOWS: Sequence[type] = [
    *workflows.accounts.WORKFLOWS,
    *workflows.messaging.WORKFLOWS,
    *workflows.contact_reply.WORKFLOWS,
    *workflows.campaign.WORKFLOWS,
    *workflows.flow.WORKFLOWS,
    *workflows.assistant.WORKFLOWS,
    *workflows.maintenance.WORKFLOWS,
]
ACTIVITY_BUILDERS: Sequence[Callable[[WorkerDeps], list[Callable[..., Any]]]] = [
    activities.accounts.build,
    activities.messaging.build,
    activities.listeners.build,
    activities.campaign.build,
    activities.flows.build,
    activities.assistant.build,
    activities.maintenance.build,
]


def build_worker(
    client: Client,
    settings: Settings,
    sessions: SessionMaker,
    *,
    graceful_shutdown: timedelta = timedelta(0),
) -> Worker:
    deps = WorkerDeps(
        settings=settings,
        sessions=sessions,
        x=x_client_from_settings(settings),
        secrets=SecretBox.from_settings(settings),
        temporal=client,
    )
    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=list(ALL_WORKFLOWS),
        activities=[activity for build in ACTIVITY_BUILDERS for activity in build(deps)],
        workflow_runner=WORKFLOW_RUNNER,
        graceful_shutdown_timeout=graceful_shutdown,
    )


def compile_workflows() -> None:
    """The sandbox imports each workflow's own module afresh for every workflow it starts (and
    again to replay one it no longer holds): from its bytecode when there is some, else compiled
    from source every time, which is what happens where PYTHONDONTWRITEBYTECODE is set and
    nothing compiled the sources (an editable install, a checkout). The worker writes that
    bytecode once at start; where it cannot (a read-only tree), nothing changes."""
    compileall.compile_dir(Path(workflows.__file__).parent, quiet=2)


async def run(settings: Settings) -> None:
    compile_workflows()
    engine = make_engine(
        settings.require_database_url(),
        pool_size=settings.database_pool_size,
        # Activities have no client waiting on them: they wait for a connection longer than a
        # request would, rather than fail and be retried.
        pool_timeout=max(30.0, settings.database_pool_timeout),
    )
    runtime = None
    if settings.worker_metrics_port is not None:
        runtime = metrics_runtime(settings.worker_metrics_port)
        metrics.use_temporal_meter(runtime.metric_meter)
    client = await connect_temporal(settings, runtime)
    await ensure_search_attributes(client)
    # On SIGTERM the worker stops polling and lets its running activities finish for this
    # long; then they are cancelled, and a cancelled delivery hands its unsent DMs back.
    graceful = timedelta(seconds=settings.worker_shutdown_seconds)
    worker = build_worker(client, settings, make_sessionmaker(engine), graceful_shutdown=graceful)
    await ensure_maintenance_schedule(client, settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    logger.info("worker.started", extra={"task_queue": settings.task_queue})
    async with worker:
        await stop.wait()
        logger.info("worker.stopping")
    await engine.dispose()


def main(settings: Settings | None = None) -> int:
    settings = settings or load_settings()
    configure_logging(settings.log_level)
    # Before the client is connected: its interceptor traces the workflows and activities.
    configure_tracing(WORKER_SERVICE)
    asyncio.run(run(settings))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
