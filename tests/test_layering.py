"""The import contracts of pyproject.toml catch what they are written for, and the tree keeps them.

`make lint` runs `lint-imports` on `[tool.importlinter]` (the picture is docs/architecture.md).
Each case below lays a throwaway tree of the same top-level packages in a temporary folder, adds
one deliberately bad (or deliberately allowed) import, runs `lint-imports` on a copy of the real
pyproject.toml there and checks which contracts break and that the report names the import: a
contract that was loosened, or that silently matches nothing, fails here. Then the real tree must
keep every contract, and no import circle may run through any modules: import-linter's
`acyclic_siblings` sees circles between the children of one package; a circle that crosses
top-level packages is found here, with its path."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grimp
import pytest

REPO = Path(__file__).resolve().parent.parent
PYPROJECT = REPO / "pyproject.toml"
CONFIG = tomllib.loads(PYPROJECT.read_text())["tool"]["importlinter"]
ROOT_PACKAGES: list[str] = CONFIG["root_packages"]
CONTRACT_NAMES: dict[str, str] = {c["id"]: c["name"] for c in CONFIG["contracts"]}
IMPORTED = re.compile(r"^\s*(?:from\s+([\w.]+)\s+import|import\s+([\w.]+))", re.MULTILINE)


@dataclass(frozen=True)
class Case:
    """One throwaway tree: module name -> source, the contracts it must break, and the evidence
    (a line of the report) each broken contract must show."""

    modules: Mapping[str, str]
    broken: Mapping[str, str] = field(default_factory=dict)


CASES: dict[str, Case] = {
    "the bare tree keeps every contract": Case({}),
    # Forbidden.
    "a workflow imports a service": Case(
        {"workflows.campaign": "import services.campaigns\n"},
        {
            "layers": "workflows.campaign -> services.campaigns (l.1)",
            "workflows": "workflows.campaign -> services.campaigns (l.1)",
        },
    ),
    "a workflow imports a table": Case(
        {"workflows.campaign": "from models.campaign import Campaign\n"},
        {"workflows": "workflows.campaign -> models.campaign (l.1)"},
    ),
    "a workflow imports an I/O library": Case(
        {"workflows.campaign": "import sqlalchemy\n"},
        {"workflows": "workflows.campaign -> sqlalchemy (l.1)"},
    ),
    "a workflow reads the settings": Case(
        {"workflows.campaign": "from mktx.settings import Settings\n"},
        {"workflows": "workflows.campaign -> mktx.settings (l.1)"},
    ),
    "a workflow imports an activity": Case(
        {"workflows.campaign": "from activities.campaign import CampaignActivities\n"},
        {
            "layers": "workflows.campaign -> activities.campaign (l.1)",
            "workflows": "workflows.campaign -> activities.campaign (l.1)",
        },
    ),
    "a contract imports workflows.ids": Case(
        {"workflows.contracts.campaigns": "from workflows.ids import TASK_QUEUE\n"},
        {"contracts": "workflows.contracts.campaigns -> workflows.ids (l.1)"},
    ),
    "a service imports the api": Case(
        {"services.campaigns": "from api.deps import SessionDep\n"},
        {"layers": "services.campaigns -> api.deps (l.1)"},
    ),
    "a service imports an activity": Case(
        {"services.messaging": "import activities.messaging\n"},
        {"layers": "services.messaging -> activities.messaging (l.1)"},
    ),
    "an activity imports the api": Case(
        {"activities.campaign": "import api.errors\n"},
        {"layers": "activities.campaign -> api.errors (l.1)"},
    ),
    "a model imports a service": Case(
        {"models.campaign": "import services.core\n"},
        {"layers": "models.campaign -> services.core (l.1)"},
    ),
    "a model imports a workflow": Case(
        {"models.campaign": "from workflows.campaign import CampaignWorkflow\n"},
        {"layers": "models.campaign -> workflows.campaign (l.1)"},
    ),
    "an integration imports a table": Case(
        {"integrations.x": "from models.account import Account\n"},
        {"layers": "integrations.x -> models.account (l.1)"},
    ),
    "the settings import the product": Case(
        {"mktx.settings": "import services.core\n"},
        {"foundation": "mktx.settings -> services.core (l.1)"},
    ),
    "the Temporal client imports a service": Case(
        {"mktx.temporal": "import services.campaigns\n"},
        {"temporal-client": "mktx.temporal -> services.campaigns (l.1)"},
    ),
    "the tracing setup imports a service": Case(
        {"mktx.tracing": "import services.ingestion\n"},
        {"tracing": "mktx.tracing -> services.ingestion (l.1)"},
    ),
    "the sandbox imports the product": Case(
        {"sandbox.x_api": "from services.ingestion import sign\n"},
        {"sandbox": "sandbox.x_api -> services.ingestion (l.1)"},
    ),
    "a migration imports a service": Case(
        {"migrations.env": "import services.core\n"},
        {"migrations": "migrations.env -> services.core (l.1)"},
    ),
    "the api imports the sandbox": Case(
        {"api.app": "from sandbox.server import serve\n"},
        {"composition-roots": "api.app -> sandbox.server (l.1)"},
    ),
    "two domains import each other": Case(
        {
            "services.campaigns": "import services.messaging\n",
            "services.messaging": "import services.campaigns\n",
        },
        {"acyclic": "No cycles are allowed in services."},
    ),
    # Allowed.
    "a model reuses a contract's enum": Case(
        {"models.campaign": "from workflows.contracts.campaigns import CampaignStatus\n"}
    ),
    "the api queries a workflow by its method": Case(
        {"api.routes.campaigns": "from workflows.campaign import CampaignWorkflow\n"}
    ),
    "a service starts a workflow": Case(
        {"services.campaigns": "from workflows.campaign import CampaignWorkflow\n"}
    ),
    "an activity sends through a service": Case(
        {"activities.campaign": "from services.messaging import Delivery\nimport integrations.x\n"}
    ),
    "ingestion carries a trace across its hand-off": Case(
        {"services.ingestion": "from mktx import tracing\n"}
    ),
    "the sandbox shares the dev constants": Case(
        {"sandbox.app": "from mktx.settings import DEV_X_CONSUMER_KEY\nimport mktx.logs\n"}
    ),
    "the command line wires everything": Case(
        {"mktx.cli": "import api.app\nimport sandbox.server\nimport migrations.runner\n"}
    ),
}


def _named_modules() -> set[str]:
    """Every project module the contracts name (they must exist, or lint-imports refuses)."""
    names: set[str] = set()
    for contract in CONFIG["contracts"]:
        for key in ("source_modules", "forbidden_modules", "ancestors", "containers"):
            names.update(contract.get(key, []))
        for layer in contract.get("layers", []):
            names.update(part.strip().strip("()") for part in re.split(r"[|:]", layer))
    return {n for n in names if "*" not in n and n.split(".")[0] in ROOT_PACKAGES}


def _lay_tree(root: Path, modules: Mapping[str, str]) -> None:
    """Every module a package (a folder with an __init__.py), so any name can also be a parent."""
    wanted = set(ROOT_PACKAGES) | _named_modules() | set(modules)
    for source in modules.values():
        for match in IMPORTED.finditer(source):
            wanted.add(match.group(1) or match.group(2))
    for name in sorted(wanted):
        if name.split(".")[0] not in ROOT_PACKAGES:
            continue
        parts = name.split(".")
        for depth in range(1, len(parts) + 1):
            package = root.joinpath(*parts[:depth])
            package.mkdir(exist_ok=True)
            (package / "__init__.py").touch()
        (root.joinpath(*parts) / "__init__.py").write_text(modules.get(name, ""))
    shutil.copy(PYPROJECT, root / "pyproject.toml")


# lint-imports on each tree in turn, through the function its console script calls, in one
# process (an interpreter per tree would cost more than all the checks together). It reads the
# pyproject.toml of its working directory and puts that directory first on sys.path, so the
# throwaway tree shadows the real packages.
DRIVER = """
import contextlib, importlib, io, json, os, sys
from importlinter import cli
path = list(sys.path)
reports = []
for tree in sys.argv[1:]:
    os.chdir(tree)
    sys.path[:] = path
    sys.path_importer_cache.clear()
    importlib.invalidate_caches()
    output = io.StringIO()
    with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
        returncode = cli.lint_imports(no_cache=True, no_logo=True)
    reports.append({"returncode": returncode, "output": output.getvalue()})
print(json.dumps(reports))
"""


def _lint_trees(trees: list[Path]) -> list[dict[str, Any]]:
    env = {**os.environ, "COLUMNS": "1000", "NO_COLOR": "1"}
    env.pop("PYTHONPATH", None)
    result = subprocess.run(
        [sys.executable, "-c", DRIVER, *map(str, trees)],
        cwd=trees[0],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    reports: list[dict[str, Any]] = json.loads(result.stdout)
    return reports


@dataclass(frozen=True)
class Report:
    returncode: int
    output: str

    def status(self, contract_id: str) -> str:
        name = re.escape(CONTRACT_NAMES[contract_id])
        match = re.search(rf"^{name} (KEPT|BROKEN)\b", self.output, re.MULTILINE)
        assert match, f"{contract_id!r} is not in the report:\n{self.output}"
        return match.group(1)

    def broken(self) -> set[str]:
        return {c for c in CONTRACT_NAMES if self.status(c) == "BROKEN"}

    def section(self, contract_id: str) -> str:
        """The report's explanation of one broken contract: from its header to the next one's."""
        _, _, details = self.output.partition("Broken contracts")
        name = CONTRACT_NAMES[contract_id]
        _, header, rest = details.partition(f"\n{name}\n")
        assert header, f"no section for {contract_id!r}:\n{self.output}"
        headers = [f"\n{n}\n" for n in CONTRACT_NAMES.values() if n != name]
        ends = [rest.find(h) for h in headers if h in rest]
        return rest[: min(ends)] if ends else rest


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Report]:
    trees = []
    for number, case in enumerate(CASES.values()):
        trees.append(tmp_path_factory.mktemp(f"layering{number}"))
        _lay_tree(trees[-1], case.modules)
    return {
        title: Report(report["returncode"], report["output"])
        for title, report in zip(CASES, _lint_trees(trees), strict=True)
    }


def test_every_contract_has_a_case_that_breaks_it() -> None:
    tested = {c for case in CASES.values() for c in case.broken}
    assert tested == set(CONTRACT_NAMES), f"untested contracts: {set(CONTRACT_NAMES) - tested}"


@pytest.mark.parametrize("title", CASES)
def test_contract_catches(title: str, reports: dict[str, Report]) -> None:
    case, report = CASES[title], reports[title]
    assert report.broken() == set(case.broken), report.output
    assert report.returncode == (1 if case.broken else 0), report.output
    for contract_id, evidence in case.broken.items():
        assert evidence in report.section(contract_id), report.output


def test_the_tree_keeps_every_contract() -> None:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports"), "--no-cache", "--no-logo"],
        cwd=REPO,
        env={**os.environ, "COLUMNS": "1000", "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _import_circles(graph: grimp.ImportGraph) -> list[list[str]]:
    """One shortest circle per strongly connected set of modules (Tarjan, iteratively)."""
    successors = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []
    for start in sorted(successors):
        if start in index:
            continue
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        work = [(start, iter(successors[start]))]
        while work:
            module, pending = work[-1]
            for imported in pending:
                if imported not in index:
                    index[imported] = low[imported] = len(index)
                    stack.append(imported)
                    on_stack.add(imported)
                    work.append((imported, iter(successors[imported])))
                    break
                if imported in on_stack:
                    low[module] = min(low[module], index[imported])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[module])
                if low[module] == index[module]:
                    component: set[str] = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == module:
                            break
                    if len(component) > 1:
                        components.append(component)
    return [_shortest_circle(min(c), c, successors) for c in components]


def _shortest_circle(start: str, within: set[str], successors: dict[str, list[str]]) -> list[str]:
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following: list[str] = []
        for module in frontier:
            for imported in successors[module]:
                if imported == start:
                    path = [module]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return [*reversed(path), start]
                if imported in within and imported not in came_from:
                    came_from[imported] = module
                    following.append(imported)
        frontier = following
    raise AssertionError(f"{start} is in no circle")


def _describe(graph: grimp.ImportGraph, circle: list[str]) -> str:
    steps = []
    for importer, imported in zip(circle, circle[1:], strict=False):
        lines = sorted(
            d["line_number"] for d in graph.get_import_details(importer=importer, imported=imported)
        )
        steps.append(f"{importer} -> {imported} (l.{', l.'.join(map(str, lines))})")
    return "\n    ".join(steps)


def test_no_import_circle_anywhere() -> None:
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))  # bench and tests are not installed packages
    graph = grimp.build_graph(*ROOT_PACKAGES, cache_dir=None)
    circles = [_describe(graph, circle) for circle in _import_circles(graph)]
    assert not circles, "import circles:\n-   " + "\n-   ".join(circles)


def test_a_circle_is_reported_with_its_path() -> None:
    graph = grimp.ImportGraph()
    for importer, imported, line in [
        ("activities.listeners", "services.inbox.listeners", 17),
        ("services.inbox.listeners", "workflows.contact_reply", 30),
        ("workflows.contact_reply", "activities.listeners", 15),
        ("workflows.contact_reply", "workflows.ids", 16),
    ]:
        graph.add_import(
            importer=importer, imported=imported, line_number=line, line_contents="import"
        )
    assert [_describe(graph, circle) for circle in _import_circles(graph)] == [
        "activities.listeners -> services.inbox.listeners (l.17)\n"
        "    services.inbox.listeners -> workflows.contact_reply (l.30)\n"
        "    workflows.contact_reply -> activities.listeners (l.15)"
    ]
