"""A Temporal of a test's own that the test may stop and start again, with its own worker and
API in front of it. The session's dev server, which every other test uses, is never stopped.

The dev server keeps its state in a database file and comes back on the same port, so what
was started before the stop (the account's connect workflow, a waiting campaign) is still
there after it; the worker and the API keep their clients, which reconnect by themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import httpx
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

from api.app import create_app
from mktx.settings import Settings
from models.db import SessionMaker
from tests.conftest import Api, Merchant
from worker import build_worker
from workflows.contracts.owed_starts import GRACE_SECONDS
from workflows.ids import MERCHANT_ID, dev_server_flags
from workflows.maintenance import MaintenanceInput, MaintenanceResult, MaintenanceWorkflow

BIN = Path(sys.executable).parent
READY_SECONDS = 30

# A maintenance run that looks only at owed workflow starts (the other sweeps would act on
# whatever other tests left in the shared database).
OWED_ONLY = MaintenanceInput(
    reprocess_limit=0, follow_up_limit=0, outbound_limit=0, flow_exit_limit=0, retention_batch=0
)
# How far back to date a row so that the maintenance run takes it as owed, not in progress.
PAST_GRACE = timedelta(seconds=GRACE_SECONDS + 60)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class StoppableTemporal:
    db_file: Path
    port: int = field(default_factory=_free_port)
    _process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        assert self._process is None, "already running"
        self._process = subprocess.Popen(
            [
                str(BIN / "temporal"),
                "server",
                "start-dev",
                "--db-filename",
                str(self.db_file),
                "--ip",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--headless",
                "--log-level",
                "error",
                *dev_server_flags(),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = asyncio.get_running_loop().time() + READY_SECONDS
        while True:
            assert self._process.poll() is None, "the Temporal dev server exited"
            with contextlib.suppress(Exception):
                client = await Client.connect(self.address)
                listed = await client.operator_service.list_search_attributes(
                    ListSearchAttributesRequest(namespace="default")
                )
                if MERCHANT_ID.name in listed.custom_attributes:
                    return
            assert asyncio.get_running_loop().time() < deadline, "Temporal did not come up"
            await asyncio.sleep(0.2)

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.send_signal(signal.SIGTERM)
        try:
            self._process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None


@dataclass
class OwnStack:
    """The test's Temporal, a worker on a queue of its own, and the API, all against the
    session's database and sandbox."""

    temporal: StoppableTemporal
    settings: Settings
    client: Client
    sessions: SessionMaker
    api: Api
    _worker: tuple[Worker, asyncio.Task[None]] | None = None

    async def start_worker(self) -> None:
        assert self._worker is None, "a worker is running"
        worker = build_worker(self.client, self.settings, self.sessions)
        self._worker = worker, asyncio.create_task(worker.run())

    async def stop_worker(self) -> None:
        """Stop it before Temporal goes (a worker cut off from Temporal is not what is tested)."""
        if self._worker is not None:
            (worker, running), self._worker = self._worker, None
            await worker.shutdown()
            await running

    async def stop_temporal(self) -> None:
        await self.stop_worker()
        self.temporal.stop()

    async def start_temporal(self) -> None:
        await self.temporal.start()
        await self.start_worker()

    async def maintenance(self, request: MaintenanceInput = OWED_ONLY) -> MaintenanceResult:
        """One run of the maintenance workflow, as the worker's schedule makes them."""
        return await self.client.execute_workflow(
            MaintenanceWorkflow.run,
            request,
            id=f"maintenance-test-{uuid.uuid4().hex[:8]}",
            task_queue=self.settings.task_queue,
            execution_timeout=timedelta(seconds=120),
        )


@contextlib.asynccontextmanager
async def own_stack(
    settings: Settings, sessions: SessionMaker, merchant: Merchant, tmp_path: Path
) -> AsyncIterator[OwnStack]:
    temporal = StoppableTemporal(tmp_path / "temporal.db")
    await temporal.start()
    own = settings.model_copy(
        update={"temporal_address": temporal.address, "task_queue": f"own-{uuid.uuid4().hex[:8]}"}
    )
    client = await Client.connect(temporal.address, data_converter=pydantic_data_converter)
    app = create_app(own)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://own.test") as http:
                stack = OwnStack(temporal, own, client, sessions, Api(http, merchant))
                await stack.start_worker()
                try:
                    yield stack
                finally:
                    await stack.stop_worker()
    finally:
        temporal.stop()
