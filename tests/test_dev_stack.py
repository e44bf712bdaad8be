"""`mkt-x dev` end to end: the whole embedded stack comes up, answers, stops cleanly on Ctrl-C and
finds its data again on the next start. Also: bad configuration exits 78 naming the variable."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

from mktx.processes import find_executable
from mktx.settings import DEV_JWT_SECRET
from workflows.ids import account_connect_id

ROOT = Path(__file__).resolve().parent.parent
BASE_PATH = "/api/v1/mkt-x"
READY_TIMEOUT_S = 240.0
STOP_TIMEOUT_S = 20.0
PORT_VARIABLES = ("MKTX_PORT", "MKTX_SANDBOX_PORT", "MKTX_TEMPORAL_PORT", "MKTX_TEMPORAL_UI_PORT")


def _clean_env(**overrides: str) -> dict[str, str]:
    """This environment without any MKTX_ variable (every part embedded), plus overrides."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MKTX_")}
    env.update(PYTHONPATH=str(ROOT), LITELLM_LOCAL_MODEL_COST_MAP="True", **overrides)
    return env


def _mktx(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mktx.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# Settings are validated at start: exit 78 (EX_CONFIG) and the variable named ------------------

TOKEN_ARGS = ("token", "--merchant-id", "m-1", "--user-id", "u-1")


def test_a_bad_port_exits_78_naming_the_variable(tmp_path: Path) -> None:
    done = _mktx(*TOKEN_ARGS, env=_clean_env(MKTX_PORT="notaport"), cwd=tmp_path)
    assert done.returncode == 78
    assert "MKTX_PORT" in done.stderr
    assert done.stdout == ""


def test_production_refuses_development_secrets(tmp_path: Path) -> None:
    env = _clean_env(MKTX_ENV="production", MKTX_JWT_SECRET=DEV_JWT_SECRET)
    done = _mktx(*TOKEN_ARGS, env=env, cwd=tmp_path)
    assert done.returncode == 78
    for name in ("MKTX_JWT_SECRET", "MKTX_ENCRYPTION_KEY", "MKTX_X_CONSUMER_SECRET"):
        assert name in done.stderr


def test_valid_settings_print_a_token(tmp_path: Path) -> None:
    done = _mktx(*TOKEN_ARGS, env=_clean_env(), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count(".") == 2  # header.payload.signature


# The dev stack ------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class Banner:
    api: str
    docs: str
    merchant_id: str
    token: str
    demo_username: str
    demo_token: str
    demo_secret: str

    @classmethod
    def parse(cls, text: str) -> Banner:
        def field(pattern: str) -> re.Match[str]:
            found = re.search(pattern, text, re.MULTILINE)
            assert found, f"{pattern!r} not in the ready banner:\n{text}"
            return found

        demo = field(r"^\s+sandbox user: @(\S+) oauthToken=(\S+) oauthTokenSecret=(\S+)$")
        return cls(
            api=field(r"^\s+api:\s+(\S+)$")[1],
            docs=field(r"^\s+docs:\s+(\S+)$")[1],
            merchant_id=field(r"^\s+merchant id:\s+(\S+)$")[1],
            token=field(r"^\s+token:\s+(\S+)$")[1],
            demo_username=demo[1],
            demo_token=demo[2],
            demo_secret=demo[3],
        )


class DevStack:
    """`mkt-x dev` as a subprocess: its stdout read by a thread, its stderr kept in a file."""

    def __init__(self, env: dict[str, str], cwd: Path, log: Path) -> None:
        self.log = log
        self._lines: queue.Queue[str | None] = queue.Queue()
        with log.open("ab") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "mktx.cli", "dev"],
                env=env,
                cwd=cwd,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def log_tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-40:])

    def wait_ready(self) -> Banner:
        text = ""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while "Ctrl-C stops everything." not in text:
            try:
                line = self._lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"no ready banner in {READY_TIMEOUT_S:.0f} s:\n{self.log_tail()}")
            if line is None:
                pytest.fail(f"mkt-x dev exited ({self.process.wait()}):\n{self.log_tail()}")
            text += line
        return Banner.parse(text)

    def descendants(self) -> list[psutil.Process]:
        return psutil.Process(self.process.pid).children(recursive=True)

    def interrupt(self) -> int:
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=STOP_TIMEOUT_S)

    def kill(self) -> None:
        if self.process.poll() is None:
            for child in self.descendants():
                child.kill()
            self.process.kill()
            self.process.wait()


@contextmanager
def dev_stack(env: dict[str, str], cwd: Path, log: Path) -> Iterator[DevStack]:
    stack = DevStack(env, cwd, log)
    try:
        yield stack
    finally:
        stack.kill()  # only does something when the test failed before stopping it


def _stop_embedded_postgres(pgdata: Path) -> None:
    """After a failed test: a postmaster that outlived `mkt-x dev` gets a fast shutdown."""
    pid_file = pgdata / "postmaster.pid"
    if pid_file.exists():
        pid = int(pid_file.read_text().split()[0])
        if psutil.pid_exists(pid):
            os.kill(pid, signal.SIGINT)


def _workflow_listing_for_merchant(env: dict[str, str], merchant_id: str) -> str:
    temporal = find_executable("temporal")
    assert temporal is not None
    done = subprocess.run(
        [
            temporal,
            "workflow",
            "list",
            "--address",
            f"127.0.0.1:{env['MKTX_TEMPORAL_PORT']}",
            "--query",
            f'MerchantId="{merchant_id}"',
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return done.stdout


def _assert_stopped(stack: DevStack, children: list[psutil.Process], env: dict[str, str]) -> None:
    started = time.monotonic()
    assert stack.interrupt() == 0, stack.log_tail()
    _gone, alive = psutil.wait_procs(
        children, timeout=max(0.1, STOP_TIMEOUT_S - (time.monotonic() - started))
    )
    assert not alive, f"children left running: {[p.pid for p in alive]}"
    busy = [name for name in PORT_VARIABLES if _listening(int(env[name]))]
    assert not busy, f"still listening after Ctrl-C: {busy}"
    pgdata = Path(env["MKTX_DATA_DIR"]) / "pg"
    assert not (pgdata / "postmaster.pid").exists(), "embedded PostgreSQL still running"


@pytest.mark.devstack
def test_dev_stack_serves_stops_and_restarts_with_its_data(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = _clean_env(
        MKTX_DATA_DIR=str(data_dir), **{name: str(_free_port()) for name in PORT_VARIABLES}
    )
    http = httpx.Client(timeout=30, trust_env=False)  # loopback: no proxy
    try:
        with dev_stack(env, tmp_path, tmp_path / "dev-1.log") as first:
            banner = first.wait_ready()
            root = banner.api.removesuffix(BASE_PATH)
            assert http.get(f"{root}/readyz").status_code == 200
            assert http.get(banner.docs).status_code == 200
            ui = http.get(f"http://127.0.0.1:{env['MKTX_TEMPORAL_UI_PORT']}/")
            assert ui.status_code == 200

            auth = {"Authorization": f"Bearer {banner.token}"}
            listed = http.get(f"{banner.api}/accounts", headers=auth)
            assert listed.status_code == 200, listed.text
            assert listed.json()["success"] is True
            assert listed.json()["data"] == []

            connected = http.post(
                f"{banner.api}/accounts",
                headers=auth,
                json={"oauthToken": banner.demo_token, "oauthTokenSecret": banner.demo_secret},
            )
            assert connected.status_code in (200, 201), connected.text
            assert connected.json()["success"] is True
            account = connected.json()["data"]
            assert {
                "id",
                "merchantId",
                "twitterUserId",
                "username",
                "displayName",
                "status",
                "connectedAt",
            } <= set(account)
            assert account["merchantId"] == banner.merchant_id
            assert account["username"] == banner.demo_username
            assert banner.demo_token not in connected.text
            assert banner.demo_secret not in connected.text

            # The connect workflow is visible to operators, filtered by merchant.
            deadline = time.monotonic() + 30
            while account_connect_id(account["id"]) not in (
                listing := _workflow_listing_for_merchant(env, banner.merchant_id)
            ):
                assert time.monotonic() < deadline, f"workflow not listed:\n{listing}"
                time.sleep(1)

            _assert_stopped(first, first.descendants(), env)

        with dev_stack(env, tmp_path, tmp_path / "dev-2.log") as second:
            again = second.wait_ready()
            assert again.merchant_id == banner.merchant_id
            listed = http.get(
                f"{again.api}/accounts", headers={"Authorization": f"Bearer {again.token}"}
            )
            assert listed.status_code == 200, listed.text
            assert [a["id"] for a in listed.json()["data"]] == [account["id"]]
            _assert_stopped(second, second.descendants(), env)
    finally:
        http.close()
        _stop_embedded_postgres(data_dir / "pg")
