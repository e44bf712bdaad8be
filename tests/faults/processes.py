"""The parts a fault test breaks, each a real process of the test's own: a private PostgreSQL
(pgserver's binaries, a cluster copied from a migrated template, on a TCP port of its own), the
Temporal dev server (its state file kept across a restart), `mkt-x worker` and `mkt-x api`.

Nothing here touches a server another test or engineer uses: the cluster, the Temporal state
file and the ports are the test's, and every process is stopped by the id it was started with.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import sqlalchemy as sa

from mktx.settings import Settings

BIN = Path(sys.executable).parent
# PostgreSQL refuses to run as root; pgserver then runs it as this user (and creates it).
PG_SYSTEM_USER = "pgserver" if os.geteuid() == 0 else None
READY_SECONDS = 45.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# PostgreSQL ---------------------------------------------------------------------------------


def _pg(tool: str, *args: str | Path, timeout: float = 60) -> None:
    """One of the binaries pgserver ships (imported here: collecting the tests needs none)."""
    from pgserver._commands import POSTGRES_BIN_PATH

    subprocess.run(
        [str(POSTGRES_BIN_PATH / tool), *map(str, args)],
        user=PG_SYSTEM_USER,
        check=True,
        timeout=timeout,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _owned(path: Path) -> None:
    """A directory the server's system user may write (root runs the tests, not PostgreSQL)."""
    if PG_SYSTEM_USER is not None:
        import pwd

        user = pwd.getpwnam(PG_SYSTEM_USER)
        os.chown(path, user.pw_uid, user.pw_gid)


def init_template(data: Path) -> None:
    """A stopped cluster with the database `mktx` migrated to head: copied for each test, so that
    a test pays a copy (about a second), not initdb and every migration (about eight)."""
    if PG_SYSTEM_USER is not None:
        from pgserver.utils import ensure_user_exists

        ensure_user_exists(PG_SYSTEM_USER)
    data.mkdir(parents=True)
    _owned(data)
    _pg("initdb", "-D", data, "--auth=trust", "-U", "postgres", "--encoding=utf8", "-N")
    server = PrivatePostgres(data)
    server.start()
    try:
        admin = sa.create_engine(server.url("postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text("CREATE DATABASE mktx"))
        admin.dispose()
        from migrations.runner import upgrade_database

        upgrade_database(server.url())
    finally:
        server.stop()


@dataclass
class PrivatePostgres:
    """One cluster on 127.0.0.1:port, TCP only (a client of a stopped server is refused at once,
    as it would be by a server that went away). Durability settings are relaxed: the server is
    stopped and restarted, never the machine, so what was committed is in the OS's cache."""

    data: Path
    port: int = field(default_factory=free_port)
    cpu_used: float = 0.0  # by the servers stopped so far

    @classmethod
    def copy_of(cls, template: Path, data: Path) -> PrivatePostgres:
        subprocess.run(["cp", "-a", str(template), str(data)], check=True)  # keeps the owner
        return cls(data)

    def url(self, database: str = "mktx") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _configure(self) -> None:
        settings = (
            f"listen_addresses = '127.0.0.1'\nport = {self.port}\nunix_socket_directories = ''\n"
            "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 200\n"
        )
        conf = self.data / "postgresql.auto.conf"
        conf.write_text(settings)
        _owned(conf)

    def start(self) -> None:
        self._configure()
        _pg("pg_ctl", "-D", self.data, "-w", "-t", "30", "-l", self.data / "server.log", "start")

    def stop(self) -> None:
        """A fast shutdown: every session is ended, as when an operator restarts the server."""
        if (self.data / "postmaster.pid").exists():
            self.cpu_used += self.cpu_seconds()
            _pg("pg_ctl", "-D", self.data, "-w", "-t", "30", "-m", "fast", "stop")

    def cpu_seconds(self) -> float:
        """CPU the running server has used: the postmaster's and its ended backends' (reaped
        by it), plus the backends still running. Zero when it is not running."""
        import psutil

        try:
            postmaster = psutil.Process(int((self.data / "postmaster.pid").read_text().split()[0]))
            processes = [postmaster, *postmaster.children()]
            return sum(
                t.user + t.system + t.children_user + t.children_system
                for t in (p.cpu_times() for p in processes)
            )
        except (OSError, ValueError, psutil.Error):
            return 0.0

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.data, ignore_errors=True)


# mkt-x processes ----------------------------------------------------------------------------


def service_env(settings: Settings) -> dict[str, str]:
    """What `mkt-x worker` and `mkt-x api` read: these settings as MKTX_* variables."""
    assert settings.database_url is not None
    return {
        **os.environ,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "MKTX_ENV": "test",
        "MKTX_LOG_LEVEL": "WARNING",
        "MKTX_DATABASE_URL": settings.database_url,
        "MKTX_TEMPORAL_ADDRESS": settings.require_temporal_address(),
        "MKTX_TASK_QUEUE": settings.task_queue,
        "MKTX_X_API_BASE_URL": settings.x_api_base_url,
        "MKTX_X_CONSUMER_KEY": settings.x_consumer_key.get_secret_value(),
        "MKTX_X_CONSUMER_SECRET": settings.x_consumer_secret.get_secret_value(),
        "MKTX_X_WEBHOOK_ID": settings.x_webhook_id,
        "MKTX_X_TIMEOUT_SECONDS": str(settings.x_timeout_seconds),
        "MKTX_ENCRYPTION_KEY": settings.encryption_key.get_secret_value(),
        "MKTX_RATE_LIMIT_PER_MINUTE": str(settings.rate_limit_per_minute),
        "MKTX_DM_LIMIT_PER_24H": str(settings.dm_limit_per_24h),
        "MKTX_CAMPAIGN_LIMIT_PER_24H": str(settings.campaign_limit_per_24h),
        "MKTX_MAINTENANCE_INTERVAL_SECONDS": str(settings.maintenance_interval_seconds),
        "MKTX_PORT": str(settings.port),
    }


class Service:
    """`mkt-x <command>` in a process of its own, its log (stderr) kept in a file across starts,
    so that a test can read what went wrong and look for a 500 (`request.unhandled_error`)."""

    def __init__(self, command: str, env: dict[str, str], log: Path) -> None:
        self.command = command
        self.env = env
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None
        self.exit_codes: list[int] = []

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None, "already running"
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [str(BIN / "mkt-x"), self.command],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,  # a terminal's Ctrl-C goes to pytest only
            )

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """kill -9: no shutdown code runs, whatever was in flight is cut off."""
        assert self.process is not None and self.running(), f"{self.command} is not running"
        self.process.send_signal(signal.SIGKILL)
        self.exit_codes.append(self.process.wait(timeout=10))

    def retire(self) -> subprocess.Popen[bytes]:
        """SIGTERM, as a rolling deploy stops the old process while its replacement starts:
        the old process (to wait for), no longer this service's, so `start` may run at once."""
        assert self.process is not None and self.running(), f"{self.command} is not running"
        old, self.process = self.process, None
        old.send_signal(signal.SIGTERM)
        return old

    def retired(self, old: subprocess.Popen[bytes], timeout: float = 30) -> int:
        """The retired process's exit code once it has shut down by itself."""
        code = old.wait(timeout=timeout)
        self.exit_codes.append(code)
        return code

    def stop(self) -> None:
        if self.running():
            assert self.process is not None
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


async def wait_http_ok(url: str, service: Service, timeout: float = READY_SECONDS) -> None:
    """Until `url` answers 200 (the API's /readyz: database and Temporal reachable)."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(trust_env=False, timeout=2) as client:
        while True:
            assert service.running(), f"{service.command} exited:\n{service.tail()}"
            try:
                if (await client.get(url)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"{url} not ready:\n{service.tail()}"
            await asyncio.sleep(0.2)
