"""Run every benchmark module in this package that defines `main()` (sync or async)."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import pkgutil
import sys

import bench


def run_all() -> int:
    failures = 0
    ran = 0
    for module_info in sorted(pkgutil.iter_modules(bench.__path__), key=lambda m: m.name):
        if module_info.name.startswith("_"):
            continue
        module = importlib.import_module(f"bench.{module_info.name}")
        main = getattr(module, "main", None)
        if not callable(main):
            continue
        ran += 1
        print(f"== bench.{module_info.name}", flush=True)
        result = asyncio.run(main()) if inspect.iscoroutinefunction(main) else main()
        if isinstance(result, int) and result != 0:
            failures += 1
    if ran == 0:
        print("no benchmarks yet")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(run_all())
