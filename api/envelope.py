"""The spec's response envelope: `{success, data, pagination?}` and `{success: false, ...}`."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from pydantic import BaseModel, Field

from models.camel import CamelModel

T = TypeVar("T")


class Pagination(CamelModel):
    page: int
    limit: int
    total: int
    total_pages: int


class Envelope(BaseModel, Generic[T]):
    success: bool = True
    data: T


class Page(BaseModel, Generic[T]):
    success: bool = True
    data: list[T]
    pagination: Pagination


class ErrorBody(BaseModel):
    success: bool = Field(False, examples=[False])
    error: str = Field(examples=["Account not found"])
    code: str = Field(examples=["RESOURCE_NOT_FOUND"])
    details: dict[str, Any] | None = None


def ok(data: T) -> Envelope[T]:
    return Envelope[T](data=data)


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"success": False, "error": message, "code": code}
    if details:
        body["details"] = details
    return body


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI declarations of a route's error answers (all share the error envelope)."""
    return {status: {"model": ErrorBody} for status in statuses}
