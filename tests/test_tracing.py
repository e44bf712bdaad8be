"""Tracing (mktx/tracing.py): a signed X delivery is one trace, from the API's server span
through ingestion's hand-off to its relay, the Temporal call it owes, the workflow that call
starts and its activities, to the HTTP call that sends the DM to X; log lines written inside
the request carry that trace's id.

The API and a worker of their own (on a task queue of their own) are built here with tracing
configured on the SDK's in-memory exporter; the rest of the suite runs untraced, as a process
without OTEL_EXPORTER_OTLP_ENDPOINT does.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from api.app import create_app
from mktx import tracing
from mktx.logs import JsonFormatter
from mktx.settings import Settings
from mktx.temporal import connect_temporal
from models.db import SessionMaker
from sandbox.admin import SandboxAdmin
from tests.conftest import Api
from tests.flows.conftest import activate, create_flow, create_template
from tests.webhooks.conftest import (
    NeverHappened,
    connect,
    eventually,
    follow_payload,
    post_signed,
    x_user,
)
from worker import build_worker

TIMEOUT = 20.0


@dataclass
class Traced:
    """The traced API (as X reaches it) and what was exported and logged meanwhile."""

    client: httpx.AsyncClient
    app: Any
    spans: InMemorySpanExporter
    log_lines: list[dict[str, Any]]


class _Lines(logging.Handler):
    """Formats each record as it is emitted, as the service's stderr handler does: the span
    ids are those current at that moment (a record formatted later is outside its span)."""

    def __init__(self, lines: list[dict[str, Any]]) -> None:
        super().__init__()
        self.lines = lines
        self.setFormatter(JsonFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@pytest.fixture
async def traced(settings: Settings, sessions: SessionMaker) -> AsyncIterator[Traced]:
    exporter = InMemorySpanExporter()
    lines: list[dict[str, Any]] = []
    handler = _Lines(lines)
    tracing.reset()  # a run with OTEL_EXPORTER_OTLP_ENDPOINT set configured its own at start
    tracing.configure_tracing(tracing.API_SERVICE, exporter=exporter)
    logging.getLogger().addHandler(handler)
    # The flows' triggers start their runs on the settings' queue: this worker's.
    queue = f"mktx-traced-{uuid.uuid4().hex[:8]}"
    own = settings.model_copy(update={"task_queue": queue})
    try:
        client = await connect_temporal(own)  # with the tracing interceptor, as the worker's
        async with build_worker(client, own, sessions):
            app = create_app(own)
            async with app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://x.test") as http:
                    yield Traced(http, app, exporter, lines)
    finally:
        logging.getLogger().removeHandler(handler)
        tracing.reset()


def _parents(spans: Sequence[ReadableSpan]) -> dict[int, int | None]:
    return {s.context.span_id: (s.parent.span_id if s.parent else None) for s in spans}


def _descends(span: ReadableSpan, ancestor: ReadableSpan, parents: dict[int, int | None]) -> bool:
    at: int | None = span.context.span_id
    while at is not None:
        if at == ancestor.context.span_id:
            return True
        at = parents.get(at)
    return False


def _tree(trace: Sequence[ReadableSpan]) -> str:
    """The trace as an indented outline of span names (for failure messages)."""
    ids = {s.context.span_id for s in trace}
    lines: list[str] = []

    def add(span: ReadableSpan, depth: int) -> None:
        lines.append("  " * depth + span.name)
        for child in trace:
            if child.parent is not None and child.parent.span_id == span.context.span_id:
                add(child, depth + 1)

    for span in trace:
        if span.parent is None or span.parent.span_id not in ids:
            add(span, 0)
    return "\n".join(lines)


def _attribute(span: ReadableSpan, name: str) -> str:
    return str((span.attributes or {}).get(name) or "")


def _is_dm_send(span: ReadableSpan) -> bool:
    url = _attribute(span, "url.full") or _attribute(span, "http.url")
    return (
        span.kind is SpanKind.CLIENT
        and span.name.startswith("POST")
        and "/2/dm_conversations/" in url
        and url.endswith("/messages")
    )


def _server_spans(spans: Sequence[ReadableSpan]) -> list[ReadableSpan]:
    return [
        s
        for s in spans
        if s.kind is SpanKind.SERVER and _attribute(s, "http.route").endswith("/webhooks/twitter")
    ]


async def _finished(traced: Traced, deliveries: int) -> list[ReadableSpan]:
    """The spans once each delivery's run has completed (its last span, CompleteWorkflow, is
    made once every activity has returned, and so ended)."""

    async def probe() -> list[ReadableSpan]:
        return list(traced.spans.get_finished_spans())

    def complete(spans: list[ReadableSpan]) -> bool:
        traces = {s.context.trace_id for s in _server_spans(spans)}
        done = {s.context.trace_id for s in spans if s.name == "CompleteWorkflow:FlowRun"}
        return len(traces) >= deliveries and traces <= done

    try:
        return await eventually(probe, complete, TIMEOUT)
    except NeverHappened:
        raise NeverHappened(_tree(traced.spans.get_finished_spans())) from None


async def test_a_follow_is_one_trace_from_the_delivery_to_the_dm_sent_to_x(
    api: Api, x_admin: SandboxAdmin, traced: Traced, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = time.monotonic()
    shop = await connect(api, await x_user(x_admin, "shop"))
    template_id = await create_template(api, "Hi {{name}}, thanks for following!")
    flow = await create_flow(
        api,
        {
            "name": "Traced welcome",
            "trigger": {"type": "new_follower", "config": {}},
            "nodes": [
                {"id": "send", "type": "send_message", "config": {"templateId": template_id}}
            ],
            "connections": [],
        },
    )
    await activate(api, flow["id"])
    fans = [await x_user(x_admin, f"fan{i}", name=f"Fan{i}") for i in range(2)]

    # Two deliveries in one batch of the relay (while an answer is being made, as the test
    # holds one here, it waits for it): their follow-ups are carried out together, in a task
    # of the relay's, and each Temporal call must still be in the trace of its own delivery.
    assert (await post_signed(traced.client, {"for_user_id": shop.x_id})).status_code == 200
    relay = traced.app.state.webhook_ingestion.relay  # made by that first delivery
    traced.spans.clear()
    batches: list[int] = []  # follow-ups per batch the relay carried out
    carry_out = relay._carry_out

    async def counted(follow_up: Any) -> None:
        batches.append(len(follow_up.recorded))
        await carry_out(follow_up)

    monkeypatch.setattr(relay, "_carry_out", counted)
    with relay.answering():
        responses = await asyncio.gather(
            *(post_signed(traced.client, follow_payload(shop, fan)) for fan in fans)
        )
    assert [r.status_code for r in responses] == [200, 200], [r.text for r in responses]

    spans = await _finished(traced, deliveries=2)
    assert batches == [2], batches
    parents = _parents(spans)
    servers = _server_spans(spans)
    assert len(servers) == 2
    assert len({s.context.trace_id for s in servers}) == 2
    for server in servers:
        trace = [s for s in spans if s.context.trace_id == server.context.trace_id]
        shown = _tree(trace)
        # Each step once, under the one before it (the interceptor's workflow spans are
        # children of the call that started the workflow, the activities' of their starts).
        starts = [s for s in trace if s.name == "SignalWithStartWorkflow:FlowRun"]
        assert len(starts) == 1, shown
        (start,) = starts
        assert start.kind is SpanKind.CLIENT
        assert _attribute(start, "temporalWorkflowID").startswith(f"flow:{flow['id']}:")
        assert _descends(start, server, parents), shown
        (run,) = [s for s in trace if s.name == "RunWorkflow:FlowRun"]
        assert run.parent is not None and run.parent.span_id == start.context.span_id, shown
        activities = {s.name for s in trace if s.name.startswith("RunActivity:")}
        assert {"RunActivity:flow.advance", "RunActivity:message.deliver"} <= activities, shown
        assert all(_descends(s, start, parents) for s in trace if s.name in activities), shown
        (deliver,) = [s for s in trace if s.name == "RunActivity:message.deliver"]
        (send,) = [s for s in trace if _is_dm_send(s)]
        assert send.parent is not None and send.parent.span_id == deliver.context.span_id, shown
        assert send.resource.attributes["service.name"] == tracing.API_SERVICE

    # A line logged inside the request (the access log) carries its trace and span.
    for server in servers:
        trace_id = format(server.context.trace_id, "032x")
        logged = [
            line
            for line in traced.log_lines
            if line.get("event") == "request" and line.get("trace_id") == trace_id
        ]
        assert len(logged) == 1, traced.log_lines
        assert logged[0]["path"].endswith("/webhooks/twitter")
        assert len(logged[0]["span_id"]) == 16
    assert time.monotonic() - started < 30


def test_off_without_an_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without OTEL_EXPORTER_OTLP_ENDPOINT nothing is configured, no interceptor is added and
    log lines have no trace fields."""
    for name in (*tracing.ENDPOINT_VARIABLES, "OTEL_SDK_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    tracing.reset()
    assert tracing.configure_tracing(tracing.API_SERVICE) is None
    assert tracing.temporal_interceptors() == []
    assert tracing.current_context() is None
    with tracing.temporal_call("SignalWorkflow:x", "wf") as header:
        assert header == {}
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "hello", (), None)
    assert "trace_id" not in json.loads(JsonFormatter().format(record))
    assert tracing.tracing_requested({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert not tracing.tracing_requested(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"}
    )
