"""mktx/logs.py: one JSON object per line, with the request's id, the call's `extra=` fields,
the exception; and the values of fields named like secrets never written, at any depth."""

from __future__ import annotations

import io
import json
import logging
import sys
from typing import Any

import pytest
from pydantic import SecretStr

from mktx.logs import REDACTED, JsonFormatter, _StderrHandler, request_id_var


def _record(
    message: str = "campaign.batch_sent",
    *args: object,
    level: int = logging.INFO,
    exc_info: Any = None,
    **extra: Any,
) -> logging.LogRecord:
    return logging.getLogger("mktx.test").makeRecord(
        "mktx.test", level, __file__, 7, message, args, exc_info, extra=extra
    )


def _line(record: logging.LogRecord) -> dict[str, Any]:
    text = JsonFormatter().format(record)
    assert "\n" not in text  # one record, one line
    return json.loads(text)  # type: ignore[no-any-return]


def test_a_line_holds_the_time_level_logger_event_and_fields() -> None:
    record = _record("sent %d of %s", 3, "4", level=logging.WARNING, campaign_id="c-1", sent=3)
    record.created = 1767225600.1234  # 2026-01-01 00:00:00.123 UTC

    assert _line(record) == {
        "ts": "2026-01-01T00:00:00.123+00:00",
        "level": "warning",
        "logger": "mktx.test",
        "event": "sent 3 of 4",
        "campaign_id": "c-1",
        "sent": 3,
    }


def test_the_request_id_of_the_request_being_served_is_on_each_line() -> None:
    assert "request_id" not in _line(_record())
    token = request_id_var.set("req-12345678")
    try:
        assert _line(_record())["request_id"] == "req-12345678"
    finally:
        request_id_var.reset(token)
    assert "request_id" not in _line(_record())


def test_an_exception_is_written_with_its_traceback() -> None:
    try:
        raise ValueError("the database went away")
    except ValueError:
        entry = _line(
            _record("request.unhandled_error", level=logging.ERROR, exc_info=sys.exc_info())
        )
    assert entry["level"] == "error"
    assert entry["exception"].startswith("Traceback (most recent call last):")
    assert entry["exception"].endswith("ValueError: the database went away")


@pytest.mark.parametrize(
    "key",
    [
        "token",
        "oauth_token",
        "accessToken",
        "oauth_token_secret",
        "consumer_secret",
        "password",
        "Authorization",
        "api_key",
        "apiKey",
        "LLM_APIKEY",
        "refresh_token",
    ],
)
def test_fields_named_like_secrets_are_never_written(key: str) -> None:
    entry = _line(_record(**{key: "s3cr3t-value", "account_id": "a-1"}))
    assert entry[key] == REDACTED
    assert entry["account_id"] == "a-1"
    assert "s3cr3t-value" not in json.dumps(entry)


def test_secrets_inside_a_field_are_redacted_too() -> None:
    entry = _line(
        _record(
            request={"headers": {"Authorization": "Bearer s3cr3t"}, "path": "/accounts"},
            accounts=[{"id": "a-1", "oauth_token": "s3cr3t"}, ("x", {"password": "s3cr3t"})],
        )
    )
    assert entry["request"] == {"headers": {"Authorization": REDACTED}, "path": "/accounts"}
    assert entry["accounts"] == [
        {"id": "a-1", "oauth_token": REDACTED},
        ["x", {"password": REDACTED}],
    ]
    assert "s3cr3t" not in json.dumps(entry)


def test_a_secret_str_is_written_masked_whatever_its_field() -> None:
    entry = _line(_record(settings_value=SecretStr("s3cr3t")))
    assert entry["settings_value"] == "**********"


def test_values_json_cannot_write_are_written_as_text() -> None:
    class Account:
        def __str__(self) -> str:
            return "Account(a-1)"

    assert _line(_record(account=Account()))["account"] == "Account(a-1)"


def test_the_handler_writes_to_whatever_stderr_is_now(monkeypatch: pytest.MonkeyPatch) -> None:
    handler = _StderrHandler()
    handler.setFormatter(JsonFormatter())
    first, second = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    handler.emit(_record("one"))
    monkeypatch.setattr(sys, "stderr", second)  # pytest's capture swaps it, as exit does
    handler.emit(_record("two"))
    assert [json.loads(line)["event"] for line in first.getvalue().splitlines()] == ["one"]
    assert [json.loads(line)["event"] for line in second.getvalue().splitlines()] == ["two"]
