"""The service's own metrics: each defined once here, recorded where it happens, exported by
whichever process records it.

- The API records with prometheus_client. Under `mkt-x api --workers N` every process writes
  its samples to PROMETHEUS_MULTIPROC_DIR (the CLI sets one up) and `GET /metrics` sums them
  (`render`), so a scrape sees the whole API whichever process answers it.
- The worker records into the Temporal runtime's meter (`use_temporal_meter`): the runtime's
  Prometheus exporter (MKTX_WORKER_METRICS_PORT) then serves them beside the SDK's own
  `temporal_*` metrics, on one port.

Names follow Prometheus' conventions: `mktx_` prefix, counters end in `_total`, durations in
seconds. Labels take a handful of values each (a route template, never a path with ids).
This module imports nothing of the product: every layer may record.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

# Seconds: from a fast read to a slow model call.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


@dataclass
class _Metric:
    name: str  # counters without their `_total` (both exporters add it)
    documentation: str
    labels: tuple[str, ...]
    _prometheus: Any = field(default=None, repr=False)
    _temporal: Any = field(default=None, repr=False)

    def _check(self, labels: dict[str, str]) -> dict[str, str]:
        if set(labels) != set(self.labels):
            raise ValueError(f"{self.name} takes the labels {self.labels}, got {sorted(labels)}")
        return {k: str(v) for k, v in labels.items()}


class Counter(_Metric):
    def inc(self, amount: int = 1, **labels: str) -> None:
        values = self._check(labels)
        if _backend.meter is not None:
            if self._temporal is None:
                self._temporal = _backend.meter.create_counter(self.name, self.documentation)
            self._temporal.add(amount, values)
            return
        if self._prometheus is None:
            from prometheus_client import Counter as PrometheusCounter

            self._prometheus = PrometheusCounter(self.name, self.documentation, self.labels)
        (self._prometheus.labels(**values) if self.labels else self._prometheus).inc(amount)


class Histogram(_Metric):
    def observe(self, seconds: float, **labels: str) -> None:
        values = self._check(labels)
        if _backend.meter is not None:
            if self._temporal is None:
                self._temporal = _backend.meter.create_histogram_float(
                    self.name, self.documentation, "s"
                )
            self._temporal.record(seconds, values)
            return
        if self._prometheus is None:
            from prometheus_client import Histogram as PrometheusHistogram

            self._prometheus = PrometheusHistogram(
                self.name, self.documentation, self.labels, buckets=LATENCY_BUCKETS
            )
        (self._prometheus.labels(**values) if self.labels else self._prometheus).observe(seconds)


@dataclass
class _Backend:
    meter: Any = None  # temporalio.common.MetricMeter, in the worker


_backend = _Backend()

HTTP_REQUESTS = Counter(
    "mktx_http_requests",
    "HTTP requests answered, by route template, method and status",
    ("route", "method", "status"),
)
HTTP_DURATION = Histogram(
    "mktx_http_request_duration_seconds",
    "Time to answer an HTTP request, by route template and method",
    ("route", "method"),
)
WEBHOOK_EVENTS = Counter(
    "mktx_webhook_events",
    "X events received in webhook deliveries, by type and what became of them "
    "(stored, duplicate, failed: stored but not applied yet, unrouted: no connected account)",
    ("type", "outcome"),
)
DMS = Counter(
    "mktx_dms",
    "DMs settled by the one send path, by kind (campaign, flow, reply, ...) and outcome "
    "(sent, failed, skipped, held)",
    ("kind", "outcome"),
)
SEND_WAITS = Counter(
    "mktx_send_waits",
    "Sends put off, by reason: quota (the merchant's or account's window is spent), "
    "rate_limit (X's limits), unavailable (X down), claimed (another attempt holds the DM)",
    ("reason",),
)
FLOW_RUNS = Counter(
    "mktx_flow_runs",
    "Automation flow runs, by status: started, completed, exited, failed, cancelled",
    ("status",),
)
LLM_CALLS = Counter(
    "mktx_llm_calls",
    "Calls to the model, by outcome (ok, invalid, timeout, error, ...)",
    ("outcome",),
)
LLM_TOKENS = Counter(
    "mktx_llm_tokens",
    "Tokens of the model's calls, by kind (prompt, completion)",
    ("kind",),
)
LLM_DURATION = Histogram("mktx_llm_call_duration_seconds", "Time of one call to the model", ())

ALL: Sequence[_Metric] = (
    HTTP_REQUESTS,
    HTTP_DURATION,
    WEBHOOK_EVENTS,
    DMS,
    SEND_WAITS,
    FLOW_RUNS,
    LLM_CALLS,
    LLM_TOKENS,
    LLM_DURATION,
)


def use_temporal_meter(meter: Any) -> None:
    """From now on, record into this Temporal runtime meter (the worker's exporter)."""
    _backend.meter = meter
    for metric in ALL:
        metric._temporal = None


def histogram_buckets() -> dict[str, list[float]]:
    """The buckets of this module's histograms, for the Temporal exporter's overrides."""
    return {m.name: list(LATENCY_BUCKETS) for m in ALL if isinstance(m, Histogram)}


def render() -> tuple[bytes, str]:
    """The exposition of this process's metrics (of every API process, in multi-process
    mode): (body, content type)."""
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

    if os.environ.get(MULTIPROC_DIR_ENV):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
