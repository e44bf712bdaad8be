"""Follow-event ingestion with an active `new_follower` flow next to the same without any flow:
signed follow webhooks (each from a different follower) posted to one API process, events per
second and answer latency for each, in the same run, same load, same number of events.

The flow is the welcome flow of the spec (a DM, then a one-day wait), on its own merchant and
account; the yardstick is another merchant's account that has no flow at all. The flow's runs
must really start: at the end every follower of the flow's account has a run (Temporal and
`flow_runs`), once the follow-ups (signal-with-start, after the answer) are carried out.

    python -m bench                              # every benchmark
    python -m bench.flow_follow_ingestion        # this one; MKTX_BENCH_FOLLOWS=1000 to change it

PostgreSQL: MKTX_BENCH_DATABASE_URL, else an embedded server under .mkt-x/bench-pg (a fresh
database is created and dropped). Temporal: its own dev server. The API (`uvicorn
api.app:main_app --factory`), the worker (`mkt-x worker`) and the sandbox (X) run as
subprocesses; the load generator is bench.webhook_ingestion's (hand-written HTTP/1.1, 32 in
flight). Target: events/s with the flow >= 60% of events/s without; and every follower's run
started in Temporal and begun (its `flow_runs` row): none lost. The bench waits up to
MKTX_BENCH_RUNS_TIMEOUT (300 s) after the last answer for them and prints how long they took
(on 2 cores the worker begins some 20 runs a second while it also sends their first DMs).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import sqlalchemy as sa
from pydantic import SecretStr
from sqlalchemy.engine import make_url
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from api.app import BASE_PATH
from bench._infra import (
    CpuMeter,
    child_named,
    free_port,
    fresh_database,
    stop_process,
    wait_for_pollers,
    wait_until,
)
from bench.webhook_ingestion import WEBHOOK_PATH, Run, fire, uvicorn_process
from mktx.secrets import SecretBox
from mktx.settings import Environment, Settings
from sandbox.admin import SandboxAdmin, SandboxUser
from services.core.auth import Role, issue_token
from services.ingestion.signatures import body_signature
from workflows import ids

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
FOLLOWS = int(os.environ.get("MKTX_BENCH_FOLLOWS", "2000"))
WARMUP = 100  # follows of each account before the measured ones
CONCURRENCY = 32
CONSUMER_KEY = "bench-consumer-key"
CONSUMER_SECRET = "bench-consumer-secret-0123456789"
FIRST_FOLLOWER = 7_300_000_000
WAIT_NODE = "node-2"
# How long after the last answer the bench waits for every follower's run to exist.
RUNS_TIMEOUT = float(os.environ.get("MKTX_BENCH_RUNS_TIMEOUT", "300"))
TARGET_RATIO = 0.6

WELCOME = "Hi {{name}}, thanks for following!"


def main() -> int:
    global LOAD_BEFORE
    LOAD_BEFORE = os.getloadavg()
    return asyncio.run(_run())


# The sandbox, with the followers already in its state -----------------------------------------


def _follower(i: int) -> tuple[str, str, str]:
    return str(FIRST_FOLLOWER + i), f"follower_{i}", f"Follower {i}"


def _serve_sandbox(port: int, count: int) -> None:
    """`python -m bench.flow_follow_ingestion --sandbox PORT COUNT`: X, knowing COUNT followers
    (put straight into its state: thousands of admin calls would time the setup)."""
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
    for i in range(count):
        user_id, username, name = _follower(i)
        state.users[user_id] = User(user_id, username, name, None)
    uvicorn.run(app, host="127.0.0.1", port=port, log_config=None, access_log=False)


# Data -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shop:
    merchant_id: str
    x_id: str
    username: str


def _connect(url: str, settings: Settings, shop: SandboxUser | None, x_id: str = "") -> Shop:
    """An active account row of a new merchant: the sandbox user's (with its tokens, to
    send), else an account `x_id` that never sends."""
    box = SecretBox.from_settings(settings)
    merchant_id = f"bench-{uuid.uuid4().hex[:8]}"
    x_id = shop.id if shop else x_id
    username = shop.username if shop else f"plain_{x_id}"
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
                "id": uuid.uuid4(),
                "m": merchant_id,
                "x_id": x_id,
                "username": username,
                "token": box.seal(shop.access_token) if shop else None,
                "secret": box.seal(shop.access_token_secret) if shop else None,
            },
        )
    engine.dispose()
    return Shop(merchant_id, x_id, username)


def _bodies(shop: Shop, first: int, count: int) -> list[tuple[bytes, str]]:
    """Follow events of followers first .. first + count - 1, signed as X signs them."""
    base_ms = int(time.time() * 1000)
    target = {"id": shop.x_id, "name": "Bench Shop", "screen_name": shop.username}
    bodies = []
    for i in range(first, first + count):
        user_id, username, name = _follower(i)
        payload = {
            "for_user_id": shop.x_id,
            "follow_events": [
                {
                    "type": "follow",
                    "created_timestamp": str(base_ms + i),
                    "source": {
                        "id": user_id,
                        "name": name,
                        "screen_name": username,
                        "profile_image_url_https": f"https://pbs.example/{username}.jpg",
                    },
                    "target": target,
                }
            ],
        }
        body = json.dumps(payload, separators=(",", ":")).encode()
        bodies.append((body, body_signature(CONSUMER_SECRET, body)))
    return bodies


def _counts(url: str, flow_id: str, merchant_id: str) -> tuple[int, int, int, int]:
    """(the flow's runs, those past their DM on the wait, the merchant's follow-ups not done,
    the merchant's contacts)."""
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        row = conn.execute(
            sa.text(
                """
                SELECT (SELECT count(*) FROM flow_runs WHERE flow_id = :f),
                    (SELECT count(*) FROM flow_runs WHERE flow_id = :f
                        AND current_node_id = :node),
                    (SELECT count(*) FROM event_follow_ups
                        WHERE merchant_id = :m AND done_at IS NULL),
                    (SELECT count(*) FROM contacts WHERE merchant_id = :m)
                """
            ),
            {"f": flow_id, "node": WAIT_NODE, "m": merchant_id},
        ).one()
    engine.dispose()
    return int(row[0]), int(row[1]), int(row[2]), int(row[3])


# Measuring ------------------------------------------------------------------------------------


@dataclass
class Phase:
    label: str
    run: Run
    cpu: CpuMeter
    carried_out: float | None  # seconds from the first post until no follow-up was left due


async def _phase(
    label: str,
    api_url: str,
    url: str,
    shop: Shop,
    flow_id: str,
    first: int,
    database: str,
    pids: dict[str, int | None],
) -> Phase:
    bodies = _bodies(shop, first, FOLLOWS)
    cpu = CpuMeter(database, pids).start()
    started = time.perf_counter()
    run = await fire(label, api_url + WEBHOOK_PATH, bodies, CONCURRENCY)

    async def carried_out() -> bool:
        return _counts(url, flow_id, shop.merchant_id)[2] == 0

    waited = await wait_until(carried_out, timeout=RUNS_TIMEOUT, interval=0.2)
    cpu.stop()
    done = time.perf_counter() - started if waited is not None else None
    return Phase(label, run, cpu, done)


# The run --------------------------------------------------------------------------------------


def _env(settings: Settings) -> dict[str, str]:
    assert settings.database_url is not None
    return {
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # as `make bench` exports it: no fetch at import
        **os.environ,
        "MKTX_ENV": "development",
        "MKTX_LOG_LEVEL": os.environ.get("MKTX_BENCH_LOG_LEVEL", "WARNING"),
        "MKTX_DATABASE_URL": settings.database_url,
        "MKTX_DATABASE_POOL_SIZE": "20",
        "MKTX_TEMPORAL_ADDRESS": settings.require_temporal_address(),
        "MKTX_TASK_QUEUE": settings.task_queue,
        "MKTX_X_API_BASE_URL": settings.x_api_base_url,
        "MKTX_X_CONSUMER_KEY": CONSUMER_KEY,
        "MKTX_X_CONSUMER_SECRET": CONSUMER_SECRET,
        "MKTX_RATE_LIMIT_PER_MINUTE": "1000000",
        "MKTX_DM_LIMIT_PER_24H": str(100 * (FOLLOWS + WARMUP)),
        "MKTX_CAMPAIGN_LIMIT_PER_24H": str(100 * (FOLLOWS + WARMUP)),
    }


async def _run() -> int:
    with fresh_database("mktx_bench_flow_follows") as url:
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=str(BIN / "temporal"),
            search_attributes=ids.SEARCH_ATTRIBUTES,
            data_converter=pydantic_data_converter,
            dev_server_log_level="error",
        )
        sandbox_port = free_port()
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            env=Environment.development,
            database_url=url,
            temporal_address=env.client.service_client.config.target_host,
            task_queue=f"bench-follows-{uuid.uuid4().hex[:6]}",
            x_api_base_url=f"http://127.0.0.1:{sandbox_port}",
            x_consumer_key=SecretStr(CONSUMER_KEY),
            x_consumer_secret=SecretStr(CONSUMER_SECRET),
        )
        logs = REPO / ".mkt-x"
        logs.mkdir(exist_ok=True)
        sandbox = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.flow_follow_ingestion",
                "--sandbox",
                str(sandbox_port),
                str(WARMUP + FOLLOWS),
            ],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=(logs / "bench-follows-sandbox.log").open("wb"),
        )
        try:
            return await _bench(settings, url, env.client)
        finally:
            stop_process(sandbox)
            await env.shutdown()


async def _bench(settings: Settings, url: str, client: Client) -> int:
    admin = SandboxAdmin(settings.x_api_base_url)
    await wait_until(lambda: _up(settings.x_api_base_url), timeout=30, interval=0.1)
    await admin.set_rate_limit("dm_send", 100 * (FOLLOWS + WARMUP), 900)
    await admin.set_rate_limit("dm_events", 100 * (FOLLOWS + WARMUP), 900)
    flow_shop = _connect(url, settings, await admin.create_user("flow_shop", name="Bench Shop"))
    plain = _connect(url, settings, None, x_id="4200000002")
    database = str(make_url(url).database)
    env = _env(settings)
    logs = REPO / ".mkt-x"
    worker = subprocess.Popen(
        [str(BIN / "mkt-x"), "worker"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(logs / "bench-follows-worker.log").open("wb"),
    )
    try:
        with uvicorn_process("api.app:main_app", factory=True, env=env) as (api_url, api_server):
            await wait_for_pollers(client, settings.task_queue)
            flow_id = await _flow(api_url, settings, flow_shop.merchant_id)
            pids = {
                "api": api_server.pid,
                "worker": worker.pid,
                "temporal": child_named("temporal"),
            }

            # Warm both paths up; the flow's warm-up runs reach their wait before measuring.
            await fire("warmup", api_url + WEBHOOK_PATH, _bodies(plain, 0, WARMUP), CONCURRENCY)
            await fire("warmup", api_url + WEBHOOK_PATH, _bodies(flow_shop, 0, WARMUP), CONCURRENCY)

            async def warm() -> bool:
                return _counts(url, flow_id, flow_shop.merchant_id)[1] >= WARMUP

            await wait_until(warm, timeout=120)
            # Without a flow first: the flow's runs would keep the worker busy afterwards.
            without = await _phase("no flow", api_url, url, plain, flow_id, WARMUP, database, pids)
            with_flow = await _phase(
                "new_follower flow", api_url, url, flow_shop, flow_id, WARMUP, database, pids
            )
            answered = time.perf_counter()

            async def enrolled() -> bool:
                return _counts(url, flow_id, flow_shop.merchant_id)[0] >= WARMUP + FOLLOWS

            runs_after = await wait_until(enrolled, timeout=RUNS_TIMEOUT, interval=1.0)
            runs_waited = time.perf_counter() - answered
            runs, parked, due, contacts = _counts(url, flow_id, flow_shop.merchant_id)
            started = (await client.count_workflows(f'FlowId = "{flow_id}"')).count
            plain_contacts = _counts(url, flow_id, plain.merchant_id)[3]
            sent = len(await admin.dms(sender_id=flow_shop.x_id))
    finally:
        stop_process(worker)
    return _report(
        without,
        with_flow,
        runs_after=runs_after,
        runs_waited=runs_waited,
        counts=(runs - WARMUP, parked - WARMUP, due, contacts - WARMUP),
        started=started - WARMUP,
        plain_contacts=plain_contacts - WARMUP,
        sent=sent - WARMUP,
    )


async def _up(base_url: str) -> bool:
    try:
        async with httpx.AsyncClient() as http:
            await http.get(base_url + "/")
        return True
    except httpx.TransportError:
        return False


async def _flow(api_url: str, settings: Settings, merchant_id: str) -> str:
    """The welcome flow, created and activated through the API as the merchant."""
    token = issue_token(settings, merchant_id=merchant_id, user_id="bench", roles=[Role.admin])
    async with httpx.AsyncClient(
        base_url=api_url + BASE_PATH, headers={"Authorization": f"Bearer {token}"}, timeout=60
    ) as api:
        template = await api.post("/templates", json={"name": "Welcome", "content": WELCOME})
        template.raise_for_status()
        body = {
            "name": "Bench welcome",
            "trigger": {"type": "new_follower", "config": {}},
            "nodes": [
                {
                    "id": "node-1",
                    "type": "send_message",
                    "config": {"templateId": template.json()["data"]["id"], "delay": 0},
                },
                {"id": WAIT_NODE, "type": "wait", "config": {"duration": 86400}},
            ],
            "connections": [{"fromNodeId": "node-1", "toNodeId": WAIT_NODE}],
        }
        created = await api.post("/automation/flows", json=body)
        created.raise_for_status()
        flow_id = str(created.json()["data"]["id"])
        (await api.post(f"/automation/flows/{flow_id}/activate")).raise_for_status()
    return flow_id


# Report ---------------------------------------------------------------------------------------


def _report(
    without: Phase,
    with_flow: Phase,
    *,
    runs_after: float | None,
    runs_waited: float,
    counts: tuple[int, int, int, int],
    started: int,
    plain_contacts: int,
    sent: int,
) -> int:
    runs, parked, due, contacts = counts
    print(
        f"{FOLLOWS} follow events per case (each from another follower, +{WARMUP} warm-up), "
        f"{CONCURRENCY} in flight, one uvicorn process, {os.cpu_count()} CPUs, load average "
        f"{LOAD_BEFORE[0]:.1f} before"
    )
    header = (
        f"{'case':<20}{'events/s':>9}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'errors':>8}"
        f"{'follow-ups done':>17}"
    )
    print(header)
    print("-" * len(header))
    for phase in (without, with_flow):
        run = phase.run
        done = f"{phase.carried_out:.1f}s" if phase.carried_out is not None else "NOT yet"
        print(
            f"{phase.label:<20}{run.per_second:>9.0f}{run.quantile(0.5):>9.1f}"
            f"{run.quantile(0.95):>9.1f}{run.quantile(0.99):>9.1f}{run.errors:>8}{done:>17}"
        )
    for phase in (without, with_flow):
        print(
            f"CPU ms per event, {phase.label} (answers and follow-ups): "
            f"{phase.cpu.line(per=phase.run.requests)}"
        )
    print(
        f"contacts created: {plain_contacts} (no flow), {contacts} (flow); the flow's runs: "
        f"{started} started in Temporal, {runs} rows"
        + (
            f" {runs_after:.0f}s after the follow-ups were done"
            if runs_after is not None
            else f" after {runs_waited:.0f}s (MKTX_BENCH_RUNS_TIMEOUT)"
        )
        + f", {parked} past their DM on the wait ({sent} DMs sent), {due} follow-ups still due"
    )
    ratio = with_flow.run.per_second / without.run.per_second
    p95_ratio = with_flow.run.quantile(0.95) / without.run.quantile(0.95)
    print(f"p95 with the flow / without: {p95_ratio:.2f}")
    checks = [
        ("events/s ratio", f"{ratio:.2f}", f">= {TARGET_RATIO}", ratio >= TARGET_RATIO),
        (
            "errors",
            f"{without.run.errors + with_flow.run.errors}",
            "= 0",
            without.run.errors + with_flow.run.errors == 0,
        ),
        (
            "runs started (Temporal)",
            f"{started}",
            f"= {FOLLOWS}",
            started == FOLLOWS and contacts == FOLLOWS and due == 0,
        ),
        ("runs begun (flow_runs)", f"{runs}", f"= {FOLLOWS}", runs == FOLLOWS),
    ]
    for name, shown, target, ok in checks:
        print(f"{name:<25}{shown:>8}   target {target:<8} {'met' if ok else 'MISSED'}")
    met = all(ok for *_, ok in checks)
    print(f"targets: {'MET' if met else 'MISSED'}")
    return 0 if met else 1


LOAD_BEFORE = os.getloadavg()


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--sandbox":
        _serve_sandbox(int(sys.argv[2]), int(sys.argv[3]))
    else:
        sys.exit(main())
