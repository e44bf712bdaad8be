"""Group commit: deliveries that arrive together are applied in one transaction.

A webhook event is one statement (services/ingestion/sql.py). Sent one per transaction, each
pays its own round trip, BEGIN/COMMIT and WAL flush, which is most of what an event costs
PostgreSQL and psycopg. Here concurrent deliveries queue their planned statements; a
flusher takes whatever has queued (up to `max_batch`), pipelines the statements as one
transaction, and answers every waiting delivery once it committed. A lone delivery is flushed at
once: there is no waiting for company, so a quiet service answers as fast as before.

Each delivery still answers only after the commit that holds its event, so "acknowledged"
keeps meaning "stored". When a batch fails (a deadlock, a contact created concurrently by
another process, anything), nothing of it is committed and each of its deliveries is told to
apply its events alone, where the per-event retries and the failed-event store take over.

Statements of a batch are ordered by the X user they touch, so batches running at once (more
flushers, or other API processes) lock contacts and conversations in the same order and do
not deadlock each other.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncRawCursor

from services.ingestion.apply import Plan, fetch_one
from services.ingestion.connections import IngestionConnections

logger = logging.getLogger(__name__)

# Batches in flight at once per process (each holds one connection). One keeps batches
# largest, and measured best on 2 cores (bench/webhook_ingestion.py: 4,300-4,500 events/s with
# one, 3,300-3,400 with two); more API processes add flushers.
FLUSHERS = 1
MAX_BATCH = 64


class BatchFailed(Exception):
    """The batch holding these events was rolled back: apply them one by one."""


@dataclass(eq=False, slots=True)
class _Pending:
    plans: Sequence[Plan]
    done: asyncio.Future[list[Any]]


class GroupCommit:
    def __init__(
        self,
        connections: IngestionConnections,
        *,
        flushers: int = FLUSHERS,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self.connections = connections
        self._flushers = flushers
        self._max_batch = max_batch
        self._queue: deque[_Pending] = deque()
        self._running: set[asyncio.Task[None]] = set()

    async def apply(self, plans: Sequence[Plan]) -> list[Any]:
        """Run the plans' ingest statements and commit; returns their rows in order. Raises
        BatchFailed when the transaction holding them was rolled back."""
        if not plans:
            return []
        pending = _Pending(plans, asyncio.get_running_loop().create_future())
        self._queue.append(pending)
        if len(self._running) < self._flushers:
            task = asyncio.create_task(self._flush())
            self._running.add(task)
            task.add_done_callback(self._running.discard)
        try:
            return await asyncio.shield(pending.done)  # a delivery cut off leaves its batch whole
        except asyncio.CancelledError:
            pending.done.add_done_callback(_retrieve)  # nobody else will read its outcome
            raise

    async def aclose(self) -> None:
        """Wait for the batches in flight (their deliveries are owed an answer), then give the
        kept connections back."""
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
        await self.connections.aclose()

    async def _flush(self) -> None:
        while self._queue:
            batch = self._take()
            try:
                rows = await self._run([plan for pending in batch for plan in pending.plans])
            except BaseException as exc:
                failure = BatchFailed(f"{type(exc).__name__}: {exc}")
                for pending in batch:
                    if not pending.done.done():
                        pending.done.set_exception(failure)
                if len(batch) > 1 or not isinstance(exc, Exception):
                    logger.info("webhook.batch_rolled_back", extra={"error": str(failure)})
                if not isinstance(exc, Exception):
                    raise
                continue
            start = 0
            for pending in batch:
                end = start + len(pending.plans)
                if not pending.done.done():
                    pending.done.set_result(rows[start:end])
                start = end

    def _take(self) -> list[_Pending]:
        batch: list[_Pending] = []
        size = 0
        while self._queue and (not batch or size + len(self._queue[0].plans) <= self._max_batch):
            pending = self._queue.popleft()
            batch.append(pending)
            size += len(pending.plans)
        return batch

    async def _run(self, plans: list[Plan]) -> list[Any]:
        if len(plans) == 1:  # alone: one statement in autocommit is one round trip, no more
            async with self.connections.connect() as connection:
                return [
                    await fetch_one(connection.driver, plans[0].statement.ingest, plans[0].params)
                ]
        order = sorted(range(len(plans)), key=lambda i: plans[i].lock_key)
        rows: list[Any] = [None] * len(plans)
        async with self.connections.connect() as connection:
            # The connection is in autocommit: everything sent before the pipeline's sync is one
            # implicit transaction, committed by the sync (or rolled back whole on an error),
            # so the batch costs one round trip and no BEGIN/COMMIT of its own.
            driver = connection.driver
            async with driver.pipeline() as pipeline:
                cursors = []
                for i in order:
                    statement, cursor = plans[i].statement.ingest, AsyncRawCursor(driver)
                    await cursor.execute(
                        statement.text, statement.args(plans[i].params), prepare=True
                    )
                    cursors.append((i, cursor))
                await pipeline.sync()
                for i, cursor in cursors:
                    rows[i] = await cursor.fetchone()
                    await cursor.close()
        return rows


def _retrieve(done: asyncio.Future[list[Any]]) -> None:
    if not done.cancelled():
        done.exception()
