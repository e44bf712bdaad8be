"""Structured JSON logs on stderr, with the request id of the HTTP request being served and,
where tracing is on (mktx.tracing), the ids of the current span."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

# The (trace id, span id) of the current span, or None: set by mktx.tracing when tracing is
# on, so that logging imports nothing of OpenTelemetry and costs nothing more when it is off.
_span_ids: Callable[[], tuple[str, str] | None] | None = None


def use_span_ids(source: Callable[[], tuple[str, str] | None] | None) -> None:
    """Log lines carry `trace_id` and `span_id` as `source` gives them (None: no more)."""
    global _span_ids
    _span_ids = source


# Attributes every LogRecord has; anything else came in through `extra=` and is logged as a field.
_STANDARD_ATTRS = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}

# Field names whose values are never written, whoever passes them, at any depth of a field.
_SECRET_MARKERS = ("token", "secret", "password", "authorization", "api_key", "apikey")
REDACTED = "[redacted]"
# How deep into a field's dicts and lists the names are looked at (a cycle stops there).
_REDACT_DEPTH = 8


def _redact(key: str, value: Any, depth: int = 0) -> Any:
    lowered = key.lower()
    if any(marker in lowered for marker in _SECRET_MARKERS):
        return REDACTED
    if depth >= _REDACT_DEPTH:
        return value
    if isinstance(value, dict):
        return {k: _redact(str(k), v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact("", item, depth + 1) for item in value]
    return value


def _writable(value: Any) -> Any:
    """The value if JSON can write it, else a repr of it: one odd field must not cost the line."""
    try:
        json.dumps(value, default=str)
        return value
    except Exception:  # a cycle, a non-string dict key, a __str__ that raises, ...
        try:
            return repr(value)
        except Exception:
            return f"<unrepresentable {type(value).__name__}>"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        request_id = request_id_var.get()
        if request_id:
            entry["request_id"] = request_id
        if _span_ids is not None and (ids := _span_ids()) is not None:
            entry["trace_id"], entry["span_id"] = ids
        for key, value in record.__dict__.items():
            key = str(key)  # `extra` is any mapping; its keys are not always strings
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = _redact(key, value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        try:
            return json.dumps(entry, default=str)
        except Exception:
            # Field by field only when the whole fails, so the common line is serialised once.
            return json.dumps({key: _writable(value) for key, value in entry.items()}, default=str)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is at the time of the record: a process whose stderr
    is swapped (pytest's capture, closed at exit while atexit hooks still log) keeps logging."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def configure_logging(level: str = "INFO") -> None:
    handler = _StderrHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "urllib3", "LiteLLM", "litellm", "pgserver"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
