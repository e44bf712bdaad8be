"""Campaign sending: a 20,000-recipient campaign (quotas lifted) against the sandbox, start to
completed, next to a plain asyncio loop sending the same DMs through the same XClient in the
same run. Also reports the events per workflow run (history length) and the worker's peak RSS.

    python -m bench                       # every benchmark
    python -m bench.campaign_send         # this one; MKTX_BENCH_RECIPIENTS=5000 to change it

PostgreSQL: MKTX_BENCH_DATABASE_URL, else an embedded server under .mkt-x/bench-pg (a fresh
database is created and dropped). Temporal: its own dev server. The sandbox and the worker run
as `mkt-x sandbox` / `mkt-x worker` subprocesses, like production.
Targets: >= 300 messages/s and >= 60% of the plain loop.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import sqlalchemy as sa
from pydantic import SecretStr
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from bench._infra import free_port, fresh_database
from integrations.x import XClient, XCredentials
from mktx.secrets import SecretBox
from mktx.settings import Environment, Settings
from sandbox.admin import SandboxAdmin, SandboxUser
from workflows import ids
from workflows.campaign import CampaignInput, CampaignWorkflow

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
RECIPIENTS = int(os.environ.get("MKTX_BENCH_RECIPIENTS", "20000"))
CONCURRENCY = 32  # DMs in flight: the campaign's semaphore and the plain loop's alike
BATCH_SIZE = int(os.environ.get("MKTX_BENCH_BATCH_SIZE", "500"))
CONSUMER_KEY = "bench-consumer-key"
CONSUMER_SECRET = "bench-consumer-secret-0123456789"
TEXT = "Hi {{name}}, the January sale starts now!"
TARGET_PER_SECOND = 300.0
TARGET_RATIO = 0.6


def main() -> None:
    asyncio.run(_run())


# The sandbox, pre-populated ---------------------------------------------------------------


@dataclass(frozen=True)
class Person:
    id: str
    username: str
    name: str


FIRST_PERSON_ID = 7_000_000_000


def _people(count: int) -> list[Person]:
    return [Person(str(FIRST_PERSON_ID + i), f"reader_{i}", f"Reader {i}") for i in range(count)]


def _serve_sandbox(port: int, count: int) -> None:
    """`python -m bench.campaign_send --sandbox PORT COUNT`: the sandbox with COUNT recipients
    already in its state (put there directly: 20,000 admin calls would time the setup, not the
    campaign)."""
    import uvicorn

    from sandbox.app import SandboxConfig, create_sandbox_app
    from sandbox.state import User

    app = create_sandbox_app(
        SandboxConfig(
            consumer_key=CONSUMER_KEY,
            consumer_secret=CONSUMER_SECRET,
            webhook_id="bench-webhook",
            webhook_url="http://127.0.0.1:9/unset",
            seed_demo=False,
        )
    )
    state = app.state.sandbox
    for person in _people(count):
        state.users[person.id] = User(person.id, person.username, person.name, None)
    uvicorn.run(app, host="127.0.0.1", port=port, log_config=None, access_log=False)


# Infrastructure -----------------------------------------------------------------------------


def _env(settings: Settings) -> dict[str, str]:
    assert settings.database_url is not None
    return {
        **os.environ,
        "MKTX_ENV": "test",
        "MKTX_LOG_LEVEL": "WARNING",
        "MKTX_DATABASE_URL": settings.database_url,
        "MKTX_DATABASE_POOL_SIZE": "20",
        "MKTX_TEMPORAL_ADDRESS": settings.require_temporal_address(),
        "MKTX_TASK_QUEUE": settings.task_queue,
        "MKTX_X_API_BASE_URL": settings.x_api_base_url,
        "MKTX_X_CONSUMER_KEY": CONSUMER_KEY,
        "MKTX_X_CONSUMER_SECRET": CONSUMER_SECRET,
        "MKTX_DM_LIMIT_PER_24H": str(10 * RECIPIENTS),
        "MKTX_CAMPAIGN_LIMIT_PER_24H": str(10 * RECIPIENTS),
    }


class PeakMemory:
    """Samples a process's RSS every 50 ms and keeps the peak."""

    def __init__(self, pid: int) -> None:
        self._process = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self._process.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.05)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


async def _wait_http(url: str) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(200):
            try:
                await client.get(url)
                return
            except httpx.HTTPError:
                await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


# Data ---------------------------------------------------------------------------------------


def _seed(
    url: str, settings: Settings, shop: SandboxUser, people: list[Person]
) -> tuple[str, uuid.UUID]:
    box = SecretBox.from_settings(settings)
    merchant_id = f"bench-{uuid.uuid4().hex[:8]}"
    account_id, segment_id, template_id, campaign_id = (uuid.uuid4() for _ in range(4))
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                """
                INSERT INTO x_accounts (id, merchant_id, created_at, updated_at, twitter_user_id,
                    username, display_name, status, subscription_status, auto_reply_enabled,
                    connected_at, oauth_token_encrypted, oauth_token_secret_encrypted)
                VALUES (:id, :m, now(), now(), :x_id, :username, 'Bench Shop', 'active',
                    'subscribed', false, now(), :token, :secret)
                """
            ),
            {
                "id": account_id,
                "m": merchant_id,
                "x_id": shop.id,
                "username": shop.username,
                "token": box.seal(shop.access_token),
                "secret": box.seal(shop.access_token_secret),
            },
        )
        conn.execute(
            sa.text(
                """
                INSERT INTO contacts (id, merchant_id, created_at, updated_at, account_id,
                    twitter_user_id, username, display_name, tags, attributes, source, opted_out,
                    conversation_count)
                SELECT gen_random_uuid(), :m, now(), now(), :a, u.id, u.username, u.name,
                    ARRAY['bench'], '{}'::jsonb, 'manual', false, 0
                FROM unnest(CAST(:ids AS text[]), CAST(:usernames AS text[]),
                            CAST(:names AS text[])) AS u(id, username, name)
                """
            ),
            {
                "m": merchant_id,
                "a": account_id,
                "ids": [p.id for p in people],
                "usernames": [p.username for p in people],
                "names": [p.name for p in people],
            },
        )
        conn.execute(
            sa.text(
                """
                INSERT INTO segments (id, merchant_id, created_at, updated_at, name, match,
                    conditions)
                VALUES (:id, :m, now(), now(), 'Bench', 'all',
                    '[{"field": "tags", "operator": "contains", "value": "bench"}]'::jsonb)
                """
            ),
            {"id": segment_id, "m": merchant_id},
        )
        conn.execute(
            sa.text(
                """
                INSERT INTO templates (id, merchant_id, created_at, updated_at, name, type,
                    content, variables)
                VALUES (:id, :m, now(), now(), 'Bench', 'text', :content, ARRAY['name'])
                """
            ),
            {"id": template_id, "m": merchant_id, "content": TEXT},
        )
        conn.execute(
            sa.text(
                """
                INSERT INTO campaigns (id, merchant_id, created_at, updated_at, name, type,
                    status, template_id, segment_ids, variables, occurrences)
                VALUES (:id, :m, now(), now(), 'Bench', 'promotional', 'running', :t,
                    ARRAY[CAST(:s AS uuid)], '{}'::jsonb, 0)
                """
            ),
            {"id": campaign_id, "m": merchant_id, "t": template_id, "s": str(segment_id)},
        )
    engine.dispose()
    return merchant_id, campaign_id


# Runs ---------------------------------------------------------------------------------------


async def _plain_loop(x: XClient, shop: SandboxUser, people: list[Person]) -> float:
    creds = XCredentials(shop.access_token, shop.access_token_secret)
    semaphore = asyncio.Semaphore(CONCURRENCY)

    async def one(person: Person) -> None:
        async with semaphore:
            await asyncio.to_thread(x.send_dm, creds, person.id, f"Hi {person.name}, plain loop")

    started = time.perf_counter()
    await asyncio.gather(*(one(p) for p in people))
    return time.perf_counter() - started


async def _history_lengths(client: Client, workflow_id: str) -> list[int]:
    lengths: list[int] = []
    async for execution in client.list_workflows(f'WorkflowId = "{workflow_id}"'):
        handle = client.get_workflow_handle(workflow_id, run_id=execution.run_id)
        lengths.append(len((await handle.fetch_history()).events))
    return lengths


async def _run() -> None:
    with fresh_database("mktx_bench_campaign") as url:
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=str(BIN / "temporal"),
            search_attributes=ids.SEARCH_ATTRIBUTES,
            data_converter=pydantic_data_converter,
            dev_server_log_level="error",
        )
        sandbox_port = free_port()
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            env=Environment.test,
            database_url=url,
            temporal_address=env.client.service_client.config.target_host,
            task_queue=f"bench-campaign-{uuid.uuid4().hex[:6]}",
            x_api_base_url=f"http://127.0.0.1:{sandbox_port}",
            x_consumer_key=SecretStr(CONSUMER_KEY),
            x_consumer_secret=SecretStr(CONSUMER_SECRET),
        )
        processes: list[subprocess.Popen[bytes]] = []
        try:
            processes.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "bench.campaign_send",
                        "--sandbox",
                        str(sandbox_port),
                        str(RECIPIENTS),
                    ],
                    env=_env(settings),
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            await _wait_http(f"{settings.x_api_base_url}/admin/users")
            await _bench(settings, url, env.client, processes)
        finally:
            for process in processes:
                process.terminate()
                process.wait(timeout=20)
            await env.shutdown()


async def _bench(
    settings: Settings, url: str, client: Client, processes: list[subprocess.Popen[bytes]]
) -> None:
    admin = SandboxAdmin(settings.x_api_base_url)
    await admin.set_rate_limit("dm_send", 100 * RECIPIENTS, 900)
    await admin.set_rate_limit("dm_events", 100 * RECIPIENTS, 900)
    shop = await admin.create_user(f"shop_{uuid.uuid4().hex[:6]}", name="Bench Shop")
    plain_shop = await admin.create_user(f"plain_{uuid.uuid4().hex[:6]}", name="Plain Shop")
    prepared = time.perf_counter()
    people = _people(RECIPIENTS)
    merchant_id, campaign_id = _seed(url, settings, shop, people)
    print(f"prepared {RECIPIENTS} recipients in {time.perf_counter() - prepared:.1f}s", flush=True)

    x = XClient(settings.x_api_base_url, CONSUMER_KEY, CONSUMER_SECRET, timeout=30)
    plain_seconds = await _plain_loop(x, plain_shop, people)

    worker = subprocess.Popen(
        [str(BIN / "mkt-x"), "worker"],
        env=_env(settings),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    processes.append(worker)
    memory = PeakMemory(worker.pid)
    await asyncio.sleep(2)  # the worker connects and polls
    workflow_id = ids.campaign_id(str(campaign_id))
    started = time.perf_counter()
    handle = await client.start_workflow(
        CampaignWorkflow.run,
        CampaignInput(
            merchant_id=merchant_id,
            campaign_id=campaign_id,
            batch_size=BATCH_SIZE,
            concurrency=CONCURRENCY,
        ),
        id=workflow_id,
        task_queue=settings.task_queue,
    )
    progress = await handle.result()
    campaign_seconds = time.perf_counter() - started
    peak = memory.stop()
    lengths = await _history_lengths(client, workflow_id)
    sent = len(await admin.dms(sender_id=shop.id))

    campaign_rate = progress.sent / campaign_seconds
    plain_rate = RECIPIENTS / plain_seconds
    ratio = campaign_rate / plain_rate
    print(f"recipients:            {RECIPIENTS} (sandbox received {sent} campaign DMs)")
    print(
        f"campaign workflow:     {campaign_rate:8.1f} msg/s  ({campaign_seconds:.1f}s, "
        f"{progress.batches} batches of {BATCH_SIZE}, {CONCURRENCY} in flight)"
    )
    print(f"plain asyncio loop:    {plain_rate:8.1f} msg/s  ({plain_seconds:.1f}s)")
    print(f"ratio:                 {ratio:8.2f}  (target >= {TARGET_RATIO})")
    print(
        f"history events / run:  {lengths} ({len(lengths)} run(s); continue-as-new when "
        "Temporal suggests it)"
    )
    print(f"worker peak RSS:       {peak / 2**20:.0f} MiB")
    ok = campaign_rate >= TARGET_PER_SECOND and ratio >= TARGET_RATIO and sent == RECIPIENTS
    print(
        f"target (>= {TARGET_PER_SECOND:.0f} msg/s, >= 60% of plain): {'MET' if ok else 'MISSED'}"
    )


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--sandbox":
        _serve_sandbox(int(sys.argv[2]), int(sys.argv[3]))
    else:
        main()
