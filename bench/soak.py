"""Soak: the whole service under a steady mixed load for ten minutes, watching each process's
memory and the answer times minute by minute, then checking the work was done exactly once.

Two API processes (`mkt-x api`, two ports; the load alternates) and two workers (`mkt-x
worker`, one task queue) against one PostgreSQL database, one Temporal dev server and the
sandbox (X and the LLM), all at once:

- signed webhooks at a steady rate (MKTX_BENCH_SOAK_RATE, 25/s): follows of the shop, DMs to
  the shop that the AI assistant answers through the sandbox's OpenAI-compatible endpoint
  (2/s), and DMs to a second account that only stores them (the rest);
- API reads (10/s): contacts (plain and searched), conversations, the campaign's status and
  the analytics overview;
- a 20,000-recipient campaign, started through the API as the load begins;
- 500 flow runs a minute (5,000 in ten): a `new_follower` flow (a 30 s wait, then a DM), 80 %
  started by the follows, 20 % enrolled through POST /automation/flows/{id}/enroll.

    python -m bench                     # every benchmark (this one for 10 minutes)
    python -m bench.soak --minutes 2    # this one; --help for the rates

It prints, per process, the RSS at the start and end of the load and its least-squares slope
over the samples (every 10 s) after the warm-up (the first 2 minutes, or 20 % of a shorter
run), the webhooks' and the reads' p50/p95/p99 per minute, the 5xx count, and the checks of
the sandbox's DM log. Targets: slope < 2 MiB/min for each API and worker process, no 5xx and
no request left unanswered, the campaign and every flow run completed with exactly one DM each,
every customer DM answered, the rate sustained. PostgreSQL: MKTX_BENCH_DATABASE_URL, else the
embedded server (a fresh database, dropped afterwards). Temporal: its dev server, in memory.
Logs: .mkt-x/bench-soak-*.log. MKTX_BENCH_SOAK_MINUTES sets the length (0: skipped).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

from pydantic import SecretStr
from sqlalchemy.engine import make_url
from temporalio.client import Client

from bench import _soak_checks as checks
from bench._infra import (
    REPO,
    CpuMeter,
    free_port,
    fresh_database,
    start_process,
    start_temporal,
    stop_process,
    wait_for_pollers,
    wait_http,
)
from bench._soak_load import Load, Rates, Samples
from bench._soak_report import Check, minute_table, rss_tables, verdict
from bench._soak_world import CONSUMER_KEY, CONSUMER_SECRET, LLM_KEY, Merchant, seed, set_up
from mktx.settings import Environment, Settings
from sandbox.admin import SandboxAdmin

BIN = Path(sys.executable).parent
LOGS = REPO / ".mkt-x"
WARMUP_SECONDS = 120.0
WARMUP_SHARE = 0.2
ENROLLED_SHARE = 0.2  # of the flow runs; the follows start the rest


def _options(argv: list[str]) -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--minutes", type=float, default=float(env("MKTX_BENCH_SOAK_MINUTES", "10"))
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=float(env("MKTX_BENCH_SOAK_RATE", "25")),
        help="webhook events per second, every kind together",
    )
    parser.add_argument(
        "--replies", type=float, default=2.0, help="of which DMs the assistant answers, per second"
    )
    parser.add_argument("--reads", type=float, default=10.0, help="API reads per second")
    parser.add_argument("--recipients", type=int, default=20_000, help="the campaign's")
    parser.add_argument("--flow-runs-per-minute", type=int, default=500)
    parser.add_argument("--wait", type=int, default=30, help="the flow's wait node, seconds")
    parser.add_argument(
        "--drain",
        type=float,
        default=300.0,
        help="seconds the work may take to finish after the load",
    )
    parser.add_argument(
        "--pool",
        type=int,
        default=int(env("MKTX_BENCH_SOAK_POOL", "10")),
        help="database pool size per process (as much again may overflow)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """`make bench` calls this without arguments: the ten-minute default (or
    MKTX_BENCH_SOAK_MINUTES; 0 skips it, e.g. for a quick `make bench`)."""
    options = _options(argv or [])
    if options.minutes <= 0:
        print("soak skipped (MKTX_BENCH_SOAK_MINUTES=0)")
        return 0
    return asyncio.run(_run(options))


def _env(settings: Settings, pool: int) -> dict[str, str]:
    assert settings.database_url is not None and settings.llm_api_base is not None
    return {
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # as `make bench` exports it: no fetch at import
        **os.environ,
        "MKTX_ENV": "development",
        "MKTX_LOG_LEVEL": os.environ.get("MKTX_BENCH_LOG_LEVEL", "WARNING"),
        "MKTX_DATABASE_URL": settings.database_url,
        "MKTX_DATABASE_POOL_SIZE": str(pool),
        "MKTX_TEMPORAL_ADDRESS": settings.require_temporal_address(),
        "MKTX_TASK_QUEUE": settings.task_queue,
        "MKTX_X_API_BASE_URL": settings.x_api_base_url,
        "MKTX_X_CONSUMER_KEY": CONSUMER_KEY,
        "MKTX_X_CONSUMER_SECRET": CONSUMER_SECRET,
        "MKTX_LLM_API_BASE": settings.llm_api_base,
        "MKTX_LLM_API_KEY": LLM_KEY,
        "MKTX_RATE_LIMIT_PER_MINUTE": "10000000",
        "MKTX_DM_LIMIT_PER_24H": "10000000",
        "MKTX_CAMPAIGN_LIMIT_PER_24H": "10000000",
    }


async def _run(options: argparse.Namespace) -> int:
    seconds = 60 * options.minutes
    flow_runs = round(options.flow_runs_per_minute * options.minutes)
    enrolled = round(ENROLLED_SHARE * flow_runs)
    rates = Rates(options.rate, flow_runs - enrolled, options.replies, options.reads, seconds)
    load_before = os.getloadavg()
    with fresh_database("mktx_bench_soak") as url:
        # In memory, as the other benchmarks run it: no disk writes to wait for on a busy
        # machine; its RSS then includes every history (shown, not held to the target).
        temporal, client = await start_temporal("bench-soak-temporal.log")
        sandbox: subprocess.Popen[bytes] | None = None
        try:
            sandbox_url = f"http://127.0.0.1:{free_port()}"
            settings = Settings(
                _env_file=None,  # type: ignore[call-arg]
                env=Environment.development,
                database_url=url,
                temporal_address=client.service_client.config.target_host,
                task_queue=f"bench-soak-{uuid.uuid4().hex[:6]}",
                x_api_base_url=sandbox_url,
                x_consumer_key=SecretStr(CONSUMER_KEY),
                x_consumer_secret=SecretStr(CONSUMER_SECRET),
                llm_api_base=f"{sandbox_url}/v1",
                llm_api_key=SecretStr(LLM_KEY),
            )
            sandbox = start_process(
                [
                    sys.executable,
                    "-m",
                    "bench.soak",
                    "--sandbox",
                    sandbox_url.rsplit(":", 1)[1],
                    str(options.recipients),
                    str(rates.follows),
                    str(enrolled),
                ],
                {**os.environ},
                "bench-soak-sandbox.log",
            )
            await asyncio.to_thread(wait_http, sandbox_url + "/", sandbox)
            admin = SandboxAdmin(sandbox_url)
            for endpoint in ("dm_send", "dm_events"):
                await admin.set_rate_limit(endpoint, 10_000_000, 900)
            shop = await admin.create_user(f"soak_shop_{uuid.uuid4().hex[:6]}", name="Soak Shop")
            merchant = seed(url, settings, shop, options.recipients, enrolled)
            print(
                f"soak: {options.minutes:g} min; webhooks {rates.webhooks:g}/s (follows "
                f"{rates.follow_rate:.1f}/s, assistant DMs {rates.customer_dms:g}/s, other DMs "
                f"{rates.quiet_rate:.1f}/s), reads {rates.reads:g}/s, a {options.recipients}-"
                f"recipient campaign, {flow_runs} flow runs ({rates.follows} by follows, "
                f"{enrolled} enrolled; {options.wait}s wait then a DM); 2 API processes, 2 "
                f"workers; {os.cpu_count()} CPUs, load average {load_before[0]:.1f} before",
                flush=True,
            )
            return await _soak(options, settings, url, merchant, rates, client, [sandbox, temporal])
        finally:
            if sandbox is not None:
                stop_process(sandbox)
            stop_process(temporal)


async def _soak(
    options: argparse.Namespace,
    settings: Settings,
    url: str,
    merchant: Merchant,
    rates: Rates,
    client: Client,
    infrastructure: list[subprocess.Popen[bytes]],
) -> int:
    env = _env(settings, options.pool)
    metrics_ports = {f"worker-{n}": free_port() for n in (1, 2)}
    processes = {
        f"worker-{n}": start_process(
            [str(BIN / "mkt-x"), "worker"],
            {**env, "MKTX_WORKER_METRICS_PORT": str(metrics_ports[f"worker-{n}"])},
            f"bench-soak-worker-{n}.log",
        )
        for n in (1, 2)
    }
    ports = [free_port(), free_port()]
    api_urls = [f"http://127.0.0.1:{port}" for port in ports]
    for n, port in enumerate(ports, 1):
        processes[f"api-{n}"] = start_process(
            [str(BIN / "mkt-x"), "api", "--port", str(port)], env, f"bench-soak-api-{n}.log"
        )
    try:
        for n, api_url in enumerate(api_urls, 1):
            await asyncio.to_thread(wait_http, api_url + "/healthz", processes[f"api-{n}"])
        await wait_for_pollers(client, settings.task_queue)
        setup = await set_up(api_urls[0], merchant, options.wait)
        await asyncio.sleep(3)  # both workers polling, the triggers armed in both APIs
        pids = {name: process.pid for name, process in sorted(processes.items())}
        pids["sandbox"], pids["temporal"] = (process.pid for process in infrastructure)
        samples = Samples(pids, metrics_ports)
        database = str(make_url(url).database)
        # The generator's own CPU too: on a busy machine it tells whether it kept up.
        cpu = CpuMeter(database, {**pids, "generator": os.getpid()}).start()
        load = Load(api_urls, merchant, setup, rates)
        await load.run(samples)
        cpu.stop()
        sent = max((a.at for a in load.answers if a.kind == "webhook"), default=0.0)
        print(
            f"load sent in {sent:.0f}s (the generator ran up to {load.lag_ms:.0f} ms late; "
            f"CPU seconds used: {cpu.line()}); draining (at most {options.drain:.0f}s)",
            flush=True,
        )
        final, waited = await checks.drain(
            url, merchant, setup, len(load.flow_must), load.customer_ok, options.drain
        )
        for line in await checks.stuck_runs(url, setup, client):
            print(f"still running: {line}")
        dm_checks = await checks.dm_checks(
            settings.x_api_base_url,
            merchant,
            options.recipients,
            load.flow_must,
            load.flow_maybe,
            (load.customer_ok, load.customer_unknown),
        )
    finally:
        for process in processes.values():
            stop_process(process)
    return _report(options, load, samples, final, waited, dm_checks, sent)


def _report(
    options: argparse.Namespace,
    load: Load,
    samples: Samples,
    final: checks.State,
    waited: float,
    dm_checks: list[Check],
    sent: float,
) -> int:
    warmup = min(WARMUP_SECONDS, WARMUP_SHARE * sent)
    print(
        f"answer times by minute of the load (webhooks and reads, ms; sent at {options.rate:g}/s "
        f"and {options.reads:g}/s, the two API processes in turn)"
    )
    minute_table(load.answers, int(sent // 60) + (1 if sent % 60 > 1 else 0))
    print(
        f"RSS per process; slope: least squares over the samples from {warmup:.0f}s to the end "
        f"of the load ({sent:.0f}s), every {10}s"
    )
    all_checks = rss_tables(samples, warmup, sent)
    print(f"after {waited:.0f}s of drain: {final.line()}")
    for log, errors in checks.log_errors(sorted(LOGS.glob("bench-soak-*.log"))).items():
        if errors:
            print(f"logged by {log}:")
            for event, n in errors.most_common(6):
                print(f"  {n:>6}  {event}")
    answers = load.answers
    fivexx = sum(1 for a in answers if a.status >= 500)
    unanswered = sum(1 for a in answers if a.status == 0)
    other = sum(1 for a in answers if 300 <= a.status < 500)
    hooks = sum(1 for a in answers if a.kind == "webhook")
    rate = hooks / max(sent, 1.0)  # as sent: behind its clock, the generator sends late
    must, maybe = len(load.flow_must), len(load.flow_maybe)
    completed = final.runs.get("completed", 0)
    runs_ok = (
        completed == sum(final.runs.values()) == final.run_contacts
        and must <= completed <= must + maybe
    )
    all_checks += [
        Check("5xx answers", str(fivexx), "= 0", fivexx == 0),
        Check("requests without an answer", str(unanswered), "= 0", unanswered == 0),
        Check("other non-2xx answers", str(other), "= 0", other == 0),
        Check(
            "webhook rate sustained",
            f"{rate:.1f}/s",
            f">= {0.95 * options.rate:.1f}/s",
            rate >= 0.95 * options.rate,
        ),
        Check("campaign completed", final.campaign, "completed", final.campaign == "completed"),
        Check("flow runs completed, one each", f"{completed}/{must}", f"= {must}", runs_ok),
        *dm_checks,
    ]
    return verdict(all_checks)


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--sandbox":
        from bench._soak_world import serve_sandbox

        serve_sandbox(*(int(a) for a in sys.argv[2:]))
    else:
        sys.exit(main(sys.argv[1:]))
