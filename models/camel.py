"""API schemas speak camelCase JSON; Python code keeps snake_case names."""

from __future__ import annotations

import types
from functools import cache
from typing import Any, ClassVar, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator
from pydantic.alias_generators import to_camel

NOT_NULL_REASON = "may not be null; omit the field to keep its value"


class CamelModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, from_attributes=True, extra="forbid"
    )

    @field_validator("*", mode="before")
    @classmethod
    def _json_types_only(cls, value: Any, info: ValidationInfo) -> Any:
        # Pydantic's lax mode reads true or "5" as a number and 0 or "yes" as a boolean; the
        # document says number or boolean, and JSON's true, 0 and "5" are none of the other.
        numbers, booleans = _typed_fields(cls)
        if info.field_name in numbers and isinstance(value, bool | str):
            raise ValueError("must be a number")
        if info.field_name in booleans and not isinstance(value, bool | None):
            raise ValueError("must be true or false")
        return value


@cache
def _typed_fields(model: type[BaseModel]) -> tuple[frozenset[str], frozenset[str]]:
    """The fields that take a number, and those that take a boolean (null aside)."""

    def options(annotation: Any) -> set[Any]:
        union = get_origin(annotation) in (Union, types.UnionType)
        return set(get_args(annotation) if union else (annotation,)) - {type(None)}

    fields = {name: options(info.annotation) for name, info in model.model_fields.items()}
    numbers = {n for n, kinds in fields.items() if kinds and kinds <= {int, float}}
    booleans = {n for n, kinds in fields.items() if kinds == {bool}}
    return frozenset(numbers), frozenset(booleans)


def _without_null(schema: dict[str, Any], model: type[BaseModel]) -> None:
    """The document of a `CamelUpdate`: its `not_null` fields may be omitted, never null."""
    properties = schema.get("properties", {})
    for name in getattr(model, "not_null", ()):
        info = model.model_fields[name]
        prop = properties.get(info.alias or name)
        if prop is None:
            continue
        prop.pop("default", None)
        branches = [b for b in prop.pop("anyOf", []) if b != {"type": "null"}]
        if len(branches) == 1:
            prop.update(branches[0])
        elif branches:
            prop["anyOf"] = branches


class CamelUpdate(CamelModel):
    """A partial update: the fields sent replace the stored ones. Those in `not_null` may be
    left out (kept as they are) but not sent as null, which is no value for them; the
    OpenAPI document says so (their schema has no null)."""

    model_config = ConfigDict(json_schema_extra=_without_null)
    not_null: ClassVar[frozenset[str]] = frozenset()

    @field_validator("*")
    @classmethod
    def _refuse_null(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None and info.field_name in cls.not_null:
            raise ValueError(NOT_NULL_REASON)
        return value
