"""How services reach Temporal when they may have to wait for it: a source of the process's
client, called only when a call is due (the API may have started while Temporal was away)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from temporalio.client import Client

TemporalSource = Callable[[], Awaitable[Client]]
