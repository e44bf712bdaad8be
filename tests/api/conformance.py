"""Schemathesis over the whole OpenAPI document, against the API listening on a real port.

`make test` runs a short budget (`CONFORMANCE_SECONDS`: 35 s, some 60 s with the seeding);
`make fuzz` sets MKTX_FUZZ_SECONDS for a longer one (more examples, longer stateful runs). The
seed is fixed: a run is repeatable, and a failure it finds is found again.

Checks are all on, with two concessions the document cannot express, each in `_OPERATIONS`:

- positive_data_acceptance expects a schema-valid request to be accepted. Where the answer
  also depends on rules across fields or on state (a template's `variables` must list its
  placeholders, a flow's graph, a campaign that must be a draft, a referenced id that must
  exist, an analytics range), a schema-valid request may rightly be a 400 or a 422; those
  operations accept them, and only them.
- No NUL (`allow-x00 = false`): the API refuses it in every text field (api/storable.py) and
  the document says so in prose, not in a `pattern` on every string. tests/api/
  test_openapi_conformance.py sends NUL to each kind of input instead.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import schemathesis
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import Status, from_schema
from schemathesis.engine import events as engine_events

SEED = 20260118
CONFORMANCE_SECONDS = 35
# A CPython 3.11 error compiling a deeply nested generated value: schemathesis', not the API's.
_CPYTHON_AST_BUG = "AST constructor recursion depth mismatch"

CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
    "negative_data_rejection",
    "positive_data_acceptance",
    "missing_required_header",
    "unsupported_method",
    "allow_header_conformance",
    "ignored_auth",
    "use_after_free",
    "ensure_resource_availability",
)

_BASE = "/api/v1/mkt-x"
# (methods, path regex, what a schema-valid request may also answer, the rule behind it)
_OPERATIONS: list[tuple[str, str, list[str], str]] = [
    ("POST|PUT", r"/templates(/\{templateId\})?$", ["422"], "variables vs placeholders, URLs"),
    ("POST|PUT", r"/segments(/\{segmentId\})?$", ["422"], "a condition's field and value"),
    ("POST|PUT", r"/campaigns(/\{campaignId\})?$", ["400", "422"], "a draft's, ids that exist"),
    ("POST", r"/campaigns/\{campaignId\}/(start|pause|resume|test)$", ["400", "422"], "status"),
    ("POST|PUT", r"/automation/flows(/\{flowId\})?$", ["400", "422"], "the graph, not active"),
    ("DELETE", r"/automation/flows/\{flowId\}$", ["400"], "not while active"),
    ("POST", r"/automation/flows/\{flowId\}/(activate|deactivate|enroll)$", ["400"], "status"),
    ("POST", r"/accounts$", ["400", "422"], "X must know the token"),
    ("PUT|DELETE", r"/accounts/\{accountId\}$", ["400", "422"], "IANA zones; a disconnected one"),
    ("GET", r"/analytics/", ["422"], "the range: start before end, at most a year"),
    ("GET", r"/contacts$", ["422"], "tag rules"),
    ("POST|PUT", r"/contacts/(import|\{contactId\}(/tags|/attributes)?)$", ["422"], "fields"),
    ("DELETE", r"/contacts/\{contactId\}/tags/\{tagName\}$", ["422"], "a tag's characters"),
    ("POST|PUT", r"/conversations/\{conversationId\}/", ["400", "422"], "open, account usable"),
    ("POST|PUT", r"/ai/", ["400", "422"], "the assistant on; unique intents"),
]


# schemathesis' own default for positive_data_acceptance.
_ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]


def fuzz_seconds() -> int | None:
    """MKTX_FUZZ_SECONDS: `make fuzz`'s longer budget; None under `make test`."""
    value = os.environ.get("MKTX_FUZZ_SECONDS")
    return int(value) if value else None


def config(token: str, seconds: int, *, long: bool) -> SchemathesisConfig:
    operations = [
        {
            # The name is the label: "POST /api/v1/mkt-x/templates".
            "include-name-regex": f"^({methods}) {_BASE}{path}",
            "checks": {"positive_data_acceptance": {"expected-statuses": [*_ACCEPTED, *extra]}},
        }
        for methods, path, extra, _why in _OPERATIONS
    ]
    return SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            "max-time": seconds,
            "workers": 2,
            "suppress-health-check": ["too_slow", "filter_too_much", "data_too_large"],
            "headers": {"Authorization": f"Bearer {token}"},
            "request-timeout": 30,
            "generation": {
                "allow-x00": False,
                # No example database (.hypothesis/): a run depends on the seed alone.
                "database": "none",
                "max-examples": 40 if long else 6,
                "no-shrink": not long,
            },
            "checks": {name: {"enabled": True} for name in CHECKS},
            "phases": {
                "examples": {"enabled": True},
                "coverage": {"enabled": True},
                "fuzzing": {"enabled": True},
                "stateful": {"enabled": True, "max-steps": 60 if long else 15},
            },
            "operations": operations,
        }
    )


@dataclass
class Finding:
    operation: str
    code: str
    title: str
    message: str
    reproduce: str

    def key(self) -> tuple[str, str, str]:
        return self.operation, self.code, self.message.split("\n", 1)[0]

    def render(self) -> str:
        return f"{self.code} {self.title} — {self.operation}\n{self.message}\n{self.reproduce}\n"


@dataclass
class Report:
    operations: int = 0
    cases: int = 0
    seconds: float = 0.0
    stop_reason: str = ""
    findings: dict[tuple[str, str, str], Finding] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"schemathesis: {self.operations} operations, {self.cases} cases, "
            f"{self.seconds:.0f} s ({self.stop_reason}), {len(self.findings)} failures, "
            f"{len(self.errors)} errors, {len(self.warnings)} generator warnings"
        )

    def details(self) -> str:
        parts = [finding.render() for finding in self.findings.values()]
        return "\n".join([self.summary(), *parts, *self.errors, *self.warnings])


def run(api_url: str, token: str, seconds: int, *, long: bool) -> Report:
    """Every phase over the document `api_url` serves; blocking (call it in a thread)."""
    started = time.monotonic()
    schema = schemathesis.openapi.from_url(
        f"{api_url}/openapi.json", config=config(token, seconds, long=long)
    )
    report = Report(operations=sum(1 for _ in schema.get_all_operations()))
    for event in from_schema(schema).execute():
        _record(report, event)
    report.seconds = time.monotonic() - started
    return report


def _record(report: Report, event: engine_events.EngineEvent) -> None:
    if isinstance(event, engine_events.ScenarioFinished | engine_events.FuzzScenarioFinished):
        report.cases += len(event.recorder.cases)
        for nodes in event.recorder.checks.values():
            for finding in _findings(nodes):
                report.findings.setdefault(finding.key(), finding)
    elif isinstance(event, engine_events.NonFatalError):
        if _CPYTHON_AST_BUG in str(event.value):
            # CPython 3.11 compiling a deeply nested generated value: no answer of the API.
            report.warnings.append(f"{event.label}: {event.value!r}")
        else:
            report.errors.append(f"error in {event.label}: {event.value!r}")
    elif isinstance(event, engine_events.FatalError):
        report.errors.append(f"fatal: {event.exception!r}")
    elif isinstance(event, engine_events.EngineFinished):
        report.stop_reason = str(event.stop_reason)


def _findings(nodes: Iterable[Any]) -> Iterable[Finding]:
    for node in nodes:
        if node.status != Status.FAILURE or node.failure_info is None:
            continue
        failure = node.failure_info.failure
        yield Finding(
            operation=str(failure.operation),
            code=str(getattr(failure, "code", "")),
            title=str(failure.title),
            message=str(failure.message),
            reproduce=node.failure_info.code_sample,
        )
