"""Error answers shaped like X's: v2 "problem" JSON (RFC 7807) and OpenAI-style errors for the LLM."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from starlette.responses import JSONResponse

X_PROBLEMS = "https://api.twitter.com/2/problems/"


class XProblem(Exception):
    """Raised by a handler; the app turns it into X's problem JSON."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        title: str | None = None,
        type_: str = "about:blank",
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.title = title or HTTPStatus(status).phrase
        self.type = type_
        self.errors = errors
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        body: dict[str, Any] = {
            "title": self.title,
            "type": self.type,
            "status": self.status,
            "detail": self.detail,
        }
        if self.errors:
            body["errors"] = self.errors
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def invalid_request(message: str, parameter: str | None = None) -> XProblem:
    """X's 400 for a parameter it refuses: a generic detail plus the specific message in `errors`."""
    error: dict[str, Any] = {"message": message}
    if parameter is not None:
        error["parameters"] = {parameter: []}
    return XProblem(
        400,
        "One or more parameters to your request was invalid.",
        title="Invalid Request",
        type_=X_PROBLEMS + "invalid-request",
        errors=[error],
    )


def openai_error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    kind = (
        "rate_limit_error"
        if status == 429
        else "server_error"
        if status >= 500
        else "invalid_request_error"
    )
    return JSONResponse(
        {"error": {"message": message, "type": kind, "param": None, "code": str(status)}},
        status_code=status,
        headers=headers,
    )
