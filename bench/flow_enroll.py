"""Flow enrolment: 10,000 contacts enrolled through `POST /automation/flows/{id}/enroll` (batches
of 1,000) into a flow whose first node is cheap (`add_tag`) and whose second waits one day, next
to a bare `start_workflow` loop of a one-activity workflow on the same Temporal server in the
same run, with the same number of starts in flight (services.flows.starts.START_CONCURRENCY).
Then the worker's RSS once every run is parked on its one-day timer, and the history events of
a few runs.

    python -m bench                       # every benchmark
    python -m bench.flow_enroll           # this one; MKTX_BENCH_FLOW_CONTACTS=2000 to change it

PostgreSQL: MKTX_BENCH_DATABASE_URL, else an embedded server under .mkt-x/bench-pg (a fresh
database is created and dropped). Temporal: its own dev server. The API (`uvicorn
api.app:main_app --factory`), the worker (`mkt-x worker`) and the bare loop's worker run as
subprocesses, so each one's CPU and memory are its own. No X call is made (no send node).
Targets: enrolment >= 50% of the bare loop's starts per second; worker RSS < 400 MiB with every
run parked. The bench waits MKTX_BENCH_PARK_TIMEOUT (900 s) after the last call for the runs
to park (on 2 cores they park at ~25 runs/s: seven minutes for 10,000); when they have not, it
prints how many did, the rate and how long all would take, and the RSS at that moment (a miss).
MKTX_BENCH_WORKER_COMMAND runs another worker command line (e.g. a patched worker) in place of
`mkt-x worker`.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from temporalio import activity, workflow

with workflow.unsafe.imports_passed_through():
    import httpx
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url
    from temporalio.client import Client
    from temporalio.contrib.pydantic import pydantic_data_converter
    from temporalio.testing import WorkflowEnvironment
    from temporalio.worker import Worker
    from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

    from api.app import BASE_PATH
    from bench._infra import (
        CpuMeter,
        child_named,
        fresh_database,
        rss_mib,
        stop_process,
        wait_for_pollers,
        wait_until,
    )
    from bench.campaign_send import PeakMemory
    from bench.webhook_ingestion import uvicorn_process
    from mktx.settings import Environment, Settings
    from services.core.auth import Role, issue_token
    from services.flows.starts import START_CONCURRENCY
    from workflows import ids

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
CONTACTS = int(os.environ.get("MKTX_BENCH_FLOW_CONTACTS", "10000"))
BATCH = 1000  # the endpoint's limit per call
WARMUP = 200  # enrolled (and bare-started) first, not measured
WAIT_SECONDS = 86400
WAIT_NODE = "node-2"
HISTORY_SAMPLES = 5
# The worker's command line (another one measures a patched worker the same way).
WORKER_COMMAND = os.environ.get("MKTX_BENCH_WORKER_COMMAND", f"{BIN / 'mkt-x'} worker")
# How long after the last enrol call the bench waits for every run to reach its timer.
PARK_TIMEOUT = float(os.environ.get("MKTX_BENCH_PARK_TIMEOUT", "900"))
TARGET_RATIO = 0.5
TARGET_RSS_MIB = 400.0

FLOW = {
    "name": "Bench enrolment",
    "trigger": {"type": "manual", "config": {}},
    "nodes": [
        {"id": "node-1", "type": "add_tag", "config": {"tags": ["bench-enrolled"]}},
        {"id": WAIT_NODE, "type": "wait", "config": {"duration": WAIT_SECONDS}},
    ],
    "connections": [{"fromNodeId": "node-1", "toNodeId": WAIT_NODE}],
}


def main() -> int:
    global LOAD_BEFORE
    LOAD_BEFORE = os.getloadavg()
    return asyncio.run(_run())


# The yardstick: a one-activity workflow, run by its own worker process -----------------------

BARE_WORKFLOW = "BenchBareWorkflow"
BARE_MODULE = "bench.flow_enroll"  # imported as such by the bare worker, never as __main__


@activity.defn(name="bench.bare")
async def bare_activity(n: int) -> int:
    return n


@workflow.defn(name=BARE_WORKFLOW)
class BareWorkflow:
    @workflow.run
    async def run(self, n: int) -> int:
        return await workflow.execute_activity(
            bare_activity, n, start_to_close_timeout=timedelta(seconds=30)
        )


async def _serve_bare(address: str, task_queue: str) -> None:
    """`python -m bench.flow_enroll --bare-worker ADDRESS QUEUE`: the bare loop's worker."""
    client = await Client.connect(address, data_converter=pydantic_data_converter)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # This module is passed through: the sandbox does not import it again for each run.
    runner = SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(BARE_MODULE)
    )
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[BareWorkflow],
        activities=[bare_activity],
        workflow_runner=runner,
    ):
        await stop.wait()


# Data -----------------------------------------------------------------------------------------


def _seed(url: str, count: int) -> tuple[str, list[uuid.UUID]]:
    """A merchant with one active account and `count` contacts on it (straight into the table:
    the setup is not what is measured)."""
    merchant_id = f"bench-{uuid.uuid4().hex[:8]}"
    account_id = uuid.uuid4()
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                """
                INSERT INTO x_accounts (id, merchant_id, created_at, updated_at, twitter_user_id,
                    username, display_name, status, subscription_status, auto_reply_enabled,
                    connected_at)
                VALUES (:id, :m, now(), now(), '4100000001', 'bench_shop', 'Bench Shop',
                    'active', 'subscribed', false, now())
                """
            ),
            {"id": account_id, "m": merchant_id},
        )
        rows = conn.execute(
            sa.text(
                """
                INSERT INTO contacts (id, merchant_id, created_at, updated_at, account_id,
                    twitter_user_id, username, display_name, tags, attributes, source,
                    opted_out, conversation_count)
                SELECT gen_random_uuid(), :m, now(), now(), :a, (7100000000 + g)::text,
                    'reader_' || g, 'Reader ' || g, ARRAY['bench'], '{}'::jsonb, 'manual',
                    false, 0
                FROM generate_series(1, :n) AS g
                RETURNING id
                """
            ),
            {"m": merchant_id, "a": account_id, "n": count},
        )
        contact_ids = [row.id for row in rows]
    engine.dispose()
    return merchant_id, contact_ids


def _parked(url: str, flow_id: str) -> tuple[int, int]:
    """(runs parked on the wait node, runs started at all) of the flow."""
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        row = conn.execute(
            sa.text(
                """
                SELECT count(*) FILTER (WHERE current_node_id = :node AND status = 'running'),
                    count(*)
                FROM flow_runs WHERE flow_id = :f
                """
            ),
            {"f": flow_id, "node": WAIT_NODE},
        ).one()
    engine.dispose()
    return int(row[0]), int(row[1])


# Runs -----------------------------------------------------------------------------------------


async def _bare_loop(client: Client, task_queue: str, first: int, count: int) -> float:
    """Start `count` bare workflows, START_CONCURRENCY in flight: seconds until all started."""
    slots = asyncio.Semaphore(START_CONCURRENCY)

    async def one(n: int) -> None:
        async with slots:
            await client.start_workflow(
                BareWorkflow.run, n, id=f"bench-bare-{task_queue}-{n}", task_queue=task_queue
            )

    started = time.perf_counter()
    await asyncio.gather(*(one(n) for n in range(first, first + count)))
    return time.perf_counter() - started


async def _count(client: Client, query: str) -> int:
    return (await client.count_workflows(query)).count


async def _enroll(api: httpx.AsyncClient, flow_id: str, contacts: list[uuid.UUID]) -> float:
    """Enrol `contacts` in batches of BATCH, one call after the other: seconds until the last
    call answered (each answers once its runs are started)."""
    started = time.perf_counter()
    for i in range(0, len(contacts), BATCH):
        batch = [str(c) for c in contacts[i : i + BATCH]]
        response = await api.post(
            f"{BASE_PATH}/automation/flows/{flow_id}/enroll", json={"contactIds": batch}
        )
        response.raise_for_status()
        data = response.json()["data"]
        if data["enrolled"] != len(batch) or data["skipped"]:
            raise RuntimeError(f"enrolled {data['enrolled']} of {len(batch)}: {data['skipped']}")
    return time.perf_counter() - started


async def _histories(client: Client, flow_id: str, url: str) -> list[int]:
    """History events of a few parked runs: runs whose row is on the wait node and whose
    history has started the one-day timer (a row can be there a moment before its timer)."""
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        sampled = conn.execute(
            sa.text(
                """
                SELECT workflow_id FROM flow_runs
                WHERE flow_id = :f AND current_node_id = :node ORDER BY random() LIMIT :n
                """
            ),
            {"f": flow_id, "node": WAIT_NODE, "n": 4 * HISTORY_SAMPLES},
        ).scalars()
        workflow_ids = list(sampled)
    engine.dispose()
    lengths = []
    for workflow_id in workflow_ids:
        history = await client.get_workflow_handle(workflow_id).fetch_history()
        if any(
            e.HasField("timer_started_event_attributes")
            and e.timer_started_event_attributes.start_to_fire_timeout.ToSeconds() == WAIT_SECONDS
            for e in history.events
        ):
            lengths.append(len(history.events))
            if len(lengths) == HISTORY_SAMPLES:
                break
    return lengths


def _env(url: str, address: str, task_queue: str) -> dict[str, str]:
    return {
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # as `make bench` exports it: no fetch at import
        **os.environ,
        "MKTX_ENV": "development",
        "MKTX_LOG_LEVEL": os.environ.get("MKTX_BENCH_LOG_LEVEL", "WARNING"),
        "MKTX_DATABASE_URL": url,
        "MKTX_DATABASE_POOL_SIZE": "20",
        "MKTX_TEMPORAL_ADDRESS": address,
        "MKTX_TASK_QUEUE": task_queue,
        "MKTX_RATE_LIMIT_PER_MINUTE": "1000000",
        "MKTX_X_API_BASE_URL": "http://127.0.0.1:9",  # never called: the flow sends nothing
    }


async def _run() -> int:
    with fresh_database("mktx_bench_flow_enroll") as url:
        prepared = time.perf_counter()
        merchant_id, contacts = _seed(url, WARMUP + CONTACTS)
        print(f"seeded {len(contacts)} contacts in {time.perf_counter() - prepared:.1f}s")
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=str(BIN / "temporal"),
            search_attributes=ids.SEARCH_ATTRIBUTES,
            data_converter=pydantic_data_converter,
            dev_server_log_level="error",
        )
        try:
            return await _bench(url, env.client, merchant_id, contacts)
        finally:
            await env.shutdown()


@dataclass
class Figures:
    bare_seconds: float = 0.0
    bare_cpu: CpuMeter | None = None
    enrol_seconds: float = 0.0
    enrol_cpu: CpuMeter | None = None
    park_seconds: float | None = None  # from the first measured call until all parked
    park_cpu: CpuMeter | None = None
    waited: float = 0.0  # after the last call, for the runs to park
    parked: int = 0
    runs: int = 0
    running: int = 0
    rss_mib: float = 0.0
    peak_mib: float = 0.0
    histories: list[int] = field(default_factory=list)


async def _bench(url: str, client: Client, merchant_id: str, contacts: list[uuid.UUID]) -> int:
    address = client.service_client.config.target_host
    database = str(make_url(url).database)
    server_pid = child_named("temporal")
    task_queue = f"bench-flows-{uuid.uuid4().hex[:6]}"
    bare_queue = f"bench-bare-{uuid.uuid4().hex[:6]}"
    logs = REPO / ".mkt-x"
    logs.mkdir(exist_ok=True)
    figures = Figures()
    warmup, measured = contacts[:WARMUP], contacts[WARMUP:]

    # The yardstick first, with its own worker running meanwhile (as the flow worker runs
    # during the enrolment); stopped once the starts are done, its backlog left unpolled.
    bare_worker = subprocess.Popen(
        [sys.executable, "-m", "bench.flow_enroll", "--bare-worker", address, bare_queue],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=(logs / "bench-bare-worker.log").open("wb"),
    )
    try:
        await wait_for_pollers(client, bare_queue)
        await _bare_loop(client, bare_queue, 0, WARMUP)
        await wait_until(
            lambda: _none_running(client, f'WorkflowType = "{BARE_WORKFLOW}"'), timeout=120
        )
        cpu = CpuMeter(database, {"temporal": server_pid, "bare worker": bare_worker.pid}).start()
        figures.bare_seconds = await _bare_loop(client, bare_queue, WARMUP, CONTACTS)
        figures.bare_cpu = cpu.stop()
    finally:
        stop_process(bare_worker)

    env = _env(url, address, task_queue)
    worker = subprocess.Popen(
        WORKER_COMMAND.split(),
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(logs / "bench-flow-worker.log").open("wb"),
    )
    memory = PeakMemory(worker.pid)
    try:
        settings = Settings(_env_file=None, env=Environment.development)  # type: ignore[call-arg]
        token = issue_token(settings, merchant_id=merchant_id, user_id="bench", roles=[Role.admin])
        with uvicorn_process("api.app:main_app", factory=True, env=env) as (api_url, api_server):
            await wait_for_pollers(client, task_queue)
            pids = {"temporal": server_pid, "worker": worker.pid, "api": api_server.pid}
            async with httpx.AsyncClient(
                base_url=api_url, headers={"Authorization": f"Bearer {token}"}, timeout=300
            ) as api:
                flow_id = await _flow(api)

                async def parked(count: int) -> bool:
                    return _parked(url, flow_id)[0] >= count

                await _enroll(api, flow_id, warmup)
                await wait_until(lambda: parked(WARMUP), timeout=120)
                cpu = CpuMeter(database, pids).start()
                park_cpu = CpuMeter(database, pids).start()
                started = time.perf_counter()
                figures.enrol_seconds = await _enroll(api, flow_id, measured)
                figures.enrol_cpu = cpu.stop()
                waited = await wait_until(
                    lambda: parked(WARMUP + CONTACTS), timeout=PARK_TIMEOUT, interval=1.0
                )
                figures.waited = time.perf_counter() - started - figures.enrol_seconds
                if waited is not None:
                    figures.park_seconds = time.perf_counter() - started
                    await asyncio.sleep(2)  # the last workflow tasks (their timers) complete
                figures.park_cpu = park_cpu.stop()
                figures.rss_mib = rss_mib(worker.pid)
                figures.peak_mib = memory.stop() / 2**20
                figures.parked, figures.runs = _parked(url, flow_id)
                figures.parked -= WARMUP
                figures.runs -= WARMUP
                figures.running = await _count(
                    client, f'FlowId = "{flow_id}" AND ExecutionStatus = "Running"'
                )
                figures.running -= WARMUP
                figures.histories = await _histories(client, flow_id, url)
    finally:
        stop_process(worker)
    return _report(figures)


async def _flow(api: httpx.AsyncClient) -> str:
    created = await api.post(f"{BASE_PATH}/automation/flows", json=FLOW)
    created.raise_for_status()
    flow_id = str(created.json()["data"]["id"])
    activated = await api.post(f"{BASE_PATH}/automation/flows/{flow_id}/activate")
    activated.raise_for_status()
    return flow_id


def _report(f: Figures) -> int:
    enrol_rate = CONTACTS / f.enrol_seconds
    bare_rate = CONTACTS / f.bare_seconds
    ratio = enrol_rate / bare_rate
    all_parked = f.park_seconds is not None
    print(
        f"{CONTACTS} contacts (+{WARMUP} warm-up), batches of {BATCH}, {START_CONCURRENCY} "
        f"starts in flight, {os.cpu_count()} CPUs, load average {LOAD_BEFORE[0]:.1f} before"
    )
    assert f.bare_cpu and f.enrol_cpu and f.park_cpu
    print(
        f"enroll endpoint:       {enrol_rate:8.0f} runs started/s  ({f.enrol_seconds:.1f}s, "
        f"{-(-CONTACTS // BATCH)} calls; CPU {f.enrol_cpu.line()})"
    )
    print(
        f"bare start_workflow:   {bare_rate:8.0f} starts/s  ({f.bare_seconds:.1f}s; "
        f"CPU {f.bare_cpu.line()})"
    )
    print(f"ratio:                 {ratio:8.2f}  (target >= {TARGET_RATIO})")
    if f.park_seconds is not None:
        print(
            f"all parked on the wait: {f.park_seconds:.1f}s after the first call "
            f"({CONTACTS / f.park_seconds:.0f} runs/s from enrolment to the one-day timer; "
            f"CPU {f.park_cpu.line()})"
        )
    else:
        rate = f.parked / (f.enrol_seconds + f.waited)
        print(
            f"parked on the wait:    only {f.parked} of {CONTACTS} when the bench stopped "
            f"waiting ({f.waited:.0f}s after the last call; MKTX_BENCH_PARK_TIMEOUT), "
            f"{rate:.1f} runs/s: all would take ~{CONTACTS / max(rate, 0.01):.0f}s "
            f"(CPU {f.park_cpu.line()})"
        )
    print(f"runs: {f.runs} rows, {f.parked} parked on {WAIT_NODE}, {f.running} workflows running")
    print(f"history events / run:  {f.histories or 'none parked'} (parked runs, sampled)")
    print(
        f"worker RSS:            {f.rss_mib:8.0f} MiB  "
        f"({'all parked' if all_parked else 'NOT all parked yet'}; peak {f.peak_mib:.0f} MiB; "
        f"target < {TARGET_RSS_MIB:.0f} MiB)"
    )
    checks = [
        (
            "enrol ratio to bare",
            f"{ratio:.2f}",
            f">= {TARGET_RATIO}",
            ratio >= TARGET_RATIO,
        ),
        (
            "worker RSS, all parked",
            f"{f.rss_mib:.0f}",
            f"< {TARGET_RSS_MIB:.0f}",
            all_parked and f.rss_mib < TARGET_RSS_MIB,
        ),
        (
            "runs parked",
            f"{f.parked}",
            f"= {CONTACTS}",
            f.parked == CONTACTS and f.running == CONTACTS,
        ),
    ]
    for name, shown, target, ok in checks:
        print(f"{name:<24}{shown:>8}   target {target:<8} {'met' if ok else 'MISSED'}")
    met = all(ok for *_, ok in checks)
    print(f"targets: {'MET' if met else 'MISSED'}")
    return 0 if met else 1


async def _none_running(client: Client, query: str) -> bool:
    return await _count(client, f'{query} AND ExecutionStatus = "Running"') == 0


LOAD_BEFORE = os.getloadavg()


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--bare-worker":
        from bench import flow_enroll  # the workflow's module by its name (see BARE_MODULE)

        asyncio.run(flow_enroll._serve_bare(sys.argv[2], sys.argv[3]))
    else:
        sys.exit(main())
