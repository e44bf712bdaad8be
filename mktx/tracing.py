"""OpenTelemetry traces, on only where `OTEL_EXPORTER_OTLP_ENDPOINT` (or
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set.

One trace follows an X delivery through the process boundaries: the API's server span, the
Temporal calls ingestion makes after the answer (`SignalWithStartWorkflow:FlowRun`, ...), the
workflow they start or signal (`RunWorkflow:...`, Temporal's TracingInterceptor on the client
and the worker carries the context in the calls' headers), its activities (`RunActivity:...`)
and their HTTP calls to X and the LLM (requests and httpx instrumented). Log lines written
while a span is current carry its `trace_id` and `span_id` (mktx.logs).

Off (the variable unset): nothing of the SDK, the exporter or the instrumentations is
imported (some 300 ms at start), no thread is started, nothing is sent; every helper below is
a no-op costing one global read. What this module imports at the top is what every process
has anyway.

The state is the process's (one TracerProvider, libraries patched once): the API and the
worker call `configure_tracing` at their start, each with its service name; a process that
runs both (the tests) traces both under the first name.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from functools import partial
from typing import TYPE_CHECKING, Any

from mktx import logs

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from temporalio.api.common.v1 import Payload
    from temporalio.client import Interceptor

API_SERVICE = "mkt-x-api"
WORKER_SERVICE = "mkt-x-worker"

# Either turns tracing on; the exporter reads them itself (the generic one gets /v1/traces).
ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
# Probes and scrapes come many times a minute, each like the last: not worth a trace.
UNTRACED_URLS = "/healthz,/readyz,/metrics"


def tracing_requested(env: Mapping[str, str] = os.environ) -> bool:
    """An OTLP endpoint is set and the SDK is not disabled (OTEL_SDK_DISABLED=true)."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return any(env.get(name, "").strip() for name in ENDPOINT_VARIABLES)


class Tracing:
    """The process's tracing once configured: its provider, the tracer of its own spans, and
    the Temporal interceptor its clients and workers use."""

    def __init__(self, provider: TracerProvider) -> None:
        from temporalio.contrib.opentelemetry import TracingInterceptor

        self.provider = provider
        self.tracer = provider.get_tracer("mktx")
        self.interceptor = TracingInterceptor(self.tracer)

    def instrument_app(self, app: Any) -> None:
        """Server spans for the FastAPI app's requests, from its outermost layer (so the
        webhook fast path and the access log are inside them)."""
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(
            app,
            tracer_provider=self.provider,
            excluded_urls=os.environ.get("OTEL_PYTHON_FASTAPI_EXCLUDED_URLS", UNTRACED_URLS),
            # One span per ASGI message would triple the spans of every request.
            exclude_spans=["receive", "send"],
        )


_active: Tracing | None = None


def configure_tracing(service_name: str, *, exporter: SpanExporter | None = None) -> Tracing | None:
    """Tracing for this process, configured on the first call (later calls return the same):
    None when it is off. The OTLP exporter (HTTP/protobuf) batches spans in a thread of its
    own and reads the OTEL_EXPORTER_OTLP_* variables itself; `OTEL_SERVICE_NAME` overrides
    `service_name`, `OTEL_RESOURCE_ATTRIBUTES` and `OTEL_TRACES_SAMPLER` apply as the SDK
    reads them. `exporter` (tests) replaces it, spans going to it one by one, and leaves the
    global TracerProvider alone so that `reset` undoes everything."""
    global _active
    if _active is not None:
        return _active
    if exporter is None and not tracing_requested():
        return None
    from opentelemetry import trace
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.requests import RequestsInstrumentor
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    name = os.environ.get("OTEL_SERVICE_NAME", "").strip() or service_name
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}))
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        # For libraries that trace through the global provider (none of ours needs it).
        trace.set_tracer_provider(provider)
    else:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    # tweepy calls X through requests; httpx is the sandbox's and litellm's client. (The
    # exporter's own requests are not traced: the SDK suppresses instrumentation there.)
    RequestsInstrumentor().instrument(tracer_provider=provider)
    HTTPXClientInstrumentor().instrument(tracer_provider=provider)
    logs.use_span_ids(partial(_span_ids, trace.get_current_span))
    _active = Tracing(provider)
    return _active


def reset() -> None:
    """Undo `configure_tracing` (tests): libraries unpatched, spans flushed, logs plain."""
    global _active
    active, _active = _active, None
    if active is None:
        return
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.requests import RequestsInstrumentor

    RequestsInstrumentor().uninstrument()
    HTTPXClientInstrumentor().uninstrument()
    logs.use_span_ids(None)
    active.provider.shutdown()


def active() -> Tracing | None:
    return _active


def temporal_interceptors() -> list[Interceptor]:
    """For `Client.connect`: a worker built on that client traces its workflows and
    activities too."""
    return [_active.interceptor] if _active is not None else []


def current_context() -> object | None:
    """The trace context of the moment, to carry with work handed to another task (None when
    tracing is off); `attached` makes it current again there."""
    if _active is None:
        return None
    from opentelemetry import context

    return context.get_current()


def attached(trace_context: object | None) -> AbstractContextManager[None]:
    """Inside the block, `trace_context` (from `current_context`) is the current one; None
    changes nothing."""
    if trace_context is None or _active is None:
        return nullcontext()
    return _attached(trace_context)


def detached() -> AbstractContextManager[None]:
    """Inside the block no span is current: work done for many traces at once (a batch) is
    not filed under the one that happened to start it."""
    if _active is None:
        return nullcontext()
    from opentelemetry.context import Context

    return _attached(Context())


@contextmanager
def _attached(trace_context: Any) -> Iterator[None]:
    from opentelemetry import context

    token = context.attach(trace_context)
    try:
        yield
    finally:
        context.detach(token)


@contextmanager
def temporal_call(name: str, workflow_id: str) -> Iterator[Mapping[str, Payload]]:
    """For a Temporal request made without the SDK's client (which the interceptor would
    trace): a client span named as the interceptor names its own (`SignalWorkflow:<signal>`,
    `SignalWithStartWorkflow:<type>`), and the headers to put in the request's `header`
    field so that the workflow's spans are its children. No span and no headers when off."""
    if _active is None:
        yield {}
        return
    from opentelemetry.trace import SpanKind

    interceptor = _active.interceptor
    with _active.tracer.start_as_current_span(
        name, kind=SpanKind.CLIENT, attributes={"temporalWorkflowID": workflow_id}
    ):
        # The header as the interceptor writes it, which its workflow side reads.
        carrier: dict[str, str] = {}
        interceptor.text_map_propagator.inject(carrier)
        yield {interceptor.header_key: interceptor.payload_converter.to_payloads([carrier])[0]}


def _span_ids(current_span: Callable[[], Any]) -> tuple[str, str] | None:
    """The current span's ids as log fields carry them (hex, as trace backends show them)."""
    span_context = current_span().get_span_context()
    if not span_context.is_valid:
        return None
    return format(span_context.trace_id, "032x"), format(span_context.span_id, "016x")
