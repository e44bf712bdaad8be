"""What the worker does before it polls: the workflows' bytecode is written, so that the
sandbox, which imports a workflow's module afresh for every workflow it starts, loads it
instead of compiling the source each time (where PYTHONDONTWRITEBYTECODE is set and nothing
compiled the checkout, as on this machine)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import workflows.flow
from worker import compile_workflows


def test_the_worker_writes_the_workflows_bytecode() -> None:
    source = Path(workflows.flow.__file__)
    cached = Path(importlib.util.cache_from_source(str(source)))
    cached.unlink(missing_ok=True)

    compile_workflows()

    assert cached.is_file()
    assert cached.stat().st_mtime >= source.stat().st_mtime
