"""Carrying out starts Temporal still owes, one item at a time: the shared loop of the
maintenance schedule's "owed starts" step (campaign runs, account workflows)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from workflows.contracts.owed_starts import StartsReport

logger = logging.getLogger(__name__)

T = TypeVar("T")


async def start_each(
    items: Sequence[T],
    start: Callable[[T], Awaitable[bool]],
    *,
    event: str,
    describe: Callable[[T], dict[str, Any]],
) -> StartsReport:
    """`start` each item (True: started now; False: Temporal had it already). One failing
    waits for the next pass; the others go on. Logs `<event>.owed_start_failed` and
    `<event>.start_recovered`."""
    report = StartsReport(examined=len(items))
    for item in items:
        extra = describe(item)
        try:
            started = await start(item)
        except Exception as exc:  # this one waits for the next pass; the others go on
            report.errors += 1
            logger.warning(
                f"{event}.owed_start_failed",
                extra={**extra, "error": f"{type(exc).__name__}: {exc}"},
            )
            continue
        if started:
            report.started += 1
            logger.warning(f"{event}.start_recovered", extra=extra)
        else:
            report.existing += 1
    return report
