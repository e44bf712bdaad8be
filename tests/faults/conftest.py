"""The fault matrix runs only when asked for (`make test-faults`, i.e. `pytest -m faults`, or a
path under tests/faults/ named on the command line): each test starts a whole stack of its own
and breaks it, which `make test` has no time for.

Shared here: the migrated PostgreSQL cluster every test copies, and a stack per test."""

from __future__ import annotations

import resource
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.faults.processes import init_template
from tests.faults.stack import FaultStack, fault_stack

HERE = Path(__file__).resolve().parent


def _asked_for(config: pytest.Config) -> bool:
    if "faults" in (config.getoption("markexpr") or ""):
        return True
    named = [Path(arg.split("::")[0]).resolve() for arg in config.args]
    return any(path == HERE or HERE in path.parents for path in named)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _asked_for(config):
        return
    chosen = [item for item in items if item.get_closest_marker("faults") is None]
    left_out = [item for item in items if item.get_closest_marker("faults") is not None]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = chosen


@pytest.fixture(scope="session")
def pg_dirs() -> Iterator[tuple[Path, Path]]:
    """(template cluster, directory for the tests' copies), outside pytest's tmp_path: with
    the tests run as root, PostgreSQL runs as another user, who must reach its directory."""
    base = Path(tempfile.mkdtemp(prefix="mktx-faults-"))
    base.chmod(0o755)
    try:
        template = base / "template"
        init_template(template)
        yield template, base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _cpu_seconds() -> float:
    """CPU of this process (the test, its load generator, the sandbox) and of its children
    that have ended (worker, API and Temporal processes, each waited for once stopped)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    ended = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + ended.ru_utime + ended.ru_stime


@pytest.fixture
async def stack(
    pg_dirs: tuple[Path, Path], tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[FaultStack]:
    """A stack of the test's own. Its worker's maintenance schedule runs every 10 s (the
    least it may): what it carries out after a fault is then seen within a test's minute.
    What the test cost — wall seconds and the CPU seconds of every process of its stack — is
    kept for the summary: on a shared machine the wall time says little on its own."""
    template, base = pg_dirs
    started, cpu = time.monotonic(), _cpu_seconds()
    async with fault_stack(template, base, tmp_path, maintenance_seconds=10) as running:
        yield running
        parts = running.cpu_by_part()
    used = _cpu_seconds() - cpu + running.postgres.cpu_used
    request.node.user_properties += [
        ("wall_s", time.monotonic() - started),
        ("cpu_s", used),
        ("faults", running.faults),
        ("cpu_by_part", parts),
    ]


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The matrix as it ran: each test's outcome, wall and CPU seconds, the faults done (kept
    by the fixture at its teardown, so read from the teardown's report)."""
    outcomes: dict[str, str] = {}
    costs: dict[str, dict[str, Any]] = {}
    for reports in terminalreporter.stats.values():
        for report in reports:
            if not hasattr(report, "when"):
                continue
            if report.when == "call" or (report.when == "setup" and report.failed):
                outcomes[report.nodeid] = report.outcome
            if report.when == "teardown" and dict(report.user_properties).get("wall_s"):
                costs[report.nodeid] = dict(report.user_properties)
    if not costs:
        return
    terminalreporter.section("fault matrix")
    for nodeid, cost in costs.items():
        terminalreporter.line(
            f"{nodeid.split('::')[-1]:<58} {outcomes.get(nodeid, '?'):<7} "
            f"wall {cost['wall_s']:5.1f}s  cpu {cost['cpu_s']:5.1f}s  {cost['faults']}"
            f"  {cost['cpu_by_part']}"
        )
