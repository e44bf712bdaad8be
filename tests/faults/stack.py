"""A whole mkt-x of one test's own — private PostgreSQL, Temporal dev server, X sandbox, worker
and API processes — and the faults done to it. The sandbox runs in the test's process (it is
the judge, never broken): its DM log says what X received, and its users are put straight
into its state (2,000 admin calls would time the setup, not the fault)."""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx
from pydantic import SecretStr

from mktx.settings import Environment, Settings
from models.db import SessionMaker, make_engine, make_sessionmaker
from sandbox.admin import SandboxAdmin
from sandbox.app import SandboxConfig
from sandbox.server import RunningSandbox, start_sandbox_thread
from sandbox.state import User
from tests.conftest import Api, Merchant
from tests.faults.processes import PrivatePostgres, Service, free_port, service_env, wait_http_ok
from tests.stoppable_temporal import StoppableTemporal

CONSUMER_KEY = "faults-consumer-key"
CONSUMER_SECRET = "faults-consumer-secret-0123456789"
WEBHOOK_ID = "faults-webhook"
# Quotas far above any workload: a quota wait is not the fault under test.
QUOTA = 100_000
T = TypeVar("T")


@dataclass
class FaultStack:
    root: Path
    postgres: PrivatePostgres
    temporal: StoppableTemporal
    sandbox: RunningSandbox
    settings: Settings
    worker: Service
    api_process: Service
    sessions: SessionMaker
    api: Api
    faults: list[str]
    started: float = field(default_factory=time.monotonic)
    # This process's own CPU when the stack was up (its reaped children are the other parts).
    own_cpu_at_start: float = field(default_factory=lambda: sum(os.times()[:2]))

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.port}"

    @property
    def x_admin(self) -> SandboxAdmin:
        return SandboxAdmin(self.sandbox.url)

    def add_x_users(self, users: list[User]) -> None:
        state = self.sandbox.state
        for user in users:
            state.users[user.id] = user

    def dms_by_recipient(self, sender_id: str) -> Counter[tuple[str, str]]:
        """(recipient, text) -> how many DMs the sandbox received from `sender_id`."""
        return Counter(
            (e.recipient_id, e.text) for e in self.sandbox.state.find_dms(sender_id, None)
        )

    def dm_count(self, sender_id: str) -> int:
        return len(self.sandbox.state.find_dms(sender_id, None))

    async def api_ready(self) -> None:
        await wait_http_ok(f"{self.api_url}/readyz", self.api_process)

    # Faults ------------------------------------------------------------------------------
    # Each records what it did, and when (seconds since the stack was up), for the summary.

    def _note(self, what: str) -> None:
        self.faults.append(f"{what} at {time.monotonic() - self.started:.1f}s")

    async def kill_worker(self, down: float = 1.0) -> None:
        self.worker.kill()
        self._note("worker kill -9")
        await asyncio.sleep(down)
        self.worker.start()

    async def terminate_worker(self) -> int:
        """SIGTERM, as a rolling deploy does it: the replacement starts at once, while the old
        worker stops polling, lets its running activities finish for
        MKTX_WORKER_SHUTDOWN_SECONDS, cancels the rest (a cancelled delivery hands back the DMs
        it had not handed to X, which the new worker sends at once) and exits."""
        old = self.worker.retire()
        self._note("worker SIGTERM")
        self.worker.start()
        code = await asyncio.to_thread(self.worker.retired, old)
        self._note(f"old worker exited ({code})")
        return code

    async def restart_temporal(self, down: float = 3.0) -> None:
        """The dev server stopped and started on its port with its state file; the worker and
        the API keep running and must find it again by themselves."""
        await asyncio.to_thread(self.temporal.stop)  # the flood's lanes keep going meanwhile
        self._note("temporal stopped")
        await asyncio.sleep(down)
        await self.temporal.start()
        self._note("temporal started")

    async def restart_postgres(self, down: float = 3.0) -> None:
        await asyncio.to_thread(self.postgres.stop)
        self._note("postgres stopped")
        await asyncio.sleep(down)
        await asyncio.to_thread(self.postgres.start)
        self._note("postgres started")

    async def kill_api(self, down: float = 2.0) -> None:
        self.api_process.kill()
        self._note("api kill -9")
        await asyncio.sleep(down)
        self.api_process.start()
        await self.api_ready()

    # After the test ----------------------------------------------------------------------

    def cpu_by_part(self) -> dict[str, float]:
        """CPU seconds of each part now running (a worker or API killed earlier not counted):
        where a test's cost goes."""
        import psutil

        def used(pid: int | None) -> float:
            if pid is None:
                return 0.0
            try:
                times = psutil.Process(pid).cpu_times()
            except (psutil.Error, ValueError):
                return 0.0
            return times.user + times.system + times.children_user + times.children_system

        parts = {
            "worker": self.worker.process.pid if self.worker.process else None,
            "api": self.api_process.process.pid if self.api_process.process else None,
            "temporal": self.temporal._process.pid if self.temporal._process else None,
        }
        found = {name: round(used(pid), 1) for name, pid in parts.items()}
        found["postgres"] = round(self.postgres.cpu_seconds(), 1)
        found["test"] = round(sum(os.times()[:2]) - self.own_cpu_at_start, 1)
        return found

    def unhandled_errors(self) -> list[str]:
        """The API's 500s (its last-resort handler logs each) and any process's crash (an
        uncaught exception's traceback printed outside the JSON log). An activity failing
        while PostgreSQL or X is away is logged as a warning and retried: not one of these."""
        lines = []
        for service in (self.api_process, self.worker):
            for line in service.log_text().splitlines():
                if "request.unhandled_error" in line or line.startswith("Traceback"):
                    lines.append(f"{service.command}: {line[:500]}")
        return lines


@asynccontextmanager
async def fault_stack(
    template: Path, pg_dir: Path, root: Path, *, maintenance_seconds: int = 60
) -> AsyncIterator[FaultStack]:
    """Every part started, the API ready; stopped (each process by its id) at the end."""
    # The sandbox serves from this process: its access log (a line per DM) would cost the CPU
    # the workload needs.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    postgres = PrivatePostgres.copy_of(template, pg_dir / f"pg-{uuid.uuid4().hex[:8]}")
    await asyncio.to_thread(postgres.start)
    temporal = StoppableTemporal(root / "temporal.db")
    sandbox = start_sandbox_thread(
        SandboxConfig(
            consumer_key=CONSUMER_KEY,
            consumer_secret=CONSUMER_SECRET,
            webhook_id=WEBHOOK_ID,
            webhook_url="http://127.0.0.1:9/unset",  # nothing here is delivered by the sandbox
            seed_demo=False,
        )
    )
    engine = make_engine(postgres.url(), pool_size=4)
    worker = api_process = None
    try:
        await temporal.start()
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            env=Environment.test,
            database_url=postgres.url(),
            temporal_address=temporal.address,
            task_queue=f"faults-{uuid.uuid4().hex[:8]}",
            port=free_port(),
            x_api_base_url=sandbox.url,
            x_consumer_key=SecretStr(CONSUMER_KEY),
            x_consumer_secret=SecretStr(CONSUMER_SECRET),
            x_webhook_id=WEBHOOK_ID,
            x_timeout_seconds=10,
            rate_limit_per_minute=QUOTA,
            dm_limit_per_24h=QUOTA,
            campaign_limit_per_24h=QUOTA,
            maintenance_interval_seconds=maintenance_seconds,
        )
        env = service_env(settings)
        worker = Service("worker", env, root / "worker.log")
        api_process = Service("api", env, root / "api.log")
        worker.start()
        api_process.start()
        admin = SandboxAdmin(sandbox.url)
        for endpoint in ("dm_send", "dm_events"):  # X's 15-minute windows, lifted
            await admin.set_rate_limit(endpoint, QUOTA, 900)
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{settings.port}", trust_env=False, timeout=30
        ) as http:
            stack = FaultStack(
                root=root,
                postgres=postgres,
                temporal=temporal,
                sandbox=sandbox,
                settings=settings,
                worker=worker,
                api_process=api_process,
                sessions=make_sessionmaker(engine),
                api=Api(http, Merchant(settings)),
                faults=[],
            )
            await stack.api_ready()
            yield stack
    finally:
        for service in (api_process, worker):
            if service is not None:
                service.stop()
        await engine.dispose()
        temporal.stop()
        sandbox.stop()
        await asyncio.to_thread(postgres.remove)


async def wait_for(
    what: str,
    probe: Callable[[], Awaitable[T]],
    timeout: float,
    interval: float = 0.25,
    until: Callable[[T], bool] = bool,
) -> T:
    """The first value of `await probe()` for which `until` holds within `timeout` seconds,
    else a failure naming `what` and the last value probed."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if until(value):
            return value
        assert time.monotonic() < deadline, f"{what}: not after {timeout:g} s (last: {value!r})"
        await asyncio.sleep(interval)


# The faults, by the name each test of the matrix is parametrized with ---------------------

Strike = Callable[[FaultStack], Awaitable[None]]


async def _kill_worker(stack: FaultStack) -> None:
    await stack.kill_worker(down=1.0)


async def _terminate_worker(stack: FaultStack) -> None:
    # Graceful: the worker exits by itself, with 0, well within a supervisor's patience.
    assert await stack.terminate_worker() == 0


async def _restart_temporal(stack: FaultStack) -> None:
    await stack.restart_temporal(down=3.0)


async def _restart_postgres(stack: FaultStack) -> None:
    await stack.restart_postgres(down=3.0)


async def _kill_api(stack: FaultStack) -> None:
    await stack.kill_api(down=2.0)


STRIKES: dict[str, Strike] = {
    "worker-kill-9": _kill_worker,
    "worker-sigterm": _terminate_worker,
    "temporal-restart": _restart_temporal,
    "postgres-restart": _restart_postgres,
    "api-kill-9": _kill_api,
}
