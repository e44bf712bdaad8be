"""Carrying out, right after their answers and in batches, what deliveries owe Temporal.

A delivery is answered first; what its events recorded (their follow-ups, the DMs they queued)
is then handed to the process's relay, which carries out everything handed to it since its last
batch together (`run_follow_up`): the triggers decide for the whole batch at once, Temporal is
called CONCURRENCY times at a time, and one transaction marks the batch. Under a flood of
follows the deliveries thus share those costs instead of each paying them, and a single batch
at a time leaves the event loop to the answers, which X is waiting for.

Answers come first: while deliveries are being answered, a batch waits (up to MAX_DEFER after
its oldest follow-up was handed over), so that a burst is answered at the speed of ingestion
alone and the workflows it starts follow a moment later. A flood (FLOOD_ANSWERS answers or more
within FLOOD_WINDOW: X delivering a burst, not a conversation) holds the batches until it
passes, up to FLOOD_DEFER: each workflow it would start costs the worker and Temporal some
40 times what its answer costs, and on shared cores that work would slow the answers X is
waiting for (and retries when they are late) by as much. Under a flood longer than that, the
batches go one after the other all the same: follow-ups are late by FLOOD_DEFER at most, and
by MAX_DEFER at most outside floods (a customer's DM reaches the assistant at once).

Nothing here is the only copy: every follow-up is a row recorded with its event, which the
maintenance schedule carries out when this process stops before it could (or holds it past
the row's hold: carrying one out twice is harmless, services/ingestion/dispatch.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress

from mktx import tracing
from services.ingestion.follow_up import FollowUp
from services.ingestion.retries import describe_failure

logger = logging.getLogger(__name__)

# Deliveries whose follow-ups are carried out in one batch, at most.
BATCH = 200
# How long a batch may wait for the answers in flight to be made.
MAX_DEFER = 1.0
# A flood: this many answers made within FLOOD_WINDOW seconds (100/s; a conversation, a test or
# a steady stream of events makes far fewer). Its batches wait for it to pass, up to FLOOD_DEFER.
FLOOD_ANSWERS = 20
FLOOD_WINDOW = 0.2
FLOOD_DEFER = 5.0


class FollowUpRelay:
    """Batches the follow-ups handed to it and carries them out one batch at a time with
    `carry_out` (which must not raise: what it cannot do, it leaves to the schedule)."""

    def __init__(
        self,
        carry_out: Callable[[FollowUp], Awaitable[None]],
        *,
        batch: int = BATCH,
        max_defer: float = MAX_DEFER,
        flood_defer: float = FLOOD_DEFER,
    ) -> None:
        self._carry_out = carry_out
        self._batch = batch
        self._max_defer = max_defer
        self._flood_defer = max(flood_defer, max_defer)
        # When the last FLOOD_ANSWERS answers were made (a flood: the oldest is recent).
        self._answered: deque[float] = deque(maxlen=FLOOD_ANSWERS)
        self._pending: deque[tuple[float, FollowUp]] = deque()  # (handed over at, follow-up)
        self._task: asyncio.Task[None] | None = None
        self._answering = 0
        self._quiet = asyncio.Event()
        self._quiet.set()

    @contextmanager
    def answering(self) -> Iterator[None]:
        """Around the making of an answer: batches wait for the answers in flight."""
        self._answering += 1
        self._quiet.clear()
        try:
            yield
        finally:
            self._answering -= 1
            self._answered.append(time.monotonic())
            if self._answering == 0:
                self._quiet.set()

    def _flooded(self, now: float) -> bool:
        answered = self._answered
        return len(answered) == answered.maxlen and now - answered[0] < FLOOD_WINDOW

    def submit(self, follow_up: FollowUp) -> None:
        """Hand over a delivery's follow-ups (from the event loop, after its answer)."""
        if not follow_up:
            return
        follow_up.keep_trace()  # this delivery's trace goes on with each of its items
        loop = asyncio.get_running_loop()
        self._pending.append((loop.time(), follow_up))
        if self._task is None or self._task.done():
            with tracing.detached():  # the task would keep the trace of this delivery only
                self._task = loop.create_task(self._drain())

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def drain(self, timeout: float | None = None) -> bool:
        """Wait until everything handed over is carried out (shutdown); False: the time ran
        out first (what is left is the schedule's)."""
        task = self._task
        if task is None or task.done():
            return True
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout)
        except TimeoutError:
            return False
        return True

    async def _drain(self) -> None:
        while self._pending:
            await self._turn()
            batch = FollowUp()
            while self._pending and len(batch.recorded) + len(batch.deliveries) < self._batch:
                batch.extend(self._pending.popleft()[1])
            try:
                await self._carry_out(batch)
            except Exception as exc:  # not expected: the rows wait for the schedule
                logger.error(
                    "ingestion.relay_failed",
                    extra={"follow_ups": len(batch.recorded), "error": describe_failure(exc)},
                )

    async def _turn(self) -> None:
        """Until the next batch may go: no answer in flight and no flood, or its oldest
        follow-up has waited its bound (MAX_DEFER; FLOOD_DEFER while a flood goes on)."""
        loop = asyncio.get_running_loop()
        oldest = self._pending[0][0]
        while True:
            flooded = self._flooded(time.monotonic())
            left = oldest + (self._flood_defer if flooded else self._max_defer) - loop.time()
            if left <= 0 or (self._quiet.is_set() and not flooded):
                return
            with suppress(TimeoutError):
                if flooded:  # looked at again as the flood goes on or stops
                    await asyncio.sleep(min(left, FLOOD_WINDOW))
                else:
                    await asyncio.wait_for(self._quiet.wait(), left)
