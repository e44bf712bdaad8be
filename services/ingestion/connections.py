"""Database connections for webhook ingestion: a few kept checked out between deliveries.

An event is one short statement, so the pool's per-checkout liveness ping (one more round trip
and its CPU) and the switch in and out of autocommit would cost a large share of the event
itself. Connections kept here skip both: they stay in autocommit while kept, with the psycopg
connection under them at hand. A connection that saw any error is dropped (and all kept ones
when the server went away; the caller retries on a fresh one); connections unused for
`max_idle` seconds go back to the pool, so a quiet process holds none.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection as DriverConnection
from psycopg import OperationalError
from sqlalchemy.exc import OperationalError as SAOperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestConnection:
    """A pooled connection lent to ingestion, in autocommit: each statement is its own
    transaction unless the caller opens one (`transaction()`)."""

    pool: AsyncConnection  # SQLAlchemy's, for an ORM session when one is needed
    driver: DriverConnection[Any]

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """Leave autocommit for a transaction run through SQLAlchemy (committed by the caller)."""
        await self.driver.set_autocommit(False)
        try:
            yield self.pool
        finally:
            if not self.driver.closed:
                await self.driver.set_autocommit(True)


class IngestionConnections:
    def __init__(self, engine: AsyncEngine, size: int, max_idle: float = 5.0) -> None:
        # At most `size` deliveries hold a connection at once: a burst waits here rather than
        # opening overflow connections (opened and closed per checkout: far dearer than a
        # short wait), and leaves the rest of the pool to the rest of the API.
        self._engine = engine
        self._slots = asyncio.Semaphore(size)
        self._idle: list[tuple[IngestConnection, float]] = []  # most recently used last
        self._max_idle = max_idle
        self._sweep: asyncio.TimerHandle | None = None

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[IngestConnection]:
        async with self._slots:
            connection = self._idle.pop()[0] if self._idle else await self._lend()
            try:
                yield connection
            except BaseException as exc:
                await _give_back(connection)
                if isinstance(exc, OperationalError | SAOperationalError):
                    await self.aclose()  # the server went away: the others are as dead
                raise
            self._idle.append((connection, time.monotonic()))
            self._schedule_sweep()

    async def aclose(self) -> None:
        """Give every kept connection back to the pool."""
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        idle, self._idle = self._idle, []
        for connection, _ in idle:
            await _give_back(connection)

    async def _lend(self) -> IngestConnection:
        pool = await self._engine.connect()
        raw = await pool.get_raw_connection()
        driver: DriverConnection[Any] = raw.driver_connection  # type: ignore[assignment]
        await driver.set_autocommit(True)
        return IngestConnection(pool, driver)

    def _schedule_sweep(self) -> None:
        if self._sweep is None:
            loop = asyncio.get_running_loop()
            self._sweep = loop.call_later(self._max_idle, self._start_sweep)

    def _start_sweep(self) -> None:
        self._sweep = None
        task = asyncio.get_running_loop().create_task(self._release_idle())
        task.add_done_callback(_log_failure)

    async def _release_idle(self) -> None:
        cutoff = time.monotonic() - self._max_idle
        stale = [c for c, used in self._idle if used <= cutoff]
        self._idle = [(c, used) for c, used in self._idle if used > cutoff]
        for connection in stale:
            await _give_back(connection)
        if self._idle:
            self._schedule_sweep()


async def _give_back(connection: IngestConnection) -> None:
    """Return it to the pool as the pool lent it (a broken one is invalidated)."""
    with contextlib.suppress(Exception):  # a broken connection may fail to reset cleanly
        if connection.driver.broken:
            await connection.pool.invalidate()
        elif not connection.driver.closed:
            await connection.driver.set_autocommit(False)
        await connection.pool.close()


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.warning("webhook.connection_sweep_failed", extra={"error": str(task.exception())})
