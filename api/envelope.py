"""The spec's response envelope: `{success, data, pagination?}` and `{success: false, ...}`."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from pydantic import BaseModel, Field

from models.camel import CamelModel

T = TypeVar("T")


class Pagination(CamelModel):
    page: int = Field(description="this page's number, from 1 (`skip // take + 1`)")
    limit: int = Field(description="rows per page (`take`)")
    total: int = Field(
        description="rows matching in all: counted exactly up to 10,000; above that, the "
        "database planner's estimate (see `totalIsEstimate`)"
    )
    total_pages: int = Field(description="`ceil(total / limit)`")
    total_is_estimate: bool = Field(
        description="true when more than 10,000 rows match: `total` (and `totalPages`) is "
        "then the planner's estimate from the table statistics, never below 10,001 nor below "
        "the rows this page proves to exist: an approximation (typically within a few "
        "percent for one filter; combined filters, or a tag that merchants use very "
        "differently, can be further off); false when `total` is exact",
    )


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
