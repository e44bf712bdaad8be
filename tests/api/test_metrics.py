"""Metrics (mktx/metrics.py): `GET /metrics` in Prometheus text, by route template, guarded,
summed over the processes of `mkt-x api --workers 2`; the worker's exporter serving Temporal's
metrics, and the service's own counters recorded through the Temporal runtime's meter."""

from __future__ import annotations

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
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from api.app import BASE_PATH, create_app
from mktx import metrics
from mktx.settings import Settings
from sandbox.admin import SandboxAdmin
from tests.conftest import Api
from tests.webhooks.conftest import connect, follow_payload, post_signed, x_user

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CONTACT_ROUTE = f"{BASE_PATH}/contacts/{{contactId}}"


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples named `name`, by their sorted labels."""
    found: dict[tuple[tuple[str, str], ...], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def requests_of(text: str, route: str, status: str) -> float:
    return sum(
        value
        for labels, value in samples(text, "mktx_http_requests_total").items()
        if dict(labels).get("route") == route and dict(labels).get("status") == status
    )


async def test_requests_are_counted_by_route_template_never_by_path(
    api: Api, app_client: httpx.AsyncClient
) -> None:
    before = (await app_client.get("/metrics")).text
    missing = str(uuid.uuid4())
    for _ in range(3):
        assert (await api.get(f"/contacts/{missing}")).status_code == 404

    answer = await app_client.get("/metrics")

    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    grown = requests_of(answer.text, CONTACT_ROUTE, "404") - requests_of(
        before, CONTACT_ROUTE, "404"
    )
    assert grown == 3, samples(answer.text, "mktx_http_requests_total")
    assert missing not in answer.text
    durations = samples(answer.text, "mktx_http_request_duration_seconds_count")
    assert durations[(("method", "GET"), ("route", CONTACT_ROUTE))] >= 3


async def test_webhook_events_are_counted_by_type_and_outcome(
    api: Api, app_client: httpx.AsyncClient, x_admin: SandboxAdmin
) -> None:
    shop = await connect(api, await x_user(x_admin, "shop"))
    payload = follow_payload(shop, await x_user(x_admin, "fan"))

    def follows(text: str) -> dict[str, float]:
        return {
            dict(labels)["outcome"]: value
            for labels, value in samples(text, "mktx_webhook_events_total").items()
            if dict(labels)["type"] == "follow"
        }

    before = follows((await app_client.get("/metrics")).text)
    for _ in range(2):  # X delivering the same event twice
        assert (await post_signed(app_client, payload)).status_code == 200
    after = follows((await app_client.get("/metrics")).text)

    grown = {k: after.get(k, 0) - before.get(k, 0) for k in ("stored", "duplicate")}
    assert grown == {"stored": 1, "duplicate": 1}


@pytest.fixture
async def guarded(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, ...]]:
    """Clients of an app with MKTX_METRICS_TOKEN set, and of one without it seen from
    another host than the loopback."""
    with_token = create_app(settings.model_copy(update={"metrics_token": SecretStr("s3cret")}))
    without = create_app(settings)
    async with (
        with_token.router.lifespan_context(with_token),
        without.router.lifespan_context(without),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=with_token, client=("10.1.2.3", 4000)),
            base_url="http://mktx.test",
        ) as tokened,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=without, client=("10.1.2.3", 4000)),
            base_url="http://mktx.test",
        ) as remote,
    ):
        yield tokened, remote


async def test_metrics_are_for_the_loopback_or_the_token_holder(
    guarded: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    tokened, remote = guarded

    refused = await remote.get("/metrics")
    assert refused.status_code == 403
    assert refused.json()["code"] == "FORBIDDEN"
    assert (await tokened.get("/metrics")).status_code == 401
    wrong = await tokened.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert wrong.json()["code"] == "UNAUTHORIZED"
    right = await tokened.get("/metrics", headers={"Authorization": "Bearer s3cret"})
    assert right.status_code == 200
    assert "mktx_http_requests_total" in right.text


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError(f"nothing answered at {url} within {timeout}s")


@pytest.fixture
def process_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MKTX_", "PROMETHEUS_"))}
    env.update(
        PYTHONPATH=str(REPO),
        LITELLM_LOCAL_MODEL_COST_MAP="True",
        MKTX_ENV="test",
        MKTX_LOG_LEVEL="WARNING",
        MKTX_DATABASE_URL=str(settings.database_url),
        MKTX_TEMPORAL_ADDRESS=str(settings.temporal_address),
        MKTX_TASK_QUEUE=f"metrics-{uuid.uuid4().hex[:6]}",
    )
    return env


@pytest.fixture
def two_api_processes(process_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [str(BIN / "mkt-x"), "api", "--port", str(port), "--workers", "2"],
        cwd=tmp_path,
        env=process_env,
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "api.log").open("wb"),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{url}/healthz")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_every_api_process_counts_into_one_scrape(two_api_processes: str) -> None:
    url = two_api_processes
    before = requests_of(httpx.get(f"{url}/metrics", timeout=10).text, "/healthz", "200")
    for _ in range(40):
        # A connection each: the two processes share the socket, both answer some.
        with httpx.Client(base_url=url, timeout=10) as client:
            assert client.get("/healthz").status_code == 200
    scrapes = [httpx.get(f"{url}/metrics", timeout=10).text for _ in range(6)]

    # Whichever process answers, the scrape holds every process's count.
    assert [requests_of(text, "/healthz", "200") - before for text in scrapes] == [40.0] * 6


def test_the_worker_serves_temporal_metrics_on_its_port(
    process_env: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    process = subprocess.Popen(
        [str(BIN / "mkt-x"), "worker"],
        cwd=tmp_path,
        env={**process_env, "MKTX_WORKER_METRICS_PORT": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "worker.log").open("wb"),
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/metrics")
        deadline = time.monotonic() + 20
        text = ""
        while time.monotonic() < deadline and "temporal_" not in text:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            time.sleep(0.5)
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert "temporal_" in text, (tmp_path / "worker.log").read_text()[-2000:]


def test_the_worker_s_own_counters_go_out_through_the_temporal_exporter() -> None:
    port = free_port()
    runtime = Runtime(
        telemetry=TelemetryConfig(
            metrics=PrometheusConfig(
                bind_address=f"127.0.0.1:{port}",
                counters_total_suffix=True,
                durations_as_seconds=True,
                histogram_bucket_overrides=metrics.histogram_buckets(),
            )
        )
    )
    metrics.use_temporal_meter(runtime.metric_meter)
    try:
        metrics.DMS.inc(kind="flow", outcome="sent")
        metrics.DMS.inc(2, kind="flow", outcome="sent")
        metrics.LLM_DURATION.observe(0.3)
        text = ""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "mktx_llm_call_duration" not in text:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            time.sleep(0.2)
    finally:
        metrics.use_temporal_meter(None)
    dms = {
        dict(labels).get("kind"): value
        for labels, value in samples(text, "mktx_dms_total").items()
        if dict(labels).get("outcome") == "sent"
    }
    assert dms == {"flow": 3}
    assert "mktx_llm_call_duration_seconds_bucket" in text
