"""Webhook ingestion: signed DM events per second into one API process, and their latency, next
to a bare FastAPI endpoint doing nothing, served and loaded the same way in the same run.

    python -m bench                        # every benchmark
    python -m bench.webhook_ingestion      # this one; MKTX_BENCH_EVENTS=5000 to change the count

PostgreSQL: MKTX_BENCH_DATABASE_URL, else an embedded server under .mkt-x/bench-pg (a fresh
database is created and dropped). The API runs as `uvicorn api.app:main_app --factory` in a
subprocess, like production; no Temporal is needed (no listeners, no opt-out keywords).
Targets: >= 500 events/s and >= 25% of the bare endpoint; p95 < 100 ms for a single event.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import psutil
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from migrations.runner import upgrade_database
from services.webhook_security import SIGNATURE_HEADER, body_signature

REPO = Path(__file__).resolve().parent.parent
EVENTS = int(os.environ.get("MKTX_BENCH_EVENTS", "5000"))
WARMUP = 300
SINGLE = 200  # sequential deliveries for the single-event latency
CONCURRENCY = 32
CONTACTS = 250
SECRET = "bench-consumer-secret-0123456789"
SHOP_X_ID = "4000000001"
WEBHOOK_PATH = "/api/v1/mkt-x/webhooks/twitter"
TIME_LIMIT_SECONDS = 300.0

TARGET_EVENTS_PER_SECOND = 500.0
TARGET_RATIO = 0.25
TARGET_SINGLE_P95_MS = 100.0


# Database -----------------------------------------------------------------------------------


def _server_url() -> str:
    explicit = os.environ.get("MKTX_BENCH_DATABASE_URL")
    if explicit:
        return explicit
    import pgserver

    data = REPO / ".mkt-x" / "bench-pg"
    data.parent.mkdir(parents=True, exist_ok=True)
    return str(pgserver.get_server(data, cleanup_mode="stop").get_uri())


@contextmanager
def fresh_database() -> Iterator[str]:
    server = make_url(_server_url()).set(drivername="postgresql+psycopg")
    name = f"mktx_bench_webhooks_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = server.set(database=name).render_as_string(hide_password=False)
    try:
        upgrade_database(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def connect_shop(url: str) -> str:
    """An active account row, as if connected through the API (no X call needed here)."""
    merchant_id = f"bench-{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                """
                INSERT INTO x_accounts (id, merchant_id, created_at, updated_at, twitter_user_id,
                    username, display_name, status, subscription_status, auto_reply_enabled,
                    connected_at)
                VALUES (:id, :merchant_id, now(), now(), :x_id, 'bench_shop', 'Bench Shop',
                    'active', 'subscribed', false, now())
                """
            ),
            {"id": uuid.uuid4(), "merchant_id": merchant_id, "x_id": SHOP_X_ID},
        )
    engine.dispose()
    return merchant_id


def count_rows(url: str) -> tuple[int, int, int]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        row = conn.execute(
            sa.text(
                "SELECT (SELECT count(*) FROM messages), (SELECT count(*) FROM contacts), "
                "(SELECT count(*) FROM webhook_events WHERE processed_at IS NULL)"
            )
        ).one()
    engine.dispose()
    return int(row[0]), int(row[1]), int(row[2])


# Servers ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def uvicorn_process(
    target: str, *, factory: bool, env: dict[str, str]
) -> Iterator[tuple[str, psutil.Process]]:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        target,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    if factory:
        command.append("--factory")
    log = (REPO / ".mkt-x" / f"bench-{target.split(':')[0].replace('.', '-')}.log").open("wb")
    process = subprocess.Popen(
        command, cwd=REPO, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url + "/", timeout=1)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{target} did not start; see {log.name}") from None
                time.sleep(0.1)
        yield url, psutil.Process(process.pid)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


# Load ---------------------------------------------------------------------------------------


def signed_bodies(count: int, seed: int) -> list[tuple[bytes, str]]:
    """Distinct DM events from CONTACTS different customers, signed as X signs them."""
    rng = random.Random(seed)
    bodies = []
    base_ms = int(time.time() * 1000)
    for i in range(count):
        sender = str(5_000_000_000 + rng.randrange(CONTACTS))
        event_id = str(10**18 + seed * 10**9 + i)
        payload = {
            "for_user_id": SHOP_X_ID,
            "direct_message_events": [
                {
                    "type": "message_create",
                    "id": event_id,
                    "created_timestamp": str(base_ms + i),
                    "message_create": {
                        "target": {"recipient_id": SHOP_X_ID},
                        "sender_id": sender,
                        "message_data": {
                            "text": f"Hello, is order #{i} on its way?",
                            "entities": {"hashtags": [], "symbols": [], "urls": []},
                        },
                    },
                }
            ],
            "users": {
                sender: {
                    "id": sender,
                    "name": f"Customer {sender[-4:]}",
                    "screen_name": f"customer_{sender[-4:]}",
                    "profile_image_url_https": f"https://pbs.example/{sender}.jpg",
                },
                SHOP_X_ID: {"id": SHOP_X_ID, "name": "Bench Shop", "screen_name": "bench_shop"},
            },
        }
        body = json.dumps(payload, separators=(",", ":")).encode()
        bodies.append((body, body_signature(SECRET, body)))
    return bodies


@dataclass(frozen=True)
class Run:
    label: str
    requests: int
    seconds: float
    latencies_ms: list[float]
    errors: int
    server_cpu_seconds: float = 0.0  # user + system time of the server process meanwhile

    @property
    def server_cpu_ms(self) -> float:
        """What one request costs the server, whatever else the machine is busy with."""
        return 1000 * self.server_cpu_seconds / self.requests

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds

    def quantile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def fire(label: str, url: str, bodies: list[tuple[bytes, str]], concurrency: int) -> Run:
    queue = iter(bodies)
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def worker() -> None:
            nonlocal errors
            for body, signature in queue:
                headers = {"content-type": "application/json", SIGNATURE_HEADER: signature}
                started = time.perf_counter()
                response = await client.post(url, content=body, headers=headers)
                latencies.append((time.perf_counter() - started) * 1000)
                if response.status_code != 200:
                    errors += 1

        started = time.perf_counter()
        await asyncio.wait_for(
            asyncio.gather(*(worker() for _ in range(concurrency))), TIME_LIMIT_SECONDS
        )
        seconds = time.perf_counter() - started
    return Run(label, len(latencies), seconds, latencies, errors)


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def measure(label: str, url: str, server: psutil.Process, seed: int) -> tuple[Run, Run]:
    """(loaded run, sequential single-event run) against one server."""
    asyncio.run(fire(label, url, signed_bodies(WARMUP, seed), CONCURRENCY))
    bodies = signed_bodies(EVENTS, seed + 1)
    before = _cpu(server)
    loaded = asyncio.run(fire(label, url, bodies, CONCURRENCY))
    loaded = replace(loaded, server_cpu_seconds=_cpu(server) - before)
    single = asyncio.run(fire(label, url, signed_bodies(SINGLE, seed + 2), 1))
    return loaded, single


# Report -------------------------------------------------------------------------------------


def report(webhook: tuple[Run, Run], bare: tuple[Run, Run], rows: tuple[int, int, int]) -> bool:
    (loaded, single), (bare_loaded, bare_single) = webhook, bare
    ratio = loaded.per_second / bare_loaded.per_second
    print(
        f"{EVENTS} signed DM events, {CONCURRENCY} in flight, one uvicorn process, {os.cpu_count()} CPUs"
    )
    header = (
        f"{'endpoint':<28}{'req/s':>10}{'p50 ms':>10}{'p95 ms':>10}{'p99 ms':>10}"
        f"{'errors':>8}{'server CPU ms/req':>19}"
    )
    print(header)
    print("-" * len(header))
    for run, name in (
        (loaded, "webhook (DM events)"),
        (bare_loaded, "bare FastAPI endpoint"),
        (single, "webhook, one at a time"),
        (bare_single, "bare, one at a time"),
    ):
        cpu = f"{run.server_cpu_ms:.2f}" if run.server_cpu_seconds else "-"
        print(
            f"{name:<28}{run.per_second:>10.0f}{run.quantile(0.5):>10.1f}"
            f"{run.quantile(0.95):>10.1f}{run.quantile(0.99):>10.1f}{run.errors:>8}{cpu:>19}"
        )
    messages, contacts, unapplied = rows
    print(f"stored: {messages} messages, {contacts} contacts, {unapplied} events left unapplied")
    if loaded.server_cpu_seconds and bare_loaded.server_cpu_seconds:
        # Throughput on a shared machine depends on its neighbours; CPU per request does not.
        print(
            f"server CPU per request: webhook {loaded.server_cpu_ms:.2f} ms, bare "
            f"{bare_loaded.server_cpu_ms:.2f} ms -> one core: ~{1000 / loaded.server_cpu_ms:.0f} "
            f"events/s, {bare_loaded.server_cpu_ms / loaded.server_cpu_ms:.0%} of bare "
            f"(load average before the run: {LOAD_BEFORE[0]:.1f})"
        )
    checks = [
        (
            "events/s",
            loaded.per_second,
            f">= {TARGET_EVENTS_PER_SECOND:.0f}",
            loaded.per_second >= TARGET_EVENTS_PER_SECOND,
        ),
        ("ratio to bare", ratio, f">= {TARGET_RATIO:.0%}", ratio >= TARGET_RATIO),
        (
            "single-event p95 ms",
            single.quantile(0.95),
            f"< {TARGET_SINGLE_P95_MS:.0f}",
            single.quantile(0.95) < TARGET_SINGLE_P95_MS,
        ),
    ]
    for name, value, target, met in checks:
        shown = f"{value:.0%}" if name == "ratio to bare" else f"{value:.1f}"
        print(f"{name:<22}{shown:>10}   target {target:<8} {'met' if met else 'MISSED'}")
    return all(met for *_, met in checks) and loaded.errors == 0


def main() -> None:
    """Run the benchmark and print its table (the verdict is printed, not raised)."""
    run()


LOAD_BEFORE = os.getloadavg()


def run() -> bool:
    global LOAD_BEFORE
    LOAD_BEFORE = os.getloadavg()
    with fresh_database() as url:
        connect_shop(url)
        env = {
            "MKTX_DATABASE_URL": url,
            "MKTX_X_CONSUMER_SECRET": SECRET,
            "MKTX_TEMPORAL_ADDRESS": "127.0.0.1:9",  # never dialled: nothing listens here
            "MKTX_LOG_LEVEL": os.environ.get("MKTX_BENCH_LOG_LEVEL", "INFO"),
            "MKTX_ENV": "development",
        }
        with uvicorn_process("api.app:main_app", factory=True, env=env) as (api, server):
            webhook = measure("webhook", api + WEBHOOK_PATH, server, seed=1)
        rows = count_rows(url)
    with uvicorn_process("bench._bare_app:app", factory=False, env={}) as (bare_url, server):
        bare = measure("bare", bare_url + "/bare", server, seed=1)
    return report(webhook, bare, rows)


if __name__ == "__main__":
    sys.exit(0 if run() else 1)
