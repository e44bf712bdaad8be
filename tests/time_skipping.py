"""Temporal's time-skipping test server with a worker of its own, against the session's database
and sandbox: the builder behind the campaign and flow tests' time-skipping fixtures."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.deps import WorkerDeps
from integrations.x import x_client_from_settings
from mktx.secrets import SecretBox
from mktx.settings import Settings
from models.db import SessionMaker

ActivityBuilder = Callable[[WorkerDeps], Iterable[Callable[..., Any]]]


@dataclass
class SkippingTemporal:
    env: WorkflowEnvironment
    task_queue: str

    @property
    def client(self) -> Client:
        return self.env.client


@asynccontextmanager
async def time_skipping_worker(
    settings: Settings,
    sessions: SessionMaker,
    *,
    task_queue: str,
    workflows: Iterable[type],
    activity_builders: Iterable[ActivityBuilder],
    settings_update: Mapping[str, Any] | None = None,
) -> AsyncIterator[SkippingTemporal]:
    """The time-skipping server and a worker on `task_queue` running `workflows` and the
    activities each builder makes of the deps, whose settings are `settings` with
    `settings_update` applied."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(Path(sys.executable).parent / "temporal-test-server"),
        data_converter=pydantic_data_converter,
    )
    try:
        deps = WorkerDeps(
            settings=settings.model_copy(update=dict(settings_update or {})),
            sessions=sessions,
            x=x_client_from_settings(settings),
            secrets=SecretBox.from_settings(settings),
            temporal=env.client,
        )
        worker = Worker(
            env.client,
            task_queue=task_queue,
            workflows=list(workflows),
            activities=[activity for build in activity_builders for activity in build(deps)],
        )
        async with worker:
            yield SkippingTemporal(env, task_queue)
    finally:
        await env.shutdown()
