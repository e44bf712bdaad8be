"""What the X client's test modules share: a sandbox of their own (each module's `emulator`
fixture names its app's credentials) and its admin, faults cleared after each test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import pytest

from sandbox.admin import SandboxAdmin
from sandbox.app import SandboxConfig
from sandbox.server import RunningSandbox, start_sandbox_thread


@contextmanager
def own_sandbox(key: str, secret: str, webhook_id: str) -> Iterator[RunningSandbox]:
    config = SandboxConfig(
        consumer_key=key,
        consumer_secret=secret,
        webhook_id=webhook_id,
        webhook_url="http://127.0.0.1:9/nowhere",
        seed_demo=False,
    )
    with start_sandbox_thread(config) as running:
        yield running


@pytest.fixture
async def admin(emulator: RunningSandbox) -> AsyncIterator[SandboxAdmin]:
    admin = emulator.admin
    yield admin
    await admin.clear_faults()
