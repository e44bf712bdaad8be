"""Child processes of `mkt-x dev`: start, watch, wait for readiness, stop in order."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

logger = logging.getLogger("mktx.dev")

STOP_TIMEOUT_SECONDS = 10.0


class ChildExited(Exception):
    """A child of the dev stack ended while the stack was meant to be running."""

    def __init__(self, name: str, returncode: int) -> None:
        super().__init__(f"{name} exited unexpectedly with code {returncode}")
        self.name = name
        self.returncode = returncode


class StackError(Exception):
    """The dev stack could not be brought up; the message says which part and why."""


def _die_with_parent() -> None:
    # Linux only: if `mkt-x dev` itself is killed (-9), the kernel sends SIGTERM to its children
    # so no orphan keeps a port. Children run in their own session, so the terminal's Ctrl-C
    # reaches only the parent, which then stops them in order.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]

    def exited(self) -> int | None:
        return self.process.poll()

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
        """SIGTERM the child's process group, then SIGKILL it if it is still there after timeout."""
        if self.process.poll() is not None:
            return
        self._signal_group(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            logger.warning("dev.child_killed", extra={"child": self.name, "after_s": timeout})
            self._signal_group(signal.SIGKILL)
            self.process.wait()
        code = self.process.returncode
        logger.info("dev.child_stopped", extra={"child": self.name, "code": code})

    def _signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)


class Stack:
    """The children started so far, stopped in reverse order of start."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = dict(env)
        self.children: list[Child] = []

    def start(self, name: str, argv: Sequence[str], *, output: IO[bytes] | None = None) -> Child:
        """Start a long-running child; it belongs to the stack until stop_all()."""
        child = self._spawn(name, argv, output)
        self.children.append(child)
        return child

    def _spawn(self, name: str, argv: Sequence[str], output: IO[bytes] | None = None) -> Child:
        logger.info("dev.child_starting", extra={"child": name, "argv": " ".join(argv)})
        process = subprocess.Popen(
            list(argv),
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT if output is not None else None,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        return Child(name, process)

    def check_alive(self) -> None:
        for child in self.children:
            code = child.exited()
            if code is not None:
                raise ChildExited(child.name, code)

    def run_to_completion(self, name: str, argv: Sequence[str], timeout: float) -> None:
        """Run a one-shot child (migrations) while watching the long-running ones."""
        child = self._spawn(name, argv)
        deadline = time.monotonic() + timeout
        try:
            while (code := child.exited()) is None:
                self.check_alive()
                if time.monotonic() > deadline:
                    raise StackError(f"{name} did not finish within {timeout:.0f} s")
                time.sleep(0.2)
        finally:
            child.stop()
        if code != 0:
            raise StackError(f"{name} failed with exit code {code} (its log is above)")

    def stop_all(self) -> None:
        for child in reversed(self.children):
            child.stop()
        self.children.clear()


def wait_until(
    what: str, ready: Callable[[], bool], stack: Stack, timeout: float, interval: float = 0.25
) -> None:
    """Poll `ready` until it answers True, failing fast if a child dies meanwhile."""
    deadline = time.monotonic() + timeout
    while not ready():
        stack.check_alive()
        if time.monotonic() > deadline:
            raise StackError(f"{what} was not ready within {timeout:.0f} s")
        time.sleep(interval)
    logger.info("dev.ready", extra={"part": what})


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


# Loopback probes never go through an HTTP proxy configured in the environment.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_status(url: str) -> int | None:
    try:
        with _DIRECT.open(url, timeout=2) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, ValueError):
        return None


def find_executable(name: str) -> str | None:
    """The binary installed next to this interpreter (the venv's bin/), else on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(name)


def connectable_host(host: str) -> str:
    """Where a local client reaches a server bound to `host` (0.0.0.0 means every interface)."""
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host
