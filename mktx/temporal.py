"""The Temporal client of a process (pydantic data converter) and the custom search attributes."""

from __future__ import annotations

import logging

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from mktx import metrics, tracing
from mktx.settings import Settings
from workflows.ids import SEARCH_ATTRIBUTES

logger = logging.getLogger(__name__)


async def connect_temporal(settings: Settings, runtime: Runtime | None = None) -> Client:
    """Where tracing is on, the client traces its calls, and a worker built on it its
    workflows and activities (the same interceptor)."""
    return await Client.connect(
        settings.require_temporal_address(),
        namespace=settings.temporal_namespace,
        data_converter=pydantic_data_converter,
        runtime=runtime,
        interceptors=tracing.temporal_interceptors(),
    )


def metrics_runtime(port: int) -> Runtime:
    """A Temporal runtime whose Prometheus exporter serves, on every interface at `port`, the
    SDK's metrics (workflow and activity task latencies, polls, sticky cache, ...) and, once
    `mktx.metrics.use_temporal_meter` points there, the service's own."""
    return Runtime(
        telemetry=TelemetryConfig(
            metrics=PrometheusConfig(
                bind_address=f"0.0.0.0:{port}",
                counters_total_suffix=True,
                durations_as_seconds=True,
                histogram_bucket_overrides=metrics.histogram_buckets(),
            )
        )
    )


async def ensure_search_attributes(client: Client) -> None:
    """Create MerchantId, AccountId, … as Keyword attributes where the namespace lacks them."""
    existing = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=client.namespace)
    )
    missing = {
        key.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
        for key in SEARCH_ATTRIBUTES
        if key.name not in existing.custom_attributes
    }
    if not missing:
        return
    await client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(namespace=client.namespace, search_attributes=missing)
    )
    logger.info("temporal.search_attributes_created", extra={"names": sorted(missing)})
