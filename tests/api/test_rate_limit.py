"""100 requests a minute per merchant (configurable), shared by every API process."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from mktx.settings import Settings
from tests.conftest import Merchant

BIN = Path(sys.executable).parent


def _seconds_left_in_window() -> float:
    return 60 - (time.time() % 60)


async def _fresh_window() -> None:
    """The counter is a fixed one-minute window: don't start a count just before it rolls."""
    if _seconds_left_in_window() < 15:
        await asyncio.sleep(_seconds_left_in_window() + 0.5)


@pytest.fixture
async def limited_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings.model_copy(update={"rate_limit_per_minute": 3}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            yield client


async def test_headers_count_down_then_429(
    limited_client: httpx.AsyncClient, merchant: Merchant, other_merchant: Merchant
) -> None:
    await _fresh_window()
    remaining = []
    for _ in range(3):
        response = await limited_client.get("/api/v1/mkt-x/accounts", headers=merchant.headers())
        assert response.status_code == 200
        assert response.headers["X-RateLimit-Limit"] == "3"
        remaining.append(int(response.headers["X-RateLimit-Remaining"]))
        reset = int(response.headers["X-RateLimit-Reset"])
        assert 0 < reset - time.time() <= 60
    assert remaining == [2, 1, 0]

    refused = await limited_client.get("/api/v1/mkt-x/accounts", headers=merchant.headers())
    assert refused.status_code == 429
    body = refused.json()
    assert body["code"] == "RATE_LIMIT_EXCEEDED" and body["success"] is False
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["X-RateLimit-Remaining"] == "0"

    # Error answers after authentication carry the headers too; other merchants are unaffected.
    other = await limited_client.get(
        f"/api/v1/mkt-x/accounts/{uuid.uuid4()}", headers=other_merchant.headers()
    )
    assert other.status_code == 404
    assert other.headers["X-RateLimit-Remaining"] == "2"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def two_api_processes(settings: Settings, tmp_path: Path) -> Iterator[list[str]]:
    env = {
        **os.environ,
        "MKTX_ENV": "test",
        "MKTX_DATABASE_URL": settings.require_database_url(),
        "MKTX_TEMPORAL_ADDRESS": settings.require_temporal_address(),
        "MKTX_X_API_BASE_URL": settings.x_api_base_url,
        "MKTX_X_CONSUMER_KEY": settings.x_consumer_key.get_secret_value(),
        "MKTX_X_CONSUMER_SECRET": settings.x_consumer_secret.get_secret_value(),
        "MKTX_RATE_LIMIT_PER_MINUTE": "5",
        "MKTX_LOG_LEVEL": "WARNING",
    }
    ports = [_free_port(), _free_port()]
    processes = [
        subprocess.Popen(
            [str(BIN / "mkt-x"), "api", "--port", str(port)],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=(tmp_path / f"api-{port}.log").open("w"),
        )
        for port in ports
    ]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        deadline = time.monotonic() + 30
        for url, process in zip(urls, processes, strict=True):
            while True:
                assert process.poll() is None, (tmp_path / f"api-{url[-5:]}.log").read_text()
                try:
                    if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "API process did not start"
                time.sleep(0.2)
        yield urls
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=10)


async def test_limit_is_shared_across_two_api_processes(
    two_api_processes: list[str], merchant: Merchant
) -> None:
    await _fresh_window()
    first, second = two_api_processes
    statuses = []
    async with httpx.AsyncClient(headers=merchant.headers()) as client:
        for i in range(8):
            url = first if i % 2 == 0 else second
            response = await client.get(f"{url}/api/v1/mkt-x/accounts")
            statuses.append((response.status_code, response.headers.get("X-RateLimit-Remaining")))
    assert [s for s, _ in statuses] == [200] * 5 + [429] * 3
    assert [r for _, r in statuses] == ["4", "3", "2", "1", "0", "0", "0", "0"]
