"""Placeholder: filled in by the inbox work."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from activities.deps import WorkerDeps


def build(deps: WorkerDeps) -> list[Callable[..., Any]]:
    return []
